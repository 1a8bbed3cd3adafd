//! The backends: who owns a cage's cgroup. The cgroupfs backend makes the cage directly in
//! cgroupfs (`cgroupfs.rs`); the systemd backend asks the service manager for a transient scope
//! and makes the cage inside it (`scope.rs`). [`choose`] picks one before anything is created;
//! [`Backend::create`] makes the cage and starts the child in it, waiting for its go; the
//! [`Owner`] gives the emptied cage back at the end (`teardown`).

mod cgroupfs;
#[cfg(feature = "systemd")]
mod scope;
pub mod slots;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::SigSet;

use crate::cgroup::{self, Cage, CgroupError, Hierarchy};
use crate::error::RunError;
use crate::policy::{self, Policy};
use crate::spawn;
use crate::sys;

/// Where cages are made, decided before anything is created.
pub enum Backend {
    Cgroupfs(cgroup::Placement),
    #[cfg(feature = "systemd")]
    Systemd {
        manager: crate::systemd::Manager,
        hierarchy: Hierarchy,
    },
}

impl Backend {
    /// Whether cages are systemd scopes.
    pub fn is_systemd(&self) -> bool {
        match self {
            Backend::Cgroupfs(_) => false,
            #[cfg(feature = "systemd")]
            Backend::Systemd { .. } => true,
        }
    }

    /// The cgroup v2 hierarchy the cages go in.
    pub fn hierarchy(&self) -> &Hierarchy {
        match self {
            Backend::Cgroupfs(p) => &p.hierarchy,
            #[cfg(feature = "systemd")]
            Backend::Systemd { hierarchy, .. } => hierarchy,
        }
    }
}

/// Who owns a created cage's cgroup.
pub enum Owner {
    Cgroupfs,
    /// A scope of the service manager. systemd stops an emptied scope by itself and removes its
    /// cgroup (`CollectMode=inactive-or-failed`), so nothing is asked of it at the end: the
    /// cage's processes are gone already (`end` waits for the cgroup to empty), and the unit's
    /// end is systemd's bookkeeping, which `systemd-run --scope` does not wait for either.
    /// Waiting for a `StopUnit` job cost a fifth of a cage's life in the systemd VM.
    #[cfg(feature = "systemd")]
    Systemd,
}

/// How long a killed cage is given to empty.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

impl Owner {
    /// Kills what is left in the cage, waits until it is empty, calls `reap` (zombies of the
    /// cage reparented to claude-cage), reads `memory.peak` while the cgroup still exists, and
    /// removes the cage's cgroups (a scope's own cgroup is systemd's to remove).
    pub fn end(&self, cage: &Cage, reap: impl FnOnce()) -> Result<Option<u64>, RunError> {
        if cage.populated()? {
            cage.kill()?;
        }
        let empty = cage.wait_empty(EMPTY_TIMEOUT)?;
        reap();
        let peak = cage.memory_peak();
        if !empty {
            return Err(CgroupError::StillPopulated {
                path: cage.dir.clone(),
            }
            .into());
        }
        cage.remove()?;
        Ok(peak)
    }

    /// Ends a cage whose child never ran: kill, remove.
    pub fn discard(&self, cage: &Cage) -> Result<(), RunError> {
        self.end(cage, || {}).map(|_| ())
    }
}

/// What a backend needs to make a cage and start the child in it.
pub struct Request<'a> {
    pub name: &'a str,
    pub policy: &'a Policy,
    /// The resolved program.
    pub path: &'a Path,
    /// The program's argv, its name first.
    pub command: &'a [OsString],
    /// The signal mask claude-cage was started with, the child's.
    pub original_mask: SigSet,
    pub credentials: Option<sys::Credentials>,
}

/// A created cage with the child waiting in it for its go.
pub struct Created {
    pub cage: Cage,
    pub pending: spawn::Pending,
    pub owner: Owner,
}

impl Backend {
    /// Makes the cage and starts the child in it. On any error, nothing is left behind.
    pub fn create(self, req: Request<'_>) -> Result<Created, RunError> {
        match self {
            Backend::Cgroupfs(placement) => cgroupfs::create(&placement, req),
            #[cfg(feature = "systemd")]
            Backend::Systemd { manager, hierarchy } => scope::create(manager, &hierarchy, req),
        }
    }
}

/// `[cage] backend`: "auto" is cgroupfs where a parent is given or delegated, or where systemd
/// does not run this machine; the systemd backend otherwise.
pub fn choose(policy: &Policy) -> Result<Backend, RunError> {
    let h = Hierarchy::discover()?;
    if let Some(why) = h.read_only_problem() {
        return Err(cgroup::CgroupError::Placement(why).into());
    }
    if !wants_systemd(policy, &h) {
        let parent = cgroup::choose_parent(&h, &policy.parent)?;
        return Ok(Backend::Cgroupfs(cgroup::plan(h, parent, policy)?));
    }
    #[cfg(feature = "systemd")]
    {
        let manager = crate::systemd::Manager::connect()?;
        Ok(Backend::Systemd {
            manager,
            hierarchy: h,
        })
    }
    #[cfg(not(feature = "systemd"))]
    Err(RunError::NoSystemd)
}

/// Whether the policy's backend is systemd, "auto" resolved on this host.
pub fn wants_systemd(policy: &Policy, h: &Hierarchy) -> bool {
    choice(policy, h).0
}

/// Whether the policy's backend is systemd, "auto" resolved on this host, and why, in words
/// (for `check`).
pub fn choice(policy: &Policy, h: &Hierarchy) -> (bool, String) {
    match policy.backend {
        policy::Backend::Cgroupfs => (false, "the policy sets backend = \"cgroupfs\"".to_owned()),
        policy::Backend::Systemd => (true, "the policy sets backend = \"systemd\"".to_owned()),
        policy::Backend::Auto => {
            if !matches!(policy.parent, policy::Parent::Auto) {
                (false, "the policy sets a parent cgroup".to_owned())
            } else if !booted() {
                (false, "systemd does not run this machine".to_owned())
            } else if h.own == "/" {
                (false, "claude-cage runs in the root cgroup".to_owned())
            } else {
                match cgroup::choose_parent(h, &policy.parent) {
                    Ok(_) => (
                        false,
                        format!(
                            "the parent of claude-cage's cgroup {} is delegated to it",
                            h.own
                        ),
                    ),
                    // Delegated, but claude-cage sits at its top: the placement's error says
                    // how to fix it, rather than cages made outside the delegated subtree.
                    Err(_) if cgroup::own_is_delegated(h) => (
                        false,
                        format!(
                            "claude-cage's cgroup {} is delegated to it (Delegate=)",
                            h.own
                        ),
                    ),
                    Err(_) => (
                        true,
                        format!(
                            "claude-cage's cgroup {} is in no subtree delegated to it (a service without Delegate=?)",
                            h.own
                        ),
                    ),
                }
            }
        }
    }
}

/// Whether the service manager runs this machine: PID 1 is systemd (sd_booted(3)).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Warns that `[cage] cgroupns` hides the tree but does not hold the child in, where the cgroup2
/// mount lacks `nsdelegate`; both backends say it.
fn warn_cgroupns_leak(policy: &Policy, h: &Hierarchy) {
    if policy.cgroupns && !h.nsdelegate {
        crate::warning!(
            "[cage] cgroupns hides the cgroup tree from the child but does not hold it in: {} is mounted without nsdelegate, so the kernel lets a privileged child move out of its namespace",
            h.mount.display()
        );
    }
}

/// Where the child starts: in `main` from its first instruction, or with a cgroup namespace in
/// the cage itself (the namespace's root), moving on into `main` before exec.
fn place<'a>(cage: &'a Cage, policy: &Policy) -> spawn::Place<'a> {
    if policy.cgroupns {
        spawn::Place::Namespace {
            cage: &cage.dir,
            main: &cage.main,
        }
    } else {
        spawn::Place::Leaf(&cage.main)
    }
}

/// The child's environment: claude-cage's own, plus where it runs.
fn child_env(id: &str, dir: &Path) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| k != "CLAUDE_CAGE_ID" && k != "CLAUDE_CAGE_CGROUP")
        .chain([
            ("CLAUDE_CAGE_ID".into(), id.into()),
            ("CLAUDE_CAGE_CGROUP".into(), dir.as_os_str().to_owned()),
        ])
        .collect()
}
