//! The policy parser on arbitrary text, with or without command-line overrides. Besides not
//! panicking, a result must keep the parser's promises: an error names the source (or
//! "command line") and a line that exists; an accepted policy satisfies
//! the rules docs/policy.md states (memory.high <= memory.max, no zero pids limits, a valid name,
//! a term-grace, a parent path without '.' or '..').
#![no_main]

use claude_cage::policy::{self, Overrides, Parent};
use claude_cage::units::Limit;
use libfuzzer_sys::fuzz_target;

const GIB: u64 = 1 << 30;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line, when it starts with "#!", carries overrides: "#!KEY=VALUE;KEY=VALUE".
    let mut o = Overrides::default();
    if let Some(first) = text.lines().next().and_then(|l| l.strip_prefix("#!")) {
        for (k, v) in first.split(';').filter_map(|kv| kv.split_once('=')) {
            o.set(k, v.to_owned());
        }
    }
    match policy::parse(text, "fuzz.toml", &o, 16 * GIB) {
        Err(e) => {
            assert!(
                e.file == "fuzz.toml" || e.file == "command line",
                "error names {:?}",
                e.file
            );
            if let Some(line) = e.line {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {line} of a {}-line text: {e}",
                    text.lines().count()
                );
            }
            let shown = e.to_string();
            assert!(shown.starts_with(&e.file), "{shown}");
        }
        Ok(p) => {
            if let (Some(Limit::Bytes(h)), Some(Limit::Bytes(m))) = (p.memory_high, p.memory_max) {
                assert!(h <= m, "accepted memory.high {h} above memory.max {m}");
            }
            assert_ne!(p.pids_max, Some(Limit::Bytes(0)), "accepted pids.max 0");
            assert_ne!(p.bot_pids_max, Some(Limit::Bytes(0)), "accepted bot.pids-max 0");
            if let Some(n) = &p.name {
                assert!(policy::check_name(n).is_ok(), "accepted name {n:?}");
            }
            if let Parent::Path(path) = &p.parent {
                assert!(path.starts_with('/'), "parent {path:?}");
                assert!(
                    !path.split('/').any(|c| c == "." || c == ".."),
                    "parent {path:?}"
                );
            }
            if let Some(c) = p.cpu_weight {
                assert!((1..=10_000).contains(&c), "cpu.weight {c}");
            }
            assert_ne!(p.max_runtime, Some(std::time::Duration::ZERO));
            if !p.alerts.exec.is_empty() {
                assert!(p.alerts.exec[0].starts_with('/'));
            }
            // The values the engine writes into cgroup files are well-formed.
            for l in [p.memory_high, p.memory_max, p.swap_max, p.pids_max, p.bot_memory_max, p.bot_pids_max]
                .into_iter()
                .flatten()
            {
                let v = l.to_cgroup_value();
                assert!(v == "max" || v.parse::<u64>().is_ok(), "{v:?}");
            }
            if let Some(c) = p.cpu_max {
                let _ = c.to_cgroup_value();
            }
            if let Some(pt) = p.alerts.pressure {
                let _ = pt.to_cgroup_value();
            }
        }
    }
});
