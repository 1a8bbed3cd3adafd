//! Prepare: an invocation becomes a validated plan — the policy, the program, the credentials,
//! the backend, the events file, the starter to watch and the signalfd — before anything is
//! created. Every failure here means nothing was started (125, 126 or 127).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::backend::{self, Backend};
use crate::error::RunError;
use crate::events::EventLog;
use crate::policy::{self, Overrides, ParentDeath, Policy, PolicyError};
use crate::spawn;
use crate::supervise::{self, Starter};
use crate::sys;

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    File(PathBuf),
    Default,
}

/// One `run`, as parsed from the command line or derived in shim mode.
#[derive(Debug)]
pub struct Invocation {
    pub policy: PolicySource,
    pub overrides: Overrides,
    /// PROGRAM; `None` means the policy's `program`.
    pub program: Option<OsString>,
    /// In shim mode, `$CLAUDE_CAGE_PROGRAM`: taken as root only if the policy sets
    /// `program-from-env = true`.
    pub env_program: Option<OsString>,
    /// The program's arguments (without its name).
    pub args: Vec<OsString>,
    /// Shim mode: PATH entries that are claude-cage itself are skipped and, as root, the
    /// environment chooses nothing that root did not write (see [`shim_path`]).
    pub shim: bool,
    /// The pid of the process that started claude-cage, read first thing in `main`.
    pub starter: Pid,
}

/// Everything a run needs, validated; nothing is created yet.
pub struct Plan {
    pub policy: Policy,
    /// The bot's name: the policy's, or derived from the program's.
    pub name: String,
    /// The resolved program.
    pub path: PathBuf,
    /// The program's argv, its name first.
    pub command: Vec<OsString>,
    pub credentials: Option<sys::Credentials>,
    pub backend: Backend,
    pub log: EventLog,
    pub starter: Option<Starter>,
    pub signals: SignalFd,
}

/// Validates the invocation into a plan, in the order a user would fix things: the policy, the
/// program, the user to run as, where the cage goes, the events file, the starter.
pub fn prepare(inv: Invocation) -> Result<Plan, RunError> {
    let policy = load_policy(&inv.policy, &inv.overrides)?;
    let untrusted_env = inv.shim && nix::unistd::Uid::effective().is_root();
    let env_program = match inv.env_program {
        Some(p) if untrusted_env && !policy.program_from_env => {
            crate::warning!(
                "ignored CLAUDE_CAGE_PROGRAM={}: as root, shim mode runs the policy's program unless the policy sets program-from-env = true",
                crate::error::printable(&p.to_string_lossy())
            );
            None
        }
        p => p,
    };
    let program = inv.program.or(env_program).unwrap_or_else(|| {
        OsString::from(policy.program.as_deref().unwrap_or(policy::DEFAULT_PROGRAM))
    });
    let command: Vec<OsString> = std::iter::once(program.clone()).chain(inv.args).collect();
    let program = program.to_string_lossy().into_owned();
    let myself = inv.shim.then(|| std::env::current_exe().ok()).flatten();
    let path_var = std::env::var_os("PATH");
    let path_var = match (&path_var, untrusted_env) {
        (Some(p), true) => Some(shim_path(p)),
        _ => path_var,
    };
    let path = spawn::resolve(&program, path_var.as_deref(), myself.as_deref())?;
    let name = policy
        .name
        .clone()
        .unwrap_or_else(|| policy::name_from_program(&program));
    let credentials = credentials(&policy)?;
    if policy.cgroupns && !nix::unistd::Uid::effective().is_root() {
        return Err(RunError::Credentials(
            "[cage] cgroupns = true needs claude-cage to run as root: a new cgroup namespace takes CAP_SYS_ADMIN".to_owned(),
        ));
    }
    let backend = backend::choose(&policy)?;
    let log = EventLog::open(policy.events_file.as_deref()).map_err(|source| RunError::Events {
        path: policy.events_file.clone().unwrap_or_default(),
        source,
    })?;
    let starter = watch_starter(inv.starter, policy.parent_death)?;
    let signals = SignalFd::with_flags(
        &supervise::handled_signals(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(RunError::Signals)?;
    // Orphaned descendants of the child are reparented to claude-cage, which reaps them, so no
    // zombie keeps a pids charge or a process table slot.
    nix::sys::prctl::set_child_subreaper(true).map_err(RunError::Signals)?;
    Ok(Plan {
        policy,
        name,
        path,
        command,
        credentials,
        backend,
        log,
        starter,
        signals,
    })
}

/// The directories of `path` that shim mode as root searches for a program named without a
/// slash: absolute ones that root owns and no one else can write. The environment of a shim
/// may come from whoever calls the SDK; it does not get to put a program of its own first.
/// With none left, `/usr/local/bin:/usr/bin:/bin` (an empty PATH would mean the current
/// directory).
pub fn shim_path(path: &OsStr) -> OsString {
    use std::os::unix::fs::MetadataExt;
    let safe: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|dir| {
            dir.is_absolute()
                && std::fs::metadata(dir)
                    .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
        })
        .collect();
    match std::env::join_paths(safe) {
        Ok(p) if !p.is_empty() => p,
        _ => OsString::from("/usr/local/bin:/usr/bin:/bin"),
    }
}

/// The memory of the machine, for sizes given as a percentage.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Loads the policy of an invocation.
pub fn load_policy(source: &PolicySource, overrides: &Overrides) -> Result<Policy, PolicyError> {
    match source {
        PolicySource::File(p) => policy::load_file(p, overrides, &mem_total),
        PolicySource::Default => policy::load_default(overrides, &mem_total),
    }
}

/// Resolves `[cage] user` and `group` into the credentials the child drops to.
fn credentials(policy: &Policy) -> Result<Option<sys::Credentials>, RunError> {
    use nix::unistd::{Gid, Group, Uid, User};
    let fail = RunError::Credentials;
    let Some(user) = &policy.user else {
        if policy.group.is_some() {
            return Err(fail("[cage] group needs [cage] user".to_owned()));
        }
        return Ok(None);
    };
    if !Uid::effective().is_root() {
        return Err(fail(format!(
            "[cage] user = {user:?} needs claude-cage to run as root"
        )));
    }
    let numeric = user.parse::<u32>().ok();
    let entry = match numeric {
        // A uid needs no passwd entry (a minimal container may have no /etc/passwd at all).
        Some(uid) => User::from_uid(Uid::from_raw(uid)).unwrap_or(None),
        None => User::from_name(user)
            .map_err(|e| fail(format!("failed to look up user {user:?}: {e}")))?,
    };
    let uid = match (&entry, numeric) {
        (Some(u), _) => u.uid.as_raw(),
        (None, Some(uid)) => uid,
        (None, None) => return Err(fail(format!("no user {user:?} on this system"))),
    };
    let gid = match &policy.group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(g)
                .map_err(|e| fail(format!("failed to look up group {g:?}: {e}")))?
                .ok_or_else(|| fail(format!("no group {g:?} on this system")))?
                .gid
                .as_raw(),
        },
        None => entry.as_ref().map(|u| u.gid.as_raw()).ok_or_else(|| {
            fail(format!(
                "uid {uid} has no passwd entry: set [cage] group too"
            ))
        })?,
    };
    let groups = match &entry {
        Some(u) => {
            let name =
                std::ffi::CString::new(u.name.clone()).map_err(|_| fail("bad user name".into()))?;
            nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| fail(format!("failed to read the groups of {user:?}: {e}")))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        None => vec![gid],
    };
    let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(40);
    Ok(Some(sys::Credentials {
        uid,
        gid,
        groups,
        cap_last,
    }))
}

/// Opens a pidfd on the process that started claude-cage, so that its death wakes the poll
/// loop. Checking the parent pid again after opening closes the race with a parent that died
/// just before: its pid might already name another process.
fn watch_starter(pid: Pid, mode: ParentDeath) -> Result<Option<Starter>, RunError> {
    if mode == ParentDeath::Ignore || pid.as_raw() <= 1 {
        return Ok(None);
    }
    let pidfd = sys::pidfd_open(pid);
    if nix::unistd::getppid() != pid {
        return Err(RunError::StarterGone(pid));
    }
    match pidfd {
        Ok(pidfd) => Ok(Some(Starter { pid, pidfd })),
        // Kernels before 5.3 have no pidfd_open: parent-death cannot be watched there.
        Err(e) => {
            crate::warning!("parent-death is not enforced: pidfd_open failed: {e}");
            Ok(None)
        }
    }
}

/// Resolves the policy file for shim mode: $CLAUDE_CAGE_POLICY, else
/// $XDG_CONFIG_HOME/claude-cage/policy.toml (or ~/.config/claude-cage/policy.toml), else
/// /etc/claude-cage/policy.toml, else the built-in default.
pub fn shim_policy() -> PolicySource {
    if let Some(p) = std::env::var_os("CLAUDE_CAGE_POLICY").filter(|p| !p.is_empty()) {
        return PolicySource::File(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    let candidates = config
        .map(|c| c.join("claude-cage/policy.toml"))
        .into_iter()
        .chain([PathBuf::from("/etc/claude-cage/policy.toml")]);
    for c in candidates {
        if c.exists() {
            return PolicySource::File(c);
        }
    }
    PolicySource::Default
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;

    use super::shim_path;

    #[test]
    fn shim_mode_as_root_searches_only_directories_no_one_else_can_write() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test makes root-owned directories: run it as root");
        }
        let base =
            std::env::temp_dir().join(format!("claude-cage-shim-path-{}", std::process::id()));
        let open = base.join("open");
        let own = base.join("own");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::create_dir_all(&own).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
        let given = format!("{}::bin:{}:/nonexistent", open.display(), own.display());
        let kept = shim_path(OsStr::new(&given));
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(kept, own.as_os_str());
        // Nothing left: the standard directories, never the empty PATH of the current directory.
        assert_eq!(shim_path(OsStr::new("")), "/usr/local/bin:/usr/bin:/bin");
        assert_eq!(shim_path(OsStr::new("rel")), "/usr/local/bin:/usr/bin:/bin");
    }
}
