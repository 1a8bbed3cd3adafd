//! Sizes, durations, CPU shares and pressure triggers: every spelling and every refusal.

/// A duration past ten years is refused, whatever its spelling, before anything uses it.
#[test]
fn durations_are_bounded() {
    for text in [
        "18446744073709551615s",
        "3651d",
        "87601h",
        "315360001s",
        "3650d1ms",
    ] {
        let e = parse_duration(text).unwrap_err().0;
        assert!(
            e.contains("longer than the most") || e.contains("bad duration"),
            "{text}: {e}"
        );
    }
    assert_eq!(parse_duration("3650d").unwrap(), super::MAX_DURATION);
    // Every accepted duration leaves room for any deadline claude-cage computes from it.
    let now = std::time::Instant::now();
    assert!(now.checked_add(super::MAX_DURATION * 2).is_some());
}
use super::*;

#[test]
fn sizes() {
    let cases: &[(&str, Result<Size, ()>)] = &[
        ("4096", Ok(Size::Bytes(4096))),
        ("512K", Ok(Size::Bytes(512 * 1024))),
        ("64M", Ok(Size::Bytes(64 << 20))),
        ("64m", Ok(Size::Bytes(64 << 20))),
        ("64MiB", Ok(Size::Bytes(64 << 20))),
        ("64MB", Ok(Size::Bytes(64 << 20))),
        ("1.5G", Ok(Size::Bytes(3 << 29))),
        ("2T", Ok(Size::Bytes(2 << 40))),
        ("0", Ok(Size::Bytes(0))),
        ("max", Ok(Size::Max)),
        ("MAX", Ok(Size::Max)),
        ("25%", Ok(Size::Percent(25.0))),
        ("12.5%", Ok(Size::Percent(12.5))),
        ("", Err(())),
        ("-1G", Err(())),
        ("1.5", Err(())),
        ("G", Err(())),
        ("1X", Err(())),
        ("1..5G", Err(())),
        (".5G", Err(())),
        ("0%", Err(())),
        ("101%", Err(())),
        ("1e3", Err(())),
        ("99999999999T", Err(())),
        ("1 G", Ok(Size::Bytes(1 << 30))),
    ];
    for (text, want) in cases {
        let got = parse_size(text).map_err(|_| ());
        assert_eq!(&got, want, "parse_size({text:?})");
    }
}

#[test]
fn percent_resolves_against_total() {
    assert_eq!(Size::Percent(25.0).resolve(8 << 30), Limit::Bytes(2 << 30));
    assert_eq!(Size::Max.resolve(8 << 30), Limit::Max);
    assert_eq!(Size::Bytes(7).resolve(0), Limit::Bytes(7));
    let unasked = || -> u64 { panic!("the machine's memory was asked for") };
    assert_eq!(Size::Bytes(7).resolve_with(unasked), Limit::Bytes(7));
    assert_eq!(Size::Max.resolve_with(unasked), Limit::Max);
    assert_eq!(
        Size::Percent(50.0).resolve_with(|| 8 << 30),
        Limit::Bytes(4 << 30)
    );
}

#[test]
fn durations() {
    let cases: &[(&str, Option<u64>)] = &[
        ("500ms", Some(500)),
        ("10s", Some(10_000)),
        ("5m", Some(300_000)),
        ("4h", Some(14_400_000)),
        ("1d", Some(86_400_000)),
        ("1h30m", Some(5_400_000)),
        ("0s", Some(0)),
        ("10", None),
        ("", None),
        ("s", None),
        ("10x", None),
        ("-5s", None),
        ("1.5s", None),
        ("10 s", None),
    ];
    for (text, want) in cases {
        let got = parse_duration(text).ok().map(|d| d.as_millis() as u64);
        assert_eq!(&got, want, "parse_duration({text:?})");
    }
}

#[test]
fn cpu() {
    assert_eq!(parse_cpu_max("150%"), Ok(CpuMax::Percent(150)));
    assert_eq!(parse_cpu_max("max"), Ok(CpuMax::Max));
    assert_eq!(CpuMax::Percent(150).to_cgroup_value(), "150000 100000");
    assert_eq!(CpuMax::Max.to_cgroup_value(), "max 100000");
    for bad in ["0%", "150", "1.5", "-5%", "", "abc%"] {
        assert!(parse_cpu_max(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn pressure_triggers() {
    let t = parse_pressure("some 10% 2s").unwrap();
    assert_eq!(t.to_cgroup_value(), "some 200000 2000000");
    assert_eq!(
        parse_pressure("full 5% 1s").unwrap().to_cgroup_value(),
        "full 50000 1000000"
    );
    for bad in [
        "",
        "some 10%",
        "most 10% 2s",
        "some 10 2s",
        "some 0% 2s",
        "some 10% 20s",
        "some 10% 100ms",
        "some 10% 2s x",
    ] {
        assert!(parse_pressure(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn counts() {
    assert_eq!(count(1, "process"), "1 process");
    assert_eq!(count(0, "process"), "0 processes");
    assert_eq!(count(2, "cage"), "2 cages");
}

/// The fuzz corpus of the unit parsers (fuzz/corpus/units, grown by `cargo fuzz run
/// units`) as a regression test: every input goes through the calls
/// fuzz/fuzz_targets/units.rs makes, each returning, accepted or refused, without a panic.
#[test]
fn the_fuzz_corpus_parses_without_panicking() {
    let mut panicked = Vec::new();
    for (path, text) in fuzz_corpus("units") {
        let text = text.as_str();
        let every_call = || {
            if let Ok(s) = parse_size(text) {
                for total in [0, 1 << 30, u64::MAX] {
                    let _ = s.resolve(total).to_cgroup_value();
                }
            }
            if let Ok(d) = parse_duration(text) {
                let _ = Elapsed(d).to_string();
            }
            if let Ok(c) = parse_cpu_max(text) {
                let _ = c.to_cgroup_value();
            }
            if let Ok(t) = parse_pressure(text) {
                let _ = t.to_cgroup_value();
                let _ = t.to_string();
            }
        };
        if std::panic::catch_unwind(every_call).is_err() {
            panicked.push(path);
        }
    }
    assert!(
        panicked.is_empty(),
        "the unit parsers panicked on {panicked:?}"
    );
}

#[test]
fn formatting() {
    assert_eq!(Bytes(512).to_string(), "512 B");
    assert_eq!(Bytes(64 << 20).to_string(), "64.0 MiB");
    assert_eq!(Bytes(4 << 30).to_string(), "4.0 GiB");
    assert_eq!(Elapsed(Duration::from_millis(850)).to_string(), "850ms");
    assert_eq!(Elapsed(Duration::from_secs(42)).to_string(), "42.0s");
    assert_eq!(Elapsed(Duration::from_secs(187)).to_string(), "3m07s");
    assert_eq!(Elapsed(Duration::from_secs(4320)).to_string(), "1h12m");
}
