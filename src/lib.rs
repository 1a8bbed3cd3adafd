//! claude-cage: the engine behind the `claude-cage` command. It runs a program in its own
//! cgroup v2 cage with a policy's limits, supervises it in one poll loop, kills the whole cage
//! when the program ends, and says why it ended.
//!
//! `unsafe` is denied everywhere but in [`sys`], which wraps the system calls `nix` does not.
#![deny(unsafe_code)]

/// Writes one line to stderr, ignoring failure: a bot that closed claude-cage's stderr must not
/// make it die (as `eprintln!` would, by panicking) halfway through cleaning up a cage.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod alerts;
pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod events;
pub mod exit;
pub mod explain;
pub mod policy;
pub mod registry;
pub mod spawn;
pub mod state;
pub mod supervise;
#[expect(
    unsafe_code,
    reason = "sys is the one home of unsafe: raw system calls and the child between clone and exec"
)]
pub mod sys;
#[cfg(feature = "systemd")]
pub mod systemd;
pub mod units;
