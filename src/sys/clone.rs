//! Starting the child: clone3 with `CLONE_INTO_CGROUP` (or fork where clone3 is refused), and
//! the child's steps between clone and exec, which may only use async-signal-safe raw calls on
//! memory prepared before the clone (signal-safety(7)). A step that fails is reported on the
//! error pipe as a [`Stage`] byte and the errno.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::SigSet;
use nix::unistd::Pid;

use super::credentials::{Credentials, drop_privileges};
use super::syscalls::pidfd_open;

/// `CLONE_INTO_CGROUP` (linux/sched.h, since 5.7). The `libc` crate's constant has the wrong
/// value on some versions, so it is spelled out here.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `CLONE_PIDFD` (linux/sched.h, since 5.2).
const CLONE_PIDFD: u64 = 0x1000;

/// `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`, 88 bytes); see clone(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child needs between clone and exec, prepared by the parent beforehand so that the
/// child allocates nothing.
pub struct ExecSpec {
    pub path: CString,
    /// The strings behind `argv_ptrs` and `envp_ptrs`; they must outlive the spawn.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// The signal mask claude-cage was started with; restored in the child.
    pub original_mask: SigSet,
    /// claude-cage's own pid: the child checks it is still its parent after setting
    /// `PR_SET_PDEATHSIG`, which closes the race with a parent that died in between.
    pub parent: Pid,
    /// A `cgroup.procs` opened by the parent, written by the child itself when clone3 with
    /// `CLONE_INTO_CGROUP` is not available (seccomp profiles that refuse clone3, old kernels).
    pub procs_fd: Option<RawFd>,
    /// The write end of a close-on-exec pipe: a failure before or at exec is reported on it as
    /// a [`Stage`] byte and the errno (see [`REPORT_LEN`]).
    pub error_fd: RawFd,
    /// The read end of the "go" pipe: the child waits for one byte on it before it execs, so
    /// that claude-cage records the cage (its state file) before the program runs.
    pub go_fd: RawFd,
    /// Move into `procs_fd`'s cgroup even after a successful clone3: with a cgroup namespace the
    /// child is cloned into the cage (the namespace's root) and moves on into `main`.
    pub move_after_clone: bool,
    /// Extra clone3 flags (CLONE_NEWCGROUP).
    pub clone_flags: u64,
    /// Drop to this user before exec (root only).
    pub credentials: Option<Credentials>,
    /// Start a new session (setsid(2)) first: the child then has no controlling terminal, so it
    /// cannot push input into the terminal of whoever started claude-cage (TIOCSTI, tty_ioctl(4),
    /// needs the terminal to be the caller's controlling one).
    pub new_session: bool,
}

/// `CLONE_NEWCGROUP` (linux/sched.h): a new cgroup namespace rooted at the child's cgroup.
pub const CLONE_NEWCGROUP: u64 = 0x0200_0000;

impl ExecSpec {
    /// Builds the NULL-terminated pointer arrays execve(2) takes. The pointers stay valid while
    /// the spec lives: a `CString`'s bytes do not move when the vector holding it moves.
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is one distinct thing the child needs; a builder would only rename them"
    )]
    pub fn new(
        path: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        original_mask: SigSet,
        parent: Pid,
        procs_fd: Option<RawFd>,
        error_fd: RawFd,
        go_fd: RawFd,
    ) -> Self {
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let argv_ptrs = ptrs(&argv);
        let envp_ptrs = ptrs(&envp);
        ExecSpec {
            path,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            original_mask,
            parent,
            procs_fd,
            error_fd,
            go_fd,
            move_after_clone: false,
            clone_flags: 0,
            new_session: false,
            credentials: None,
        }
    }
}

/// The result of starting the child.
pub struct Started {
    pub pid: Pid,
    pub pidfd: OwnedFd,
}

/// Starts the child inside the cgroup open at `cgroup_fd`, race-free: with clone3 and
/// `CLONE_INTO_CGROUP` the child is in the cgroup from its first instruction. Where clone3 is
/// refused (ENOSYS under some seccomp profiles, E2BIG on kernels before 5.7), it falls back to
/// fork, and the child moves itself by writing "0" into `spec.procs_fd` before it execs.
///
/// The child never returns from this function: it execs or exits.
pub fn spawn_into(cgroup_fd: Option<BorrowedFd<'_>>, spec: &ExecSpec) -> io::Result<Started> {
    let Some(cgroup_fd) = cgroup_fd else {
        return fork_child(spec, false);
    };
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | CLONE_PIDFD | spec.clone_flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: clone3(2) with a zero stack behaves like fork(2): the child runs on a copy of the
    // parent's stack. `args` is a valid, fully initialised clone_args of the size passed. The
    // child only runs `child_after_clone`, which uses async-signal-safe raw system calls and
    // memory prepared before the clone (signal-safety(7)), and never returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        child_after_clone(spec, false);
    }
    if ret > 0 {
        // SAFETY: with CLONE_PIDFD the kernel stored a new file descriptor, which nothing else
        // owns, in `pidfd` (clone(2)).
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        return Ok(Started {
            pid: Pid::from_raw(ret as i32),
            pidfd,
        });
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // The fallback cannot make a cgroup namespace: then the error stands.
        Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EPERM)
            if spec.procs_fd.is_some() && spec.clone_flags == 0 => {}
        _ => return Err(err),
    }
    fork_child(spec, true)
}

/// Starts the child with fork(2); with `move_self` it moves itself into the cgroup of
/// `spec.procs_fd` before it execs.
fn fork_child(spec: &ExecSpec, move_self: bool) -> io::Result<Started> {
    // SAFETY: fork(2); the child only runs `child_after_clone` (async-signal-safe calls on
    // memory prepared before the fork) and never returns. claude-cage's own threads (if a
    // library started any) do not exist in the child, and the child touches no lock.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => child_after_clone(spec, move_self),
        pid => {
            let pid = Pid::from_raw(pid);
            // The child cannot be reaped before we open the pidfd: we are its parent and only
            // reap after this returns.
            let pidfd = pidfd_open(pid)?;
            Ok(Started { pid, pidfd })
        }
    }
}

/// The step of the child's way from clone to exec that failed. The child writes it to the error
/// pipe as one byte, followed by its errno, so that the parent can tell its own failure (exit
/// 125) from a program that cannot be executed (126, 127). The wording for each stage in
/// claude-cage's error messages is the parent's, in `crate::spawn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Writing "0" into the cage's `cgroup.procs` (the fork fallback, a cgroup namespace).
    JoinCgroup = 1,
    /// setsid(2), leaving claude-cage's terminal.
    NewSession = 14,
    /// `PR_CAPBSET_DROP` for each capability.
    DropBounding,
    /// `PR_CAP_AMBIENT_CLEAR_ALL`.
    ClearAmbient,
    SetGroups,
    SetGid,
    SetUid,
    /// capset(2) with empty sets.
    ClearCapabilities,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// `PR_SET_PDEATHSIG`.
    ParentDeathSignal,
    /// claude-cage died before the child set its parent-death signal (errno 0).
    ParentGone,
    /// The go pipe ended (errno 0) or failed before the go byte came.
    AwaitGo,
    /// sigprocmask(2) back to claude-cage's original mask.
    RestoreMask,
    /// execve(2) itself.
    Exec,
}

impl Stage {
    const ALL: [Stage; 14] = [
        Stage::JoinCgroup,
        Stage::NewSession,
        Stage::DropBounding,
        Stage::ClearAmbient,
        Stage::SetGroups,
        Stage::SetGid,
        Stage::SetUid,
        Stage::ClearCapabilities,
        Stage::NoNewPrivs,
        Stage::ParentDeathSignal,
        Stage::ParentGone,
        Stage::AwaitGo,
        Stage::RestoreMask,
        Stage::Exec,
    ];

    /// The stage a report's first byte names.
    pub fn from_byte(b: u8) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| *s as u8 == b)
    }
}

/// A report on the error pipe: the [`Stage`] byte and the errno in native byte order. Five
/// bytes are written at once, and a pipe write of at most PIPE_BUF bytes is atomic (pipe(7)):
/// the parent reads all of it or nothing.
pub const REPORT_LEN: usize = 5;

/// The child's side: move into the cgroup (fallback path only), drop privileges, arrange to die
/// with the parent, wait for the parent's go, restore the original signal mask, exec. Every
/// failure on the way is reported on the error pipe with its [`Stage`], so that the parent
/// never mistakes a child that ended before exec for one that exec'd.
fn child_after_clone(spec: &ExecSpec, move_self: bool) -> ! {
    // SAFETY: only async-signal-safe system calls (write, read, setsid, prctl, getppid,
    // sigprocmask, execve, _exit; signal-safety(7)) on memory that was allocated before the clone and stays valid,
    // because this process never returns to Rust code that could free it.
    unsafe {
        if move_self || spec.move_after_clone {
            if let Some(fd) = spec.procs_fd {
                let zero = b"0";
                if libc::write(fd, zero.as_ptr().cast(), 1) != 1 {
                    fail(spec.error_fd, Stage::JoinCgroup);
                }
            }
        }
        if spec.new_session && libc::setsid() < 0 {
            fail(spec.error_fd, Stage::NewSession);
        }
        if let Some(c) = &spec.credentials {
            drop_privileges(c, spec.error_fd);
        }
        // PR_SET_PDEATHSIG (prctl(2)): the kernel sends SIGKILL when the parent dies. It is set
        // after the credentials change, which clears it (commit_creds in kernel/cred.c). If the
        // parent died before the call, getppid no longer names it: report that and exit.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(spec.error_fd, Stage::ParentDeathSignal);
        }
        if libc::getppid() != spec.parent.as_raw() {
            report(spec.error_fd, Stage::ParentGone, 0);
        }
        // Wait for the parent's go. EOF without the byte means the parent gave up on this
        // child (`Pending::cancel`, or its write of the go byte failed): it must not run the
        // program, and says so, so that a parent waiting in `Pending::release` does not read
        // the pipe's end as a successful exec.
        let mut go = 0u8;
        loop {
            let n = libc::read(spec.go_fd, (&mut go as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            report(
                spec.error_fd,
                Stage::AwaitGo,
                if n < 0 { errno() } else { 0 },
            );
        }
        let mask: &libc::sigset_t = spec.original_mask.as_ref();
        if libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) != 0 {
            fail(spec.error_fd, Stage::RestoreMask);
        }
        libc::execve(
            spec.path.as_ptr(),
            spec.argv_ptrs.as_ptr(),
            spec.envp_ptrs.as_ptr(),
        );
        fail(spec.error_fd, Stage::Exec);
    }
}

/// The calling thread's errno.
pub(super) fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns a pointer to this thread's errno, valid for the
    // thread's life (errno(3)); reading it is async-signal-safe (signal-safety(7)).
    unsafe { *libc::__errno_location() }
}

/// Reports the failed `stage` with the current errno and exits.
///
/// # Safety
/// Only called in the child between clone and exec.
pub(super) unsafe fn fail(error_fd: RawFd, stage: Stage) -> ! {
    // SAFETY: errno is read before any other call can change it (errno(3)); `report` is
    // async-signal-safe (signal-safety(7)), as the caller's contract requires.
    unsafe { report(error_fd, stage, errno()) }
}

/// Writes `stage` and `errno` to the error pipe in one write (see [`REPORT_LEN`]) and exits:
/// 127 for a program that exec did not find, 126 for one it could not execute, 125 for a
/// failure before exec. The parent decides by the report, not by this status.
///
/// # Safety
/// Only called in the child between clone and exec.
unsafe fn report(error_fd: RawFd, stage: Stage, errno: libc::c_int) -> ! {
    let mut bytes = [0u8; REPORT_LEN];
    bytes[0] = stage as u8;
    bytes[1..].copy_from_slice(&errno.to_ne_bytes());
    let code = match (stage, errno) {
        (Stage::Exec, libc::ENOENT) => 127,
        (Stage::Exec, _) => 126,
        _ => 125,
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe (signal-safety(7)); `bytes` is on
    // this stack and valid for its length.
    unsafe {
        libc::write(error_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(code)
    }
}
