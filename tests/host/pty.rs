//! Interactive use under a real pseudo-terminal (util-linux `script`): job control, Ctrl-C,
//! SIGTTOU, terminal settings.
//!
//! Waits are bounded waits on a condition (a condition variable fed by a reader thread, a
//! process's state), never sleeps standing in for synchronisation.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::*;

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

/// Attack 5 of docs/security.md: a child running as `[cage] user` pushes a command into the
/// terminal of the root shell that started claude-cage (TIOCSTI, allowed on this host with
/// `dev.tty.legacy_tiocsti = 1`), for the shell to run once claude-cage exits. The child starts
/// in a new session, so the ioctl is refused and the shell never runs the command. The negative
/// control: the same child as root, in the shell's session, succeeds.
#[test]
fn a_child_as_another_user_cannot_type_into_roots_terminal() {
    let bot = name("tiocsti");
    let t = TempDir::new(&bot);
    let inject = t.path("inject.py");
    std::fs::write(
        &inject,
        concat!(
            "import fcntl, termios\n",
            "try:\n",
            "    for c in b'echo INJECT' b'ED-$((6*7))\\n':\n",
            "        fcntl.ioctl(0, termios.TIOCSTI, bytes([c]))\n",
            "    print('tio' + 'csti=done')\n",
            "except OSError as e:\n",
            "    print('tio' + 'csti=' + e.strerror)\n",
        ),
    )
    .unwrap();
    let caged = t.path("caged.toml");
    std::fs::write(&caged, "[cage]\nuser = \"nobody\"\n").unwrap();
    // Debian's python3, which user nobody may run (a python3 earlier in root's PATH may not be).
    let python = "/usr/bin/python3";
    assert!(
        Path::new(python).exists(),
        "this test needs {python} (Debian package python3)"
    );
    let mut term = Terminal::start();

    // The negative control: as root in the shell's session, the injection works.
    term.send(&format!(
        "{} run --name {bot} -- {python} {}\n",
        bin(),
        inject.display()
    ));
    let said = term.expect("tiocsti=");
    assert!(said.contains("tiocsti=done"), "{said}");
    term.expect("INJECTED-42");

    term.send(&format!(
        "{} run --name {bot} --policy {} -- {python} {}\n",
        bin(),
        caged.display(),
        inject.display()
    ));
    let said = term.expect("tiocsti=");
    assert!(
        said.contains("tiocsti=Operation not permitted")
            || said.contains("tiocsti=Input/output error"),
        "{said}"
    );
    // Anything injected would be read by the shell before this line.
    let after = in_shell(&mut term, "echo \"A\"\"FTER\"");
    assert!(after.contains("AFTER"), "{after}");
    assert!(!after.contains("INJECTED-42"), "root's shell ran: {after}");
    term.exit();
    assert_no_cgroup(&bot);
}
