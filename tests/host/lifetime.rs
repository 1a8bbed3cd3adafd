//! max-runtime, stdin-eof-grace and parent-death.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::*;

/// The bound on every wait of these tests for a process or a line.
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[test]
fn max_runtime_kills_the_cage_with_124() {
    let n = name("runtime");
    let t = TempDir::new(&n);
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--max-runtime", "300ms"],
        &["sh", "-c", "setsid sleep 1000 & exec sleep 1000"],
    ));
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let ev = exit_event(&t.path("ev"));
    assert_eq!(ev["reason"], "timeout");
    assert_eq!(ev["leftover"], 1);
    let lines = reason_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("max-runtime"),
        "{lines:?}"
    );
    assert_no_cgroup(&n);
}

#[test]
fn stdin_eof_grace_kills_a_child_that_outlives_its_stdin() {
    let n = name("eof");
    let t = TempDir::new(&n);
    // The child never reads stdin; claude-cage notices the pipe's writer is gone without
    // reading it.
    let mut c = run_cmd(
        &n,
        &t.path("ev"),
        &["--stdin-eof-grace", "200ms"],
        &["sh", "-c", "echo ready; exec sleep 1000"],
    );
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_ready(&mut child), "ready");
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert_eq!(exit_event(&t.path("ev"))["reason"], "stdin-closed");
    assert_no_cgroup(&n);
}

#[test]
fn stdin_still_open_means_no_eof_kill() {
    // Control for the test above: with the writer still open, the grace never starts and the
    // child ends on its own terms (here: it exits when told to over the pipe).
    let n = name("noeof");
    let t = TempDir::new(&n);
    let mut c = run_cmd(
        &n,
        &t.path("ev"),
        &["--stdin-eof-grace", "200ms"],
        &["sh", "-c", "echo ready; read line; exit 5"],
    );
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_ready(&mut child), "ready");
    // Wait past the grace with the pipe open, on a poll that cannot fire (nothing writes to
    // the child's stdout any more); this is the only place a test waits on time, and it
    // asserts the absence of a kill, not a duration.
    let out_fd = child.stdout.as_ref().unwrap().as_fd();
    let mut fds = [PollFd::new(out_fd, PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(600u16));
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(exit_event(&t.path("ev"))["reason"], "exited");
    assert_no_cgroup(&n);
}

#[test]
fn the_cage_dies_with_the_process_that_started_it() {
    let n = name("pdeath");
    let t = TempDir::new(&n);
    let ev = t.path("ev");
    // An intermediate shell starts claude-cage and prints its pid; the caged child prints its
    // own pid once running. Then the intermediate shell is SIGKILLed.
    let script = format!(
        "{} run --name {n} --events {} -- sh -c 'echo $$; exec sleep 1000' & echo $!; wait",
        bin(),
        ev.display()
    );
    let mut starter = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(starter.stdout.take().unwrap()).lines();
    let mut a: i32 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let mut b: i32 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    // Which line came first depends on scheduling: the cage's child is the one in the cage.
    let in_cage = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/cgroup"))
            .unwrap_or_default()
            .contains(&format!("/{n}/"))
    };
    if in_cage(a) {
        std::mem::swap(&mut a, &mut b);
    }
    let (supervisor, caged) = (a, b);
    assert!(in_cage(caged), "the caged child {caged} is not in the cage");
    let pidfd = claude_cage::sys::pidfd_open(Pid::from_raw(supervisor)).unwrap();
    kill(Pid::from_raw(starter.id() as i32), Signal::SIGKILL).unwrap();
    starter.wait().unwrap();
    assert!(
        exits_within(&pidfd, WAIT),
        "claude-cage did not exit after its starter died"
    );
    assert!(!alive(caged), "the caged child outlived the starter");
    assert_eq!(exit_event(&ev)["reason"], "parent-died");
    assert_no_cgroup(&n);
}

/// A starter shell that runs `claude-cage run` with the policy text `policy` in the
/// background, prints `supervisor=<pid>` and waits. `child` is the caged `sh -c` script; it
/// prints `child=$$` once it runs. The events go to `ev` in `t`, claude-cage's stderr to `err`.
struct Started {
    starter: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    supervisor: i32,
    caged: i32,
}

fn start_under_a_starter(n: &str, t: &TempDir, policy: &str, child: &str) -> Started {
    let p = t.path("p.toml");
    std::fs::write(&p, policy).unwrap();
    // The child's script is the starter's "$1", so that the starter expands nothing in it.
    let script = format!(
        "{} run --name {n} --events {} --policy {} -- sh -c \"$1\" 2>{} & echo supervisor=$!; wait",
        bin(),
        t.path("ev").display(),
        p.display(),
        t.path("err").display()
    );
    let mut starter = Command::new("sh")
        .args(["-c", &script, "starter", child])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(starter.stdout.take().unwrap());
    let (mut supervisor, mut caged) = (0, 0);
    for _ in 0..2 {
        let l = next_line(&mut out, WAIT);
        match l.split_once('=') {
            Some(("supervisor", p)) => supervisor = p.parse().unwrap(),
            Some(("child", p)) => caged = p.parse().unwrap(),
            _ => panic!("unexpected line {l:?}"),
        }
    }
    Started {
        starter,
        out,
        supervisor,
        caged,
    }
}

/// `parent-death = "ignore"`: the starter is SIGKILLed and the cage lives on; the child ends on
/// its own terms and claude-cage reports its status. The control, with the default "kill", is
/// `the_cage_dies_with_the_process_that_started_it` above.
///
/// No sleep stands in for "claude-cage had its chance to kill": after the starter is reaped its
/// pidfd is readable, so the first SIGUSR1 claude-cage forwards is read in the same loop turn
/// that would see the death (and kill the cage under "kill"); the second one is acknowledged
/// only if the child outlived that turn.
#[test]
fn parent_death_ignore_lets_the_child_outlive_its_starter() {
    let n = name("pdeath-ignore");
    let t = TempDir::new(&n);
    let ev = t.path("ev");
    let child = "n=0; trap 'n=$((n+1)); echo ack-$n; if [ $n = 2 ]; then kill $s; exit 7; fi' USR1; \
                 sleep 1000 & s=$!; echo child=$$; while :; do wait $s; done";
    let Started {
        mut starter,
        mut out,
        supervisor,
        caged,
    } = start_under_a_starter(&n, &t, "[lifetime]\nparent-death = \"ignore\"\n", child);
    let mut next = || next_line(&mut out, WAIT);
    let pidfd = claude_cage::sys::pidfd_open(Pid::from_raw(supervisor)).unwrap();
    kill(Pid::from_raw(starter.id() as i32), Signal::SIGKILL).unwrap();
    starter.wait().unwrap();
    for i in 1..=2 {
        kill(Pid::from_raw(supervisor), Signal::SIGUSR1).unwrap();
        assert_eq!(
            next(),
            format!("ack-{i}"),
            "the child did not outlive its starter"
        );
    }
    assert!(
        exits_within(&pidfd, WAIT),
        "claude-cage did not exit after its child did"
    );
    assert!(!alive(caged), "the caged child is still alive");
    // claude-cage's parent is gone, so its status is read from its exit event.
    let exit = exit_event(&ev);
    assert_eq!(exit["reason"], "exited", "{exit}");
    assert_eq!(exit["status"], 7, "{exit}");
    assert_no_cgroup(&n);
}

/// `systemctl stop` of a bot signals every process of the service at once: claude-cage gets
/// SIGTERM and forwards it, and then the bot (its starter) dies before the child has exited.
/// The cage is killed for the starter's death, at once, not for term-grace (an hour here): the
/// reason stays `terminated`, the first cause, and the line names what made claude-cage kill.
#[test]
fn a_starter_that_dies_after_a_forwarded_sigterm_is_named_as_what_killed_the_cage() {
    let n = name("term-pdeath");
    let t = TempDir::new(&n);
    let child =
        "trap 'echo term' TERM; sleep 1000 & s=$!; echo child=$$; while :; do wait $s; done";
    let Started {
        mut starter,
        mut out,
        supervisor,
        caged,
    } = start_under_a_starter(&n, &t, "[lifetime]\nterm-grace = \"1h\"\n", child);
    let mut next = || next_line(&mut out, WAIT);
    let pidfd = claude_cage::sys::pidfd_open(Pid::from_raw(supervisor)).unwrap();
    kill(Pid::from_raw(supervisor), Signal::SIGTERM).unwrap();
    // The child's trap answers once claude-cage has forwarded the signal.
    assert_eq!(next(), "term", "the child was not forwarded SIGTERM");
    assert!(alive(caged), "the child ignores SIGTERM and must still run");
    kill(Pid::from_raw(starter.id() as i32), Signal::SIGKILL).unwrap();
    starter.wait().unwrap();
    assert!(
        exits_within(&pidfd, WAIT),
        "claude-cage did not exit after its starter died"
    );
    assert!(!alive(caged), "the caged child outlived the starter");
    let exit = exit_event(&t.path("ev"));
    assert_eq!(exit["reason"], "terminated", "{exit}");
    assert_eq!(exit["status"], 137, "{exit}");
    let stderr = std::fs::read_to_string(t.path("err")).unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("claude-cage: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(
            "received SIGTERM, forwarded it; the process that started claude-cage died before the child exited; killed the cage after "
        ),
        "{stderr}"
    );
    assert!(!lines[0].contains("term-grace"), "{stderr}");
    assert_no_cgroup(&n);
}
