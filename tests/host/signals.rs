//! Signal forwarding, term-grace escalation, and the signal state the child inherits.

use std::process::{Command, Stdio};

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

/// The blocked and ignored signals of the child are those claude-cage was started with
/// (Rust's runtime ignores SIGPIPE; claude-cage must not pass that on).
#[test]
fn child_inherits_the_original_signal_mask_and_dispositions() {
    let n = name("sigstate");
    let probe = "grep -E '^Sig(Blk|Ign)' /proc/self/status";
    let direct = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' HUP; exec sh -c \"{probe}\""))
        .output()
        .unwrap();
    let caged = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' HUP; exec {} run --name {n} -- sh -c \"{probe}\"",
            bin()
        ))
        .output()
        .unwrap();
    assert!(caged.status.success(), "{caged:?}");
    let d = String::from_utf8_lossy(&direct.stdout);
    let c = String::from_utf8_lossy(&caged.stdout);
    assert!(d.contains("SigIgn"), "{d}");
    assert_eq!(c, d, "the caged child's signal state differs");
    assert_no_cgroup(&n);
}
