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
}

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
        Ok(Lifetime {
            max_runtime,
            stdin_eof_grace,
            term_grace,
            parent_death,
        })
    }
}
