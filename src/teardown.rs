//! Teardown: once the child has been reaped, kill whatever is left in the cage, wait until it
//! is empty, read its final figures, remove its cgroups and give it back to its owner; the state
//! file goes last, and stays when the cage could not be removed, so that `reap` finds it.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::alerts::Alerts;
use crate::backend::Owner;
use crate::cgroup::{self, Cage, Counters};
use crate::error::error_chain;
use crate::state::StateFile;
use crate::supervise::{self, ChildEnd, Outcome};

/// What is known of a cage once it is gone.
pub struct Ended {
    pub outcome: Outcome,
    /// The larger of what supervision saw and what the cage said at the end.
    pub counters: Counters,
    /// The bot cgroup's `memory.events oom`: whether the bot's aggregate limit was hit.
    pub bot_oom: u64,
    pub peak: Option<u64>,
}

/// Ends the cage of a reaped child: settles a group OOM kill, reads the counters, kills and
/// removes the cage (reaping what was reparented to claude-cage meanwhile and telling the
/// alerts of their hooks), then removes the state file.
pub fn finish(
    cage: &Cage,
    owner: &Owner,
    mut outcome: Outcome,
    child: Pid,
    alerts: &mut Alerts,
    state_file: Option<&StateFile>,
) -> Ended {
    settle_oom_group(cage, &mut outcome);
    // Counters only grow: a systemd scope may already be gone, and then reads as zero.
    let counters = cage.counters().merge(outcome.counters);
    let bot_oom = cage.bot_oom();
    let cleanup = owner.end(cage, || {
        let mut ignored = None;
        supervise::reap(child, &mut ignored, |pid, st| {
            alerts.reaped(pid, st);
        });
    });
    let peak = cleanup.as_ref().ok().copied().flatten().or(outcome.peak);
    match &cleanup {
        Err(e) => crate::warning!("{}", error_chain(e)),
        Ok(_) => {
            if let Some(f) = state_file {
                let _ = f.remove();
            }
        }
    }
    Ended {
        outcome,
        counters,
        bot_oom,
        peak,
    }
}

/// Ends a cage whose child never ran (its go failed): kills and removes it, then its state file.
pub fn abandon(cage: &Cage, owner: &Owner, state_file: Option<&StateFile>) {
    if let Err(e) = owner.discard(cage) {
        crate::warning!("{}", error_chain(&e));
    } else if let Some(f) = state_file {
        let _ = f.remove();
    }
}

/// How long the kernel's group OOM kill is given to empty the cage by itself.
const OOM_GROUP_SETTLE: Duration = Duration::from_secs(2);

/// A group OOM kill (`memory.oom.group`) signals the members one by one, from the task that hit
/// the limit (mm/oom_kill.c, `mem_cgroup_scan_tasks`): the child can die and be reaped while the
/// kernel is still at it, and what it has yet to kill would be counted as leftovers, its kills
/// missing from `oom_kill`. So when the child died of SIGKILL that claude-cage did not send and
/// the OOM killer was at work in a cage with the group kill on, the group is given a moment to
/// empty by itself before the leftovers are counted and the counters read; what is still there
/// after that is killed as usual. The group is the cage, or its `main` where a systemd scope
/// holds a holder (see `backend::scope`).
fn settle_oom_group(cage: &Cage, outcome: &mut Outcome) {
    if outcome.end != ChildEnd::Signaled(Signal::SIGKILL)
        || outcome.killed_by_us
        || cage.applied.oom_group != Some(true)
        || (outcome.counters.oom_kill == 0 && cage.counters().oom_kill == 0)
    {
        return;
    }
    let group = if cage.unit.is_some() {
        &cage.main
    } else {
        &cage.dir
    };
    if cgroup::wait_unpopulated(group, OOM_GROUP_SETTLE).unwrap_or(false) {
        outcome.leftover = cage.process_count();
    }
}
