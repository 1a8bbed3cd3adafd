//! Bad input exits 125 with one message naming the file, key and line, and creates nothing.

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
        ("[memory]\nmaxx = 1\n", ":2: unknown field `maxx`"),
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
    // This machine binds memory and pids to cgroup v1; a policy that requires them must refuse
    // to start and say why.
    let h = claude_cage::cgroup::Hierarchy::discover().unwrap();
    assert!(
        h.is_v1("memory"),
        "this test expects the hybrid host the suite is developed on"
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
