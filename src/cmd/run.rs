//! `claude-cage run` (and shim mode): validate everything, create the cage, start the child in
//! it, supervise, then kill and remove the cage and explain the end in one line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::alerts::Alerts;
use crate::cgroup::{self, Cage, CgroupError, Counters, Hierarchy};
use crate::error::error_chain;
use crate::events::{Event, EventLog, ExitRecord, Limits, Reason};
use crate::exit;
use crate::explain::End;
use crate::policy::{self, Overrides, ParentDeath, Policy, PolicyError};
use crate::spawn::{self, SpawnError};
use crate::state;
use crate::supervise::{self, ChildEnd, Lifetime, Outcome, Starter};
use crate::sys;
use crate::units::Limit;

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    File(PathBuf),
    Default,
}

/// One `run`, as parsed from the command line or derived in shim mode.
#[derive(Debug)]
pub struct Invocation {
    pub policy: PolicySource,
    pub overrides: Overrides,
    /// PROGRAM; `None` means the policy's `program`.
    pub program: Option<OsString>,
    /// The program's arguments (without its name).
    pub args: Vec<OsString>,
    /// In shim mode, PATH entries that are claude-cage itself are skipped.
    pub skip_self: bool,
    /// The pid of the process that started claude-cage, read first thing in `main`.
    pub starter: Pid,
}

/// A failure before the child ran; claude-cage exits 125, 126 or 127.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("failed to open the events file {path}")]
    Events {
        path: String,
        source: std::io::Error,
    },
    #[error("the process that started claude-cage (pid {0}) died before the child was started")]
    StarterGone(Pid),
    #[cfg(feature = "systemd")]
    #[error(transparent)]
    Systemd(#[from] crate::systemd::SystemdError),
    #[cfg(not(feature = "systemd"))]
    #[error("the systemd backend is not built into this claude-cage (cargo feature \"systemd\")")]
    NoSystemd,
    #[error("{0}")]
    Credentials(String),
    #[error("failed to set up signal handling")]
    Signals(#[source] nix::Error),
}

impl RunError {
    pub fn exit_status(&self) -> i32 {
        match self {
            RunError::Spawn(e) => e.exit_status(),
            _ => exit::FAILURE,
        }
    }

    /// What to do about it, where the error alone does not say.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            #[cfg(feature = "systemd")]
            RunError::Systemd(crate::systemd::SystemdError::Connect { .. }) => {
                Some(crate::systemd::CONNECT_ADVICE)
            }
            _ => None,
        }
    }
}

/// Blocks the signals the supervisor handles, returning the mask claude-cage was started with.
/// Called before anything is created, so a signal that arrives early waits in the signalfd.
///
/// SIGPIPE is blocked too (but not read): a write to a closed stderr, events pipe or alert hook
/// then fails with EPIPE instead of killing claude-cage and orphaning the cage. So is SIGTTOU:
/// a claude-cage in a background job writing its line to a terminal with `tostop` would be
/// stopped, while a process that blocks SIGTTOU may write (termios(3)). The child gets the
/// original mask back before exec, and a fork does not inherit pending signals.
pub fn block_signals() -> SigSet {
    let mut original = SigSet::empty();
    let mut blocked = supervise::handled_signals();
    blocked.add(Signal::SIGPIPE);
    blocked.add(Signal::SIGTTOU);
    // sigprocmask only fails for an invalid `how`, which this is not.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut original));
    original
}

/// Runs the invocation and returns claude-cage's exit status.
pub fn run(inv: Invocation, original_mask: SigSet) -> i32 {
    match prepare_and_run(inv, original_mask) {
        Ok(status) => status,
        Err(e) => {
            match e.advice() {
                Some(fix) => crate::error!("{}; {fix}", error_chain(&e)),
                None => crate::error!("{}", error_chain(&e)),
            }
            e.exit_status()
        }
    }
}

/// The memory of the machine, for sizes given as a percentage.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Loads the policy of an invocation.
pub fn load_policy(source: &PolicySource, overrides: &Overrides) -> Result<Policy, PolicyError> {
    match source {
        PolicySource::File(p) => policy::load_file(p, overrides, &mem_total),
        PolicySource::Default => policy::load_default(overrides, &mem_total),
    }
}

fn prepare_and_run(inv: Invocation, original_mask: SigSet) -> Result<i32, RunError> {
    // Prepare: every input is validated before anything is created.
    let policy = load_policy(&inv.policy, &inv.overrides)?;
    let program = inv.program.unwrap_or_else(|| {
        OsString::from(policy.program.as_deref().unwrap_or(policy::DEFAULT_PROGRAM))
    });
    let command: Vec<OsString> = std::iter::once(program.clone()).chain(inv.args).collect();
    let program = program.to_string_lossy().into_owned();
    let myself = inv
        .skip_self
        .then(|| std::env::current_exe().ok())
        .flatten();
    let path = spawn::resolve(
        &program,
        std::env::var_os("PATH").as_deref(),
        myself.as_deref(),
    )?;
    let name = policy
        .name
        .clone()
        .unwrap_or_else(|| policy::name_from_program(&program));
    let credentials = credentials(&policy)?;
    if policy.cgroupns && !nix::unistd::Uid::effective().is_root() {
        return Err(RunError::Credentials(
            "[cage] cgroupns = true needs claude-cage to run as root: a new cgroup namespace takes CAP_SYS_ADMIN".to_owned(),
        ));
    }
    let backend = choose_backend(&policy)?;
    let mut log =
        EventLog::open(policy.events_file.as_deref()).map_err(|source| RunError::Events {
            path: policy.events_file.clone().unwrap_or_default(),
            source,
        })?;

    let starter = watch_starter(inv.starter, policy.parent_death)?;
    let signals = SignalFd::with_flags(
        &supervise::handled_signals(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(RunError::Signals)?;
    // Orphaned descendants of the child are reparented to claude-cage, which reaps them, so no
    // zombie keeps a pids charge or a process table slot.
    nix::sys::prctl::set_child_subreaper(true).map_err(RunError::Signals)?;

    // Commit: from here on, no path may leave the cage behind.
    let started = Instant::now();
    let (cage, pending, owner) = match backend {
        Backend::Cgroupfs(placement) => {
            for w in &placement.warnings {
                crate::warning!("{w}");
            }
            if policy.cgroupns && !placement.hierarchy.nsdelegate {
                crate::warning!(
                    "[cage] cgroupns hides the cgroup tree from the child but does not hold it in: {} is mounted without nsdelegate, so the kernel lets a privileged child move out of its namespace",
                    placement.hierarchy.mount.display()
                );
            }
            // Orphans of this bot (a supervisor that was SIGKILLed) are reaped before a new
            // cage starts: one directory read when there are none.
            for line in crate::cmd::reap::reap_bot(&placement.parent.join(&name)) {
                crate::note!("{line}");
            }
            let cage = Cage::create(&placement, &name, &policy)?;
            if let Some(c) = &credentials {
                if let Err(e) = cage.delegate_to(c.uid, c.gid) {
                    let _ = teardown(&cage, &Owner::Cgroupfs);
                    return Err(e.into());
                }
            }
            if policy.swap_max.is_some()
                && cage.applied.oom_group.is_some()
                && cage.applied.swap_max.is_none()
            {
                crate::warning!(
                    "memory.swap-max is not applied: this kernel has no swap accounting"
                );
            }
            let env = child_env(&cage.id, &cage.dir);
            let place = if policy.cgroupns {
                spawn::Place::Namespace {
                    cage: &cage.dir,
                    main: &cage.main,
                }
            } else {
                spawn::Place::Leaf(&cage.main)
            };
            match spawn::spawn(place, &path, &command, env, original_mask, credentials) {
                Ok(p) => (cage, p, Owner::Cgroupfs),
                Err(e) => {
                    if let Err(re) = teardown(&cage, &Owner::Cgroupfs) {
                        crate::warning!("{}", error_chain(&re));
                    }
                    return Err(e.into());
                }
            }
        }
        #[cfg(feature = "systemd")]
        Backend::Systemd { manager, hierarchy } => {
            let (cage, pending) = scope_cage(
                &manager,
                &hierarchy,
                &name,
                &policy,
                &path,
                &command,
                original_mask,
                credentials,
            )?;
            (cage, pending, Owner::Systemd(manager))
        }
    };
    // The state file is written while the child waits for its go, so that a program never
    // runs in a cage that `ps`, `kill` and `reap` cannot attribute.
    let argv: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let record = state::Record {
        cage: cage.id.clone(),
        bot: name.clone(),
        cgroup: cage.dir.clone(),
        supervisor_pid: std::process::id() as i32,
        supervisor_start: state::start_time(Pid::this()).unwrap_or(0),
        child_pid: pending.pid.as_raw(),
        policy: policy.source.clone(),
        argv: argv.clone(),
        started_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        events: policy.events_file.clone(),
    };
    let state_file = match state::write(&state::own_dir(), &record) {
        Ok(p) => Some(p),
        Err(e) => {
            crate::warning!(
                "failed to write the state file in {}: {e}; `ps` will show the cage without its command",
                state::own_dir().display()
            );
            None
        }
    };
    let child = match pending.release() {
        Ok(c) => c,
        Err(e) => {
            if let Err(re) = teardown(&cage, &owner) {
                crate::warning!("{}", error_chain(&re));
            } else if let Some(p) = &state_file {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
    };
    if !cage.deferred.is_empty() {
        if let Err(e) = cage.enable_deferred() {
            crate::warning!("{}", error_chain(&e));
        }
    }
    log.set_cage(&cage.id, &name);
    log.emit(&Event::Start {
        pid: child.pid.as_raw(),
        cgroup: cage.dir.display().to_string(),
        program: path.display().to_string(),
        argv,
        limits: Limits::from(&cage.applied),
    });

    let (mut alerts, alert_warnings) = Alerts::arm(
        &policy.alerts,
        &cage,
        cage.applied.memory_high.and_then(Limit::bytes),
    );
    for w in alert_warnings {
        crate::warning!("{w}");
    }
    let lifetime = Lifetime {
        max_runtime: policy.max_runtime,
        stdin_eof_grace: policy.stdin_eof_grace,
        term_grace: policy.term_grace,
    };
    let outcome = match supervise::supervise(
        &child,
        &cage,
        &signals,
        lifetime,
        starter,
        &mut alerts,
        &mut log,
    ) {
        Ok(o) => o,
        Err(e) => {
            // The loop itself failed: end the cage rather than leave it unsupervised.
            crate::warning!("supervision failed: {e}; killing the cage");
            let _ = cage.kill();
            let mut status = None;
            while status.is_none() {
                let _ = nix::sys::wait::waitpid(child.pid, None).map(|s| match s {
                    nix::sys::wait::WaitStatus::Exited(_, c) => status = Some(ChildEnd::Exited(c)),
                    nix::sys::wait::WaitStatus::Signaled(_, s, _) => {
                        status = Some(ChildEnd::Signaled(s))
                    }
                    _ => {}
                });
            }
            Outcome {
                end: status.unwrap_or(ChildEnd::Signaled(Signal::SIGKILL)),
                cause: None,
                leftover: 0,
                killed_by_us: true,
                killed_for: None,
                counters: Counters::default(),
                peak: None,
            }
        }
    };
    let duration = started.elapsed();
    let mut outcome = outcome;
    settle_oom_group(&cage, &mut outcome);

    // End: kill whatever is left, wait until the cage is empty, read the final figures, remove.
    // Counters only grow: the larger of what supervision saw and what the cage says now (a
    // systemd scope may already be gone, and then reads as zero).
    let counters = cage.counters().merge(outcome.counters);
    let bot_oom = cage.bot_oom();
    let cleanup = teardown_with(&cage, &owner, || {
        let mut ignored = None;
        supervise::reap(child.pid, &mut ignored, |pid, st| {
            alerts.reaped(pid, st);
        });
    });
    let peak = cleanup.as_ref().ok().copied().flatten().or(outcome.peak);
    match &cleanup {
        // The state file stays while the cage does, so that `reap` finds it.
        Err(e) => crate::warning!("{}", error_chain(e)),
        Ok(_) => {
            if let Some(p) = &state_file {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    let end = End {
        outcome: &outcome,
        counters,
        bot_oom,
        peak,
        duration,
        policy: &policy,
        applied: &cage.applied,
    };
    let (reason, status) = end.conclude();
    let exit_line = log.emit(&Event::Exit(ExitRecord {
        reason,
        status,
        signal: match outcome.end {
            ChildEnd::Signaled(s) => Some(s as i32),
            ChildEnd::Exited(_) => None,
        },
        duration_ms: duration.as_millis() as u64,
        memory_peak: peak,
        oom_kills: counters.oom_kill,
        leftover: outcome.leftover,
    }));
    let abnormal = !(reason == Reason::Exited && status == 0);
    if abnormal {
        crate::error!("{}: {}", cage.id, end.explain(reason));
    }
    // The hook hears of an abnormal end; claude-cage waits for every hook (each bounded by
    // its timeout) so that none is left behind.
    alerts.finish(abnormal.then_some(exit_line));
    Ok(status)
}

/// How long the kernel's group OOM kill is given to empty the cage by itself.
const OOM_GROUP_SETTLE: Duration = Duration::from_secs(2);

/// A group OOM kill (`memory.oom.group`) signals the members one by one, from the task that hit
/// the limit (mm/oom_kill.c, `mem_cgroup_scan_tasks`): the child can die and be reaped while the
/// kernel is still at it, and what it has yet to kill would be counted as leftovers, its kills
/// missing from `oom_kill`. So when the child died of SIGKILL that claude-cage did not send and
/// the OOM killer was at work in a cage with the group kill on, the group is given a moment to
/// empty by itself before the leftovers are counted and the counters read; what is still there
/// after that is killed as usual. The group is the cage, or its `main` where a systemd scope
/// holds a holder (see `scope_cage`).
fn settle_oom_group(cage: &Cage, outcome: &mut Outcome) {
    if outcome.end != ChildEnd::Signaled(Signal::SIGKILL)
        || outcome.killed_by_us
        || cage.applied.oom_group != Some(true)
        || (outcome.counters.oom_kill == 0 && cage.counters().oom_kill == 0)
    {
        return;
    }
    let group = if cage.unit.is_some() {
        &cage.main
    } else {
        &cage.dir
    };
    if cgroup::wait_unpopulated(group, OOM_GROUP_SETTLE).unwrap_or(false) {
        outcome.leftover = cage.process_count();
    }
}

/// Kills and removes a cage, reaping zombies in between; returns `memory.peak` read before the
/// cgroup is gone. A scope is then stopped, which removes it.
fn teardown_with(
    cage: &Cage,
    owner: &Owner,
    mut reap: impl FnMut(),
) -> Result<Option<u64>, RunError> {
    if cage.populated()? {
        cage.kill()?;
    }
    let empty = cage.wait_empty(Duration::from_secs(10))?;
    reap();
    let peak = cage.memory_peak();
    if !empty {
        return Err(CgroupError::StillPopulated {
            path: cage.dir.clone(),
        }
        .into());
    }
    cage.remove()?;
    owner.release(cage)?;
    Ok(peak)
}

fn teardown(cage: &Cage, owner: &Owner) -> Result<(), RunError> {
    teardown_with(cage, owner, || {}).map(|_| ())
}

/// The child's environment: claude-cage's own, plus where it runs.
fn child_env(id: &str, dir: &Path) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| k != "CLAUDE_CAGE_ID" && k != "CLAUDE_CAGE_CGROUP")
        .chain([
            ("CLAUDE_CAGE_ID".into(), id.into()),
            ("CLAUDE_CAGE_CGROUP".into(), dir.as_os_str().to_owned()),
        ])
        .collect()
}

/// Resolves `[cage] user` and `group` into the credentials the child drops to.
fn credentials(policy: &Policy) -> Result<Option<sys::Credentials>, RunError> {
    use nix::unistd::{Gid, Group, Uid, User};
    let fail = RunError::Credentials;
    let Some(user) = &policy.user else {
        if policy.group.is_some() {
            return Err(fail("[cage] group needs [cage] user".to_owned()));
        }
        return Ok(None);
    };
    if !Uid::effective().is_root() {
        return Err(fail(format!(
            "[cage] user = {user:?} needs claude-cage to run as root"
        )));
    }
    let numeric = user.parse::<u32>().ok();
    let entry = match numeric {
        // A uid needs no passwd entry (a minimal container may have no /etc/passwd at all).
        Some(uid) => User::from_uid(Uid::from_raw(uid)).unwrap_or(None),
        None => User::from_name(user)
            .map_err(|e| fail(format!("failed to look up user {user:?}: {e}")))?,
    };
    let uid = match (&entry, numeric) {
        (Some(u), _) => u.uid.as_raw(),
        (None, Some(uid)) => uid,
        (None, None) => return Err(fail(format!("no user {user:?} on this system"))),
    };
    let gid = match &policy.group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(g)
                .map_err(|e| fail(format!("failed to look up group {g:?}: {e}")))?
                .ok_or_else(|| fail(format!("no group {g:?} on this system")))?
                .gid
                .as_raw(),
        },
        None => entry.as_ref().map(|u| u.gid.as_raw()).ok_or_else(|| {
            fail(format!(
                "uid {uid} has no passwd entry: set [cage] group too"
            ))
        })?,
    };
    let groups = match &entry {
        Some(u) => {
            let name =
                std::ffi::CString::new(u.name.clone()).map_err(|_| fail("bad user name".into()))?;
            nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| fail(format!("failed to read the groups of {user:?}: {e}")))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        None => vec![gid],
    };
    let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(40);
    Ok(Some(sys::Credentials {
        uid,
        gid,
        groups,
        cap_last,
    }))
}

/// Where cages are made, decided before anything is created.
enum Backend {
    Cgroupfs(cgroup::Placement),
    #[cfg(feature = "systemd")]
    Systemd {
        manager: crate::systemd::Manager,
        hierarchy: Hierarchy,
    },
}

/// Who owns a created cage's cgroup.
enum Owner {
    Cgroupfs,
    #[cfg(feature = "systemd")]
    Systemd(crate::systemd::Manager),
}

impl Owner {
    /// Gives the emptied cage back to its owner: nothing for cgroupfs (already removed), a
    /// stopped unit for systemd.
    fn release(&self, cage: &Cage) -> Result<(), RunError> {
        match (self, &cage.unit) {
            #[cfg(feature = "systemd")]
            // systemd stops an emptied scope by itself and removes its cgroup
            // (CollectMode=inactive-or-failed); once that is done there is no job to wait for.
            (Owner::Systemd(m), Some(unit)) if cage.dir.exists() => {
                m.stop(unit).map_err(RunError::from)
            }
            _ => Ok(()),
        }
    }
}

/// Creates the cage as a transient scope of the service manager. systemd moves the cage's
/// holder (`sys::spawn_holder`) into the new scope; claude-cage moves it on into `<scope>/hold`,
/// enables the controllers for the scope's children (Delegate=yes makes them ours) and makes
/// `<scope>/main`. As root, the child then starts in `main` (clone3 into it, or into the scope
/// with its cgroup namespace); a user may not move a process out of its own cgroup into the
/// scope (that takes write access to `cgroup.procs` of their common ancestor), so there the
/// child is forked first and systemd moves it with the holder, and claude-cage moves it on into
/// `main`. Either way the child waits for its go. The holder keeps the scope from being removed
/// the moment the cage's last process exits, before its counters are read.
#[cfg(feature = "systemd")]
#[expect(
    clippy::too_many_arguments,
    reason = "the run's prepared pieces, each used once; a struct would only rename them"
)]
fn scope_cage(
    manager: &crate::systemd::Manager,
    h: &Hierarchy,
    name: &str,
    policy: &Policy,
    path: &Path,
    command: &[OsString],
    original_mask: SigSet,
    mut credentials: Option<sys::Credentials>,
) -> Result<(Cage, spawn::Pending), RunError> {
    use crate::cgroup::id::scope_name;
    use crate::policy::Controller;

    // The system manager serves root; a user's serves the user (`Manager::connect`).
    let moved_by_systemd = manager.user;

    if policy.bot_memory_max.is_some() || policy.bot_pids_max.is_some() {
        crate::warning!(
            "[bot] limits are not applied with the systemd backend: give the slice {} MemoryMax= and TasksMax= instead",
            policy.slice
        );
    }
    if policy.cgroupns && !h.nsdelegate {
        crate::warning!(
            "[cage] cgroupns hides the cgroup tree from the child but does not hold it in: {} is mounted without nsdelegate, so the kernel lets a privileged child move out of its namespace",
            h.mount.display()
        );
    }
    // Controllers systemd can give a scope: those of the root of the hierarchy.
    let root = cgroup::fs::words(&cgroup::fs::read(&h.mount, cgroup::fs::CONTROLLERS)?);
    for c in &policy.require {
        if !root.iter().any(|r| r == c.name()) {
            return Err(CgroupError::Unavailable {
                controller: c.name(),
                why: format!(
                    "the cgroup v2 hierarchy at {} has no {c} controller",
                    h.mount.display()
                ),
            }
            .into());
        }
    }
    let description = format!(
        "claude-cage {name}: {}",
        command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let pid = std::process::id();
    for serial in 1..=16 {
        let id = cgroup::id::cage_id(name, pid, serial);
        let scope = scope_name(&id);
        let dir = h.dir(&manager.scope_cgroup(&policy.slice, &scope)?);
        if dir.exists() {
            // Never join an existing cage.
            continue;
        }
        let holder = Holder::spawn(&id)
            .map_err(|source| RunError::from(spawn::SpawnError::Clone { source }))?;
        let mut early = None;
        if moved_by_systemd {
            early = Some(spawn::spawn(
                spawn::Place::Own,
                path,
                command,
                child_env(&id, &dir),
                original_mask,
                credentials.take(),
            )?);
        }
        let pids: Vec<Pid> = std::iter::once(holder.0)
            .chain(early.as_ref().map(|p| p.pid))
            .collect();
        if let Err(e) = manager.start_scope(&scope, &policy.slice, &description, &pids, policy) {
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
        let mut finish = |cage: &mut Cage| -> Result<spawn::Pending, RunError> {
            let expected = format!("0::{}", h.relative(&cage.dir));
            for &pid in &pids {
                let actual =
                    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
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
            if let Some(p) = &early {
                cgroup::fs::write(&cage.main, cgroup::fs::PROCS, &p.pid.to_string())?;
            }
            let available =
                cgroup::fs::words(&cgroup::fs::read(&cage.dir, cgroup::fs::CONTROLLERS)?);
            let wanted: Vec<Controller> = Controller::ALL
                .into_iter()
                .filter(|c| available.iter().any(|a| a == c.name()))
                .collect();
            // With a cgroup namespace the child is cloned into the scope itself (the
            // namespace's root) and moves on into `main`; a cgroup with controllers enabled for
            // its children may hold no process, so they are enabled once it has moved.
            if policy.cgroupns {
                cage.deferred = wanted.clone();
            } else {
                for c in &wanted {
                    cgroup::fs::write(
                        &cage.dir,
                        cgroup::fs::SUBTREE_CONTROL,
                        &format!("+{}", c.name()),
                    )?;
                }
            }
            let a = &mut cage.applied;
            if wanted.contains(&Controller::Memory) {
                a.memory_high = policy.memory_high;
                a.memory_max = policy.memory_max;
                a.swap_max = policy.swap_max;
                // systemd has no property for memory.oom.group on a scope before v253; the file
                // is written directly. A group kill spares only a holder the OOM killer ignores
                // (`Holder::spawn`, which takes root). A user's holder would die with the group,
                // and the user's manager would remove the emptied scope before its counters are
                // read, so the OOM kill would go unreported. For a user the group is `main`
                // instead: Claude and everything it starts there; a cgroup Claude makes beside
                // `main` then loses only the process the OOM killer picks (mm/memcontrol.c,
                // mem_cgroup_get_oom_group: the highest cgroup with oom.group set, from the
                // victim's up to the one whose limit was hit).
                let group = if holder.1 { &cage.dir } else { &cage.main };
                if cgroup::fs::write(
                    group,
                    cgroup::fs::MEMORY_OOM_GROUP,
                    if policy.oom_group { "1" } else { "0" },
                )
                .is_ok()
                {
                    a.oom_group = Some(policy.oom_group);
                } else if policy.oom_group {
                    crate::warning!(
                        "memory.oom-group is not applied: {} is not writable here",
                        group.join(cgroup::fs::MEMORY_OOM_GROUP).display()
                    );
                }
            }
            if wanted.contains(&Controller::Pids) {
                a.pids_max = policy.pids_max;
            }
            if wanted.contains(&Controller::Cpu) {
                a.cpu_max = policy.cpu_max.map(|c| c.to_cgroup_value());
                a.cpu_weight = policy.cpu_weight;
            }
            if let Some(p) = early.take() {
                return Ok(p);
            }
            let place = if policy.cgroupns {
                spawn::Place::Namespace {
                    cage: &cage.dir,
                    main: &cage.main,
                }
            } else {
                spawn::Place::Leaf(&cage.main)
            };
            Ok(spawn::spawn(
                place,
                path,
                command,
                child_env(&cage.id, &cage.dir),
                original_mask,
                credentials.take(),
            )?)
        };
        return match finish(&mut cage) {
            Ok(pending) => {
                // The holder now lives as long as the scope: the teardown's kill ends it.
                std::mem::forget(holder);
                Ok((cage, pending))
            }
            Err(e) => {
                if let Some(p) = early {
                    p.cancel();
                }
                drop(holder);
                let _ = teardown(&cage, &Owner::Systemd(manager.clone()));
                Err(e)
            }
        };
    }
    Err(CgroupError::Placement(format!("could not find a free cage id for bot {name}")).into())
}

/// A scope's holder until the cage is made: dropped, it is killed and reaped, so a failed
/// start leaves no process behind. The flag: whether the OOM killer spares it.
#[cfg(feature = "systemd")]
struct Holder(Pid, bool);

#[cfg(feature = "systemd")]
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

#[cfg(feature = "systemd")]
impl Drop for Holder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

/// `[cage] backend`: "auto" is cgroupfs where a parent is given or delegated, or where systemd
/// does not run this machine; the systemd backend otherwise.
fn choose_backend(policy: &Policy) -> Result<Backend, RunError> {
    let h = Hierarchy::discover()?;
    if !wants_systemd(policy, &h) {
        let parent = cgroup::choose_parent(&h, &policy.parent)?;
        return Ok(Backend::Cgroupfs(cgroup::plan(h, parent, policy)?));
    }
    #[cfg(feature = "systemd")]
    {
        let manager = crate::systemd::Manager::connect()?;
        Ok(Backend::Systemd {
            manager,
            hierarchy: h,
        })
    }
    #[cfg(not(feature = "systemd"))]
    Err(RunError::NoSystemd)
}

/// Whether the policy's backend is systemd, "auto" resolved on this host.
pub fn wants_systemd(policy: &Policy, h: &Hierarchy) -> bool {
    match policy.backend {
        policy::Backend::Cgroupfs => false,
        policy::Backend::Systemd => true,
        policy::Backend::Auto => {
            matches!(policy.parent, policy::Parent::Auto)
                && Path::new("/run/systemd/system").is_dir()
                && h.own != "/"
                && cgroup::choose_parent(h, &policy.parent).is_err()
        }
    }
}

/// Opens a pidfd on the process that started claude-cage, so that its death wakes the poll
/// loop. Checking the parent pid again after opening closes the race with a parent that died
/// just before: its pid might already name another process.
fn watch_starter(pid: Pid, mode: ParentDeath) -> Result<Option<Starter>, RunError> {
    if mode == ParentDeath::Ignore || pid.as_raw() <= 1 {
        return Ok(None);
    }
    let pidfd = sys::pidfd_open(pid);
    if nix::unistd::getppid() != pid {
        return Err(RunError::StarterGone(pid));
    }
    match pidfd {
        Ok(pidfd) => Ok(Some(Starter { pid, pidfd })),
        // Kernels before 5.3 have no pidfd_open: parent-death cannot be watched there.
        Err(e) => {
            crate::warning!("parent-death is not enforced: pidfd_open failed: {e}");
            Ok(None)
        }
    }
}

/// Resolves the policy file for shim mode: $CLAUDE_CAGE_POLICY, else
/// $XDG_CONFIG_HOME/claude-cage/policy.toml (or ~/.config/claude-cage/policy.toml), else
/// /etc/claude-cage/policy.toml, else the built-in default.
pub fn shim_policy() -> PolicySource {
    if let Some(p) = std::env::var_os("CLAUDE_CAGE_POLICY").filter(|p| !p.is_empty()) {
        return PolicySource::File(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    let candidates = config
        .map(|c| c.join("claude-cage/policy.toml"))
        .into_iter()
        .chain([PathBuf::from("/etc/claude-cage/policy.toml")]);
    for c in candidates {
        if c.exists() {
            return PolicySource::File(c);
        }
    }
    PolicySource::Default
}
