//! Who ate the memory: a snapshot of a cage's largest processes by resident memory and the main
//! lines of its `memory.stat`, taken when the cage nears or hits its limits (the first
//! `memory.high` crossing, `memory-warn`, a `pressure` trigger, `memory.events max` rising just
//! before an OOM kill) and at most once a second. Reads `/proc/<pid>/status` and `cmdline` of
//! each process in the cage (its nested cgroups included); `docs/benchmarks.md` has its cost.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::fs;

/// How many processes a snapshot names.
pub const TOP: usize = 5;

/// The start of a process's command line that a snapshot keeps.
const COMMAND_CHARS: usize = 60;

/// The `memory.stat` keys a snapshot keeps.
const STAT_KEYS: [&str; 5] = ["anon", "file", "kernel", "shmem", "sock"];

/// One process of a snapshot; sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProcMem {
    pub pid: i32,
    pub comm: String,
    /// The start of its command line.
    pub command: String,
    pub rss: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
}

/// A cage's memory, by process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// The largest processes by resident memory, largest first.
    pub top: Vec<ProcMem>,
    /// How many processes the cage held.
    pub processes: usize,
    /// `anon`, `file`, `kernel`, `shmem` and `sock` of the cage's `memory.stat`, in bytes.
    pub memory_stat: BTreeMap<String, u64>,
}

impl Snapshot {
    /// The largest processes in words, for the end's line: "alloc 130.0 MiB (pid 4711, alloc
    /// 200), sh 1.1 MiB".
    pub fn largest(&self) -> Option<String> {
        let first = self.top.first()?;
        let mut out = format!(
            "{} {} (pid {}, {})",
            first.comm,
            crate::units::Bytes(first.rss),
            first.pid,
            first.command
        );
        if let Some(second) = self.top.get(1) {
            out.push_str(&format!(
                ", {} {}",
                second.comm,
                crate::units::Bytes(second.rss)
            ));
        }
        Some(crate::error::printable(&out))
    }
}

/// The `kB` value of `key:` in a `/proc/<pid>/status` text, in bytes.
fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Whether a `/proc/<pid>/status` text shows SIGKILL pending (the OOM killer's, or the
/// cage's): its memory is being freed, and what it shows is no longer what it held.
fn being_killed(text: &str) -> bool {
    const SIGKILL_BIT: u64 = 1 << (9 - 1);
    ["SigPnd:", "ShdPnd:"].iter().any(|key| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    })
}

/// One process's memory, or `None` if it is gone, being killed, or a kernel thread (with no
/// memory).
fn proc_mem(pid: i32) -> Option<ProcMem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    if being_killed(&status) {
        return None;
    }
    let rss = status_kb(&status, "VmRSS")?;
    let comm = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(COMMAND_CHARS)
        .collect();
    Some(ProcMem {
        pid,
        comm,
        command,
        rss,
        rss_anon: status_kb(&status, "RssAnon").unwrap_or(0),
        rss_file: status_kb(&status, "RssFile").unwrap_or(0),
    })
}

/// Takes a snapshot of the cage at `dir`.
pub fn take(dir: &Path) -> Snapshot {
    let mut pids = Vec::new();
    // A scope's holder process is claude-cage's, not the cage's.
    for d in fs::member_dirs(dir) {
        if let Ok(t) = fs::read(&d, fs::PROCS) {
            pids.extend(fs::pids(&t));
        }
    }
    let processes = pids.len();
    let mut procs: Vec<ProcMem> = pids.into_iter().filter_map(proc_mem).collect();
    procs.sort_by(|a, b| b.rss.cmp(&a.rss).then(a.pid.cmp(&b.pid)));
    procs.truncate(TOP);
    let stat = fs::read_optional(dir, fs::MEMORY_STAT)
        .ok()
        .flatten()
        .unwrap_or_default();
    let memory_stat = STAT_KEYS
        .iter()
        .filter_map(|k| fs::keyed(&stat, k).map(|v| (k.to_string(), v)))
        .collect();
    Snapshot {
        top: procs,
        processes,
        memory_stat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_sigkill_pending_is_being_killed() {
        assert!(being_killed(
            "SigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n"
        ));
        assert!(being_killed(
            "SigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\n"
        ));
        // SIGTERM (bit 15) pending is not a kill in progress.
        assert!(!being_killed(
            "SigPnd:\t0000000000004000\nShdPnd:\t0000000000000000\n"
        ));
    }

    #[test]
    fn status_sizes_are_read_in_bytes() {
        let s = "Name:\talloc\nVmRSS:\t  204800 kB\nRssAnon:\t  204000 kB\nRssFile:\t     800 kB\n";
        assert_eq!(status_kb(s, "VmRSS"), Some(204800 * 1024));
        assert_eq!(status_kb(s, "RssFile"), Some(800 * 1024));
        assert_eq!(status_kb(s, "RssShmem"), None);
    }

    /// This test process, in a snapshot of its own: it is named with its memory.
    #[test]
    fn a_process_is_named_with_its_memory_and_the_largest_first() {
        let me = proc_mem(std::process::id() as i32).expect("this process");
        assert!(me.rss > 0 && me.rss >= me.rss_anon, "{me:?}");
        assert!(!me.comm.is_empty() && !me.command.is_empty(), "{me:?}");
        let s = Snapshot {
            top: vec![
                ProcMem {
                    pid: 4711,
                    comm: "node".into(),
                    command: "node build.js".into(),
                    rss: 3 << 30,
                    rss_anon: 3 << 30,
                    rss_file: 0,
                },
                ProcMem {
                    pid: 4700,
                    comm: "claude".into(),
                    command: "claude -p".into(),
                    rss: 1 << 30,
                    rss_anon: 1 << 30,
                    rss_file: 0,
                },
            ],
            processes: 2,
            memory_stat: BTreeMap::new(),
        };
        assert_eq!(
            s.largest().as_deref(),
            Some("node 3.0 GiB (pid 4711, node build.js), claude 1.0 GiB")
        );
    }
}
