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
