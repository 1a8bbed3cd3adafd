//! Validation of a parsed policy file: the helpers every section uses, and the order in which
//! the sections are checked. The first error found is the one reported, so that order is part
//! of what a user sees.

use std::time::Duration;

use toml::Spanned;

use super::lifetime::Lifetime;
use super::limits::Memory;
use super::load::{MemTotal, line_of};
use super::schema::{RawEvents, RawPolicy, Scalar};
use super::{Overrides, Policy, PolicyError};
use crate::units::{self, Limit};

/// Validates the sections of a parsed policy file, each in its own file of this module.
pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a str,
    pub(super) mem_total: MemTotal<'a>,
}

/// Where a value came from: a key in the file (with its span) or a command-line flag.
pub(super) enum Origin<'k> {
    File { key: &'k str, start: usize },
    Flag(&'k str),
}

impl Validator<'_> {
    pub(super) fn error(&self, origin: &Origin<'_>, message: impl Into<String>) -> PolicyError {
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
    pub(super) fn pick<'k, T: Clone>(
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

    pub(super) fn size(
        &self,
        v: Option<(Scalar, Origin<'_>)>,
    ) -> Result<Option<Limit>, PolicyError> {
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

    pub(super) fn count(
        &self,
        v: Option<(Scalar, Origin<'_>)>,
    ) -> Result<Option<Limit>, PolicyError> {
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

    pub(super) fn duration(
        &self,
        v: Option<(String, Origin<'_>)>,
    ) -> Result<Option<Duration>, PolicyError> {
        let Some((v, origin)) = v else {
            return Ok(None);
        };
        units::parse_duration(&v)
            .map(Some)
            .map_err(|e| self.error(&origin, e.0))
    }

    /// The policy from `raw`, with the overrides `o` replacing its values. The sections are
    /// checked in this order, and each section's keys in the order its function checks them.
    pub(super) fn validate(&self, raw: RawPolicy, o: &Overrides) -> Result<Policy, PolicyError> {
        let program = self.program(raw.program)?;
        let raw_program_from_env = raw.program_from_env.unwrap_or(false);
        let cage = self.cage(raw.cage.unwrap_or_default(), o)?;
        let bot = self.bot(raw.bot.unwrap_or_default())?;
        let Memory {
            high: memory_high,
            max: memory_max,
            swap_max,
            oom_group,
        } = self.memory(raw.memory.unwrap_or_default(), o)?;
        let pids_max = self.pids(raw.pids.unwrap_or_default(), o)?;
        let (cpu_max, cpu_weight) = self.cpu(raw.cpu.unwrap_or_default())?;
        let Lifetime {
            max_runtime,
            stdin_eof_grace,
            term_grace,
            parent_death,
            idle_timeout,
            idle_cpu,
        } = self.lifetime(raw.lifetime.unwrap_or_default(), o)?;
        let events_file = self.events(raw.events.unwrap_or_default(), o)?;
        let alerts = self.alerts(raw.alerts.unwrap_or_default(), memory_high, memory_max)?;

        Ok(Policy {
            source: self.source.to_owned(),
            program,
            program_from_env: raw_program_from_env,
            name: cage.name,
            parent: cage.parent,
            backend: cage.backend,
            slice: cage.slice,
            user: cage.user,
            group: cage.group,
            cgroupns: cage.cgroupns,
            require: cage.require,
            max_descendants: cage.max_descendants,
            max_depth: cage.max_depth,
            bot_memory_high: bot.memory_high,
            bot_memory_max: bot.memory_max,
            bot_memory_warn: bot.memory_warn,
            bot_pids_max: bot.pids_max,
            bot_if_unsupported_warn: bot.if_unsupported_warn,
            max_cages: bot.max_cages,
            on_limit: bot.on_limit,
            wait_timeout: bot.wait_timeout,
            memory_high,
            memory_max,
            swap_max,
            oom_group,
            pids_max,
            cpu_max,
            cpu_weight,
            max_runtime,
            stdin_eof_grace,
            term_grace,
            parent_death,
            idle_timeout,
            idle_cpu,
            events_file,
            alerts,
        })
    }

    /// The top-level `program`.
    fn program(&self, program: Option<Spanned<String>>) -> Result<Option<String>, PolicyError> {
        match program {
            Some(p) if p.get_ref().is_empty() => Err(self.error(
                &Origin::File {
                    key: "program",
                    start: p.span().start,
                },
                "must not be empty",
            )),
            p => Ok(p.map(Spanned::into_inner)),
        }
    }

    /// The `[events]` section.
    fn events(&self, events: RawEvents, o: &Overrides) -> Result<Option<String>, PolicyError> {
        match self.pick(
            events.file.as_ref(),
            "events.file",
            o.events.as_ref(),
            "--events",
            owned,
        ) {
            Some((f, origin)) if f.is_empty() => {
                Err(self.error(&origin, "must not be empty (\"-\" is stderr)"))
            }
            v => Ok(v.map(|(f, _)| f)),
        }
    }
}

pub(super) fn clone_origin<'k>(o: &Origin<'k>) -> Origin<'k> {
    match o {
        Origin::File { key, start } => Origin::File { key, start: *start },
        Origin::Flag(f) => Origin::Flag(f),
    }
}

/// A flag's value as a size or count, as if the file had given it as a string.
pub(super) fn text(s: &str) -> Scalar {
    Scalar::Text(s.to_owned())
}

/// A flag's value as it is.
pub(super) fn owned(s: &str) -> String {
    s.to_owned()
}
