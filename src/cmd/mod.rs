//! One module per subcommand.

pub mod install_shim;
pub mod run;
