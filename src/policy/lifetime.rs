//! The `[lifetime]` section: how long a cage may live, and how it ends.

use std::time::Duration;

use super::schema::RawLifetime;
use super::validate::{Origin, Validator, clone_origin, owned};
use super::{DEFAULT_TERM_GRACE, Overrides, ParentDeath, PolicyError};

/// The `[lifetime]` section, validated.
pub(super) struct Lifetime {
    pub(super) max_runtime: Option<Duration>,
    pub(super) stdin_eof_grace: Option<Duration>,
    pub(super) term_grace: Duration,
    pub(super) parent_death: ParentDeath,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) idle_cpu: f64,
}

/// The default `[lifetime] idle-cpu`: half a percent of one CPU. Claude Code waiting on the
/// API's stream uses more than that; a session left open with nothing to do uses less.
pub const DEFAULT_IDLE_CPU: f64 = 0.005;

impl Validator<'_> {
    /// The `[lifetime]` section, with `--max-runtime`, `--stdin-eof-grace` and `--term-grace`
    /// replacing its values.
    pub(super) fn lifetime(
        &self,
        lifetime: RawLifetime,
        o: &Overrides,
    ) -> Result<Lifetime, PolicyError> {
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
        let idle_v = self.pick(
            lifetime.idle_timeout.as_ref(),
            "lifetime.idle-timeout",
            o.idle_timeout.as_ref(),
            "--idle-timeout",
            owned,
        );
        let idle_origin = idle_v.as_ref().map(|(_, o)| clone_origin(o));
        let idle_timeout = self.duration(idle_v)?;
        if let (Some(Duration::ZERO), Some(origin)) = (idle_timeout, &idle_origin) {
            return Err(self.error(
                origin,
                "must be longer than 0s (leave it unset for no idle limit)",
            ));
        }
        let idle_cpu = match &lifetime.idle_cpu {
            None => DEFAULT_IDLE_CPU,
            Some(s) => {
                let origin = Origin::File {
                    key: "lifetime.idle-cpu",
                    start: s.span().start,
                };
                let share = s
                    .get_ref()
                    .trim()
                    .strip_suffix('%')
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite() && *p > 0.0 && *p <= 100.0)
                    .map(|p| p / 100.0);
                match share {
                    Some(v) => v,
                    None => {
                        return Err(self.error(
                            &origin,
                            format!(
                                "{:?} is not a share of one CPU above 0% and at most 100%, e.g. \"0.5%\"",
                                s.get_ref()
                            ),
                        ));
                    }
                }
            }
        };
        Ok(Lifetime {
            max_runtime,
            stdin_eof_grace,
            term_grace,
            parent_death,
            idle_timeout,
            idle_cpu,
        })
    }
}
