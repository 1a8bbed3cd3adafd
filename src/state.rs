//! State files: what the kernel does not know about a cage (its supervisor, policy, command and
//! start time), one small JSON file per cage, written atomically when the child has started and
//! removed when the cage is gone. `ps`, `kill` and `reap` read them; a state file without a cage
//! or a cage without a state file is reported, never fatal.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::unistd::{Pid, Uid};
use serde::{Deserialize, Serialize};

use crate::trust::{Dir, Writers};

/// What a state file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub cage: String,
    pub bot: String,
    /// The cage's cgroup directory.
    pub cgroup: PathBuf,
    pub supervisor_pid: i32,
    /// The supervisor's start time in clock ticks since boot (proc(5) stat field 22): with the
    /// pid, it names the process even after the pid is reused.
    pub supervisor_start: u64,
    pub child_pid: i32,
    pub policy: String,
    pub argv: Vec<String>,
    /// Unix time in milliseconds.
    pub started_ms: u64,
    pub events: Option<String>,
    /// The bot's `[bot] max-cages`, for `ps` to show beside the bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cages: Option<u32>,
}

/// The state directory of the current user: `/run/claude-cage` for root,
/// `$XDG_RUNTIME_DIR/claude-cage` otherwise (or `/tmp/claude-cage-<uid>` without it).
pub fn own_dir() -> PathBuf {
    if Uid::effective().is_root() {
        return PathBuf::from("/run/claude-cage");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Path::new(&d).join("claude-cage"),
        None => PathBuf::from(format!("/tmp/claude-cage-{}", Uid::effective())),
    }
}

/// The largest state file read: a record holds the command line, which an Agent SDK fills with
/// prompts and settings, so the cap is generous, but a file is never read without one.
const MAX_RECORD: u64 = 1 << 20;

/// Whose directory a state file was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The reader's own: its records are the reader's own word.
    Own,
    /// Another user's (root reading `/run/user/<uid>/claude-cage`): its records are that user's
    /// claims, which count only for that user's cages (`registry`).
    User(u32),
}

/// A state directory, opened through its handle.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: Rc<Dir>,
    pub origin: Origin,
}

/// A state file: a name in an opened state directory, never a path to follow again.
#[derive(Debug, Clone)]
pub struct StateFile {
    dir: Rc<Dir>,
    name: PathBuf,
    pub origin: Origin,
}

impl StateFile {
    /// Removes the file from the directory it was found in.
    pub fn remove(&self) -> io::Result<()> {
        self.dir.unlink(&self.name)
    }

    /// The file's path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }
}

impl std::fmt::Display for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::error::printable(&self.path().to_string_lossy()).fmt(f)
    }
}

impl StateDir {
    /// The opened directory.
    pub fn handle(&self) -> &Dir {
        &self.dir
    }

    /// The state file of `cage` in this directory, read; `None` when there is none.
    pub fn find(&self, cage: &str) -> Option<(StateFile, io::Result<Record>)> {
        let name = file_name(cage);
        let f = StateFile {
            dir: self.dir.clone(),
            name,
            origin: self.origin,
        };
        match read(&self.dir, &f.name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            r => Some((f, r)),
        }
    }

    /// Every state file in the directory, read.
    pub fn all(&self) -> Vec<(StateFile, io::Result<Record>)> {
        let names = self.dir.names().unwrap_or_default();
        names
            .into_iter()
            .filter(|n| {
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with('.')
            })
            .map(|n| {
                let name = PathBuf::from(n);
                let r = read(&self.dir, &name);
                (
                    StateFile {
                        dir: self.dir.clone(),
                        name,
                        origin: self.origin,
                    },
                    r,
                )
            })
            .collect()
    }
}

fn file_name(cage: &str) -> PathBuf {
    PathBuf::from(format!("{cage}.json"))
}

fn me() -> u32 {
    Uid::effective().as_raw()
}

/// This user's own state directory, opened through its handle (root's or this user's all the
/// way, its last directory this user's); with `create`, made (mode 0700) where missing.
pub fn open_own(create: bool) -> io::Result<Dir> {
    Dir::open(
        &own_dir(),
        Writers {
            owners: &[me()],
            last: Some(me()),
        },
        create.then_some(0o700),
    )
}

/// Every state directory this user may read, opened: its own and, for root, each user's, in
/// `/run/user/<uid>/claude-cage` and in `/tmp/claude-cage-<uid>` (a service without
/// `$XDG_RUNTIME_DIR`). A user's directory counts only when it and every directory on the way
/// belong to root or that user and no one else can write them (`trust`).
pub fn readable_dirs() -> Vec<StateDir> {
    let mut dirs: Vec<StateDir> = open_own(false)
        .ok()
        .map(|d| StateDir {
            dir: Rc::new(d),
            origin: Origin::Own,
        })
        .into_iter()
        .collect();
    if !Uid::effective().is_root() {
        return dirs;
    }
    let mut users: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/run/user") {
        for e in rd.flatten() {
            if let Some(uid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                users.push((uid, e.path().join("claude-cage")));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/tmp") {
        for e in rd.flatten() {
            let name = e.file_name();
            if let Some(uid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("claude-cage-"))
                .and_then(|u| u.parse::<u32>().ok())
            {
                users.push((uid, e.path()));
            }
        }
    }
    for (uid, path) in users {
        if uid == 0 {
            continue;
        }
        let opened = Dir::open(
            &path,
            Writers {
                owners: &[uid],
                last: Some(uid),
            },
            None,
        );
        if let Ok(d) = opened {
            dirs.push(StateDir {
                dir: Rc::new(d),
                origin: Origin::User(uid),
            });
        }
    }
    dirs
}

/// Writes the record atomically into this user's own state directory (made, mode 0700, when
/// missing): a temporary file renamed over the final name, so a reader never sees half a file.
pub fn write(record: &Record) -> io::Result<StateFile> {
    let dir = open_own(true)?;
    let name = file_name(&record.cage);
    let mut bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    bytes.push(b'\n');
    dir.write_atomic(&name, &bytes, 0o600)?;
    Ok(StateFile {
        dir: Rc::new(dir),
        name,
        origin: Origin::Own,
    })
}

/// Records a cage in this user's state directory; a failure is a warning (`ps` then shows the
/// cage without its command), never the end of the run.
pub fn record(r: &Record) -> Option<StateFile> {
    match write(r) {
        Ok(f) => Some(f),
        Err(e) => {
            crate::warning!(
                "failed to write the state file in {}: {e}; `ps` will show the cage without its command",
                own_dir().display()
            );
            None
        }
    }
}

/// Reads one state file of an opened directory: a regular file of at most [`MAX_RECORD`] bytes.
fn read(dir: &Dir, name: &Path) -> io::Result<Record> {
    let bytes = dir.read(name, MAX_RECORD)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Every state file in the readable directories, with its record or the reason it is
/// unreadable; the reader's own directory first.
pub fn all() -> Vec<(StateFile, io::Result<Record>)> {
    readable_dirs().iter().flat_map(StateDir::all).collect()
}

/// A process's start time in clock ticks since boot, or `None` if it does not exist.
pub fn start_time(pid: Pid) -> Option<u64> {
    let stat =
        crate::cgroup::fs::read_kernel_file(std::path::Path::new(&format!("/proc/{pid}/stat")))
            .ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the ')' come field 3 (state) onwards; starttime is field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// Whether the process that wrote `record` is still the one running under its pid.
pub fn supervisor_alive(record: &Record) -> bool {
    start_time(Pid::from_raw(record.supervisor_pid)) == Some(record.supervisor_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_others_differ() {
        let me = Pid::this();
        let a = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(a));
        assert_eq!(start_time(Pid::from_raw(i32::MAX)), None);
    }

    #[test]
    fn round_trip_and_atomic_write() {
        let r = Record {
            cage: format!("state-test-{}-1", std::process::id()),
            bot: "bot".into(),
            cgroup: "/sys/fs/cgroup/bot/bot-1-1".into(),
            supervisor_pid: std::process::id() as i32,
            supervisor_start: start_time(Pid::this()).unwrap(),
            child_pid: 2,
            policy: "p.toml".into(),
            argv: vec!["claude".into(), "-p".into()],
            started_ms: 1,
            events: None,
            max_cages: Some(3),
        };
        let f = write(&r).unwrap();
        let own = readable_dirs()
            .into_iter()
            .find(|d| d.origin == Origin::Own)
            .unwrap();
        let found = own.find(&r.cage).map(|(f, r)| (f.path(), r.ok()));
        let tmp_left = std::fs::read_dir(own_dir()).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().contains(&r.cage)
                && e.file_name().to_string_lossy().ends_with(".tmp")
        });
        f.remove().unwrap();
        assert_eq!(
            found,
            Some((own_dir().join(format!("{}.json", r.cage)), Some(r.clone())))
        );
        assert!(!tmp_left, "no temporary file left");
        assert!(own.find(&r.cage).is_none(), "removed");
        assert!(supervisor_alive(&r));
        assert!(!supervisor_alive(&Record {
            supervisor_start: r.supervisor_start + 1,
            ..r.clone()
        }));
    }
}
