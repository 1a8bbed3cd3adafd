//! The alert hook on this host: it hears of an abnormal exit (not of a clean one), runs outside
//! the cage, and one that hangs is killed after its timeout. memory-warn and PSI alerts need
//! the memory controller and are proven in the VM suite.

use std::os::unix::process::CommandExt;

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
    assert!(
        err.contains("alert hook for exit ran longer than 300ms; killed it"),
        "{err}"
    );
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
    // Its stderr is kept: the end of it is quoted in the warning, one line, escaped.
    let p = policy(
        &t,
        "5s",
        "echo 'curl: (22) The requested URL returned error: 503' >&2; printf 'retry\\033[2Jgave up\\n' >&2; exit 9",
    );
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 5"],
    ));
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l
            == "claude-cage warning: alert hook for exit exited with status 9; its stderr: curl: (22) The requested URL returned error: 503 | retry\\x1b[2Jgave up"),
        "{err}"
    );
    // The control: a hook that fails silently is reported without a quote.
    let p = policy(&t, "5s", "exit 9");
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 5"],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l == "claude-cage warning: alert hook for exit exited with status 9"),
        "{err}"
    );
    assert_no_cgroup(&n);
}

/// `[alerts] exit-reasons` chooses which ends page: by default not `terminated` (claude-cage was
/// sent SIGTERM, as by `systemctl stop` or an SDK's abort), which the policy may add; `[alerts]
/// on` chooses the kinds of event, so a hook for OOM kills only hears of no exit.
#[test]
fn the_policy_chooses_which_events_and_ends_reach_the_hook() {
    let n = name("hookfilter");
    let t = TempDir::new(&n);
    let log = t.path("hook.log");
    let base = policy(&t, "5s", &format!("cat >> {}", log.display()));
    let with = |extra: &str| {
        let p = t.path("filtered.toml");
        let text = std::fs::read_to_string(&base).unwrap();
        std::fs::write(
            &p,
            text.replace("[alerts]\n", &format!("[alerts]\n{extra}\n")),
        )
        .unwrap();
        p
    };
    // A run that ends terminated: claude-cage gets SIGTERM, forwards it, the child dies of it.
    let terminated = |p: &std::path::Path| {
        let mut child = run_cmd(
            &n,
            &t.path("ev"),
            &["--policy", p.to_str().unwrap()],
            &["sh", "-c", "echo ready; exec sleep 1000"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        assert_eq!(wait_ready(&mut child), "ready");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(143), "{out:?}");
        assert_no_cgroup(&n);
    };
    let heard = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"].clone())
            .collect::<Vec<_>>()
    };
    terminated(&base);
    assert_eq!(
        heard(),
        Vec::<serde_json::Value>::new(),
        "terminated pages by default"
    );
    terminated(&with("exit-reasons = [\"terminated\"]"));
    assert_eq!(heard(), ["terminated"], "the policy's exit-reasons");
    let p = with("on = [\"oom-kill\"]");
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        heard(),
        Vec::<serde_json::Value>::new(),
        "on = [\"oom-kill\"] hears of no exit"
    );
    // The control for both: the same exit with the defaults pages.
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", base.to_str().unwrap()],
        &["sh", "-c", "exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(heard(), ["exited"]);
    assert_no_cgroup(&n);
}

/// A hook that starts a process in a new session (setsid) and exits: the process would outlive
/// a process-group kill (shown first, the negative control) and live on as root. The hook's own
/// cgroup is killed when the hook ends, so nothing of it survives claude-cage; the hook ran in
/// that cgroup, beside the cage, and the cgroup is gone.
#[test]
fn a_hook_that_escapes_its_process_group_does_not_outlive_claude_cage() {
    let n = name("hooksetsid");
    let t = TempDir::new(&n);
    let escapee = t.path("escapee.pid");
    let log = t.path("hook.log");
    let body = format!(
        "grep ^0:: /proc/self/cgroup > {log}; setsid sh -c 'echo $$ > {escapee}.tmp; mv {escapee}.tmp {escapee}; exec sleep 1000' </dev/null >/dev/null 2>&1 & until [ -e {escapee} ]; do sleep 0.01; done",
        log = log.display(),
        escapee = escapee.display()
    );

    // The negative control: the same script in a process group of its own, killed as a group.
    let control = std::process::Command::new("sh")
        .arg("-c")
        .arg(&body)
        .process_group(0)
        .status()
        .unwrap();
    assert!(control.success());
    let pid: i32 = std::fs::read_to_string(&escapee)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).unwrap();
    assert_eq!(sid.as_raw(), pid, "setsid made a session of its own");
    assert!(
        alive(pid),
        "negative control: the escapee outlives its hook"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::fs::remove_file(&escapee).unwrap();

    let p = policy(&t, "5s", &body);
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let pid: i32 = std::fs::read_to_string(&escapee)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !alive(pid),
        "the hook's setsid child outlived claude-cage: {out:?}"
    );
    let cgroup = std::fs::read_to_string(&log).unwrap();
    let cgroup = cgroup.trim().trim_start_matches("0::");
    assert!(
        cgroup.contains("/claude-cage-hook-") && !cgroup.contains(&n),
        "the hook ran in {cgroup}"
    );
    assert!(
        !mount().join(cgroup.trim_start_matches('/')).exists(),
        "the hook's cgroup {cgroup} was left behind"
    );
    assert_no_cgroup(&n);
}

/// The hook's environment is not claude-cage's: an API key in claude-cage's environment does
/// not reach it; PATH and the event's kind do, and a variable `[alerts] env` names.
#[test]
fn a_hook_gets_no_secrets_from_the_environment() {
    let n = name("hookenv");
    let t = TempDir::new(&n);
    let log = t.path("env");
    let p = policy(&t, "5s", &format!("env > {}", log.display()));
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("env = [\"PAGER_URL\"]\n");
    std::fs::write(&p, text).unwrap();
    let mut c = run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", p.to_str().unwrap()],
        &["sh", "-c", "test -n \"$ANTHROPIC_API_KEY\" && exit 3"],
    );
    c.env("ANTHROPIC_API_KEY", "sk-secret")
        .env("PAGER_URL", "http://127.0.0.1:9/page");
    let out = output(c);
    assert_eq!(out.status.code(), Some(3), "the child has the key: {out:?}");
    let env = std::fs::read_to_string(&log).unwrap();
    assert!(!env.contains("sk-secret"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == "PAGER_URL=http://127.0.0.1:9/page"),
        "the allowed variable: {env}"
    );
    assert!(env.lines().any(|l| l == "CLAUDE_CAGE_EVENT=exit"), "{env}");
    assert!(env.lines().any(|l| l == "CLAUDE_CAGE_COALESCED=1"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert_no_cgroup(&n);
}

/// The packaged webhook hook (packaging/hooks/webhook) POSTs the event to the URL in its file:
/// a local listener receives the exit event with its kind in a header; one that answers 503
/// makes the hook fail, and claude-cage's warning quotes curl's message (the control).
#[test]
fn the_packaged_webhook_posts_the_event() {
    use std::io::{BufRead, BufReader, Read, Write};
    let n = name("webhook");
    let t = TempDir::new(&n);
    let hook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hooks/webhook");
    // One request: its head and body, answered with `status`.
    let serve = |status: &'static str| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut conn = conn;
            write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            (head, String::from_utf8(body).unwrap())
        });
        (port, server)
    };
    let run = |port: u16| {
        let env = t.path("hook.env");
        std::fs::write(
            &env,
            format!("# the bot's webhook\nWEBHOOK_URL=http://127.0.0.1:{port}/cage\n"),
        )
        .unwrap();
        let p = t.path("p.toml");
        std::fs::write(
            &p,
            format!(
                "[alerts]\nexec = [\"{}\", \"{}\"]\nexec-timeout = \"20s\"\n",
                hook.display(),
                env.display()
            ),
        )
        .unwrap();
        output(run_cmd(
            &n,
            &t.path("ev"),
            &["--policy", p.to_str().unwrap()],
            &["sh", "-c", "exit 3"],
        ))
    };

    let (port, server) = serve("200 OK");
    let out = run(port);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let (head, body) = server.join().unwrap();
    assert!(head.starts_with("POST /cage HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("X-Claude-Cage-Event: exit\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/json\r\n"),
        "{head}"
    );
    let event: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["status"].as_i64()),
        (Some("exit"), Some(3))
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("alert hook"),
        "{out:?}"
    );

    let (port, server) = serve("503 Service Unavailable");
    let out = run(port);
    server.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("claude-cage warning: alert hook for exit exited with status 22; its stderr: curl: (22) The requested URL returned error: 503")),
        "{err}"
    );
    assert_no_cgroup(&n);
}
