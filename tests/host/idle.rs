//! `idle-timeout` on this host's kernel (`cpu.stat` is in every cgroup v2 cgroup): an idle
//! child is killed with reason `idle` and 124; a busy one and one that works in bursts are not;
//! and without the key the supervisor of an idle child never wakes.

use std::process::Stdio;
use std::time::Duration;

use crate::*;

/// A child that sleeps: killed a window (2 s) after it started, plus at most a sample's step
/// and the teardown.
#[test]
fn an_idle_child_is_killed_with_reason_idle() {
    let n = name("idle");
    let t = TempDir::new(&n);
    let started = std::time::Instant::now();
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--idle-timeout", "2s", "--max-runtime", "60s"],
        &["sh", "-c", "setsid sleep 1000 & exec sleep 1000"],
    ));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let ev = exit_event(&t.path("ev"));
    assert_eq!(ev["reason"], "idle");
    assert_eq!(ev["leftover"], 1);
    let lines = reason_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.contains(": idle for 2.0s (CPU ")
            && line.contains(" of one CPU, below idle-cpu 0.5%); killed the cage after "),
        "{line}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "killed before a whole window: {took:?}"
    );
    assert!(
        took < Duration::from_secs(30),
        "not killed within the bound: {took:?}"
    );
    assert_no_cgroup(&n);
}

/// Controls: a child that uses a whole CPU, and one that works a few percent of the time in
/// bursts, outlive a 1 s idle-timeout until max-runtime (3 s) ends them (reason timeout).
#[test]
fn a_busy_child_and_a_bursty_one_are_not_idle() {
    let n = name("notidle");
    let t = TempDir::new(&n);
    for (what, script) in [
        ("busy", "while :; do :; done"),
        (
            "bursty",
            "while :; do i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done; sleep 0.5; done",
        ),
    ] {
        let ev = t.path(&format!("{what}.ev"));
        let out = output(run_cmd(
            &n,
            &ev,
            &["--idle-timeout", "1s", "--max-runtime", "3s"],
            &["sh", "-c", script],
        ));
        assert_eq!(out.status.code(), Some(124), "{what}: {out:?}");
        assert_eq!(exit_event(&ev)["reason"], "timeout", "{what}");
    }
    assert_no_cgroup(&n);
}

/// Without idle-timeout (and nothing else to wake it) the supervisor of a sleeping child
/// sleeps too: its context switches do not move over 3 s. The control: with idle-timeout 4 s
/// (a sample a second) they do.
#[test]
fn without_idle_timeout_an_idle_supervisor_never_wakes() {
    let n = name("quiet");
    let t = TempDir::new(&n);
    let switches = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    for (extra, quiet) in [(&[][..], true), (&["--idle-timeout", "4s"][..], false)] {
        let mut child = run_cmd(
            &n,
            &t.path("ev"),
            extra,
            &["sh", "-c", "echo ready; exec sleep 1000"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        assert_eq!(wait_ready(&mut child), "ready");
        // The child runs before the supervisor has finished setting up (the start event, the
        // alerts): measure from when it waits in its poll loop.
        let in_poll = || {
            std::fs::read_to_string(format!("/proc/{}/wchan", child.id()))
                .is_ok_and(|w| w.contains("poll"))
        };
        let waited = std::time::Instant::now();
        while !in_poll() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the supervisor never waited in poll"
            );
            std::thread::yield_now();
        }
        let before = switches(child.id());
        std::thread::sleep(Duration::from_secs(3));
        let after = switches(child.id());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap();
        if quiet {
            assert_eq!(after, before, "the supervisor woke without idle-timeout");
        } else {
            assert!(after >= before + 2, "the control: {before} -> {after}");
        }
    }
    assert_no_cgroup(&n);
}
