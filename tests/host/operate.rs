//! Operator commands on this host: `check` explains the hybrid set-up, `ps` lists a running
//! cage, `kill` ends it through its supervisor, `reap` removes an orphan. (Limits shown by `ps`
//! are proven in the VM suite.)

use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::*;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn check_explains_the_hybrid_host() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = cli(&[
        "check",
        "--policy",
        root.join("policies/example-bot.toml").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PROBLEM  memory and pids and cpu are bound to a cgroup v1 hierarchy"),
        "{text}"
    );
    assert!(
        text.contains("fix: boot with systemd.unified_cgroup_hierarchy=1"),
        "{text}"
    );
    // The default policy requires nothing: a run enforces all it requires, with notes.
    let out = cli(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("NOTE     memory and pids and cpu are bound to a cgroup v1 hierarchy"),
        "{text}"
    );
    assert!(text.contains("OK       cgroup v2 is mounted at"), "{text}");
    // A bad policy is a problem, named with its line.
    let t = TempDir::new("check-bad");
    std::fs::write(t.path("p.toml"), "[pids]\nmax = 0\n").unwrap();
    let out = cli(&["check", "--policy", t.path("p.toml").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("p.toml:2: pids.max"), "{text}");
}

fn start(n: &str, t: &TempDir, cmd: &str) -> std::process::Child {
    let mut c = run_cmd(n, &t.path("ev"), &[], &["sh", "-c", cmd]);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_ready(&mut child), "ready");
    child
}

fn ps_json(n: &str) -> Vec<serde_json::Value> {
    let out = cli(&["ps", "--json", "--name", n]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ps_lists_a_cage_and_kill_ends_it_through_its_supervisor() {
    let n = name("pskill");
    let t = TempDir::new(&n);
    let child = start(&n, &t, "echo ready; exec sleep 1000");
    let rows = ps_json(&n);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let id = rows[0]["cage"].as_str().unwrap().to_owned();
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(rows[0]["bot"], n.as_str());
    assert_eq!(rows[0]["command"][0], "sh");
    let table = String::from_utf8_lossy(&cli(&["ps", "--name", &n]).stdout).into_owned();
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with(&id)),
        "{table}"
    );
    // This host's memory controller is cgroup v1's: what the kernel does not offer is "-" in
    // the table and null in JSON, not a 0 that reads as "never throttled".
    assert_eq!(
        (&rows[0]["throttled"], &rows[0]["oom-kills"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    let cells: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(&cells[7..9], ["-", "-"], "{table}");

    // Who holds the memory: the caged sleep, with its resident memory.
    let out = cli(&["ps", "--top", &id, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["processes"], 1, "{snap}");
    assert_eq!(snap["top"][0]["comm"], "sleep", "{snap}");
    assert_eq!(snap["top"][0]["command"], "sleep 1000", "{snap}");
    assert!(snap["top"][0]["rss"].as_u64().unwrap() > 0, "{snap}");
    let text = String::from_utf8_lossy(&cli(&["ps", "--top", &id]).stdout).into_owned();
    assert!(text.starts_with("     PID  COMM"), "{text}");
    assert!(
        text.contains("  sleep  ") && text.contains("1 of 1 processes"),
        "{text}"
    );

    let out = cli(&["kill", &id]);
    assert!(out.status.success(), "{out:?}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_eq!(exit_event(&t.path("ev"))["reason"], "killed");
    assert!(ps_json(&n).is_empty());
    assert_no_cgroup(&n);

    let out = cli(&["kill", "no-such-cage-1-1"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cli(&["ps", "--top", "no-such-cage-1-1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such cage"));
}

#[test]
fn reap_removes_an_orphan_and_only_an_orphan() {
    let _reap = reap_lock();
    let n = name("reap");
    let t = TempDir::new(&n);
    // The setsid grandchild keeps the cage populated after its supervisor is SIGKILLed.
    let script = format!(
        "setsid sleep 1000 & echo $! > {}; echo ready; exec sleep 1000",
        t.path("gc").display()
    );
    let mut child = start(&n, &t, &script);
    let gc: i32 = std::fs::read_to_string(t.path("gc"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ps_json(&n)[0]["state"], "running");
    // A running cage is never reaped.
    let dry = cli(&["reap", "--dry-run"]);
    assert!(
        !String::from_utf8_lossy(&dry.stdout).contains(&n),
        "{dry:?}"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let rows = ps_json(&n);
    assert_eq!(rows[0]["state"], "orphaned", "{rows:?}");
    assert!(
        alive(gc),
        "negative control: without reap the orphan's grandchild lives on"
    );

    let out = cli(&["reap"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("reaped orphaned cage") && l.contains(&n)),
        "{text}"
    );
    assert!(!alive(gc));
    assert!(ps_json(&n).is_empty());
    assert_no_cgroup(&n);
}

/// `check` catches what breaks a deployment, each finding exact, each with its control: the
/// alert hook missing or not executable, the events directory writable by every user or not
/// by the user who runs claude-cage, and `[bot]` limits that the systemd backend cannot apply
/// (run refuses them).
#[test]
fn check_catches_the_traps_of_a_deployment() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let t = TempDir::new("check-traps");
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&t.0, 0o755);
    let hook = t.path("hook");
    let events = t.path("logs");
    std::fs::create_dir(&events).unwrap();
    let policy = t.path("p.toml");
    std::fs::write(
        &policy,
        format!(
            "[alerts]\nexec = [\"{}\"]\n[events]\nfile = \"{}/events.jsonl\"\n",
            hook.display(),
            events.display()
        ),
    )
    .unwrap();
    let check = |uid: Option<u32>, p: &std::path::Path| {
        let mut c = Command::new(bin());
        c.args(["check", "--policy"]).arg(p).stdin(Stdio::null());
        if let Some(u) = uid {
            c.uid(u).gid(u);
        }
        let out = c.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let findings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                l.contains("alert hook") || l.contains("events file") || l.contains("[bot]")
            })
            .map(str::to_owned)
            .collect()
    };
    let h = hook.display();
    let e = events.display();

    // The hook is missing, then not executable, then right.
    mode(&events, 0o777);
    let text = check(None, &policy);
    let f = findings(&text);
    assert!(
        f.contains(&format!(
            "PROBLEM  alert hook {h}: No such file or directory (os error 2)"
        )),
        "{text}"
    );
    assert!(
        f.contains(&format!(
            "PROBLEM  events file {e}/events.jsonl: run refuses it: {e} is writable by every user (mode 777)"
        )),
        "{text}"
    );
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    mode(&hook, 0o644);
    let f = findings(&check(None, &policy));
    assert!(
        f.contains(&format!(
            "PROBLEM  alert hook {h} is not executable by root (mode 644, owner uid 0)"
        )),
        "{f:?}"
    );
    mode(&hook, 0o755);
    mode(&events, 0o755);
    let f = findings(&check(None, &policy));
    assert_eq!(
        f,
        [
            format!("OK       alert hook {h} is executable by root"),
            format!("OK       events file {e}/events.jsonl: {e} is writable by root"),
        ],
        "the control: the hook and the directory as they should be"
    );

    // Another user runs claude-cage: root's directory is not writable by it; its own is.
    let uid = 62000 + std::process::id() % 1000;
    let text = check(Some(uid), &policy);
    assert!(
        findings(&text).contains(&format!(
            "PROBLEM  events file {e}/events.jsonl: {e} is not writable by {uid}, who runs claude-cage"
        )),
        "{text}"
    );
    nix::unistd::chown(&events, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    let text = check(Some(uid), &policy);
    assert!(
        findings(&text).contains(&format!(
            "OK       events file {e}/events.jsonl: {e} is writable by {uid}"
        )),
        "{text}"
    );

    // [bot] limits with the systemd backend: the bot's own slice carries them, and check
    // names it (the bot's dashes escaped as systemd does).
    let bot = t.path("bot.toml");
    std::fs::write(
        &bot,
        "[cage]\nname = \"ts-bot\"\nbackend = \"systemd\"\n[bot]\nmemory-max = \"1G\"\n",
    )
    .unwrap();
    let text = check(None, &bot);
    assert!(
        text.contains("OK       backend systemd: the policy sets backend = \"systemd\"\n"),
        "{text}"
    );
    assert!(
        text.contains("OK       backend systemd: the bot's cages are scopes in its slice claude-cage-ts\\x2dbot.slice, which carries the [bot] limits\n"),
        "{text}"
    );
    assert!(!text.contains("PROBLEM  [bot]"), "{text}");
}

/// The bot's counters outlive its cages: after three runs have ended (two exits, one death by
/// a signal), `ps --format prometheus` still counts them by reason, though no cage is left.
/// The control: before the runs, no line names the bot.
#[test]
fn prometheus_keeps_a_bots_ends_after_its_cages_are_gone() {
    let n = name("tally");
    let t = TempDir::new(&n);
    let _ = std::fs::remove_file(format!("/run/claude-cage/{n}.tally"));
    let metrics = || {
        let out = cli(&["ps", "--format", "prometheus", "--name", &n]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = metrics();
    assert!(!before.contains(&format!("bot=\"{n}\"")), "{before}");
    for (cmd, status) in [("exit 3", 3), ("exit 0", 0), ("kill -9 $$", 137)] {
        let out = output(run_cmd(&n, &t.path("ev"), &[], &["sh", "-c", cmd]));
        assert_eq!(out.status.code(), Some(status), "{out:?}");
    }
    let after = metrics();
    for line in [
        format!("claude_cage_bot_ends_total{{bot=\"{n}\",user=\"root\",reason=\"exited\"}} 2"),
        format!("claude_cage_bot_ends_total{{bot=\"{n}\",user=\"root\",reason=\"signaled\"}} 1"),
        format!("claude_cage_bot_oom_kills_total{{bot=\"{n}\",user=\"root\"}} 0"),
    ] {
        assert!(after.lines().any(|l| l == line), "{line} not in {after}");
    }
    assert!(
        !after.contains(&format!("claude_cage_bot_cages{{bot=\"{n}\"}}")),
        "{after}"
    );
    assert_no_cgroup(&n);
}

/// `set` refuses a bad value with 125 and changes nothing; an unknown cage is 1; a limit this
/// host's cgroup v2 cannot hold (its cpu controller is cgroup v1's) is reported, the cage and
/// its supervisor unharmed. (Limits changed on a live cage are proven in the VM suite.)
#[test]
fn set_refuses_what_it_cannot_do() {
    let n = name("set");
    let t = TempDir::new(&n);
    let child = start(&n, &t, "echo ready; exec sleep 1000");
    let id = ps_json(&n)[0]["cage"].as_str().unwrap().to_owned();
    let out = cli(&["set", &id, "--memory-max", "lots"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory-max: bad size \"lots\""));
    let out = cli(&["set", "no-such-cage-1-1", "--cpu-weight", "200"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = cli(&["set", &id, "--cpu-weight", "200"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("claude-cage: {id}: failed to write cpu.weight"))
            && err.contains("(nothing was changed)"),
        "{err}"
    );
    assert_eq!(
        ps_json(&n)[0]["state"],
        "running",
        "the cage after the refusals"
    );
    let out = cli(&["kill", &id]);
    assert!(out.status.success(), "{out:?}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_no_cgroup(&n);
}
