//! Exit statuses: pass-through, 126/127, and the one reason line.

use crate::*;

#[test]
fn passes_exit_status_through() {
    for code in [0, 1, 7, 255] {
        let n = name(&format!("exit{code}"));
        let t = TempDir::new(&n);
        let out = output(run_cmd(
            &n,
            &t.path("ev"),
            &[],
            &["sh", "-c", &format!("exit {code}")],
        ));
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let ev = exit_event(&t.path("ev"));
        assert_eq!(ev["reason"], "exited");
        assert_eq!(ev["status"], code);
        let lines = reason_lines(&out);
        if code == 0 {
            assert!(lines.is_empty(), "a clean exit prints no reason: {lines:?}");
        } else {
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].contains(&format!("exited with status {code}")),
                "{lines:?}"
            );
        }
        assert_no_cgroup(&n);
    }
}

#[test]
fn child_runs_in_the_cage_leaf_with_its_variables() {
    let n = name("env");
    let t = TempDir::new(&n);
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &[
            "sh",
            "-c",
            "echo $CLAUDE_CAGE_ID; echo $CLAUDE_CAGE_CGROUP; grep ^0:: /proc/self/cgroup",
        ],
    ));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let id = lines[0];
    assert!(id.starts_with(&format!("{n}-")), "{id}");
    assert_eq!(lines[1], mount().join(&n).join(id).display().to_string());
    assert_eq!(lines[2], format!("0::/{n}/{id}/main"));
    let start = events(&t.path("ev"))
        .into_iter()
        .find(|e| e["event"] == "start")
        .expect("start event");
    assert_eq!(start["cage"], id);
    assert_eq!(start["bot"], n);
    assert_eq!(start["argv"][0], "sh");
    assert_no_cgroup(&n);
}

#[test]
fn not_found_is_127_and_not_executable_is_126() {
    let n = name("notfound");
    let t = TempDir::new(&n);
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &["no-such-program-for-claude-cage"],
    ));
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{out:?}"
    );
    assert_no_cgroup(&n);

    let script = t.path("noexec.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let out = output(run_cmd(&n, &t.path("ev"), &[], &[script.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert_no_cgroup(&n);

    // Executable bits but no valid format: exec itself fails, after the cage was created.
    let junk = t.path("junk");
    std::fs::write(&junk, [0x7f, b'E', b'L', b'F', 0, 0, 0, 0]).unwrap();
    std::fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = output(run_cmd(&n, &t.path("ev"), &[], &[junk.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        events(&t.path("ev")).is_empty(),
        "nothing started, so no events"
    );
    assert_no_cgroup(&n);
}

#[test]
fn child_signal_death_is_128_plus_n() {
    let n = name("sigdeath");
    let t = TempDir::new(&n);
    let out = output(run_cmd(&n, &t.path("ev"), &[], &["sh", "-c", "kill -9 $$"]));
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let ev = exit_event(&t.path("ev"));
    // No OOM kill happened: a SIGKILL from elsewhere is "signaled", never "oom-killed".
    assert_eq!(ev["reason"], "signaled");
    assert_eq!(ev["signal"], 9);
    let lines = reason_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("SIGKILL"), "{lines:?}");
    assert_no_cgroup(&n);
}

#[test]
fn a_closed_stderr_does_not_kill_claude_cage() {
    // The bot stopped reading stderr: the reason line meets a pipe without a reader. claude-cage
    // must still clean up and return the child's status instead of dying of SIGPIPE.
    let n = name("epipe");
    let t = TempDir::new(&n);
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let mut c = run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &["sh", "-c", "setsid sleep 1000 & exit 3"],
    );
    let status = c
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(w))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert_eq!(exit_event(&t.path("ev"))["leftover"], 1);
    assert_no_cgroup(&n);
}
