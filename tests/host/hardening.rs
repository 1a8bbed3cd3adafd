//! Root hardening and containment on this host: the child as another user without
//! capabilities, a policy file others could have written, and a cgroup namespace rooted at the
//! cage (with the escape it prevents shown succeeding without it).

use crate::*;

fn policy(t: &TempDir, text: &str) -> String {
    let p = t.path("p.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn the_child_runs_as_the_policys_user_without_capabilities() {
    let n = name("user");
    let t = TempDir::new(&n);
    let p = policy(&t, "[cage]\nuser = \"nobody\"\n");
    let script = r#"id -u; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status
if echo 1 > "$CLAUDE_CAGE_CGROUP/cgroup.kill" 2>/dev/null; then echo limits-writable; else echo limits-root; fi
if mkdir "$CLAUDE_CAGE_CGROUP/tool"; then echo mkdir-ok; fi"#;
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", &p],
        &["sh", "-c", script],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user")
        .uid
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], nobody, "{text}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(cap))
            .unwrap_or_else(|| panic!("{cap} in {text}"));
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("NoNewPrivs") && l.ends_with('1')),
        "{text}"
    );
    assert!(
        lines.contains(&"limits-root"),
        "the child must not own the cage's control files: {text}"
    );
    assert!(
        lines.contains(&"mkdir-ok"),
        "the child may make cgroups inside its cage: {text}"
    );
    assert_no_cgroup(&n);
}

#[test]
fn a_policy_others_could_write_is_refused_as_root() {
    let n = name("perm");
    let t = TempDir::new(&n);
    let p = policy(&t, "[pids]\nmax = 10\n");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let out = output(run_cmd(&n, &t.path("ev"), &["--policy", &p], &["true"]));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("world-writable"),
        "{out:?}"
    );
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = output(run_cmd(&n, &t.path("ev"), &["--policy", &p], &["true"]));
    assert!(
        out.status.success(),
        "control: the same file, not writable by others: {out:?}"
    );
    assert_no_cgroup(&n);
}

/// Tries to move the shell into the bot's cgroup (an ancestor of its cage) and says whether it
/// got out.
const ESCAPE: &str = r#"grep ^0:: /proc/self/cgroup
if echo $$ > "$CLAUDE_CAGE_CGROUP/../cgroup.procs" 2>/dev/null; then echo escaped; else echo contained; fi
grep ^0:: /proc/self/cgroup"#;

#[test]
fn without_a_cgroup_namespace_a_root_child_can_leave_its_cage() {
    let n = name("escape-ns-off");
    let t = TempDir::new(&n);
    let out = output(run_cmd(&n, &t.path("ev"), &[], &["sh", "-c", ESCAPE]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("escaped"), "negative control: {text}");
    assert_no_cgroup(&n);
}

/// On this host cgroup2 is mounted without `nsdelegate`, so the kernel does not stop a root
/// child from leaving its namespace: claude-cage must say so instead of implying containment.
/// The containment itself is proven in the VM suite, which mounts cgroup2 with nsdelegate.
#[test]
fn a_cgroup_namespace_is_rooted_at_the_cage_and_its_limit_is_stated() {
    let n = name("escape-ns-on");
    let t = TempDir::new(&n);
    let p = policy(&t, "[cage]\ncgroupns = true\n");
    let out = output(run_cmd(
        &n,
        &t.path("ev"),
        &["--policy", &p],
        &["sh", "-c", ESCAPE],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "0::/main",
        "the namespace's root is the cage: {text}"
    );
    let h = claude_cage::cgroup::Hierarchy::discover().unwrap();
    assert!(
        !h.nsdelegate,
        "this test expects the host's mount without nsdelegate"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mounted without nsdelegate"), "{err}");
    assert_no_cgroup(&n);
}
