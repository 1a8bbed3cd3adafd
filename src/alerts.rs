//! Alerts while a cage runs: `memory-warn` (usage crossed a threshold), a PSI trigger on the
//! cage's `memory.pressure`, and the `exec` hook that receives every alert and abnormal exit as
//! a JSON line on stdin. Everything is event-driven: the PSI trigger is a `POLLPRI` descriptor
//! in the supervisor's poll loop, and the warn threshold is only checked while the kernel says
//! the cage is above `memory.high`.
//!
//! Why the warn threshold works this way: cgroup v2 notifies on `memory.events` when usage
//! crosses `memory.high` (the `high` counter rises), but offers no notification at an arbitrary
//! usage. So the policy requires `memory.high` at or below `memory-warn`; a `high` notice starts
//! a once-a-second check of `memory.current`, and the check stops once usage falls well below
//! `memory.high` again, where the next crossing will be notified. An idle cage costs nothing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::cgroup::snapshot::{self, Snapshot};
use crate::cgroup::{Cage, fs};
use crate::events::{CageMemory, Event, EventLog};
use crate::policy;

mod hooks;

/// The least time between two snapshots of a cage.
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

use hooks::Hooks;

/// How often `memory.current` is read while the cage is above `memory.high`.
const WARN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A crossing ends when usage falls below this share of the threshold (hysteresis, so usage
/// hovering at the threshold does not page every second).
const REARM_SHARE: f64 = 0.9;

struct Warn {
    threshold: u64,
    high: u64,
    warned: bool,
    next_check: Option<Instant>,
}

impl Warn {
    /// One check of `memory.current`: whether it warns now (the first time at or above the
    /// threshold since usage was last well below it), and when to check next (not at all once
    /// usage is well below `memory.high`, whose next crossing the kernel notifies).
    fn check(&mut self, current: u64, now: Instant) -> bool {
        let mut warn = false;
        if current >= self.threshold && !self.warned {
            self.warned = true;
            warn = true;
        } else if (current as f64) < self.threshold as f64 * REARM_SHARE {
            self.warned = false;
        }
        self.next_check = if (current as f64) < self.high as f64 * REARM_SHARE {
            None
        } else {
            Some(now + WARN_CHECK_INTERVAL)
        };
        warn
    }
}

/// The `avg10=` of the `some` or `full` line of a PSI file (Documentation/accounting/psi.rst).
fn avg10(text: &str, kind: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(kind))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
        .and_then(|v| v.parse().ok())
}

/// `[bot] memory-warn`: the bot's own `memory.high` crossings (its `memory.events.local`, whose
/// `high` counts only the bot's limit, not its cages'), then its `memory.current` once a second
/// until usage is well below `bot.memory-high` again. Every supervisor of the bot watches; the
/// tally's lock (`tally::bot_memory_warn`) makes one of them write the event per crossing.
struct BotWarn {
    bot: String,
    dir: std::path::PathBuf,
    events: File,
    seen_high: u64,
    warn: Warn,
}

impl BotWarn {
    /// Reads the `high` count (re-arming the descriptor's notification); `None` when the
    /// cgroup is gone.
    fn read_high(&mut self) -> Option<u64> {
        use std::io::{Read, Seek};
        let mut text = String::new();
        self.events.rewind().ok()?;
        self.events.read_to_string(&mut text).ok()?;
        Some(fs::keyed(&text, "high").unwrap_or(0))
    }

    /// The bot's largest cages by `memory.current`, at most five.
    fn largest_cages(&self) -> Vec<CageMemory> {
        let mut cages: Vec<CageMemory> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let current = fs::read_number(&e.path(), fs::MEMORY_CURRENT)?;
                Some(CageMemory {
                    cage: e.file_name().to_string_lossy().into_owned(),
                    memory_current: current,
                })
            })
            .collect();
        cages.sort_by_key(|c| std::cmp::Reverse(c.memory_current));
        cages.truncate(5);
        cages
    }
}

/// The alert state of one cage.
pub struct Alerts {
    /// When the last snapshot was taken, and the latest one.
    snapshot_at: Option<Instant>,
    latest: Option<Snapshot>,
    /// The kinds of event and the reasons of an end that reach the hook.
    on: Vec<String>,
    exit_reasons: Vec<String>,
    trigger: Option<String>,
    psi: Option<File>,
    warn: Option<Warn>,
    bot_warn: Option<BotWarn>,
    hooks: Hooks,
}

impl Alerts {
    /// Arms the policy's alerts on `cage`. What cannot be armed is returned as warnings.
    pub fn arm(
        settings: &policy::Alerts,
        cage: &Cage,
        memory_high: Option<u64>,
    ) -> (Alerts, Vec<String>) {
        let mut warnings = Vec::new();
        let mut psi = None;
        if let Some(t) = settings.pressure {
            let path = cage.dir.join(fs::MEMORY_PRESSURE);
            // A trigger lives as long as the descriptor it was written to (psi.rst).
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .and_then(|mut f| f.write_all(t.to_cgroup_value().as_bytes()).map(|()| f));
            match opened {
                Ok(f) => psi = Some(f),
                Err(e) => warnings.push(format!(
                    "alerts.pressure is not armed: writing {:?} to {}: {e}",
                    t.to_cgroup_value(),
                    path.display()
                )),
            }
        }
        let warn = match (settings.memory_warn, memory_high) {
            (Some(threshold), Some(high)) => Some(Warn {
                threshold,
                high,
                warned: false,
                next_check: None,
            }),
            (Some(_), None) => {
                warnings.push(
                    "alerts.memory-warn is not armed: memory.high could not be applied".to_owned(),
                );
                None
            }
            _ => None,
        };
        let alerts = Alerts {
            snapshot_at: None,
            latest: None,
            hooks: Hooks::new(&settings.exec, settings.exec_timeout, &settings.env),
            on: settings.on.clone(),
            exit_reasons: settings.exit_reasons.clone(),
            trigger: settings.pressure.map(|t| t.to_string()),
            psi,
            warn,
            bot_warn: None,
        };
        (alerts, warnings)
    }

    /// Arms `[bot] memory-warn` on the bot's cgroup `dir`, with the bot's `memory.high` as
    /// written. A run that finds the bot well below the threshold re-arms the bot-wide warning
    /// (the supervisors that saw the last crossing may all be gone). What cannot be armed is
    /// returned as a warning.
    pub fn arm_bot(
        &mut self,
        bot: &str,
        dir: &std::path::Path,
        threshold: u64,
        high: Option<u64>,
    ) -> Option<String> {
        let Some(high) = high else {
            return Some(
                "bot.memory-warn is not armed: bot.memory-high could not be applied".to_owned(),
            );
        };
        let events = match File::open(dir.join(fs::MEMORY_EVENTS_LOCAL)) {
            Ok(f) => f,
            Err(e) => {
                return Some(format!(
                    "bot.memory-warn is not armed: opening {}: {e}",
                    dir.join(fs::MEMORY_EVENTS_LOCAL).display()
                ));
            }
        };
        let mut w = BotWarn {
            bot: bot.to_owned(),
            dir: dir.to_path_buf(),
            events,
            seen_high: 0,
            warn: Warn {
                threshold,
                high,
                warned: false,
                next_check: None,
            },
        };
        w.seen_high = w.read_high().unwrap_or(0);
        let current = fs::read_number(dir, fs::MEMORY_CURRENT).unwrap_or(0);
        if (current as f64) < threshold as f64 * REARM_SHARE {
            let _ = crate::tally::bot_memory_warn(bot, false);
        } else {
            // Already above: checked from the start (the kernel notifies only new throttling).
            w.warn.next_check = Some(Instant::now());
        }
        self.bot_warn = Some(w);
        None
    }

    /// The bot's `memory.events.local`, polled for `POLLPRI`.
    pub fn bot_events_fd(&self) -> Option<BorrowedFd<'_>> {
        self.bot_warn.as_ref().map(|w| w.events.as_fd())
    }

    /// The bot's `memory.events.local` changed: a rise of its `high` count starts the checks.
    pub fn on_bot_events(&mut self, now: Instant) {
        let Some(w) = &mut self.bot_warn else {
            return;
        };
        match w.read_high() {
            // The bot's cgroup is gone: its file would poll ready for ever.
            None => self.bot_warn = None,
            Some(high) => {
                if high > w.seen_high && w.warn.next_check.is_none() {
                    w.warn.next_check = Some(now);
                }
                w.seen_high = high;
            }
        }
    }

    /// The PSI trigger, polled for `POLLPRI`.
    pub fn psi_fd(&self) -> Option<BorrowedFd<'_>> {
        self.psi.as_ref().map(|f| f.as_fd())
    }

    /// The next time `on_time` has work: a warn check or a hook's timeout.
    pub fn deadline(&self) -> Option<Instant> {
        let warn = self.warn.as_ref().and_then(|w| w.next_check);
        let bot = self.bot_warn.as_ref().and_then(|w| w.warn.next_check);
        self.hooks
            .deadline()
            .into_iter()
            .chain(warn)
            .chain(bot)
            .min()
    }

    /// The cage's `memory.events` changed; `high_rose` says whether its `high` counter rose.
    pub fn on_memory_events(&mut self, high_rose: bool, now: Instant) {
        if let Some(w) = &mut self.warn {
            if high_rose && w.next_check.is_none() {
                w.next_check = Some(now);
            }
        }
    }

    /// The PSI trigger fired (`POLLPRI`), or failed (`POLLERR`: the cgroup is going away).
    pub fn on_psi(&mut self, revents: PollFlags, cage: &Cage, log: &mut EventLog) {
        if revents.contains(PollFlags::POLLERR) {
            self.psi = None;
            return;
        }
        let text = fs::read(&cage.dir, fs::MEMORY_PRESSURE).unwrap_or_default();
        let snapshot = self.snapshot(cage, Instant::now());
        let line = log.emit(&Event::Pressure {
            trigger: self.trigger.clone().unwrap_or_default(),
            some_avg10: avg10(&text, "some"),
            full_avg10: avg10(&text, "full"),
            snapshot,
        });
        self.fire(line, "pressure");
    }

    /// Runs due warn checks and ends hooks that ran out of time.
    pub fn on_time(&mut self, now: Instant, cage: &Cage, log: &mut EventLog) {
        let mut crossed = None;
        if let Some(w) = &mut self.warn {
            if w.next_check.is_some_and(|t| now >= t) {
                let current = fs::read_number(&cage.dir, fs::MEMORY_CURRENT).unwrap_or(0);
                if w.check(current, now) {
                    crossed = Some((current, w.threshold));
                }
            }
        }
        let fired = crossed.map(|(memory_current, threshold)| {
            let snapshot = self.snapshot(cage, now);
            log.emit(&Event::MemoryWarn {
                memory_current,
                threshold,
                snapshot,
            })
        });
        if let Some(line) = fired {
            self.fire(line, "memory-warn");
        }
        if let Some(line) = self.bot_check(now, log) {
            self.fire(line, "bot-memory-warn");
        }
        self.hooks.on_time(now);
    }

    /// A due check of the bot's memory use: the event line when this supervisor is the one to
    /// warn of a crossing.
    fn bot_check(&mut self, now: Instant, log: &mut EventLog) -> Option<Vec<u8>> {
        let w = self.bot_warn.as_mut()?;
        if w.warn.next_check.is_none_or(|t| now < t) {
            return None;
        }
        let current = fs::read_number(&w.dir, fs::MEMORY_CURRENT).unwrap_or(0);
        // Well below the threshold re-arms the bot-wide warning, whoever gave the last one.
        if (current as f64) < w.warn.threshold as f64 * REARM_SHARE {
            let _ = crate::tally::bot_memory_warn(&w.bot, false);
        }
        let crossed = w.warn.check(current, now);
        if !crossed {
            return None;
        }
        // Where the shared state cannot be read, warning twice beats never.
        if !crate::tally::bot_memory_warn(&w.bot, true).unwrap_or(true) {
            return None;
        }
        let cages = w.largest_cages();
        Some(log.emit(&Event::BotMemoryWarn {
            bot_memory_current: current,
            threshold: w.warn.threshold,
            cages,
        }))
    }

    /// A snapshot of who holds the cage's memory, unless one was taken less than a second ago
    /// (then `None`, and the latest stands for it); kept as the latest.
    pub fn snapshot(&mut self, cage: &Cage, now: Instant) -> Option<Snapshot> {
        if self
            .snapshot_at
            .is_some_and(|t| now.saturating_duration_since(t) < SNAPSHOT_EVERY)
        {
            return None;
        }
        // The kernel counts an OOM kill as it picks the victim, before its memory is freed: a
        // count that moved while the snapshot was read means a kill was under way, and the
        // snapshot (victims gone, others still listed) would name the wrong process.
        let kills_before = cage.oom_kills();
        let s = snapshot::take(&cage.dir);
        if s.top.is_empty() || cage.oom_kills() != kills_before {
            return None;
        }
        self.snapshot_at = Some(now);
        self.latest = Some(s.clone());
        Some(s)
    }

    /// The latest snapshot, if one was taken.
    pub fn latest_snapshot(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    /// Hands an event line to the hook (see `hooks`), if `[alerts] on` names its kind.
    pub fn fire(&mut self, line: Vec<u8>, what: &str) {
        if self.on.iter().any(|k| k == what) {
            self.hooks.fire(line, what);
        }
    }

    /// Takes note of a reaped process; returns true if it was a hook.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        self.hooks.reaped(pid, status)
    }

    /// At the end: fires the hook for an abnormal exit whose reason `[alerts] exit-reasons`
    /// names, then waits for every hook still running, each until its own timeout, so none is
    /// left behind.
    pub fn finish(&mut self, exit: Option<(Vec<u8>, &str)>) {
        if let Some((line, reason)) = exit {
            if self.exit_reasons.iter().any(|r| r == reason) {
                self.fire(line, "exit");
            }
        }
        self.hooks.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// memory-warn pages once per crossing: again only after usage fell below 90% of the
    /// threshold; checks stop once usage is well below memory.high.
    #[test]
    fn warn_once_per_crossing() {
        let t0 = Instant::now();
        let mut w = Warn {
            threshold: 1000,
            high: 800,
            warned: false,
            next_check: Some(t0),
        };
        assert!(!w.check(850, t0), "below the threshold");
        assert_eq!(w.next_check, Some(t0 + WARN_CHECK_INTERVAL));
        assert!(w.check(1000, t0), "at the threshold");
        assert!(!w.check(1200, t0), "still above: no second page");
        assert!(!w.check(950, t0), "not yet below 90%");
        assert!(!w.check(899, t0), "below 90% re-arms");
        assert!(w.check(1001, t0), "the next crossing pages");
        assert!(!w.check(700, t0));
        assert_eq!(
            w.next_check, None,
            "well below memory.high: the kernel notifies again"
        );
    }

    #[test]
    fn pressure_averages() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.10 total=123\nfull avg10=4.25 avg60=1.00 avg300=0.00 total=45\n";
        assert_eq!(avg10(text, "some"), Some(12.5));
        assert_eq!(avg10(text, "full"), Some(4.25));
        assert_eq!(avg10("some total=1\n", "some"), None);
        assert_eq!(avg10("", "full"), None);
    }
}
