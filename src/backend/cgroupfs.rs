//! The cgroupfs backend: the cage is made directly in cgroupfs, in `<parent>/<bot>/<id>`.

use super::{Created, Owner, Request, child_env, place, warn_cgroupns_leak};
use crate::cgroup::{Cage, Placement};
use crate::error::{RunError, error_chain};
use crate::registry;
use crate::spawn;

/// Reaps the bot's orphans, makes the cage with its limits, and starts the child in it.
pub(super) fn create(placement: &Placement, req: Request<'_>) -> Result<Created, RunError> {
    let Request {
        name,
        policy,
        path,
        command,
        original_mask,
        credentials,
    } = req;
    for w in &placement.warnings {
        crate::warning!("{w}");
    }
    warn_cgroupns_leak(policy, &placement.hierarchy);
    // Orphans of this bot (a supervisor that was SIGKILLed) are reaped before a new
    // cage starts: one directory read when there are none.
    for line in registry::reap_bot(&placement.parent.join(name), name) {
        crate::note!("{line}");
    }
    let cage = Cage::create(placement, name, policy)?;
    if let Some(c) = &credentials {
        if let Err(e) = cage.delegate_to(c.uid, c.gid) {
            let _ = Owner::Cgroupfs.discard(&cage);
            return Err(e.into());
        }
    }
    if policy.swap_max.is_some()
        && cage.applied.oom_group.is_some()
        && cage.applied.swap_max.is_none()
    {
        crate::warning!("memory.swap-max is not applied: this kernel has no swap accounting");
    }
    let env = child_env(&cage.id, &cage.dir);
    match spawn::spawn(
        place(&cage, policy),
        path,
        command,
        env,
        original_mask,
        credentials,
    ) {
        Ok(pending) => Ok(Created {
            cage,
            pending,
            owner: Owner::Cgroupfs,
        }),
        Err(e) => {
            if let Err(re) = Owner::Cgroupfs.discard(&cage) {
                crate::warning!("{}", error_chain(&re));
            }
            Err(e.into())
        }
    }
}
