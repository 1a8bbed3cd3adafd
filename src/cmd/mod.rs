//! One module per subcommand.

pub mod check;
pub mod install_shim;
pub mod kill;
pub mod ps;
pub mod reap;
pub mod run;
pub mod subgroup;
