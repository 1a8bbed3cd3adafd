//! The command line, as clap derive definitions only; the `///` comments are the help text.
//! Written for a terminal, not for rustdoc: `<NAME>` and `[lifetime]` there are help text.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};

/// Run every Claude Code child process in its own cgroup v2 cage: memory, pids and CPU limits
/// from a per-bot policy, the whole process tree killed when it ends, and one plain line on
/// stderr saying why it died.
///
/// Invoked under any other file name (a symlink named `claude`, see `install-shim`), it behaves
/// as `claude-cage run -- <program> ARGS...` and passes every argument to the program.
#[derive(Debug, Parser)]
#[command(name = "claude-cage", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Each one's arguments are [`Deferred`]: parsing a command line builds only
/// the subcommand it names.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run PROGRAM in a new cage and exit with its status.
    ///
    /// Exit status: the child's own; 128+N if a signal N killed it (137 for an OOM kill); 124
    /// when max-runtime, stdin-eof-grace or idle-timeout ran out; 125 when claude-cage itself failed and
    /// nothing was started; 126 / 127 when PROGRAM cannot be executed / is not found.
    Run(Deferred<Box<RunArgs>>),
    /// Create the shim: a symlink named `claude` to this executable, in DIR.
    ///
    /// Point the Python SDK's `cli_path` (or any host that can only name an executable) at the
    /// symlink. The policy then comes from $CLAUDE_CAGE_POLICY, else
    /// $XDG_CONFIG_HOME/claude-cage/policy.toml (~/.config/claude-cage/policy.toml), else
    /// /etc/claude-cage/policy.toml, else the built-in default.
    InstallShim(Deferred<InstallShimArgs>),
    /// List live cages: id, bot, child pid, age, memory, pids, throttling, OOM kills, state.
    Ps(Deferred<PsArgs>),
    /// Kill cages: the whole cage at once (its supervisor exits 137, reason `killed`).
    Kill(Deferred<KillArgs>),
    /// Change the limits of live cages, like `systemctl set-property`.
    ///
    /// The values pass the policy's rules first; nothing is written unless all are valid (exit
    /// 125). Each cage's supervisor writes a `limits-changed` event. Exit status 0, or 1 when a
    /// named cage is not live or a write failed.
    Set(Deferred<SetArgs>),
    /// Kill and remove orphaned cages (their supervisor is dead) and stale state files.
    Reap(Deferred<ReapArgs>),
    /// Check this host and a policy: cgroup v2, controllers, delegation, kernel features.
    ///
    /// Exit status 0 when a run with the policy would enforce everything it requires, 1
    /// otherwise.
    Check(Deferred<CheckArgs>),
    /// Move this process into a child cgroup of its own cgroup, then run COMMAND.
    ///
    /// For a systemd service with `Delegate=` on systemd before 254 (no `DelegateSubgroup=`):
    /// `ExecStart=/usr/bin/claude-cage subgroup -- /usr/bin/my-bot` keeps the bot's own
    /// processes out of the cgroup where its cages go.
    Subgroup(Deferred<SubgroupArgs>),
    /// Print the man page or shell completions.
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct SubgroupArgs {
    /// The child cgroup's name.
    #[arg(long, default_value = "supervisor", value_name = "NAME")]
    pub name: String,
    /// The command to run there.
    #[arg(value_name = "COMMAND", trailing_var_arg = true, required = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// The man pages, in roff: claude-cage(1) on stdout, or with --dir every page
    /// (claude-cage.1 and claude-cage-SUBCOMMAND.1) written into DIR.
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Completions for a shell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Print a JSON array with full values (bytes, seconds).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only the cages of this bot.
    #[arg(long, value_name = "BOT")]
    pub name: Option<String>,
    /// Who holds the memory of this cage: its largest processes by resident memory and the
    /// main lines of its memory.stat, read now (with --json, as JSON).
    #[arg(long, value_name = "CAGE", conflicts_with_all = ["name", "format"])]
    pub top: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["cages", "name", "all"])))]
pub struct KillArgs {
    /// Cage ids, as `ps` shows them.
    #[arg(value_name = "CAGE")]
    pub cages: Vec<String>,
    /// Every cage of this bot.
    #[arg(long, value_name = "BOT")]
    pub name: Option<String>,
    /// Every cage.
    #[arg(long)]
    pub all: bool,
    /// Send this signal (TERM, SIGUSR1, 15, ...) to every process in the cage instead.
    #[arg(long, value_name = "SIG")]
    pub signal: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["cages", "name"])))]
#[command(group(clap::ArgGroup::new("limits").required(true).multiple(true).args(["memory_high", "memory_max", "pids_max", "cpu_max", "cpu_weight"])))]
pub struct SetArgs {
    /// Cage ids, as `ps` shows them.
    #[arg(value_name = "CAGE")]
    pub cages: Vec<String>,
    /// Every live cage of this bot.
    #[arg(long, value_name = "BOT")]
    pub name: Option<String>,
    /// memory.high (e.g. 3G, 512M, max).
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// memory.max (e.g. 4G, max).
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// pids.max (a number, or max).
    #[arg(long, value_name = "N")]
    pub pids_max: Option<String>,
    /// cpu.max as a share of one CPU (e.g. 150%, max).
    #[arg(long, value_name = "PERCENT")]
    pub cpu_max: Option<String>,
    /// cpu.weight, 1 to 10000.
    #[arg(long, value_name = "W")]
    pub cpu_weight: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Print what would be done, do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy to check (default: the built-in default policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Check for this systemd service (its cgroup, its User=, its Delegate=) rather than for
    /// this shell: the service must be running for its cgroup to be judged.
    #[arg(long, value_name = "NAME")]
    pub unit: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy file (TOML). Without it, the built-in default policy applies.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The bot's name: cages go in <parent>/<NAME>/. Default: the policy's, else the program's
    /// file name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Where the bot's cgroup goes: "auto", or a cgroup path relative to the cgroup2 mount
    /// such as "/bots".
    #[arg(long, value_name = "CGROUP")]
    pub parent: Option<String>,
    /// Throttle the cage above this much memory (e.g. 3G, 512M, 25%, max).
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// OOM-kill the cage above this much memory (e.g. 4G, 50%, max).
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// The most processes and threads the cage may hold (or "max").
    #[arg(long, value_name = "N")]
    pub pids_max: Option<String>,
    /// Kill the cage after this long (e.g. 30m, 4h); exit 124.
    #[arg(long, value_name = "DURATION")]
    pub max_runtime: Option<String>,
    /// Kill the cage once its CPU use has stayed below [lifetime] idle-cpu (0.5% of one CPU by
    /// default) for this long (e.g. 30m); exit 124.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Once stdin (a pipe or socket) is closed by every writer, kill the cage after this long;
    /// exit 124.
    #[arg(long, value_name = "DURATION")]
    pub stdin_eof_grace: Option<String>,
    /// After forwarding SIGTERM, SIGINT or SIGHUP, kill the cage after this long (default 3s).
    #[arg(long, value_name = "DURATION")]
    pub term_grace: Option<String>,
    /// Append events as JSON lines to FILE ("-" for stderr).
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// The program and its arguments. Without them, the policy's `program`.
    #[arg(value_name = "PROGRAM", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct InstallShimArgs {
    /// Where to create the symlink `claude` (created if missing). Default:
    /// /usr/local/lib/claude-cage as root, ~/.local/lib/claude-cage otherwise.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace an existing `claude` in DIR.
    #[arg(long)]
    pub force: bool,
}

/// `ps` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Prometheus,
}

/// A subcommand's arguments, added to its `clap::Command` only when clap builds that subcommand
/// (`Command::defer`): to parse it, or for its help, man page or completions. Without it,
/// parsing any command line builds every subcommand's arguments: a tenth of the code
/// `claude-cage --version` runs, and a twenty-fifth of what `run` runs before it reads the
/// policy (translated blocks under QEMU, where code run once costs most; docs/benchmarks.md).
/// The pattern `Deferred(args)` takes them.
#[derive(Debug)]
pub struct Deferred<T>(pub T);

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Deferred)
    }
    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Deferred)
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// A subcommand's arguments exist once clap builds it, not before: parsing one command line
    /// builds only the subcommand it names.
    #[test]
    fn a_subcommand_gets_its_arguments_when_built_and_only_then() {
        let cli = Cli::command();
        let set = cli.find_subcommand("set").unwrap();
        assert_eq!(
            set.get_arguments().count(),
            0,
            "built before it was asked for"
        );
        assert!(set.get_about().is_some(), "the about line is set at once");
        let mut built = Cli::command();
        built.build();
        for sub in built.get_subcommands() {
            assert!(
                sub.has_subcommands()
                    || sub
                        .get_arguments()
                        .any(|a| !a.is_global_set() && a.get_id() != "help"),
                "{} has no arguments once built",
                sub.get_name()
            );
        }
    }

    /// Each subcommand parses into its arguments through the wrapper.
    #[test]
    fn subcommands_parse_through_the_deferred_arguments() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        match parse(&["claude-cage", "set", "--name", "b", "--memory-max", "1G"]).unwrap() {
            Command::Set(Deferred(a)) => {
                assert_eq!(a.name.as_deref(), Some("b"));
                assert_eq!(a.memory_max.as_deref(), Some("1G"));
            }
            c => panic!("{c:?}"),
        }
        match parse(&[
            "claude-cage",
            "run",
            "--policy",
            "p.toml",
            "--",
            "true",
            "-x",
        ])
        .unwrap()
        {
            Command::Run(Deferred(a)) => {
                assert_eq!(a.policy.as_deref(), Some(std::path::Path::new("p.toml")));
                assert_eq!(a.command, ["true", "-x"]);
            }
            c => panic!("{c:?}"),
        }
        let e = parse(&["claude-cage", "kill", "--bogus"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let e = parse(&["claude-cage", "set", "--name", "b"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
