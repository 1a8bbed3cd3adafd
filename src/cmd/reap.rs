//! `claude-cage reap [--dry-run]`: kill and remove orphaned cages (their supervisor is dead),
//! remove stale state files, and print one line per action. `run` calls [`reap_bot`] for its own
//! bot before it starts a new cage, so a crash never leaves garbage for long.

use std::time::Duration;

use crate::cgroup::Cage;
use crate::registry::{self, CageState, Found};

/// How long to wait for an orphaned cage to empty after its kill.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills and removes one orphaned cage and its state file; returns the line to print.
pub fn reap_one(found: &Found, dry_run: bool) -> Result<String, String> {
    if dry_run {
        return Ok(format!(
            "would reap orphaned cage {} ({}) in {}",
            found.id,
            crate::units::count(Cage::at(found.dir.clone()).process_count(), "process"),
            found.dir.display()
        ));
    }
    let n = registry::dispose(found, EMPTY_TIMEOUT).map_err(|e| {
        format!(
            "failed to reap {}: {}",
            found.id,
            crate::error::error_chain(&e)
        )
    })?;
    Ok(format!(
        "reaped orphaned cage {}: killed {}, removed {}",
        found.id,
        crate::units::count(n, "process"),
        found.dir.display()
    ))
}

/// Reaps the orphans of one bot; returns the lines describing what was done.
pub fn reap_bot(bot_dir: &std::path::Path) -> Vec<String> {
    registry::survey_bot(bot_dir)
        .iter()
        .filter(|f| f.state == CageState::Orphaned)
        .map(|f| reap_one(f, false).unwrap_or_else(|e| e))
        .collect()
}

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
        match reap_one(f, dry_run) {
            Ok(line) => println!("{line}"),
            Err(line) => {
                crate::error!("{line}");
                failed = true;
            }
        }
    }
    for p in &survey.stale {
        if dry_run {
            println!("would remove stale state file {}", p.display());
        } else if std::fs::remove_file(p).is_ok() {
            println!("removed stale state file {}", p.display());
        }
    }
    for (p, why) in &survey.unreadable {
        crate::warning!("unreadable state file {}: {why}", p.display());
    }
    if failed {
        crate::exit::COMMAND_FAILED
    } else {
        0
    }
}
