//! The alert hook on this host: it hears of an abnormal exit (not of a clean one), runs outside
//! the cage, and one that hangs is killed after its timeout. memory-warn and PSI alerts need
//! the memory controller and are proven in the VM suite.

use crate::*;

fn policy(t: &TempDir, timeout: &str, hook_body: &str) -> std::path::PathBuf {
    let hook = t.path("hook");
    std::fs::write(&hook, format!("#!/bin/sh\n{hook_body}\n")).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let p = t.path("p.toml");
    std::fs::write(
        &p,
        format!(
            "[alerts]\nexec = [\"{}\"]\nexec-timeout = \"{timeout}\"\n",
            hook.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn the_hook_receives_an_abnormal_exit_and_runs_outside_the_cage() {
    let n = name("hook");
    let t = TempDir::new(&n);
    let log = t.path("hook.log");
    let p = policy(
        &t,
        "5s",
        &format!(
            "cat > {0}; grep ^0:: /proc/self/cgroup >> {0}",
            log.display()
        ),
    );
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["true"],
    ));
    assert!(out.status.success(), "{out:?}");
    assert!(!log.exists(), "a clean exit is not an alert");

    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // claude-cage waits for the hook before it exits, so the file is complete now.
    let text = std::fs::read_to_string(&log).expect("the hook ran");
    let mut lines = text.lines();
    let event: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(event["event"], "exit");
    assert_eq!(event["status"], 3);
    let cgroup = lines.next().unwrap();
    assert!(
        !cgroup.contains(&n),
        "the hook ran inside the cage: {cgroup}"
    );
    assert_no_cgroup(&n);
}

#[test]
fn a_hook_that_hangs_is_killed_after_its_timeout() {
    let n = name("hookhang");
    let t = TempDir::new(&n);
    let pidfile = t.path("hook.pid");
    let p = policy(
        &t,
        "300ms",
        &format!("echo $$ > {}; exec sleep 1000", pidfile.display()),
    );
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 4"],
    ));
    assert_eq!(
        out.status.code(),
        Some(4),
        "a hook's failure never changes the status: {out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alert hook ran longer than"), "{err}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the hung hook outlived claude-cage");
    assert_no_cgroup(&n);
}

#[test]
fn a_hook_that_fails_is_reported_and_changes_nothing() {
    let n = name("hookfail");
    let t = TempDir::new(&n);
    let p = policy(&t, "5s", "exit 9");
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 5"],
    ));
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alert hook for exit exited with status 9"),
        "{out:?}"
    );
    assert_no_cgroup(&n);
}
