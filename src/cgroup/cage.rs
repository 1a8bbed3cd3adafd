//! One cage: creating `<parent>/<bot>/<cage-id>/main` with the policy's limits (written by
//! `limits`), reading its counters, and killing and removing it bottom-up.
//!
//! Kernel rules that shape this file (Documentation/admin-guide/cgroup-v2.rst):
//! - "No internal process constraint": a non-root cgroup that holds processes cannot enable
//!   controllers for its children (EBUSY). So the bot's cgroup and the cage never hold a
//!   process; the child runs in the leaf `main`.
//! - Controllers are only available in a cgroup whose parent lists them in
//!   `cgroup.subtree_control`.
//! - `cgroup.kill` (since 5.14) kills the whole subtree and handles processes forking meanwhile.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fs::{self, *};
use super::limits::{self, Applied, enable, setup_bot};
use super::{CgroupError, Placement};
use crate::policy::{Controller, Policy};

/// Counters the kernel keeps for a cage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `memory.events high`: times the cage was throttled above memory.high.
    pub high: u64,
    /// `memory.events oom`: times the cage's own memory.max was hit and reclaim failed.
    pub oom: u64,
    /// `memory.events max`: times the cage's usage was about to exceed memory.max (each comes
    /// before reclaim, and before an OOM kill).
    pub max: u64,
    /// `memory.events oom_kill`: processes in the cage killed by any OOM killer.
    pub oom_kill: u64,
    /// `pids.events max`: forks refused by pids.max.
    pub pids_max: u64,
}

impl Counters {
    /// The larger of each counter: counters only grow, and a cage whose directory is already
    /// gone (a systemd scope stopped once empty) reads as zero, so what was seen before stands.
    pub fn merge(self, other: Counters) -> Counters {
        Counters {
            high: self.high.max(other.high),
            oom: self.oom.max(other.oom),
            max: self.max.max(other.max),
            oom_kill: self.oom_kill.max(other.oom_kill),
            pids_max: self.pids_max.max(other.pids_max),
        }
    }
}

/// A created cage: `<parent>/<bot>/<id>` with the child's leaf `main`.
#[derive(Debug)]
pub struct Cage {
    pub id: String,
    /// The systemd scope that owns `dir`, for the systemd backend: then `dir` and `bot_dir`
    /// (the slice) are systemd's, and only what is inside `dir` is claude-cage's to remove.
    pub unit: Option<String>,
    pub bot_dir: PathBuf,
    pub dir: PathBuf,
    pub main: PathBuf,
    pub applied: Applied,
    /// Controllers to enable for the cage's children once its child has moved into `main`.
    pub deferred: Vec<Controller>,
}

/// How often cage creation retries when a concurrent run removes the bot cgroup under it, or an
/// old cage holds the id.
const CREATE_ATTEMPTS: u32 = 16;

impl Cage {
    /// Creates the bot's cgroup (if missing) and a new cage in it with the policy's limits.
    /// An existing cage directory is never joined: the next id is tried. On any error, what was
    /// created is removed: the cage, and the bot's cgroup if this call made it and no other
    /// cage has moved in since. The kernel may refuse any mkdir after the first, not only with
    /// EEXIST or ENOENT: the parent's `cgroup.max.descendants` or `cgroup.max.depth` refuses a
    /// cage or its `main` with EAGAIN (Documentation/admin-guide/cgroup-v2.rst).
    pub fn create(place: &Placement, name: &str, policy: &Policy) -> Result<Cage, CgroupError> {
        let pid = std::process::id();
        enable(&place.parent, &place.controllers)?;
        let bot_dir = place.parent.join(name);
        let mut serial = 1;
        let mut created_bot = false;
        for _ in 0..CREATE_ATTEMPTS {
            // Once made by this call, the bot's cgroup stays this call's to remove, even when a
            // later attempt finds it there.
            created_bot |= mkdir(&bot_dir)?;
            let setup_bot = setup_bot(&bot_dir, place, policy);
            if let Err(e) = setup_bot {
                // A concurrent run of the same bot removed its (empty) cgroup under us: the
                // kernel answers ENOENT, or ENODEV while the cgroup is being destroyed.
                if vanished(&e) {
                    continue;
                }
                if created_bot {
                    let _ = remove_dir_retrying(&bot_dir);
                }
                return Err(e);
            }
            let id = super::id::cage_id(name, pid, serial);
            let dir = bot_dir.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    serial += 1;
                    continue;
                }
                // A concurrent run removed the (empty) bot cgroup between our mkdir and this one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    if created_bot {
                        remove_bot_if_empty(&bot_dir);
                    }
                    return Err(CgroupError::Create { path: dir, source });
                }
            }
            let mut cage = Cage {
                id,
                unit: None,
                main: dir.join(fs::MAIN),
                dir,
                bot_dir: bot_dir.clone(),
                applied: Applied::default(),
                deferred: Vec::new(),
            };
            match cage.setup(place, policy) {
                Ok(()) => return Ok(cage),
                Err(e) => {
                    let _ = cage.remove();
                    return Err(e);
                }
            }
        }
        if created_bot {
            remove_bot_if_empty(&bot_dir);
        }
        Err(CgroupError::Placement(format!(
            "could not create a new cage under {} after {CREATE_ATTEMPTS} attempts",
            bot_dir.display()
        )))
    }

    fn setup(&mut self, place: &Placement, policy: &Policy) -> Result<(), CgroupError> {
        self.applied = limits::for_cage(policy, &place.controllers);
        limits::write_cage(&self.dir, &mut self.applied)?;
        limits::write_nesting(&self.dir, policy);
        if place.controllers.contains(&Controller::Memory) {
            limits::write_oom_group(&self.dir, policy.oom_group)?;
            self.applied.oom_group = Some(policy.oom_group);
        }
        // The cage enables its controllers for its own children, so that a cgroup the child
        // creates beside `main` (Claude Code does) can be limited too; it is inside the cage's
        // budget either way.
        // With a cgroup namespace the child starts in the cage itself (the namespace's root)
        // and moves into `main`; the kernel's no-internal-process rule allows that only while
        // the cage enables no controller for its children, so that waits for `enable_deferred`.
        if policy.cgroupns {
            self.deferred = place.controllers.clone();
        } else {
            enable(&self.dir, &place.controllers)?;
        }
        std::fs::create_dir(&self.main).map_err(|source| CgroupError::Create {
            path: self.main.clone(),
            source,
        })?;
        mark(&self.dir);
        Ok(())
    }

    /// An existing cage directory, for the operator commands.
    pub fn at(dir: PathBuf) -> Cage {
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A systemd scope: its own directory is systemd's (see `remove`).
        let (id, unit) = match super::id::scope_cage_id(&dir_name) {
            Some(id) => (id.to_owned(), Some(dir_name.clone())),
            None => (dir_name, None),
        };
        let bot_dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        Cage {
            id,
            unit,
            main: dir.join(fs::MAIN),
            bot_dir,
            dir,
            applied: Applied::default(),
            deferred: Vec::new(),
        }
    }

    /// Kills the cage, waits until it is empty and removes it (and the bot's cgroup when it is
    /// the last cage). Returns how many processes were killed.
    pub fn kill_and_remove(&self, timeout: Duration) -> Result<usize, CgroupError> {
        let n = self.process_count();
        if n > 0 {
            self.kill()?;
        }
        if !self.wait_empty(timeout)? {
            return Err(CgroupError::StillPopulated {
                path: self.dir.clone(),
            });
        }
        self.remove()?;
        Ok(n)
    }

    /// Enables the controllers `setup` deferred (see there); the child is in `main` by now.
    pub fn enable_deferred(&self) -> Result<(), CgroupError> {
        enable(&self.dir, &self.deferred)
    }

    /// Gives the cage's directories to the user the child runs as, the way systemd delegates:
    /// the directories and `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control`, so
    /// the child can make and use cgroups inside its cage (Claude Code does). The limit files
    /// stay root's: the child cannot raise its own limits, and any cgroup it makes is inside
    /// them.
    pub fn delegate_to(&self, uid: u32, gid: u32) -> Result<(), CgroupError> {
        for dir in [&self.dir, &self.main] {
            for f in ["", PROCS, THREADS, SUBTREE_CONTROL] {
                let p = if f.is_empty() {
                    dir.clone()
                } else {
                    dir.join(f)
                };
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|source| {
                    CgroupError::Write {
                        path: p.clone(),
                        value: format!("owner {uid}:{gid}"),
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Reads the cage's counters; files this kernel lacks count as zero.
    pub fn counters(&self) -> Counters {
        let mem = fs::read_optional(&self.dir, MEMORY_EVENTS)
            .ok()
            .flatten()
            .unwrap_or_default();
        Counters {
            high: fs::keyed(&mem, "high").unwrap_or(0),
            oom: fs::keyed(&mem, "oom").unwrap_or(0),
            max: fs::keyed(&mem, "max").unwrap_or(0),
            oom_kill: fs::keyed(&mem, "oom_kill").unwrap_or(0),
            pids_max: self.refused_forks(),
        }
    }

    /// Forks refused by pids.max in the cage. Before Linux 6.11 (and without the
    /// `pids_localevents` mount option after it) the kernel counts a refused fork in the
    /// `pids.events` of the cgroup whose process forked, not of the cgroup whose limit refused
    /// it; newer kernels count it hierarchically. So the cage's own counter is compared with the
    /// sum over its descendants, and the larger is the count.
    fn refused_forks(&self) -> u64 {
        let max_in = |d: &Path| {
            fs::read_optional(d, PIDS_EVENTS)
                .ok()
                .flatten()
                .and_then(|t| fs::keyed(&t, "max"))
                .unwrap_or(0)
        };
        let own = max_in(&self.dir);
        let below: u64 = fs::descendants(&self.dir).iter().map(|d| max_in(d)).sum();
        own.max(below)
    }

    /// `memory.events oom_kill` alone: the one counter a snapshot compares before and after.
    pub fn oom_kills(&self) -> u64 {
        fs::read_optional(&self.dir, MEMORY_EVENTS)
            .ok()
            .flatten()
            .and_then(|t| fs::keyed(&t, "oom_kill"))
            .unwrap_or(0)
    }

    /// The bot cgroup's own `oom` counter (`memory.events.local`; `memory.events` before 5.2,
    /// which also counts its cages' own limits): how often the bot's aggregate limit was hit.
    /// It counts over the bot cgroup's life, which outlasts a cage (a systemd bot slice stays):
    /// a cage compares it with its value at the cage's start.
    pub fn bot_oom(&self) -> u64 {
        let mem = fs::read_optional(&self.bot_dir, fs::MEMORY_EVENTS_LOCAL)
            .ok()
            .flatten()
            .or_else(|| {
                fs::read_optional(&self.bot_dir, MEMORY_EVENTS)
                    .ok()
                    .flatten()
            })
            .unwrap_or_default();
        fs::keyed(&mem, "oom").unwrap_or(0)
    }

    /// `memory.peak` (since 5.19), or `None`.
    pub fn memory_peak(&self) -> Option<u64> {
        fs::read_number(&self.dir, MEMORY_PEAK)
    }

    /// `cpu.stat usage_usec`: CPU time used by everything in the cage, or `None`.
    pub fn cpu_usage_usec(&self) -> Option<u64> {
        fs::read_optional(&self.dir, CPU_STAT)
            .ok()
            .flatten()
            .and_then(|t| fs::keyed(&t, "usage_usec"))
    }

    /// How many processes are in the cage, its nested cgroups included. A cage that
    /// `cgroup.events` says is empty holds none: one read instead of a walk of its cgroups.
    pub fn process_count(&self) -> usize {
        if let Ok(false) = self.populated() {
            return 0;
        }
        fs::member_dirs(&self.dir)
            .iter()
            .map(|d| fs::read(d, PROCS).map(|t| fs::pids(&t).len()).unwrap_or(0))
            .sum()
    }

    /// Whether any process is left in the cage (`cgroup.events populated`).
    /// A cage whose directory is gone (systemd removes an empty scope at once) is empty.
    pub fn populated(&self) -> Result<bool, CgroupError> {
        match fs::read_optional(&self.dir, EVENTS)? {
            Some(t) => Ok(fs::keyed(&t, "populated").unwrap_or(0) != 0),
            None => Ok(false),
        }
    }

    /// Kills every process in the cage at once. `cgroup.kill` is atomic with respect to forks;
    /// on kernels before 5.14 every listed process is sent SIGKILL until the cage is empty.
    pub fn kill(&self) -> Result<(), CgroupError> {
        match write(&self.dir, KILL, "1") {
            Ok(()) => Ok(()),
            // The cgroup was removed after the file was opened: nothing is left in it to kill.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(())
            }
            // No cgroup.kill (before 5.14), or one this user may not write (a scope of the
            // user's service manager): signal every listed process until none is left.
            Err(CgroupError::Write { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                for _ in 0..100 {
                    if self.signal_each(nix::sys::signal::Signal::SIGKILL, true).0 == 0 {
                        break;
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `sig` to every process listed in the cage and the cgroups below it; returns how
    /// many were listed and how many of those the signal reached. With `with_holder` false, a
    /// scope's holder (`fs::HOLD`) is spared: it is claude-cage's, not the cage's.
    pub fn signal_each(&self, sig: nix::sys::signal::Signal, with_holder: bool) -> (usize, usize) {
        let dirs = if with_holder {
            std::iter::once(self.dir.clone())
                .chain(fs::descendants(&self.dir))
                .collect()
        } else {
            fs::member_dirs(&self.dir)
        };
        let (mut listed, mut reached) = (0, 0);
        for d in dirs {
            for pid in fs::pids(&fs::read(&d, PROCS).unwrap_or_default()) {
                listed += 1;
                if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok() {
                    reached += 1;
                }
            }
        }
        (listed, reached)
    }

    /// Waits until the cage is empty, woken by poll(2) on `cgroup.events` itself: kernfs
    /// reports a change of the file to a poller as POLLPRI (the kernel notifies on every change
    /// of `populated`). Unlike inotify this takes no inotify instance, of which a user has only
    /// 128 by default: hundreds of cages ending at once must never fail to clean up. Returns
    /// false if `timeout` ran out first.
    pub fn wait_empty(&self, timeout: Duration) -> Result<bool, CgroupError> {
        wait_unpopulated(&self.dir, timeout)
    }

    /// Removes the cage's cgroups bottom-up (those the child created included), then the bot's
    /// cgroup if no other cage is left in it.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut dirs = fs::descendants(&self.dir);
        dirs.reverse();
        // A scope's own directory and its slice are systemd's: stopping the unit removes them.
        if self.unit.is_none() {
            dirs.push(self.dir.clone());
        }
        for d in &dirs {
            remove_dir_retrying(d)?;
        }
        if self.unit.is_none() {
            remove_bot_if_empty(&self.bot_dir);
        }
        Ok(())
    }
}

/// Removes the bot's cgroup when no cage is left in it. A cage being created concurrently
/// makes rmdir fail (EBUSY) or recreates the bot cgroup afterwards; both are fine.
pub fn remove_bot_if_empty(bot_dir: &Path) {
    let has_children = std::fs::read_dir(bot_dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        })
        .unwrap_or(true);
    if !has_children {
        let _ = std::fs::remove_dir(bot_dir);
    }
}

/// Whether an error says the cgroup is gone or going (ENOENT, ENODEV).
pub(super) fn vanished(e: &CgroupError) -> bool {
    let source = match e {
        CgroupError::Read { source, .. }
        | CgroupError::Write { source, .. }
        | CgroupError::Create { source, .. } => source,
        _ => return false,
    };
    fs::gone(source)
}

/// Creates a cgroup; `Ok(false)` if it already existed.
fn mkdir(dir: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// rmdir with a bounded retry: right after a kill the kernel may still report EBUSY for a few
/// milliseconds while the last tasks are released.
fn remove_dir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_only_grow() {
        let seen = Counters {
            high: 5,
            oom: 1,
            max: 4,
            oom_kill: 2,
            pids_max: 0,
        };
        // A scope systemd already removed reads as zero: what was seen stands.
        assert_eq!(Counters::default().merge(seen), seen);
        let later = Counters {
            high: 7,
            oom: 1,
            max: 3,
            oom_kill: 1,
            pids_max: 3,
        };
        assert_eq!(
            later.merge(seen),
            Counters {
                high: 7,
                oom: 1,
                max: 4,
                oom_kill: 2,
                pids_max: 3,
            }
        );
    }

    /// An existing cage directory is read back as the cage it is: a systemd scope keeps its
    /// unit name and its own directory is systemd's.
    #[test]
    fn cages_found_in_the_tree() {
        let c = Cage::at(PathBuf::from("/cg/bots/bot/bot-42-1"));
        assert_eq!((c.id.as_str(), c.unit), ("bot-42-1", None));
        assert_eq!(c.main, Path::new("/cg/bots/bot/bot-42-1/main"));
        assert_eq!(c.bot_dir, Path::new("/cg/bots/bot"));
        let s = Cage::at(PathBuf::from(
            "/cg/claude-cage.slice/claude-cage-bot-42-1.scope",
        ));
        assert_eq!(s.id, "bot-42-1");
        assert_eq!(s.unit.as_deref(), Some("claude-cage-bot-42-1.scope"));
    }
}
