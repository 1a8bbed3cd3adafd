//! Host tests: real processes on this machine's cgroup v2 mount. Tree kills, signals, exit
//! statuses, lifetime limits and bad input are proven here; memory and pids limits need the
//! controllers and are proven in the VM suite (tests/vm). A missing prerequisite fails the test.

mod alerts;
mod attacks;
mod cap;
mod cleanup;
mod exit_status;
mod hardening;
mod idle;
mod library;
mod lifetime;
mod operate;
mod policies;
mod pty;
mod signals;
mod stress;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use claude_cage::cgroup::Hierarchy;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_claude-cage")
}

/// The cgroup2 mount, asserting that this test can create cgroups there.
pub fn mount() -> PathBuf {
    let h = Hierarchy::discover().expect("host tests need a cgroup v2 mount");
    let probe = h.mount.join(format!("t-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => std::fs::remove_dir(&probe).unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!(
            "host tests need to create cgroups in {} (run as root): {e}",
            h.mount.display()
        ),
    }
    assert_eq!(
        h.own, "/",
        "host tests expect to run in the root cgroup, found {}",
        h.own
    );
    h.mount
}

/// A bot name unique to this test and process.
pub fn name(tag: &str) -> String {
    format!("t-{tag}-{}", std::process::id())
}

/// A fresh temporary directory, removed by the caller with `remove_dir_all`.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("claude-cage-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `claude-cage run --name NAME --events EVENTS <extra> -- <cmd>`.
pub fn run_cmd(name: &str, events: &Path, extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .arg("--name")
        .arg(name)
        .arg("--events")
        .arg(events)
        .args(extra)
        .arg("--")
        .args(cmd);
    c
}

pub fn output(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run claude-cage")
}

/// The events of a run, parsed.
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

/// The single `exit` event of a run.
pub fn exit_event(path: &Path) -> serde_json::Value {
    let ev = events(path);
    let exits: Vec<_> = ev.iter().filter(|e| e["event"] == "exit").collect();
    assert_eq!(exits.len(), 1, "expected one exit event in {ev:?}");
    exits[0].clone()
}

/// Lines of stderr that claude-cage wrote as its reason line.
pub fn reason_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("claude-cage: "))
        .map(str::to_owned)
        .collect()
}

/// Asserts that nothing of bot `name` is left in the cgroup tree.
/// Asserts that the bot's cgroup is gone, and removes its tally (the counters every end adds to
/// in root's state directory) and its max-cages lock, so that a test that ends with this leaves
/// no file behind.
pub fn assert_no_cgroup(name: &str) {
    let _ = std::fs::remove_file(format!("/run/claude-cage/{name}.tally"));
    let _ = std::fs::remove_file(format!("/run/claude-cage/{name}.lock"));
    let dir = mount().join(name);
    assert!(!dir.exists(), "cgroup {} was left behind", dir.display());
}

/// Every file of `bot` in root's state directory (temporary files included).
pub fn state_files(bot: &str) -> Vec<String> {
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
pub fn cgroups_of(bot: &str) -> Vec<PathBuf> {
    claude_cage::cgroup::fs::descendants(&mount())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(bot))
        .collect()
}

/// Whether a process is alive (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Reads the first line the child prints on stdout: the child's own signal that it is ready.
pub fn wait_ready(child: &mut Child) -> String {
    let out = child.stdout.as_mut().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    line.trim().to_owned()
}

/// The next line the child writes, waited for on the pipe itself and bounded, so that a signal
/// that never arrives fails the test instead of hanging it.
pub fn next_line(out: &mut BufReader<ChildStdout>, within: std::time::Duration) -> String {
    if !out.buffer().contains(&b'\n') {
        let mut fds = [PollFd::new(out.get_ref().as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::try_from(within).unwrap()).unwrap();
        assert_eq!(ready, 1, "no line from the child within {within:?}");
    }
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim().to_owned()
}

/// Whether the process behind `pidfd` exits within `bound`: a poll on the pidfd, bounded so that
/// a bug fails the test instead of hanging it. The pidfd is opened before whatever should end
/// the process, so that a reused pid can never answer for it.
pub fn exits_within(pidfd: &impl AsFd, bound: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis() as i32 + 1).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(nix::Error::EINTR) if !left.is_zero() => continue,
            Err(e) => panic!("poll on a pidfd: {e}"),
        }
    }
}

/// Held by a test that runs a `reap` of the whole machine or leaves an orphan for one: the
/// tests of one binary run side by side, and one's `reap` must not take another's orphan.
pub fn reap_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits up to `bound` for `pid` (a child of this process, not yet reaped) to exit, on a pidfd.
pub fn exited_within(pid: nix::unistd::Pid, bound: std::time::Duration) -> bool {
    let pidfd = claude_cage::sys::pidfd_open(pid).expect("pidfd_open on an unreaped child");
    exits_within(&pidfd, bound)
}

/// A cgroup owned by a test, killed and removed on drop: how negative controls clean up after
/// themselves.
pub struct ControlCgroup(pub PathBuf);

impl ControlCgroup {
    pub fn new(tag: &str) -> ControlCgroup {
        let d = mount().join(format!("t-control-{tag}-{}", std::process::id()));
        std::fs::create_dir(&d).unwrap();
        ControlCgroup(d)
    }
}

impl Drop for ControlCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..1000 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("could not remove {}", self.0.display());
    }
}
