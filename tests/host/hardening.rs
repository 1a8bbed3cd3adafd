//! Root hardening and containment on this host: the child as another user without
//! capabilities, a policy file others could have written, and a cgroup namespace rooted at the
//! cage (with the escape it prevents shown succeeding without it).

use crate::*;

fn policy(t: &TempDir, text: &str) -> String {
    let p = t.path("p.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// The supplementary groups of user `nobody` (as `id -G nobody` lists them), sorted.
fn nobody_groups() -> Vec<u32> {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    let name = std::ffi::CString::new(u.name).unwrap();
    let mut g: Vec<u32> = nix::unistd::getgrouplist(&name, u.gid)
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    g.sort();
    g.dedup();
    g
}

/// The `Groups:` line of /proc/PID/status among `lines`, as sorted gids.
fn groups_line(lines: &[&str]) -> Vec<u32> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("Groups:"))
        .unwrap_or_else(|| panic!("no Groups line in {lines:?}"));
    let mut g: Vec<u32> = line["Groups:".len()..]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    g.sort();
    g
}

#[test]
fn the_child_runs_as_the_policys_user_without_capabilities() {
    let n = name("user");
    let t = TempDir::new(&n);
    let p = policy(&t, "[cage]\nuser = \"nobody\"\n");
    let script = r#"id -u; grep -E '^(Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status
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
    assert_eq!(groups_line(&lines), nobody_groups(), "{text}");
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

/// claude-cage started with capabilities in its inheritable set and supplementary groups of its
/// own (util-linux `setpriv`): the child keeps neither. Its inheritable set is empty (an
/// inheritable capability would come back through a file with inheritable capabilities) and
/// its groups are exactly the policy user's.
#[test]
fn an_inheritable_set_and_groups_of_the_starter_do_not_reach_the_child() {
    let n = name("inh");
    let t = TempDir::new(&n);
    let p = policy(&t, "[cage]\nuser = \"nobody\"\n");
    let probe = "grep -E '^(Groups|CapInh)' /proc/self/status";
    let out = std::process::Command::new("setpriv")
        .args(["--inh-caps", "+net_bind_service", "--groups", "4,27", "--"])
        .args(["sh", "-c", &format!("{probe}; exec \"$@\""), "starter"])
        .arg(bin())
        .args(["run", "--name", &n, "--policy", &p, "--", "sh", "-c", probe])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("this test needs util-linux setpriv: {e}"));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let (started, caged) = (&lines[..2], &lines[2..]);
    // The starter really has what the child must not get.
    assert_eq!(groups_line(started), [4, 27], "{text}");
    let cap_inh = |ls: &[&str]| {
        let l = ls.iter().find(|l| l.starts_with("CapInh:")).unwrap();
        u64::from_str_radix(l["CapInh:".len()..].trim(), 16).unwrap()
    };
    const CAP_NET_BIND_SERVICE: u32 = 10;
    assert_eq!(cap_inh(started), 1 << CAP_NET_BIND_SERVICE, "{text}");
    assert_eq!(groups_line(caged), nobody_groups(), "{text}");
    assert_eq!(cap_inh(caged), 0, "the child's inheritable set: {text}");
    assert_no_cgroup(&n);
}

#[test]
fn a_policy_others_could_write_is_refused_as_root() {
    let n = name("perm");
    let t = TempDir::new(&n);
    let p = policy(&t, "[pids]\nmax = 10\n");
    // World-writable, and group-writable only.
    for mode in [0o666, 0o620] {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        let out = output(run_cmd(&n, &t.path("ev"), &["--policy", &p], &["true"]));
        assert_eq!(out.status.code(), Some(125), "mode {mode:o}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "refusing a group- or world-writable policy file when running as root (mode {mode:o};"
            )),
            "mode {mode:o}: {err}"
        );
        assert!(events(&t.path("ev")).is_empty(), "mode {mode:o}: {err}");
        assert_no_cgroup(&n);
    }
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
