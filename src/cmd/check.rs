//! `claude-cage check [--policy FILE]`: the doctor a new user runs first. Each finding is OK,
//! PROBLEM (a `run` with this policy would fail or not enforce what it requires) or NOTE (works,
//! with less), with a concrete fix. Exit 0 when a `run` would enforce everything the policy
//! requires, 1 otherwise.

mod deploy;

use std::path::Path;

use crate::backend;
use crate::cgroup::{self, Hierarchy, fs};
use crate::policy::{Controller, Overrides, Parent, Policy};
use crate::prepare::{self, PolicySource};
use crate::spawn;
use crate::units::{Bytes, Elapsed, Limit};

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        println!("OK       {}", what.as_ref());
    }
    fn note(&mut self, what: impl AsRef<str>) {
        println!("NOTE     {}", what.as_ref());
    }
    fn problem(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.problems += 1;
        println!("PROBLEM  {}", what.as_ref());
        println!("         fix: {}", fix.as_ref());
    }
}

/// Where claude-cage runs, for advice that names the exact setting.
enum Context {
    Root,
    Service(String),
    UserSession,
    Container,
    Other,
}

fn context(h: &Hierarchy) -> Context {
    let in_container = Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::fs::read_to_string("/proc/1/environ").is_ok_and(|e| e.contains("container="));
    if h.own == "/" {
        Context::Root
    } else if in_container {
        Context::Container
    } else if let Some(unit) = h.own.split('/').find(|c| c.ends_with(".service")) {
        Context::Service(unit.to_owned())
    } else if h.own.contains("/user.slice/") && h.own.contains("session-") {
        Context::UserSession
    } else {
        Context::Other
    }
}

fn delegation_fix(ctx: &Context) -> String {
    match ctx {
        Context::Service(unit) => format!(
            "add `Delegate=memory pids cpu` and `DelegateSubgroup=supervisor` to [Service] of {unit} \
             (systemd 254 or later; before 254, `Delegate=memory pids cpu` with `ExecStart=claude-cage subgroup -- <bot command>`), \
             then `systemctl daemon-reload` and restart it"
        ),
        Context::UserSession => "run the bot inside a delegated user unit: `systemd-run --user --scope -p Delegate=yes <bot command>`".to_owned(),
        Context::Container => "give the container its own cgroup namespace and a writable cgroup2 mount (docker/podman: --cgroupns=private), and run claude-cage in a leaf cgroup of it".to_owned(),
        Context::Root | Context::Other => "set [cage] parent (or --parent) to a cgroup you own whose parent enables the controllers, or run under a systemd unit with Delegate=".to_owned(),
    }
}

/// The `check` command; with `unit`, for the service that will run claude-cage rather than
/// for this shell.
pub fn check(policy: Option<&Path>, unit: Option<&str>) -> i32 {
    let mut r = Report { problems: 0 };
    let source = policy
        .map(|p| PolicySource::File(p.to_path_buf()))
        .unwrap_or(PolicySource::Default);
    let policy = match prepare::load_policy(&source, &Overrides::default()) {
        Ok(p) => {
            r.ok(format!("policy {} is valid", p.source));
            describe_limits(&mut r, &p);
            Some(p)
        }
        Err(e) => {
            r.problem(
                format!("policy: {e}"),
                "correct the policy file (docs/policy.md lists every key)",
            );
            None
        }
    };

    let unit = unit.and_then(|u| deploy::unit(&mut r, u));
    let h = match Hierarchy::discover() {
        Ok(mut h) => {
            if let Some(c) = unit.as_ref().and_then(|u| u.cgroup.clone()) {
                h.own = c;
            }
            r.ok(format!(
                "cgroup v2 is mounted at {}; claude-cage runs in cgroup {}",
                h.mount.display(),
                h.own
            ));
            if let Some(why) = h.read_only_problem() {
                r.problem(
                    why,
                    "run the container with a writable cgroup mount (and its own cgroup namespace), or run claude-cage outside the container",
                );
            }
            h
        }
        Err(e) => {
            r.problem(e.to_string(), "boot with systemd.unified_cgroup_hierarchy=1, or `mount -t cgroup2 none /sys/fs/cgroup`");
            return 1;
        }
    };
    let ctx = match &unit {
        Some(u) => Context::Service(u.name.clone()),
        None => context(&h),
    };
    let user = match unit {
        Some(u) => {
            if !u.delegate && u.user.uid != 0 {
                r.problem(
                    format!(
                        "unit {} runs as {} without Delegate=: claude-cage can neither make cages in the service's cgroup nor, as {}, ask the system service manager for scopes",
                        u.name, u.user.name, u.user.name
                    ),
                    delegation_fix(&ctx),
                );
            }
            u.user
        }
        None => deploy::RunUser::me(),
    };
    let root_ctl = fs::read(&h.mount, fs::CONTROLLERS)
        .map(|t| fs::words(&t))
        .unwrap_or_default();
    r.ok(format!(
        "controllers in the cgroup v2 root: {}",
        if root_ctl.is_empty() {
            "none".to_owned()
        } else {
            root_ctl.join(" ")
        }
    ));
    let v1: Vec<&str> = Controller::ALL
        .iter()
        .map(|c| c.name())
        .filter(|c| h.is_v1(c))
        .collect();
    if !v1.is_empty() {
        let required_v1: Vec<&str> = policy
            .as_ref()
            .map(|p| {
                p.require
                    .iter()
                    .map(|c| c.name())
                    .filter(|c| v1.contains(c))
                    .collect()
            })
            .unwrap_or_default();
        let what = format!(
            "{} {} bound to a cgroup v1 hierarchy on this host (a hybrid v1/v2 set-up): cgroup v2 cannot use {}",
            v1.join(" and "),
            if v1.len() == 1 { "is" } else { "are" },
            if v1.len() == 1 { "it" } else { "them" }
        );
        let fix = "boot with systemd.unified_cgroup_hierarchy=1 (kernel command line) so that every controller moves to cgroup v2";
        if required_v1.is_empty() {
            r.note(format!("{what}; their limits are skipped with a warning"));
        } else {
            r.problem(what, fix);
        }
    }

    kernel_features(&mut r, &h);

    let Some(policy) = policy else {
        return 1;
    };
    deploy::backend(&mut r, &h, &policy, &delegation_fix(&ctx));
    if backend::wants_systemd(&policy, &h) {
        systemd_backend(&mut r, &h, &policy);
    } else {
        match cgroup::choose_parent(&h, &policy.parent) {
            Err(e) => r.problem(format!("placement: {e}"), delegation_fix(&ctx)),
            Ok(parent) => placement(&mut r, &h, &parent, &policy, &ctx),
        }
    }
    deploy::hook(&mut r, &policy, &user);
    deploy::events(&mut r, &policy, &user);

    let program = policy
        .program
        .clone()
        .unwrap_or_else(|| "claude".to_owned());
    match spawn::resolve(&program, std::env::var_os("PATH").as_deref(), None) {
        Ok(p) => r.ok(format!("program {program:?} resolves to {}", p.display())),
        Err(e) => r.note(format!(
            "program: {e} (only needed when no program is given on the command line)"
        )),
    }

    if r.problems == 0 {
        println!("claude-cage check: a run with this policy enforces everything it requires");
        0
    } else {
        println!(
            "claude-cage check: {} problem{}",
            r.problems,
            if r.problems == 1 { "" } else { "s" }
        );
        1
    }
}

/// The systemd backend: the service manager must answer, and the controllers the policy
/// requires must exist in the hierarchy (systemd enables them for the scope).
fn systemd_backend(r: &mut Report, h: &Hierarchy, policy: &Policy) {
    #[cfg(feature = "systemd")]
    match crate::systemd::Manager::connect() {
        Ok(m) => r.ok(format!(
            "backend systemd: cages are transient scopes in {} of the {} service manager, asked {}",
            policy.slice,
            if m.user { "user's" } else { "system" },
            if m.direct {
                "on its private socket"
            } else {
                "through the message bus"
            }
        )),
        Err(e) => r.problem(
            format!("backend systemd: {}", crate::error::error_chain(&e)),
            crate::systemd::CONNECT_ADVICE,
        ),
    }
    #[cfg(not(feature = "systemd"))]
    r.problem(
        "backend systemd: this claude-cage was built without the systemd feature",
        "rebuild with the default features, or set [cage] backend = \"cgroupfs\"",
    );
    for c in cgroup::missing_at_root(h, &policy.require).unwrap_or_else(|_| policy.require.clone())
    {
        r.problem(
            format!("the {c} controller required by the policy is not in the cgroup v2 hierarchy"),
            "boot with systemd.unified_cgroup_hierarchy=1 so that every controller moves to cgroup v2",
        );
    }
}

fn describe_limits(r: &mut Report, p: &Policy) {
    let l = |v: Option<Limit>| match v {
        None => "unset".to_owned(),
        Some(Limit::Max) => "max".to_owned(),
        Some(Limit::Bytes(b)) => format!("{b} ({})", Bytes(b)),
    };
    let n = |v: Option<Limit>| match v {
        None => "unset".to_owned(),
        Some(Limit::Max) => "max".to_owned(),
        Some(Limit::Bytes(b)) => b.to_string(),
    };
    r.ok(format!(
        "effective limits: memory.high {}, memory.max {}, memory.swap.max {}, oom-group {}, pids.max {}, cpu.max {}, cpu.weight {}",
        l(p.memory_high),
        l(p.memory_max),
        l(p.swap_max),
        p.oom_group,
        n(p.pids_max),
        p.cpu_max.map(|c| c.to_cgroup_value()).unwrap_or_else(|| "unset".into()),
        p.cpu_weight.map(|w| w.to_string()).unwrap_or_else(|| "unset".into()),
    ));
    if p.bot_memory_max.is_some() || p.bot_memory_high.is_some() || p.bot_pids_max.is_some() {
        r.ok(format!(
            "bot limits: memory.max {}, pids.max {}{}{}",
            l(p.bot_memory_max),
            n(p.bot_pids_max),
            p.bot_memory_high
                .map(|h| format!(", memory.high {}", l(Some(h))))
                .unwrap_or_default(),
            p.bot_memory_warn
                .map(|w| format!(", memory-warn {}", crate::units::Bytes(w)))
                .unwrap_or_default()
        ));
    }
    r.ok(format!(
        "lifetime: max-runtime {}, stdin-eof-grace {}, term-grace {}",
        p.max_runtime
            .map(|d| Elapsed(d).to_string())
            .unwrap_or_else(|| "unset".into()),
        p.stdin_eof_grace
            .map(|d| Elapsed(d).to_string())
            .unwrap_or_else(|| "unset".into()),
        Elapsed(p.term_grace)
    ));
}

fn kernel_features(r: &mut Report, h: &Hierarchy) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let version: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    let at_least =
        |maj: u32, min: u32| version.len() == 2 && (version[0], version[1]) >= (maj, min);
    // Where the files can tell, they do: a kernel with the feature backported has it whatever
    // its version says. Every non-root cgroup has cgroup.kill when the kernel does, and a cgroup
    // with the memory controller (memory.current) has memory.peak; claude-cage's own cgroup is
    // one to look at, unless it is the root, which has neither file.
    let own = (h.own != "/").then(|| h.dir(&h.own));
    let probe = |file: &str, needs: Option<&str>| {
        own.as_ref()
            .filter(|d| needs.is_none_or(|n| d.join(n).exists()))
            .map(|d| d.join(file).exists())
    };
    let feature = |r: &mut Report, ok: bool, what: &str, without: &str| {
        if ok {
            r.ok(format!("kernel {release} supports {what}"));
        } else {
            r.note(format!("kernel {release} lacks {what}: {without}"));
        }
    };
    feature(
        r,
        at_least(5, 7),
        "clone3 with CLONE_INTO_CGROUP",
        "the child moves itself into its cage before exec instead",
    );
    feature(
        r,
        probe(fs::KILL, None).unwrap_or_else(|| at_least(5, 14)),
        "cgroup.kill",
        "cages are emptied by signalling each process until none is left",
    );
    feature(
        r,
        probe(fs::MEMORY_PEAK, Some(fs::MEMORY_CURRENT)).unwrap_or_else(|| at_least(5, 19)),
        "memory.peak",
        "the exit event reports no memory peak",
    );
    let psi =
        h.mount.join(fs::MEMORY_PRESSURE).exists() || Path::new("/proc/pressure/memory").exists();
    feature(
        r,
        psi,
        "pressure stall information (PSI)",
        "[alerts] pressure cannot be used (boot with psi=1)",
    );
}

fn placement(r: &mut Report, h: &Hierarchy, parent: &Path, policy: &Policy, ctx: &Context) {
    let rel = h.relative(parent);
    let name = policy
        .name
        .clone()
        .unwrap_or_else(|| "<program name>".to_owned());
    let how = match policy.parent {
        Parent::Auto => "parent = \"auto\"",
        Parent::Path(_) => "the policy's parent",
    };
    r.ok(format!(
        "{how} puts cages in {}/{name}/ ({})",
        rel.trim_end_matches('/'),
        parent.join(&name).display()
    ));
    let writable = nix::unistd::access(
        &parent.join(fs::SUBTREE_CONTROL),
        nix::unistd::AccessFlags::W_OK,
    )
    .is_ok()
        && nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK).is_ok();
    if writable {
        r.ok(format!("{rel} is writable"));
    } else {
        r.problem(
            format!("{rel} is not writable by this user"),
            delegation_fix(ctx),
        );
    }
    // Only the real root cgroup has no cgroup.type; the root of a cgroup namespace (a
    // container) is an ordinary cgroup under the no-internal-process rule.
    if parent.join(fs::TYPE).exists() {
        let busy = fs::read(parent, fs::PROCS).is_ok_and(|t| !t.trim().is_empty());
        let enabled = fs::read(parent, fs::SUBTREE_CONTROL)
            .map(|t| fs::words(&t))
            .unwrap_or_default();
        if busy && enabled.is_empty() {
            r.problem(
                format!("{rel} holds processes, so the kernel will not enable controllers for its children (no internal processes)"),
                delegation_fix(ctx),
            );
        }
    }
    match cgroup::plan(h.clone(), parent.to_path_buf(), policy) {
        Ok(p) => {
            let names: Vec<&str> = p.controllers.iter().map(|c| c.name()).collect();
            r.ok(format!(
                "controllers available to cages: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(" ")
                }
            ));
            for w in &p.warnings {
                r.note(w);
            }
        }
        Err(e) => {
            let fix = if h.is_v1(match &e {
                cgroup::CgroupError::Unavailable { controller, .. } => controller,
                _ => "",
            }) {
                "boot with systemd.unified_cgroup_hierarchy=1 so that every controller moves to cgroup v2".to_owned()
            } else {
                delegation_fix(ctx)
            };
            r.problem(e.to_string(), fix);
        }
    }
}
