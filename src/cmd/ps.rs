//! `claude-cage ps [--json | --format prometheus] [--name BOT]`: one row per live cage, from the
//! cgroup tree and the state files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cgroup::fs;
pub use crate::cli::Format;
use crate::registry::Found;
use crate::units::Bytes;

/// What `ps` shows of one cage; `--json` prints these with full values.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Row {
    pub cage: String,
    pub bot: String,
    pub state: &'static str,
    pub pid: Option<i32>,
    pub age_seconds: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_max: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<u64>,
    /// `memory.events high`: times the cage was throttled; `None` without the memory
    /// controller (no `memory.events`).
    pub throttled: Option<u64>,
    pub oom_kills: Option<u64>,
    pub command: Vec<String>,
    pub cgroup: String,
    pub supervisor_pid: Option<i32>,
    pub policy: Option<String>,
    /// Whether a state file describes this cage.
    pub state_file: bool,
    /// The bot's `[bot] max-cages`, from the state file.
    pub bot_max_cages: Option<u32>,
}

/// Reads one cage's row.
pub fn row(f: &Found, now_ms: u64) -> Row {
    let mem = fs::read_optional(&f.dir, fs::MEMORY_EVENTS).ok().flatten();
    let held = (f.dir.file_name().is_some_and(crate::cgroup::id::is_scope))
        .then(|| fs::read_number(&f.dir.join(fs::HOLD), fs::PIDS_CURRENT))
        .flatten();
    let pid = f.record.as_ref().map(|r| r.child_pid).or_else(|| {
        fs::read(&f.dir.join(fs::MAIN), fs::PROCS)
            .ok()
            .and_then(|t| fs::pids(&t).first().copied())
    });
    Row {
        cage: f.id.clone(),
        bot: f.bot.clone(),
        state: f.state.as_str(),
        pid,
        age_seconds: f
            .record
            .as_ref()
            .map(|r| now_ms.saturating_sub(r.started_ms) / 1000),
        memory_current: fs::read_number(&f.dir, fs::MEMORY_CURRENT),
        memory_max: fs::read_number(&f.dir, fs::MEMORY_MAX),
        memory_peak: fs::read_number(&f.dir, fs::MEMORY_PEAK),
        // A scope's tasks include its holder, and its TasksMax= allows for it.
        pids_current: fs::read_number(&f.dir, fs::PIDS_CURRENT)
            .map(|n| n.saturating_sub(held.unwrap_or(0))),
        pids_max: fs::read_number(&f.dir, fs::PIDS_MAX)
            .map(|n| n.saturating_sub(u64::from(held.is_some()))),
        throttled: mem.as_deref().and_then(|m| fs::keyed(m, "high")),
        oom_kills: mem.as_deref().and_then(|m| fs::keyed(m, "oom_kill")),
        command: f
            .record
            .as_ref()
            .map(|r| r.argv.clone())
            .unwrap_or_default(),
        cgroup: f.dir.display().to_string(),
        supervisor_pid: f.record.as_ref().map(|r| r.supervisor_pid),
        policy: f.record.as_ref().map(|r| r.policy.clone()),
        state_file: f.record.is_some(),
        bot_max_cages: f.record.as_ref().and_then(|r| r.max_cages),
    }
}

/// The `ps` command.
pub fn ps(format: Format, name: Option<&str>) -> i32 {
    let survey = match super::survey() {
        Ok(s) => s,
        Err(status) => return status,
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let rows: Vec<Row> = survey
        .cages
        .iter()
        .filter(|f| name.is_none_or(|n| f.bot == n))
        .map(|f| row(f, now_ms))
        .collect();
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&rows).expect("rows serialise") + "\n",
        Format::Table => table(&rows),
        Format::Prometheus => {
            let mut tallies = crate::tally::all();
            tallies.retain(|(_, b), _| name.is_none_or(|n| b == n));
            prometheus(&rows, &tallies, &bot_usage(&rows))
        }
    };
    print!("{text}");
    if format == Format::Table {
        for p in &survey.stale {
            crate::warning!(
                "stale state file {p} (its cage is gone; `claude-cage reap` removes it)"
            );
        }
        super::report_untrusted(&survey);
    }
    0
}

/// `ps --top CAGE`: a snapshot of who holds the cage's memory, now.
pub fn top(cage: &str, json: bool) -> i32 {
    let survey = match super::survey() {
        Ok(s) => s,
        Err(status) => return status,
    };
    let Some(found) = survey.cages.iter().find(|f| f.id == cage) else {
        crate::error!("no such cage: {}", crate::error::printable(cage));
        return crate::exit::COMMAND_FAILED;
    };
    let s = crate::cgroup::snapshot::take(&found.dir);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("a snapshot serialises")
        );
        return 0;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<16}  {:>10}  {:>10}  {:>10}  COMMAND",
        "PID", "COMM", "RSS", "ANON", "FILE"
    );
    for p in &s.top {
        let _ = writeln!(
            out,
            "{:>8}  {:<16}  {:>10}  {:>10}  {:>10}  {}",
            p.pid,
            crate::error::printable(&p.comm),
            Bytes(p.rss).to_string(),
            Bytes(p.rss_anon).to_string(),
            Bytes(p.rss_file).to_string(),
            crate::error::printable(&p.command)
        );
    }
    let stat: Vec<String> = s
        .memory_stat
        .iter()
        .map(|(k, v)| format!("{k} {}", Bytes(*v)))
        .collect();
    let _ = writeln!(
        out,
        "{} of {} processes; memory.stat: {}",
        s.top.len(),
        s.processes,
        if stat.is_empty() {
            "-".to_owned()
        } else {
            stat.join(", ")
        }
    );
    print!("{out}");
    0
}

/// An age in whole seconds: "42s", "3m07s", "1h12m".
fn age(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn size(v: Option<u64>) -> String {
    v.map(|b| Bytes(b).to_string())
        .unwrap_or_else(|| "-".into())
}

/// The human table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let header = [
        "CAGE",
        "BOT",
        "PID",
        "AGE",
        "MEMORY",
        "PEAK",
        "PIDS",
        "THROTTLED",
        "OOM",
        "STATE",
        "COMMAND",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let mut command = crate::error::printable(&r.command.join(" "));
        if command.chars().count() > 40 {
            command = command.chars().take(39).collect::<String>() + "…";
        }
        cells.push(vec![
            r.cage.clone(),
            match r.bot_max_cages {
                Some(cap) => format!("{} (max {cap})", r.bot),
                None => r.bot.clone(),
            },
            r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.age_seconds.map(age).unwrap_or_else(|| "-".into()),
            format!(
                "{} / {}",
                size(r.memory_current),
                r.memory_max
                    .map(|m| Bytes(m).to_string())
                    .unwrap_or_else(|| "max".into())
            ),
            size(r.memory_peak),
            format!(
                "{} / {}",
                r.pids_current
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.pids_max
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "max".into())
            ),
            r.throttled.map_or("-".to_owned(), |n| n.to_string()),
            r.oom_kills.map_or("-".to_owned(), |n| n.to_string()),
            r.state.to_owned(),
            command,
        ]);
    }
    // Every cell may hold text another user chose (a cage's name, a recorded command).
    for row in &mut cells {
        for c in row.iter_mut() {
            *c = crate::error::printable(c);
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for c in &cells {
        let line: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// What a bot's own cgroup (the cgroupfs backend's `<parent>/<bot>`, the parent of its cages)
/// holds and allows, read while it has cages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotUsage {
    pub memory_current: Option<u64>,
    pub memory_max: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<u64>,
}

/// The bot cgroups of the rows' cages: a cgroupfs cage's parent, or a systemd scope's when that
/// is the bot's own slice (not a slice every bot shares).
pub fn bot_usage(rows: &[Row]) -> BTreeMap<String, BotUsage> {
    let mut out = BTreeMap::new();
    for r in rows {
        let cage = std::path::Path::new(&r.cgroup);
        let Some(dir) = cage.parent() else { continue };
        let scope = cage.file_name().is_none_or(crate::cgroup::id::is_scope);
        let own_slice = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| crate::cgroup::id::is_bot_slice(n, &r.bot));
        if out.contains_key(&r.bot) || (scope && !own_slice) {
            continue;
        }
        out.insert(
            r.bot.clone(),
            BotUsage {
                memory_current: fs::read_number(dir, fs::MEMORY_CURRENT),
                memory_max: fs::read_number(dir, fs::MEMORY_MAX),
                pids_current: fs::read_number(dir, fs::PIDS_CURRENT),
                pids_max: fs::read_number(dir, fs::PIDS_MAX),
            },
        );
    }
    out
}

/// Prometheus text exposition format, for node_exporter's textfile collector: per cage, the live
/// gauges; per bot, the counters of ended cages that outlive them (`tally`) and its cgroup's
/// usage and limits.
pub fn prometheus(
    rows: &[Row],
    tallies: &BTreeMap<(String, String), crate::tally::Tally>,
    usage: &BTreeMap<String, BotUsage>,
) -> String {
    let mut out = String::new();
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    type Metric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&Row) -> Option<u64>,
    );
    let metrics: [Metric; 8] = [
        (
            "claude_cage_memory_current_bytes",
            "gauge",
            "Memory in use by the cage.",
            |r| r.memory_current,
        ),
        (
            "claude_cage_memory_max_bytes",
            "gauge",
            "The cage's memory.max (absent when unlimited).",
            |r| r.memory_max,
        ),
        (
            "claude_cage_memory_peak_bytes",
            "gauge",
            "The cage's memory.peak.",
            |r| r.memory_peak,
        ),
        (
            "claude_cage_pids_current",
            "gauge",
            "Processes and threads in the cage.",
            |r| r.pids_current,
        ),
        (
            "claude_cage_pids_max",
            "gauge",
            "The cage's pids.max (absent when unlimited).",
            |r| r.pids_max,
        ),
        (
            "claude_cage_memory_high_events_total",
            "counter",
            "Times the cage was throttled above memory.high.",
            |r| r.throttled,
        ),
        (
            "claude_cage_oom_kills_total",
            "counter",
            "Processes in the cage killed by the OOM killer.",
            |r| r.oom_kills,
        ),
        (
            "claude_cage_age_seconds",
            "gauge",
            "Seconds since the cage's child started.",
            |r| r.age_seconds,
        ),
    ];
    for (name, kind, help, get) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in rows {
            if let Some(v) = get(r) {
                let _ = writeln!(
                    out,
                    "{name}{{cage=\"{}\",bot=\"{}\",state=\"{}\"}} {v}",
                    esc(&r.cage),
                    esc(&r.bot),
                    r.state
                );
            }
        }
    }
    let mut bots: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let e = bots.entry(&r.bot).or_default();
        e.0 += 1;
        e.1 += r.memory_current.unwrap_or(0);
    }
    let _ = writeln!(
        out,
        "# HELP claude_cage_bot_cages Live cages of the bot.\n# TYPE claude_cage_bot_cages gauge"
    );
    for (b, (n, _)) in &bots {
        let _ = writeln!(out, "claude_cage_bot_cages{{bot=\"{}\"}} {n}", esc(b));
    }
    let _ = writeln!(
        out,
        "# HELP claude_cage_bot_max_cages The bot's [bot] max-cages.\n# TYPE claude_cage_bot_max_cages gauge"
    );
    let mut caps: BTreeMap<&str, u32> = BTreeMap::new();
    for r in rows {
        if let Some(c) = r.bot_max_cages {
            caps.insert(&r.bot, c);
        }
    }
    for (b, c) in &caps {
        let _ = writeln!(out, "claude_cage_bot_max_cages{{bot=\"{}\"}} {c}", esc(b));
    }
    let _ = writeln!(
        out,
        "# HELP claude_cage_bot_memory_current_bytes Memory in use by all cages of the bot.\n# TYPE claude_cage_bot_memory_current_bytes gauge"
    );
    for (b, (_, m)) in &bots {
        let _ = writeln!(
            out,
            "claude_cage_bot_memory_current_bytes{{bot=\"{}\"}} {m}",
            esc(b)
        );
    }
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        &mut out,
        "claude_cage_bot_ends_total",
        "counter",
        "Ended cages of the bot, by the exit event's reason (kept after the cages are gone).",
    );
    for ((u, b), t) in tallies {
        for (reason, n) in &t.ends {
            let _ = writeln!(
                out,
                "claude_cage_bot_ends_total{{bot=\"{}\",user=\"{}\",reason=\"{}\"}} {n}",
                esc(b),
                esc(u),
                esc(reason)
            );
        }
    }
    head(
        &mut out,
        "claude_cage_bot_oom_ends_total",
        "counter",
        "Ended cages of the bot that saw an OOM kill, by the limit behind it (cage, bot, outside).",
    );
    for ((u, b), t) in tallies {
        for (limit, n) in &t.oom_limits {
            let _ = writeln!(
                out,
                "claude_cage_bot_oom_ends_total{{bot=\"{}\",user=\"{}\",limit=\"{}\"}} {n}",
                esc(b),
                esc(u),
                esc(limit)
            );
        }
    }
    type Counter = (&'static str, &'static str, fn(&crate::tally::Tally) -> u64);
    let counters: [Counter; 2] = [
        (
            "claude_cage_bot_oom_kills_total",
            "OOM kills in the bot's ended cages.",
            |t| t.oom_kills,
        ),
        (
            "claude_cage_bot_memory_warns_total",
            "Crossings of the bot's [bot] memory-warn (bot-memory-warn events).",
            |t| t.memory_warns,
        ),
    ];
    for (name, help, value) in counters {
        head(&mut out, name, "counter", help);
        for ((u, b), t) in tallies {
            let _ = writeln!(
                out,
                "{name}{{bot=\"{}\",user=\"{}\"}} {}",
                esc(b),
                esc(u),
                value(t)
            );
        }
    }
    type Gauge = (&'static str, &'static str, fn(&BotUsage) -> Option<u64>);
    let gauges: [Gauge; 4] = [
        (
            "claude_cage_bot_cgroup_memory_current_bytes",
            "Memory in use in the bot's cgroup (all its cages).",
            |u| u.memory_current,
        ),
        (
            "claude_cage_bot_cgroup_memory_max_bytes",
            "The bot's aggregate memory.max (absent when unlimited).",
            |u| u.memory_max,
        ),
        (
            "claude_cage_bot_cgroup_pids_current",
            "Processes and threads in the bot's cgroup.",
            |u| u.pids_current,
        ),
        (
            "claude_cage_bot_cgroup_pids_max",
            "The bot's aggregate pids.max (absent when unlimited).",
            |u| u.pids_max,
        ),
    ];
    for (name, help, get) in gauges {
        head(&mut out, name, "gauge", help);
        for (b, u) in usage {
            if let Some(v) = get(u) {
                let _ = writeln!(out, "{name}{{bot=\"{}\"}} {v}", esc(b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Row {
        Row {
            cage: "bot-1-1".into(),
            bot: "bot".into(),
            state: "running",
            pid: Some(7),
            age_seconds: Some(75),
            memory_current: Some(1 << 20),
            memory_max: Some(64 << 20),
            memory_peak: Some(2 << 20),
            pids_current: Some(3),
            pids_max: None,
            throttled: Some(2),
            oom_kills: Some(0),
            command: vec![
                "claude".into(),
                "--output-format".into(),
                "stream-json".into(),
            ],
            cgroup: "/sys/fs/cgroup/bot/bot-1-1".into(),
            supervisor_pid: Some(6),
            policy: None,
            state_file: true,
            bot_max_cages: None,
        }
    }

    #[test]
    fn table_has_a_header_and_a_row() {
        let t = table(&[sample()]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CAGE"));
        assert!(
            lines[1].contains("1.0 MiB / 64.0 MiB")
                && lines[1].contains("3 / max")
                && lines[1].contains("1m15s"),
            "{t}"
        );
    }

    #[test]
    fn prometheus_lines() {
        let mut tallies = BTreeMap::new();
        tallies.insert(
            ("root".to_owned(), "bot".to_owned()),
            crate::tally::Tally {
                ends: [("oom-killed".to_owned(), 2), ("exited".to_owned(), 5)].into(),
                oom_kills: 3,
                oom_limits: [("cage".to_owned(), 2)].into(),
                memory_warns: 4,
                memory_warned: true,
            },
        );
        let mut usage = BTreeMap::new();
        usage.insert(
            "bot".to_owned(),
            BotUsage {
                memory_current: Some(4096),
                memory_max: Some(1 << 30),
                pids_current: Some(3),
                pids_max: None,
            },
        );
        let p = prometheus(&[sample()], &tallies, &usage);
        for line in [
            "claude_cage_bot_ends_total{bot=\"bot\",user=\"root\",reason=\"oom-killed\"} 2",
            "claude_cage_bot_ends_total{bot=\"bot\",user=\"root\",reason=\"exited\"} 5",
            "claude_cage_bot_oom_kills_total{bot=\"bot\",user=\"root\"} 3",
            "claude_cage_bot_oom_ends_total{bot=\"bot\",user=\"root\",limit=\"cage\"} 2",
            "claude_cage_bot_memory_warns_total{bot=\"bot\",user=\"root\"} 4",
            "claude_cage_bot_cgroup_memory_max_bytes{bot=\"bot\"} 1073741824",
        ] {
            assert!(p.lines().any(|l| l == line), "{line} not in {p}");
        }
        assert!(!p.contains("claude_cage_bot_cgroup_pids_max{"), "{p}");
        assert!(p.contains("claude_cage_memory_current_bytes{cage=\"bot-1-1\",bot=\"bot\",state=\"running\"} 1048576"), "{p}");
        assert!(
            !p.contains("claude_cage_pids_max{"),
            "unlimited is absent: {p}"
        );
        assert!(p.contains("claude_cage_bot_cages{bot=\"bot\"} 1"));
        for l in p.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(l.split(' ').count(), 2, "{l}");
        }
    }
}
