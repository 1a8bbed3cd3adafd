//! State files: what the kernel does not know about a cage (its supervisor, policy, command and
//! start time), one small JSON file per cage, written atomically when the child has started and
//! removed when the cage is gone. `ps`, `kill` and `reap` read them; a state file without a cage
//! or a cage without a state file is reported, never fatal.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::unistd::{Pid, Uid};
use serde::{Deserialize, Serialize};

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

/// Every state directory this user may read: root also reads each user's, in
/// `/run/user/*/claude-cage` and in `/tmp/claude-cage-<uid>` (a service without
/// `$XDG_RUNTIME_DIR`) when that directory belongs to that uid.
pub fn readable_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![own_dir()];
    if Uid::effective().is_root() {
        if let Ok(rd) = std::fs::read_dir("/run/user") {
            dirs.extend(rd.flatten().map(|e| e.path().join("claude-cage")));
        }
        if let Ok(rd) = std::fs::read_dir("/tmp") {
            use std::os::unix::fs::MetadataExt;
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(uid) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("claude-cage-"))
                    .and_then(|u| u.parse::<u32>().ok())
                else {
                    continue;
                };
                if e.path()
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir() && m.uid() == uid)
                {
                    dirs.push(e.path());
                }
            }
        }
    }
    dirs
}

/// The path of a cage's state file in `dir`.
pub fn path_in(dir: &Path, cage: &str) -> PathBuf {
    dir.join(format!("{cage}.json"))
}

/// Records a cage in this user's state directory; a failure is a warning (`ps` then shows the
/// cage without its command), never the end of the run.
pub fn record(r: &Record) -> Option<PathBuf> {
    match write(&own_dir(), r) {
        Ok(p) => Some(p),
        Err(e) => {
            crate::warning!(
                "failed to write the state file in {}: {e}; `ps` will show the cage without its command",
                own_dir().display()
            );
            None
        }
    }
}

/// Writes the record atomically: a temporary file renamed over the final name, so a reader
/// never sees half a file.
pub fn write(dir: &Path, record: &Record) -> io::Result<PathBuf> {
    create_private_dir(dir)?;
    let path = path_in(dir, &record.cage);
    let tmp = dir.join(format!(".{}.json.tmp", record.cage));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(path)
}

/// Creates the state directory (mode 0700) and makes sure it is this user's own: in /tmp,
/// another user could have made it first.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != Uid::effective().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory owned by uid {}",
                dir.display(),
                Uid::effective()
            ),
        ));
    }
    Ok(())
}

/// Reads one state file.
pub fn read(path: &Path) -> io::Result<Record> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Every state file in the readable directories, with its record or the reason it is unreadable.
pub fn all() -> Vec<(PathBuf, io::Result<Record>)> {
    let mut out = Vec::new();
    for dir in readable_dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json") && !name.starts_with('.') {
                let r = read(&p);
                out.push((p, r));
            }
        }
    }
    out
}

/// A process's start time in clock ticks since boot, or `None` if it does not exist.
pub fn start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
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
        let dir = std::env::temp_dir().join(format!("claude-cage-state-{}", std::process::id()));
        let r = Record {
            cage: "bot-1-1".into(),
            bot: "bot".into(),
            cgroup: "/sys/fs/cgroup/bot/bot-1-1".into(),
            supervisor_pid: std::process::id() as i32,
            supervisor_start: start_time(Pid::this()).unwrap(),
            child_pid: 2,
            policy: "p.toml".into(),
            argv: vec!["claude".into(), "-p".into()],
            started_ms: 1,
            events: None,
        };
        let p = write(&dir, &r).unwrap();
        assert_eq!(read(&p).unwrap(), r);
        assert!(supervisor_alive(&r));
        assert!(!supervisor_alive(&Record {
            supervisor_start: r.supervisor_start + 1,
            ..r.clone()
        }));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("bot-1-1.json")],
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
