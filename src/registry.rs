//! Finding live cages for the operator commands: cages are found in the cgroup tree (a
//! directory `<bot>-<pid>-<n>` inside a directory `<bot>`), and joined with their state files.
//! Whether a cage's supervisor is alive is decided by pid AND start time, because pids are
//! reused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;

use crate::cgroup::id::{cage_pid, scope_cage_id, split_id};
use crate::cgroup::{Cage, CgroupError, Hierarchy, fs};
use crate::state::{self, Origin, Record, StateFile};

/// What a cage is doing, as far as claude-cage can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CageState {
    /// Its supervisor is alive and the child's cgroup holds processes.
    Running,
    /// Its supervisor is alive and ending it.
    Stopping,
    /// Its supervisor is gone: `reap` kills and removes it.
    Orphaned,
    /// No state file yet, and the pid in its id is a live process started before the cage: a
    /// `run` that is still setting up. Left alone.
    Starting,
    /// Shaped like a cage but without a state file or claude-cage's mark: not ours. Never
    /// listed, killed or reaped.
    Foreign,
}

impl CageState {
    pub fn as_str(self) -> &'static str {
        match self {
            CageState::Running => "running",
            CageState::Stopping => "stopping",
            CageState::Orphaned => "orphaned",
            CageState::Starting => "starting",
            CageState::Foreign => "foreign",
        }
    }
}

/// One cage found in the tree.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub bot: String,
    pub dir: PathBuf,
    pub record: Option<Record>,
    pub state_file: Option<StateFile>,
    pub state: CageState,
}

impl Found {
    pub fn bot_dir(&self) -> PathBuf {
        self.dir.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Everything `ps` and `reap` need to know.
#[derive(Debug, Default)]
pub struct Survey {
    pub cages: Vec<Found>,
    /// State files whose cage no longer exists.
    pub stale: Vec<StateFile>,
    /// State files that could not be read, with the reason.
    pub unreadable: Vec<(StateFile, String)>,
    /// Records from another user's directory that name a cage that is not that user's: never
    /// believed, never removed, reported.
    pub untrusted: Vec<(StateFile, String)>,
}

/// Whether a record may speak for the cage in `dir`. The reader's own records always may;
/// another user's (root reading `/run/user/<uid>/claude-cage`) only for a cage whose cgroup
/// that user owns, and whose supervisor, if alive, runs as that user. A record can claim that a
/// cage is orphaned; believed from the wrong user, it would make root's `reap` kill a cage that
/// is not theirs.
fn may_speak_for(f: &StateFile, r: &Record, id: &str, dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Origin::User(uid) = f.origin else {
        return Ok(());
    };
    let owner = std::fs::symlink_metadata(dir)
        .map(|m| m.uid())
        .map_err(|e| format!("its cgroup {} cannot be read: {e}", dir.display()))?;
    if owner != uid {
        return Err(format!(
            "it names cage {id}, whose cgroup belongs to uid {owner}, not uid {uid}"
        ));
    }
    let runs_as = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .ok()
    };
    if state::supervisor_alive(r) && runs_as(r.supervisor_pid) != Some(uid) {
        return Err(format!(
            "its supervisor (pid {}) does not run as uid {uid}",
            r.supervisor_pid
        ));
    }
    // The supervisor that made the cage is the pid in its id: alive since before the cage and
    // running as another user, it is that user's cage, whatever the record claims.
    if let Some((_, pid)) = split_id(id) {
        let made_it = matches!(
            (started_at(Pid::from_raw(pid)), created_at(dir)),
            (Some(p), Some(c)) if p <= c + Duration::from_secs(1)
        );
        if made_it && runs_as(pid).is_some_and(|u| u != uid) {
            return Err(format!(
                "cage {id} was made by pid {pid}, which does not run as uid {uid}"
            ));
        }
    }
    Ok(())
}

/// The record that speaks for the cage `id` in `dir`, taken out of `candidates` (the reader's
/// own first). The other records that name the cage are taken out too: another user's record
/// that may not speak for it, or that a record before it outranks, goes to `untrusted`.
fn claim(
    candidates: &mut Vec<(StateFile, Record)>,
    id: &str,
    dir: &Path,
    untrusted: &mut Vec<(StateFile, String)>,
) -> Option<(StateFile, Record)> {
    // Same id elsewhere in the tree: not this cage's file.
    let (naming, others): (Vec<_>, Vec<_>) = std::mem::take(candidates)
        .into_iter()
        .partition(|(_, r)| r.cgroup == dir);
    *candidates = others;
    let mut chosen = None;
    for (f, r) in naming {
        let verdict = match (&chosen, may_speak_for(&f, &r, id, dir)) {
            (_, Err(why)) => Err(why),
            (None, Ok(())) => Ok(()),
            (Some(_), Ok(())) => Err(format!("another record speaks for cage {id}")),
        };
        match verdict {
            Ok(()) => chosen = Some((f, r)),
            Err(why) => untrusted.push((f, why)),
        }
    }
    chosen
}

/// How deep to look for cages below the cgroup2 mount (a bot under a delegated service is at
/// depth 3 or 4 on systemd hosts).
const MAX_DEPTH: usize = 12;

/// Walks the cgroup tree for cages and joins them with the state files.
pub fn survey(h: &Hierarchy) -> Survey {
    let mut records: HashMap<String, Vec<(StateFile, Record)>> = HashMap::new();
    let mut out = Survey::default();
    for (f, r) in state::all() {
        match r {
            Ok(rec) => records.entry(rec.cage.clone()).or_default().push((f, rec)),
            Err(e) => out.unreadable.push((f, e.to_string())),
        }
    }
    let mut stack = vec![(h.mount.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let parent_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir_name = e.file_name().to_string_lossy().into_owned();
            // A cgroupfs cage is `<bot>/<bot>-<pid>-<n>`; a systemd cage is a scope
            // `claude-cage-<bot>-<pid>-<n>.scope` in a slice.
            let cage = if cage_pid(&parent_name, &dir_name).is_some() {
                Some((dir_name.clone(), parent_name.clone()))
            } else {
                scope_cage_id(&dir_name)
                    .and_then(|id| split_id(id).map(|(bot, _)| (id.to_owned(), bot.to_owned())))
            };
            if let Some((name, bot)) = cage {
                let claimed = records
                    .get_mut(&name)
                    .and_then(|c| claim(c, &name, &e.path(), &mut out.untrusted));
                let (state_file, record) = claimed.unzip();
                let state = classify(&bot, &name, &e.path(), record.as_ref());
                if state == CageState::Foreign {
                    continue;
                }
                out.cages.push(Found {
                    id: name,
                    bot,
                    dir: e.path(),
                    record,
                    state_file,
                    state,
                });
            } else if depth < MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out.cages.sort_by(|a, b| a.id.cmp(&b.id));
    out.stale = records.into_values().flatten().map(|(f, _)| f).collect();
    out.stale.sort_by_key(StateFile::path);
    out
}

/// The cages of one bot (the children of its cgroup: directories `<bot>-<pid>-<n>`, or the
/// scopes `claude-cage-<bot>-<pid>-<n>.scope` of its systemd slice), with their state files:
/// what `run` looks at, cheaply, before it starts a new cage.
pub fn survey_bot(bot_dir: &Path, bot: &str) -> Vec<Found> {
    let bot = bot.to_owned();
    let Ok(rd) = std::fs::read_dir(bot_dir) else {
        return Vec::new();
    };
    // The state directories are opened at the first cage found: a bot without cages (the
    // common case at a cage's start) costs one directory read.
    let mut dirs = None;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let id = scope_cage_id(&name).unwrap_or(&name).to_owned();
        if !e.file_type().is_ok_and(|t| t.is_dir()) || cage_pid(&bot, &id).is_none() {
            continue;
        }
        let mut candidates: Vec<(StateFile, Record)> = dirs
            .get_or_insert_with(state::readable_dirs)
            .iter()
            .filter_map(|d| d.find(&id))
            .filter_map(|(f, r)| r.ok().map(|r| (f, r)))
            .collect();
        let (state_file, record) = claim(&mut candidates, &id, &e.path(), &mut Vec::new()).unzip();
        let state = classify(&bot, &id, &e.path(), record.as_ref());
        out.push(Found {
            id,
            bot: bot.clone(),
            dir: e.path(),
            record,
            state_file,
            state,
        });
    }
    out
}

/// Disposes of a cage whose supervisor is gone: kills it, waits up to `timeout` for it to empty,
/// removes its cgroups and then its state file; returns how many processes were in it. The
/// state file stays when the cage could not be removed, so that `reap` finds it again.
pub fn dispose(found: &Found, timeout: Duration) -> Result<usize, CgroupError> {
    let n = Cage::at(found.dir.clone()).kill_and_remove(timeout)?;
    if let Some(f) = &found.state_file {
        let _ = f.remove();
    }
    Ok(n)
}

/// How long to wait for an orphaned cage to empty after its kill.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills and removes one orphaned cage and its state file; returns the line to print.
pub fn reap_orphan(found: &Found, dry_run: bool) -> Result<String, String> {
    if dry_run {
        return Ok(format!(
            "would reap orphaned cage {} ({}) in {}",
            found.id,
            crate::units::count(Cage::at(found.dir.clone()).process_count(), "process"),
            found.dir.display()
        ));
    }
    let n = dispose(found, REAP_TIMEOUT).map_err(|e| {
        format!(
            "failed to reap {}: {}",
            found.id,
            crate::error::error_chain(&e)
        )
    })?;
    Ok(format!(
        "reaped orphaned cage {}: killed {}, removed {}",
        found.id,
        crate::units::count(n, "process"),
        found.dir.display()
    ))
}

/// Reaps the orphans of one bot; returns the lines describing what was done.
pub fn reap_bot(bot_dir: &std::path::Path, bot: &str) -> Vec<String> {
    survey_bot(bot_dir, bot)
        .iter()
        .filter(|f| f.state == CageState::Orphaned)
        .map(|f| reap_orphan(f, false).unwrap_or_else(|e| e))
        .collect()
}

fn classify(bot: &str, id: &str, dir: &Path, record: Option<&Record>) -> CageState {
    match record {
        Some(r) if state::supervisor_alive(r) => {
            let main_busy =
                fs::read(&dir.join(fs::MAIN), fs::PROCS).is_ok_and(|t| !t.trim().is_empty());
            if main_busy {
                CageState::Running
            } else {
                CageState::Stopping
            }
        }
        Some(_) => CageState::Orphaned,
        // Without a state file, only a cgroup that carries claude-cage's mark is a cage: a
        // directory that merely looks like one is never reaped or killed.
        None if !crate::cgroup::is_marked(dir) => CageState::Foreign,
        None => {
            let Some(pid) = cage_pid(bot, id) else {
                return CageState::Orphaned;
            };
            match (started_at(Pid::from_raw(pid)), created_at(dir)) {
                // A live process that started before the cage was made: its supervisor,
                // still setting up. One started later only reuses the pid.
                (Some(p), Some(c)) if p <= c + Duration::from_secs(1) => CageState::Starting,
                _ => CageState::Orphaned,
            }
        }
    }
}

/// When a process started, from its start time in ticks and the boot time.
fn started_at(pid: Pid) -> Option<SystemTime> {
    let ticks = state::start_time(pid)?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(btime)
            + Duration::from_millis(ticks * 1000 / hz.max(1)),
    )
}

fn created_at(dir: &Path) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64))
}
