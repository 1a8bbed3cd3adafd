//! Starting the child inside the cage: finding the program, preparing everything exec needs
//! before the clone, and learning whether exec succeeded through a close-on-exec pipe, and if
//! not, which step failed: claude-cage's own set-up in the child (125) or the exec (126, 127).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::SigSet;
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};

use crate::cgroup::fs::PROCS;
use crate::sys::{self, Credentials, ExecSpec, REPORT_LEN, Stage, Started};

/// Why the child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{program}: not found (searched {searched})")]
    NotFound { program: String, searched: String },
    #[error("{}: not executable", path.display())]
    NotExecutable { path: PathBuf, source: io::Error },
    #[error("failed to execute {}", path.display())]
    Exec { path: PathBuf, source: io::Error },
    /// A step of the child's before exec failed: claude-cage's own set-up, not the program.
    #[error("failed to {} in the child before exec", stage.operation())]
    PreExec {
        stage: Stage,
        source: Option<io::Error>,
    },
    #[error("the child ended before exec with an unreadable report ({len} bytes)")]
    BadReport { len: usize },
    #[error("failed to open the cage's cgroup {}", path.display())]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("failed to start the child")]
    Clone { source: io::Error },
    #[error("argument or environment contains a NUL byte")]
    Nul,
}

impl SpawnError {
    /// The child's report on the error pipe (see `sys::REPORT_LEN`): a failed exec is the
    /// program's (`Exec`), any earlier stage claude-cage's own (`PreExec`).
    pub fn from_report(report: &[u8], path: &Path) -> SpawnError {
        let Ok(bytes) = <[u8; REPORT_LEN]>::try_from(report) else {
            return SpawnError::BadReport { len: report.len() };
        };
        let errno = i32::from_ne_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        match Stage::from_byte(bytes[0]) {
            Some(Stage::Exec) => SpawnError::Exec {
                path: path.to_path_buf(),
                source: io::Error::from_raw_os_error(errno),
            },
            Some(stage) => SpawnError::PreExec {
                stage,
                source: (errno != 0).then(|| io::Error::from_raw_os_error(errno)),
            },
            None => SpawnError::BadReport { len: report.len() },
        }
    }

    /// The exit status for this failure: 127 not found, 126 not executable, 125 otherwise
    /// (claude-cage's own failure, a step before exec included).
    pub fn exit_status(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => crate::exit::NOT_FOUND,
            SpawnError::NotExecutable { .. } => crate::exit::NOT_EXECUTABLE,
            SpawnError::Exec { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
                crate::exit::NOT_FOUND
            }
            SpawnError::Exec { .. } => crate::exit::NOT_EXECUTABLE,
            _ => crate::exit::FAILURE,
        }
    }
}

/// The parent's side of the child's report: the wording of each [`Stage`] (defined in `sys`
/// beside the child that writes it) in claude-cage's error messages.
impl Stage {
    /// What the child was doing, as a fragment that fits "failed to …".
    pub fn operation(self) -> &'static str {
        match self {
            Stage::JoinCgroup => "move into the cage (writing its cgroup.procs)",
            Stage::NewSession => "leave claude-cage's terminal (setsid)",
            Stage::DropBounding => "drop the capability bounding set (prctl PR_CAPBSET_DROP)",
            Stage::ClearAmbient => "clear the ambient capabilities (prctl PR_CAP_AMBIENT)",
            Stage::SetGroups => "set the supplementary groups (setgroups)",
            Stage::SetGid => "set the group id (setgid)",
            Stage::SetUid => "set the user id (setuid)",
            Stage::ClearCapabilities => "clear the capability sets (capset)",
            Stage::NoNewPrivs => "set no_new_privs (prctl PR_SET_NO_NEW_PRIVS)",
            Stage::ParentDeathSignal => "set the parent-death signal (prctl PR_SET_PDEATHSIG)",
            Stage::ParentGone => "find claude-cage still its parent (it died first)",
            Stage::AwaitGo => "receive claude-cage's go (the pipe ended before it)",
            Stage::RestoreMask => "restore the signal mask (sigprocmask)",
            Stage::Exec => "execute the program (execve)",
        }
    }
}

/// Finds `program` as execvp(3) would: a name with a '/' is used as is, any other is searched
/// in `path_var`. Entries that are the same file as `skip` (claude-cage itself, in shim mode)
/// are passed over. Found but not executable is a different error from not found.
pub fn resolve(
    program: &str,
    path_var: Option<&OsStr>,
    skip: Option<&Path>,
) -> Result<PathBuf, SpawnError> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return check_executable(&p).map(|()| p).map_err(|e| match e {
            None => SpawnError::NotFound {
                program: program.to_owned(),
                searched: "that path".to_owned(),
            },
            Some(source) => SpawnError::NotExecutable {
                path: PathBuf::from(program),
                source,
            },
        });
    }
    let path_var = path_var
        .map(OsStr::to_os_string)
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let skip = skip.and_then(|s| s.canonicalize().ok());
    let mut not_exec = None;
    for dir in std::env::split_paths(&path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if skip.is_some() && candidate.canonicalize().ok() == skip {
            continue;
        }
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Some(e)) if not_exec.is_none() => not_exec = Some((candidate, e)),
            Err(_) => {}
        }
    }
    match not_exec {
        Some((path, source)) => Err(SpawnError::NotExecutable { path, source }),
        None => Err(SpawnError::NotFound {
            program: program.to_owned(),
            searched: format!("PATH={}", path_var.to_string_lossy()),
        }),
    }
}

/// `Err(None)`: does not exist. `Err(Some(e))`: exists but cannot be executed.
fn check_executable(p: &Path) -> Result<(), Option<io::Error>> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(e)),
    };
    if meta.is_dir() {
        return Err(Some(io::Error::from_raw_os_error(libc::EISDIR)));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Some(io::Error::from_raw_os_error(libc::EACCES)));
    }
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).map_err(|e| Some(io::Error::from(e)))
}

/// Where the child starts.
pub enum Place<'a> {
    /// In claude-cage's own cgroup (the service manager moves it).
    Own,
    /// In this leaf cgroup, from its first instruction.
    Leaf(&'a Path),
    /// In a cgroup namespace rooted at `cage`, then in `main`.
    Namespace { cage: &'a Path, main: &'a Path },
}

/// The child, running.
pub struct Child {
    pub pid: Pid,
    pub pidfd: std::os::fd::OwnedFd,
}

/// A child inside its cage that waits for [`Pending::release`] before it execs the program.
pub struct Pending {
    pub pid: Pid,
    pidfd: OwnedFd,
    go: OwnedFd,
    error: OwnedFd,
    path: PathBuf,
}

impl Pending {
    /// Lets the child exec. Returns once it has, or with the exec error after the failed child
    /// was reaped.
    pub fn release(self) -> Result<Child, SpawnError> {
        let Pending {
            pid,
            pidfd,
            go,
            error,
            path,
        } = self;
        // If this write fails the child sees EOF (the descriptor is closed at the end of the
        // statement), reports `Stage::AwaitGo` and exits 125: the error pipe then tells.
        let _ = File::from(go).write_all(b"1");
        // EOF with nothing read means exec succeeded (the pipe is close-on-exec); otherwise the
        // child reports the stage that failed and its errno. A child killed before it could
        // report (SIGKILL) also gives a bare EOF: the supervisor then sees it die by the signal.
        let mut buf = [0u8; REPORT_LEN];
        let mut read = 0;
        let mut f = File::from(error);
        while read < REPORT_LEN {
            match f.read(&mut buf[read..]) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if read == 0 {
            return Ok(Child { pid, pidfd });
        }
        let _ = waitpid(pid, None);
        Err(SpawnError::from_report(&buf[..read], &path))
    }

    /// Ends the waiting child without running the program (it sees EOF instead of its go and
    /// exits 125), and reaps it.
    pub fn cancel(self) {
        let pid = self.pid;
        drop(self);
        let _ = waitpid(pid, None);
    }
}

/// Starts a child for `path` with `argv` and `env` inside the cgroup `main` (race-free: it is
/// there from its first instruction), or, without `main`, in claude-cage's own cgroup. The child waits for [`Pending::release`] before it
/// restores `original_mask` and execs.
pub fn spawn(
    place: Place<'_>,
    path: &Path,
    argv: &[OsString],
    env: Vec<(OsString, OsString)>,
    original_mask: SigSet,
    credentials: Option<Credentials>,
) -> Result<Pending, SpawnError> {
    let cstr = |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| SpawnError::Nul);
    let c_path = cstr(path.as_os_str())?;
    let c_argv = argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let c_envp = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).map_err(|_| SpawnError::Nul)
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Leaf: clone3 into it, or (where clone3 is refused) the child writes its own pid into its
    // cgroup.procs before it execs. Namespace: clone3 into the cage with a new cgroup namespace
    // (so the namespace's root is the cage), and the child moves on into `main`. Own (the
    // systemd backend): plain fork, and the service manager moves the waiting child.
    let (clone_into, move_into, cgroupns) = match place {
        Place::Own => (None, None, false),
        Place::Leaf(main) => (Some(main), Some(main), false),
        Place::Namespace { cage, main } => (Some(cage), Some(main), true),
    };
    let cgroup_dir = clone_into
        .map(|dir| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(dir)
                .map_err(|source| SpawnError::OpenCgroup {
                    path: dir.to_path_buf(),
                    source,
                })
        })
        .transpose()?;
    let procs = move_into
        .map(|dir| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(dir.join(PROCS))
                .map_err(|source| SpawnError::OpenCgroup {
                    path: dir.join(PROCS),
                    source,
                })
        })
        .transpose()?;
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::Clone { source: e.into() });
    let (err_r, err_w) = pipe()?;
    let (go_r, go_w) = pipe()?;

    let mut spec = ExecSpec::new(
        c_path,
        c_argv,
        c_envp,
        original_mask,
        nix::unistd::getpid(),
        procs.as_ref().map(|p| p.as_raw_fd()),
        err_w.as_raw_fd(),
        go_r.as_raw_fd(),
    );
    // A child that runs as another user must not share a terminal it could push input into:
    // with one on stdin, stdout or stderr it starts in a new session, without a controlling
    // terminal (docs/security.md). It still reads and writes the terminal through those
    // descriptors; claude-cage, in the terminal's foreground, forwards ^C and ^\ as signals.
    spec.new_session = credentials.is_some()
        && [0, 1, 2]
            .into_iter()
            .any(|fd| nix::unistd::isatty(fd).unwrap_or(false));
    spec.credentials = credentials;
    if cgroupns {
        spec.move_after_clone = true;
        spec.clone_flags = sys::CLONE_NEWCGROUP;
    }
    let Started { pid, pidfd } = sys::spawn_into(cgroup_dir.as_ref().map(|d| d.as_fd()), &spec)
        .map_err(|source| SpawnError::Clone { source })?;
    Ok(Pending {
        pid,
        pidfd,
        go: go_w,
        error: err_r,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        assert!(resolve("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin")), None).is_ok());
        let e = resolve("no-such-program-xyz", Some(OsStr::new("/bin")), None).unwrap_err();
        assert_eq!(e.exit_status(), 127);
        assert!(e.to_string().contains("PATH=/bin"), "{e}");
        let e = resolve("/etc/passwd", None, None).unwrap_err();
        assert_eq!(e.exit_status(), 126);
        let e = resolve("/no/such/file", None, None).unwrap_err();
        assert_eq!(e.exit_status(), 127);
        let e = resolve("/", None, None).unwrap_err();
        assert_eq!(e.exit_status(), 126);
    }

    /// The child's report on the error pipe decides the status: a failed exec is the
    /// program's (127 not found, 126 otherwise), every earlier step claude-cage's own (125),
    /// named in the message with its errno.
    #[test]
    fn child_reports_map_to_statuses_and_messages() {
        let report = |stage: Stage, errno: i32| {
            let mut r = vec![stage as u8];
            r.extend_from_slice(&errno.to_ne_bytes());
            r
        };
        let path = Path::new("/bin/prog");
        let cases: &[(Vec<u8>, i32, &str)] = &[
            (
                report(Stage::Exec, libc::ENOENT),
                127,
                "failed to execute /bin/prog: No such file or directory",
            ),
            (
                report(Stage::Exec, libc::EACCES),
                126,
                "failed to execute /bin/prog: Permission denied",
            ),
            (
                report(Stage::Exec, libc::ENOEXEC),
                126,
                "failed to execute /bin/prog: Exec format error",
            ),
            (
                report(Stage::JoinCgroup, libc::EBUSY),
                125,
                "failed to move into the cage (writing its cgroup.procs) in the child before exec: Device or resource busy",
            ),
            (
                report(Stage::SetGroups, libc::EINVAL),
                125,
                "failed to set the supplementary groups (setgroups) in the child before exec: Invalid argument",
            ),
            (
                report(Stage::ClearCapabilities, libc::EPERM),
                125,
                "failed to clear the capability sets (capset) in the child before exec: Operation not permitted",
            ),
            (
                report(Stage::ParentDeathSignal, libc::EINVAL),
                125,
                "failed to set the parent-death signal (prctl PR_SET_PDEATHSIG) in the child before exec: Invalid argument",
            ),
            (
                report(Stage::RestoreMask, libc::EFAULT),
                125,
                "failed to restore the signal mask (sigprocmask) in the child before exec: Bad address",
            ),
            (
                report(Stage::AwaitGo, 0),
                125,
                "failed to receive claude-cage's go (the pipe ended before it) in the child before exec",
            ),
            (
                report(Stage::ParentGone, 0),
                125,
                "failed to find claude-cage still its parent (it died first) in the child before exec",
            ),
            (
                vec![Stage::SetUid as u8, 1, 0],
                125,
                "unreadable report (3 bytes)",
            ),
            (vec![0, 1, 0, 0, 0], 125, "unreadable report (5 bytes)"),
        ];
        for (bytes, status, message) in cases {
            let e = SpawnError::from_report(bytes, path);
            let shown = crate::error::error_chain(&e);
            assert_eq!(e.exit_status(), *status, "{bytes:?}: {shown}");
            assert!(
                shown.contains(message),
                "{bytes:?}: {shown:?} lacks {message:?}"
            );
        }
    }

    /// A step before exec that really fails in the child: setgroups(2) refuses more than
    /// NGROUPS_MAX (65536) groups with EINVAL, so the child reports that stage, and the run
    /// is claude-cage's own failure (125), not a program that cannot be executed (126). As a
    /// user other than root the first step, dropping the bounding set, fails instead (EPERM).
    #[test]
    fn a_failure_before_exec_is_claude_cages_own() {
        let root = nix::unistd::Uid::effective().is_root();
        let sh = resolve("sh", Some(OsStr::new("/bin:/usr/bin")), None).unwrap();
        let credentials = Credentials {
            uid: 65534,
            gid: 65534,
            groups: vec![65534; 65537],
            cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        };
        let pending = spawn(
            Place::Own,
            &sh,
            &["sh".into(), "-c".into(), "exit 0".into()],
            Vec::new(),
            SigSet::empty(),
            Some(credentials),
        )
        .unwrap();
        let e = match pending.release() {
            Ok(c) => panic!("the child {} exec'd with 65537 groups", c.pid),
            Err(e) => e,
        };
        let expected = if root {
            Stage::SetGroups
        } else {
            Stage::DropBounding
        };
        match &e {
            SpawnError::PreExec { stage, source } => {
                assert_eq!(*stage, expected, "{e}");
                let errno = source.as_ref().and_then(io::Error::raw_os_error);
                assert_eq!(errno, Some(if root { libc::EINVAL } else { libc::EPERM }));
            }
            other => panic!("expected a failure before exec, got {other:?}"),
        }
        assert_eq!(e.exit_status(), crate::exit::FAILURE);
    }

    #[test]
    fn skips_itself() {
        let sh = resolve("sh", Some(OsStr::new("/bin:/usr/bin")), None).unwrap();
        let other = resolve("sh", Some(OsStr::new("/bin:/usr/bin")), Some(&sh));
        // Either another sh exists in the other directory, or none is left.
        match other {
            Ok(p) => assert_ne!(p.canonicalize().unwrap(), sh.canonicalize().unwrap()),
            Err(e) => assert_eq!(e.exit_status(), 127),
        }
    }
}
