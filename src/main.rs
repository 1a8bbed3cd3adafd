//! The `claude-cage` binary: choose between shim mode and the command line, dispatch, and map
//! the outcome to an exit status. The engine is the library.
//!
//! `no_main`: Rust's runtime start-up sets SIGPIPE to "ignore", and an ignored signal stays
//! ignored across exec. The child must get the signal dispositions claude-cage was started
//! with, so the C `main` below is the entry point and the runtime's start-up does not run.
//!
//! Under `cfg(test)` (cargo builds a test harness for the binary with `--all-targets`) the
//! ordinary harness `main` is kept and this file defines no entry point.
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::{OsStr, c_char, c_int};
use std::io::Write;
use std::path::Path;

use clap::Parser;

use claude_cage::cli::{Cli, Command, Deferred, Generate};
use claude_cage::cmd::{check, install_shim, kill, ps, reap, run, subgroup};
use claude_cage::exit;

/// The file name that selects the command line; any other name is shim mode.
const OWN_NAME: &str = "claude-cage";

// SAFETY: this is the process's only `main` symbol (the crate is `no_main`), with the C
// signature the C runtime calls. On Linux with glibc, std reads the arguments and environment
// through its own `.init_array` hook, so `std::env` works without Rust's start-up code.
#[cfg(not(test))]
#[expect(
    unsafe_code,
    reason = "the process's C entry point must be an unmangled symbol named main"
)]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let code = real_main();
    let _ = std::io::stdout().flush();
    code
}

fn real_main() -> i32 {
    // Read first: a starter that dies later must not be confused with a reused pid.
    let starter = nix::unistd::getppid();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = Path::new(&argv0)
        .file_name()
        .unwrap_or(OsStr::new(OWN_NAME));
    if invoked_as != OWN_NAME {
        return run::shim(starter);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; a usage error means nothing was
            // started, which is claude-cage's own failure status.
            let _ = e.print();
            return if e.use_stderr() { exit::FAILURE } else { 0 };
        }
    };
    match cli.command {
        Command::Run(Deferred(a)) => run::run_cmd(*a, starter),
        Command::Ps(Deferred(a)) => match &a.top {
            Some(cage) => ps::top(cage, a.json),
            None => ps::ps(
                if a.json { ps::Format::Json } else { a.format },
                a.name.as_deref(),
            ),
        },
        Command::Kill(Deferred(a)) => {
            let signal = match a.signal.as_deref().map(kill::parse_signal).transpose() {
                Ok(s) => s,
                Err(e) => {
                    claude_cage::error!("{e}");
                    return exit::FAILURE;
                }
            };
            let target = if a.all {
                kill::Target::All
            } else if let Some(b) = a.name {
                kill::Target::Bot(b)
            } else {
                kill::Target::Ids(a.cages)
            };
            kill::kill_cmd(target, signal)
        }
        Command::Set(Deferred(a)) => claude_cage::cmd::set::set_cmd(
            match a.name {
                Some(b) => kill::Target::Bot(b),
                None => kill::Target::Ids(a.cages),
            },
            &claude_cage::cmd::set::Changes {
                memory_high: a.memory_high,
                memory_max: a.memory_max,
                pids_max: a.pids_max,
                cpu_max: a.cpu_max,
                cpu_weight: a.cpu_weight,
            },
        ),
        Command::Reap(Deferred(a)) => reap::reap(a.dry_run),
        Command::Check(Deferred(a)) => check::check(a.policy.as_deref(), a.unit.as_deref()),
        Command::Subgroup(Deferred(a)) => subgroup::subgroup(&a.name, &a.command),
        Command::Generate(g) => {
            use clap::CommandFactory;
            let mut out = std::io::stdout();
            let written = match g.what {
                Generate::Man { dir: None } => claude_cage::cmd::man::top(&mut out),
                Generate::Man { dir: Some(d) } => {
                    claude_cage::cmd::man::write_pages(&d).map(|pages| {
                        for p in pages {
                            println!("{}", p.display());
                        }
                    })
                }
                Generate::Completions { shell } => {
                    clap_complete::generate(shell, &mut Cli::command(), OWN_NAME, &mut out);
                    Ok(())
                }
            };
            match written {
                Ok(()) => 0,
                Err(e) => {
                    claude_cage::error!("failed to write: {e}");
                    exit::COMMAND_FAILED
                }
            }
        }
        Command::InstallShim(Deferred(a)) => match install_shim::install(&a) {
            Ok(link) => {
                println!("{}", link.display());
                0
            }
            Err(e) => {
                claude_cage::error!("{}", claude_cage::error::error_chain(&e));
                exit::COMMAND_FAILED
            }
        },
    }
}
