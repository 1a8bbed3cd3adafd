//! The `[alerts] exec` hook, run as root beside a cage: bounded in number, in time and in what
//! it can leave behind.
//!
//! - At most one hook runs per kind of event (`oom-kill`, `pressure`, …) per cage. Events of a
//!   kind that come while its hook runs are coalesced: when the hook ends, one more runs with the
//!   latest line, and `CLAUDE_CAGE_COALESCED` says how many lines it stands for. Fifty OOM kills
//!   start at most one hook at a time.
//! - Each hook runs in a cgroup of its own, a child of claude-cage's own cgroup (beside the
//!   cages, never in one), which it enters before it execs. When it ends or its `exec-timeout`
//!   runs out the whole cgroup is killed (`cgroup.kill`) and removed, so a hook that calls
//!   setsid(2) or double-forks does not live on. Where claude-cage may not make that cgroup (a
//!   user without delegation), the hook's process group is killed instead, and a warning says
//!   once that descendants which leave it are not.
//! - The hook's environment is not claude-cage's: `PATH`, `CLAUDE_CAGE_EVENT`,
//!   `CLAUDE_CAGE_COALESCED`, and only the variables `[alerts] env` names, so the bot's API keys
//!   do not reach it unless the policy says so.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroup::{Hierarchy, fs, wait_unpopulated};

/// The `PATH` a hook gets when claude-cage has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a killed hook's cgroup is given to empty before it is left for the next start.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(2);

/// One hook, running.
struct Running {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    deadline: Instant,
    /// Its cgroup, or `None` where none could be made.
    cgroup: Option<PathBuf>,
    killed: bool,
    /// The read end of its stderr (a pipe: what the hook writes beyond the pipe's 64 KiB
    /// blocks it until its timeout), read when it has ended.
    stderr: Option<OwnedFd>,
}

/// The most of a hook's stderr that its failure's warning quotes: the end of it.
const STDERR_TAIL: usize = 512;

/// The end of what a hook wrote on stderr, on one line, escaped; empty if nothing.
fn stderr_tail(fd: Option<&OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    // Non-blocking: the writers are gone (the hook's cgroup was killed), or what is there now
    // is all there is.
    while let Ok(n) = nix::unistd::read(fd.as_raw_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        if all.len() > 1 << 16 {
            all.drain(..all.len() - STDERR_TAIL);
        }
    }
    let text = String::from_utf8_lossy(&all);
    let text: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = text.join(" | ");
    let start = joined
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| joined.len() - i <= STDERR_TAIL)
        .unwrap_or(joined.len());
    crate::error::printable(&joined[start..])
}

/// The hooks of one kind of event.
#[derive(Default)]
struct Kind {
    running: Option<Running>,
    /// The latest line that came while the hook ran, and how many lines it stands for.
    pending: Option<(Vec<u8>, u64)>,
}

/// The hooks of one cage.
pub struct Hooks {
    argv: Vec<String>,
    timeout: Duration,
    env: Vec<(OsString, OsString)>,
    /// Where hook cgroups are made: claude-cage's own cgroup, if it may write there.
    parent: Option<PathBuf>,
    serial: u32,
    kinds: BTreeMap<String, Kind>,
    warned_no_cgroup: bool,
}

impl Hooks {
    /// The hooks of a cage; `allow` names the variables of claude-cage's environment that a
    /// hook gets.
    pub fn new(argv: &[String], timeout: Duration, allow: &[String]) -> Hooks {
        let mut env: Vec<(OsString, OsString)> = vec![(
            "PATH".into(),
            std::env::var_os("PATH")
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| DEFAULT_PATH.into()),
        )];
        for name in allow {
            if let Some(v) = std::env::var_os(name) {
                env.push((name.into(), v));
            }
        }
        let parent = (!argv.is_empty())
            .then(|| Hierarchy::discover().ok())
            .flatten()
            .map(|h| h.dir(&h.own));
        Hooks {
            argv: argv.to_vec(),
            timeout,
            env,
            parent,
            serial: 0,
            kinds: BTreeMap::new(),
            warned_no_cgroup: false,
        }
    }

    /// Runs the hook for an event of kind `what`, or coalesces it with the one running.
    pub fn fire(&mut self, line: Vec<u8>, what: &str) {
        if self.argv.is_empty() {
            return;
        }
        let kind = self.kinds.entry(what.to_owned()).or_default();
        if kind.running.is_some() {
            let n = kind.pending.as_ref().map_or(0, |(_, n)| *n);
            kind.pending = Some((line, n + 1));
            return;
        }
        self.start(line, 1, what);
    }

    fn start(&mut self, line: Vec<u8>, count: u64, what: &str) {
        let cgroup = self.make_cgroup();
        let (program, args) = self.argv.split_first().expect("a hook program");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CLAUDE_CAGE_EVENT", what)
            .env("CLAUDE_CAGE_COALESCED", count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0);
        let stderr = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
            Ok((read, write)) => {
                // The hook's end blocks: a hook is not written for a non-blocking stderr.
                let _ = nix::fcntl::fcntl(
                    write.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
                );
                cmd.stderr(Stdio::from(write));
                Some(read)
            }
            Err(_) => {
                cmd.stderr(Stdio::null());
                None
            }
        };
        if let Some((_, procs)) = &cgroup {
            // The hook moves itself into its cgroup before it execs: nothing it starts is ever
            // outside it.
            match procs.try_clone() {
                Ok(fd) => crate::sys::exec_in_cgroup(&mut cmd, fd),
                Err(e) => crate::warning!("alert hook for {what}: {e}"),
            }
        }
        let cgroup = cgroup.map(|(dir, _)| dir);
        match cmd.spawn() {
            Ok(mut child) => {
                // One line is far below a pipe's capacity: this write does not block.
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(&line);
                }
                let pid = Pid::from_raw(child.id() as i32);
                let running = Running {
                    pid,
                    pidfd: crate::sys::pidfd_open(pid).ok(),
                    // A timeout past what Instant holds is never reached (the policy bounds it).
                    deadline: Instant::now()
                        .checked_add(self.timeout)
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
                    cgroup,
                    killed: false,
                    stderr,
                };
                self.kinds.entry(what.to_owned()).or_default().running = Some(running);
            }
            Err(e) => {
                if let Some(dir) = &cgroup {
                    remove_cgroup(dir);
                }
                crate::warning!("alert hook {program} for {what} did not start: {e}");
            }
        }
    }

    /// A new cgroup for a hook and its `cgroup.procs`, opened; `None` where none can be made.
    fn make_cgroup(&mut self) -> Option<(PathBuf, OwnedFd)> {
        let parent = self.parent.as_ref()?;
        self.serial += 1;
        let dir = parent.join(format!(
            "claude-cage-hook-{}-{}",
            std::process::id(),
            self.serial
        ));
        let made = std::fs::create_dir(&dir).and_then(|()| {
            OpenOptions::new()
                .write(true)
                .open(dir.join(fs::PROCS))
                .map(OwnedFd::from)
        });
        match made {
            Ok(fd) => Some((dir, fd)),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                if !self.warned_no_cgroup {
                    self.warned_no_cgroup = true;
                    crate::warning!(
                        "alert hooks run without a cgroup of their own ({}: {e}): a hook's descendants that leave its process group are not killed with it",
                        dir.display()
                    );
                }
                None
            }
        }
    }

    /// The earliest timeout of a running hook.
    pub fn deadline(&self) -> Option<Instant> {
        self.running()
            .filter(|h| !h.killed)
            .map(|h| h.deadline)
            .min()
    }

    fn running(&self) -> impl Iterator<Item = &Running> {
        self.kinds.values().filter_map(|k| k.running.as_ref())
    }

    /// Kills the hooks whose timeout ran out; they are reaped (and their cgroups removed) by
    /// [`Hooks::reaped`].
    pub fn on_time(&mut self, now: Instant) {
        let timeout = self.timeout;
        for (what, k) in &mut self.kinds {
            if let Some(h) = k
                .running
                .as_mut()
                .filter(|h| !h.killed && now >= h.deadline)
            {
                crate::warning!("alert hook for {what} ran longer than {timeout:?}; killed it");
                kill(h);
                h.killed = true;
            }
        }
    }

    /// Takes note of a reaped process; returns true if it was a hook. Its cgroup is killed and
    /// removed, and the next coalesced hook of its kind starts.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        let Some(what) = self
            .kinds
            .iter()
            .find(|(_, k)| k.running.as_ref().is_some_and(|h| h.pid == pid))
            .map(|(w, _)| w.clone())
        else {
            return false;
        };
        let kind = self.kinds.get_mut(&what).expect("found above");
        let hook = kind.running.take().expect("found above");
        if let Some(dir) = &hook.cgroup {
            remove_cgroup(dir);
        }
        let said = |why: String| {
            let tail = stderr_tail(hook.stderr.as_ref());
            if tail.is_empty() {
                crate::warning!("{why}");
            } else {
                crate::warning!("{why}; its stderr: {tail}");
            }
        };
        match status {
            WaitStatus::Exited(_, 0) => {}
            WaitStatus::Exited(_, c) => {
                said(format!("alert hook for {what} exited with status {c}"))
            }
            WaitStatus::Signaled(_, s, _) if !hook.killed => {
                said(format!("alert hook for {what} was killed by {s}"))
            }
            _ if hook.killed => {
                let tail = stderr_tail(hook.stderr.as_ref());
                if !tail.is_empty() {
                    crate::warning!(
                        "alert hook for {what} (killed at its timeout) wrote on stderr: {tail}"
                    );
                }
            }
            _ => {}
        }
        if let Some((line, n)) = kind.pending.take() {
            self.start(line, n, &what);
        }
        true
    }

    /// Waits for every hook still running (and the coalesced ones after them), each until its
    /// own timeout, so none is left behind.
    pub fn finish(&mut self) {
        while self.running().next().is_some() {
            let now = Instant::now();
            let next = self.deadline().unwrap_or(now);
            let ms = next
                .saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128 - 1) as i32
                + 1;
            let mut fds: Vec<PollFd> = self
                .running()
                .filter_map(|h| h.pidfd.as_ref())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            // Without pidfds (kernels before 5.3) this waits for the earliest timeout alone.
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            );
            drop(fds);
            let pids: Vec<Pid> = self.running().map(|h| h.pid).collect();
            for pid in pids {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(st) => {
                        self.reaped(pid, st);
                    }
                    // Already reaped elsewhere.
                    Err(_) => {
                        self.reaped(pid, WaitStatus::Exited(pid, 0));
                    }
                }
            }
            self.on_time(Instant::now());
        }
    }
}

/// Kills a hook with everything it started: its cgroup, or its process group.
fn kill(h: &Running) {
    if let Some(dir) = &h.cgroup {
        let _ = fs::write(dir, fs::KILL, "1");
    }
    let _ = killpg(h.pid, Signal::SIGKILL);
}

/// Kills what is left in a hook's cgroup and removes it.
fn remove_cgroup(dir: &Path) {
    let _ = fs::write(dir, fs::KILL, "1");
    let _ = wait_unpopulated(dir, EMPTY_TIMEOUT);
    if let Err(e) = std::fs::remove_dir(dir) {
        if !fs::gone(&e) {
            crate::warning!(
                "failed to remove the alert hook's cgroup {}: {e}",
                dir.display()
            );
        }
    }
}
