//! Per-bot counters that outlive the cages: how many cages of each bot ended, by reason, and
//! how many OOM kills they saw. A cage's own counters vanish with its cgroup, so a metrics scrape
//! a minute apart would almost never see an OOM kill; these stay until the machine restarts
//! (the state directory is in `/run`), as Prometheus counters may.
//!
//! One file per bot, `<bot>.tally` in the user's state directory, opened through its handle
//! (`trust`) and rewritten in place under an exclusive `flock(2)` at every end, so that
//! concurrent ends of one bot never lose a count; readers take a shared lock.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::FlockArg;
use serde::{Deserialize, Serialize};

use crate::state::open_own;
use crate::trust::{Dir, lock};

/// The largest tally file read (a few dozen counters fit in a fraction of it).
const MAX_TALLY: u64 = 64 << 10;

/// The counters of one bot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Tally {
    /// Ended cages by the `exit` event's reason.
    pub ends: BTreeMap<String, u64>,
    /// OOM kills in the bot's cages (the `exit` events' `oom-kills`, summed).
    pub oom_kills: u64,
    /// Cages that ended with an OOM kill, by the limit behind it (`cage`, `bot`, `outside`).
    pub oom_limits: BTreeMap<String, u64>,
    /// `bot-memory-warn` events written (crossings of `[bot] memory-warn`).
    #[serde(default)]
    pub memory_warns: u64,
    /// Whether the bot was warned since its memory use was last below 90% of the threshold:
    /// one `bot-memory-warn` per crossing among all the bot's supervisors.
    #[serde(default)]
    pub memory_warned: bool,
}

fn me() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

fn file_name(bot: &str) -> PathBuf {
    PathBuf::from(format!("{bot}.tally"))
}

fn read(f: &mut File) -> io::Result<Tally> {
    // Room for a usual tally, so that it is read in one call.
    let mut buf = Vec::with_capacity(4096);
    f.seek(SeekFrom::Start(0))?;
    f.take(MAX_TALLY + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_TALLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than 64 KiB",
        ));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(Tally::default());
    }
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Changes the tally of `bot` under its lock: `change` returns what to answer and whether the
/// tally changed (else nothing is written).
fn update<R>(bot: &str, change: impl FnOnce(&mut Tally) -> (R, bool)) -> io::Result<R> {
    let mut f = lock(
        open_own(true)?.open_rw(&file_name(bot), 0o600)?,
        FlockArg::LockExclusive,
    )?;
    // A file that does not parse (cut short by a crash mid-write) starts again from zero
    // rather than stopping the count for good.
    let got = read(&mut f);
    // Where a whole read stopped is the old text's length; after a failed one, cut always.
    let old_len = match got {
        Ok(_) => f.stream_position()?,
        Err(_) => u64::MAX,
    };
    let mut t = got.unwrap_or_default();
    let (answer, changed) = change(&mut t);
    if changed {
        let mut bytes = serde_json::to_vec(&t).map_err(io::Error::other)?;
        bytes.push(b'\n');
        // Written over the old text, and cut only when shorter: counters only grow, so the
        // file is rarely cut, a crash mid-update mostly leaves a whole text (new or old), and
        // where /run is not a tmpfs the file keeps its block rather than freeing it to allocate
        // it again.
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&bytes)?;
        if (bytes.len() as u64) < old_len {
            f.set_len(bytes.len() as u64)?;
        }
    }
    Ok(answer)
}

/// Counts one end of a cage of `bot`.
pub fn add(bot: &str, reason: &str, oom_kills: u64, oom_limit: Option<&str>) -> io::Result<()> {
    update(bot, |t| {
        *t.ends.entry(reason.to_owned()).or_default() += 1;
        t.oom_kills += oom_kills;
        if let Some(l) = oom_limit {
            *t.oom_limits.entry(l.to_owned()).or_default() += 1;
        }
        ((), true)
    })
}

/// The bot-wide `[bot] memory-warn` state, shared by the supervisors of the bot's cages.
/// `crossed`: usage is at or above the threshold; true when this caller is the one to warn (no
/// one did since usage was last well below it), and the warning is counted. Not crossed: usage
/// fell well below the threshold, and the next crossing warns again.
pub fn bot_memory_warn(bot: &str, crossed: bool) -> io::Result<bool> {
    update(bot, |t| {
        if t.memory_warned == crossed {
            return (false, false);
        }
        t.memory_warned = crossed;
        if crossed {
            t.memory_warns += 1;
        }
        (crossed, true)
    })
}

/// The tallies this user may read, keyed by (user, bot): its own and, for root, each user's
/// (from the state directories `state::readable_dirs` trusts). A user's tally is that user's
/// word about that user's runs: it is labelled with the user, never added to another's. An
/// unreadable one is left out with a warning.
pub fn all() -> BTreeMap<(String, String), Tally> {
    let mut out = BTreeMap::new();
    for sd in crate::state::readable_dirs() {
        let uid = match sd.origin {
            crate::state::Origin::Own => me(),
            crate::state::Origin::User(u) => u,
        };
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        for (bot, t) in of_dir(sd.handle()) {
            out.insert((user.clone(), bot), t);
        }
    }
    out
}

/// The tallies of one opened state directory, by bot.
fn of_dir(d: &Dir) -> BTreeMap<String, Tally> {
    let mut out = BTreeMap::new();
    for name in d.names().unwrap_or_default() {
        let Some(bot) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".tally"))
            .filter(|b| crate::policy::check_name(b).is_ok())
        else {
            continue;
        };
        let got = d
            .open_ro(Path::new(&name))
            .and_then(|f| lock(f, FlockArg::LockShared))
            .and_then(|mut f| read(&mut f));
        match got {
            Ok(t) => {
                out.insert(bot.to_owned(), t);
            }
            Err(e) => crate::warning!(
                "ignored the tally file {}: {e}",
                d.path().join(&name).display()
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent ends of one bot never lose a count: 8 threads, 50 ends each, through the
    /// same file.
    #[test]
    fn concurrent_ends_are_all_counted() {
        let bot = format!("t-tally-{}", std::process::id());
        let path = crate::state::own_dir().join(file_name(&bot));
        let _ = std::fs::remove_file(&path);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let bot = bot.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let (reason, limit) = if i % 2 == 0 {
                            ("oom-killed", Some("cage"))
                        } else {
                            ("exited", None)
                        };
                        add(&bot, reason, u64::from(limit.is_some()), limit).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = of_dir(&open_own(false).unwrap())
            .remove(&bot)
            .expect("the bot's tally");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(t.ends.get("oom-killed"), Some(&200));
        assert_eq!(t.ends.get("exited"), Some(&200));
        assert_eq!(t.oom_kills, 200);
        assert_eq!(t.oom_limits.get("cage"), Some(&200));
    }

    /// A tally is written over the old text and cut when the new one is shorter: after a text
    /// that does not parse (a crash mid-write) and after a change that shortens the text
    /// (`"memory-warned":false` to `true`), the file holds exactly the new text.
    #[test]
    fn a_shorter_text_is_cut_to_length() {
        let bot = format!("t-tally-cut-{}", std::process::id());
        let path = crate::state::own_dir().join(file_name(&bot));
        let _ = std::fs::remove_file(&path);
        open_own(true).unwrap();
        std::fs::write(
            &path,
            format!("{{\"ends\":{{\"exited\":7{}", " ".repeat(300)),
        )
        .unwrap();
        add(&bot, "exited", 0, None).unwrap();
        let after_garbage = std::fs::read_to_string(&path).unwrap();
        assert!(bot_memory_warn(&bot, true).unwrap());
        let after_warn = std::fs::read_to_string(&path).unwrap();
        // And a longer text again: written whole over the shorter one.
        assert!(!bot_memory_warn(&bot, false).unwrap());
        let after_clear = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let parse = |s: &str| serde_json::from_str::<Tally>(s).unwrap();
        assert!(after_garbage.len() < 300, "not cut: {after_garbage:?}");
        assert_eq!(parse(&after_garbage).ends.get("exited"), Some(&1));
        assert!(after_warn.len() < after_garbage.len(), "{after_warn:?}");
        assert!(
            after_warn.ends_with("\"memory-warned\":true}\n"),
            "{after_warn:?}"
        );
        assert_eq!(parse(&after_warn).memory_warns, 1);
        assert!(
            after_clear.ends_with("\"memory-warned\":false}\n"),
            "{after_clear:?}"
        );
        assert_eq!(parse(&after_clear).ends.get("exited"), Some(&1));
    }
}
