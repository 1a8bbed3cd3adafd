//! The machine channel: the event enum and its JSON-lines writer. One object per line, appended
//! and flushed as it happens, so a log shipper or a Python bot can follow the file. Human
//! messages go to stderr and never here. The schema is documented in `docs/events.md`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cgroup::snapshot::Snapshot;

use crate::cgroup::Applied;
use crate::trust::{Dir, Writers};
use crate::units::Limit;

/// Why a cage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The child exited by itself.
    Exited,
    /// The child was killed by a signal (not an OOM kill).
    Signaled,
    /// The child died of SIGKILL and the cage's `oom_kill` counter rose.
    OomKilled,
    /// `max-runtime` ran out.
    Timeout,
    /// stdin was closed by every writer and the child outlived `stdin-eof-grace`.
    StdinClosed,
    /// The process that started claude-cage died (`parent-death = "kill"`).
    ParentDied,
    /// claude-cage received SIGTERM, SIGINT or SIGHUP.
    Terminated,
    /// An operator killed the cage (`claude-cage kill`).
    Killed,
    /// The cage's CPU use stayed below `idle-cpu` for `idle-timeout`.
    Idle,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Exited => "exited",
            Reason::Signaled => "signaled",
            Reason::OomKilled => "oom-killed",
            Reason::Timeout => "timeout",
            Reason::StdinClosed => "stdin-closed",
            Reason::ParentDied => "parent-died",
            Reason::Terminated => "terminated",
            Reason::Killed => "killed",
            Reason::Idle => "idle",
        }
    }
}

/// The effective limits of a cage, in bytes and counts; `null` where unset or not applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Limits {
    pub memory_high: Option<u64>,
    pub memory_max: Option<u64>,
    pub swap_max: Option<u64>,
    pub oom_group: Option<bool>,
    pub pids_max: Option<u64>,
    pub cpu_max: Option<String>,
    pub cpu_weight: Option<u32>,
    pub bot_memory_high: Option<u64>,
    pub bot_memory_max: Option<u64>,
    pub bot_pids_max: Option<u64>,
}

impl Limits {
    /// The limits of the cage at `dir` as its files say now; `null` where a file is missing or
    /// says `max`. The bot's are its parent's. A systemd scope's pids.max allows for its holder:
    /// the cage's is one less.
    pub fn read(dir: &Path) -> Limits {
        use crate::cgroup::fs;
        let num = fs::read_number;
        let bot = dir.parent().unwrap_or(dir);
        let holder = crate::cgroup::id::holders(dir);
        Limits {
            memory_high: num(dir, fs::MEMORY_HIGH),
            memory_max: num(dir, fs::MEMORY_MAX),
            swap_max: num(dir, fs::MEMORY_SWAP_MAX),
            oom_group: num(dir, fs::MEMORY_OOM_GROUP).map(|v| v == 1),
            pids_max: num(dir, fs::PIDS_MAX).map(|n| n.saturating_sub(holder)),
            cpu_max: fs::read_optional(dir, fs::CPU_MAX)
                .ok()
                .flatten()
                .map(|t| t.trim().to_owned()),
            cpu_weight: num(dir, fs::CPU_WEIGHT).map(|w| w as u32),
            bot_memory_high: num(bot, fs::MEMORY_HIGH),
            bot_memory_max: num(bot, fs::MEMORY_MAX),
            bot_pids_max: num(bot, fs::PIDS_MAX),
        }
    }
}

impl From<&Applied> for Limits {
    fn from(a: &Applied) -> Self {
        // "max" (no limit) is written as null, like an unset limit: both mean unlimited.
        let n = |l: Option<Limit>| l.and_then(Limit::bytes);
        Limits {
            memory_high: n(a.memory_high),
            memory_max: n(a.memory_max),
            swap_max: n(a.swap_max),
            oom_group: a.oom_group,
            pids_max: n(a.pids_max),
            cpu_max: a.cpu_max.clone(),
            cpu_weight: a.cpu_weight,
            bot_memory_high: n(a.bot_memory_high),
            bot_memory_max: n(a.bot_memory_max),
            bot_pids_max: n(a.bot_pids_max),
        }
    }
}

/// What the `exit` event reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExitRecord {
    pub reason: Reason,
    /// claude-cage's own exit status.
    pub status: i32,
    /// The signal that killed the child, if one did.
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub memory_peak: Option<u64>,
    pub oom_kills: u64,
    /// Which memory limit the OOM killer enforced, when it killed in the cage.
    pub oom_limit: Option<OomLimit>,
    /// Processes still in the cage when the child ended; claude-cage killed them.
    pub leftover: usize,
    /// For an `oom-killed` end, the last snapshot taken before the kill (who ate the memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

impl OomLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            OomLimit::Cage => "cage",
            OomLimit::Bot => "bot",
            OomLimit::Outside => "outside",
        }
    }
}

/// The memory limit behind an OOM kill in a cage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OomLimit {
    /// The cage's own `memory.max`.
    Cage,
    /// The bot's aggregate `memory.max` over all its cages.
    Bot,
    /// Neither: the host or a cgroup above the bot ran out of memory.
    Outside,
}

/// One cage's memory use, in a `bot-memory-warn` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CageMemory {
    pub cage: String,
    pub memory_current: u64,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "event",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Event {
    Start {
        pid: i32,
        cgroup: String,
        program: String,
        argv: Vec<String>,
        limits: Limits,
    },
    /// The cage began to be throttled above memory.high.
    MemoryHigh {
        count: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
    },
    /// The cage's usage reached memory.max (`memory.events max` rose): reclaim runs, and an OOM
    /// kill follows if it fails. Once per rise seen, with a snapshot at most once a second.
    MemoryMax {
        count: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
    },
    /// A process in the cage was killed by the OOM killer.
    OomKill {
        oom_kills: u64,
    },
    /// pids.max refused a fork.
    PidsMax {
        count: u64,
    },
    /// Memory use crossed `[alerts] memory-warn`.
    MemoryWarn {
        memory_current: u64,
        threshold: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
    },
    /// The bot's memory use (all its cages together) crossed `[bot] memory-warn`: written once
    /// per crossing for the whole bot, by the supervisor of one of its cages.
    BotMemoryWarn {
        bot_memory_current: u64,
        threshold: u64,
        /// The bot's largest cages by memory use, at most five.
        cages: Vec<CageMemory>,
    },
    /// The cage's memory pressure crossed `[alerts] pressure`.
    Pressure {
        trigger: String,
        some_avg10: Option<f64>,
        full_avg10: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
    },
    /// `claude-cage set` changed the cage's limits: as they now are.
    LimitsChanged {
        limits: Limits,
    },
    Exit(ExitRecord),
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    cage: &'a str,
    bot: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

enum Sink {
    Stderr,
    File(File),
}

/// Appends events to a file (or stderr) as JSON lines.
pub struct EventLog {
    sink: Option<Sink>,
    cage: String,
    bot: String,
    failed: bool,
}

impl EventLog {
    /// Opens `target` for appending ("-" is stderr; `None` writes nothing). A missing directory
    /// is created. claude-cage may run as root: the file is opened through its directory's
    /// handle (`trust`), so it is refused when it is a symbolic link or not a regular file (a
    /// FIFO would block the run), or when it or any directory on its way can be written by a
    /// user other than root and the one claude-cage runs as (who could swap it for a link).
    pub fn open(target: Option<&str>) -> std::io::Result<EventLog> {
        let sink = match target {
            None => None,
            Some("-") => Some(Sink::Stderr),
            Some(path) => Some(Sink::File(open_file(Path::new(path))?)),
        };
        Ok(EventLog {
            sink,
            cage: String::new(),
            bot: String::new(),
            failed: false,
        })
    }

    /// Names the cage and bot that every following line carries.
    pub fn set_cage(&mut self, cage: &str, bot: &str) {
        self.cage = cage.to_owned();
        self.bot = bot.to_owned();
    }

    /// Writes one event as one line with a single write, so concurrent writers to the same
    /// file (O_APPEND) never interleave within a line. A failing log is reported once on stderr
    /// and never affects the cage. Returns the line, which the alert hook receives.
    pub fn emit(&mut self, event: &Event) -> Vec<u8> {
        let line = Line {
            ts: rfc3339(SystemTime::now()),
            cage: &self.cage,
            bot: &self.bot,
            event,
        };
        let mut buf = serde_json::to_vec(&line).expect("events serialise");
        buf.push(b'\n');
        let result = match &mut self.sink {
            None => Ok(()),
            Some(Sink::Stderr) => std::io::stderr().lock().write_all(&buf),
            Some(Sink::File(f)) => f.write_all(&buf),
        };
        if let Err(e) = result {
            if !self.failed {
                self.failed = true;
                crate::warning!("failed to write the events file: {e}");
            }
        }
        buf
    }
}

/// Opens the events file `path` for appending, through its directory's handle.
fn open_file(path: &Path) -> std::io::Result<File> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    };
    let me = nix::unistd::Uid::effective().as_raw();
    let dir = Dir::open(
        dir,
        Writers {
            owners: &[me],
            last: None,
        },
        Some(0o755),
    )?;
    dir.append(Path::new(name), 0o640)
}

/// Formats a time as RFC 3339 in UTC with milliseconds: "2026-11-22T04:05:06.123Z".
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_320_306)),
            "2026-11-22T04:05:06.000Z"
        );
    }

    fn line(event: &Event) -> serde_json::Value {
        let l = Line {
            ts: "T".into(),
            cage: "bot-1-1",
            bot: "bot",
            event,
        };
        serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap()
    }

    #[test]
    fn exit_event_shape() {
        let v = line(&Event::Exit(ExitRecord {
            reason: Reason::OomKilled,
            status: 137,
            signal: Some(9),
            duration_ms: 1500,
            memory_peak: Some(52_428_800),
            oom_kills: 1,
            oom_limit: Some(OomLimit::Cage),
            leftover: 2,
            snapshot: None,
        }));
        assert_eq!(
            v,
            serde_json::json!({"ts": "T", "cage": "bot-1-1", "bot": "bot", "event": "exit",
                "reason": "oom-killed", "status": 137, "signal": 9, "duration-ms": 1500,
                "memory-peak": 52428800, "oom-kills": 1, "oom-limit": "cage", "leftover": 2})
        );
    }

    #[test]
    fn other_events_shape() {
        assert_eq!(
            line(&Event::MemoryHigh {
                count: 3,
                snapshot: None
            })["event"],
            "memory-high"
        );
        assert_eq!(line(&Event::OomKill { oom_kills: 2 })["oom-kills"], 2);
        assert_eq!(line(&Event::PidsMax { count: 1 })["event"], "pids-max");
        let start = line(&Event::Start {
            pid: 42,
            cgroup: "/sys/fs/cgroup/bot/bot-1-1".into(),
            program: "/bin/true".into(),
            argv: vec!["true".into()],
            limits: Limits {
                memory_max: Some(1024),
                ..Default::default()
            },
        });
        assert_eq!(start["event"], "start");
        assert_eq!(start["limits"]["memory-max"], 1024);
        assert!(start["limits"]["memory-high"].is_null());
        assert_eq!(start["argv"][0], "true");
    }

    #[test]
    fn reasons_serialise_as_documented() {
        for (r, s) in [
            (Reason::Exited, "exited"),
            (Reason::Signaled, "signaled"),
            (Reason::OomKilled, "oom-killed"),
            (Reason::Timeout, "timeout"),
            (Reason::StdinClosed, "stdin-closed"),
            (Reason::ParentDied, "parent-died"),
            (Reason::Terminated, "terminated"),
            (Reason::Killed, "killed"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), s);
            assert_eq!(r.as_str(), s);
        }
    }

    #[test]
    fn file_sink_appends_lines() {
        let path =
            std::env::temp_dir().join(format!("claude-cage-ev-{}/e.jsonl", std::process::id()));
        let mut log = EventLog::open(Some(path.to_str().unwrap())).unwrap();
        log.set_cage("c", "b");
        log.emit(&Event::MemoryHigh {
            count: 1,
            snapshot: None,
        });
        log.emit(&Event::PidsMax { count: 2 });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
