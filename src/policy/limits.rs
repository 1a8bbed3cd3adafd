//! The limits: the `[bot]` section (the bot's cgroup, shared by its cages) and the `[memory]`,
//! `[pids]` and `[cpu]` sections (each cage's own).

use super::schema::{RawBot, RawCpu, RawMemory, RawPids};
use super::validate::{Origin, Validator, clone_origin, owned, text};
use super::{OnLimit, Overrides, PolicyError};
use crate::units::{self, CpuMax, Limit};

/// The `[bot]` section, validated.
pub(super) struct Bot {
    pub(super) memory_high: Option<Limit>,
    pub(super) memory_max: Option<Limit>,
    pub(super) memory_warn: Option<u64>,
    pub(super) pids_max: Option<Limit>,
    pub(super) if_unsupported_warn: bool,
    pub(super) max_cages: Option<u32>,
    pub(super) on_limit: OnLimit,
    pub(super) wait_timeout: std::time::Duration,
}

/// The default `[bot] wait-timeout`: how long a run at the bot's cap waits for a cage to end.
pub const DEFAULT_WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The `[memory]` section, validated.
pub(super) struct Memory {
    pub(super) high: Option<Limit>,
    pub(super) max: Option<Limit>,
    pub(super) swap_max: Option<Limit>,
    pub(super) oom_group: bool,
}

impl Validator<'_> {
    /// The `[bot]` section: `memory-high`, `memory-max`, `memory-warn`, `pids-max`, the cap on
    /// live cages, and whether a backend that cannot apply
    /// them may run without them (`if-unsupported = "warn"`; `"refuse"` by default).
    pub(super) fn bot(&self, bot: RawBot) -> Result<Bot, PolicyError> {
        let bot_memory_max =
            self.size(self.pick(bot.memory_max.as_ref(), "bot.memory-max", None, "", text))?;
        let bot_memory_high =
            self.size(self.pick(bot.memory_high.as_ref(), "bot.memory-high", None, "", text))?;
        if let (Some(Limit::Bytes(h)), Some(Limit::Bytes(m)), Some(v)) =
            (bot_memory_high, bot_memory_max, bot.memory_high.as_ref())
        {
            if h > m {
                return Err(self.error(
                    &Origin::File {
                        key: "bot.memory-high",
                        start: v.span().start,
                    },
                    format!(
                        "{} is above bot.memory-max ({})",
                        units::Bytes(h),
                        units::Bytes(m)
                    ),
                ));
            }
        }
        let bot_memory_warn = match &bot.memory_warn {
            None => None,
            Some(w) => Some(self.warn_threshold(
                w,
                "bot.memory-warn",
                ("bot.memory-high", bot_memory_high),
                ("bot.memory-max", bot_memory_max),
            )?),
        };
        let bot_pids_max =
            self.count(self.pick(bot.pids_max.as_ref(), "bot.pids-max", None, "", text))?;
        let warn = match &bot.if_unsupported {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "refuse" => false,
                "warn" => true,
                other => {
                    return Err(self.error(
                        &Origin::File {
                            key: "bot.if-unsupported",
                            start: v.span().start,
                        },
                        format!("{other:?} is not one of \"refuse\", \"warn\""),
                    ));
                }
            },
        };
        let max_cages = match &bot.max_cages {
            None => None,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 => Some(v),
                _ => {
                    return Err(self.error(
                        &Origin::File {
                            key: "bot.max-cages",
                            start: n.span().start,
                        },
                        format!("{} is not a number of cages from 1 up", n.get_ref()),
                    ));
                }
            },
        };
        let on_limit = match &bot.on_limit {
            None => OnLimit::Wait,
            Some(v) => match v.get_ref().as_str() {
                "wait" => OnLimit::Wait,
                "refuse" => OnLimit::Refuse,
                other => {
                    return Err(self.error(
                        &Origin::File {
                            key: "bot.on-limit",
                            start: v.span().start,
                        },
                        format!("{other:?} is not one of \"wait\", \"refuse\""),
                    ));
                }
            },
        };
        let wait_timeout = self
            .duration(self.pick(
                bot.wait_timeout.as_ref(),
                "bot.wait-timeout",
                None,
                "",
                owned,
            ))?
            .unwrap_or(DEFAULT_WAIT_TIMEOUT);
        if wait_timeout.is_zero() {
            let w = bot
                .wait_timeout
                .as_ref()
                .expect("a zero came from the file");
            return Err(self.error(
                &Origin::File {
                    key: "bot.wait-timeout",
                    start: w.span().start,
                },
                "must be longer than 0s (on-limit = \"refuse\" refuses at once)",
            ));
        }
        Ok(Bot {
            memory_high: bot_memory_high,
            memory_max: bot_memory_max,
            memory_warn: bot_memory_warn,
            pids_max: bot_pids_max,
            if_unsupported_warn: warn,
            max_cages,
            on_limit,
            wait_timeout,
        })
    }

    /// The `[memory]` section, with `--memory-high` and `--memory-max` replacing its values.
    pub(super) fn memory(&self, memory: RawMemory, o: &Overrides) -> Result<Memory, PolicyError> {
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
        Ok(Memory {
            high: memory_high,
            max: memory_max,
            swap_max,
            oom_group: memory.oom_group.unwrap_or(true),
        })
    }

    /// The `[pids]` section, with `--pids-max` replacing its value.
    pub(super) fn pids(&self, pids: RawPids, o: &Overrides) -> Result<Option<Limit>, PolicyError> {
        self.count(self.pick(
            pids.max.as_ref(),
            "pids.max",
            o.pids_max.as_ref(),
            "--pids-max",
            text,
        ))
    }

    /// The `[cpu]` section: `max` and `weight`.
    pub(super) fn cpu(&self, cpu: RawCpu) -> Result<(Option<CpuMax>, Option<u32>), PolicyError> {
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
        Ok((cpu_max, cpu_weight))
    }
}
