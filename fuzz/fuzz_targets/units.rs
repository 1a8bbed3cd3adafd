//! The unit parsers on arbitrary text: sizes, durations, CPU shares and PSI triggers. Besides not
//! panicking, what they accept must be what docs/policy.md describes and render into values
//! the kernel takes.
#![no_main]

use std::time::Duration;

use claude_cage::units::{self, CpuMax, Size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = units::parse_size(text) {
        match s {
            Size::Percent(p) => assert!(p > 0.0 && p <= 100.0, "{text:?} -> {p}%"),
            Size::Bytes(b) => assert!(b < u64::MAX / 2, "{text:?} -> {b}"),
            Size::Max => assert!(text.trim().eq_ignore_ascii_case("max")),
        }
        for total in [0, 1 << 30, u64::MAX] {
            let v = s.resolve(total).to_cgroup_value();
            assert!(v == "max" || v.parse::<u64>().is_ok(), "{v:?}");
        }
    }
    if let Ok(d) = units::parse_duration(text) {
        // A duration names its unit: a text of digits alone is refused.
        assert!(
            !text.trim().chars().all(|c| c.is_ascii_digit()),
            "{text:?} accepted as {d:?}"
        );
        let _ = units::Elapsed(d).to_string();
    }
    if let Ok(c) = units::parse_cpu_max(text) {
        let v = c.to_cgroup_value();
        let (quota, period) = v.split_once(' ').expect("two fields");
        assert_eq!(period, "100000");
        match c {
            CpuMax::Max => assert_eq!(quota, "max"),
            CpuMax::Percent(p) => {
                assert!((1..=100_000).contains(&p), "{text:?} -> {p}%");
                // The kernel refuses a quota under 1000 us.
                assert!(quota.parse::<u64>().unwrap() >= 1000, "{v:?}");
            }
        }
    }
    if let Ok(t) = units::parse_pressure(text) {
        assert!(t.percent > 0.0 && t.percent <= 100.0);
        assert!(t.window >= Duration::from_millis(500) && t.window <= Duration::from_secs(10));
        let v = t.to_cgroup_value();
        let f: Vec<&str> = v.split(' ').collect();
        assert_eq!(f.len(), 3, "{v:?}");
        let stall: u64 = f[1].parse().unwrap();
        let window: u64 = f[2].parse().unwrap();
        assert!(stall <= window, "{v:?}");
        let _ = t.to_string();
    }
});
