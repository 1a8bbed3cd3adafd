//! Attacks on root's claude-cage by a local user, each written as the attack: a second,
//! unprivileged user (a uid with no other use on this machine) writes into its own state
//! directory or the events path what a hostile user would, and root's `ps`, `kill`, `reap` and
//! `run` must neither believe it, nor follow it, nor hang on it. Each has a negative control:
//! the same operation on what the user legitimately owns still works. docs/security.md lists
//! the attacks and these tests.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::*;

/// A local user: a uid with no passwd entry and no process, and its state directory
/// `/tmp/claude-cage-<uid>`, which root's `ps`, `kill` and `reap` read.
struct Attacker {
    uid: u32,
    dir: PathBuf,
}

impl Attacker {
    /// `slot` keeps the uids of tests running side by side apart.
    fn new(slot: u32) -> Attacker {
        let uid = 61000 + (std::process::id() % 1000) * 4 + slot;
        assert!(
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .unwrap()
                .is_none(),
            "uid {uid} belongs to a user of this machine"
        );
        let a = Attacker {
            uid,
            dir: PathBuf::from(format!("/tmp/claude-cage-{uid}")),
        };
        let _ = std::fs::remove_dir_all(&a.dir);
        let out = a.sh(&format!("mkdir -m 700 {}", a.dir.display()));
        assert!(out.status.success(), "{out:?}");
        a
    }

    /// Runs `script` with `sh -c` as the user.
    fn sh(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir("/")
            .uid(self.uid)
            .gid(self.uid)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Writes `text` into `name` in the user's state directory, as the user.
    fn write(&self, name: &str, text: &str) {
        let p = self.dir.join(name);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("cat > \"$1\"")
            .arg("sh")
            .arg(&p)
            .uid(self.uid)
            .gid(self.uid)
            .stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.dir);
    }
}

fn cli(args: &[&str]) -> Output {
    output_within(
        {
            let mut c = Command::new(bin());
            c.args(args);
            c
        },
        Duration::from_secs(20),
    )
}

/// Runs `c` and fails the test if it has not finished within `bound` (it is killed first).
fn output_within(mut c: Command, bound: Duration) -> Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let pidfd = claude_cage::sys::pidfd_open(pid).unwrap();
    if !exits_within(&pidfd, bound) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let out = child.wait_with_output().unwrap();
        panic!("{c:?} did not finish within {bound:?}: {out:?}");
    }
    child.wait_with_output().unwrap()
}

/// A cage of root's running `sleep`, its id, and its supervisor's pidfd.
struct Victim {
    child: std::process::Child,
    id: String,
    pidfd: std::os::fd::OwnedFd,
    name: String,
    _t: TempDir,
}

impl Victim {
    fn start(tag: &str) -> Victim {
        let name = name(tag);
        let t = TempDir::new(&name);
        let mut child = run_cmd(
            &name,
            &t.path("ev"),
            &[],
            &["sh", "-c", "echo $CLAUDE_CAGE_ID; exec sleep 1000"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let id = wait_ready(&mut child);
        let pidfd =
            claude_cage::sys::pidfd_open(nix::unistd::Pid::from_raw(child.id() as i32)).unwrap();
        Victim {
            child,
            id,
            pidfd,
            name,
            _t: t,
        }
    }

    /// Root's own record of the cage.
    fn record(&self) -> serde_json::Value {
        let p = format!("/run/claude-cage/{}.json", self.id);
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn state(&self) -> String {
        let out = cli(&["ps", "--json", "--name", &self.name]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows[0]["state"].as_str().unwrap().to_owned()
    }

    /// Ends the cage the ordinary way and checks that nothing is left.
    fn end(self) {
        let out = cli(&["kill", &self.id]);
        assert!(out.status.success(), "{out:?}");
        let out = self.child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(137), "{out:?}");
        assert_no_cgroup(&self.name);
    }
}

/// Attack 1: the user copies root's record of a live cage into its own state directory with a
/// wrong supervisor start time, claiming the cage is orphaned. Root's `ps` must still show it
/// running and root's `reap` must leave it alone; a stale record of the user's own is removed.
#[test]
fn a_forged_record_does_not_make_roots_reap_kill_a_live_cage() {
    let _reap = reap_lock();
    mount();
    let a = Attacker::new(0);
    let v = Victim::start("forged");
    let mut forged = v.record();
    forged["supervisor-start"] = (forged["supervisor-start"].as_u64().unwrap() + 1).into();
    a.write(&format!("{}.json", v.id), &forged.to_string());
    // The negative control: a record of the user's for a cage that is gone.
    let mut own = forged.clone();
    own["cage"] = format!("{}-gone-1-1", v.name).into();
    own["cgroup"] = mount().join("no-such-bot/x").display().to_string().into();
    let stale = format!("{}-gone-1-1.json", v.name);
    a.write(&stale, &own.to_string());

    let state = v.state();
    let out = cli(&["reap"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let victim_exited = exits_within(&v.pidfd, Duration::ZERO);
    let state_after = v.state();
    let stale_left = a.dir.join(&stale).exists();
    let forged_left = a.dir.join(format!("{}.json", v.id)).exists();
    v.end();

    assert_eq!(state, "running", "ps believed the forged record");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !victim_exited,
        "the victim's supervisor ended: {stdout} {stderr}"
    );
    assert!(!stdout.contains("reaped orphaned cage"), "{stdout}");
    assert_eq!(state_after, "running");
    assert!(
        stderr.contains("ignored state file") && stderr.contains("not uid"),
        "{stderr}"
    );
    assert!(
        forged_left,
        "root never removes a record it does not believe"
    );
    assert!(
        stdout.contains("removed stale state file") && !stale_left,
        "negative control: the user's own stale record is removed: {stdout}"
    );
}

/// Attack 2: while root's `reap` removes stale records from the user's directory, the user swaps
/// the directory for a link to a directory of root's holding files of the same names, again and
/// again (a race: the real directory shows for about a millisecond, the link for five). Root must
/// never remove one of them: every removal happens in the directory that was read.
#[test]
fn swapping_a_users_state_directory_for_a_link_mid_reap_removes_nothing_of_roots() {
    let _reap = reap_lock();
    mount();
    let a = Attacker::new(1);
    let t = TempDir::new("swap-victims");
    let names: Vec<String> = (0..300).map(|i| format!("t-decoy{i}-1-1.json")).collect();
    let record = |n: &str| {
        serde_json::json!({
            "cage": n.trim_end_matches(".json"), "bot": "t-decoy", "cgroup": "/nonexistent",
            "supervisor-pid": 1, "supervisor-start": 1, "child-pid": 1, "policy": "p",
            "argv": [], "started-ms": 1, "events": null,
        })
        .to_string()
    };
    let decoys = |dir: &Path, owner: Option<u32>| {
        for n in &names {
            std::fs::write(dir.join(n), record(n)).unwrap();
            if let Some(uid) = owner {
                std::os::unix::fs::chown(dir.join(n), Some(uid), Some(uid)).unwrap();
            }
        }
    };
    decoys(&t.0, None);
    // Root's decoy targets are in a directory of root's that the link will point to.
    let victims = t.0.clone();
    let real = a.dir.with_extension("real");
    let stop = a.dir.with_extension("stop");
    for round in 0..30 {
        decoys(&a.dir, Some(a.uid));
        let swapper = {
            let script = format!(
                "while [ ! -e {stop} ]; do mv -T {d} {real}; ln -s {victims} {d}; sleep 0.005; rm {d}; mv -T {real} {d}; sleep 0.001; done",
                stop = stop.display(),
                d = a.dir.display(),
                real = real.display(),
                victims = victims.display()
            );
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(script)
                .current_dir("/")
                .uid(a.uid)
                .gid(a.uid);
            c.spawn().unwrap()
        };
        let out = cli(&["reap"]);
        std::fs::write(&stop, "").unwrap();
        let mut swapper = swapper;
        swapper.wait().unwrap();
        std::fs::remove_file(&stop).unwrap();
        // The swapper may have stopped between its two renames.
        if !a.dir.exists() && real.exists() {
            std::fs::rename(&real, &a.dir).unwrap();
        }
        let missing: Vec<&String> = names.iter().filter(|n| !t.path(n).exists()).collect();
        assert!(
            missing.is_empty(),
            "round {round}: root removed {} of its own files through the link; reap said: {}",
            missing.len(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let _ = std::fs::remove_file(&real);
}

/// Attack 3: a FIFO and a link to /dev/zero named like records in the user's directory. Root's
/// `ps`, `kill` and `reap` read every record: each must finish within its bound and name what
/// it refused; a valid record beside them is still read (the negative control).
#[test]
fn a_fifo_or_dev_zero_named_like_a_record_does_not_hang_ps_kill_or_reap() {
    let _reap = reap_lock();
    mount();
    let a = Attacker::new(2);
    let out = a.sh(&format!(
        "mkfifo {d}/fifo-1-1.json && ln -s /dev/zero {d}/zero-1-1.json",
        d = a.dir.display()
    ));
    assert!(out.status.success(), "{out:?}");
    let v = Victim::start("fifo");
    let ps = cli(&["ps"]);
    let kill = cli(&["kill", "--name", "t-no-such-bot"]);
    let reap = cli(&["reap", "--dry-run"]);
    let table = String::from_utf8_lossy(&ps.stdout).into_owned();
    v.end();
    // Each finished (`cli` bounds it); the two that report state files name what they refused.
    for (what, out) in [("ps", &ps), ("reap", &reap)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("fifo-1-1.json") && err.contains("a FIFO, not a regular file"),
            "{what}: {err}"
        );
        assert!(
            err.contains("zero-1-1.json") && err.contains("symbolic link"),
            "{what}: {err}"
        );
    }
    assert!(ps.status.success(), "{ps:?}");
    assert_eq!(kill.status.code(), Some(1), "no such bot: {kill:?}");
    assert!(table.contains(&format!("{}-", name("fifo"))), "{table}");
}

/// Attack 4: the events file is a link to a file of root's, a dangling link, a FIFO, or sits in
/// a directory the bot's user owns. Root's `run` must refuse each with 125 and one line that
/// names the path, before anything is created, and change no file; in a directory of root's the
/// same run works (the negative control).
#[test]
fn the_events_file_is_never_followed_or_put_where_a_user_can_swap_it() {
    mount();
    let a = Attacker::new(3);
    let t = TempDir::new("events-attack");
    let target = t.path("root-only");
    std::fs::write(&target, "root's\n").unwrap();
    let out = a.sh(&format!(
        "ln -s {target} {d}/link.jsonl && ln -s {t}/created-by-root {d}/dangling.jsonl && mkfifo {d}/fifo.jsonl && touch {d}/plain.jsonl",
        target = target.display(),
        d = a.dir.display(),
        t = t.0.display()
    ));
    assert!(out.status.success(), "{out:?}");
    let n = name("evattack");
    for (file, why) in [
        ("link.jsonl", "belongs to uid"),
        ("dangling.jsonl", "belongs to uid"),
        ("fifo.jsonl", "belongs to uid"),
        ("plain.jsonl", "belongs to uid"),
    ] {
        let path = a.dir.join(file);
        let out = output_within(run_cmd(&n, &path, &[], &["true"]), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{file}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{file}: {err}");
        assert!(
            lines[0].starts_with("claude-cage: failed to open the events file")
                && lines[0].contains(&a.dir.display().to_string())
                && lines[0].contains(why),
            "{file}: {err}"
        );
        assert_no_cgroup(&n);
    }
    // In root's own directory a link or a FIFO is refused by what it is.
    std::os::unix::fs::symlink(&target, t.path("link.jsonl")).unwrap();
    nix::unistd::mkfifo(
        &t.path("fifo.jsonl"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for (file, why) in [("link.jsonl", "symbolic link"), ("fifo.jsonl", "FIFO")] {
        let out = output_within(
            run_cmd(&n, &t.path(file), &[], &["true"]),
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{file}: {err}");
        assert!(err.contains(why), "{file}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's\n");
    assert!(!t.path("created-by-root").exists());
    // The negative control: a plain file in root's directory takes the events.
    let out = output_within(
        run_cmd(&n, &t.path("ok.jsonl"), &[], &["true"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(exit_event(&t.path("ok.jsonl"))["reason"], "exited");
    assert_no_cgroup(&n);
}

/// A recorded command with terminal control sequences: `ps` prints them escaped, never raw.
#[test]
fn ps_escapes_the_control_characters_of_a_recorded_command() {
    mount();
    let n = name("psesc");
    let t = TempDir::new(&n);
    let mut child = run_cmd(
        &n,
        &t.path("ev"),
        &[],
        &[
            "env",
            "X=\x1b]0;owned\x07",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    assert_eq!(wait_ready(&mut child), "ready");
    let table = cli(&["ps", "--name", &n]);
    let json = cli(&["ps", "--json", "--name", &n]);
    let _ = cli(&["kill", "--name", &n]);
    let _ = child.wait();
    assert_no_cgroup(&n);
    assert!(
        !table.stdout.iter().any(|&b| b == 0x1b || b == 0x07),
        "raw control characters: {:?}",
        String::from_utf8_lossy(&table.stdout)
    );
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("X=\\x1b]0;owned\\x07 sh"),
        "{:?}",
        String::from_utf8_lossy(&table.stdout)
    );
    // JSON keeps the argument, escaped by JSON itself.
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[0]["command"][1], "X=\x1b]0;owned\x07");
}

/// Attack 6: a duration of 2^64 seconds on the command line. It is refused with 125 and one line
/// before anything exists, instead of passing validation and aborting once the cage does; the
/// longest accepted duration runs (the negative control).
#[test]
fn a_two_to_the_sixty_four_second_duration_is_refused_before_anything_is_created() {
    mount();
    let n = name("hugedur");
    let t = TempDir::new(&n);
    for flag in ["--max-runtime", "--term-grace", "--stdin-eof-grace"] {
        let out = output_within(
            run_cmd(
                &n,
                &t.path("ev"),
                &[flag, "18446744073709551615s"],
                &["true"],
            ),
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{flag}: {err}");
        assert_eq!(err.lines().count(), 1, "{flag}: {err}");
        assert!(err.contains(flag), "{flag}: {err}");
        assert!(
            !t.path("ev").exists(),
            "{flag}: the events file was created"
        );
        assert_no_cgroup(&n);
    }
    let out = output_within(
        run_cmd(&n, &t.path("ev"), &["--max-runtime", "3650d"], &["true"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    assert_no_cgroup(&n);
}

/// A child that fills the kernel with cgroups inside its cage: `cage.max-descendants` stops it
/// (the cage's `main` counts as one), and with the default the same cgroups are made (the
/// negative control); the cage goes with everything made in it.
#[test]
fn a_child_cannot_make_more_cgroups_than_the_policy_allows() {
    mount();
    let n = name("nesting");
    let t = TempDir::new(&n);
    std::fs::write(
        t.path("p.toml"),
        "[cage]\nmax-descendants = 2\nmax-depth = 2\n",
    )
    .unwrap();
    let script = concat!(
        "d=$CLAUDE_CAGE_CGROUP; echo max=$(cat $d/cgroup.max.descendants)/$(cat $d/cgroup.max.depth); ",
        "mkdir $d/a && echo a=made; mkdir $d/b 2>/dev/null && echo b=made; ",
        "mkdir $d/a/deeper 2>/dev/null && echo deeper=made; true"
    );
    let limited = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", t.path("p.toml").to_str().unwrap()],
        &["sh", "-c", script],
    ));
    let open = output(run_cmd(&n, &t.path("ev2"), &[], &["sh", "-c", script]));
    assert_no_cgroup(&n);
    let limited = String::from_utf8_lossy(&limited.stdout).into_owned();
    let open = String::from_utf8_lossy(&open.stdout).into_owned();
    assert_eq!(limited, "max=2/2\na=made\n", "{limited}");
    assert_eq!(
        open, "max=64/8\na=made\nb=made\ndeeper=made\n",
        "negative control: {open}"
    );
}

/// Attack 8e: the environment of a shim run as root (which may come from whoever calls the
/// SDK) chooses the program: `CLAUDE_CAGE_PROGRAM`, or a directory of the user's first in PATH.
/// As root, shim mode runs the policy's program and searches only directories root owns and no
/// one else can write. Controls: a policy with `program-from-env = true` takes the variable,
/// and `run` (whose command line and environment are the operator's) takes that PATH as given.
#[test]
fn the_environment_of_a_shim_run_as_root_does_not_choose_its_program() {
    let attacker = Attacker::new(3);
    let name = name("shim-env");
    let t = TempDir::new(&name);
    let shim = t.path("claude");
    std::os::unix::fs::symlink(bin(), &shim).unwrap();
    let probe = format!("cage-probe-{}", std::process::id());
    // Root's program, in a directory of root's (mode 755), and the attacker's, by the same
    // name, in the attacker's state directory, and as a program of its own.
    let safe = t.path("bin");
    std::fs::create_dir(&safe).unwrap();
    let script = |marker: &Path| format!("#!/bin/sh\necho ran > {}\n", marker.display());
    let install = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    install(&safe.join(&probe), &script(&t.path("root-ran")));
    attacker.write(&probe, &script(&t.path("attacker-ran")));
    let out = attacker.sh(&format!(
        "chmod 755 {}",
        attacker.dir.join(&probe).display()
    ));
    assert!(out.status.success(), "{out:?}");
    let evil = attacker.dir.join(&probe);

    let policy = |extra: &str, program: &str| {
        let p = t.path("policy.toml");
        std::fs::write(
            &p,
            format!(
                "{extra}program = \"{program}\"\n[cage]\nname = \"{name}\"\n[events]\nfile = \"{}\"\n",
                t.path("ev").display()
            ),
        )
        .unwrap();
        p
    };
    let path_var = format!(
        "{}:{}:/usr/bin:/bin",
        attacker.dir.display(),
        safe.display()
    );
    let shim_run = |env: &[(&str, &Path)]| {
        let mut c = Command::new(&shim);
        c.env("PATH", &path_var).env_remove("CLAUDE_CAGE_PROGRAM");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = output_within(c, Duration::from_secs(20));
        assert_no_cgroup(&name);
        out
    };
    let ran = |who: &str| {
        let marker = t.path(&format!("{who}-ran"));
        let r = marker.exists();
        let _ = std::fs::remove_file(&marker);
        r
    };

    // CLAUDE_CAGE_PROGRAM names the attacker's program: ignored, with a warning.
    let p = policy("", &safe.join(&probe).display().to_string());
    let out = shim_run(&[("CLAUDE_CAGE_POLICY", &p), ("CLAUDE_CAGE_PROGRAM", &evil)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(ran("root") && !ran("attacker"), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ignored CLAUDE_CAGE_PROGRAM="), "{err}");

    // The attacker's directory first in PATH, the policy's program named without a slash.
    let p = policy("", &probe);
    let out = shim_run(&[("CLAUDE_CAGE_POLICY", &p)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(ran("root") && !ran("attacker"), "{out:?}");

    // Controls: the policy opts in, and `run` with the same PATH.
    let p = policy(
        "program-from-env = true\n",
        &safe.join(&probe).display().to_string(),
    );
    let out = shim_run(&[("CLAUDE_CAGE_POLICY", &p), ("CLAUDE_CAGE_PROGRAM", &evil)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(ran("attacker") && !ran("root"), "{out:?}");
    let mut c = Command::new(bin());
    c.env("PATH", &path_var)
        .args(["run", "--name", &name, "--"])
        .arg(&probe);
    let out = output_within(c, Duration::from_secs(20));
    assert_no_cgroup(&name);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(ran("attacker") && !ran("root"), "{out:?}");
}
