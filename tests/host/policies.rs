//! Bad input exits 125 with one message naming the file, key and line, and creates nothing;
//! among it every case of tests/data/invalid-policies.toml.

use crate::*;

/// Every cgroup directory under the mount whose name mentions `tag`, to show a failed run
/// created none (other tests run in parallel and create their own).
fn tree(tag: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = claude_cage::cgroup::fs::descendants(&mount())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(tag))
        .collect();
    v.sort();
    v
}

fn refused(n: &str, extra: &[&str], fragment: &str) {
    let t = TempDir::new(&format!("{n}-refused"));
    let out = output(run_cmd(n, &t.path("ev"), extra, &["true"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{extra:?}: {err}");
    assert!(
        err.contains(fragment),
        "{extra:?}: {err:?} lacks {fragment:?}"
    );
    assert_no_cgroup(n);
    assert!(events(&t.path("ev")).is_empty());
}

#[test]
fn bad_policies_exit_125_and_create_nothing() {
    let n = name("badpol");
    let t = TempDir::new("badpol-files");
    let cases: &[(&str, &str)] = &[
        (
            "[memory]\nhigh = \"2G\"\nmax = \"1G\"\n",
            ":2: memory.high: memory.high (2.0 GiB) is above memory.max",
        ),
        (
            "[memory]\nmaxx = 1\n",
            ":2: memory.maxx: unknown field `maxx`",
        ),
        ("[pids]\nmax = 0\n", ":2: pids.max"),
        ("[cage]\nname = \"No Way\"\n", ":2: cage.name: invalid name"),
        ("[cage]\nparent = \"/a/../b\"\n", ":2: cage.parent"),
        (
            "[lifetime]\nmax-runtime = \"forever\"\n",
            ":2: lifetime.max-runtime: bad duration",
        ),
        (
            "[cage]\nparent = \"/no-such-parent-cgroup\"\n",
            "does not exist",
        ),
    ];
    for (i, (text, fragment)) in cases.iter().enumerate() {
        let before = tree(&n);
        let f = t.path(&format!("p{i}.toml"));
        std::fs::write(&f, text).unwrap();
        refused(&n, &["--policy", f.to_str().unwrap()], fragment);
        assert!(
            String::from_utf8_lossy(
                &output(run_cmd(
                    &n,
                    &t.path("x"),
                    &["--policy", f.to_str().unwrap()],
                    &["true"]
                ))
                .stderr
            )
            .contains(f.to_str().unwrap())
                || fragment.contains("does not exist")
        );
        assert_eq!(tree(&n), before, "a refused run changed the cgroup tree");
    }
    refused(
        &n,
        &["--policy", "/no/such/policy.toml"],
        "/no/such/policy.toml: cannot read the policy file",
    );
    refused(
        &n,
        &["--memory-max", "lots"],
        "command line: --memory-max: bad size",
    );
    let out = output({
        let mut c = std::process::Command::new(bin());
        c.args(["run", "--name", "UPPER", "--", "true"]);
        c
    });
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("command line: --name: invalid name"),
        "{out:?}"
    );
    assert_no_cgroup("UPPER");
}

#[test]
fn usage_errors_exit_125() {
    for args in [
        &["run", "--bogus", "--", "true"][..],
        &["run", "--memory-max"][..],
        &["frobnicate"][..],
    ] {
        let out = output({
            let mut c = std::process::Command::new(bin());
            c.args(args);
            c
        });
        assert_eq!(out.status.code(), Some(125), "{args:?}: {out:?}");
    }
    let help = output({
        let mut c = std::process::Command::new(bin());
        c.args(["run", "--help"]);
        c
    });
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--memory-max"));
}

#[test]
fn a_required_controller_missing_on_this_hybrid_host_is_explained() {
    // This test needs a hybrid host whose memory controller is bound to cgroup v1, the kind
    // the host tests run on: there a policy that requires memory must refuse to start and say
    // why. Anywhere else it fails with that reason instead of passing without a check.
    let h = claude_cage::cgroup::Hierarchy::discover().unwrap();
    assert!(
        h.is_v1("memory"),
        "this test needs a hybrid host with the memory controller bound to cgroup v1; here it is not"
    );
    let n = name("require");
    let t = TempDir::new(&n);
    std::fs::write(t.path("p.toml"), "[cage]\nrequire = [\"memory\"]\n").unwrap();
    refused(
        &n,
        &["--policy", t.path("p.toml").to_str().unwrap()],
        "the memory controller is bound to a cgroup v1 hierarchy",
    );
}

#[test]
fn best_effort_policy_warns_and_runs() {
    let n = name("besteffort");
    let t = TempDir::new(&n);
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--memory-max", "1G"],
        &["true"],
    ));
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("claude-cage warning: memory limits are not applied"),
        "{err}"
    );
    assert!(
        reason_lines(&out).is_empty(),
        "warnings are not reason lines: {err}"
    );
    let start = events(&t.path("ev"))
        .into_iter()
        .find(|e| e["event"] == "start")
        .unwrap();
    assert!(
        start["limits"]["memory-max"].is_null(),
        "a limit that was not applied is not reported as applied"
    );
    assert_no_cgroup(&n);
}

#[test]
fn shipped_policies_are_accepted_by_the_binary() {
    // The example bot requires memory and pids, which this host cannot give: refused with the
    // reason. The default policy runs (best effort).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = name("shipped");
    refused(
        &n,
        &[
            "--policy",
            root.join("policies/example-bot.toml").to_str().unwrap(),
        ],
        "bound to a cgroup v1 hierarchy",
    );
    let t = TempDir::new(&n);
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &[
            "--policy",
            root.join("policies/default.toml").to_str().unwrap(),
        ],
        &["true"],
    ));
    assert!(out.status.success(), "{out:?}");
    assert_no_cgroup(&n);
}

/// A parent cgroup the invoking user cannot write to: exit 125, one line naming the operation
/// and the path, and nothing created (no cgroup, no state file, no event). claude-cage
/// runs as uid 65534 (util-linux `setpriv`) with `--parent` at a cgroup owned by root.
#[test]
fn a_parent_cgroup_that_is_not_writable_is_refused_and_nothing_is_created() {
    let n = name("ro-parent");
    let parent = ControlCgroup::new("ro-parent");
    let rel = format!("/{}", parent.0.file_name().unwrap().to_str().unwrap());
    // The unprivileged user's runtime directory: its state would go here.
    let t = TempDir::new(&n);
    let nobody = nix::unistd::Uid::from_raw(65534);
    let nogroup = nix::unistd::Gid::from_raw(65534);
    nix::unistd::chown(&t.0, Some(nobody), Some(nogroup)).unwrap();
    let ev = t.path("ev");
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(bin())
        .args(["run", "--name", &n, "--parent", &rel, "--events"])
        .arg(&ev)
        .args(["--", "true"])
        .env("XDG_RUNTIME_DIR", &t.0)
        .env("HOME", &t.0)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("this test needs util-linux setpriv: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let lines = reason_lines(&out);
    assert_eq!(lines.len(), 1, "one message: {err}");
    let target = parent.0.join(&n);
    assert!(
        lines[0].contains(&format!("failed to create cgroup {}", target.display()))
            && lines[0].contains("Permission denied"),
        "{lines:?}"
    );
    let children: Vec<_> = std::fs::read_dir(&parent.0)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    assert!(
        children.is_empty(),
        "created under the parent: {children:?}"
    );
    // The events file is opened before the cgroup is made, as for any refused run: it stays
    // empty. Nothing else appears (no state directory).
    assert!(events(&ev).is_empty(), "events of a refused run");
    let left: Vec<_> = std::fs::read_dir(&t.0)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| *p != ev)
        .collect();
    assert!(left.is_empty(), "files left by a refused run: {left:?}");
    assert_no_cgroup(&n);
}

// ---- Invalid policy files through the binary ----------------------------------------------------

/// tests/data/invalid-policies.toml: the invalid policies, which the policy module's unit
/// tests also give to the parser.
const INVALID_POLICIES: &str = include_str!("../data/invalid-policies.toml");

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidPolicies {
    /// The exit status of every case.
    status: i32,
    case: Vec<InvalidPolicy>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidPolicy {
    name: String,
    /// The file's text; "@EVENTS@" stands for the policy's own events file.
    policy: String,
    /// A fragment of the message.
    error: String,
    /// The line the message must name.
    line: Option<usize>,
    #[serde(default)]
    stage: Stage,
}

/// Which part of claude-cage refuses a case.
#[derive(serde::Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Stage {
    /// The parser: a message "FILE:LINE: ..." and nothing else.
    #[default]
    Parse,
    /// Valid TOML that passes validation but cannot run here: refused before anything is
    /// created, with the message naming the reason.
    Run,
}

#[test]
fn invalid_policy_files_exit_125_with_their_message_and_create_nothing() {
    let bot = name("badfile");
    let t = TempDir::new(&bot);
    let own_events = t.path("policy-events.jsonl");
    let data: InvalidPolicies =
        toml::from_str(INVALID_POLICIES).expect("tests/data/invalid-policies.toml");
    let run_case = |c: &InvalidPolicy, i: usize| {
        let (fragment, line) = (c.error.as_str(), c.line);
        let f = t.path(&format!("bad-{i}.toml"));
        let text = c.policy.replace("@EVENTS@", own_events.to_str().unwrap());
        std::fs::write(&f, &text).unwrap();
        let ev = t.path(&format!("ev-{i}"));
        // --events only where the policy does not name its own file.
        let mut extra = vec!["--policy", f.to_str().unwrap()];
        if !text.contains("[events]") {
            extra.extend(["--events", ev.to_str().unwrap()]);
        }
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--name", &bot])
            .args(&extra)
            .args(["--", "true"]);
        let out = output(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("case {i} {} {text:?}: stderr {err:?}", c.name);
        assert_eq!(out.status.code(), Some(data.status), "{what}");
        // One message on one line, starting with "claude-cage: FILE:LINE: " (a TOML syntax
        // error's message from the toml crate is joined into one line).
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {what}");
        let prefix = match line {
            Some(l) => format!("claude-cage: {}:{l}: ", f.display()),
            None => format!("claude-cage: {}: ", f.display()),
        };
        assert!(lines[0].starts_with(&prefix), "{prefix:?} expected: {what}");
        assert!(lines[0].contains(fragment), "{fragment:?} expected: {what}");
        assert!(!ev.exists(), "events file created: {what}");
        assert!(
            !own_events.exists(),
            "the policy's events file created: {what}"
        );
        assert!(cgroups_of(&bot).is_empty(), "cgroups created: {what}");
        assert!(state_files(&bot).is_empty(), "state file written: {what}");
    };
    let mut n = 0;
    for (i, c) in data
        .case
        .iter()
        .filter(|c| c.stage == Stage::Parse)
        .enumerate()
    {
        run_case(c, i);
        n += 1;
    }

    let mut refused = 0;
    for (i, c) in data
        .case
        .iter()
        .filter(|c| c.stage == Stage::Run)
        .enumerate()
    {
        let (text, fragment) = (&c.policy, &c.error);
        let f = t.path(&format!("refused-{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let ev = t.path(&format!("ev-refused-{i}"));
        let out = output(run_cmd(
            &bot,
            &ev,
            &["--policy", f.to_str().unwrap()],
            &["true"],
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{} {text:?}: stderr {err:?}", c.name);
        assert_eq!(out.status.code(), Some(data.status), "{what}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("claude-cage: "))
            .collect();
        assert_eq!(lines.len(), 1, "{what}");
        assert!(lines[0].contains(fragment), "{fragment:?} expected: {what}");
        assert!(!ev.exists(), "events file created: {what}");
        assert!(cgroups_of(&bot).is_empty(), "cgroups created: {what}");
        assert!(state_files(&bot).is_empty(), "state file written: {what}");
        refused += 1;
    }
    // A directory, and a file owned by another user, given as the policy.
    let dir = t.path("a-directory.toml");
    std::fs::create_dir(&dir).unwrap();
    let foreign = t.path("foreign.toml");
    std::fs::write(&foreign, "[pids]\nmax = 10\n").unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    for (f, fragment) in [
        (&dir, "cannot read the policy file"),
        (&foreign, "refusing a policy file owned by uid 65534"),
    ] {
        let ev = t.path("ev-file");
        let out = output(run_cmd(
            &bot,
            &ev,
            &["--policy", f.to_str().unwrap()],
            &["true"],
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{}: {err}", f.display());
        assert!(
            err.starts_with(&format!("claude-cage: {}: ", f.display())) && err.contains(fragment),
            "{}: {err:?} lacks {fragment:?}",
            f.display()
        );
        assert!(!ev.exists());
        refused += 1;
    }
    assert!(n + refused >= 30, "{n} + {refused} cases");
    assert_no_cgroup(&bot);
}
