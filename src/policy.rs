//! The policy file: its TOML schema, the command-line overrides, and validation into a
//! [`Policy`] whose every value is checked and resolved before anything is created.
//!
//! Every error names the file, the key and, where the TOML gives one, the line.

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::units::{self, CpuMax, Limit};

/// The built-in default policy; the same text as `policies/default.toml`.
pub const DEFAULT_POLICY: &str = include_str!("../policies/default.toml");

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

    fn parse(s: &str) -> Option<Self> {
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

/// A validated policy: every limit resolved, every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The file it came from, or [`DEFAULT_SOURCE`].
    pub source: String,
    pub program: Option<String>,
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
    pub bot_memory_max: Option<Limit>,
    pub bot_pids_max: Option<Limit>,
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
    pub events_file: Option<String>,
    pub alerts: Alerts,
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
}

/// The default `[alerts] exec-timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// The default grace between a forwarded SIGTERM and the kill of the cage. It is shorter than
/// the 5 s the Agent SDK waits before its own SIGKILL, so the cage is gone first.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(3);

/// A policy error: the file, the key, the line where known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file, "command line" or the built-in default's name.
    pub file: String,
    pub key: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Values given on the command line; each replaces the policy's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub name: Option<String>,
    pub parent: Option<String>,
    pub memory_high: Option<String>,
    pub memory_max: Option<String>,
    pub pids_max: Option<String>,
    pub max_runtime: Option<String>,
    pub stdin_eof_grace: Option<String>,
    pub term_grace: Option<String>,
    pub events: Option<String>,
}

impl Overrides {
    /// Sets the override of the `run` flag `--FLAG` (without the dashes) to `value`; false for
    /// a name that is no such flag.
    pub fn set(&mut self, flag: &str, value: String) -> bool {
        let slot = match flag {
            "name" => &mut self.name,
            "parent" => &mut self.parent,
            "memory-high" => &mut self.memory_high,
            "memory-max" => &mut self.memory_max,
            "pids-max" => &mut self.pids_max,
            "max-runtime" => &mut self.max_runtime,
            "stdin-eof-grace" => &mut self.stdin_eof_grace,
            "term-grace" => &mut self.term_grace,
            "events" => &mut self.events,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

// ---- The TOML schema -------------------------------------------------------------------------

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    program: Option<Spanned<String>>,
    cage: Option<RawCage>,
    bot: Option<RawBot>,
    memory: Option<RawMemory>,
    pids: Option<RawPids>,
    cpu: Option<RawCpu>,
    lifetime: Option<RawLifetime>,
    events: Option<RawEvents>,
    alerts: Option<RawAlerts>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAlerts {
    memory_warn: Option<Spanned<Scalar>>,
    pressure: Option<Spanned<String>>,
    exec: Option<Spanned<Vec<String>>>,
    exec_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCage {
    name: Option<Spanned<String>>,
    parent: Option<Spanned<String>>,
    require: Option<Spanned<Vec<String>>>,
    backend: Option<Spanned<String>>,
    slice: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    cgroupns: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBot {
    memory_max: Option<Spanned<Scalar>>,
    pids_max: Option<Spanned<Scalar>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMemory {
    high: Option<Spanned<Scalar>>,
    max: Option<Spanned<Scalar>>,
    swap_max: Option<Spanned<Scalar>>,
    oom_group: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPids {
    max: Option<Spanned<Scalar>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCpu {
    max: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLifetime {
    max_runtime: Option<Spanned<String>>,
    stdin_eof_grace: Option<Spanned<String>>,
    term_grace: Option<Spanned<String>>,
    parent_death: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEvents {
    file: Option<Spanned<String>>,
}

/// A value that may be written as a TOML integer or a string ("512M", 1048576, "max").
#[derive(Debug, Clone)]
enum Scalar {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string such as \"512M\" or \"max\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- Loading and validation ----------------------------------------------------------------

/// Reads and validates a policy file, applying the overrides. `mem_total` gives the machine's
/// memory; it is called only if a size is a percentage, and then once.
pub fn load_file(
    path: &Path,
    overrides: &Overrides,
    mem_total: &dyn Fn() -> u64,
) -> Result<Policy, PolicyError> {
    let source = path.display().to_string();
    let refuse = |message: String| PolicyError {
        file: source.clone(),
        key: None,
        line: None,
        message,
    };
    let mut file = std::fs::File::open(path)
        .map_err(|e| refuse(format!("cannot read the policy file: {e}")))?;
    // As root, a policy decides which user the child runs as and what it may use: a file
    // another user could have written is refused. The check is on the opened file, so a
    // rename in between cannot swap it.
    if nix::unistd::Uid::effective().is_root() {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| refuse(format!("cannot read the policy file: {e}")))?;
        let real = nix::unistd::Uid::current().as_raw();
        if meta.uid() != 0 && meta.uid() != real {
            return Err(refuse(format!(
                "refusing a policy file owned by uid {} when running as root (it must belong to root or uid {real})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "refusing a group- or world-writable policy file when running as root (mode {:o}; chmod go-w it)",
                meta.mode() & 0o7777
            )));
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text)
        .map_err(|e| refuse(format!("cannot read the policy file: {e}")))?;
    parse_with(&text, &source, overrides, mem_total)
}

/// Validates the built-in default policy, applying the overrides; `mem_total` as for
/// [`load_file`].
pub fn load_default(
    overrides: &Overrides,
    mem_total: &dyn Fn() -> u64,
) -> Result<Policy, PolicyError> {
    parse_with(DEFAULT_POLICY, DEFAULT_SOURCE, overrides, mem_total)
}

/// Parses and validates policy text; `source` names it in errors, and a size given as a
/// percentage is of `mem_total` bytes.
pub fn parse(
    text: &str,
    source: &str,
    overrides: &Overrides,
    mem_total: u64,
) -> Result<Policy, PolicyError> {
    parse_with(text, source, overrides, &|| mem_total)
}

/// [`parse`], asking `mem_total` for the machine's memory only when a size is a percentage of
/// it, and then once.
pub fn parse_with(
    text: &str,
    source: &str,
    overrides: &Overrides,
    mem_total: &dyn Fn() -> u64,
) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
        file: source.to_owned(),
        key: None,
        line: e.span().map(|s| line_of(text, s.start)),
        // toml's message may run over several lines ("invalid table header\nexpected `.`, `]`");
        // claude-cage's errors are one line each.
        message: e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": "),
    })?;
    let v = Validator {
        text,
        source,
        mem_total: MemTotal {
            read: mem_total,
            value: Cell::new(None),
        },
    };
    // The file must be valid on its own, even where a flag replaces one of its values.
    v.validate(raw.clone(), &Overrides::default())?;
    v.validate(raw, overrides)
}

/// The machine's memory, which a size given as a percentage is of: asked for only when such a
/// size is resolved, and then once, though a policy is validated twice.
struct MemTotal<'a> {
    read: &'a dyn Fn() -> u64,
    value: Cell<Option<u64>>,
}

impl MemTotal<'_> {
    fn get(&self) -> u64 {
        if let Some(v) = self.value.get() {
            return v;
        }
        let v = (self.read)();
        self.value.set(Some(v));
        v
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Validator<'a> {
    text: &'a str,
    source: &'a str,
    mem_total: MemTotal<'a>,
}

/// Where a value came from: a key in the file (with its span) or a command-line flag.
enum Origin<'k> {
    File { key: &'k str, start: usize },
    Flag(&'k str),
}

impl Validator<'_> {
    fn error(&self, origin: &Origin<'_>, message: impl Into<String>) -> PolicyError {
        match origin {
            Origin::File { key, start } => PolicyError {
                file: self.source.to_owned(),
                key: Some((*key).to_owned()),
                line: Some(line_of(self.text, *start)),
                message: message.into(),
            },
            Origin::Flag(flag) => PolicyError {
                file: "command line".to_owned(),
                key: Some((*flag).to_owned()),
                line: None,
                message: message.into(),
            },
        }
    }

    /// Picks the flag's value over the file's, remembering where it came from.
    fn pick<'k, T: Clone>(
        &self,
        file: Option<&Spanned<T>>,
        key: &'k str,
        flag: Option<&String>,
        flag_name: &'k str,
        from_flag: impl FnOnce(&str) -> T,
    ) -> Option<(T, Origin<'k>)> {
        if let Some(v) = flag {
            return Some((from_flag(v), Origin::Flag(flag_name)));
        }
        file.map(|s| {
            (
                s.get_ref().clone(),
                Origin::File {
                    key,
                    start: s.span().start,
                },
            )
        })
    }

    fn size(&self, v: Option<(Scalar, Origin<'_>)>) -> Result<Option<Limit>, PolicyError> {
        let Some((v, origin)) = v else {
            return Ok(None);
        };
        let size = match v {
            Scalar::Int(n) if n >= 0 => units::Size::Bytes(n as u64),
            Scalar::Int(n) => return Err(self.error(&origin, format!("size {n} is negative"))),
            Scalar::Text(t) => units::parse_size(&t).map_err(|e| self.error(&origin, e.0))?,
        };
        // A percentage of nothing would be a limit of 0 bytes: say so instead.
        if matches!(size, units::Size::Percent(_)) && self.mem_total.get() == 0 {
            return Err(self.error(
                &origin,
                "a percentage of the machine's memory, which could not be read (MemTotal in /proc/meminfo)",
            ));
        }
        Ok(Some(size.resolve_with(|| self.mem_total.get())))
    }

    fn count(&self, v: Option<(Scalar, Origin<'_>)>) -> Result<Option<Limit>, PolicyError> {
        let Some((v, origin)) = v else {
            return Ok(None);
        };
        let n = match v {
            Scalar::Text(t) if t.trim().eq_ignore_ascii_case("max") => return Ok(Some(Limit::Max)),
            Scalar::Text(t) => t.trim().parse::<i64>().map_err(|_| {
                self.error(
                    &origin,
                    format!("bad count {t:?}: expected a whole number or \"max\""),
                )
            })?,
            Scalar::Int(n) => n,
        };
        if n <= 0 {
            return Err(self.error(
                &origin,
                format!("{n} would forbid every process; use 1 or more, or \"max\""),
            ));
        }
        Ok(Some(Limit::Bytes(n as u64)))
    }

    fn duration(&self, v: Option<(String, Origin<'_>)>) -> Result<Option<Duration>, PolicyError> {
        let Some((v, origin)) = v else {
            return Ok(None);
        };
        units::parse_duration(&v)
            .map(Some)
            .map_err(|e| self.error(&origin, e.0))
    }

    fn validate(&self, raw: RawPolicy, o: &Overrides) -> Result<Policy, PolicyError> {
        let cage = raw.cage.unwrap_or_default();
        let bot = raw.bot.unwrap_or_default();
        let memory = raw.memory.unwrap_or_default();
        let pids = raw.pids.unwrap_or_default();
        let cpu = raw.cpu.unwrap_or_default();
        let lifetime = raw.lifetime.unwrap_or_default();
        let events = raw.events.unwrap_or_default();
        let raw_alerts = raw.alerts.unwrap_or_default();
        let text = |s: &str| Scalar::Text(s.to_owned());
        let owned = |s: &str| s.to_owned();

        let program = match raw.program {
            Some(p) if p.get_ref().is_empty() => {
                return Err(self.error(
                    &Origin::File {
                        key: "program",
                        start: p.span().start,
                    },
                    "must not be empty",
                ));
            }
            p => p.map(Spanned::into_inner),
        };

        let name = match self.pick(
            cage.name.as_ref(),
            "cage.name",
            o.name.as_ref(),
            "--name",
            owned,
        ) {
            Some((n, origin)) => {
                check_name(&n).map_err(|m| self.error(&origin, m))?;
                Some(n)
            }
            None => None,
        };

        let parent = match self.pick(
            cage.parent.as_ref(),
            "cage.parent",
            o.parent.as_ref(),
            "--parent",
            owned,
        ) {
            None => Parent::Auto,
            Some((p, origin)) => parse_parent(&p).map_err(|m| self.error(&origin, m))?,
        };

        let backend = match &cage.backend {
            None => Backend::Auto,
            Some(b) => match b.get_ref().as_str() {
                "auto" => Backend::Auto,
                "cgroupfs" => Backend::Cgroupfs,
                "systemd" => Backend::Systemd,
                other => {
                    return Err(self.error(
                        &Origin::File {
                            key: "cage.backend",
                            start: b.span().start,
                        },
                        format!("{other:?} is not one of \"auto\", \"cgroupfs\", \"systemd\""),
                    ));
                }
            },
        };
        let slice = match &cage.slice {
            None => DEFAULT_SLICE.to_owned(),
            Some(sl) => {
                let v = sl.get_ref();
                let ok = v.ends_with(".slice")
                    && v.len() > ".slice".len()
                    && v.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b":-_.\\".contains(&c));
                if !ok {
                    return Err(self.error(
                        &Origin::File {
                            key: "cage.slice",
                            start: sl.span().start,
                        },
                        format!("{v:?} is not a slice unit name such as \"claude-cage.slice\""),
                    ));
                }
                v.clone()
            }
        };

        for (key, v) in [("cage.user", &cage.user), ("cage.group", &cage.group)] {
            if let Some(v) = v {
                let ok = !v.get_ref().is_empty()
                    && v.get_ref()
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
                if !ok {
                    return Err(self.error(
                        &Origin::File {
                            key,
                            start: v.span().start,
                        },
                        format!("{:?} is not a user or group name or number", v.get_ref()),
                    ));
                }
            }
        }

        let mut require = Vec::new();
        if let Some(r) = &cage.require {
            let origin = Origin::File {
                key: "cage.require",
                start: r.span().start,
            };
            for c in r.get_ref() {
                let ctl = Controller::parse(c).ok_or_else(|| {
                    self.error(
                        &origin,
                        format!(
                            "unknown controller {c:?}: expected \"memory\", \"pids\" or \"cpu\""
                        ),
                    )
                })?;
                if !require.contains(&ctl) {
                    require.push(ctl);
                }
            }
        }

        let bot_memory_max =
            self.size(self.pick(bot.memory_max.as_ref(), "bot.memory-max", None, "", text))?;
        let bot_pids_max =
            self.count(self.pick(bot.pids_max.as_ref(), "bot.pids-max", None, "", text))?;

        let high_v = self.pick(
            memory.high.as_ref(),
            "memory.high",
            o.memory_high.as_ref(),
            "--memory-high",
            text,
        );
        let high_origin = high_v.as_ref().map(|(_, o)| clone_origin(o));
        let mut memory_high = self.size(high_v)?;
        let memory_max = self.size(self.pick(
            memory.max.as_ref(),
            "memory.max",
            o.memory_max.as_ref(),
            "--memory-max",
            text,
        ))?;
        if let (Some(Limit::Bytes(h)), Some(Limit::Bytes(m)), Some(origin)) =
            (memory_high, memory_max, &high_origin)
        {
            if h > m && matches!(origin, Origin::File { .. }) && o.memory_max.is_some() {
                // --memory-max below the policy's memory.high: the flag is the newer word, so
                // the policy's throttling threshold above it is dropped rather than refused.
                memory_high = None;
            } else if h > m {
                return Err(self.error(
                    origin,
                    format!(
                        "memory.high ({}) is above memory.max ({}): throttling would never start before the OOM kill",
                        units::Bytes(h),
                        units::Bytes(m)
                    ),
                ));
            }
        }
        let swap_max =
            self.size(self.pick(memory.swap_max.as_ref(), "memory.swap-max", None, "", text))?;
        let pids_max = self.count(self.pick(
            pids.max.as_ref(),
            "pids.max",
            o.pids_max.as_ref(),
            "--pids-max",
            text,
        ))?;

        let cpu_max = match &cpu.max {
            None => None,
            Some(s) => Some(units::parse_cpu_max(s.get_ref()).map_err(|e| {
                self.error(
                    &Origin::File {
                        key: "cpu.max",
                        start: s.span().start,
                    },
                    e.0,
                )
            })?),
        };
        let cpu_weight = match &cpu.weight {
            None => None,
            Some(w) => {
                let v = *w.get_ref();
                if !(1..=10_000).contains(&v) {
                    return Err(self.error(
                        &Origin::File {
                            key: "cpu.weight",
                            start: w.span().start,
                        },
                        format!(
                            "{v} is out of range: the kernel takes 1 to 10000 (100 is the default)"
                        ),
                    ));
                }
                Some(v as u32)
            }
        };

        let runtime_v = self.pick(
            lifetime.max_runtime.as_ref(),
            "lifetime.max-runtime",
            o.max_runtime.as_ref(),
            "--max-runtime",
            owned,
        );
        let runtime_origin = runtime_v.as_ref().map(|(_, o)| clone_origin(o));
        let max_runtime = self.duration(runtime_v)?;
        if let (Some(Duration::ZERO), Some(origin)) = (max_runtime, &runtime_origin) {
            return Err(self.error(
                origin,
                "must be longer than 0s (leave it unset for no limit)",
            ));
        }
        let stdin_eof_grace = self.duration(self.pick(
            lifetime.stdin_eof_grace.as_ref(),
            "lifetime.stdin-eof-grace",
            o.stdin_eof_grace.as_ref(),
            "--stdin-eof-grace",
            owned,
        ))?;
        let term_grace = self
            .duration(self.pick(
                lifetime.term_grace.as_ref(),
                "lifetime.term-grace",
                o.term_grace.as_ref(),
                "--term-grace",
                owned,
            ))?
            .unwrap_or(DEFAULT_TERM_GRACE);
        let parent_death = match &lifetime.parent_death {
            None => ParentDeath::Kill,
            Some(s) => match s.get_ref().as_str() {
                "kill" => ParentDeath::Kill,
                "ignore" => ParentDeath::Ignore,
                other => {
                    return Err(self.error(
                        &Origin::File {
                            key: "lifetime.parent-death",
                            start: s.span().start,
                        },
                        format!("{other:?} is not one of \"kill\", \"ignore\""),
                    ));
                }
            },
        };

        let events_file = match self.pick(
            events.file.as_ref(),
            "events.file",
            o.events.as_ref(),
            "--events",
            owned,
        ) {
            Some((f, origin)) if f.is_empty() => {
                return Err(self.error(&origin, "must not be empty (\"-\" is stderr)"));
            }
            v => v.map(|(f, _)| f),
        };

        let alerts = self.alerts(raw_alerts, memory_high, memory_max)?;

        Ok(Policy {
            source: self.source.to_owned(),
            program,
            name,
            parent,
            backend,
            slice,
            user: cage.user.as_ref().map(|u| u.get_ref().clone()),
            group: cage.group.as_ref().map(|g| g.get_ref().clone()),
            cgroupns: cage.cgroupns.unwrap_or(false),
            require,
            bot_memory_max,
            bot_pids_max,
            memory_high,
            memory_max,
            swap_max,
            oom_group: memory.oom_group.unwrap_or(true),
            pids_max,
            cpu_max,
            cpu_weight,
            max_runtime,
            stdin_eof_grace,
            term_grace,
            parent_death,
            events_file,
            alerts,
        })
    }

    fn alerts(
        &self,
        raw: RawAlerts,
        memory_high: Option<Limit>,
        memory_max: Option<Limit>,
    ) -> Result<Alerts, PolicyError> {
        let mut alerts = Alerts {
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            ..Default::default()
        };
        if let Some(w) = &raw.memory_warn {
            let origin = Origin::File {
                key: "alerts.memory-warn",
                start: w.span().start,
            };
            let bytes = match w.get_ref() {
                // A percentage is of memory.max, not of the machine.
                Scalar::Text(t) if t.trim().ends_with('%') => {
                    let Some(Limit::Bytes(max)) = memory_max else {
                        return Err(self.error(
                            &origin,
                            "a percentage is of memory.max, which this policy does not set",
                        ));
                    };
                    match units::parse_size(t).map_err(|e| self.error(&origin, e.0))? {
                        units::Size::Percent(p) => (max as f64 * p / 100.0) as u64,
                        _ => unreachable!("a size ending in % is a percentage"),
                    }
                }
                other => match self.size(Some((other.clone(), clone_origin(&origin))))? {
                    Some(Limit::Bytes(b)) => b,
                    _ => {
                        return Err(self.error(
                            &origin,
                            "must be a size or a percentage of memory.max, not \"max\"",
                        ));
                    }
                },
            };
            // The check is event-driven: the kernel notifies when usage crosses memory.high,
            // and only from then on is usage compared with the threshold (see alerts.rs).
            match memory_high {
                Some(Limit::Bytes(h)) if h <= bytes => {}
                _ => {
                    return Err(self.error(
                        &origin,
                        format!(
                            "{} needs memory.high at or below it: the kernel's notice that usage crossed memory.high is what starts the check",
                            units::Bytes(bytes)
                        ),
                    ));
                }
            }
            if let Some(Limit::Bytes(m)) = memory_max {
                if bytes >= m {
                    return Err(self.error(
                        &origin,
                        format!(
                            "{} is not below memory.max ({})",
                            units::Bytes(bytes),
                            units::Bytes(m)
                        ),
                    ));
                }
            }
            alerts.memory_warn = Some(bytes);
        }
        if let Some(p) = &raw.pressure {
            let origin = Origin::File {
                key: "alerts.pressure",
                start: p.span().start,
            };
            alerts.pressure =
                Some(units::parse_pressure(p.get_ref()).map_err(|e| self.error(&origin, e.0))?);
        }
        if let Some(e) = &raw.exec {
            let origin = Origin::File {
                key: "alerts.exec",
                start: e.span().start,
            };
            let argv = e.get_ref().clone();
            match argv.first() {
                None => {
                    return Err(self.error(
                        &origin,
                        "must name a program, e.g. [\"/usr/local/bin/page-ops\"]",
                    ));
                }
                Some(p) if !p.starts_with('/') => {
                    return Err(self.error(&origin, format!("{p:?} must be an absolute path")));
                }
                Some(_) => {}
            }
            alerts.exec = argv;
        }
        if let Some(t) = &raw.exec_timeout {
            let origin = Origin::File {
                key: "alerts.exec-timeout",
                start: t.span().start,
            };
            let d = units::parse_duration(t.get_ref()).map_err(|e| self.error(&origin, e.0))?;
            if d.is_zero() {
                return Err(self.error(&origin, "must be longer than 0s"));
            }
            alerts.exec_timeout = d;
        }
        Ok(alerts)
    }
}

fn clone_origin<'k>(o: &Origin<'k>) -> Origin<'k> {
    match o {
        Origin::File { key, start } => Origin::File { key, start: *start },
        Origin::Flag(f) => Origin::Flag(f),
    }
}

/// The longest bot name: it leaves room for "-<pid>-<n>" in a cage id.
pub const NAME_MAX: usize = 48;

/// Checks a bot name against `[a-z0-9][a-z0-9-]{0,47}`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use 1 to {NAME_MAX} characters of a-z, 0-9 and '-', not starting with '-'"
        ))
    }
}

/// Turns a program's file name into a bot name, for runs whose policy names none.
pub fn name_from_program(program: &str) -> String {
    let base = program.rsplit('/').next().unwrap_or(program);
    let mut name: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(NAME_MAX);
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() {
        "cage".to_owned()
    } else {
        name
    }
}

fn parse_parent(p: &str) -> Result<Parent, String> {
    if p == "auto" {
        return Ok(Parent::Auto);
    }
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} must be \"auto\" or a cgroup path starting with '/', such as \"/bots\""
        ));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{p:?} must not contain '.' or '..' components"));
    }
    if p.contains('\0') || p.contains('\n') {
        return Err(format!("{p:?} contains a control character"));
    }
    let trimmed = format!(
        "/{}",
        p.split('/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    );
    Ok(Parent::Path(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_percentage_without_the_machines_memory_is_an_error() {
        let e = parse(
            "[memory]\nmax = \"25%\"\n",
            "p.toml",
            &Overrides::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("memory.max"), Some(2)),
            "{e}"
        );
        assert!(e.message.contains("/proc/meminfo"), "{e}");
        // Control: bytes need no machine memory.
        parse(
            "[memory]\nmax = \"1G\"\n",
            "p.toml",
            &Overrides::default(),
            0,
        )
        .unwrap();
    }

    fn parse_ok(text: &str) -> Policy {
        parse(text, "p.toml", &Overrides::default(), 16 * GIB)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn shipped_policies_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load_file(&path, &Overrides::default(), &|| 16 * GIB)
                    .unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "expected the shipped policies in {}",
            dir.display()
        );
        let d = load_default(&Overrides::default(), &|| 16 * GIB).unwrap();
        assert_eq!(d.source, DEFAULT_SOURCE);
        assert!(
            d.require.is_empty(),
            "the default policy must be best effort"
        );
        assert_eq!(d.stdin_eof_grace, None);
        let file = std::fs::read_to_string(dir.join("default.toml")).unwrap();
        assert_eq!(
            file, DEFAULT_POLICY,
            "policies/default.toml is the built-in default"
        );
    }

    #[test]
    fn example_bot_values() {
        let p = load_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example-bot.toml"),
            &Overrides::default(),
            &|| 16 * GIB,
        )
        .unwrap();
        assert_eq!(p.name.as_deref(), Some("example-bot"));
        assert_eq!(p.require, vec![Controller::Memory, Controller::Pids]);
        assert_eq!(p.memory_high, Some(Limit::Bytes(3 * GIB)));
        assert_eq!(p.memory_max, Some(Limit::Bytes(4 * GIB)));
        assert_eq!(p.swap_max, Some(Limit::Bytes(0)));
        assert_eq!(p.bot_memory_max, Some(Limit::Bytes(6 * GIB)));
        assert_eq!(p.bot_pids_max, Some(Limit::Bytes(2048)));
        assert_eq!(p.pids_max, Some(Limit::Bytes(512)));
        assert_eq!(p.cpu_max, Some(CpuMax::Percent(150)));
        assert_eq!(p.cpu_weight, Some(100));
        assert_eq!(p.max_runtime, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(p.stdin_eof_grace, Some(Duration::from_secs(10)));
        assert_eq!(p.parent_death, ParentDeath::Kill);
        assert!(p.oom_group);
    }

    #[test]
    fn empty_policy_has_defaults() {
        let p = parse_ok("");
        assert_eq!(p.parent, Parent::Auto);
        assert_eq!(p.term_grace, DEFAULT_TERM_GRACE);
        assert_eq!(p.memory_max, None);
        assert!(p.oom_group);
        assert_eq!(p.parent_death, ParentDeath::Kill);
    }

    #[test]
    fn percent_and_integers() {
        let p = parse_ok("[memory]\nmax = \"25%\"\nhigh = 1048576\n[pids]\nmax = \"max\"\n");
        assert_eq!(p.memory_max, Some(Limit::Bytes(4 * GIB)));
        assert_eq!(p.memory_high, Some(Limit::Bytes(1 << 20)));
        assert_eq!(p.pids_max, Some(Limit::Max));
    }

    /// The machine's memory is asked for only when a size is a percentage of it, and then once,
    /// though a policy is validated twice (on its own, then with the flags).
    #[test]
    fn the_machines_memory_is_read_only_for_a_percentage() {
        let asked = Cell::new(0);
        let mem = || {
            asked.set(asked.get() + 1);
            16 * GIB
        };
        let none = Overrides::default();
        let p = parse_with(
            "[memory]\nmax = \"1G\"\nhigh = 1048576\n[bot]\nmemory-max = \"max\"\n[pids]\nmax = 10\n",
            "p.toml",
            &none,
            &mem,
        )
        .unwrap();
        assert_eq!(p.memory_max, Some(Limit::Bytes(GIB)));
        assert_eq!(asked.get(), 0, "no percentage, no read");
        let flags = Overrides {
            memory_max: Some("2G".into()),
            ..Default::default()
        };
        parse_with("", "p.toml", &flags, &mem).unwrap();
        assert_eq!(asked.get(), 0, "no percentage in the flags, no read");

        let p = parse_with(
            "[memory]\nhigh = \"20%\"\nmax = \"25%\"\n[bot]\nmemory-max = \"50%\"\n",
            "p.toml",
            &none,
            &mem,
        )
        .unwrap();
        assert_eq!(p.memory_max, Some(Limit::Bytes(4 * GIB)));
        assert_eq!(p.bot_memory_max, Some(Limit::Bytes(8 * GIB)));
        assert_eq!(
            asked.get(),
            1,
            "three percentages, two validations, one read"
        );

        asked.set(0);
        let flags = Overrides {
            memory_max: Some("50%".into()),
            ..Default::default()
        };
        let p = parse_with("", "p.toml", &flags, &mem).unwrap();
        assert_eq!(p.memory_max, Some(Limit::Bytes(8 * GIB)));
        assert_eq!(asked.get(), 1, "a percentage in a flag");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            memory_max: Some("100M".into()),
            pids_max: Some("9".into()),
            name: Some("flagged".into()),
            ..Default::default()
        };
        let p = parse(
            "[memory]\nmax = \"1G\"\n[cage]\nname = \"filed\"\n",
            "p.toml",
            &o,
            GIB,
        )
        .unwrap();
        assert_eq!(p.memory_max, Some(Limit::Bytes(100 << 20)));
        assert_eq!(p.pids_max, Some(Limit::Bytes(9)));
        assert_eq!(p.name.as_deref(), Some("flagged"));
    }

    #[test]
    fn lower_max_flag_drops_the_policys_higher_high() {
        let o = Overrides {
            memory_max: Some("1G".into()),
            ..Default::default()
        };
        let p = parse("[memory]\nhigh = \"2G\"\nmax = \"4G\"\n", "p.toml", &o, GIB).unwrap();
        assert_eq!(p.memory_max, Some(Limit::Bytes(GIB)));
        assert_eq!(p.memory_high, None);
    }

    #[test]
    fn overridden_file_values_are_still_validated() {
        let o = Overrides {
            name: Some("good".into()),
            ..Default::default()
        };
        let e = parse("[cage]\nname = \"Bad Name\"\n", "p.toml", &o, GIB).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("cage.name"), "{e}");
    }

    #[test]
    fn alerts_section() {
        let p = parse_ok(
            "[memory]\nhigh = \"700M\"\nmax = \"1000M\"\n[alerts]\nmemory-warn = \"80%\"\npressure = \"some 10% 2s\"\nexec = [\"/bin/page\", \"-x\"]\n",
        );
        assert_eq!(p.alerts.memory_warn, Some(800 << 20));
        assert_eq!(
            p.alerts.pressure.unwrap().to_cgroup_value(),
            "some 200000 2000000"
        );
        assert_eq!(p.alerts.exec, vec!["/bin/page", "-x"]);
        assert_eq!(p.alerts.exec_timeout, DEFAULT_EXEC_TIMEOUT);
    }

    #[test]
    fn parents() {
        assert_eq!(
            parse_ok("[cage]\nparent = \"/bots//a/\"").parent,
            Parent::Path("/bots/a".into())
        );
        assert_eq!(
            parse_ok("[cage]\nparent = \"/\"").parent,
            Parent::Path("/".into())
        );
        assert_eq!(parse_ok("[cage]\nparent = \"auto\"").parent, Parent::Auto);
    }

    /// Each invalid policy, with a fragment of its message and the line it must name.
    #[test]
    fn invalid_policies() {
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("bogus = 1", "unknown field `bogus`", Some(1)),
            (
                "[cage\nname = \"x\"",
                "invalid table header: expected",
                Some(1),
            ),
            ("[memory]\nmaxx = \"1G\"", "unknown field `maxx`", Some(2)),
            ("[nope]\n", "unknown field `nope`", Some(1)),
            ("[memory]\nmax = true", "a number or a string", Some(2)),
            ("[memory]\nmax = \"lots\"", "bad size \"lots\"", Some(2)),
            ("[memory]\nmax = -5", "negative", Some(2)),
            (
                "[memory]\nhigh = \"2G\"\nmax = \"1G\"",
                "above memory.max",
                Some(2),
            ),
            ("[memory]\nswap-max = \"1.5\"", "whole number", Some(2)),
            ("[memory]\noom-group = \"yes\"", "invalid type", Some(2)),
            ("[pids]\nmax = 0", "would forbid every process", Some(2)),
            ("[pids]\nmax = \"many\"", "bad count", Some(2)),
            ("[bot]\npids-max = -1", "would forbid", Some(2)),
            ("[bot]\nmemory-max = \"200%\"", "at most 100%", Some(2)),
            ("[cage]\nname = \"Bad_Name\"", "invalid name", Some(2)),
            ("[cage]\nname = \"\"", "invalid name", Some(2)),
            ("[cage]\nname = \"-lead\"", "invalid name", Some(2)),
            (
                "[cage]\nname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                "invalid name",
                Some(2),
            ),
            ("[cage]\nparent = \"/bots/../etc\"", "'..'", Some(2)),
            ("[cage]\nparent = \"bots\"", "starting with '/'", Some(2)),
            (
                "[cage]\nrequire = [\"memory\", \"io\"]",
                "unknown controller \"io\"",
                Some(2),
            ),
            ("[cage]\nrequire = \"memory\"", "invalid type", Some(2)),
            ("[cpu]\nmax = \"1.5\"", "bad cpu max", Some(2)),
            ("[cpu]\nmax = \"0%\"", "between 1%", Some(2)),
            ("[cpu]\nweight = 0", "out of range", Some(2)),
            ("[cpu]\nweight = 10001", "out of range", Some(2)),
            ("[lifetime]\nmax-runtime = \"10\"", "bad duration", Some(2)),
            (
                "[lifetime]\nstdin-eof-grace = \"soon\"",
                "bad duration",
                Some(2),
            ),
            ("[lifetime]\nterm-grace = 3", "invalid type", Some(2)),
            (
                "[lifetime]\nparent-death = \"maybe\"",
                "not one of",
                Some(2),
            ),
            (
                "[lifetime]\nmax-runtime = \"0s\"",
                "longer than 0s",
                Some(2),
            ),
            ("[events]\nfile = \"\"", "must not be empty", Some(2)),
            ("[cage]\nbackend = \"docker\"", "not one of", Some(2)),
            ("[cage]\nslice = \"bots\"", "slice unit name", Some(2)),
            ("[cage]\nslice = \"a/b.slice\"", "slice unit name", Some(2)),
            ("program = \"\"", "must not be empty", Some(1)),
            (
                "[memory\nmax = 1",
                "invalid table header: expected `.`, `]`",
                Some(1),
            ),
            ("[alerts]\nmemory-warn = \"80%\"", "does not set", Some(2)),
            (
                "[memory]\nmax = \"1G\"\n[alerts]\nmemory-warn = \"80%\"",
                "needs memory.high",
                Some(4),
            ),
            (
                "[memory]\nhigh = \"900M\"\nmax = \"1G\"\n[alerts]\nmemory-warn = \"80%\"",
                "needs memory.high",
                Some(5),
            ),
            (
                "[memory]\nhigh = \"500M\"\nmax = \"1G\"\n[alerts]\nmemory-warn = \"2G\"",
                "not below memory.max",
                Some(5),
            ),
            (
                "[alerts]\npressure = \"some 10%\"",
                "bad pressure trigger",
                Some(2),
            ),
            ("[alerts]\nexec = []", "must name a program", Some(2)),
            ("[alerts]\nexec = [\"page-ops\"]", "absolute path", Some(2)),
            ("[alerts]\nexec-timeout = \"0s\"", "longer than 0s", Some(2)),
            ("program = \"a\"\nprogram = \"b\"", "duplicate", Some(2)),
        ];
        assert!(cases.len() >= 30);
        for (text, fragment, line) in cases {
            let e = parse(text, "p.toml", &Overrides::default(), 16 * GIB)
                .expect_err(&format!("should be refused: {text:?}"));
            let msg = e.to_string();
            assert!(msg.starts_with("p.toml"), "{msg}");
            assert!(!msg.contains('\n'), "one line: {msg:?}");
            assert!(
                msg.contains(fragment),
                "{text:?}: {msg:?} lacks {fragment:?}"
            );
            assert_eq!(e.line, *line, "{text:?}: {msg}");
        }
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let o = Overrides {
            memory_max: Some("huge".into()),
            ..Default::default()
        };
        let e = parse("", "p.toml", &o, GIB).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: --memory-max: bad size \"huge\": expected bytes, a number with K/M/G/T, \"max\" or a percentage"
        );
        let o = Overrides {
            memory_high: Some("2G".into()),
            memory_max: Some("1G".into()),
            ..Default::default()
        };
        assert!(
            parse("", "p.toml", &o, GIB)
                .unwrap_err()
                .to_string()
                .contains("--memory-high")
        );
        // A zero runtime from the flag is the flag's fault, not the file's.
        let o = Overrides {
            max_runtime: Some("0s".into()),
            ..Default::default()
        };
        let e = parse("[lifetime]\nmax-runtime = \"1h\"\n", "p.toml", &o, GIB).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: --max-runtime: must be longer than 0s (leave it unset for no limit)"
        );
        assert_eq!(e.line, None);
    }

    /// The fuzz corpus of the policy parser (fuzz/corpus/policy, grown by `cargo fuzz run
    /// policy`) as a regression test: every input goes through the calls
    /// fuzz/fuzz_targets/policy.rs makes, overrides from a "#!KEY=VALUE;..." first line
    /// included, and each must return, accepted or refused, without a panic.
    #[test]
    fn the_fuzz_corpus_parses_without_panicking() {
        let mut panicked = Vec::new();
        for (path, text) in crate::units::fuzz_corpus("policy") {
            let text = text.as_str();
            let mut o = Overrides::default();
            if let Some(first) = text.lines().next().and_then(|l| l.strip_prefix("#!")) {
                for (k, v) in first.split(';').filter_map(|kv| kv.split_once('=')) {
                    o.set(k, v.to_owned());
                }
            }
            match std::panic::catch_unwind(|| parse(text, "fuzz.toml", &o, 16 * GIB)) {
                Err(_) => panicked.push(path),
                Ok(Err(e)) => assert!(
                    e.file == "fuzz.toml" || e.file == "command line",
                    "{}: {e}",
                    path.display()
                ),
                Ok(Ok(_)) => {}
            }
        }
        assert!(panicked.is_empty(), "the parser panicked on {panicked:?}");
    }

    #[test]
    fn names_from_programs() {
        assert_eq!(name_from_program("/usr/bin/claude"), "claude");
        assert_eq!(name_from_program("My_Tool.sh"), "my-tool-sh");
        assert_eq!(name_from_program("///"), "cage");
        assert!(check_name(&name_from_program(&"x".repeat(100))).is_ok());
    }
}
