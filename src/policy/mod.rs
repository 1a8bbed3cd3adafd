//! The policy file: its TOML schema, the command-line overrides, and validation into a
//! [`Policy`] whose every value is checked and resolved before anything is created.
//!
//! Every error names the file, the key and, where the TOML gives one, the line.
//!
//! `schema` is the file as read; `load` reads and parses it; `validate` checks its sections in
//! order, each in a file of its own (`cage`, `limits`, `lifetime`, `alerts`); `values`,
//! `overrides` and `error` hold the types the rest of claude-cage uses.

mod alerts;
mod cage;
mod error;
mod lifetime;
mod limits;
mod load;
mod overrides;
mod schema;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use std::time::Duration;

use crate::units::{CpuMax, Limit};

pub use cage::{NAME_MAX, check_name, name_from_program};
pub use error::PolicyError;
pub use load::{load_default, load_file, parse, parse_with};
pub use overrides::Overrides;
pub use values::{
    Alerts, Backend, Controller, DEFAULT_EXEC_TIMEOUT, DEFAULT_MAX_DEPTH, DEFAULT_MAX_DESCENDANTS,
    DEFAULT_POLICY, DEFAULT_PROGRAM, DEFAULT_SLICE, DEFAULT_SOURCE, DEFAULT_TERM_GRACE,
    MAX_EXEC_TIMEOUT, Parent, ParentDeath,
};

/// `[bot] on-limit`: what a run of a bot at its `max-cages` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Wait until one of the bot's cages ends, up to `wait-timeout`, then refuse.
    Wait,
    /// Refuse at once (exit 125).
    Refuse,
}

/// A validated policy: every limit resolved, every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The file it came from, or [`DEFAULT_SOURCE`].
    pub source: String,
    pub program: Option<String>,
    /// Shim mode as root takes `$CLAUDE_CAGE_PROGRAM` only when the policy says so.
    pub program_from_env: bool,
    pub name: Option<String>,
    pub parent: Parent,
    /// How cages are made: directly in cgroupfs, or as systemd transient scopes.
    pub backend: Backend,
    /// The systemd slice for the systemd backend's scopes.
    pub slice: String,
    /// Run the child as this user (name or uid); root only.
    pub user: Option<String>,
    /// Run the child with this group (name or gid); root only. Default: the user's group.
    pub group: Option<String>,
    /// Run the child in a cgroup namespace rooted at its cage.
    pub cgroupns: bool,
    pub require: Vec<Controller>,
    /// `cgroup.max.descendants` of the cage.
    pub max_descendants: u32,
    /// `cgroup.max.depth` of the cage.
    pub max_depth: u32,
    pub bot_memory_high: Option<Limit>,
    pub bot_memory_max: Option<Limit>,
    /// `[bot] memory-warn`: warn (once per crossing, for the whole bot) when the bot's memory
    /// use reaches this many bytes.
    pub bot_memory_warn: Option<u64>,
    pub bot_pids_max: Option<Limit>,
    /// `[bot] if-unsupported = "warn"`: a backend that cannot apply the `[bot]` limits (systemd)
    /// runs without them, with a warning, instead of refusing.
    pub bot_if_unsupported_warn: bool,
    /// `[bot] max-cages`: the most live cages the bot may have at once.
    pub max_cages: Option<u32>,
    /// What a run does at the cap: wait (up to `wait_timeout`) or refuse.
    pub on_limit: OnLimit,
    pub wait_timeout: Duration,
    pub memory_high: Option<Limit>,
    pub memory_max: Option<Limit>,
    pub swap_max: Option<Limit>,
    pub oom_group: bool,
    pub pids_max: Option<Limit>,
    pub cpu_max: Option<CpuMax>,
    pub cpu_weight: Option<u32>,
    pub max_runtime: Option<Duration>,
    pub stdin_eof_grace: Option<Duration>,
    pub term_grace: Duration,
    pub parent_death: ParentDeath,
    /// Kill a cage whose CPU use stays below `idle_cpu` for this long (`[lifetime]
    /// idle-timeout`).
    pub idle_timeout: Option<Duration>,
    /// The share of one CPU below which a cage is idle (`idle-cpu`, default 0.5%).
    pub idle_cpu: f64,
    pub events_file: Option<String>,
    pub alerts: Alerts,
}
