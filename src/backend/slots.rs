//! `[bot] max-cages`: the most live cages a bot may have at once. A run takes a slot before its
//! cage is made: under an exclusive lock on `<state dir>/<bot>.lock` it reaps the bot's orphans,
//! counts the bot's live cages and, below the cap, keeps the lock until its own cage exists, so
//! that concurrent runs of the bot never count the same free slot twice. At the cap it refuses
//! (`on-limit = "refuse"`) or waits for one of the bot's cages to empty (`cgroup.events`, polled
//! for `POLLPRI`), up to `wait-timeout`, then refuses: 125 and one line that names the bot, the
//! cap and the live cages.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Backend;
use crate::cgroup::{Hierarchy, fs};
use crate::error::RunError;
use crate::policy::{OnLimit, Policy};
use crate::registry::{self, CageState, Found};
use crate::state::{open_own, own_dir};
use crate::trust;
use crate::units::Elapsed;

/// The longest the wait goes without counting again, in case a cage ended unseen (one made by
/// another run after the count, or a systemd scope removed at once).
const RECOUNT: Duration = Duration::from_secs(1);

/// A slot below the bot's cap: held (with its lock) until the cage is made.
pub struct Slot {
    _lock: Flock<File>,
}

fn lock(bot: &str) -> Result<Flock<File>, RunError> {
    let failed = |e: std::io::Error| {
        RunError::Unsupported(format!(
            "[bot] max-cages: cannot lock {}/{bot}.lock: {e}",
            own_dir().display()
        ))
    };
    let f = open_own(true)
        .and_then(|d| d.open_rw(Path::new(&format!("{bot}.lock")), 0o600))
        .map_err(failed)?;
    trust::lock(f, FlockArg::LockExclusive).map_err(failed)
}

/// The bot's live cages (starting, running, or stopping: a stopping cage still holds its
/// processes' memory until its supervisor has emptied and removed it), its orphans reaped first.
fn live(h: &Hierarchy, bot: &str) -> Vec<Found> {
    let mut out = Vec::new();
    for f in registry::survey(h)
        .cages
        .into_iter()
        .filter(|f| f.bot == bot)
    {
        match f.state {
            CageState::Orphaned => {
                let line = registry::reap_orphan(&f, false).unwrap_or_else(|e| e);
                crate::note!("{line}");
            }
            CageState::Running | CageState::Starting | CageState::Stopping => out.push(f),
            CageState::Foreign => {}
        }
    }
    out
}

/// Takes a slot for a new cage of `bot`, or says why not; `None` without `[bot] max-cages`.
pub fn acquire(backend: &Backend, bot: &str, policy: &Policy) -> Result<Option<Slot>, RunError> {
    let Some(cap) = policy.max_cages else {
        return Ok(None);
    };
    let h = backend.hierarchy();
    let started = Instant::now();
    let deadline = started.checked_add(policy.wait_timeout);
    loop {
        let held = lock(bot)?;
        let cages = live(h, bot);
        if cages.len() < cap as usize {
            return Ok(Some(Slot { _lock: held }));
        }
        drop(held);
        let ids: Vec<&str> = cages.iter().map(|f| f.id.as_str()).collect();
        let full = format!(
            "bot {bot} has {} live cages, its [bot] max-cages ({cap}): {}",
            cages.len(),
            ids.join(", ")
        );
        let now = Instant::now();
        let left = deadline.map(|d| d.saturating_duration_since(now));
        match policy.on_limit {
            OnLimit::Refuse => {
                return Err(RunError::Unsupported(format!(
                    "{full}; refused (on-limit = \"refuse\")"
                )));
            }
            OnLimit::Wait if left.is_some_and(|l| l.is_zero()) => {
                return Err(RunError::Unsupported(format!(
                    "{full}; none ended within wait-timeout {}",
                    Elapsed(policy.wait_timeout)
                )));
            }
            OnLimit::Wait => wait_for_change(&cages, left.unwrap_or(RECOUNT).min(RECOUNT)),
        }
    }
}

/// Waits until one of `cages` empties (its `cgroup.events` changes) or its supervisor exits
/// (having removed it), or `at_most`.
fn wait_for_change(cages: &[Found], at_most: Duration) {
    let files: Vec<File> = cages
        .iter()
        .filter_map(|f| File::open(f.dir.join(fs::EVENTS)).ok())
        .collect();
    let supervisors: Vec<std::os::fd::OwnedFd> = cages
        .iter()
        .filter_map(|f| {
            let pid = f
                .record
                .as_ref()
                .map(|r| r.supervisor_pid)
                .or_else(|| crate::cgroup::id::cage_pid(&f.bot, &f.id))?;
            crate::sys::pidfd_open(nix::unistd::Pid::from_raw(pid)).ok()
        })
        .collect();
    let mut fds: Vec<PollFd> = files
        .iter()
        .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLPRI))
        .chain(
            supervisors
                .iter()
                .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN)),
        )
        .collect();
    let ms = at_most.as_millis().min(i32::MAX as u128) as i32 + 1;
    let _ = poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    );
}
