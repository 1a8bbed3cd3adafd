//! The reasons, statuses and lines of every way a cage ends.

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
        idle: None,
        snapshot: None,
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

/// The exit record names the limit behind OOM kills in the cage, as the line does in words:
/// the cage's memory.max, the bot's aggregate, or neither; none without an OOM kill.
#[test]
fn the_exit_record_names_the_limit_the_oom_killer_enforced() {
    use crate::events::OomLimit;
    let p = policy();
    let applied = Applied {
        memory_max: Some(Limit::Bytes(1 << 30)),
        bot_memory_max: Some(Limit::Bytes(3 << 30)),
        ..Default::default()
    };
    let o = outcome(ChildEnd::Signaled(Signal::SIGKILL), None);
    let cases = [
        (1, 0, Some(OomLimit::Cage), "at memory.max 1.0 GiB"),
        (
            0,
            1,
            Some(OomLimit::Bot),
            "at the bot's aggregate memory-max 3.0 GiB",
        ),
        (0, 0, Some(OomLimit::Outside), "outside the cage's limits"),
    ];
    for (oom, bot_oom, limit, words) in cases {
        let mut e = end(&o, &p, &applied, Duration::from_secs(1));
        e.counters.oom = oom;
        e.counters.oom_kill = 1;
        e.bot_oom = bot_oom;
        let r = e.report();
        assert_eq!(r.record.oom_limit, limit);
        let line = r.line.unwrap();
        assert!(line.contains(words), "{line:?} lacks {words:?}");
    }
    let ok = outcome(ChildEnd::Exited(1), None);
    let r = end(&ok, &p, &applied, Duration::from_secs(1)).report();
    assert_eq!(r.record.oom_limit, None);
}

/// An idle cage is killed with reason idle and exit status 124, and the line says how long it
/// was idle and how much CPU it used against idle-cpu.
#[test]
fn an_idle_cage_is_reported_with_its_cpu_use() {
    let mut p = policy();
    p.idle_timeout = Some(Duration::from_secs(1800));
    p.idle_cpu = 0.005;
    let applied = Applied::default();
    let mut o = outcome(ChildEnd::Signaled(Signal::SIGKILL), Some(Cause::Idle));
    o.killed_by_us = true;
    o.idle = Some(crate::supervise::IdleVerdict {
        idle_for: Duration::from_secs(1800),
        share: 0.0002,
    });
    let r = end(&o, &p, &applied, Duration::from_secs(5400)).report();
    assert_eq!((r.reason, r.status), (Reason::Idle, 124));
    assert_eq!(
        r.line.as_deref(),
        Some(
            "idle for 30m00s (CPU 0.02% of one CPU, below idle-cpu 0.5%); killed the cage after 1h30m"
        )
    );
}

/// An OOM-killed end names the largest processes of the last snapshot taken before the kill,
/// and the exit record carries it; without a snapshot the line names no one.
#[test]
fn an_oom_kill_names_who_ate_the_memory_when_a_snapshot_saw_it() {
    use crate::cgroup::snapshot::{ProcMem, Snapshot};
    let p = policy();
    let applied = Applied {
        memory_max: Some(Limit::Bytes(4 << 30)),
        ..Default::default()
    };
    let proc_mem = |pid, comm: &str, command: &str, rss| ProcMem {
        pid,
        comm: comm.into(),
        command: command.into(),
        rss,
        rss_anon: rss,
        rss_file: 0,
    };
    let mut o = outcome(ChildEnd::Signaled(Signal::SIGKILL), None);
    o.snapshot = Some(Snapshot {
        top: vec![
            proc_mem(4711, "node", "node build.js", 2900 << 20),
            proc_mem(4700, "claude", "claude -p", 900 << 20),
        ],
        processes: 7,
        memory_stat: Default::default(),
    });
    let mut e = end(&o, &p, &applied, Duration::from_secs(4320));
    e.counters.oom = 1;
    e.counters.oom_kill = 1;
    e.peak = Some(4 << 30);
    let r = e.report();
    assert_eq!(
        r.line.as_deref(),
        Some(
            "killed by the kernel OOM killer at memory.max 4.0 GiB (peak 4.0 GiB) after 1h12m; largest: node 2.8 GiB (pid 4711, node build.js), claude 900.0 MiB"
        )
    );
    assert_eq!(r.record.snapshot.as_ref().map(|s| s.top.len()), Some(2));
    // The control: no snapshot, no name.
    o.snapshot = None;
    let mut e = end(&o, &p, &applied, Duration::from_secs(4320));
    e.counters.oom = 1;
    e.counters.oom_kill = 1;
    let line = e.report().line.unwrap();
    assert!(!line.contains("largest"), "{line}");
}
