//! One module per subcommand.

pub mod check;
pub mod install_shim;
pub mod kill;
pub mod man;
pub mod ps;
pub mod reap;
pub mod run;
pub mod set;
pub mod subgroup;

use crate::cgroup::Hierarchy;
use crate::registry::{self, Survey};

/// The live cages, for the operator commands; a missing cgroup v2 hierarchy is reported and
/// becomes the exit status.
fn survey() -> Result<Survey, i32> {
    match Hierarchy::discover() {
        Ok(h) => Ok(registry::survey(&h)),
        Err(e) => {
            crate::error!("{e}");
            Err(crate::exit::COMMAND_FAILED)
        }
    }
}

/// Warns of the state files the survey could not read or would not believe.
fn report_untrusted(survey: &Survey) {
    for (p, why) in &survey.unreadable {
        crate::warning!("unreadable state file {p}: {why}");
    }
    for (p, why) in &survey.untrusted {
        crate::warning!("ignored state file {p}: {why}");
    }
}
