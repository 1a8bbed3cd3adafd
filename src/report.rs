//! Report: naming why a cage ended and saying it — the reason and exit status from what
//! supervision and the teardown observed, the `exit` event's record, and the sentence after
//! "claude-cage: <cage-id>: " that the Agent SDK copies into its error message. One call,
//! [`End::report`], makes all of them.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cgroup::{Applied, Counters};
use crate::events::{ExitRecord, Reason};
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
    /// The line for stderr (after "claude-cage: <cage-id>: "), unless the child exited with 0.
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
            leftover: self.outcome.leftover,
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
                    Cause::Timeout | Cause::StdinClosed => exit::TIMEOUT,
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

    /// Which limit the OOM killer enforced, in words.
    fn oom_limit(&self) -> String {
        let fmt = |l: Option<Limit>| l.and_then(Limit::bytes).map(|b| Bytes(b).to_string());
        if self.counters.oom > 0 {
            match fmt(self.applied.memory_max) {
                Some(m) => format!("at memory.max {m}"),
                None => "at the cage's memory limit".to_owned(),
            }
        } else if self.bot_oom > 0 {
            match fmt(self.applied.bot_memory_max) {
                Some(m) => format!("at the bot's aggregate memory-max {m}"),
                None => "at the bot's aggregate memory limit".to_owned(),
            }
        } else {
            "outside the cage's limits (the host or an enclosing cgroup ran out of memory)"
                .to_owned()
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
        };
        Some(format!("{what} before the child exited; killed the cage"))
    }

    /// The one line for stderr, after "claude-cage: <cage>: ".
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
                "killed by the kernel OOM killer {}{} after {after}{}",
                self.oom_limit(),
                self.peak(),
                self.leftovers()
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        crate::policy::parse(
            "[lifetime]\nmax-runtime = \"4h\"\nstdin-eof-grace = \"10s\"\n",
            "p",
            &Default::default(),
            1 << 30,
        )
        .unwrap()
    }

    /// What supervision saw of a child that ended so, for `cause`, and nothing else.
    fn outcome(end: ChildEnd, cause: Option<Cause>) -> Outcome {
        Outcome {
            end,
            cause,
            leftover: 0,
            killed_by_us: false,
            killed_for: None,
            counters: Counters::default(),
            peak: None,
        }
    }

    /// The end of `outcome` after `duration`, with no counters, peak or limits.
    fn end<'a>(
        outcome: &'a Outcome,
        policy: &'a Policy,
        applied: &'a Applied,
        duration: Duration,
    ) -> End<'a> {
        End {
            outcome,
            counters: Counters::default(),
            bot_oom: 0,
            peak: None,
            duration,
            policy,
            applied,
        }
    }

    /// A child's end, why claude-cage ended it, the cage's counters, the bot's `oom` counter,
    /// then the expected reason, status and a fragment of the line.
    type Case = (
        ChildEnd,
        Option<Cause>,
        Counters,
        u64,
        Reason,
        i32,
        &'static str,
    );

    /// Each way a cage ends: its reason, status, and a fragment of its line.
    #[test]
    fn reasons_statuses_and_lines() {
        let applied = Applied {
            memory_max: Some(Limit::Bytes(4 << 30)),
            bot_memory_max: Some(Limit::Bytes(6 << 30)),
            ..Default::default()
        };
        let p = policy();
        let oom = Counters {
            oom: 1,
            oom_kill: 1,
            ..Default::default()
        };
        let bot_oom_only = Counters {
            oom_kill: 1,
            ..Default::default()
        };
        let none = Counters::default();
        use ChildEnd::*;
        let cases: &[Case] = &[
            (
                Exited(0),
                None,
                none,
                0,
                Reason::Exited,
                0,
                "exited with status 0",
            ),
            (
                Exited(1),
                None,
                none,
                0,
                Reason::Exited,
                1,
                "exited with status 1",
            ),
            (
                Exited(1),
                None,
                oom,
                0,
                Reason::Exited,
                1,
                "1 process in the cage was OOM-killed at memory.max 4.0 GiB",
            ),
            (
                Signaled(Signal::SIGKILL),
                None,
                oom,
                0,
                Reason::OomKilled,
                137,
                "killed by the kernel OOM killer at memory.max 4.0 GiB (peak 4.0 GiB) after 1h12m",
            ),
            (
                Signaled(Signal::SIGKILL),
                None,
                bot_oom_only,
                1,
                Reason::OomKilled,
                137,
                "at the bot's aggregate memory-max 6.0 GiB",
            ),
            (
                Signaled(Signal::SIGKILL),
                None,
                bot_oom_only,
                0,
                Reason::OomKilled,
                137,
                "the host or an enclosing cgroup ran out of memory",
            ),
            (
                Signaled(Signal::SIGKILL),
                None,
                none,
                0,
                Reason::Signaled,
                137,
                "killed by SIGKILL (137)",
            ),
            (
                Signaled(Signal::SIGSEGV),
                None,
                none,
                0,
                Reason::Signaled,
                139,
                "SIGSEGV",
            ),
            (
                Signaled(Signal::SIGKILL),
                Some(Cause::Timeout),
                none,
                0,
                Reason::Timeout,
                124,
                "max-runtime 4h00m ran out",
            ),
            (
                Signaled(Signal::SIGKILL),
                Some(Cause::StdinClosed),
                none,
                0,
                Reason::StdinClosed,
                124,
                "stdin-eof-grace 10.0s",
            ),
            (
                Signaled(Signal::SIGKILL),
                Some(Cause::ParentDied),
                none,
                0,
                Reason::ParentDied,
                137,
                "the process that started claude-cage died",
            ),
            (
                Signaled(Signal::SIGTERM),
                Some(Cause::Terminated(Signal::SIGTERM)),
                none,
                0,
                Reason::Terminated,
                143,
                "received SIGTERM, forwarded it",
            ),
            (
                Signaled(Signal::SIGKILL),
                Some(Cause::Killed),
                none,
                0,
                Reason::Killed,
                137,
                "killed by an operator",
            ),
        ];
        for (end, cause, counters, bot_oom, reason, status, fragment) in cases {
            let outcome = outcome(*end, *cause);
            let e = End {
                counters: *counters,
                bot_oom: *bot_oom,
                peak: Some(4 << 30),
                ..self::end(&outcome, &p, &applied, Duration::from_secs(4320))
            };
            assert_eq!(e.conclude(), (*reason, *status), "{end:?} {cause:?}");
            let line = e.explain(*reason);
            assert!(line.contains(fragment), "{line:?} lacks {fragment:?}");
            assert!(!line.contains('\n'), "one line: {line:?}");
        }
    }

    #[test]
    fn leftovers_are_counted_in_words() {
        let p = policy();
        let applied = Applied::default();
        for (n, words) in [
            (1, "killed 1 leftover process"),
            (3, "killed 3 leftover processes"),
        ] {
            let outcome = Outcome {
                leftover: n,
                ..outcome(ChildEnd::Exited(2), None)
            };
            let e = end(&outcome, &p, &applied, Duration::from_millis(5));
            assert!(
                e.explain(Reason::Exited).ends_with(words),
                "{}",
                e.explain(Reason::Exited)
            );
        }
    }

    /// After a forwarded SIGTERM the reason stays `terminated`, but the line names what made
    /// claude-cage kill the cage: term-grace running out, or something that came before it.
    #[test]
    fn a_kill_after_a_forwarded_signal_names_what_made_it() {
        let p = policy();
        let applied = Applied::default();
        let term = Cause::Terminated(Signal::SIGTERM);
        for (killed_by_us, killed_for, fragment) in [
            (
                false,
                None,
                "received SIGTERM, forwarded it; the child was killed by SIGTERM (143) after 44.4s",
            ),
            (
                true,
                Some(term),
                "received SIGTERM; the child did not exit within term-grace 3.0s; killed the cage after 44.4s",
            ),
            (true, None, "did not exit within term-grace 3.0s"),
            (
                true,
                Some(Cause::ParentDied),
                "received SIGTERM, forwarded it; the process that started claude-cage died before the child exited; killed the cage after 44.4s",
            ),
            (
                true,
                Some(Cause::Killed),
                "received SIGTERM, forwarded it; an operator killed the cage before the child exited; killed the cage after 44.4s",
            ),
            (
                true,
                Some(Cause::Timeout),
                "received SIGTERM, forwarded it; max-runtime 4h00m ran out before the child exited",
            ),
            (
                true,
                Some(Cause::StdinClosed),
                "received SIGTERM, forwarded it; stdin was closed and stdin-eof-grace 10.0s ran out before the child exited",
            ),
        ] {
            let signal = if killed_by_us {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            let outcome = Outcome {
                killed_by_us,
                killed_for,
                ..outcome(ChildEnd::Signaled(signal), Some(term))
            };
            let e = end(&outcome, &p, &applied, Duration::from_millis(44_400));
            assert_eq!(e.conclude().0, Reason::Terminated);
            let line = e.explain(Reason::Terminated);
            assert!(line.contains(fragment), "{line:?} lacks {fragment:?}");
            if killed_for.is_some_and(|c| c != term) {
                assert!(!line.contains("term-grace"), "{line:?}");
            }
        }
    }

    /// One call gives the reason, the status, the exit record (with what the teardown saw) and
    /// the line; a child that exited with 0 gets no line.
    #[test]
    fn a_report_carries_the_record_and_the_line() {
        let p = policy();
        let applied = Applied {
            memory_max: Some(Limit::Bytes(4 << 30)),
            ..Default::default()
        };
        let mut o = outcome(ChildEnd::Signaled(Signal::SIGKILL), None);
        o.leftover = 2;
        let mut e = end(&o, &p, &applied, Duration::from_millis(1500));
        e.counters.oom = 1;
        e.counters.oom_kill = 3;
        e.peak = Some(4 << 30);
        let r = e.report();
        assert_eq!((r.reason, r.status), (Reason::OomKilled, 137));
        assert_eq!(
            (
                r.record.signal,
                r.record.duration_ms,
                r.record.memory_peak,
                r.record.oom_kills,
                r.record.leftover
            ),
            (Some(9), 1500, Some(4 << 30), 3, 2)
        );
        assert_eq!(
            r.line.as_deref(),
            Some(
                "killed by the kernel OOM killer at memory.max 4.0 GiB (peak 4.0 GiB) after 1.5s; killed 2 leftover processes"
            )
        );
        let ok = outcome(ChildEnd::Exited(0), None);
        let r = end(&ok, &p, &applied, Duration::from_secs(1)).report();
        assert_eq!((r.reason, r.status, r.line), (Reason::Exited, 0, None));
        // A cause of claude-cage's own names the reason, whatever the child's end.
        let killed = outcome(ChildEnd::Exited(0), Some(Cause::Killed));
        let r = end(&killed, &p, &applied, Duration::from_secs(1)).report();
        assert_eq!((r.reason, r.status), (Reason::Killed, 137));
        assert!(r.line.is_some());
    }
}
