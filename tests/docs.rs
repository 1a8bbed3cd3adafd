//! The docs as shipped: every relative link of the README and of `docs/` leads to a file, both
//! in the source tree and where the Debian package installs them (`[package.metadata.deb]
//! assets` in Cargo.toml), so that a reader of `/usr/share/doc/claude-cage` never follows a
//! broken link; and every page of `docs/` is in the package.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The package's files: (source path relative to the tree, installed path).
fn installed() -> Vec<(PathBuf, PathBuf)> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let cargo: toml::Value = toml::from_str(&text).unwrap();
    let assets = cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("[package.metadata.deb] assets");
    let mut out = Vec::new();
    for a in assets {
        let a = a.as_array().unwrap();
        let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        if src.starts_with("target/") {
            continue;
        }
        let files: Vec<PathBuf> = match src.rsplit_once("/*") {
            Some((dir, ext)) => std::fs::read_dir(root().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(ext))
                .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
                .collect(),
            None => vec![PathBuf::from(src)],
        };
        for f in files {
            let to = if dest.ends_with('/') {
                Path::new("/").join(dest).join(f.file_name().unwrap())
            } else {
                Path::new("/").join(dest)
            };
            out.push((f, to));
        }
    }
    out
}

/// `a/b/../c` → `a/c`.
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The relative links of a Markdown text, without their anchors.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        let target = target.split('#').next().unwrap();
        if !target.is_empty() && !target.contains(':') && !target.contains(' ') {
            out.push(target.to_owned());
        }
    }
    out
}

#[test]
fn every_link_of_the_docs_works_in_the_tree_and_as_installed() {
    let files = installed();
    let targets: BTreeSet<PathBuf> = files.iter().map(|(_, to)| to.clone()).collect();
    let mut pages: Vec<PathBuf> = vec![PathBuf::from("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            pages.push(p.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let Some((_, at)) = files.iter().find(|(src, _)| src == page) else {
            broken.push(format!("{} is not in the package", page.display()));
            continue;
        };
        let text = std::fs::read_to_string(root().join(page)).unwrap();
        for link in links(&text) {
            let in_tree = normal(&page.parent().unwrap().join(&link));
            if !root().join(&in_tree).exists() {
                broken.push(format!("{}: {link} does not exist", page.display()));
            }
            let there = normal(&at.parent().unwrap().join(&link));
            let dir_of_installed = targets.iter().any(|t| t.starts_with(&there));
            if !dir_of_installed {
                broken.push(format!(
                    "{}: {link} is not installed ({} is not in the package)",
                    page.display(),
                    there.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The fenced block after each `<!-- file: PATH -->` of a page: (PATH, the block's text).
fn shipped_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let Some(path) = l
            .strip_prefix("<!-- file: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a fenced block after the marker");
        assert!(fence.starts_with("```"), "no fenced block after {l}");
        let mut body = String::new();
        for b in lines.by_ref() {
            if b == "```" {
                break;
            }
            body.push_str(b);
            body.push('\n');
        }
        out.push((path.to_owned(), body));
    }
    out
}

/// The quick start works as copied: every file it shows is the file the package ships (the
/// same text), every policy it ships is valid, its hook and units are in the package, and every
/// shipped path it tells the reader to copy from exists there.
#[test]
fn the_quick_start_shows_the_files_the_package_ships() {
    let text = std::fs::read_to_string(root().join("docs/quickstart.md")).unwrap();
    let blocks = shipped_blocks(&text);
    assert!(blocks.len() >= 2, "the quick start shows no shipped file");
    for (path, body) in &blocks {
        let shipped = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|e| panic!("docs/quickstart.md shows {path}: {e}"));
        assert_eq!(
            &shipped, body,
            "docs/quickstart.md's {path} differs from the file"
        );
    }
    let files = installed();
    let installed_at = |src: &str| {
        files
            .iter()
            .find(|(s, _)| s == Path::new(src))
            .map(|(_, to)| to.clone())
    };
    for bot in ["ts-bot", "py-bot"] {
        let policy = format!("policies/{bot}.toml");
        let text = std::fs::read_to_string(root().join(&policy)).unwrap();
        let p = claude_cage::policy::parse(
            &text,
            &policy,
            &claude_cage::policy::Overrides::default(),
            16 << 30,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name.as_deref(), Some(bot));
        let hook = &p.alerts.exec[0];
        let shipped_hook = installed_at("packaging/hooks/webhook").expect("the hook is packaged");
        assert!(
            files.iter().any(|(_, to)| to == Path::new(hook)),
            "{policy}'s hook {hook} is not installed by the package (it installs the hook at {})",
            shipped_hook.display()
        );
        assert_eq!(
            p.events_file.as_deref(),
            Some(format!("/var/log/claude-cage/{bot}/events.jsonl").as_str())
        );
        let unit = format!("packaging/systemd/{bot}.service");
        let unit_text = std::fs::read_to_string(root().join(&unit)).unwrap();
        assert!(
            unit_text.contains(&format!("\nLogsDirectory=claude-cage/{bot}\n")),
            "{unit} does not make the policy's events directory"
        );
        assert!(
            unit_text.contains("\nDelegate="),
            "{unit} delegates nothing"
        );
        for src in [policy.as_str(), unit.as_str()] {
            assert!(installed_at(src).is_some(), "{src} is not in the package");
        }
    }
    for bot in [
        "packaging/bots/ts-bot/bot.mjs",
        "packaging/bots/py-bot/bot.py",
    ] {
        assert!(installed_at(bot).is_some(), "{bot} is not in the package");
    }
    // Every `$d/<path>` the reader copies from is a file the package installs there.
    for word in text.split_whitespace() {
        if let Some(rel) = word.strip_prefix("$d/") {
            let at = Path::new("/usr/share/doc/claude-cage").join(rel);
            assert!(
                files.iter().any(|(_, to)| *to == at),
                "docs/quickstart.md copies {} , which the package does not install",
                at.display()
            );
        }
    }
}

/// The quick start's commands from section 2 on are what tests/systemd/bots runs in a Debian
/// guest (each line of each `sh` block appears in its scenario), but for the few a guest
/// without network or a real webhook must do otherwise, each named here with what it does
/// instead.
#[test]
fn the_quick_start_commands_are_the_ones_the_guest_runs() {
    let text = std::fs::read_to_string(root().join("docs/quickstart.md")).unwrap();
    let scenario =
        std::fs::read_to_string(root().join("tests/systemd/bots/10-quickstart-bots.sh")).unwrap();
    // (the line, what the guest does instead)
    let instead = [
        (
            "apt-get install -y nodejs npm python3-venv",
            "tests/systemd/bots/suite.conf: the packages are in the image's root",
        ),
        (
            "(cd /opt/ts-bot && npm install @anthropic-ai/claude-agent-sdk)",
            "tests/systemd/bots/image: npm install on the host, copied in",
        ),
        (
            "python3 -m venv /opt/py-bot/venv && /opt/py-bot/venv/bin/pip install claude-agent-sdk",
            "tests/systemd/bots/image: the venv made in the image from wheels fetched on the host",
        ),
        (
            "echo 'WEBHOOK_URL=https://hooks.example.com/claude-cage' >/etc/claude-cage/$b.webhook",
            "the URL of the scenario's local listener",
        ),
        (
            "echo 'ANTHROPIC_API_KEY=sk-ant-...' >/etc/$b/env && chmod 0600 /etc/$b/env",
            "the stand-in API's URL and a test key in the same file, mode 0600",
        ),
    ];
    let start = text.find("\n## 2.").expect("a section 2");
    let mut in_sh = false;
    let mut missing = Vec::new();
    let mut used = vec![false; instead.len()];
    for l in text[start..].lines() {
        match l {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            _ if in_sh => {
                let line = l.trim();
                if line.is_empty() {
                    continue;
                }
                if let Some(i) = instead.iter().position(|(d, _)| *d == line) {
                    used[i] = true;
                } else if !scenario.lines().any(|s| s.contains(line)) {
                    missing.push(line.to_owned());
                }
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "commands of docs/quickstart.md that tests/systemd/bots/10-quickstart-bots.sh does not run:\n{}",
        missing.join("\n")
    );
    for (i, (line, why)) in instead.iter().enumerate() {
        assert!(
            used[i],
            "the exception for `{line}` ({why}) is no longer in docs/quickstart.md"
        );
    }
}

/// Every policy shown in docs/containers.md is valid, and sets the parent the page asks for.
#[test]
fn the_container_policies_are_valid() {
    let text = std::fs::read_to_string(root().join("docs/containers.md")).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for l in text.lines() {
        match (&mut cur, l) {
            (None, "```toml") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), _) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    assert!(!blocks.is_empty(), "docs/containers.md shows no policy");
    for b in &blocks {
        let p = claude_cage::policy::parse(
            b,
            "docs/containers.md",
            &claude_cage::policy::Overrides::default(),
            16 << 30,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.parent, claude_cage::policy::Parent::Path("/".into()));
    }
}

/// The Podman command of docs/containers.md uses only flags that tests/systemd/podman runs.
#[test]
fn the_podman_recipe_is_the_one_the_guest_runs() {
    let text = std::fs::read_to_string(root().join("docs/containers.md")).unwrap();
    let scenario =
        std::fs::read_to_string(root().join("tests/systemd/podman/10-podman.sh")).unwrap();
    let section = &text[text.find("## Podman").expect("a Podman section")..];
    let command: String = section
        .lines()
        .skip_while(|l| *l != "```")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(command.starts_with("podman run "), "{command}");
    let flags: Vec<&str> = command
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.contains(&"--systemd=always"), "{command}");
    for f in flags {
        let name = f.split('=').next().unwrap();
        assert!(
            scenario.contains(f) || scenario.contains(&format!("{name} ")),
            "docs/containers.md's Podman command uses {f}, which tests/systemd/podman does not"
        );
    }
    assert!(
        command.contains("claude-cage subgroup -- "),
        "the Podman command's entry point: {command}"
    );
}
