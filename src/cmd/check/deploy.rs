//! The findings of `check` that catch what breaks a deployment rather than the host: the
//! backend `auto` picks and why, `[bot]` limits that backend cannot apply, the alert hook, the
//! events file's directory, and, with `--unit`, the service that will run claude-cage.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use super::Report;
use crate::backend;
use crate::cgroup::Hierarchy;
use crate::policy::{self, Policy};
use crate::trust::{Dir, Writers};

/// Who runs claude-cage: this process's user, or a service's `User=`.
pub(super) struct RunUser {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gids: Vec<u32>,
}

impl RunUser {
    /// The user this process runs as.
    pub(super) fn me() -> RunUser {
        let uid = Uid::effective();
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let mut gids: Vec<u32> = nix::unistd::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        gids.push(Gid::effective().as_raw());
        RunUser {
            name,
            uid: uid.as_raw(),
            gids,
        }
    }

    /// The user of that name (or uid), with its groups.
    fn named(name: &str) -> Option<RunUser> {
        let user = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten()?,
            Err(_) => User::from_name(name).ok().flatten()?,
        };
        let cname = std::ffi::CString::new(user.name.clone()).ok()?;
        let gids = nix::unistd::getgrouplist(&cname, user.gid)
            .unwrap_or_else(|_| vec![user.gid])
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Some(RunUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gids,
        })
    }

    /// Whether this user may write into (or execute, with `bits` 0o111) the file at `path`, by
    /// its owner, group and mode; root may write anything and execute anything with an x bit.
    fn may(&self, meta: &std::fs::Metadata, bits: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            return bits & 0o111 == 0 || mode & 0o111 != 0;
        }
        let shift = if meta.uid() == self.uid {
            6
        } else if self.gids.contains(&meta.gid()) {
            3
        } else {
            0
        };
        mode & ((bits & 0o7) << shift) != 0
    }
}

/// The backend a run picks here, and where the systemd backend puts the bot's cages.
pub(super) fn backend(r: &mut Report, h: &Hierarchy, policy: &Policy, fix: &str) {
    let (systemd, why) = backend::choice(policy, h);
    let name = if systemd { "systemd" } else { "cgroupfs" };
    r.ok(format!("backend {name}: {why}"));
    if !systemd {
        return;
    }
    if let Some(bot) = policy.name.as_deref() {
        r.ok(format!(
            "backend systemd: the bot's cages are scopes in its slice {}, which carries the [bot] limits",
            crate::cgroup::id::bot_slice(&policy.slice, bot)
        ));
    }
    if matches!(policy.backend, policy::Backend::Auto) && h.own.contains(".service") {
        r.note(format!(
            "cages will be transient scopes outside {}: if the service was meant to hold them, {fix}",
            h.own
        ));
    }
}

/// The alert hook: an executable file the run user may execute.
pub(super) fn hook(r: &mut Report, policy: &Policy, user: &RunUser) {
    let Some(program) = policy.alerts.exec.first() else {
        return;
    };
    let fix = "install the hook there (chmod 755, owned by root or the run user), or correct [alerts] exec";
    match std::fs::metadata(program) {
        Err(e) => r.problem(format!("alert hook {program}: {e}"), fix),
        Ok(m) if !m.is_file() => r.problem(format!("alert hook {program} is not a file"), fix),
        Ok(m) if !user.may(&m, 0o1) => r.problem(
            format!(
                "alert hook {program} is not executable by {} (mode {:o}, owner uid {})",
                user.name,
                m.mode() & 0o7777,
                m.uid()
            ),
            fix,
        ),
        Ok(_) => r.ok(format!(
            "alert hook {program} is executable by {}",
            user.name
        )),
    }
}

/// The events file: its directory must exist (or be creatable) and be writable by the run user,
/// and no other user may write any directory on its way (`run` refuses it then).
pub(super) fn events(r: &mut Report, policy: &Policy, user: &RunUser) {
    let Some(file) = policy.events_file.as_deref().filter(|f| *f != "-") else {
        return;
    };
    let path = std::env::current_dir()
        .map(|d| d.join(file))
        .unwrap_or_else(|_| PathBuf::from(file));
    let fix = format!(
        "in the bot's unit, LogsDirectory=claude-cage/<bot> with [events] file = \"/var/log/claude-cage/<bot>/events.jsonl\" (systemd makes that directory the service user's), or give the directory to {} (chown, mode 755)",
        user.name
    );
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if !m.file_type().is_file() {
            r.problem(
                format!("events file {file} is not a regular file (run refuses a link, a FIFO or a device)"),
                "remove it, or point [events] file at a regular file",
            );
            return;
        }
    }
    // The nearest directory that exists: the events directory, or where run would make it.
    let mut dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut missing = false;
    while !dir.as_os_str().is_empty() && !dir.exists() {
        missing = true;
        dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    // run's own rule (trust::Dir): every directory on the way is root's or the run user's, and
    // no other user can write it.
    let trusted = Dir::open(
        &dir,
        Writers {
            owners: &[user.uid],
            last: None,
        },
        None,
    );
    match std::fs::metadata(&dir) {
        Ok(m) if !user.may(&m, 0o2) => r.problem(
            format!(
                "events file {file}: {} is not writable by {}, who runs claude-cage",
                dir.display(),
                user.name
            ),
            fix,
        ),
        Ok(_) => match trusted {
            Err(e) => r.problem(format!("events file {file}: run refuses it: {e}"), fix),
            Ok(_) if missing => r.ok(format!(
                "events file {file}: its directory will be made in {}, writable by {}",
                dir.display(),
                user.name
            )),
            Ok(_) => r.ok(format!(
                "events file {file}: {} is writable by {}",
                dir.display(),
                user.name
            )),
        },
        Err(e) => r.problem(format!("events file {file}: {e}"), fix),
    }
}

/// What `systemctl show` says of a unit.
pub(super) struct Unit {
    pub(super) name: String,
    /// The cgroup its main process runs in, relative to the cgroup2 mount, when it runs.
    pub(super) cgroup: Option<String>,
    pub(super) user: RunUser,
    pub(super) delegate: bool,
}

/// Reads the unit `name` from the system service manager; `None` (with a PROBLEM) when there
/// is none.
pub(super) fn unit(r: &mut Report, name: &str) -> Option<Unit> {
    let out = Command::new("systemctl")
        .args([
            "show",
            "--property=LoadState,ActiveState,MainPID,User,Delegate",
            "--",
            name,
        ])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            r.problem(
                format!(
                    "systemctl show {name}: {}",
                    String::from_utf8_lossy(&o.stderr)
                        .trim()
                        .lines()
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                "name a unit of the system service manager (systemctl list-units)",
            );
            return None;
        }
        Err(e) => {
            r.problem(
                format!("systemctl show {name}: {e}"),
                "run check --unit on a host that systemd runs",
            );
            return None;
        }
    };
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    if get("LoadState") != "loaded" {
        r.problem(
            format!("unit {name} is not loaded ({})", get("LoadState")),
            "install its unit file and `systemctl daemon-reload`",
        );
        return None;
    }
    let user_name = match get("User").as_str() {
        "" => "root".to_owned(),
        u => u.to_owned(),
    };
    let Some(user) = RunUser::named(&user_name) else {
        r.problem(
            format!("unit {name} runs as User={user_name}, which does not exist"),
            format!("create the user (useradd --system {user_name})"),
        );
        return None;
    };
    let pid: u32 = get("MainPID").parse().unwrap_or(0);
    let cgroup = (get("ActiveState") == "active" && pid > 0)
        .then(|| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
        .flatten()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        });
    let delegate = get("Delegate") == "yes";
    r.ok(format!(
        "unit {name}: runs as {}, Delegate={}",
        user.name,
        if delegate { "yes" } else { "no" }
    ));
    match &cgroup {
        Some(c) => r.ok(format!(
            "unit {name}: its main process runs in cgroup {c}; the findings below are for it"
        )),
        None => r.note(format!(
            "unit {name} is not running: start it and check again to judge its cgroup; the findings below are for this shell's"
        )),
    }
    Some(Unit {
        name: name.to_owned(),
        cgroup,
        user,
        delegate,
    })
}
