//! Reliability under stress and odd conditions, on this host's cgroup v2 mount:
//! - 1,000 launches each sent SIGTERM right after spawn all end within a bounded wait, with
//!   143 (the TERM was held and forwarded) or death by SIGTERM before claude-cage blocked it
//!   (then nothing was created), and leave no cgroup, state file or `sleep 1000` behind;
//! - a cage id that already exists, populated or frozen, is never joined (library API);
//! - interactive use under a real pseudo-terminal (`script`): job control, Ctrl-C, SIGTTOU,
//!   terminal settings;
//! - invalid policy files through the binary: 125, the message, nothing created.
//!
//! Waits are bounded waits on a condition (a pidfd, a condition variable fed by a reader
//! thread, a file's content), never sleeps standing in for synchronisation.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::*;

/// Every file of `bot` in root's state directory (temporary files included).
fn state_files(bot: &str) -> Vec<String> {
    std::fs::read_dir("/run/claude-cage")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.trim_start_matches('.').starts_with(&format!("{bot}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup under the mount whose path mentions `bot`.
fn cgroups_of(bot: &str) -> Vec<PathBuf> {
    claude_cage::cgroup::fs::descendants(&mount())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(bot))
        .collect()
}

/// Live (non-zombie) processes running `argv` whose environment holds `mark` (`KEY=VALUE`):
/// how a test finds its own processes among those of tests running beside it.
fn marked_processes(argv: &[&str], mark: &str) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .as_deref()
            != Some(&want[..])
        {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|kv| kv == mark.as_bytes()) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `bound` for `pid` (a child of this process, not yet reaped) to exit, on a pidfd.
fn exited_within(pid: Pid, bound: Duration) -> bool {
    let pidfd = claude_cage::sys::pidfd_open(pid).expect("pidfd_open on an unreaped child");
    exits_within(&pidfd, bound)
}

// ---- 1. SIGTERM right after spawn, 1,000 times -------------------------------------------------

const LAUNCHES: usize = 1000;
const WORKERS: usize = 4;
const END_BOUND: Duration = Duration::from_secs(10);
const MARK_KEY: &str = "CLAUDE_CAGE_RELIABILITY_MARK";
const JITTER_STEP: Duration = Duration::from_micros(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Early {
    /// claude-cage held the TERM, started the child, forwarded it: 143.
    Forwarded,
    /// The TERM arrived before claude-cage blocked it: it died of it, having created nothing.
    DiedOfIt,
}

/// One launch: spawn, SIGTERM at once, bounded wait, then the checks for the way it ended.
fn launch_and_terminate(bot: &str, t: &TempDir, i: usize) -> Result<Early, String> {
    let ev = t.path(&format!("ev-{i}"));
    let mut child = Command::new(bin())
        .args(["run", "--name", bot, "--events"])
        .arg(&ev)
        .args(["--", "sleep", "1000"])
        .env(MARK_KEY, bot)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("launch {i}: spawn: {e}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    // A deterministic jitter of 0 to 9.9 ms spreads the TERMs over claude-cage's start-up:
    // before it blocks signals, while it creates the cage (the TERM must wait in its signalfd
    // and reach the child once started), and after the child runs. It is not a wait for
    // anything.
    std::thread::sleep(JITTER_STEP * (i % 100) as u32);
    kill(pid, Signal::SIGTERM).map_err(|e| format!("launch {i}: kill: {e}"))?;
    if !exited_within(pid, END_BOUND) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
        return Err(format!(
            "launch {i} (pid {pid}) was still running {END_BOUND:?} after its SIGTERM"
        ));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    match (out.status.code(), out.status.signal()) {
        (Some(143), _) => {
            let evs = events(&ev);
            let count = |kind: &str| evs.iter().filter(|e| e["event"] == kind).count();
            let exit = evs.iter().find(|e| e["event"] == "exit");
            let ok = count("start") == 1
                && count("exit") == 1
                && exit.is_some_and(|e| {
                    e["reason"] == "terminated" && e["status"] == 143 && e["signal"] == 15
                });
            if !ok {
                return Err(format!("launch {i} (pid {pid}): 143 but events {evs:?}"));
            }
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("claude-cage: "))
                .collect();
            if lines.len() != 1 || !lines[0].contains("received SIGTERM, forwarded it") {
                return Err(format!("launch {i} (pid {pid}): 143 but stderr {err:?}"));
            }
            Ok(Early::Forwarded)
        }
        (None, Some(15)) => {
            // Killed before it blocked the signal: before it read its policy, so before it
            // opened the events file or created a cgroup.
            if ev.exists() {
                return Err(format!(
                    "launch {i} (pid {pid}) died of SIGTERM after opening its events file"
                ));
            }
            if !err.is_empty() {
                return Err(format!(
                    "launch {i} (pid {pid}) died of SIGTERM after writing {err:?}"
                ));
            }
            Ok(Early::DiedOfIt)
        }
        other => Err(format!(
            "launch {i} (pid {pid}): unexpected end {other:?} ({}), stderr {err:?}",
            out.status
        )),
    }
}

#[test]
fn a_thousand_launches_terminated_at_once_all_end_and_leave_nothing() {
    let bot = name("term-storm");
    let t = TempDir::new(&bot);
    let started = Instant::now();
    let results: Vec<Result<Early, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (bot, t) = (&bot, &t);
                s.spawn(move || {
                    (w..LAUNCHES)
                        .step_by(WORKERS)
                        .map(|i| launch_and_terminate(bot, t, i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let took = started.elapsed();
    let forwarded = results
        .iter()
        .filter(|r| **r == Ok(Early::Forwarded))
        .count();
    let died = results
        .iter()
        .filter(|r| **r == Ok(Early::DiedOfIt))
        .count();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "{LAUNCHES} launches in {took:.1?}: {forwarded} ended 143 (TERM forwarded), {died} died of the TERM before blocking it, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {LAUNCHES} launches failed; the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(forwarded + died, LAUNCHES);
    assert!(
        cgroups_of(&bot).is_empty(),
        "cgroups left: {:?}",
        cgroups_of(&bot)
    );
    assert_no_cgroup(&bot);
    assert!(
        state_files(&bot).is_empty(),
        "state files left: {:?}",
        state_files(&bot)
    );
    let sleeps = marked_processes(&["sleep", "1000"], &format!("{MARK_KEY}={bot}"));
    assert!(sleeps.is_empty(), "`sleep 1000` processes left: {sleeps:?}");
}

// ---- 2. An existing cage id is never joined ----------------------------------------------------

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

// ---- 3. Under a real pseudo-terminal ------------------------------------------------------------

/// An interactive bash with job control on a pseudo-terminal made by util-linux `script`; what
/// the terminal shows is collected by a reader thread.
struct Terminal {
    script: Child,
    input: std::process::ChildStdin,
    seen: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// How much of `seen` earlier `expect`s consumed.
    pos: usize,
}

const TTY_BOUND: Duration = Duration::from_secs(20);

impl Terminal {
    fn start() -> Terminal {
        let version = Command::new("script")
            .arg("--version")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs `script` from util-linux (package bsdutils/util-linux): {e}"
                )
            });
        let v = String::from_utf8_lossy(&version.stdout);
        assert!(
            v.contains("util-linux"),
            "this test needs `script` from util-linux, found: {v:?}"
        );
        assert!(
            Path::new("/bin/bash").exists() || Path::new("/usr/bin/bash").exists(),
            "this test needs bash (an interactive shell with job control)"
        );
        let mut script = Command::new("script")
            .args([
                "-q",
                "-f",
                "-e",
                "-c",
                "bash --norc --noprofile --noediting -i",
                "/dev/null",
            ])
            .env("PS1", "$ ")
            .env("TERM", "dumb")
            .env_remove("PROMPT_COMMAND")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = script.stdin.take().unwrap();
        let mut output = script.stdout.take().unwrap();
        let seen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let feed = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = output.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*feed;
                let mut v = lock.lock().unwrap();
                if n == 0 {
                    v.extend_from_slice(b"\n[terminal closed]\n");
                    cv.notify_all();
                    return;
                }
                v.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Terminal {
            script,
            input,
            seen,
            pos: 0,
        }
    }

    /// Types `text` (raw bytes: "\x03" is Ctrl-C).
    fn send(&mut self, text: &str) {
        self.input.write_all(text.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    /// Waits (bounded) for `needle` after what earlier calls consumed; returns the text up to
    /// and including the end of the line that holds it.
    fn expect(&mut self, needle: &str) -> String {
        let (lock, cv) = &*self.seen;
        let deadline = Instant::now() + TTY_BOUND;
        let mut v = lock.lock().unwrap();
        loop {
            let hay = String::from_utf8_lossy(&v[self.pos..]).into_owned();
            if let Some(i) = hay.find(needle) {
                if let Some(nl) = hay[i..].find('\n') {
                    let got = hay[..i + nl + 1].to_owned();
                    self.pos += got.len();
                    return got;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the terminal never showed {needle:?} within {TTY_BOUND:?}; it shows:\n{}",
                String::from_utf8_lossy(&v)
            );
            v = cv.wait_timeout(v, left).unwrap().0;
        }
    }

    /// Runs `command` in the shell and returns what it prints after `MARK=` up to the end of
    /// the line. The terminal echoes the typed line, so the marker is printed split in two
    /// (`M""ARK=`): only the command's output contains it whole.
    fn query(&mut self, mark: &str, command: &str) -> String {
        let (a, b) = mark.split_at(1);
        self.send(&format!("echo \"{a}\"\"{b}=$({command})\"\n"));
        let got = self.expect(&format!("{mark}="));
        let line = got.lines().last().unwrap_or_default();
        line[line.find(&format!("{mark}=")).unwrap() + mark.len() + 1..]
            .trim_end_matches('\r')
            .to_owned()
    }

    fn exit(mut self) {
        self.send("exit\n");
        assert!(
            exited_within(Pid::from_raw(self.script.id() as i32), TTY_BOUND),
            "the shell under script did not exit"
        );
        let _ = self.script.wait();
    }
}

/// The state letter of a process (R, S, T, Z, ...), `?` when it is gone.
fn proc_state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .unwrap_or('?')
}

/// Waits (bounded) until `pid` is in one of the states `states`.
fn wait_state(pid: i32, states: &str, what: &str) {
    let deadline = Instant::now() + TTY_BOUND;
    while !states.contains(proc_state(pid)) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is in state {}, expected one of {states:?}",
            proc_state(pid)
        );
        std::thread::yield_now();
    }
}

/// "... pid=123 ppid=45 ..." -> (123, 45)
fn pids_in(line: &str) -> (i32, i32) {
    let field = |k: &str| -> i32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    (field("pid="), field("ppid="))
}

/// The child a user would run in a terminal: it turns echo off as a full-screen program would,
/// restores the terminal and dies of SIGINT on Ctrl-C, says when it is continued, and keeps a
/// background process in its cage.
const TTY_CHILD: &str = concat!(
    r#"saved=$(stty -g); stty -echo; "#,
    r#"trap 'stty "$saved"; trap - INT; kill -INT $$' INT; "#,
    r#"trap 'echo "con""tinued"' CONT; "#,
    r#"echo "rea""dy pid=$$ ppid=$PPID"; "#,
    r#"sleep 1000 & while :; do wait $!; done"#
);

/// Runs `command` in the shell itself (not in a subshell, so `wait` and `jobs` see its jobs)
/// and returns everything it printed.
fn in_shell(term: &mut Terminal, command: &str) -> String {
    term.send(&format!("{command}; echo \"E\"\"ND-OF-COMMAND\"\n"));
    let all = term.expect("END-OF-COMMAND");
    // Drop the echoed command line.
    all.split_once('\n')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or(all)
}

#[test]
fn interactive_use_under_a_pseudo_terminal() {
    let bot = name("tty");
    let mut term = Terminal::start();
    let before = term.query("BEFORE", "stty -g");
    assert!(before.contains(':'), "stty -g gave {before:?}");

    // Foreground: Ctrl-Z stops claude-cage and its child together; fg continues both.
    term.send(&format!(
        "{} run --name {bot} -- sh -c '{}'\n",
        bin(),
        TTY_CHILD.replace('\'', "'\\''")
    ));
    let ready = term.expect("ready pid=");
    let (child, cage) = pids_in(ready.lines().last().unwrap());
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{cage}/comm"))
            .unwrap()
            .trim(),
        "claude-cage"
    );
    term.send("\x1a");
    term.expect("Stopped");
    wait_state(cage, "T", "claude-cage after Ctrl-Z");
    wait_state(child, "T", "the child after Ctrl-Z");
    term.send("fg\n");
    term.expect("continued");
    wait_state(cage, "SR", "claude-cage after fg");
    wait_state(child, "SR", "the child after fg");

    // Ctrl-C: the terminal's SIGINT (and claude-cage's forwarded one) reaches the child, which
    // restores the terminal and dies of it: 130, one line.
    term.send("\x03");
    let line = term.expect("claude-cage: ");
    assert!(
        line.contains("received SIGINT, forwarded it; the child was killed by SIGINT (130)"),
        "{line:?}"
    );
    assert_eq!(term.query("STATUS", "echo $?").trim(), "130");
    assert!(!alive(child) && !alive(cage));
    assert_no_cgroup(&bot);
    let after = term.query("AFTER", "stty -g");
    assert_eq!(after, before, "terminal settings after the caged program");

    // Background, without tostop: claude-cage writes its line to the terminal and finishes
    // (a terminal operation such as tcsetattr from the background would stop it with SIGTTOU).
    let bg = name("tty-bg");
    term.send(&format!(
        "{} run --name {bg} -- sh -c 'echo \"bg-\"\"child pid=$$ ppid=$PPID\"; exit 3' &\n",
        bin()
    ));
    let line = term.expect("bg-child pid=");
    let (_, bg_cage) = pids_in(line.lines().last().unwrap());
    term.expect("exited with status 3");
    let waited = in_shell(&mut term, "wait $!; echo \"st\"\"atus=$?\"");
    assert!(waited.contains("status=3"), "{waited:?}");
    let jobs = in_shell(&mut term, "jobs -l");
    assert!(!jobs.contains("Stopped"), "{jobs:?}");
    assert!(
        proc_state(bg_cage) == '?',
        "claude-cage {bg_cage} is in state {}",
        proc_state(bg_cage)
    );
    assert_no_cgroup(&bg);

    // Negative control for the terminal check: a child killed by SIGKILL before it could
    // restore the terminal leaves it changed (claude-cage does not restore terminal settings
    // itself), and the comparison sees it.
    let ctl = name("tty-ctl");
    term.send(&format!(
        "{} run --name {ctl} -- sh -c 'stty -echo; echo \"ct\"\"l-ready\"; kill -KILL $$'\n",
        bin()
    ));
    term.expect("ctl-ready");
    term.expect("killed by SIGKILL");
    let changed = term.query("CHANGED", "stty -g");
    assert_ne!(
        changed, before,
        "negative control: stty -echo must show in stty -g"
    );
    term.send(&format!("stty {before}\n"));
    assert_eq!(term.query("RESTORED", "stty -g"), before);
    assert_no_cgroup(&ctl);
    term.exit();
}

/// With `stty tostop`, a write to the terminal from a background job stops the writer with
/// SIGTTOU, unless the writer blocks SIGTTOU. claude-cage writes to the terminal (its reason
/// line, warnings, alert-hook failures); a supervisor stopped there would not enforce
/// max-runtime or clean up when its child ends. claude-cage blocks SIGTTOU for itself.
#[test]
fn a_background_claude_cage_is_never_stopped_by_sigttou_under_tostop() {
    let bot = name("tty-tostop");
    let mut term = Terminal::start();
    let before = term.query("BEFORE", "stty -g");
    term.send("stty tostop\n");
    term.send(&format!("{} run --name {bot} -- sh -c 'exit 3' &\n", bin()));
    let pid: i32 = term.query("CAGEPID", "echo $!").trim().parse().unwrap();
    // Bounded wait until it has exited or is stopped.
    let deadline = Instant::now() + TTY_BOUND;
    while !"T?Z".contains(proc_state(pid)) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let state = proc_state(pid);
    let jobs = in_shell(&mut term, "jobs -l");
    if state == 'T' {
        term.send("fg\n");
    }
    term.send(&format!("stty {before}\n"));
    term.exit();
    assert_no_cgroup(&bot);
    assert!(
        state != 'T',
        "claude-cage was stopped in the background (state T): {jobs}"
    );
}

// ---- 4. Invalid policy files through the binary --------------------------------------------------

/// tests/data/invalid-policies.toml: the invalid policies, which the policy module's unit
/// tests also give to the parser.
const INVALID_POLICIES: &str = include_str!("../data/invalid-policies.toml");

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidPolicies {
    /// The exit status of every case.
    status: i32,
    case: Vec<InvalidPolicy>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidPolicy {
    name: String,
    /// The file's text; "@EVENTS@" stands for the policy's own events file.
    policy: String,
    /// A fragment of the message.
    error: String,
    /// The line the message must name.
    line: Option<usize>,
    #[serde(default)]
    stage: Stage,
}

/// Which part of claude-cage refuses a case.
#[derive(serde::Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Stage {
    /// The parser: a message "FILE:LINE: ..." and nothing else.
    #[default]
    Parse,
    /// Valid TOML that passes validation but cannot run here: refused before anything is
    /// created, with the message naming the reason.
    Run,
}

#[test]
fn invalid_policy_files_exit_125_with_their_message_and_create_nothing() {
    let bot = name("badfile");
    let t = TempDir::new(&bot);
    let own_events = t.path("policy-events.jsonl");
    let data: InvalidPolicies =
        toml::from_str(INVALID_POLICIES).expect("tests/data/invalid-policies.toml");
    let run_case = |c: &InvalidPolicy, i: usize| {
        let (fragment, line) = (c.error.as_str(), c.line);
        let f = t.path(&format!("bad-{i}.toml"));
        let text = c.policy.replace("@EVENTS@", own_events.to_str().unwrap());
        std::fs::write(&f, &text).unwrap();
        let ev = t.path(&format!("ev-{i}"));
        // --events only where the policy does not name its own file.
        let mut extra = vec!["--policy", f.to_str().unwrap()];
        if !text.contains("[events]") {
            extra.extend(["--events", ev.to_str().unwrap()]);
        }
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--name", &bot])
            .args(&extra)
            .args(["--", "true"]);
        let out = output(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("case {i} {} {text:?}: stderr {err:?}", c.name);
        assert_eq!(out.status.code(), Some(data.status), "{what}");
        // One message on one line, starting with "claude-cage: FILE:LINE: " (a TOML syntax
        // error's message from the toml crate is joined into one line).
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {what}");
        let prefix = match line {
            Some(l) => format!("claude-cage: {}:{l}: ", f.display()),
            None => format!("claude-cage: {}: ", f.display()),
        };
        assert!(lines[0].starts_with(&prefix), "{prefix:?} expected: {what}");
        assert!(lines[0].contains(fragment), "{fragment:?} expected: {what}");
        assert!(!ev.exists(), "events file created: {what}");
        assert!(
            !own_events.exists(),
            "the policy's events file created: {what}"
        );
        assert!(cgroups_of(&bot).is_empty(), "cgroups created: {what}");
        assert!(state_files(&bot).is_empty(), "state file written: {what}");
    };
    let mut n = 0;
    for (i, c) in data
        .case
        .iter()
        .filter(|c| c.stage == Stage::Parse)
        .enumerate()
    {
        run_case(c, i);
        n += 1;
    }

    let mut refused = 0;
    for (i, c) in data
        .case
        .iter()
        .filter(|c| c.stage == Stage::Run)
        .enumerate()
    {
        let (text, fragment) = (&c.policy, &c.error);
        let f = t.path(&format!("refused-{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let ev = t.path(&format!("ev-refused-{i}"));
        let out = output(run_cmd(
            &bot,
            &ev,
            &["--policy", f.to_str().unwrap()],
            &["true"],
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{} {text:?}: stderr {err:?}", c.name);
        assert_eq!(out.status.code(), Some(data.status), "{what}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("claude-cage: "))
            .collect();
        assert_eq!(lines.len(), 1, "{what}");
        assert!(lines[0].contains(fragment), "{fragment:?} expected: {what}");
        assert!(!ev.exists(), "events file created: {what}");
        assert!(cgroups_of(&bot).is_empty(), "cgroups created: {what}");
        assert!(state_files(&bot).is_empty(), "state file written: {what}");
        refused += 1;
    }
    // A directory, and a file owned by another user, given as the policy.
    let dir = t.path("a-directory.toml");
    std::fs::create_dir(&dir).unwrap();
    let foreign = t.path("foreign.toml");
    std::fs::write(&foreign, "[pids]\nmax = 10\n").unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    for (f, fragment) in [
        (&dir, "cannot read the policy file"),
        (&foreign, "refusing a policy file owned by uid 65534"),
    ] {
        let ev = t.path("ev-file");
        let out = output(run_cmd(
            &bot,
            &ev,
            &["--policy", f.to_str().unwrap()],
            &["true"],
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{}: {err}", f.display());
        assert!(
            err.starts_with(&format!("claude-cage: {}: ", f.display())) && err.contains(fragment),
            "{}: {err:?} lacks {fragment:?}",
            f.display()
        );
        assert!(!ev.exists());
        refused += 1;
    }
    assert!(n + refused >= 30, "{n} + {refused} cases");
    assert_no_cgroup(&bot);
}
