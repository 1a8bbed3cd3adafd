//! The `[alerts]` section: warnings before a cage is killed, and the hook that hears of them.

use super::schema::{RawAlerts, Scalar};
use super::validate::{Origin, Validator, clone_origin};
use super::values::{ALERT_EVENTS, DEFAULT_EXIT_REASONS, EXIT_REASONS};
use super::{Alerts, DEFAULT_EXEC_TIMEOUT, MAX_EXEC_TIMEOUT, PolicyError};
use crate::units::{self, Limit};

impl Validator<'_> {
    /// A `memory-warn` threshold (`alerts.memory-warn` of a cage, `bot.memory-warn` of a bot):
    /// a size, or a percentage of the `max` limit; at or above the `high` limit, which must be
    /// set (the kernel's notice that usage crossed it is what starts the check), and below the
    /// `max` limit where that is set. `high` and `max` are (key, value).
    pub(super) fn warn_threshold(
        &self,
        w: &toml::Spanned<Scalar>,
        key: &'static str,
        (high_key, high): (&str, Option<Limit>),
        (max_key, max): (&str, Option<Limit>),
    ) -> Result<u64, PolicyError> {
        let origin = Origin::File {
            key,
            start: w.span().start,
        };
        let bytes = match w.get_ref() {
            // A percentage is of the max limit, not of the machine.
            Scalar::Text(t) if t.trim().ends_with('%') => {
                let Some(Limit::Bytes(m)) = max else {
                    return Err(self.error(
                        &origin,
                        format!("a percentage is of {max_key}, which this policy does not set"),
                    ));
                };
                match units::parse_size(t).map_err(|e| self.error(&origin, e.0))? {
                    units::Size::Percent(p) => (m as f64 * p / 100.0) as u64,
                    _ => unreachable!("a size ending in % is a percentage"),
                }
            }
            other => match self.size(Some((other.clone(), clone_origin(&origin))))? {
                Some(Limit::Bytes(b)) => b,
                _ => {
                    return Err(self.error(
                        &origin,
                        format!("must be a size or a percentage of {max_key}, not \"max\""),
                    ));
                }
            },
        };
        // The check is event-driven: the kernel notifies when usage crosses the high limit,
        // and only from then on is usage compared with the threshold (see alerts.rs).
        match high {
            Some(Limit::Bytes(h)) if h <= bytes => {}
            _ => {
                return Err(self.error(
                    &origin,
                    format!(
                        "{} needs {high_key} at or below it: the kernel's notice that usage crossed {high_key} is what starts the check",
                        units::Bytes(bytes)
                    ),
                ));
            }
        }
        if let Some(Limit::Bytes(m)) = max {
            if bytes >= m {
                return Err(self.error(
                    &origin,
                    format!(
                        "{} is not below {max_key} ({})",
                        units::Bytes(bytes),
                        units::Bytes(m)
                    ),
                ));
            }
        }
        Ok(bytes)
    }

    /// The `[alerts]` section, checked against the memory limits it refers to.
    pub(super) fn alerts(
        &self,
        raw: RawAlerts,
        memory_high: Option<Limit>,
        memory_max: Option<Limit>,
    ) -> Result<Alerts, PolicyError> {
        let mut alerts = Alerts {
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            on: ALERT_EVENTS.iter().map(|s| s.to_string()).collect(),
            exit_reasons: DEFAULT_EXIT_REASONS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        if let Some(w) = &raw.memory_warn {
            alerts.memory_warn = Some(self.warn_threshold(
                w,
                "alerts.memory-warn",
                ("memory.high", memory_high),
                ("memory.max", memory_max),
            )?);
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
            if d > MAX_EXEC_TIMEOUT {
                return Err(self.error(
                    &origin,
                    format!(
                        "must be at most {}: claude-cage waits for its hooks before it exits",
                        units::Elapsed(MAX_EXEC_TIMEOUT)
                    ),
                ));
            }
            alerts.exec_timeout = d;
        }
        if let Some(e) = &raw.env {
            let origin = Origin::File {
                key: "alerts.env",
                start: e.span().start,
            };
            for name in e.get_ref() {
                let valid = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(self.error(
                        &origin,
                        format!("{name:?} is not the name of an environment variable"),
                    ));
                }
            }
            alerts.env = e.get_ref().clone();
        }
        let names = |v: &toml::Spanned<Vec<String>>, key: &'static str, known: &[&str]| {
            let origin = Origin::File {
                key,
                start: v.span().start,
            };
            match v.get_ref().iter().find(|n| !known.contains(&n.as_str())) {
                Some(n) => {
                    Err(self.error(&origin, format!("{n:?} is not one of {}", quoted(known))))
                }
                None => Ok(v.get_ref().clone()),
            }
        };
        if let Some(v) = &raw.on {
            alerts.on = names(v, "alerts.on", &ALERT_EVENTS)?;
        }
        if let Some(v) = &raw.exit_reasons {
            alerts.exit_reasons = names(v, "alerts.exit-reasons", &EXIT_REASONS)?;
        }
        Ok(alerts)
    }
}

/// `"a", "b", "c"`.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
