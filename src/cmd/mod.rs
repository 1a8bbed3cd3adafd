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

/// The cages a target names among those `keep` admits (`what` names them in errors: "cage",
/// "live cage"), and the exit status so far: 1 when a named cage is not there. `Err` with the
/// status when a bot has none.
fn select<'a>(
    survey: &'a Survey,
    target: &kill::Target,
    keep: impl Fn(&registry::Found) -> bool,
    what: &str,
) -> Result<(Vec<&'a registry::Found>, i32), i32> {
    let kept = || survey.cages.iter().filter(|f| keep(f));
    match target {
        kill::Target::All => Ok((kept().collect(), 0)),
        kill::Target::Bot(b) => {
            let v: Vec<_> = kept().filter(|f| &f.bot == b).collect();
            if v.is_empty() {
                crate::error!("no {what} of bot {b:?}");
                return Err(crate::exit::COMMAND_FAILED);
            }
            Ok((v, 0))
        }
        kill::Target::Ids(ids) => {
            let mut status = 0;
            let mut v = Vec::new();
            for id in ids {
                match kept().find(|f| &f.id == id) {
                    Some(f) => v.push(f),
                    None => {
                        crate::error!("no such {what}: {id} (see `claude-cage ps`)");
                        status = crate::exit::COMMAND_FAILED;
                    }
                }
            }
            Ok((v, status))
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
