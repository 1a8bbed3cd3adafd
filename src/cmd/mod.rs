//! One module per subcommand.

pub mod check;
pub mod install_shim;
pub mod kill;
pub mod ps;
pub mod reap;
pub mod run;
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
