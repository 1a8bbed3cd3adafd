//! `claude-cage reap [--dry-run]`: kill and remove orphaned cages (their supervisor is dead),
//! remove stale state files, and print one line per action. `run` reaps its own bot's orphans
//! before it starts a new cage (`registry::reap_bot`), so a crash never leaves garbage for long.

use crate::registry::{self, CageState};

/// The `reap` command; returns the exit status (1 if any action failed).
pub fn reap(dry_run: bool) -> i32 {
    let survey = match super::survey() {
        Ok(s) => s,
        Err(status) => return status,
    };
    let mut failed = false;
    for f in survey
        .cages
        .iter()
        .filter(|f| f.state == CageState::Orphaned)
    {
        match registry::reap_orphan(f, dry_run) {
            Ok(line) => println!("{line}"),
            Err(line) => {
                crate::error!("{line}");
                failed = true;
            }
        }
    }
    for p in &survey.stale {
        if dry_run {
            println!("would remove stale state file {p}");
        } else if p.remove().is_ok() {
            println!("removed stale state file {p}");
        }
    }
    super::report_untrusted(&survey);
    if failed {
        crate::exit::COMMAND_FAILED
    } else {
        0
    }
}
