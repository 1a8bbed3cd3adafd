//! The lines claude-cage writes to stderr, and how an error becomes one.
//!
//! Three kinds of line, each with its own prefix, so that a bot (and the Agent SDK, which copies
//! the end of stderr into its error) can tell them apart:
//! - `claude-cage: ...` — an error, or the one line that says why a cage ended (`error!`);
//! - `claude-cage warning: ...` — something not applied or not cleaned up (`warning!`);
//! - `claude-cage note: ...` — something done on the way, such as reaping an orphan (`note!`).
//!
//! No line is prefixed by hand: every one goes through [`emit`].

use std::fmt;

use nix::unistd::Pid;

use crate::cgroup::CgroupError;
use crate::exit;
use crate::policy::PolicyError;
use crate::spawn::SpawnError;

/// The kind of a line on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Error,
    Warning,
    Note,
}

impl Line {
    /// The line's prefix.
    pub const fn prefix(self) -> &'static str {
        match self {
            Line::Error => "claude-cage: ",
            Line::Warning => "claude-cage warning: ",
            Line::Note => "claude-cage note: ",
        }
    }
}

/// Writes one line to stderr, ignoring failure: a bot that closed claude-cage's stderr must not
/// make it die (as `eprintln!` would, by panicking) halfway through cleaning up a cage.
pub fn emit(kind: Line, args: fmt::Arguments<'_>) {
    let line = format!("{}{args}\n", kind.prefix());
    #[cfg(test)]
    if capture::take(&line) {
        return;
    }
    use std::io::Write as _;
    // One write of the whole line: lines of concurrent writers never interleave mid-line.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// An error line, or the line that says why a cage ended: `claude-cage: ...`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => {
        $crate::error::emit($crate::error::Line::Error, format_args!($($arg)*))
    };
}

/// A warning line: `claude-cage warning: ...`.
#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::error::emit($crate::error::Line::Warning, format_args!($($arg)*))
    };
}

/// A note line: `claude-cage note: ...`.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::error::emit($crate::error::Line::Note, format_args!($($arg)*))
    };
}

/// `s` with every control character written as an escape (`\x1b`, `\u{9b}`): text that
/// another user chose (a recorded command line, a file name) cannot move the cursor, rewrite a
/// line or talk to the terminal of whoever reads claude-cage's output.
pub fn printable(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            if (c as u32) < 0x80 {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// "failed to write ... : Permission denied (os error 13)": the error and its sources, once each.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A failure before the child ran; claude-cage exits 125, 126 or 127.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("failed to open the events file {path}")]
    Events {
        path: String,
        source: std::io::Error,
    },
    #[error("the process that started claude-cage (pid {0}) died before the child was started")]
    StarterGone(Pid),
    #[cfg(feature = "systemd")]
    #[error(transparent)]
    Systemd(#[from] crate::systemd::SystemdError),
    #[cfg(not(feature = "systemd"))]
    #[error("the systemd backend is not built into this claude-cage (cargo feature \"systemd\")")]
    NoSystemd,
    #[error("{0}")]
    Credentials(String),
    /// The policy asks for what the chosen backend cannot do.
    #[error("{0}")]
    Unsupported(String),
    #[error("failed to set up signal handling")]
    Signals(#[source] nix::Error),
}

impl RunError {
    pub fn exit_status(&self) -> i32 {
        match self {
            RunError::Spawn(e) => e.exit_status(),
            _ => exit::FAILURE,
        }
    }

    /// What to do about it, where the error alone does not say.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            #[cfg(feature = "systemd")]
            RunError::Systemd(crate::systemd::SystemdError::Connect { .. }) => {
                Some(crate::systemd::CONNECT_ADVICE)
            }
            _ => None,
        }
    }
}

/// Unit tests read the lines a piece of code writes instead of letting them reach stderr.
#[cfg(test)]
pub(crate) mod capture {
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }

    /// Keeps `line` if this thread is capturing; whether it did.
    pub(super) fn take(line: &str) -> bool {
        LINES.with(|l| match l.borrow_mut().as_mut() {
            Some(v) => {
                v.push(line.to_owned());
                true
            }
            None => false,
        })
    }

    /// Runs `f`, returning what it returned and the lines it wrote (each ends with a newline).
    pub(crate) fn lines<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
        LINES.with(|l| *l.borrow_mut() = Some(Vec::new()));
        let r = f();
        let lines = LINES.with(|l| l.borrow_mut().take()).unwrap_or_default();
        (r, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to write \"1\" to /x/cgroup.kill")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_name_each_cause_once() {
        let e = Outer(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(
            error_chain(&e),
            "failed to write \"1\" to /x/cgroup.kill: Permission denied (os error 13)"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("claude -p hi"), "claude -p hi");
        assert_eq!(
            printable("a\x1b[2Jb\nc\u{9b}d\u{7f}é"),
            "a\\x1b[2Jb\\x0ac\\u{9b}d\\x7fé"
        );
    }

    #[test]
    fn each_kind_has_its_own_prefix() {
        let ((), lines) = capture::lines(|| {
            crate::error!("{}: {}", "bot-1-1", "exited with status 1");
            crate::warning!("memory limits are not applied");
            crate::note!("reaped orphaned cage bot-2-1");
        });
        assert_eq!(
            lines,
            [
                "claude-cage: bot-1-1: exited with status 1\n",
                "claude-cage warning: memory limits are not applied\n",
                "claude-cage note: reaped orphaned cage bot-2-1\n",
            ]
        );
    }
}
