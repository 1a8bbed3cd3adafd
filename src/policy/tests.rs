//! Unit tests of the policy module: parsing, validation, overrides and the shipped policies.

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::units::{CpuMax, Limit};

const GIB: u64 = 1 << 30;

#[test]
fn a_percentage_without_the_machines_memory_is_an_error() {
    let e = parse(
        "[memory]\nmax = \"25%\"\n",
        "p.toml",
        &Overrides::default(),
        0,
    )
    .unwrap_err();
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("memory.max"), Some(2)),
        "{e}"
    );
    assert!(e.message.contains("/proc/meminfo"), "{e}");
    // Control: bytes need no machine memory.
    parse(
        "[memory]\nmax = \"1G\"\n",
        "p.toml",
        &Overrides::default(),
        0,
    )
    .unwrap();
}

fn parse_ok(text: &str) -> Policy {
    parse(text, "p.toml", &Overrides::default(), 16 * GIB).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn shipped_policies_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load_file(&path, &Overrides::default(), &|| 16 * GIB).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the shipped policies in {}",
        dir.display()
    );
    let d = load_default(&Overrides::default(), &|| 16 * GIB).unwrap();
    assert_eq!(d.source, DEFAULT_SOURCE);
    assert!(
        d.require.is_empty(),
        "the default policy must be best effort"
    );
    assert_eq!(d.stdin_eof_grace, None);
    let file = std::fs::read_to_string(dir.join("default.toml")).unwrap();
    assert_eq!(
        file, DEFAULT_POLICY,
        "policies/default.toml is the built-in default"
    );
}

#[test]
fn example_bot_values() {
    let p = load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example-bot.toml"),
        &Overrides::default(),
        &|| 16 * GIB,
    )
    .unwrap();
    assert_eq!(p.name.as_deref(), Some("example-bot"));
    assert_eq!(p.require, vec![Controller::Memory, Controller::Pids]);
    assert_eq!(p.memory_high, Some(Limit::Bytes(3 * GIB)));
    assert_eq!(p.memory_max, Some(Limit::Bytes(4 * GIB)));
    assert_eq!(p.swap_max, Some(Limit::Bytes(0)));
    assert_eq!(p.bot_memory_max, Some(Limit::Bytes(6 * GIB)));
    assert_eq!(p.bot_pids_max, Some(Limit::Bytes(2048)));
    assert_eq!(p.pids_max, Some(Limit::Bytes(512)));
    assert_eq!(p.cpu_max, Some(CpuMax::Percent(150)));
    assert_eq!(p.cpu_weight, Some(100));
    assert_eq!(p.max_runtime, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(p.stdin_eof_grace, Some(Duration::from_secs(10)));
    assert_eq!(p.parent_death, ParentDeath::Kill);
    assert!(p.oom_group);
}

#[test]
fn empty_policy_has_defaults() {
    let p = parse_ok("");
    assert_eq!(p.parent, Parent::Auto);
    assert_eq!(p.term_grace, DEFAULT_TERM_GRACE);
    assert_eq!(p.memory_max, None);
    assert!(p.oom_group);
    assert_eq!(p.parent_death, ParentDeath::Kill);
}

#[test]
fn percent_and_integers() {
    let p = parse_ok("[memory]\nmax = \"25%\"\nhigh = 1048576\n[pids]\nmax = \"max\"\n");
    assert_eq!(p.memory_max, Some(Limit::Bytes(4 * GIB)));
    assert_eq!(p.memory_high, Some(Limit::Bytes(1 << 20)));
    assert_eq!(p.pids_max, Some(Limit::Max));
}

/// The machine's memory is asked for only when a size is a percentage of it, and then once,
/// though a policy is validated twice (on its own, then with the flags).
#[test]
fn the_machines_memory_is_read_only_for_a_percentage() {
    let asked = Cell::new(0);
    let mem = || {
        asked.set(asked.get() + 1);
        16 * GIB
    };
    let none = Overrides::default();
    let p = parse_with(
        "[memory]\nmax = \"1G\"\nhigh = 1048576\n[bot]\nmemory-max = \"max\"\n[pids]\nmax = 10\n",
        "p.toml",
        &none,
        &mem,
    )
    .unwrap();
    assert_eq!(p.memory_max, Some(Limit::Bytes(GIB)));
    assert_eq!(asked.get(), 0, "no percentage, no read");
    let flags = Overrides {
        memory_max: Some("2G".into()),
        ..Default::default()
    };
    parse_with("", "p.toml", &flags, &mem).unwrap();
    assert_eq!(asked.get(), 0, "no percentage in the flags, no read");

    let p = parse_with(
        "[memory]\nhigh = \"20%\"\nmax = \"25%\"\n[bot]\nmemory-max = \"50%\"\n",
        "p.toml",
        &none,
        &mem,
    )
    .unwrap();
    assert_eq!(p.memory_max, Some(Limit::Bytes(4 * GIB)));
    assert_eq!(p.bot_memory_max, Some(Limit::Bytes(8 * GIB)));
    assert_eq!(
        asked.get(),
        1,
        "three percentages, two validations, one read"
    );

    asked.set(0);
    let flags = Overrides {
        memory_max: Some("50%".into()),
        ..Default::default()
    };
    let p = parse_with("", "p.toml", &flags, &mem).unwrap();
    assert_eq!(p.memory_max, Some(Limit::Bytes(8 * GIB)));
    assert_eq!(asked.get(), 1, "a percentage in a flag");
}

#[test]
fn overrides_win() {
    let o = Overrides {
        memory_max: Some("100M".into()),
        pids_max: Some("9".into()),
        name: Some("flagged".into()),
        ..Default::default()
    };
    let p = parse(
        "[memory]\nmax = \"1G\"\n[cage]\nname = \"filed\"\n",
        "p.toml",
        &o,
        GIB,
    )
    .unwrap();
    assert_eq!(p.memory_max, Some(Limit::Bytes(100 << 20)));
    assert_eq!(p.pids_max, Some(Limit::Bytes(9)));
    assert_eq!(p.name.as_deref(), Some("flagged"));
}

#[test]
fn lower_max_flag_drops_the_policys_higher_high() {
    let o = Overrides {
        memory_max: Some("1G".into()),
        ..Default::default()
    };
    let p = parse("[memory]\nhigh = \"2G\"\nmax = \"4G\"\n", "p.toml", &o, GIB).unwrap();
    assert_eq!(p.memory_max, Some(Limit::Bytes(GIB)));
    assert_eq!(p.memory_high, None);
}

#[test]
fn overridden_file_values_are_still_validated() {
    let o = Overrides {
        name: Some("good".into()),
        ..Default::default()
    };
    let e = parse("[cage]\nname = \"Bad Name\"\n", "p.toml", &o, GIB).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().contains("cage.name"), "{e}");
}

#[test]
fn alerts_section() {
    let p = parse_ok(
        "[memory]\nhigh = \"700M\"\nmax = \"1000M\"\n[alerts]\nmemory-warn = \"80%\"\npressure = \"some 10% 2s\"\nexec = [\"/bin/page\", \"-x\"]\n",
    );
    assert_eq!(p.alerts.memory_warn, Some(800 << 20));
    assert_eq!(
        p.alerts.pressure.unwrap().to_cgroup_value(),
        "some 200000 2000000"
    );
    assert_eq!(p.alerts.exec, vec!["/bin/page", "-x"]);
    assert_eq!(p.alerts.exec_timeout, DEFAULT_EXEC_TIMEOUT);
}

#[test]
fn bot_memory_warn() {
    let p = parse_ok("[bot]\nmemory-high = \"8G\"\nmemory-max = \"12G\"\nmemory-warn = \"75%\"\n");
    assert_eq!(p.bot_memory_high, Some(Limit::Bytes(8 << 30)));
    assert_eq!(p.bot_memory_warn, Some(9 << 30));
    let p = parse_ok("[bot]\nmemory-high = \"1G\"\nmemory-warn = \"1G\"\n");
    assert_eq!(p.bot_memory_warn, Some(1 << 30), "at memory-high, no max");
    assert_eq!(parse_ok("").bot_memory_warn, None);
}

#[test]
fn parents() {
    assert_eq!(
        parse_ok("[cage]\nparent = \"/bots//a/\"").parent,
        Parent::Path("/bots/a".into())
    );
    assert_eq!(
        parse_ok("[cage]\nparent = \"/\"").parent,
        Parent::Path("/".into())
    );
    assert_eq!(parse_ok("[cage]\nparent = \"auto\"").parent, Parent::Auto);
}

/// tests/data/invalid-policies.toml: the invalid policies, which the host tests also give to
/// `claude-cage run`.
const INVALID_POLICIES: &str = include_str!("../../tests/data/invalid-policies.toml");

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidPolicies {
    status: i32,
    case: Vec<InvalidPolicy>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidPolicy {
    name: String,
    policy: String,
    error: String,
    line: Option<usize>,
    #[serde(default)]
    stage: Stage,
}

/// Which part of claude-cage refuses a case.
#[derive(serde::Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Stage {
    /// The parser.
    #[default]
    Parse,
    /// `claude-cage run`, for what this host lacks; the parser accepts it.
    Run,
}

/// Each invalid policy is refused with a one-line message containing its fragment and naming
/// its line; those refused only at run time are accepted here.
#[test]
fn invalid_policies() {
    let data: InvalidPolicies =
        toml::from_str(INVALID_POLICIES).expect("tests/data/invalid-policies.toml");
    assert_eq!(data.status, crate::exit::FAILURE);
    let mut names: Vec<&str> = data.case.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), data.case.len(), "case names must be unique");
    let refused: Vec<&InvalidPolicy> = data
        .case
        .iter()
        .filter(|c| c.stage == Stage::Parse)
        .collect();
    assert!(refused.len() >= 30);
    for c in refused {
        let (name, text, fragment) = (&c.name, &c.policy, &c.error);
        let e = parse(text, "p.toml", &Overrides::default(), 16 * GIB)
            .expect_err(&format!("{name} should be refused: {text:?}"));
        let msg = e.to_string();
        assert!(msg.starts_with("p.toml"), "{name}: {msg}");
        assert!(!msg.contains('\n'), "{name}: one line: {msg:?}");
        assert!(
            msg.contains(fragment.as_str()),
            "{name} {text:?}: {msg:?} lacks {fragment:?}"
        );
        assert_eq!(e.line, c.line, "{name} {text:?}: {msg}");
    }
    for c in data.case.iter().filter(|c| c.stage == Stage::Run) {
        assert_eq!(
            c.line, None,
            "{}: a refusal at run time names no line",
            c.name
        );
        parse(&c.policy, "p.toml", &Overrides::default(), 16 * GIB)
            .unwrap_or_else(|e| panic!("{}: the parser must accept it: {e}", c.name));
    }
}

#[test]
fn bad_flags_name_the_flag() {
    let o = Overrides {
        memory_max: Some("huge".into()),
        ..Default::default()
    };
    let e = parse("", "p.toml", &o, GIB).unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: --memory-max: bad size \"huge\": expected bytes, a number with K/M/G/T, \"max\" or a percentage"
    );
    let o = Overrides {
        memory_high: Some("2G".into()),
        memory_max: Some("1G".into()),
        ..Default::default()
    };
    assert!(
        parse("", "p.toml", &o, GIB)
            .unwrap_err()
            .to_string()
            .contains("--memory-high")
    );
    // A zero runtime from the flag is the flag's fault, not the file's.
    let o = Overrides {
        max_runtime: Some("0s".into()),
        ..Default::default()
    };
    let e = parse("[lifetime]\nmax-runtime = \"1h\"\n", "p.toml", &o, GIB).unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: --max-runtime: must be longer than 0s (leave it unset for no limit)"
    );
    assert_eq!(e.line, None);
}

/// The fuzz corpus of the policy parser (fuzz/corpus/policy, grown by `cargo fuzz run
/// policy`) as a regression test: every input goes through the calls
/// fuzz/fuzz_targets/policy.rs makes, overrides from a "#!KEY=VALUE;..." first line
/// included, and each must return, accepted or refused, without a panic.
#[test]
fn the_fuzz_corpus_parses_without_panicking() {
    let mut panicked = Vec::new();
    for (path, text) in crate::units::fuzz_corpus("policy") {
        let text = text.as_str();
        let mut o = Overrides::default();
        if let Some(first) = text.lines().next().and_then(|l| l.strip_prefix("#!")) {
            for (k, v) in first.split(';').filter_map(|kv| kv.split_once('=')) {
                o.set(k, v.to_owned());
            }
        }
        match std::panic::catch_unwind(|| parse(text, "fuzz.toml", &o, 16 * GIB)) {
            Err(_) => panicked.push(path),
            Ok(Err(e)) => assert!(
                e.file == "fuzz.toml" || e.file == "command line",
                "{}: {e}",
                path.display()
            ),
            Ok(Ok(_)) => {}
        }
    }
    assert!(panicked.is_empty(), "the parser panicked on {panicked:?}");
}

#[test]
fn names_from_programs() {
    assert_eq!(name_from_program("/usr/bin/claude"), "claude");
    assert_eq!(name_from_program("My_Tool.sh"), "my-tool-sh");
    assert_eq!(name_from_program("///"), "cage");
    assert!(check_name(&name_from_program(&"x".repeat(100))).is_ok());
}

#[test]
fn nesting_defaults_and_bounds() {
    let p = parse("", "p", &Default::default(), 1 << 30).unwrap();
    assert_eq!(
        (p.max_descendants, p.max_depth),
        (DEFAULT_MAX_DESCENDANTS, DEFAULT_MAX_DEPTH)
    );
    let p = parse(
        "[cage]\nmax-descendants = 2\nmax-depth = 1\n",
        "p",
        &Default::default(),
        1 << 30,
    )
    .unwrap();
    assert_eq!((p.max_descendants, p.max_depth), (2, 1));
}

#[test]
fn the_key_of_a_toml_error_is_read_back_from_the_text() {
    use super::load::key_at;
    let text =
        "# c\n[cpu] # the CPU\nweight = \"100\"\n\"max\" = 1\n[alerts]\nexec = [\n  1,\n]\n[cage\n";
    let at = |needle: &str| key_at(text, text.find(needle).expect(needle));
    assert_eq!(at("\"100\"").as_deref(), Some("cpu.weight"));
    assert_eq!(at("weight").as_deref(), Some("cpu.weight"));
    assert_eq!(at("= 1").as_deref(), Some("cpu.max"));
    // A value continued over lines, a table header, a comment: no key is guessed.
    assert_eq!(at("  1,"), None);
    assert_eq!(at("[cage"), None);
    assert_eq!(at("# c"), None);
    assert_eq!(key_at("a.b = 1", 6).as_deref(), Some("a.b"));
    assert_eq!(key_at("", 0), None);
}
