//! The systemd backend's cage: a transient scope of the service manager (`crate::systemd`)
//! with the cage's `hold` and `main` inside it.

use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Created, Owner, Request, child_env, place, warn_cgroupns_leak};
use crate::cgroup::{self, Cage, CgroupError, Hierarchy, limits};
use crate::error::RunError;
use crate::policy::Controller;
use crate::spawn;
use crate::sys;

/// Creates the cage as a transient scope of the service manager. systemd moves the cage's
/// holder (`sys::spawn_holder`) into the new scope; claude-cage moves it on into `<scope>/hold`,
/// enables the controllers for the scope's children (Delegate=yes makes them ours) and makes
/// `<scope>/main`. As root, the child then starts in `main` (clone3 into it, or into the scope
/// with its cgroup namespace); a user may not move a process out of its own cgroup into the
/// scope (that takes write access to `cgroup.procs` of their common ancestor), so there the
/// child is forked first and systemd moves it with the holder, and claude-cage moves it on into
/// `main`. Either way the child waits for its go. The holder keeps the scope from being removed
/// the moment the cage's last process exits, before its counters are read.
pub(super) fn create(
    manager: crate::systemd::Manager,
    h: &Hierarchy,
    mut req: Request<'_>,
) -> Result<Created, RunError> {
    let (name, policy) = (req.name, req.policy);
    warn_cgroupns_leak(policy, h);
    // Controllers systemd can give a scope: those of the root of the hierarchy.
    if let Some(c) = cgroup::missing_at_root(h, &policy.require)?.first() {
        return Err(CgroupError::Unavailable {
            controller: c.name(),
            why: format!(
                "the cgroup v2 hierarchy at {} has no {c} controller",
                h.mount.display()
            ),
        }
        .into());
    }
    let description = format!(
        "claude-cage {name}: {}",
        req.command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    // The bot's cages share a slice of their own, which carries the [bot] limits.
    let slice = cgroup::id::bot_slice(&policy.slice, name);
    let slice_dir = h.dir(&manager.slice_cgroup(&slice)?);
    bot_slice_limits(&manager, &slice, &slice_dir, policy)?;
    // Orphans of this bot (a supervisor that was SIGKILLed) are reaped before a new cage
    // starts, as the cgroupfs backend does: one directory read when there are none.
    for line in crate::registry::reap_bot(&slice_dir, name) {
        crate::note!("{line}");
    }
    let pid = std::process::id();
    for serial in 1..=16 {
        let id = cgroup::id::cage_id(name, pid, serial);
        let scope = cgroup::id::scope_name(&id);
        let dir = slice_dir.join(&scope);
        if dir.exists() {
            // Never join an existing cage.
            continue;
        }
        let holder = Holder::spawn(&id)
            .map_err(|source| RunError::from(spawn::SpawnError::Clone { source }))?;
        // The system manager serves root; a user's serves the user (`Manager::connect`), and
        // moves the child into the scope with the holder.
        let mut early = None;
        if manager.user {
            early = Some(spawn::spawn(
                spawn::Place::Own,
                req.path,
                req.command,
                child_env(&id, &dir),
                req.original_mask,
                req.credentials.take(),
            )?);
        }
        let pids: Vec<Pid> = std::iter::once(holder.0)
            .chain(early.as_ref().map(|p| p.pid))
            .collect();
        if let Err(e) = manager.start_scope(&scope, &slice, &description, &pids, policy) {
            if let Some(p) = early {
                p.cancel();
            }
            return Err(e.into());
        }
        let mut cage = Cage {
            id,
            unit: Some(scope),
            main: dir.join(cgroup::fs::MAIN),
            bot_dir: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            dir,
            applied: Default::default(),
            deferred: Vec::new(),
        };
        return match finish(&mut cage, h, &holder, &pids, &mut early, &mut req) {
            Ok(pending) => {
                // The holder now lives as long as the scope: the teardown's kill ends it.
                std::mem::forget(holder);
                // The connection to the manager closes here (`Manager`).
                Ok(Created {
                    cage,
                    pending,
                    owner: Owner::Systemd,
                })
            }
            Err(e) => {
                if let Some(p) = early {
                    p.cancel();
                }
                drop(holder);
                let _ = Owner::Systemd.discard(&cage);
                Err(e)
            }
        };
    }
    Err(CgroupError::Placement(format!("could not find a free cage id for bot {name}")).into())
}

/// Gives the bot's slice the policy's `[bot]` limits for this boot (`SetUnitProperties`:
/// `MemoryHigh=`, `MemoryMax=`, `TasksMax=`; an unset one is `infinity`, so the policy is the
/// whole truth, as the cgroupfs backend's bot cgroup). Skipped when the slice's cgroup already
/// holds them, so a bot's every cage after its first costs three file reads, not a bus call; a
/// slice without a cgroup yet (no live cage) may still carry an earlier run's properties, so it
/// is always set.
fn bot_slice_limits(
    manager: &crate::systemd::Manager,
    slice: &str,
    dir: &Path,
    policy: &crate::policy::Policy,
) -> Result<(), RunError> {
    use crate::units::Limit;
    let want = limits::Values {
        memory_high: Some(policy.bot_memory_high.unwrap_or(Limit::Max)),
        memory_max: Some(policy.bot_memory_max.unwrap_or(Limit::Max)),
        pids_max: Some(policy.bot_pids_max.unwrap_or(Limit::Max)),
        ..Default::default()
    };
    let holds = |file: &str, l: Option<Limit>| limits::read_limit(dir, file) == l;
    if holds(cgroup::fs::MEMORY_HIGH, want.memory_high)
        && holds(cgroup::fs::MEMORY_MAX, want.memory_max)
        && holds(cgroup::fs::PIDS_MAX, want.pids_max)
    {
        return Ok(());
    }
    manager.set_limits(slice, &want)?;
    Ok(())
}

/// Makes the started scope a cage: checks that systemd put its processes where predicted, moves
/// the holder into `hold` (and a user's early child into `main`), enables the controllers and
/// records the limits systemd applied, writes `memory.oom.group`, and starts the child unless
/// it was started early.
fn finish(
    cage: &mut Cage,
    h: &Hierarchy,
    holder: &Holder,
    pids: &[Pid],
    early: &mut Option<spawn::Pending>,
    req: &mut Request<'_>,
) -> Result<spawn::Pending, RunError> {
    let policy = req.policy;
    let expected = format!("0::{}", h.relative(&cage.dir));
    for &pid in pids {
        let actual = cgroup::fs::read_kernel_file(Path::new(&format!("/proc/{pid}/cgroup")))
            .unwrap_or_default();
        if actual.trim() != expected {
            return Err(CgroupError::Placement(format!(
                "systemd put process {pid} of the cage in {:?}, not in {expected:?} as its slice and manager predicted",
                actual.trim()
            ))
            .into());
        }
    }
    cgroup::mark(&cage.dir);
    let hold = cage.dir.join(cgroup::fs::HOLD);
    for d in [&hold, &cage.main] {
        std::fs::create_dir(d).map_err(|source| CgroupError::Create {
            path: d.clone(),
            source,
        })?;
    }
    cgroup::fs::write(&hold, cgroup::fs::PROCS, &holder.0.to_string())?;
    // A user's manager delegates the scope but keeps cgroup.max.* root's: as a user the scope
    // takes only what systemd's own properties give it.
    if nix::unistd::Uid::effective().is_root() {
        limits::write_nesting(&cage.dir, policy);
    }
    if let Some(p) = early.as_ref() {
        cgroup::fs::write(&cage.main, cgroup::fs::PROCS, &p.pid.to_string())?;
    }
    let available = cgroup::fs::words(&cgroup::fs::read(&cage.dir, cgroup::fs::CONTROLLERS)?);
    let wanted: Vec<Controller> = Controller::ALL
        .into_iter()
        .filter(|c| available.iter().any(|a| a == c.name()))
        .collect();
    // With a cgroup namespace the child is cloned into the scope itself (the namespace's root)
    // and moves on into `main`; a cgroup with controllers enabled for its children may hold no
    // process, so they are enabled once it has moved.
    if policy.cgroupns {
        cage.deferred = wanted.clone();
    } else {
        limits::enable(&cage.dir, &wanted)?;
    }
    // systemd wrote the limits: the scope's properties, and the bot's on its slice
    // (`bot_slice_limits`).
    cage.applied = limits::for_cage(policy, &wanted);
    if wanted.contains(&Controller::Memory) {
        // systemd has no property for memory.oom.group on a scope before v253; the file is
        // written directly. A group kill spares only a holder the OOM killer ignores
        // (`Holder::spawn`, which takes root). A user's holder would die with the group, and the
        // user's manager would remove the emptied scope before its counters are read, so the
        // OOM kill would go unreported. For a user the group is `main` instead: Claude and
        // everything it starts there; a cgroup Claude makes beside `main` then loses only the
        // process the OOM killer picks (mm/memcontrol.c, mem_cgroup_get_oom_group: the highest
        // cgroup with oom.group set, from the victim's up to the one whose limit was hit).
        let group = if holder.1 { &cage.dir } else { &cage.main };
        if limits::write_oom_group(group, policy.oom_group).is_ok() {
            cage.applied.oom_group = Some(policy.oom_group);
        } else if policy.oom_group {
            crate::warning!(
                "memory.oom-group is not applied: {} is not writable here",
                group.join(cgroup::fs::MEMORY_OOM_GROUP).display()
            );
        }
    }
    if let Some(p) = early.take() {
        return Ok(p);
    }
    Ok(spawn::spawn(
        place(cage, policy),
        req.path,
        req.command,
        child_env(&cage.id, &cage.dir),
        req.original_mask,
        req.credentials.take(),
    )?)
}

/// A scope's holder until the cage is made: dropped, it is killed and reaped, so a failed
/// start leaves no process behind. The flag: whether the OOM killer spares it.
struct Holder(Pid, bool);

impl Holder {
    /// Forks the holder. As root it is exempt from the OOM killer (`oom_score_adj` -1000), which
    /// then neither picks it nor kills it with the group (`memory.oom.group`; mm/oom_kill.c
    /// skips OOM_SCORE_ADJ_MIN in a group kill); another user may not lower it.
    fn spawn(cage: &str) -> std::io::Result<Holder> {
        let mut holder = Holder(
            sys::spawn_holder(&format!("claude-cage-holder {cage}"))?,
            false,
        );
        if nix::unistd::Uid::effective().is_root() {
            holder.1 = std::fs::write(format!("/proc/{}/oom_score_adj", holder.0), "-1000").is_ok();
        }
        Ok(holder)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}
