//! `idle-timeout`: a cage whose CPU use (`cpu.stat usage_usec`, the whole cage) stays below
//! `idle-cpu` for a whole window is idle. Checked four times a window, from the poll loop's
//! timeout; pure, so the arithmetic is unit-tested.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many times per window the cage's CPU use is sampled.
const CHECKS_PER_WINDOW: u32 = 4;

/// The idle check of one cage.
#[derive(Debug, Clone)]
pub(super) struct Idle {
    window: Duration,
    /// The most CPU an idle cage uses, as a share of one CPU (0.005 for "0.5%").
    max_share: f64,
    step: Duration,
    /// (when, `usage_usec`), oldest first: at most one older than the window, as its anchor.
    samples: VecDeque<(Instant, u64)>,
    next: Instant,
}

/// An idle verdict: how long the cage was idle and the share of one CPU it used meanwhile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub idle_for: Duration,
    pub share: f64,
}

impl Idle {
    pub(super) fn new(now: Instant, window: Duration, max_share: f64) -> Idle {
        let step = (window / CHECKS_PER_WINDOW).max(Duration::from_millis(10));
        Idle {
            window,
            max_share,
            step,
            samples: VecDeque::new(),
            next: now,
        }
    }

    /// When the next sample is due.
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// Takes a sample (`usage` is the cage's `usage_usec` now, `None` if it could not be
    /// read); the verdict when the cage used less than its share over the last whole window.
    pub(super) fn sample(&mut self, now: Instant, usage: Option<u64>) -> Option<Verdict> {
        self.next = now.checked_add(self.step).unwrap_or(now);
        let Some(usage) = usage else {
            // Unreadable: no verdict on what cannot be measured, and the window starts over.
            self.samples.clear();
            return None;
        };
        self.samples.push_back((now, usage));
        // Keep one sample at or before the window's start (the anchor), none older.
        while self.samples.len() > 1 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let &(t0, u0) = self.samples.front()?;
        let span = now.duration_since(t0);
        if span < self.window {
            return None;
        }
        let used = Duration::from_micros(usage.saturating_sub(u0));
        let share = used.as_secs_f64() / span.as_secs_f64();
        (share < self.max_share).then_some(Verdict {
            idle_for: span,
            share,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Samples every `step` from t0 for `n` steps, the cage using `per_step_us` each; the first
    /// verdict, with the step it came at.
    fn run(window: Duration, share: f64, per_step_us: &[u64]) -> Option<(usize, Verdict)> {
        let t0 = Instant::now();
        let mut idle = Idle::new(t0, window, share);
        let mut usage = 0;
        for (i, u) in per_step_us.iter().enumerate() {
            usage += u;
            let now = idle.next();
            assert!(now >= t0 + idle.step * i as u32, "a sample came early");
            if let Some(v) = idle.sample(now, Some(usage)) {
                return Some((i, v));
            }
        }
        None
    }

    #[test]
    fn a_sleeping_cage_is_idle_after_one_window_and_no_sooner() {
        let w = Duration::from_secs(4);
        // step = 1s; the window is covered from the fifth sample (t0 + 4s) on.
        let (i, v) = run(w, 0.005, &[0; 10]).expect("idle");
        assert_eq!(i, 4);
        assert_eq!(v.idle_for, w);
        assert_eq!(v.share, 0.0);
    }

    #[test]
    fn a_busy_cage_and_a_bursty_one_are_not_idle() {
        let w = Duration::from_secs(4);
        // One CPU all the time.
        assert_eq!(run(w, 0.005, &[1_000_000; 40]), None);
        // 5% of a CPU in bursts: 200 ms of CPU every fourth second.
        let bursts: Vec<u64> = (0..40)
            .map(|i| if i % 4 == 0 { 200_000 } else { 0 })
            .collect();
        assert_eq!(run(w, 0.005, &bursts), None);
        // The same bursts under an idle-cpu of 10% are idle.
        assert!(run(w, 0.10, &bursts).is_some());
    }

    #[test]
    fn work_restarts_the_window() {
        let w = Duration::from_secs(4);
        // Busy for 3 s, then idle: idle only a whole window after the work stopped.
        let mut steps = vec![1_000_000; 3];
        steps.extend([0; 10]);
        let (i, v) = run(w, 0.005, &steps).expect("idle in the end");
        assert_eq!(i, 2 + 4, "idle a window after the last busy step");
        assert!(v.share < 0.005);
    }

    #[test]
    fn an_unreadable_sample_starts_the_window_over() {
        let t0 = Instant::now();
        let w = Duration::from_secs(4);
        let mut idle = Idle::new(t0, w, 0.005);
        for i in 0..4 {
            assert_eq!(idle.sample(t0 + Duration::from_secs(i), Some(0)), None);
        }
        assert_eq!(idle.sample(t0 + Duration::from_secs(4), None), None);
        for i in 5..9 {
            assert_eq!(
                idle.sample(t0 + Duration::from_secs(i), Some(0)),
                None,
                "{i}"
            );
        }
        assert!(idle.sample(t0 + Duration::from_secs(9), Some(0)).is_some());
        // A tiny window still samples at most every 10 ms.
        assert_eq!(Idle::new(t0, MS, 0.005).step, 10 * MS);
    }
}
