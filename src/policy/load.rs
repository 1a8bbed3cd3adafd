//! Reading a policy file or the built-in default, and parsing it into a validated [`Policy`].

use std::cell::Cell;
use std::path::Path;

use super::schema::RawPolicy;
use super::validate::Validator;
use super::{DEFAULT_POLICY, DEFAULT_SOURCE, Overrides, Policy, PolicyError};

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
        // toml names no key in a value's error ("invalid type: string \"100\", expected
        // i64"): the key is read back from the text at the error's place.
        key: e.span().and_then(|s| key_at(text, s.start)),
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
pub(super) struct MemTotal<'a> {
    read: &'a dyn Fn() -> u64,
    value: Cell<Option<u64>>,
}

impl MemTotal<'_> {
    pub(super) fn get(&self) -> u64 {
        if let Some(v) = self.value.get() {
            return v;
        }
        let v = (self.read)();
        self.value.set(Some(v));
        v
    }
}

/// The 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key (`cpu.weight`) whose `key = value` line holds byte `offset` of a policy's
/// text, under the table header above it; `None` where that line is no `key = value` line (a
/// table header, a syntax error, a value continued over several lines).
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[start..end];
    let (key, _) = line.split_once('=')?;
    let key = dotted(key)?;
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(|h| dotted(h.trim_start_matches('[').split(']').next()?));
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key,
    })
}

/// A TOML key (bare, quoted or dotted) with its parts joined by dots; `None` if it is not one.
fn dotted(key: &str) -> Option<String> {
    let parts: Vec<&str> = key
        .split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\''))
        .collect();
    let bare = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    parts.iter().all(|p| bare(p)).then(|| parts.join("."))
}
