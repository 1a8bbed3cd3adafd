//! Where cages go: the parent cgroup a policy names or the one delegated to claude-cage, which
//! controllers the cages get there, and why a limit cannot be applied (the warning or the
//! error that says so). Nothing here creates a cgroup.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, Uid, access};

use super::fs::{self, CONTROLLERS, PROCS, SUBTREE_CONTROL};
use super::{CgroupError, Hierarchy};
use crate::policy::{Controller, Parent, Policy};

/// Where cages go, and which controllers they get.
#[derive(Debug, Clone)]
pub struct Placement {
    pub hierarchy: Hierarchy,
    /// The chosen parent directory; the bot's cgroup is created in it.
    pub parent: PathBuf,
    /// Controllers that will be enabled for the cages.
    pub controllers: Vec<Controller>,
    /// Limits of the policy that cannot be applied, with the reason (best effort).
    pub warnings: Vec<String>,
}

/// Picks the parent directory for `parent`.
///
/// `auto`: the root when claude-cage runs in the root of the hierarchy (or of its cgroup
/// namespace); the parent of its own cgroup when that parent was delegated to it (systemd's
/// `Delegate=` with `DelegateSubgroup=`, marked by the `trusted.delegate` or `user.delegate`
/// extended attribute, or, for an unprivileged user, owned by that user); otherwise an error
/// that explains how to delegate.
pub fn choose_parent(h: &Hierarchy, parent: &Parent) -> Result<PathBuf, CgroupError> {
    match parent {
        Parent::Path(p) => {
            let dir = h.dir(p);
            if !dir.join(PROCS).exists() {
                return Err(CgroupError::Placement(format!(
                    "the parent cgroup {p} does not exist ({}): create it and enable the controllers \
                     for its children, or use parent = \"auto\"",
                    dir.display()
                )));
            }
            Ok(dir)
        }
        Parent::Auto => {
            if h.own == "/" {
                return Ok(h.mount.clone());
            }
            let own_dir = h.dir(&h.own);
            let parent_dir = own_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| h.mount.clone());
            if is_delegated(&parent_dir) {
                return Ok(parent_dir);
            }
            if is_delegated(&own_dir) {
                // Delegate= without the bot moved into a subgroup (DelegateSubgroup= unknown to
                // systemd before 254, or forgotten): the cages belong in this subtree, but the
                // kernel allows none beside the processes at its top.
                return Err(CgroupError::Placement(format!(
                    "cannot place cages: claude-cage runs at the top of its delegated cgroup {own}, \
                     where the kernel allows no cage beside its processes. Move the bot into a child \
                     cgroup: DelegateSubgroup=supervisor (systemd 254 or later; before 254, start the \
                     bot with ExecStart=claude-cage subgroup -- BOT-COMMAND)",
                    own = h.own,
                )));
            }
            Err(CgroupError::Placement(format!(
                "cannot place cages automatically: claude-cage runs in cgroup {own}, and its parent {parent} \
                 is not delegated to it. Run the bot in a systemd service with Delegate=yes and \
                 DelegateSubgroup=supervisor (systemd 254 or later; before 254, start the bot with \
                 ExecStart=claude-cage subgroup -- BOT-COMMAND), or as a user inside a delegated unit \
                 (systemd-run --user --scope -p Delegate=yes ...), or set [cage] parent / --parent to a \
                 cgroup you own whose parent enables the controllers",
                own = h.own,
                parent = h.relative(&parent_dir),
            )))
        }
    }
}

/// Whether `dir` was delegated to us: marked so by systemd, or (for a non-root user) writable,
/// which only a delegation makes it.
/// Whether claude-cage's own cgroup was delegated to it (not the root, and marked or owned as
/// [`choose_parent`] says).
pub fn own_is_delegated(h: &Hierarchy) -> bool {
    h.own != "/" && is_delegated(&h.dir(&h.own))
}

fn is_delegated(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    for name in [c"trusted.delegate", c"user.delegate"] {
        if crate::sys::getxattr(&c, name).is_some_and(|v| v == b"1") {
            return true;
        }
    }
    !Uid::effective().is_root()
        && [PROCS, SUBTREE_CONTROL]
            .iter()
            .all(|f| access(&dir.join(f), AccessFlags::W_OK).is_ok())
        && access(dir, AccessFlags::W_OK).is_ok()
}

/// Works out which controllers the cages get and which limits cannot be applied. A required
/// controller that is missing is an error; any other missing controller whose limits the policy
/// sets becomes a warning.
pub fn plan(h: Hierarchy, parent: PathBuf, policy: &Policy) -> Result<Placement, CgroupError> {
    let available = fs::words(&fs::read(&parent, CONTROLLERS)?);
    let mut controllers = Vec::new();
    let mut warnings = Vec::new();
    for c in Controller::ALL {
        let limited = match c {
            Controller::Memory => {
                policy.memory_high.is_some()
                    || policy.memory_max.is_some()
                    || policy.swap_max.is_some()
                    || policy.bot_memory_max.is_some()
                    || policy.bot_memory_high.is_some()
            }
            Controller::Pids => policy.pids_max.is_some() || policy.bot_pids_max.is_some(),
            Controller::Cpu => policy.cpu_max.is_some() || policy.cpu_weight.is_some(),
        };
        let required = policy.require.contains(&c);
        // Every controller is enabled whenever it exists: memory and pids because their events
        // explain a death, cpu because with it the kernel schedules the whole cage as one
        // group, so a fork storm of a thousand tasks cannot starve the supervisor that must
        // kill it (without it, each task competes with the supervisor on its own).
        if available.iter().any(|a| a == c.name()) {
            controllers.push(c);
            continue;
        }
        let why = unavailable_reason(&h, &parent, c);
        if required {
            return Err(CgroupError::Unavailable {
                controller: c.name(),
                why,
            });
        }
        if limited {
            warnings.push(format!("{c} limits are not applied: {why}"));
        }
    }
    Ok(Placement {
        hierarchy: h,
        parent,
        controllers,
        warnings,
    })
}

fn unavailable_reason(h: &Hierarchy, parent: &Path, c: Controller) -> String {
    let rel = h.relative(parent);
    if h.is_v1(c.name()) {
        format!(
            "the {c} controller is bound to a cgroup v1 hierarchy on this host (a hybrid v1/v2 set-up); boot with systemd.unified_cgroup_hierarchy=1 to move it to cgroup v2"
        )
    } else if *parent == h.mount {
        format!(
            "the kernel offers no {c} controller in the cgroup v2 hierarchy at {}",
            h.mount.display()
        )
    } else {
        format!(
            "the {c} controller is not delegated to {rel} (it is missing from {rel}/cgroup.controllers); \
             with systemd, add {} to the unit's Delegate= setting",
            c.name()
        )
    }
}

/// The controllers `require` names that the root of the hierarchy does not offer: those a
/// service manager cannot give a scope either. `run` refuses the first; `check` lists each.
pub fn missing_at_root(
    h: &Hierarchy,
    require: &[Controller],
) -> Result<Vec<Controller>, CgroupError> {
    let root = fs::words(&fs::read(&h.mount, CONTROLLERS)?);
    Ok(require
        .iter()
        .copied()
        .filter(|c| !root.iter().any(|r| r == c.name()))
        .collect())
}
