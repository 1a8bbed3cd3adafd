//! `claude-cage kill CAGE... | --name BOT | --all [--signal SIG]`: by default the whole cage at
//! once. A live supervisor is asked to do it (a real-time signal), so that it reports the reason
//! `killed` and exits 137; an orphaned cage is killed and removed directly. With `--signal`, that
//! signal goes to every process in the cage. Only claude-cage's cages are ever touched.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cgroup::Cage;
use crate::registry::{self, CageState, Found};
use crate::state;
use crate::sys;

/// How long `kill` waits for a supervisor to end its cage.
const WAIT: Duration = Duration::from_secs(10);

/// How many supervisors `kill` asks at once.
const BATCH: usize = 256;

/// Which cages to kill.
pub enum Target {
    Ids(Vec<String>),
    Bot(String),
    All,
}

/// Parses "TERM", "SIGTERM" or "15".
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {s:?}"))
}

/// The `kill` command.
pub fn kill_cmd(target: Target, signal: Option<Signal>) -> i32 {
    let survey = match super::survey() {
        Ok(s) => s,
        Err(status) => return status,
    };
    // Every cage, orphans included (they are killed and removed directly).
    let what = match target {
        Target::Bot(_) => "live cage",
        _ => "cage",
    };
    let (chosen, mut status) = match super::select(&survey, &target, |_| true, what) {
        Ok(c) => c,
        Err(status) => return status,
    };
    // The supervisors are asked first and then waited for together, so that many cages end in
    // the time of the slowest, and one stuck supervisor delays no other; in batches, so that
    // the pidfds stay well inside the default limit of 1024 open files.
    let asked = chosen.chunks(BATCH).flat_map(|batch| {
        let mut asked: Vec<Asked> = batch
            .iter()
            .map(|f| match signal {
                Some(sig) => Asked::Done(signal_all(f, sig)),
                None => ask(f),
            })
            .collect();
        wait_all(&mut asked);
        asked
    });
    for a in asked {
        let result = match a {
            Asked::Done(r) => r,
            Asked::Waiting { .. } => unreachable!("wait_all settles every request"),
        };
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                crate::error!("{e}");
                status = crate::exit::COMMAND_FAILED;
            }
        }
    }
    status
}

/// Sends `sig` to every process in the cage, nested cgroups included.
fn signal_all(f: &Found, sig: Signal) -> Result<String, String> {
    let (_, n) = Cage::at(f.dir.clone()).signal_each(sig, false);
    Ok(format!(
        "sent {sig} to {} in cage {}",
        crate::units::count(n, "process"),
        f.id
    ))
}

/// A kill request: settled, or sent to a supervisor that has yet to end.
enum Asked {
    Done(Result<String, String>),
    Waiting {
        id: String,
        pid: Pid,
        pidfd: std::os::fd::OwnedFd,
    },
}

/// Waits, up to [`WAIT`] in all, until every asked supervisor has ended (its pidfd is
/// readable), and settles each request.
fn wait_all(asked: &mut [Asked]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let waiting: Vec<usize> = (0..asked.len())
            .filter(|&i| matches!(asked[i], Asked::Waiting { .. }))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut ended = vec![false; waiting.len()];
        if !left.is_zero() {
            let mut fds: Vec<PollFd> = waiting
                .iter()
                .map(|&i| match &asked[i] {
                    Asked::Waiting { pidfd, .. } => PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
                    Asked::Done(_) => unreachable!(),
                })
                .collect();
            let ms = PollTimeout::try_from(left.as_millis() as i32 + 1).unwrap_or(PollTimeout::MAX);
            // An error (EINTR) leaves every revents empty: the loop polls again.
            let _ = poll(&mut fds, ms);
            for (k, fd) in fds.iter().enumerate() {
                ended[k] = fd.revents().is_some_and(|r| !r.is_empty());
            }
        }
        let timed_out = deadline <= std::time::Instant::now();
        for (k, &i) in waiting.iter().enumerate() {
            if let Asked::Waiting { id, pid, .. } = &asked[i] {
                if ended[k] {
                    asked[i] = Asked::Done(Ok(format!("killed cage {id}")));
                } else if timed_out {
                    asked[i] = Asked::Done(Err(format!(
                        "the supervisor of {id} (pid {pid}) did not end within {}s",
                        WAIT.as_secs()
                    )));
                }
            }
        }
    }
}

/// Kills the whole cage: asks its supervisor when it is alive (to be waited for), kills and
/// removes it directly otherwise.
fn ask(f: &Found) -> Asked {
    match ask_supervisor(f) {
        Ok(Some((pid, pidfd))) => Asked::Waiting {
            id: f.id.clone(),
            pid,
            pidfd,
        },
        Ok(None) => Asked::Done(kill_orphan(f)),
        Err(e) => Asked::Done(Err(e)),
    }
}

/// Sends the kill request to the cage's supervisor, if one is alive; returns it and its pidfd.
fn ask_supervisor(f: &Found) -> Result<Option<(Pid, std::os::fd::OwnedFd)>, String> {
    // The supervisor: the one its state file names (pid and start time), or, for a cage still
    // setting up (no state file yet), the live process whose pid the cage id carries.
    let supervisor = match (&f.record, f.state) {
        (Some(r), _) if state::supervisor_alive(r) => Some(Pid::from_raw(r.supervisor_pid)),
        (None, CageState::Starting) => {
            crate::cgroup::id::split_id(&f.id).map(|(_, pid)| Pid::from_raw(pid))
        }
        _ => None,
    };
    if let Some(pid) = supervisor {
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| format!("failed to watch the supervisor of {}: {e}", f.id))?;
        // Checked again after opening the pidfd: the pidfd then names the very process that
        // was identified, not a later one with its pid.
        let still = match &f.record {
            Some(r) => state::supervisor_alive(r),
            None => registry::survey_bot(&f.bot_dir(), &f.bot)
                .iter()
                .any(|g| g.id == f.id && g.state == CageState::Starting),
        };
        if still {
            // Through the pidfd: the signal reaches the very process that was checked, never a
            // later one that reused its pid.
            sys::pidfd_send_raw_signal(pidfd.as_fd(), sys::kill_request_signal()).map_err(|e| {
                format!(
                    "failed to signal the supervisor of {} (pid {pid}): {e}",
                    f.id
                )
            })?;
            return Ok(Some((pid, pidfd)));
        }
    }
    Ok(None)
}

/// Kills and removes a cage whose supervisor is gone.
fn kill_orphan(f: &Found) -> Result<String, String> {
    let n = registry::dispose(f, WAIT)
        .map_err(|e| format!("failed to kill {}: {}", f.id, crate::error::error_chain(&e)))?;
    Ok(format!(
        "killed orphaned cage {} ({}) and removed it",
        f.id,
        crate::units::count(n, "process")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
