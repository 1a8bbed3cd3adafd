//! `claude-cage subgroup [--name NAME] -- COMMAND...`: move this process into a child cgroup of
//! its own cgroup and exec COMMAND. A systemd service with `Delegate=` on systemd before 254
//! (which lacks `DelegateSubgroup=`) uses it so that the bot's own processes leave the service's
//! cgroup, where the kernel's no-internal-process rule would otherwise stop claude-cage from
//! enabling controllers for the cages.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use crate::cgroup::{Hierarchy, fs};
use crate::policy;

/// The command; returns only on failure.
pub fn subgroup(name: &str, command: &[OsString]) -> i32 {
    if let Err(e) = policy::check_name(name) {
        crate::error!("--name: {e}");
        return crate::exit::FAILURE;
    }
    let h = match Hierarchy::discover() {
        Ok(h) => h,
        Err(e) => {
            crate::error!("{e}");
            return crate::exit::FAILURE;
        }
    };
    if let Some(why) = h.read_only_problem() {
        crate::error!("{why}");
        return crate::exit::FAILURE;
    }
    let own = h.dir(&h.own);
    // Already there (a restart in the same process tree): nothing to move.
    if own.file_name().is_none_or(|n| n != name) {
        let target = own.join(name);
        if let Err(e) = std::fs::create_dir(&target) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                crate::error!("failed to create cgroup {}: {e}", target.display());
                return crate::exit::FAILURE;
            }
        }
        // Writing "0" moves the writing process (cgroup-v2.rst, cgroup.procs).
        if let Err(e) = fs::write(&target, fs::PROCS, "0") {
            crate::error!("{}", crate::error::error_chain(&e));
            return crate::exit::FAILURE;
        }
    }
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    crate::error!("failed to execute {}: {err}", command[0].to_string_lossy());
    if err.kind() == std::io::ErrorKind::NotFound {
        crate::exit::NOT_FOUND
    } else {
        crate::exit::NOT_EXECUTABLE
    }
}
