//! The values of a validated policy that are more than a number, and the defaults that stand
//! in for what a policy leaves unset.

use std::fmt;
use std::time::Duration;

use crate::units;

/// The built-in default policy; the same text as `policies/default.toml`.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");

/// The program run when neither the command line nor the policy names one.
pub const DEFAULT_PROGRAM: &str = "claude";

/// Where the built-in default policy comes from, as named in messages.
pub const DEFAULT_SOURCE: &str = "<built-in default policy>";

/// A cgroup controller a policy may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The controller's name in `cgroup.controllers`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the bot's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// Derived from claude-cage's own cgroup (see `cgroup::Hierarchy::auto_parent`).
    Auto,
    /// A cgroup path relative to the cgroup2 mount, such as "/bots"; "/" is the root.
    Path(String),
}

/// How cages are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// cgroupfs in a delegated subtree or where there is no systemd; systemd otherwise.
    Auto,
    /// mkdir and writes in cgroupfs.
    Cgroupfs,
    /// A transient scope per cage, through the service manager's D-Bus API.
    Systemd,
}

/// The default slice for the systemd backend.
pub const DEFAULT_SLICE: &str = "claude-cage.slice";

/// What to do when the process that started claude-cage dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentDeath {
    Kill,
    Ignore,
}

/// The `[alerts]` section, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alerts {
    /// Warn when the cage's memory use reaches this many bytes.
    pub memory_warn: Option<u64>,
    /// A PSI trigger on the cage's `memory.pressure`.
    pub pressure: Option<units::PressureTrigger>,
    /// A program (and its arguments) run for every alert and abnormal exit, with the event's
    /// JSON line on stdin.
    pub exec: Vec<String>,
    /// How long the hook may run before it is killed.
    pub exec_timeout: Duration,
    /// The variables of claude-cage's environment that the hook gets (it gets none other but
    /// `PATH`): the bot's API keys stay out of it unless named here.
    pub env: Vec<String>,
    /// The kinds of event the hook hears of (`[alerts] on`), of `ALERT_EVENTS`.
    pub on: Vec<String>,
    /// The reasons of an end the hook hears of (`[alerts] exit-reasons`), of `EXIT_REASONS`.
    pub exit_reasons: Vec<String>,
}

/// The kinds of event an alert hook can hear of: `[alerts] on` chooses among them (all by
/// default).
pub const ALERT_EVENTS: [&str; 6] = [
    "memory-warn",
    "bot-memory-warn",
    "pressure",
    "oom-kill",
    "pids-max",
    "exit",
];

/// The reasons of an end (the `exit` event's `reason`). A clean exit (`exited` with status 0)
/// never reaches the hook.
pub const EXIT_REASONS: [&str; 9] = [
    "exited",
    "signaled",
    "oom-killed",
    "timeout",
    "stdin-closed",
    "parent-died",
    "terminated",
    "killed",
    "idle",
];

/// The default `[alerts] exit-reasons`: every abnormal end but those the bot or its service
/// manager asked for (`terminated`: claude-cage was sent SIGTERM, as by `systemctl stop` or an
/// SDK's abort; `parent-died`: the bot itself went away), which would page on every stop.
pub const DEFAULT_EXIT_REASONS: [&str; 7] = [
    "exited",
    "signaled",
    "oom-killed",
    "timeout",
    "stdin-closed",
    "killed",
    "idle",
];

/// The default `[cage] max-descendants`: cgroups the child may make inside its cage (Claude
/// Code makes one beside `main`), so a runaway cannot fill the kernel with cgroups.
pub const DEFAULT_MAX_DESCENDANTS: u32 = 64;

/// The default `[cage] max-depth`: how deep the cgroups inside a cage may nest.
pub const DEFAULT_MAX_DEPTH: u32 = 8;

/// The default `[alerts] exec-timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `[alerts] exec-timeout`: claude-cage waits for its hooks before it exits, so a
/// hook may hold an ended bot child's exit at most this long.
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// The default grace between a forwarded SIGTERM and the kill of the cage. It is shorter than
/// the 5 s the Agent SDK waits before its own SIGKILL, so the cage is gone first.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(3);
