//! `[bot] max-cages`: a run at the cap refuses, or waits for one of the bot's cages to end;
//! concurrent runs never take the same free slot twice.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::*;

fn policy(t: &TempDir, cap: u32, rest: &str) -> String {
    let p = t.path("p.toml");
    std::fs::write(&p, format!("[bot]\nmax-cages = {cap}\n{rest}\n")).unwrap();
    p.to_string_lossy().into_owned()
}

/// A cage of the bot whose child waits on its stdin; it ends when that is closed.
fn holder(n: &str, t: &TempDir, p: &str, tag: &str) -> (Child, String) {
    let mut child = run_cmd(
        n,
        &t.path(&format!("{tag}.ev")),
        &["--policy", p],
        &["sh", "-c", "echo $CLAUDE_CAGE_ID; read x; exit 0"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let id = wait_ready(&mut child);
    (child, id)
}

/// The bot's cages: the directories of its cgroup.
fn cages(n: &str) -> usize {
    std::fs::read_dir(mount().join(n))
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

fn end(mut c: Child) {
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
}

#[test]
fn a_run_at_the_cap_is_refused_until_a_cage_ends() {
    let n = name("cap");
    let t = TempDir::new(&n);
    let p = policy(&t, 2, "on-limit = \"refuse\"");
    let (a, ida) = holder(&n, &t, &p, "a");
    let (b, idb) = holder(&n, &t, &p, "b");
    let out = output(run_cmd(&n, &t.path("c.ev"), &["--policy", &p], &["true"]));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let mut ids = [ida.as_str(), idb.as_str()];
    ids.sort();
    assert_eq!(
        err.trim_end(),
        format!(
            "claude-cage: bot {n} has 2 live cages, its [bot] max-cages (2): {}, {}; refused (on-limit = \"refuse\")",
            ids[0], ids[1]
        )
    );
    assert_eq!(cages(&n), 2, "the refused run made a cage");
    // ps shows the cap beside the bot.
    let ps = output({
        let mut c = Command::new(bin());
        c.args(["ps", "--name", &n]);
        c
    });
    let table = String::from_utf8_lossy(&ps.stdout);
    assert!(table.contains(&format!("  {n} (max 2)  ")), "{table}");
    // The control: once a cage has ended, a run gets its slot.
    end(a);
    let out = output(run_cmd(&n, &t.path("c.ev"), &["--policy", &p], &["true"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    end(b);
    assert_no_cgroup(&n);
}

#[test]
fn a_run_at_the_cap_waits_for_a_cage_to_end_up_to_wait_timeout() {
    let n = name("capwait");
    let t = TempDir::new(&n);
    // Waits up to 1 s, then 125.
    let p = policy(&t, 1, "wait-timeout = \"1s\"");
    let (a, ida) = holder(&n, &t, &p, "a");
    let out = output(run_cmd(&n, &t.path("b.ev"), &["--policy", &p], &["true"]));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim_end().ends_with(&format!(
            "its [bot] max-cages (1): {ida}; none ended within wait-timeout 1.0s"
        )),
        "{err}"
    );
    // Waits as long as it takes (here up to 60 s): it starts once the first cage ends.
    let p = policy(&t, 1, "wait-timeout = \"60s\"");
    let waiting = run_cmd(&n, &t.path("b.ev"), &["--policy", &p], &["echo", "started"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
    // It is waiting, not started: no cage of its own, still alive after 1 s.
    assert!(
        !exited_within(pid, Duration::from_secs(1)),
        "it did not wait"
    );
    assert_eq!(cages(&n), 1);
    end(a);
    assert!(
        exited_within(pid, Duration::from_secs(10)),
        "it did not start once a cage ended"
    );
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert_no_cgroup(&n);
}

/// Six runs at once under max-cages = 3 (refuse): exactly three start, whatever the order.
#[test]
fn concurrent_runs_never_take_the_same_slot_twice() {
    let n = name("caprace");
    let t = TempDir::new(&n);
    let p = policy(&t, 3, "on-limit = \"refuse\"");
    let runs: Vec<Child> = (0..6)
        .map(|i| {
            run_cmd(
                &n,
                &t.path(&format!("{i}.ev")),
                &["--policy", &p],
                &["sleep", "3"],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut codes: Vec<i32> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, [0, 0, 0, 125, 125, 125]);
    assert_no_cgroup(&n);
}
