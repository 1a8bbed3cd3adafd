//! Signal forwarding, term-grace escalation, and the signal state the child inherits.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use claude_cage::supervise::FORWARDED;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::*;

fn spawn_ready(mut c: Command) -> std::process::Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn forwards_signals_to_the_child() {
    let n = name("fwd");
    let t = TempDir::new(&n);
    // The child answers SIGUSR1 with exit 42; it says "ready" once its trap is set.
    let script = "trap 'exit 42' USR1; echo ready; while :; do sleep 1; done";
    let mut child = spawn_ready(run_cmd(&n, &t.path("ev"), &[], &["sh", "-c", script]));
    assert_eq!(wait_ready(&mut child), "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR1).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    assert_eq!(exit_event(&t.path("ev"))["reason"], "exited");
    assert_no_cgroup(&n);
}

#[test]
fn sigterm_is_forwarded_and_the_child_status_returned() {
    let n = name("term");
    let t = TempDir::new(&n);
    let mut child = spawn_ready(run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &["sh", "-c", "echo ready; exec sleep 1000"],
    ));
    assert_eq!(wait_ready(&mut child), "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    let ev = exit_event(&t.path("ev"));
    assert_eq!(ev["reason"], "terminated");
    assert_eq!(ev["signal"], 15);
    let lines = reason_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("received SIGTERM"), "{lines:?}");
    assert_no_cgroup(&n);
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_term_grace() {
    let n = name("grace");
    let t = TempDir::new(&n);
    let script = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let mut child = spawn_ready(run_cmd(
        &n,
        &t.path("ev"),
        &["--term-grace", "300ms"],
        &["sh", "-c", script],
    ));
    assert_eq!(wait_ready(&mut child), "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let ev = exit_event(&t.path("ev"));
    assert_eq!(ev["reason"], "terminated");
    let lines = reason_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("term-grace"),
        "{lines:?}"
    );
    assert_no_cgroup(&n);
}

/// Every signal claude-cage forwards reaches the child: for each, a child whose trap records it
/// and exits with a status of its own; claude-cage returns that status.
#[test]
fn every_forwarded_signal_reaches_the_child() {
    // The list is the engine's own; the signals the documentation promises must be in it.
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        assert!(FORWARDED.contains(&sig), "{sig} is not forwarded");
    }
    for (i, sig) in FORWARDED.iter().enumerate() {
        let short = sig.as_str().trim_start_matches("SIG");
        let n = name(&format!("fwd-{}", short.to_lowercase()));
        let t = TempDir::new(&n);
        let status = 40 + i as i32;
        // Perl, not sh: a shell cannot trap a signal that was ignored when it started (POSIX),
        // and SIGINT and SIGQUIT are ignored in a job started in the background by a shell
        // without job control, which the child would inherit through claude-cage as it should.
        // Its sleeps are short: Perl runs a handler between operations, so a signal that lands
        // after "ready" but before the sleep begins waits for the sleep's end (seen once in CI,
        // under the stress test's load, with a sleep of 1000 s).
        let script = format!(
            "$| = 1; $SIG{{{short}}} = sub {{ print \"got-{short}\\n\"; exit {status} }}; print \"ready\\n\"; sleep 1 while 1;"
        );
        let mut child = spawn_ready(run_cmd(
            &n,
            &t.path("ev"),
            // No term-grace kill may race the child's own exit.
            &["--term-grace", "1h"],
            &["perl", "-e", &script],
        ));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(
            next_line(&mut out, Duration::from_secs(10)),
            "ready",
            "{sig}"
        );
        kill(Pid::from_raw(child.id() as i32), *sig).unwrap();
        assert_eq!(
            next_line(&mut out, Duration::from_secs(10)),
            format!("got-{short}"),
            "the child did not receive {sig}"
        );
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(status), "{sig}: {st:?}");
        let ev = exit_event(&t.path("ev"));
        assert_eq!(ev["status"], status, "{sig}: {ev}");
        assert_no_cgroup(&n);
    }
}

/// The blocked and ignored signals of the child are exactly those of the process that started
/// claude-cage. The starter is python3 with a mask and ignored signals of its own
/// (`pthread_sigmask` and `signal`, kept across `exec`): blocked SIGUSR1 (which claude-cage
/// itself blocks and reads from a signalfd) and SIGALRM, ignored SIGHUP and SIGQUIT, SIGPIPE at
/// its default (Rust's runtime ignores it; claude-cage must not pass that on). It prints its
/// state, then execs claude-cage, whose child (grep, which leaves both alone; dash would clear
/// the mask) prints its own. A child started with an empty mask, or with claude-cage's, differs.
#[test]
fn child_inherits_the_original_signal_mask_and_dispositions() {
    let n = name("sigstate");
    let starter = r#"import os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGUSR1, signal.SIGALRM})
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGQUIT, signal.SIG_IGN)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
for line in open("/proc/self/status"):
    if line.startswith(("SigBlk", "SigIgn")):
        sys.stdout.write(line)
sys.stdout.flush()
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(starter)
        .args([bin(), "run", "--name", &n, "--"])
        .args(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("this test needs python3 to start claude-cage: {e}"));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let (started, caged) = (&lines[..2], &lines[2..]);
    let mask = |l: &str| u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap();
    let bit = |s: Signal| 1u64 << (s as i32 - 1);
    // The starter really has the state this test means to carry through.
    assert!(started[0].starts_with("SigBlk"), "{text}");
    assert_eq!(
        mask(started[0]),
        bit(Signal::SIGUSR1) | bit(Signal::SIGALRM),
        "{text}"
    );
    assert!(started[1].starts_with("SigIgn"), "{text}");
    let ignored = bit(Signal::SIGHUP) | bit(Signal::SIGQUIT);
    assert_eq!(mask(started[1]) & ignored, ignored, "{text}");
    assert_eq!(mask(started[1]) & bit(Signal::SIGPIPE), 0, "{text}");
    assert_eq!(
        caged, started,
        "the caged child's signal state differs from its starter's"
    );
    assert_no_cgroup(&n);
}
