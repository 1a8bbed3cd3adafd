//! The TOML schema of a policy file, as read: unknown keys are refused, keys are kebab-case,
//! and every value keeps its span so that an error can name its line.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPolicy {
    pub(super) program: Option<Spanned<String>>,
    pub(super) program_from_env: Option<bool>,
    pub(super) cage: Option<RawCage>,
    pub(super) bot: Option<RawBot>,
    pub(super) memory: Option<RawMemory>,
    pub(super) pids: Option<RawPids>,
    pub(super) cpu: Option<RawCpu>,
    pub(super) lifetime: Option<RawLifetime>,
    pub(super) events: Option<RawEvents>,
    pub(super) alerts: Option<RawAlerts>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAlerts {
    pub(super) memory_warn: Option<Spanned<Scalar>>,
    pub(super) pressure: Option<Spanned<String>>,
    pub(super) exec: Option<Spanned<Vec<String>>>,
    pub(super) exec_timeout: Option<Spanned<String>>,
    pub(super) env: Option<Spanned<Vec<String>>>,
    pub(super) on: Option<Spanned<Vec<String>>>,
    pub(super) exit_reasons: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCage {
    pub(super) name: Option<Spanned<String>>,
    pub(super) parent: Option<Spanned<String>>,
    pub(super) require: Option<Spanned<Vec<String>>>,
    pub(super) backend: Option<Spanned<String>>,
    pub(super) slice: Option<Spanned<String>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) cgroupns: Option<bool>,
    pub(super) max_descendants: Option<Spanned<i64>>,
    pub(super) max_depth: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawBot {
    pub(super) memory_high: Option<Spanned<Scalar>>,
    pub(super) memory_max: Option<Spanned<Scalar>>,
    pub(super) memory_warn: Option<Spanned<Scalar>>,
    pub(super) pids_max: Option<Spanned<Scalar>>,
    pub(super) if_unsupported: Option<Spanned<String>>,
    pub(super) max_cages: Option<Spanned<i64>>,
    pub(super) on_limit: Option<Spanned<String>>,
    pub(super) wait_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawMemory {
    pub(super) high: Option<Spanned<Scalar>>,
    pub(super) max: Option<Spanned<Scalar>>,
    pub(super) swap_max: Option<Spanned<Scalar>>,
    pub(super) oom_group: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPids {
    pub(super) max: Option<Spanned<Scalar>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCpu {
    pub(super) max: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLifetime {
    pub(super) max_runtime: Option<Spanned<String>>,
    pub(super) stdin_eof_grace: Option<Spanned<String>>,
    pub(super) term_grace: Option<Spanned<String>>,
    pub(super) parent_death: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) idle_cpu: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawEvents {
    pub(super) file: Option<Spanned<String>>,
}

/// A value that may be written as a TOML integer or a string ("512M", 1048576, "max").
#[derive(Debug, Clone)]
pub(super) enum Scalar {
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
