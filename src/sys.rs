//! The only module with `unsafe`: the system calls that `nix` does not wrap (clone3 with
//! `CLONE_INTO_CGROUP`, `pidfd_open`, `pidfd_send_signal`, `getxattr`) and the child's steps
//! between clone and exec, which may only use async-signal-safe raw calls.
//!
//! Every block says which man page or kernel document it relies on.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

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
        // SAFETY: with CLONE_PIDFD the kernel stored a new, owned file descriptor in `pidfd`.
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
/// 125) from a program that cannot be executed (126, 127).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Writing "0" into the cage's `cgroup.procs` (the fork fallback, a cgroup namespace).
    JoinCgroup = 1,
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
    const ALL: [Stage; 13] = [
        Stage::JoinCgroup,
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

    /// What the child was doing, as a fragment that fits "failed to …".
    pub fn operation(self) -> &'static str {
        match self {
            Stage::JoinCgroup => "move into the cage (writing its cgroup.procs)",
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

/// A report on the error pipe: the [`Stage`] byte and the errno in native byte order. Five
/// bytes are written at once, and a pipe write of at most PIPE_BUF bytes is atomic (pipe(7)):
/// the parent reads all of it or nothing.
pub const REPORT_LEN: usize = 5;

/// The child's side: move into the cgroup (fallback path only), drop privileges, arrange to die
/// with the parent, wait for the parent's go, restore the original signal mask, exec. Every
/// failure on the way is reported on the error pipe with its [`Stage`], so that the parent
/// never mistakes a child that ended before exec for one that exec'd.
fn child_after_clone(spec: &ExecSpec, move_self: bool) -> ! {
    // SAFETY: only async-signal-safe system calls (write, read, prctl, getppid, sigprocmask,
    // execve, _exit; signal-safety(7)) on memory that was allocated before the clone and stays valid,
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

/// Forks the holder of a systemd scope: a process that does nothing but keep the scope
/// populated, so that the service manager does not remove the scope (and with it the cage's
/// `memory.events` and `memory.peak`) the moment the cage's last process exits, before
/// claude-cage has read them. It closes every descriptor (so it holds no pipe of the bot's
/// open), leaves the working directory, blocks every signal it can and waits; SIGKILL, from
/// claude-cage's teardown, `cgroup.kill` or its parent's death (`PR_SET_PDEATHSIG`), ends it.
/// Its name is `cage-holder` and its command line the words of `title`, so that `ps` and
/// `systemctl status` do not show it as a second claude-cage.
pub fn spawn_holder(title: &str) -> io::Result<Pid> {
    let parent = nix::unistd::getpid().as_raw();
    // The argument area (proc(5): /proc/pid/stat fields 48 and 49, arg_start and arg_end), read
    // before the fork; the holder overwrites its own copy, which the kernel shows as its
    // command line.
    let area = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<usize> = rest
                .split_whitespace()
                .skip(45)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() == 2 && f[1] > f[0]).then(|| (f[0], f[1] - f[0]))
        });
    let title: Vec<u8> = title
        .bytes()
        .map(|b| if b == b' ' { 0 } else { b })
        .collect();
    // SAFETY: fork(2); the child runs only the block below and never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: async-signal-safe raw system calls only (signal-safety(7); close_range(2),
        // chdir, prctl, getppid, sigprocmask and pause are plain system calls), and writes to
        // the argument area, which the kernel mapped and this process alone owns after the
        // fork; everything used was prepared before the fork.
        0 => unsafe {
            // Kernels before 5.9 have no close_range: then the standard descriptors at least.
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..3 {
                    libc::close(fd);
                }
            }
            libc::chdir(c"/".as_ptr());
            libc::prctl(
                libc::PR_SET_NAME,
                c"cage-holder".as_ptr() as libc::c_ulong,
                0,
                0,
                0,
            );
            if let Some((start, len)) = area {
                // The area is this process's own, writable copy of the initial stack's argument
                // strings (copy-on-write since the fork); nothing reads it here.
                let p = start as *mut u8;
                std::ptr::write_bytes(p, 0, len);
                std::ptr::copy_nonoverlapping(title.as_ptr(), p, title.len().min(len - 1));
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
                || libc::getppid() != parent
            {
                libc::_exit(125);
            }
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            loop {
                libc::pause();
            }
        },
        pid => Ok(Pid::from_raw(pid)),
    }
}

/// Who the child runs as, resolved by the parent before the clone.
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    /// The highest capability number (/proc/sys/kernel/cap_last_cap).
    pub cap_last: libc::c_int,
}

/// `struct __user_cap_header_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (linux/capability.h); version 3 takes an array of two, for
/// capabilities 0-31 and 32-63.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h, since 2.6.26).
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Becomes `c` for good: every capability dropped from the bounding set, no ambient ones,
/// supplementary groups, gid and uid set, the permitted, effective and inheritable sets
/// emptied, and `no_new_privs`, so no setuid binary or file capability can give any back
/// (capabilities(7), prctl(2)).
///
/// The capability calls are raw system calls rather than the `caps` crate's: this runs between
/// clone and exec, where only async-signal-safe calls on memory prepared before the clone are
/// allowed (signal-safety(7)), and that crate's errors are heap-allocated strings.
///
/// # Safety
/// Only called in the child between clone and exec; raw system calls only.
unsafe fn drop_privileges(c: &Credentials, error_fd: RawFd) {
    // SAFETY: prctl, setgroups, setgid, setuid and capset are async-signal-safe system calls;
    // `groups` was allocated before the clone. capset(2) reads a header and two data structs
    // of the layout linux/capability.h gives for version 3, both live on this stack for the call.
    unsafe {
        for cap in 0..=c.cap_last {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                fail(error_fd, Stage::DropBounding);
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
            && errno() != libc::EINVAL
        {
            fail(error_fd, Stage::ClearAmbient);
        }
        if libc::setgroups(c.groups.len(), c.groups.as_ptr()) != 0 {
            fail(error_fd, Stage::SetGroups);
        }
        if libc::setgid(c.gid) != 0 {
            fail(error_fd, Stage::SetGid);
        }
        if libc::setuid(c.uid) != 0 {
            fail(error_fd, Stage::SetUid);
        }
        // setuid(2) to a non-zero uid empties the permitted and effective sets but keeps the
        // inheritable set (capabilities(7), "Effect of user ID changes on capabilities"), which
        // a program whose file capabilities name the same bits would get back at exec. capset(2)
        // with every set empty clears it (and the other two, for a uid of 0): lowering a set is
        // always allowed.
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData::default(); 2];
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            fail(error_fd, Stage::ClearCapabilities);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(error_fd, Stage::NoNewPrivs);
        }
    }
}

/// The calling thread's errno.
fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns a pointer to this thread's errno, valid for the
    // thread's life; reading it is async-signal-safe (signal-safety(7)).
    unsafe { *libc::__errno_location() }
}

/// Reports the failed `stage` with the current errno and exits.
///
/// # Safety
/// Only called in the child between clone and exec.
unsafe fn fail(error_fd: RawFd, stage: Stage) -> ! {
    // SAFETY: errno is read before any other call can change it; `report` is async-signal-safe.
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
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `bytes` is on this stack.
    unsafe {
        libc::write(error_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(code)
    }
}

/// `pidfd_open(2)` (since 5.3): a file descriptor that refers to `pid` and becomes readable
/// when it exits.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)` (since 5.1): signals exactly the process the pidfd refers to, never a
/// later process that reused its pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
    // SAFETY: a valid pidfd, a valid signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets an extended attribute (setxattr(2)).
pub fn setxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated; `value` is valid for its length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads an extended attribute (getxattr(2)); `None` when it is not set or not supported.
pub fn getxattr(path: &CStr, name: &CStr) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; the buffer is valid for its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        None
    } else {
        Some(buf[..n as usize].to_vec())
    }
}

/// Standard input as a borrowed descriptor, for poll(2).
pub fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 is never closed by claude-cage; if it was closed when claude-cage started,
    // poll(2) reports POLLNVAL for it, which the supervisor treats as "stdin closed".
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// The real-time signal `claude-cage kill` sends a supervisor to have it kill its cage and
/// report the reason `killed`. SIGRTMIN and SIGRTMIN+1 may be taken by glibc internally
/// (signal(7)); `libc::SIGRTMIN()` already skips those, and +1 keeps clear of programs that use
/// the first free one.
pub fn kill_request_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// `set` plus a signal that `nix::sys::signal::Signal` cannot name (a real-time signal).
pub fn with_raw_signal(set: &SigSet, signo: libc::c_int) -> SigSet {
    let mut raw: libc::sigset_t = *set.as_ref();
    // SAFETY: `raw` is a valid, initialised sigset_t; sigaddset only fails (EINVAL) for an
    // invalid signal number, in which case the set is unchanged (sigsetops(3)).
    unsafe {
        libc::sigaddset(&mut raw, signo);
        SigSet::from_sigset_t_unchecked(raw)
    }
}

/// kill(2) with a raw signal number (for real-time signals).
pub fn send_raw_signal(pid: Pid, signo: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes a pid and a signal number and touches no memory.
    let r = unsafe { libc::kill(pid.as_raw(), signo) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's capability sets (capget(2); capabilities are a per-thread attribute).
    fn thread_caps() -> [CapData; 2] {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: capget(2) fills two version-3 data structs, which `data` is.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                data.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "capget: {}", io::Error::last_os_error());
        data
    }

    fn set_thread_caps(data: &[CapData; 2]) -> io::Result<()> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset(2) reads two version-3 data structs, which `data` is; it changes this
        // thread's sets only, so the tests running beside this one are not affected.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A "CapXxx:" line of a proc(5) status file, as a number.
    fn cap_line(status: &str, key: &str) -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {key} in {status}"))
    }

    /// Starts `path` with `argv` as the user of `credentials` through [`spawn_into`] (in this
    /// process's own cgroup), gives it its go, and returns its pid once it has exec'd: the
    /// close-on-exec error pipe ends without a report.
    fn exec_as(path: &str, argv: &[&str], credentials: Credentials) -> Pid {
        use std::io::{Read, Write};
        let cstring = |s: &str| CString::new(s).unwrap();
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (err_r, err_w) = pipe();
        let (go_r, go_w) = pipe();
        let mut spec = ExecSpec::new(
            cstring(path),
            argv.iter().map(|a| cstring(a)).collect(),
            Vec::new(),
            SigSet::empty(),
            nix::unistd::getpid(),
            None,
            err_w.as_raw_fd(),
            go_r.as_raw_fd(),
        );
        spec.credentials = Some(credentials);
        let Started { pid, .. } = spawn_into(None, &spec).unwrap();
        // The child's ends: the error pipe ends only when the child's copy closes.
        drop((err_w, go_r));
        std::fs::File::from(go_w).write_all(b"1").unwrap();
        let mut report = Vec::new();
        std::fs::File::from(err_r).read_to_end(&mut report).unwrap();
        if !report.is_empty() {
            let _ = nix::sys::wait::waitpid(pid, None);
            let stage = Stage::from_byte(report[0]);
            let errno = <[u8; 4]>::try_from(&report[1..]).map(i32::from_ne_bytes);
            panic!("the child failed before exec: {stage:?}, errno {errno:?}");
        }
        pid
    }

    /// A claude-cage started with a capability in its inheritable set (as a service manager's
    /// `CapabilityInheritable=` or a parent's capset can leave it) gives the child dropped to
    /// another user none: setuid(2) alone keeps the inheritable set (the first check shows it
    /// carried over to this thread's fork), so the child clears it with capset(2).
    #[test]
    fn the_child_of_another_user_keeps_no_inheritable_capability() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test drops the child to another user: run it as root"
        );
        const CAP_NET_RAW: u32 = 13;
        let before = thread_caps();
        assert_ne!(
            before[0].permitted & (1 << CAP_NET_RAW),
            0,
            "root without CAP_NET_RAW in its permitted set: {before:?}"
        );
        struct Restore([CapData; 2]);
        impl Drop for Restore {
            fn drop(&mut self) {
                set_thread_caps(&self.0).expect("restoring this thread's capabilities");
            }
        }
        let _restore = Restore(before);
        let mut raised = before;
        raised[0].inheritable |= 1 << CAP_NET_RAW;
        set_thread_caps(&raised).unwrap();
        let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert_eq!(
            cap_line(&own, "CapInh:") & (1 << CAP_NET_RAW),
            1 << CAP_NET_RAW,
            "this thread's inheritable set: {own}"
        );

        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("no sleep in /bin or /usr/bin");
        let credentials = Credentials {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        };
        let pid = exec_as(sleep, &["sleep", "60"], credentials);
        // The sets read here were set before exec (the error pipe that `exec_as` waited on
        // closes during exec), and exec keeps the inheritable set as it is (capabilities(7)).
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        let status = status.unwrap();
        assert!(status.contains("\nUid:\t65534\t"), "{status}");
        for key in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(cap_line(&status, key), 0, "{key} of the child: {status}");
        }
    }

    /// The holder names itself, holds no descriptor, ignores every catchable signal, and dies
    /// of SIGKILL.
    #[test]
    fn the_holder_is_named_closes_everything_and_dies_only_of_sigkill() {
        use nix::sys::signal::kill;
        use nix::sys::wait::{WaitStatus, waitpid};
        let pid = spawn_holder("claude-cage-holder t-1").unwrap();
        let proc = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
        // proc(5) status: a signal mask in hex; bit 14 is SIGTERM (15).
        let has_sigterm = |key: &str| {
            let status = String::from_utf8(proc("status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .is_some_and(|m| m & (1 << 14) != 0)
        };
        // Blocking the signals is its last step before it waits; nothing announces it, so
        // /proc is read until it shows (bounded).
        let mut blocked = false;
        for _ in 0..5000 {
            blocked = has_sigterm("SigBlk:");
            if blocked {
                break;
            }
            std::thread::yield_now();
        }
        assert!(blocked, "the holder never blocked SIGTERM");
        assert_eq!(proc("comm"), b"cage-holder\n");
        let cmdline = proc("cmdline");
        let shown: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            shown,
            [b"claude-cage-holder".as_slice(), b"t-1"],
            "{cmdline:?}"
        );
        // Descriptors are closed before the rename, so by now there are none.
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        assert_eq!(fds, 0);
        // A blocked signal stays pending: SIGTERM neither ends it nor is lost.
        kill(pid, Signal::SIGTERM).unwrap();
        assert!(
            has_sigterm("ShdPnd:"),
            "SIGTERM is not pending in the holder"
        );
        assert_eq!(
            waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap(),
            WaitStatus::StillAlive
        );
        kill(pid, Signal::SIGKILL).unwrap();
        assert_eq!(
            waitpid(pid, None).unwrap(),
            WaitStatus::Signaled(pid, Signal::SIGKILL, false)
        );
    }
}
