//! The whole tree is gone when `run` returns, with a negative control that shows the same
//! escapees survive the naive way (a process-group kill).

use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use crate::*;

/// Leaves a `setsid` process (new session) and a double-forked one (reparented away) behind,
/// each writing its pid to $1 once it is in place, and exits when both have.
const ESCAPEES: &str = r#": >> "$1"
setsid sh -c 'echo $$ >> "$1"; exec sleep 1000' sh "$1" </dev/null >/dev/null 2>&1 &
( sh -c 'echo $$ >> "$1"; exec sleep 1000' sh "$1" </dev/null >/dev/null 2>&1 & )
while [ "$(wc -l < "$1")" -lt 2 ]; do :; done
exit 0"#;

/// The pid of the escapee that left the session (the other one stayed in the process group).
fn setsid_pid(pids: &[i32]) -> i32 {
    let sid = |p: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(3).map(str::to_owned))
    };
    *pids
        .iter()
        .find(|&&p| sid(p) == Some(p.to_string()))
        .expect("one escapee leads its own session")
}

fn pids(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn setsid_and_double_forked_processes_survive_a_process_group_kill() {
    // Negative control: without claude-cage, killing the child's process group after it exits
    // leaves the setsid'd process alive. The control cgroup kills everything afterwards.
    let ctl = ControlCgroup::new("escape");
    let t = TempDir::new("escape-ctl");
    let pidfile = t.path("pids");
    let procs = ctl.0.join("cgroup.procs");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}; exec sh -c '{}' sh {}",
            procs.display(),
            ESCAPEES.replace('\'', "'\\''"),
            pidfile.display()
        ))
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pgid = Pid::from_raw(child.id() as i32);
    assert!(child.wait().unwrap().success());
    let _ = killpg(pgid, Signal::SIGKILL);
    let escapees = pids(&pidfile);
    assert_eq!(escapees.len(), 2);
    assert!(
        alive(setsid_pid(&escapees)),
        "the setsid process should survive a process-group kill"
    );
    drop(ctl);
    assert!(
        !escapees.iter().any(|&p| alive(p)),
        "the control cgroup must clean up"
    );
}

#[test]
fn setsid_and_double_forked_processes_die_with_the_cage() {
    let n = name("escape");
    let t = TempDir::new(&n);
    let pidfile = t.path("pids");
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &["sh", "-c", ESCAPEES, "sh", pidfile.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let escapees = pids(&pidfile);
    assert_eq!(escapees.len(), 2);
    for p in &escapees {
        assert!(!alive(*p), "process {p} outlived its cage");
    }
    assert_eq!(exit_event(&t.path("ev"))["leftover"], 2);
    assert_no_cgroup(&n);
}

#[test]
fn nested_cgroups_made_by_the_child_are_removed() {
    // What Claude Code does: a cgroup beside its own, plus a nested one, each with a process.
    let n = name("nested");
    let t = TempDir::new(&n);
    let script = r#"mkdir "$CLAUDE_CAGE_CGROUP/claude-code-bash" "$CLAUDE_CAGE_CGROUP/claude-code-bash/deeper"
sh -c 'echo $$ > "$CLAUDE_CAGE_CGROUP/claude-code-bash/deeper/cgroup.procs"; exec sleep 1000' &
echo $! > "$1"
while ! grep -qx "$(cat "$1")" "$CLAUDE_CAGE_CGROUP/claude-code-bash/deeper/cgroup.procs" 2>/dev/null; do :; done
exit 0"#;
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &["sh", "-c", script, "sh", t.path("pid").to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let pid: i32 = std::fs::read_to_string(t.path("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid));
    assert_eq!(exit_event(&t.path("ev"))["leftover"], 1);
    assert_no_cgroup(&n);
}

#[test]
fn a_stopped_process_is_killed_too() {
    let n = name("stopped");
    let t = TempDir::new(&n);
    let script = r#"sleep 1000 & echo $! > "$1"; kill -STOP $!; exit 0"#;
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &["sh", "-c", script, "sh", t.path("pid").to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let pid: i32 = std::fs::read_to_string(t.path("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid));
    assert_no_cgroup(&n);
}

/// systemd removes an emptied scope on its own, at any moment of claude-cage's teardown: a
/// cgroup file opened just before reads and writes ENODEV, which claude-cage takes for "gone"
/// (as it takes ENOENT), never for a failure that would keep the state file. The control: the
/// same files read and write fine while the cgroup is there.
#[test]
fn files_of_a_cgroup_removed_under_them_read_as_gone() {
    use claude_cage::cgroup::fs;
    use std::io::{Read, Write};
    let dir = mount().join(name("gone"));
    std::fs::create_dir(&dir).unwrap();
    let open = || {
        let events = std::fs::File::open(dir.join(fs::EVENTS)).unwrap();
        let kill = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(fs::KILL))
            .unwrap();
        (events, kill)
    };
    let (mut events, mut kill) = open();
    let mut text = String::new();
    events.read_to_string(&mut text).unwrap();
    assert_eq!(fs::keyed(&text, "populated"), Some(0), "{text}");
    kill.write_all(b"1").unwrap();

    let (mut events, mut kill) = open();
    std::fs::remove_dir(&dir).unwrap();
    let read = events.read_to_string(&mut String::new()).unwrap_err();
    let write = kill.write_all(b"1").unwrap_err();
    for (what, e) in [("read", &read), ("write", &write)] {
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENODEV),
            "{what} after rmdir: {e}"
        );
        assert!(fs::gone(e), "{what} after rmdir: {e} is not taken for gone");
    }
    let missing = std::fs::File::open(dir.join(fs::EVENTS)).unwrap_err();
    assert!(fs::gone(&missing), "{missing}");
    assert_eq!(
        fs::read_optional(&dir, fs::EVENTS).unwrap(),
        None,
        "cgroup.events of a removed cgroup"
    );
    let refused = std::io::Error::from_raw_os_error(libc::EACCES);
    assert!(
        !fs::gone(&refused),
        "EACCES is a failure, not a gone cgroup"
    );
}
