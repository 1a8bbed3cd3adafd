//! claude-cage: the engine behind the `claude-cage` command. It runs a program in its own
//! cgroup v2 cage with a policy's limits, supervises it in one poll loop, kills the whole cage
//! when the program ends, and says why it ended.
//!
//! `unsafe` is denied everywhere but in [`sys`], which wraps the system calls `nix` does not.
#![deny(unsafe_code)]

pub mod alerts;
pub mod backend;
pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod events;
pub mod exit;
pub mod policy;
pub mod prepare;
pub mod registry;
pub mod report;
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
pub mod tally;
pub mod teardown;
pub mod trust;
pub mod units;
