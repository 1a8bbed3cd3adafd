//! Pure parsers and formatters for the units a policy speaks: sizes ("512M", "1.5G", "max",
//! "25%"), durations ("500ms", "10s", "4h") and CPU shares ("150%").
//!
//! Nothing here touches the system; the machine's memory size is passed in where a percentage
//! needs it, so every function is table-tested below.

use std::fmt;
use std::time::Duration;

/// A memory size as written in a policy, before a percentage is resolved against the machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// An exact number of bytes.
    Bytes(u64),
    /// A share of the machine's memory (`MemTotal`), in percent.
    Percent(f64),
    /// No limit (the cgroup files' `max`).
    Max,
}

/// A resolved limit: what is written into a cgroup file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes(u64),
    Max,
}

impl Limit {
    /// The text the kernel expects in `memory.*` and `pids.max`.
    pub fn to_cgroup_value(self) -> String {
        match self {
            Limit::Bytes(n) => n.to_string(),
            Limit::Max => "max".to_owned(),
        }
    }

    /// The number, or `None` for `max`.
    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Bytes(n) => Some(n),
            Limit::Max => None,
        }
    }
}

/// Why a unit did not parse; the caller adds the file, key and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

fn err(msg: impl Into<String>) -> UnitError {
    UnitError(msg.into())
}

/// Parses "4096", "512K", "64M", "1.5G", "2T", "max" or "25%". Suffixes are powers of 1024; a
/// trailing "B" or "iB" is accepted ("64MiB").
pub fn parse_size(text: &str) -> Result<Size, UnitError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty size"));
    }
    if s.eq_ignore_ascii_case("max") {
        return Ok(Size::Max);
    }
    if let Some(pct) = s.strip_suffix('%') {
        let v: f64 = parse_decimal(pct.trim())
            .ok_or_else(|| err(format!("bad percentage {text:?}: expected e.g. \"25%\"")))?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(err(format!(
                "percentage {text:?} must be above 0% and at most 100%"
            )));
        }
        return Ok(Size::Percent(v));
    }
    let upper = s.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (num, shift) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 10),
        Some('M') => (&body[..body.len() - 1], 20),
        Some('G') => (&body[..body.len() - 1], 30),
        Some('T') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let v = parse_decimal(num.trim()).ok_or_else(|| {
        err(format!(
            "bad size {text:?}: expected bytes, a number with K/M/G/T, \"max\" or a percentage"
        ))
    })?;
    let bytes = v * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 / 2.0 {
        return Err(err(format!("size {text:?} is too large")));
    }
    if shift == 0 && num.contains('.') {
        return Err(err(format!("size {text:?}: bytes must be a whole number")));
    }
    Ok(Size::Bytes(bytes.round() as u64))
}

/// A non-negative decimal without sign, exponent or surrounding junk ("1.5", "10").
fn parse_decimal(s: &str) -> Option<f64> {
    if s.is_empty()
        || !s.chars().all(|c| c.is_ascii_digit() || c == '.')
        || s.starts_with('.')
        || s.ends_with('.')
        || s.matches('.').count() > 1
    {
        return None;
    }
    s.parse().ok()
}

impl Size {
    /// Resolves a percentage against the machine's memory; `Max` stays `Max`.
    pub fn resolve(self, mem_total: u64) -> Limit {
        self.resolve_with(|| mem_total)
    }

    /// Like [`Size::resolve`], asking `mem_total` for the machine's memory only when the size
    /// is a percentage of it.
    pub fn resolve_with(self, mem_total: impl FnOnce() -> u64) -> Limit {
        match self {
            Size::Bytes(n) => Limit::Bytes(n),
            Size::Max => Limit::Max,
            Size::Percent(p) => Limit::Bytes(((mem_total() as f64) * p / 100.0) as u64),
        }
    }
}

/// Parses "500ms", "10s", "5m", "4h", "1d", or combinations such as "1h30m". A bare number is
/// refused: a duration always names its unit.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let s = text.trim();
    let bad = || {
        err(format!(
            "bad duration {text:?}: expected e.g. \"500ms\", \"10s\", \"5m\", \"4h\""
        ))
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    if total > MAX_DURATION {
        return Err(err(format!(
            "duration {text:?} is longer than the most claude-cage accepts, {}d (10 years)",
            MAX_DURATION.as_secs() / 86_400
        )));
    }
    Ok(total)
}

/// The longest duration a policy or flag may give: ten years. Every deadline is a start time
/// plus one of these, which must stay far inside what the clock can hold; a limit meant as
/// "never" is left unset instead.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// A CPU bandwidth limit: a share of one CPU in percent, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMax {
    Percent(u32),
    Max,
}

/// The period written into `cpu.max`; 100 ms is the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;

impl CpuMax {
    /// The text for `cpu.max`: "$QUOTA $PERIOD" or "max $PERIOD".
    pub fn to_cgroup_value(self) -> String {
        match self {
            CpuMax::Max => format!("max {CPU_PERIOD_US}"),
            CpuMax::Percent(p) => format!("{} {CPU_PERIOD_US}", CPU_PERIOD_US * u64::from(p) / 100),
        }
    }
}

/// Parses "150%" (one and a half CPUs) or "max".
pub fn parse_cpu_max(text: &str) -> Result<CpuMax, UnitError> {
    let s = text.trim();
    if s.eq_ignore_ascii_case("max") {
        return Ok(CpuMax::Max);
    }
    let bad = || {
        err(format!(
            "bad cpu max {text:?}: expected a percentage of one CPU such as \"150%\", or \"max\""
        ))
    };
    let n: u32 = s
        .strip_suffix('%')
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    // The kernel refuses a quota under 1 ms (1% of the 100 ms period).
    if n == 0 || n > 100_000 {
        return Err(err(format!(
            "cpu max {text:?} must be between 1% and 100000%"
        )));
    }
    Ok(CpuMax::Percent(n))
}

/// A PSI trigger (Documentation/accounting/psi.rst): "some" or "full" stall of at least
/// `percent` of `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureTrigger {
    pub full: bool,
    pub percent: f64,
    pub window: Duration,
}

impl PressureTrigger {
    /// The text written into `memory.pressure`: `some <stall us> <window us>`.
    pub fn to_cgroup_value(self) -> String {
        let window_us = self.window.as_micros() as u64;
        let stall_us = (window_us as f64 * self.percent / 100.0) as u64;
        format!(
            "{} {stall_us} {window_us}",
            if self.full { "full" } else { "some" }
        )
    }
}

impl fmt::Display for PressureTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}% {}",
            if self.full { "full" } else { "some" },
            self.percent,
            Elapsed(self.window)
        )
    }
}

/// Parses "some 10% 2s" or "full 5% 1s". The kernel takes windows from 500ms to 10s; an
/// unprivileged user only windows that are a multiple of 2s.
pub fn parse_pressure(text: &str) -> Result<PressureTrigger, UnitError> {
    let bad = || {
        err(format!(
            "bad pressure trigger {text:?}: expected \"some|full PERCENT% WINDOW\", e.g. \"some 10% 2s\""
        ))
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [kind, pct, window] = parts[..] else {
        return Err(bad());
    };
    let full = match kind {
        "some" => false,
        "full" => true,
        _ => return Err(bad()),
    };
    let percent = pct
        .strip_suffix('%')
        .and_then(parse_decimal)
        .ok_or_else(bad)?;
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(err(format!(
            "pressure {pct} must be above 0% and at most 100%"
        )));
    }
    let window = parse_duration(window)?;
    if window < Duration::from_millis(500) || window > Duration::from_secs(10) {
        return Err(err(format!(
            "pressure window {} must be between 500ms and 10s (the kernel's range)",
            Elapsed(window)
        )));
    }
    Ok(PressureTrigger {
        full,
        percent,
        window,
    })
}

/// "1 process", "2 processes": a count with its noun.
pub fn count(n: usize, noun: &str) -> String {
    let plural = if noun.ends_with('s') {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    };
    format!("{n} {}", if n == 1 { noun } else { &plural })
}

/// Bytes for people: "512 B", "64.0 MiB", "4.0 GiB".
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", UNITS[unit])
    }
}

/// A duration for people: "850ms", "42s", "3m07s", "1h12m".
pub struct Elapsed(pub Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let s = self.0.as_secs();
        if ms < 1000 {
            write!(f, "{ms}ms")
        } else if s < 60 {
            write!(f, "{:.1}s", self.0.as_secs_f64())
        } else if s < 3600 {
            write!(f, "{}m{:02}s", s / 60, s % 60)
        } else {
            write!(f, "{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

/// The inputs of the fuzz target NAME's corpus (fuzz/corpus/NAME) that are UTF-8, the only
/// ones the targets parse, for the tests that replay them; panics when the corpus is missing
/// or empty.
#[cfg(test)]
pub(crate) fn fuzz_corpus(name: &str) -> Vec<(std::path::PathBuf, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {}: {e}", dir.display()));
    let mut seen = 0;
    let mut texts = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        seen += 1;
        if let Ok(text) = String::from_utf8(data) {
            texts.push((path, text));
        }
    }
    assert!(seen > 0, "the fuzz corpus {} is empty", dir.display());
    texts
}

#[cfg(test)]
mod tests;
