//! The lifetime's deadlines (max-runtime, stdin-eof-grace, term-grace) and the poll timeout
//! they give: pure, so that their order and arithmetic are unit-tested.

use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use nix::sys::signal::Signal;

use super::{Cause, Lifetime};

/// The lifetime's deadlines. A deadline past what `Instant` can hold is never reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Deadlines {
    /// `max-runtime` after the start.
    runtime: Option<Instant>,
    /// `stdin-eof-grace` after stdin was closed.
    eof: Option<Instant>,
    /// `term-grace` after the first terminating signal, and that signal.
    term: Option<(Instant, Signal)>,
}

impl Deadlines {
    pub(super) fn start(start: Instant, lifetime: &Lifetime) -> Deadlines {
        Deadlines {
            runtime: lifetime.max_runtime.and_then(|d| start.checked_add(d)),
            ..Deadlines::default()
        }
    }

    /// Stdin was closed: the grace runs from now.
    pub(super) fn stdin_closed(&mut self, now: Instant, grace: Duration) {
        self.eof = now.checked_add(grace);
    }

    /// A terminating signal was forwarded: the first one sets term-grace.
    pub(super) fn terminating(&mut self, now: Instant, grace: Duration, sig: Signal) {
        if self.term.is_none() {
            self.term = now.checked_add(grace).map(|d| (d, sig));
        }
    }

    /// The nearest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        [self.runtime, self.eof, self.term.map(|(d, _)| d)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Why the cage must be killed at `now`, if a deadline has passed: max-runtime first, then
    /// stdin's grace, then term-grace.
    pub(super) fn due(&self, now: Instant) -> Option<Cause> {
        if self.runtime.is_some_and(|d| now >= d) {
            Some(Cause::Timeout)
        } else if self.eof.is_some_and(|d| now >= d) {
            Some(Cause::StdinClosed)
        } else {
            self.term
                .filter(|&(d, _)| now >= d)
                .map(|(_, sig)| Cause::Terminated(sig))
        }
    }
}

/// The poll(2) timeout until `deadline`: none without one, rounded up to the next millisecond
/// so that the loop does not wake a millisecond early and spin.
pub(super) fn timeout_until(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d.saturating_duration_since(now).as_millis();
            PollTimeout::try_from((ms + 1).min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(max_runtime: Option<Duration>) -> Lifetime {
        Lifetime {
            max_runtime,
            stdin_eof_grace: Some(Duration::from_secs(10)),
            term_grace: Duration::from_secs(3),
            idle: None,
        }
    }

    /// The deadlines in the order the loop honours them, and the one it wakes for.
    #[test]
    fn deadlines() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadlines::start(t0, &lifetime(Some(s(60))));
        assert_eq!(d.next(), Some(t0 + s(60)));
        assert_eq!(d.due(t0 + s(59)), None);
        assert_eq!(d.due(t0 + s(60)), Some(Cause::Timeout));

        d.terminating(t0 + s(1), s(3), Signal::SIGTERM);
        // Only the first terminating signal sets term-grace.
        d.terminating(t0 + s(2), s(3), Signal::SIGINT);
        assert_eq!(d.next(), Some(t0 + s(4)));
        assert_eq!(d.due(t0 + s(3)), None);
        assert_eq!(d.due(t0 + s(4)), Some(Cause::Terminated(Signal::SIGTERM)));

        d.stdin_closed(t0 + s(2), s(1));
        assert_eq!(d.next(), Some(t0 + s(3)));
        // Several due at once: max-runtime before stdin's grace before term-grace.
        assert_eq!(d.due(t0 + s(3)), Some(Cause::StdinClosed));
        assert_eq!(d.due(t0 + s(60)), Some(Cause::Timeout));

        assert_eq!(Deadlines::start(t0, &lifetime(None)).next(), None);
    }

    /// A duration past what `Instant` holds is a deadline never reached, not a panic with the
    /// cage already made.
    #[test]
    fn a_huge_duration_is_never_due() {
        let t0 = Instant::now();
        let huge = Duration::from_secs(u64::MAX);
        let mut d = Deadlines::start(t0, &lifetime(Some(huge)));
        d.terminating(t0, huge, Signal::SIGTERM);
        d.stdin_closed(t0, huge);
        assert_eq!(d, Deadlines::default());
        assert_eq!(d.next(), None);
        assert_eq!(timeout_until(d.next(), t0), PollTimeout::NONE);
    }

    #[test]
    fn timeouts_round_up() {
        let t0 = Instant::now();
        assert_eq!(timeout_until(None, t0), PollTimeout::NONE);
        assert_eq!(timeout_until(Some(t0), t0), PollTimeout::from(1u8));
        let in_2500us = t0 + Duration::from_micros(2500);
        assert_eq!(timeout_until(Some(in_2500us), t0), PollTimeout::from(3u8));
        // A deadline passed long ago wakes the loop at once, plus the rounding.
        assert_eq!(
            timeout_until(Some(t0), t0 + Duration::from_secs(5)),
            PollTimeout::from(1u8)
        );
        // One beyond poll(2)'s range waits as long as poll can.
        let far = t0 + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(timeout_until(Some(far), t0), PollTimeout::MAX);
    }

    /// Property test over the deadline maths: 20,000 random lifetimes and event orders, with
    /// durations drawn from the edges (0, 1 ns, a millisecond either side of poll's range, the
    /// ten-year policy bound, what `Instant` cannot hold) and at random. Nothing panics; `next`
    /// is the earliest deadline set; a deadline is due exactly from its instant on, in the
    /// loop's order; and the poll timeout never wakes the loop before the next deadline (unless
    /// clamped to poll's longest) nor more than a millisecond after it.
    #[test]
    fn deadline_maths_hold_for_any_durations_and_order() {
        // xorshift64*: deterministic, so a failure names its round and can be replayed.
        struct Rng(u64);
        impl Rng {
            fn u64(&mut self) -> u64 {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
            }
            fn duration(&mut self, edges: &[Duration]) -> Duration {
                match self.u64() % 3 {
                    0 => edges[(self.u64() % edges.len() as u64) as usize],
                    1 => Duration::from_nanos(self.u64() % 10_000_000_000),
                    _ => Duration::from_secs(self.u64() % (400 * 24 * 3600)),
                }
            }
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let poll_max = Duration::from_millis(i32::MAX as u64);
        let edges = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(1),
            poll_max - Duration::from_millis(1),
            poll_max,
            poll_max + Duration::from_millis(1),
            crate::units::MAX_DURATION,
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ];
        let t0 = Instant::now();
        for round in 0..20_000 {
            let life = Lifetime {
                max_runtime: (rng.u64() % 4 != 0).then(|| rng.duration(&edges)),
                stdin_eof_grace: Some(rng.duration(&edges)),
                term_grace: rng.duration(&edges),
                idle: None,
            };
            let mut d = Deadlines::start(t0, &life);
            let runtime = life.max_runtime.and_then(|m| t0.checked_add(m));
            let (mut eof, mut term) = (None, None);
            let mut now = t0;
            for _ in 0..4 {
                now = now
                    .checked_add(Duration::from_millis(rng.u64() % 5000))
                    .unwrap();
                match rng.u64() % 3 {
                    0 => {
                        let g = rng.duration(&edges);
                        d.stdin_closed(now, g);
                        eof = now.checked_add(g);
                    }
                    1 => {
                        let g = rng.duration(&edges);
                        d.terminating(now, g, Signal::SIGTERM);
                        if term.is_none() {
                            term = now.checked_add(g);
                        }
                    }
                    _ => {}
                }
                let set = [runtime, eof, term];
                let earliest = set.iter().flatten().min().copied();
                assert_eq!(d.next(), earliest, "round {round}");
                let expected = if runtime.is_some_and(|t| now >= t) {
                    Some(Cause::Timeout)
                } else if eof.is_some_and(|t| now >= t) {
                    Some(Cause::StdinClosed)
                } else if term.is_some_and(|t| now >= t) {
                    Some(Cause::Terminated(Signal::SIGTERM))
                } else {
                    None
                };
                assert_eq!(d.due(now), expected, "round {round}");
                let timeout = timeout_until(d.next(), now);
                match earliest {
                    None => assert_eq!(timeout, PollTimeout::NONE, "round {round}"),
                    Some(e) => {
                        let ms = u64::from(timeout.as_millis().expect("a finite timeout"));
                        let wake = now + Duration::from_millis(ms);
                        let left = e.saturating_duration_since(now);
                        if left < poll_max {
                            assert!(wake >= e, "round {round}: wakes before the deadline");
                            assert!(
                                wake <= e.max(now) + Duration::from_millis(1),
                                "round {round}: wakes more than 1 ms late"
                            );
                        } else {
                            assert_eq!(timeout, PollTimeout::MAX, "round {round}");
                        }
                    }
                }
            }
        }
    }
}
