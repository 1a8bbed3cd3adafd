//! Stress, on this host's cgroup v2 mount: 1,000 launches each sent SIGTERM right after spawn
//! all end within a bounded wait, with 143 (the TERM was held and forwarded) or death by
//! SIGTERM before claude-cage blocked it (then nothing was created), and leave no cgroup, state
//! file or `sleep 1000` behind.
//!
//! Waits are bounded waits on a condition (a pidfd), never sleeps standing in for
//! synchronisation.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::*;

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
