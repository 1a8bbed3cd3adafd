//! Report: naming why a cage ended and saying it — the reason and exit status from what
//! supervision and the teardown observed, the `exit` event's record, and the sentence after
//! `claude-cage: <cage-id>: ` that the Agent SDK copies into its error message. One call,
//! [`End::report`], makes all of them.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cgroup::{Applied, Counters};
use crate::events::{ExitRecord, OomLimit, Reason};
use crate::exit;
use crate::policy::Policy;
use crate::supervise::{Cause, ChildEnd, Outcome};
use crate::units::{Bytes, Elapsed, Limit};

/// Everything needed to name the reason for the end and explain it.
pub struct End<'a> {
    pub outcome: &'a Outcome,
    pub counters: Counters,
    pub bot_oom: u64,
    pub peak: Option<u64>,
    pub duration: Duration,
    pub policy: &'a Policy,
    /// The limits the cage had.
    pub applied: &'a Applied,
}

/// What `run` says of an end.
#[derive(Debug)]
pub struct Report {
    pub reason: Reason,
    /// claude-cage's exit status.
    pub status: i32,
    /// The `exit` event.
    pub record: ExitRecord,
    /// The line for stderr (after `claude-cage: <cage-id>: `), unless the child exited with 0.
    pub line: Option<String>,
}

/// The reason an end is given when claude-cage ended the cage itself.
impl From<Cause> for Reason {
    fn from(cause: Cause) -> Reason {
        match cause {
            Cause::Timeout => Reason::Timeout,
            Cause::StdinClosed => Reason::StdinClosed,
            Cause::ParentDied => Reason::ParentDied,
            Cause::Terminated(_) => Reason::Terminated,
            Cause::Killed => Reason::Killed,
            Cause::Idle => Reason::Idle,
        }
    }
}

impl End<'_> {
    /// The reason, the status, the exit record and the line, from what was observed.
    pub fn report(&self) -> Report {
        let (reason, status) = self.conclude();
        let record = ExitRecord {
            reason,
            status,
            signal: match self.outcome.end {
                ChildEnd::Signaled(s) => Some(s as i32),
                ChildEnd::Exited(_) => None,
            },
            duration_ms: self.duration.as_millis() as u64,
            memory_peak: self.peak,
            oom_kills: self.counters.oom_kill,
            oom_limit: (self.counters.oom_kill > 0).then(|| self.oom_limit_kind()),
            leftover: self.outcome.leftover,
            snapshot: (reason == Reason::OomKilled)
                .then(|| self.outcome.snapshot.clone())
                .flatten(),
        };
        let abnormal = !(reason == Reason::Exited && status == 0);
        Report {
            reason,
            status,
            record,
            line: abnormal.then(|| self.explain(reason)),
        }
    }

    /// The reason and claude-cage's exit status.
    pub fn conclude(&self) -> (Reason, i32) {
        let child_status = match self.outcome.end {
            ChildEnd::Exited(c) => c,
            ChildEnd::Signaled(s) => exit::SIGNALED_BASE + s as i32,
        };
        match self.outcome.cause {
            Some(cause) => {
                let status = match cause {
                    Cause::Timeout | Cause::StdinClosed | Cause::Idle => exit::TIMEOUT,
                    Cause::Killed => exit::SIGNALED_BASE + Signal::SIGKILL as i32,
                    Cause::ParentDied | Cause::Terminated(_) => child_status,
                };
                (Reason::from(cause), status)
            }
            None => match self.outcome.end {
                ChildEnd::Exited(c) => (Reason::Exited, c),
                // The OOM killer sends SIGKILL; the counter tells it apart from a kill -9.
                ChildEnd::Signaled(Signal::SIGKILL) if self.counters.oom_kill > 0 => {
                    (Reason::OomKilled, child_status)
                }
                ChildEnd::Signaled(_) => (Reason::Signaled, child_status),
            },
        }
    }

    /// Which limit the OOM killer enforced: the cage's own `oom` counter rose, else the bot's,
    /// else neither.
    fn oom_limit_kind(&self) -> OomLimit {
        if self.counters.oom > 0 {
            OomLimit::Cage
        } else if self.bot_oom > 0 {
            OomLimit::Bot
        } else {
            OomLimit::Outside
        }
    }

    /// Which limit the OOM killer enforced, in words.
    fn oom_limit(&self) -> String {
        let fmt = |l: Option<Limit>| l.and_then(Limit::bytes).map(|b| Bytes(b).to_string());
        match self.oom_limit_kind() {
            OomLimit::Cage => match fmt(self.applied.memory_max) {
                Some(m) => format!("at memory.max {m}"),
                None => "at the cage's memory limit".to_owned(),
            },
            OomLimit::Bot => match fmt(self.applied.bot_memory_max) {
                Some(m) => format!("at the bot's aggregate memory-max {m}"),
                None => "at the bot's aggregate memory limit".to_owned(),
            },
            OomLimit::Outside => {
                "outside the cage's limits (the host or an enclosing cgroup ran out of memory)"
                    .to_owned()
            }
        }
    }

    fn peak(&self) -> String {
        self.peak
            .map(|p| format!(" (peak {})", Bytes(p)))
            .unwrap_or_default()
    }

    fn leftovers(&self) -> String {
        match self.outcome.leftover {
            0 => String::new(),
            1 => "; killed 1 leftover process".to_owned(),
            n => format!("; killed {n} leftover processes"),
        }
    }

    fn child_end(&self) -> String {
        match self.outcome.end {
            ChildEnd::Exited(c) => format!("exited with status {c}"),
            ChildEnd::Signaled(s) => {
                format!("was killed by {s} ({})", exit::SIGNALED_BASE + s as i32)
            }
        }
    }

    /// What ended the cage before the child had exited, in words, when that was not the
    /// forwarded signal's term-grace running out.
    fn before_exit(&self, why: Cause) -> Option<String> {
        let what = match why {
            Cause::Terminated(_) => return None,
            Cause::ParentDied => "the process that started claude-cage died".to_owned(),
            Cause::Killed => "an operator killed the cage".to_owned(),
            Cause::Timeout => format!(
                "max-runtime {} ran out",
                Elapsed(self.policy.max_runtime.unwrap_or_default())
            ),
            Cause::StdinClosed => format!(
                "stdin was closed and stdin-eof-grace {} ran out",
                Elapsed(self.policy.stdin_eof_grace.unwrap_or_default())
            ),
            Cause::Idle => self.idle_words(),
        };
        Some(format!("{what} before the child exited; killed the cage"))
    }

    /// How idle the cage was, in words: "idle for 30m00s (CPU 0.02% of one CPU, below idle-cpu
    /// 0.5%)".
    fn idle_words(&self) -> String {
        let (idle_for, share) = self
            .outcome
            .idle
            .map(|v| (v.idle_for, v.share))
            .unwrap_or((self.policy.idle_timeout.unwrap_or_default(), 0.0));
        format!(
            "idle for {} (CPU {} of one CPU, below idle-cpu {})",
            Elapsed(idle_for),
            percent(share),
            percent(self.policy.idle_cpu)
        )
    }

    /// The one line for stderr, after `claude-cage: <cage>: `.
    pub fn explain(&self, reason: Reason) -> String {
        let after = Elapsed(self.duration);
        let oom_note = if self.counters.oom_kill > 0 && reason != Reason::OomKilled {
            let n = self.counters.oom_kill;
            format!(
                "; {n} process{} in the cage {} OOM-killed {}{}",
                if n == 1 { "" } else { "es" },
                if n == 1 { "was" } else { "were" },
                self.oom_limit(),
                self.peak()
            )
        } else {
            String::new()
        };
        let tail = format!("{oom_note}{}", self.leftovers());
        match reason {
            Reason::OomKilled => format!(
                "killed by the kernel OOM killer {}{} after {after}{}{}",
                self.oom_limit(),
                self.peak(),
                self.leftovers(),
                // Only a snapshot taken before the kill names anyone: never a guess.
                self.outcome
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.largest())
                    .map(|l| format!("; largest: {l}"))
                    .unwrap_or_default()
            ),
            Reason::Exited => format!(
                "exited with status {} after {after}{tail}",
                match self.outcome.end {
                    ChildEnd::Exited(c) => c,
                    ChildEnd::Signaled(_) => 0,
                }
            ),
            Reason::Signaled => format!(
                "{} after {after}{tail}",
                self.child_end().replacen("was killed", "killed", 1)
            ),
            Reason::Timeout => format!(
                "max-runtime {} ran out; killed the cage{}",
                Elapsed(self.policy.max_runtime.unwrap_or_default()),
                tail
            ),
            Reason::StdinClosed => format!(
                "stdin was closed and the child did not exit within stdin-eof-grace {}; killed the cage after {after}{tail}",
                Elapsed(self.policy.stdin_eof_grace.unwrap_or_default())
            ),
            Reason::ParentDied => format!(
                "the process that started claude-cage died; killed the cage after {after}{tail}"
            ),
            Reason::Terminated => {
                let sig = match self.outcome.cause {
                    Some(Cause::Terminated(s)) => s.as_str(),
                    _ => "a signal",
                };
                if !self.outcome.killed_by_us {
                    format!(
                        "received {sig}, forwarded it; the child {} after {after}{tail}",
                        self.child_end()
                    )
                } else if let Some(then) = self.outcome.killed_for.and_then(|c| self.before_exit(c))
                {
                    // Something else ended the cage while the child was still given its grace.
                    format!("received {sig}, forwarded it; {then} after {after}{tail}")
                } else {
                    format!(
                        "received {sig}; the child did not exit within term-grace {}; killed the cage after {after}{tail}",
                        Elapsed(self.policy.term_grace)
                    )
                }
            }
            Reason::Killed => format!("killed by an operator after {after}{tail}"),
            Reason::Idle => format!("{}; killed the cage after {after}{tail}", self.idle_words()),
        }
    }
}

#[cfg(test)]
mod tests;

/// A share of one CPU as a percentage: "0.5%", "0.02%", "12%".
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p == 0.0 {
        "0%".to_owned()
    } else if p < 0.1 {
        format!("{p:.2}%")
    } else if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}
