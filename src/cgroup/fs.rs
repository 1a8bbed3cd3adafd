//! Reading and writing cgroupfs files. This is the only place that knows their names (the
//! kernel's files, and the two cgroups claude-cage makes inside a cage); every error carries the
//! operation, the path and the value written.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Uid;

use super::CgroupError;

/// The cgroup inside a cage that the child runs in: limits are on the cage, so a cgroup the
/// child makes beside `main` (Claude Code does) is inside the cage's budget.
pub const MAIN: &str = "main";
/// The cgroup inside a cage's systemd scope that holds the scope's holder (`sys::spawn_holder`),
/// a process of claude-cage's and not of the cage.
pub const HOLD: &str = "hold";

pub const PROCS: &str = "cgroup.procs";
pub const THREADS: &str = "cgroup.threads";
pub const TYPE: &str = "cgroup.type";
pub const MAX_DESCENDANTS: &str = "cgroup.max.descendants";
pub const MAX_DEPTH: &str = "cgroup.max.depth";
pub const CONTROLLERS: &str = "cgroup.controllers";
pub const SUBTREE_CONTROL: &str = "cgroup.subtree_control";
pub const EVENTS: &str = "cgroup.events";
pub const KILL: &str = "cgroup.kill";
pub const MEMORY_HIGH: &str = "memory.high";
pub const MEMORY_MAX: &str = "memory.max";
pub const MEMORY_SWAP_MAX: &str = "memory.swap.max";
pub const MEMORY_OOM_GROUP: &str = "memory.oom.group";
pub const MEMORY_EVENTS: &str = "memory.events";
/// The cgroup's own events, not its descendants' (the bot's `high`: its own limit's).
pub const MEMORY_EVENTS_LOCAL: &str = "memory.events.local";
pub const MEMORY_PEAK: &str = "memory.peak";
pub const MEMORY_STAT: &str = "memory.stat";
/// CPU time used by the cgroup (`usage_usec`), in every cgroup v2 cgroup, controller or not.
pub const CPU_STAT: &str = "cpu.stat";
pub const MEMORY_CURRENT: &str = "memory.current";
pub const MEMORY_PRESSURE: &str = "memory.pressure";
pub const PIDS_MAX: &str = "pids.max";
pub const PIDS_EVENTS: &str = "pids.events";
pub const PIDS_CURRENT: &str = "pids.current";
pub const CPU_MAX: &str = "cpu.max";
pub const CPU_WEIGHT: &str = "cpu.weight";

/// Writes `value` into the cgroup file `dir/name`. cgroupfs files always exist: they are opened
/// without `O_CREAT` or truncation, so a missing file is an error, never a new regular file.
pub fn write(dir: &Path, name: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(name);
    let result = OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path,
        value: value.to_owned(),
        source,
    })
}

/// Reads the cgroup file `dir/name` as text.
pub fn read(dir: &Path, name: &str) -> Result<String, CgroupError> {
    let path = dir.join(name);
    read_kernel_file(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Reads a file the kernel makes as it is read (cgroupfs, procfs) whole, as text. Such files
/// report no size, so `std::fs::read_to_string` first asks for one (`statx`, `lseek`) and then
/// reads in pieces that start at 32 bytes; this reads 4 KiB at a time: one read for most, and
/// one more that says the end. It is on the path of every cage's start and end.
pub fn read_kernel_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads a file, or `None` when it is not there: this kernel does not have it, or its cgroup
/// is gone (see [`gone`]).
pub fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, CgroupError> {
    match read(dir, name) {
        Ok(s) => Ok(Some(s)),
        Err(CgroupError::Read { source, .. }) if gone(&source) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an error on a cgroup file says that the file or its cgroup is not there: ENOENT,
/// or ENODEV from a file opened just before the kernel removed its cgroup (kernfs answers
/// every later read or write of it so). systemd removes an emptied scope on its own, at any
/// moment of a cage's teardown.
pub fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// The value of `key` in a flat-keyed file such as `memory.events` ("oom_kill 3").
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A single-number file such as `memory.peak`.
pub fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The number a single-number file of `dir` holds; `None` when the file is missing, cannot be
/// read, or holds no number (`max`).
pub fn read_number(dir: &Path, name: &str) -> Option<u64> {
    read_optional(dir, name)
        .ok()
        .flatten()
        .and_then(|t| number(&t))
}

/// The pids listed in a `cgroup.procs`.
pub fn pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The names in a space-separated list such as `cgroup.controllers`.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The cage's cgroup and those below it, but for a scope's holder cgroup: where the cage's own
/// processes are. Only a scope (`*.scope`) has a holder; in a cgroupfs cage a child's cgroup of
/// that name is the child's.
pub fn member_dirs(dir: &Path) -> Vec<PathBuf> {
    let hold = dir
        .file_name()
        .is_some_and(super::id::is_scope)
        .then(|| dir.join(HOLD));
    std::iter::once(dir.to_path_buf())
        .chain(
            descendants(dir)
                .into_iter()
                .filter(|d| !hold.as_ref().is_some_and(|h| d.starts_with(h))),
        )
        .collect()
}

/// Every cgroup below `dir` (not `dir` itself), parents before their children.
pub fn descendants(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                stack.push(e.path());
            }
        }
    }
    out
}

/// How long `wait_unpopulated` trusts the kernel's notification before it reads again.
const REREAD: Duration = Duration::from_millis(2);

/// Waits until the cgroup `dir` and its descendants hold no process (`Cage::wait_empty`).
pub fn wait_unpopulated(dir: &Path, timeout: Duration) -> Result<bool, CgroupError> {
    use std::os::unix::fs::FileExt;
    let events = dir.join(EVENTS);
    let file = match std::fs::File::open(&events) {
        Ok(f) => f,
        // The cgroup is gone already (a scope systemd stopped once it was empty).
        Err(e) if gone(&e) => return Ok(true),
        Err(source) => {
            return Err(CgroupError::Read {
                path: events,
                source,
            });
        }
    };
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 256];
    loop {
        // Reading through the polled descriptor re-arms it: a change after this read wakes
        // the poll below, so none is missed.
        let n = match file.read_at(&mut buf, 0) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(true),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: events,
                    source,
                });
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if keyed(&text, "populated").unwrap_or(0) == 0 {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
        // The kernel sends at most one notification of a cgroup file per
        // CGROUP_FILE_NOTIFY_MIN_INTV (10 ms, rounded up to whole jiffies: 12 ms at HZ 250) and
        // defers the next one by a timer (kernel/cgroup/cgroup.c, cgroup_file_notify): the end
        // of a cage that was populated a moment ago would be seen that much late. So the file
        // is read again after at most REREAD, notified or not.
        let ms = PollTimeout::try_from(left.min(REREAD).as_millis() as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(source) => {
                return Err(CgroupError::Watch {
                    path: events,
                    source,
                });
            }
        }
    }
}

/// The extended attribute that marks a cgroup as a claude-cage cage: `reap` and `kill` only
/// ever touch a cage without a state file if it carries it. `trusted.` needs root; an
/// unprivileged user's cages carry `user.` (cgroupfs has user xattrs since Linux 5.7).
pub const MARK_ROOT: &std::ffi::CStr = c"trusted.claude-cage";
pub const MARK_USER: &std::ffi::CStr = c"user.claude-cage";

/// Marks `dir` as a cage; a kernel that cannot store the mark only loses the orphan clean-up
/// of cages without a state file.
pub fn mark(dir: &Path) {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    let name = if Uid::effective().is_root() {
        MARK_ROOT
    } else {
        MARK_USER
    };
    let _ = crate::sys::setxattr(&c, name, b"1");
}

/// Whether `dir` carries the cage mark.
pub fn is_marked(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [MARK_ROOT, MARK_USER]
        .iter()
        .any(|n| crate::sys::getxattr(&c, n).is_some_and(|v| v == b"1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values() {
        let t = "low 0\nhigh 12\nmax 3\noom 1\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(keyed(t, "high"), Some(12));
        assert_eq!(keyed(t, "oom_kill"), Some(2));
        assert_eq!(keyed(t, "oom"), Some(1));
        assert_eq!(keyed(t, "missing"), None);
        assert_eq!(keyed("populated 1\nfrozen 0\n", "populated"), Some(1));
    }

    #[test]
    fn lists() {
        assert_eq!(pids("12\n345\n\n"), vec![12, 345]);
        assert_eq!(
            words("cpuset cpu memory pids\n"),
            vec!["cpuset", "cpu", "memory", "pids"]
        );
        assert_eq!(number("1048576\n"), Some(1048576));
        assert_eq!(number("max\n"), None);
    }

    #[test]
    fn writes_never_create_files() {
        let dir = std::env::temp_dir().join(format!("claude-cage-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = write(&dir, MEMORY_MAX, "1").unwrap_err();
        assert!(!dir.join(MEMORY_MAX).exists());
        assert!(e.to_string().contains("memory.max"), "{e}");
        assert!(e.to_string().contains("\"1\""), "{e}");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn descendants_parents_first() {
        let dir = std::env::temp_dir().join(format!("claude-cage-desc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b/c")).unwrap();
        std::fs::create_dir_all(dir.join("d")).unwrap();
        let got = descendants(&dir);
        let pos = |p: &str| got.iter().position(|x| x == &dir.join(p)).unwrap();
        assert_eq!(got.len(), 4);
        assert!(pos("a") < pos("a/b") && pos("a/b") < pos("a/b/c"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
