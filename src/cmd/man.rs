//! The man pages: `claude-cage(1)` and one page per subcommand (`claude-cage-run(1)`, ...), from
//! the command line's own definitions (clap_mangen) with the sections clap does not know: the
//! exit statuses, the files, and where the policy keys are.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::Cli;

/// Where the package installs the documentation.
const DOCS: &str = "/usr/share/doc/claude-cage/docs";

/// The exit statuses of a subcommand ("" for the top page), as (status, meaning).
fn exit_statuses(sub: &str) -> Vec<(&'static str, &'static str)> {
    match sub {
        "run" | "" => vec![
            ("N", "the child exited with status N"),
            (
                "128+N",
                "a signal N killed the child (137: the kernel OOM killer, an operator's kill, or the cage killed after term-grace)",
            ),
            (
                "124",
                "max-runtime or stdin-eof-grace ran out, or the cage was idle for idle-timeout; the cage was killed",
            ),
            (
                "125",
                "claude-cage itself failed (a bad policy or flag, cgroup set-up, a refused events file) and nothing was started",
            ),
            ("126", "PROGRAM was found but cannot be executed"),
            ("127", "PROGRAM was not found"),
        ],
        "check" => vec![
            (
                "0",
                "a run with the policy would enforce everything it requires",
            ),
            ("1", "at least one PROBLEM"),
        ],
        "ps" | "reap" => vec![
            ("0", "done"),
            (
                "1",
                "the cgroup v2 hierarchy could not be read, or a cage could not be reaped",
            ),
        ],
        "set" => vec![
            ("0", "every named cage was changed"),
            ("1", "a named cage is not live, or a write failed"),
            ("125", "a value is invalid; nothing was changed"),
        ],
        "kill" => vec![
            ("0", "every named cage was killed"),
            ("1", "a named cage does not exist or could not be killed"),
        ],
        "install-shim" => vec![
            ("0", "the link was made; its path is printed"),
            (
                "1",
                "it could not be made (an existing file without --force)",
            ),
        ],
        "subgroup" => vec![
            ("125", "the cgroup could not be made or entered"),
            ("126, 127", "COMMAND cannot be executed, or is not found"),
            (
                "",
                "otherwise COMMAND replaces claude-cage, and its status is its own",
            ),
        ],
        _ => vec![],
    }
}

fn sections(roff: &mut Roff, sub: &str) {
    let statuses = exit_statuses(sub);
    if !statuses.is_empty() {
        roff.control("SH", ["EXIT STATUS"]);
        if sub.is_empty() {
            roff.text([roman("Of claude-cage run (and shim mode):")]);
        }
        for (status, meaning) in statuses {
            roff.control("TP", []);
            roff.text([bold(status)]);
            roff.text([roman(meaning)]);
        }
    }
    roff.control("SH", ["FILES"]);
    for (file, what) in [
        (
            "/etc/claude-cage/*.toml",
            "policies (see policy.md below for every key); root refuses one that another user can write",
        ),
        (
            "/run/claude-cage/",
            "root's state directory: a record per live cage and a tally per bot; a user's is $XDG_RUNTIME_DIR/claude-cage or /tmp/claude-cage-UID",
        ),
        (
            "/lib/systemd/system/claude-cage-reap.timer",
            "reaps orphaned cages every minute",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(file)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut see: Vec<String> = ["claude-cage(1)"]
        .into_iter()
        .chain(
            Cli::command()
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .map(|c| format!("claude-cage-{}(1)", c.get_name()))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        )
        .filter(|p| {
            *p != format!("claude-cage-{sub}(1)") && !(sub.is_empty() && *p == "claude-cage(1)")
        })
        .map(str::to_owned)
        .collect();
    see.push("systemd.resource-control(5)".to_owned());
    roff.text([roman(see.join(", "))]);
    roff.control("PP", []);
    roff.text([roman(format!(
        "{DOCS}/quickstart.md (from install to caged bots), policy.md (every policy key), events.md (the events file), operations.md (ps, kill, reap, check, alerts, metrics), systemd.md, agent-sdk.md, security.md."
    ))]);
}

/// Renders the page of `cmd` (`sub` its subcommand's name, "" for the top page).
fn render(cmd: clap::Command, sub: &str, w: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if sub.is_empty() {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::default();
    sections(&mut roff, sub);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// Writes the top page to `w`.
pub fn top(w: &mut dyn Write) -> io::Result<()> {
    render(Cli::command(), "", w)
}

/// Writes `claude-cage.1` and `claude-cage-<subcommand>.1` for each subcommand into `dir`;
/// returns their paths.
pub fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    let mut page = |name: String, cmd: clap::Command, sub: &str| -> io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut f = std::fs::File::create(&path)?;
        render(cmd, sub, &mut f)?;
        f.flush()?;
        written.push(path);
        Ok(())
    };
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("claude-cage-{}", sub.get_name());
        let cmd = sub
            .clone()
            .version(env!("CARGO_PKG_VERSION"))
            .display_name(name.clone())
            .bin_name(format!("claude-cage {}", sub.get_name()));
        page(name, cmd, sub.get_name())?;
    }
    page("claude-cage".to_owned(), cli.clone(), "")?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page for each subcommand, each with its options and exit statuses; the top page lists
    /// the subcommands.
    #[test]
    fn a_page_per_subcommand_with_options_and_exit_statuses() {
        let dir = std::env::temp_dir().join(format!("claude-cage-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pages = write_pages(&dir).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        let run = read("claude-cage-run.1");
        let check = read("claude-cage-check.1");
        let top = read("claude-cage.1");
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for n in [
            "claude-cage.1",
            "claude-cage-run.1",
            "claude-cage-ps.1",
            "claude-cage-kill.1",
            "claude-cage-reap.1",
            "claude-cage-check.1",
            "claude-cage-install-shim.1",
            "claude-cage-subgroup.1",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        assert!(
            run.contains("\\-\\-max\\-runtime") && run.contains(".SH \"EXIT STATUS\""),
            "{run}"
        );
        assert!(run.contains("stdin\\-eof\\-grace ran out"), "{run}");
        assert!(check.contains("\\-\\-unit"), "{check}");
        assert!(top.contains("claude\\-cage\\-run(1)"), "{top}");
    }
}
