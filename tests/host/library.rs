//! The library API on this host's cgroup v2 mount: a cage id that already exists, populated
//! or frozen, is never joined.
//!
//! Waits are bounded waits on a condition (a file's content), never sleeps standing in for
//! synchronisation.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// Cgroups made by the test (outermost first) and processes put in them: killed, reaped and
/// removed on drop, whatever the test's outcome.
struct Fixture {
    dirs: Vec<PathBuf>,
    procs: Vec<Child>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while d.exists() && std::fs::remove_dir(d).is_err() && Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

/// Polls `dir/file` until it has a line `line` (bounded).
fn wait_line(dir: &Path, file: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read(dir, file).lines().any(|l| l == line) {
        assert!(
            Instant::now() < deadline,
            "{}/{file} never showed {line:?}: {:?}",
            dir.display(),
            read(dir, file)
        );
        std::thread::yield_now();
    }
}

#[test]
fn an_existing_cage_id_populated_or_frozen_is_never_joined() {
    use claude_cage::cgroup::{Cage, Hierarchy, choose_parent, is_marked, plan};
    use claude_cage::policy::{self, Overrides};

    let m = mount();
    let bot = name("taken");
    let me = std::process::id();
    let id = |n: u32| format!("{bot}-{me}-{n}");
    let bot_dir = m.join(&bot);
    let taken1 = bot_dir.join(id(1));
    let taken2 = bot_dir.join(id(2));
    let mut fx = Fixture {
        dirs: vec![bot_dir.clone(), taken1.clone(), taken2.clone()],
        procs: Vec::new(),
    };
    for d in &fx.dirs {
        std::fs::create_dir(d).unwrap();
    }
    // A process in each; the second cgroup frozen.
    for d in [&taken1, &taken2] {
        let c = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(d.join("cgroup.procs"), c.id().to_string()).unwrap();
        fx.procs.push(c);
    }
    std::fs::write(taken2.join("cgroup.freeze"), "1").unwrap();
    wait_line(&taken2, "cgroup.events", "frozen 1");
    let procs1 = read(&taken1, "cgroup.procs");
    let procs2 = read(&taken2, "cgroup.procs");
    assert_eq!(procs1.lines().count(), 1);
    assert_eq!(procs2.lines().count(), 1);

    let pol = policy::parse(
        &format!("[cage]\nname = \"{bot}\"\n"),
        "test policy",
        &Overrides::default(),
        0,
    )
    .unwrap();
    let h = Hierarchy::discover().unwrap();
    let parent = choose_parent(&h, &pol.parent).unwrap();
    assert_eq!(parent, m);
    let place = plan(h, parent, &pol).unwrap();

    let first = Cage::create(&place, &bot, &pol).unwrap();
    fx.dirs.push(first.dir.clone());
    fx.dirs.push(first.main.clone());
    assert_eq!(first.id, id(3), "ids -1 (populated) and -2 (frozen) exist");
    // Even a cage this process made itself is not reused.
    let second = Cage::create(&place, &bot, &pol).unwrap();
    fx.dirs.push(second.dir.clone());
    fx.dirs.push(second.main.clone());
    assert_eq!(second.id, id(4), "-3 is a live cage of this process");

    for c in [&first, &second] {
        assert!(c.main.is_dir(), "{}", c.main.display());
        assert_eq!(read(&c.main, "cgroup.procs"), "", "a new cage is empty");
        assert!(is_marked(&c.dir), "a new cage carries the mark");
    }
    // The pre-existing ones are untouched: same processes, still frozen, no `main`, no mark.
    assert_eq!(read(&taken1, "cgroup.procs"), procs1);
    assert_eq!(read(&taken2, "cgroup.procs"), procs2);
    assert_eq!(read(&taken2, "cgroup.freeze").trim(), "1");
    assert!(
        read(&taken2, "cgroup.events")
            .lines()
            .any(|l| l == "frozen 1")
    );
    assert!(
        read(&taken1, "cgroup.events")
            .lines()
            .any(|l| l == "frozen 0")
    );
    for d in [&taken1, &taken2] {
        assert!(!d.join("main").exists(), "{} was joined", d.display());
        assert!(!is_marked(d), "{} was marked as a cage", d.display());
    }
    for c in &fx.procs {
        assert!(
            alive(c.id() as i32),
            "a process in a pre-existing cgroup died"
        );
    }

    // Control: a bot with nothing in the way gets -1.
    let other = name("taken-ctl");
    let ctl = Cage::create(&place, &other, &pol).unwrap();
    assert_eq!(ctl.id, format!("{other}-{me}-1"));
    ctl.kill_and_remove(Duration::from_secs(5)).unwrap();
    assert_no_cgroup(&other);

    // Clean up: our two cages through the API (the bot's cgroup stays: the others are in it),
    // then the fixture.
    second.kill_and_remove(Duration::from_secs(5)).unwrap();
    first.kill_and_remove(Duration::from_secs(5)).unwrap();
    assert!(
        bot_dir.exists(),
        "the bot's cgroup still holds the pre-existing ones"
    );
    drop(fx);
    assert_no_cgroup(&bot);
}
