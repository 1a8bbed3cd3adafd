//! The supervisor: one thread, one `poll(2)` loop over a signalfd, the child's pidfd, the
//! cage's event files (POLLPRI), the starter's pidfd and stdin, with the nearest deadline as the
//! timeout. It forwards signals, enforces the lifetime settings, reports throttling, OOM
//! kills and refused forks as they happen, and returns when the child has been reaped.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::stat::{SFlag, fstat};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

mod deadlines;
mod idle;
mod watch;

use crate::alerts::Alerts;
use crate::cgroup::{Cage, Counters};
use crate::events::EventLog;
use crate::spawn::Child;
use crate::sys;
use deadlines::{Deadlines, timeout_until};
pub use idle::Verdict as IdleVerdict;
use watch::{Watch, report_counters, watch_counters};

/// Signals claude-cage passes on to the child.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Forwarded signals after which the cage is killed once `term-grace` has passed.
const TERMINATING: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// The signals claude-cage blocks from its first instruction and reads from a signalfd, so that
/// one arriving before the child exists is held, never lost.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    sys::with_raw_signal(
        &sys::with_raw_signal(&set, sys::kill_request_signal()),
        sys::limits_changed_signal(),
    )
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
    let mut blocked = handled_signals();
    blocked.add(Signal::SIGPIPE);
    blocked.add(Signal::SIGTTOU);
    // sigprocmask only fails for an invalid `how`, which this is not.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut original));
    original
}

/// Why claude-cage ended the cage itself, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Timeout,
    StdinClosed,
    ParentDied,
    Terminated(Signal),
    /// `claude-cage kill` asked for it.
    Killed,
    /// The cage's CPU use stayed below `idle-cpu` for `idle-timeout`.
    Idle,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(Signal),
}

/// What supervision observed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: ChildEnd,
    pub cause: Option<Cause>,
    /// Processes other than the child that were in the cage when the child ended or when
    /// claude-cage killed the cage.
    pub leftover: usize,
    /// Whether claude-cage killed the cage before the child ended.
    pub killed_by_us: bool,
    /// What made supervision kill the cage. It can differ from `cause`, the first thing seen:
    /// a SIGTERM forwarded, then the starter died before term-grace ran out.
    pub killed_for: Option<Cause>,
    /// The counters as last seen while the cage lived: the systemd backend's scope may be gone
    /// (stopped by systemd once empty) before they can be read again.
    pub counters: Counters,
    /// `memory.peak`, read as soon as the child was reaped, for the same reason.
    pub peak: Option<u64>,
    /// The idle check's verdict, when it killed the cage.
    pub idle: Option<IdleVerdict>,
    /// The latest snapshot of who held the cage's memory, if one was taken.
    pub snapshot: Option<crate::cgroup::snapshot::Snapshot>,
}

/// Lifetime settings.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    pub max_runtime: Option<Duration>,
    pub stdin_eof_grace: Option<Duration>,
    pub term_grace: Duration,
    /// `idle-timeout` and `idle-cpu` (a share of one CPU); `None`: no idle check, and no
    /// wake-up for one.
    pub idle: Option<(Duration, f64)>,
}

/// The process that started claude-cage, watched when `parent-death = "kill"`.
pub struct Starter {
    pub pid: Pid,
    pub pidfd: OwnedFd,
}

/// Supervises `child` in `cage` until it has been reaped.
pub fn supervise(
    child: &Child,
    cage: &Cage,
    signals: &SignalFd,
    lifetime: Lifetime,
    mut starter: Option<Starter>,
    alerts: &mut Alerts,
    log: &mut EventLog,
) -> std::io::Result<Outcome> {
    let mut watch = watch_counters(cage);
    let mut deadlines = Deadlines::start(Instant::now(), &lifetime);
    let mut idle = lifetime
        .idle
        .map(|(window, share)| idle::Idle::new(Instant::now(), window, share));
    let mut idle_verdict = None;
    let mut stdin = lifetime.stdin_eof_grace.and_then(|_| stdin_kind());
    let mut cause = None;
    // What was in the cage when supervision killed it, and why it did.
    let mut killed: Option<(usize, Cause)> = None;
    let mut status = None;

    loop {
        // Counter changes are taken before the child's death: an OOM kill updates memory.events
        // before its victims exit, and the cage may be gone soon after they have.
        if let Some(w) = &mut watch {
            if w.changed() {
                let before = w.seen.high;
                report_counters(cage, w, alerts, log);
                alerts.on_memory_events(w.seen.high > before, Instant::now());
            }
        }
        reap(child.pid, &mut status, |pid, st| {
            alerts.reaped(pid, st);
        });
        if let Some(end) = status {
            if let Some(w) = &mut watch {
                report_counters(cage, w, alerts, log);
            }
            let leftover = killed.map_or_else(|| cage.process_count(), |(n, _)| n);
            return Ok(Outcome {
                end,
                cause,
                leftover,
                killed_by_us: killed.is_some(),
                killed_for: killed.map(|(_, why)| why),
                // `report_counters` has just read it into the watch.
                peak: match &watch {
                    Some(w) => w.peak,
                    None => cage.memory_peak(),
                },
                counters: watch.map(|w| w.seen).unwrap_or_default(),
                idle: idle_verdict,
                snapshot: alerts.latest_snapshot().cloned(),
            });
        }

        // Once the cage is killed, only the child's end (and the alerts) can wake the loop.
        let lifetime_deadline = killed
            .is_none()
            .then(|| {
                deadlines
                    .next()
                    .into_iter()
                    .chain(idle.as_ref().map(idle::Idle::next))
                    .min()
            })
            .flatten();
        let wake = lifetime_deadline.into_iter().chain(alerts.deadline()).min();
        let sources = Sources {
            signals,
            child,
            watch: watch.as_ref(),
            starter: starter.as_ref(),
            psi: alerts.psi_fd(),
            bot_events: alerts.bot_events_fd(),
            stdin,
        };
        let Some(ready) = sources.wait(timeout_until(wake, Instant::now()))? else {
            continue;
        };
        let now = Instant::now();

        if ready.signals {
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo as i32 == sys::kill_request_signal() {
                    cause.get_or_insert(Cause::Killed);
                    kill(cage, &mut killed, Cause::Killed);
                    continue;
                }
                if info.ssi_signo as i32 == sys::limits_changed_signal() {
                    log.emit(&crate::events::Event::LimitsChanged {
                        limits: crate::events::Limits::read(&cage.dir),
                    });
                    continue;
                }
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if sig == Signal::SIGCHLD {
                    continue;
                }
                // The child may have exited already: ESRCH is expected and harmless.
                let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), sig);
                if TERMINATING.contains(&sig) {
                    cause.get_or_insert(Cause::Terminated(sig));
                    deadlines.terminating(now, lifetime.term_grace, sig);
                }
            }
        }
        // Counter changes are read at the top of the loop, before the child is reaped.
        if !ready.psi.is_empty() {
            alerts.on_psi(ready.psi, cage, log);
        }
        if ready.bot_events {
            alerts.on_bot_events(now);
        }
        alerts.on_time(now, cage, log);
        if ready.starter {
            starter = None;
            cause.get_or_insert(Cause::ParentDied);
            kill(cage, &mut killed, Cause::ParentDied);
        }
        if ready.stdin_closed {
            stdin = None;
            if let Some(grace) = lifetime.stdin_eof_grace {
                deadlines.stdin_closed(now, grace);
            }
        }
        if killed.is_none() {
            if let Some(why) = deadlines.due(now) {
                // A term-grace running out names the signal that set it, the cause already.
                cause.get_or_insert(why);
                kill(cage, &mut killed, why);
            }
        }
        if killed.is_none() {
            if let Some(i) = idle.as_mut().filter(|i| now >= i.next()) {
                if let Some(v) = i.sample(now, cage.cpu_usage_usec()) {
                    idle_verdict = Some(v);
                    cause.get_or_insert(Cause::Idle);
                    kill(cage, &mut killed, Cause::Idle);
                }
            }
        }
    }
}

/// What the loop waits on.
struct Sources<'a> {
    signals: &'a SignalFd,
    child: &'a Child,
    watch: Option<&'a Watch>,
    starter: Option<&'a Starter>,
    psi: Option<std::os::fd::BorrowedFd<'a>>,
    /// The bot's `memory.events.local`, when `[bot] memory-warn` is armed.
    bot_events: Option<std::os::fd::BorrowedFd<'a>>,
    stdin: Option<StdinKind>,
}

/// What woke the loop.
struct Ready {
    signals: bool,
    starter: bool,
    psi: PollFlags,
    bot_events: bool,
    stdin_closed: bool,
}

impl Sources<'_> {
    /// One poll(2); `None` when a signal interrupted it. The child's pidfd and the event files
    /// only wake the loop: the child is reaped and the files read at its top.
    fn wait(&self, timeout: PollTimeout) -> std::io::Result<Option<Ready>> {
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.child.pidfd.as_fd(), PollFlags::POLLIN),
        ];
        let mut push = |fd, flags| {
            fds.push(PollFd::new(fd, flags));
            fds.len() - 1
        };
        if let Some(w) = self.watch {
            for f in &w.files {
                push(f.as_fd(), PollFlags::POLLPRI);
            }
        }
        let starter_idx = self
            .starter
            .map(|s| push(s.pidfd.as_fd(), PollFlags::POLLIN));
        // A PSI trigger reports with POLLPRI (Documentation/accounting/psi.rst).
        let psi_idx = self.psi.map(|fd| push(fd, PollFlags::POLLPRI));
        let bot_idx = self.bot_events.map(|fd| push(fd, PollFlags::POLLPRI));
        // poll(2) reports POLLHUP on a pipe whose writers are all gone even with no events
        // requested, so stdin is watched for EOF without reading a byte of it. A socket reports
        // POLLRDHUP once the peer shut down its writing side.
        let stdin_idx = self.stdin.map(|kind| {
            let flags = if kind == StdinKind::Socket {
                POLLRDHUP
            } else {
                PollFlags::empty()
            };
            push(sys::stdin_fd(), flags)
        });
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let revents = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
        Ok(Some(Ready {
            signals: !revents(0).is_empty(),
            starter: starter_idx.is_some_and(|i| !revents(i).is_empty()),
            psi: psi_idx.map(revents).unwrap_or(PollFlags::empty()),
            bot_events: bot_idx.is_some_and(|i| !revents(i).is_empty()),
            stdin_closed: stdin_idx.is_some_and(|i| {
                revents(i).intersects(
                    PollFlags::POLLHUP | POLLRDHUP | PollFlags::POLLERR | PollFlags::POLLNVAL,
                )
            }),
        }))
    }
}

/// When the poll loop itself failed: ends the cage rather than leave it unsupervised, waits
/// for the child, and returns what little is known.
pub fn abandon(child: &Child, cage: &Cage, e: &std::io::Error) -> Outcome {
    crate::warning!("supervision failed: {e}; killing the cage");
    let _ = cage.kill();
    let mut status = None;
    while status.is_none() {
        let _ = waitpid(child.pid, None).map(|s| match s {
            WaitStatus::Exited(_, c) => status = Some(ChildEnd::Exited(c)),
            WaitStatus::Signaled(_, s, _) => status = Some(ChildEnd::Signaled(s)),
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
        idle: None,
        snapshot: None,
    }
}

/// `POLLRDHUP` (poll(2), Linux): the peer of a stream socket shut down its writing side.
const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(libc::POLLRDHUP);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdinKind {
    Pipe,
    Socket,
}

/// stdin-eof-grace applies to a pipe or a socket; a terminal, a file or /dev/null never "closes".
fn stdin_kind() -> Option<StdinKind> {
    let st = fstat(0).ok()?;
    let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if fmt == SFlag::S_IFIFO {
        Some(StdinKind::Pipe)
    } else if fmt == SFlag::S_IFSOCK {
        Some(StdinKind::Socket)
    } else {
        None
    }
}

/// Kills the cage once, for `why`, counting what was in it first.
fn kill(cage: &Cage, killed: &mut Option<(usize, Cause)>, why: Cause) {
    if killed.is_some() {
        return;
    }
    // The child itself is not a leftover.
    *killed = Some((cage.process_count().saturating_sub(1), why));
    if let Err(e) = cage.kill() {
        crate::warning!("{e}");
    }
}

/// Reaps every child that has exited: the cage's child, and (as a child subreaper) orphaned
/// descendants reparented to claude-cage and alert hooks, which `other` is told of.
pub fn reap(child: Pid, status: &mut Option<ChildEnd>, mut other: impl FnMut(Pid, WaitStatus)) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                *status = Some(ChildEnd::Exited(code))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                *status = Some(ChildEnd::Signaled(sig))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(st) => {
                if let Some(pid) = st.pid() {
                    other(pid, st);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fs;

    /// A failed `cgroup.kill` is a warning, never a second "claude-cage: " line beside the one
    /// that says why the cage ended (the Agent SDK shows the bot the end of stderr).
    #[test]
    fn a_failed_cgroup_kill_is_one_warning_line() {
        let dir = std::env::temp_dir().join(format!("claude-cage-kill-{}", std::process::id()));
        // A directory where cgroup.kill should be: writing it fails with EISDIR.
        std::fs::create_dir_all(dir.join(fs::KILL)).unwrap();
        let cage = Cage {
            id: "bot-1-1".into(),
            unit: None,
            bot_dir: dir.clone(),
            main: dir.join(fs::MAIN),
            dir: dir.clone(),
            applied: Default::default(),
            deferred: Vec::new(),
        };
        let mut killed = None;
        let ((), lines) = crate::error::capture::lines(|| kill(&cage, &mut killed, Cause::Timeout));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(killed, Some((0, Cause::Timeout)));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("claude-cage warning: failed to write \"1\" to "),
            "{lines:?}"
        );
        assert!(lines[0].contains("cgroup.kill"), "{lines:?}");
        // The negative control: the same kill of a cage whose cgroup.kill takes the write says
        // nothing at all.
        let ok = std::env::temp_dir().join(format!("claude-cage-kill-ok-{}", std::process::id()));
        std::fs::create_dir_all(&ok).unwrap();
        std::fs::write(ok.join(fs::KILL), "").unwrap();
        let cage = Cage {
            dir: ok.clone(),
            ..cage
        };
        let mut killed = None;
        let ((), lines) = crate::error::capture::lines(|| kill(&cage, &mut killed, Cause::Timeout));
        std::fs::remove_dir_all(&ok).unwrap();
        assert!(lines.is_empty(), "{lines:?}");
    }
}
