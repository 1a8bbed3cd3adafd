//! The cage's counters as they change: `memory.events` and `pids.events` opened once and polled
//! for POLLPRI, and an event (and an alert) for each counter that rose.

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::alerts::Alerts;
use crate::cgroup::{Cage, Counters, fs};
use crate::events::{Event, EventLog};

pub(super) struct Watch {
    /// memory.events and pids.events, opened once: kernfs signals POLLPRI when one changes, and
    /// a read through the descriptor re-arms it. (Not inotify: closing an inotify instance that
    /// holds a watch waits for an SRCU grace period, 4-20 ms, on every cage's exit.)
    pub(super) files: Vec<std::fs::File>,
    pub(super) seen: Counters,
    /// `memory.peak` as of the last counter change (an OOM kill changes the counters before
    /// the cage dies).
    pub(super) peak: Option<u64>,
}

impl Watch {
    /// Whether a watched file changed since the last call (without blocking); re-arms them.
    pub(super) fn changed(&mut self) -> bool {
        use std::io::{Read, Seek};
        let mut fds: Vec<PollFd> = self
            .files
            .iter()
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLPRI))
            .collect();
        let any = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0);
        drop(fds);
        if any {
            let mut buf = Vec::new();
            // A file whose cgroup is gone polls ready for ever (and reads ENODEV): it is
            // dropped rather than left to spin the loop.
            self.files.retain_mut(|f| {
                buf.clear();
                f.rewind().is_ok() && f.read_to_end(&mut buf).is_ok()
            });
        }
        any
    }
}

/// Watches the cage's `memory.events` and `pids.events`; kernfs signals POLLPRI on every
/// counter change (rate-limited), so throttling, OOM kills and refused forks are reported as
/// they happen without polling.
pub(super) fn watch_counters(cage: &Cage) -> Option<Watch> {
    // A refused fork is counted in the forking process's own cgroup on older kernels (see
    // `Cage::refused_forks`), so `main`'s pids.events is watched too.
    let files: Vec<std::fs::File> = [
        cage.dir.join(fs::MEMORY_EVENTS),
        cage.dir.join(fs::PIDS_EVENTS),
        cage.main.join(fs::PIDS_EVENTS),
    ]
    .iter()
    .filter_map(|p| std::fs::File::open(p).ok())
    .collect();
    (!files.is_empty()).then(|| Watch {
        files,
        seen: Counters::default(),
        peak: None,
    })
}

/// Emits an event for each counter that rose since the last look, and hands OOM kills and
/// refused forks to the alert hook. `memory-high` is emitted when throttling begins (the first
/// rise), not for each of the thousands of throttled allocations; `pids-max` likewise.
///
/// Counters never go backwards here: a cage whose directory is already gone (a systemd scope
/// stopped once empty) reads as zero, and what was seen before stands.
pub(super) fn report_counters(cage: &Cage, w: &mut Watch, alerts: &mut Alerts, log: &mut EventLog) {
    let now = cage.counters().merge(w.seen);
    w.peak = cage.memory_peak().max(w.peak);
    let at = std::time::Instant::now();
    if now.high > w.seen.high && w.seen.high == 0 {
        let snapshot = alerts.snapshot(cage, at);
        log.emit(&Event::MemoryHigh {
            count: now.high,
            snapshot,
        });
    }
    // At memory.max an OOM kill may follow at once: a snapshot now (at most one a second) is
    // the last word on who held the memory. The event is written for the first rise only.
    if now.max > w.seen.max {
        // Seen together with the OOM kill it led to, the cage is already emptied: a snapshot
        // now would name no one truly, and the one taken before stands.
        let killed = now.oom_kill > w.seen.oom_kill;
        let snapshot = if killed {
            None
        } else {
            alerts.snapshot(cage, at)
        };
        if w.seen.max == 0 {
            log.emit(&Event::MemoryMax {
                count: now.max,
                snapshot,
            });
        }
    }
    if now.oom_kill > w.seen.oom_kill {
        let line = log.emit(&Event::OomKill {
            oom_kills: now.oom_kill,
        });
        alerts.fire(line, "oom-kill");
    }
    if now.pids_max > w.seen.pids_max && w.seen.pids_max == 0 {
        let line = log.emit(&Event::PidsMax {
            count: now.pids_max,
        });
        alerts.fire(line, "pids-max");
    }
    w.seen = now;
}
