//! `claude-cage kill CAGE... | --name BOT | --all [--signal SIG]`: by default the whole cage at
//! once. A live supervisor is asked to do it (a real-time signal), so that it reports the reason
//! `killed` and exits 137; an orphaned cage is killed and removed directly. With `--signal`, that
//! signal goes to every process in the cage. Only claude-cage's cages are ever touched.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroup::{Cage, fs};
use crate::registry::{self, CageState, Found};
use crate::state;
use crate::sys;

/// How long `kill` waits for a supervisor to end its cage.
const WAIT: Duration = Duration::from_secs(10);

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
    let mut status = 0;
    let chosen: Vec<&Found> = match &target {
        Target::All => survey.cages.iter().collect(),
        Target::Bot(b) => {
            let v: Vec<&Found> = survey.cages.iter().filter(|f| &f.bot == b).collect();
            if v.is_empty() {
                crate::say!("claude-cage: no live cage of bot {b:?}");
                return crate::exit::COMMAND_FAILED;
            }
            v
        }
        Target::Ids(ids) => {
            let mut v = Vec::new();
            for id in ids {
                match survey.cages.iter().find(|f| &f.id == id) {
                    Some(f) => v.push(f),
                    None => {
                        crate::say!("claude-cage: no such cage: {id} (see `claude-cage ps`)");
                        status = crate::exit::COMMAND_FAILED;
                    }
                }
            }
            v
        }
    };
    for f in chosen {
        let result = match signal {
            Some(sig) => signal_all(f, sig),
            None => kill_whole(f),
        };
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                crate::say!("claude-cage: {e}");
                status = crate::exit::COMMAND_FAILED;
            }
        }
    }
    status
}

/// Sends `sig` to every process in the cage, nested cgroups included.
fn signal_all(f: &Found, sig: Signal) -> Result<String, String> {
    let mut n = 0;
    for d in fs::member_dirs(&f.dir) {
        for pid in fs::pids(&fs::read(&d, fs::PROCS).unwrap_or_default()) {
            if kill(Pid::from_raw(pid), sig).is_ok() {
                n += 1;
            }
        }
    }
    Ok(format!(
        "sent {sig} to {} in cage {}",
        crate::units::count(n, "process"),
        f.id
    ))
}

/// Kills the whole cage: through its supervisor when it is alive, directly otherwise.
fn kill_whole(f: &Found) -> Result<String, String> {
    // The supervisor: the one its state file names (pid and start time), or, for a cage still
    // setting up (no state file yet), the live process whose pid the cage id carries.
    let supervisor = match (&f.record, f.state) {
        (Some(r), _) if state::supervisor_alive(r) => Some(Pid::from_raw(r.supervisor_pid)),
        (None, CageState::Starting) => registry::split_id(&f.id).map(|(_, pid)| Pid::from_raw(pid)),
        _ => None,
    };
    if let Some(pid) = supervisor {
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| format!("failed to watch the supervisor of {}: {e}", f.id))?;
        // Checked again after opening the pidfd: the pidfd then names the very process that
        // was identified, not a later one with its pid.
        let still = match &f.record {
            Some(r) => state::supervisor_alive(r),
            None => registry::survey_bot(&f.bot_dir())
                .iter()
                .any(|g| g.id == f.id && g.state == CageState::Starting),
        };
        if still {
            sys::send_raw_signal(pid, sys::kill_request_signal()).map_err(|e| {
                format!(
                    "failed to signal the supervisor of {} (pid {pid}): {e}",
                    f.id
                )
            })?;
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(WAIT.as_millis() as i32).unwrap_or(PollTimeout::MAX);
            if poll(&mut fds, ms).unwrap_or(0) == 1 {
                return Ok(format!("killed cage {}", f.id));
            }
            return Err(format!(
                "the supervisor of {} (pid {pid}) did not end within {}s",
                f.id,
                WAIT.as_secs()
            ));
        }
    }
    let cage = Cage::at(f.dir.clone());
    let n = cage
        .kill_and_remove(WAIT)
        .map_err(|e| format!("failed to kill {}: {}", f.id, super::run::error_chain(&e)))?;
    if let Some(p) = &f.state_path {
        let _ = std::fs::remove_file(p);
    }
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
