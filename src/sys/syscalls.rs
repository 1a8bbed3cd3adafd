//! Small wrappers of system calls that `nix` does not offer: pidfds, extended attributes, raw
//! (real-time) signal numbers, and standard input as a borrowed descriptor.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

/// `pidfd_open(2)` (since 5.3): a file descriptor that refers to `pid` and becomes readable
/// when it exits.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags, touches no memory of ours, and returns a new
    // file descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open(2) returned a new (close-on-exec) file descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)` (since 5.1): signals exactly the process the pidfd refers to, never a
/// later process that reused its pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a pidfd borrowed for the call, a valid signal number, no
    // siginfo (a null pointer is allowed) and no flags.
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
    // SAFETY: setxattr(2) reads two NUL-terminated strings and `value.len()` bytes of `value`,
    // all valid for the call.
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
    // SAFETY: getxattr(2) reads two NUL-terminated strings and writes at most `buf.len()` bytes
    // into `buf`, all valid for the call.
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

/// The real-time signal `claude-cage set` sends a supervisor: its cage's limits changed.
pub fn limits_changed_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
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

/// `openat(2)` relative to a directory handle, into an owned descriptor; `O_CLOEXEC` always.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &std::path::Path,
    flags: nix::fcntl::OFlag,
    mode: nix::sys::stat::Mode,
) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | nix::fcntl::OFlag::O_CLOEXEC,
        mode,
    )?;
    // SAFETY: openat(2) returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)` with a raw signal number (a real-time signal `Signal` cannot name).
pub fn pidfd_send_raw_signal(pidfd: BorrowedFd<'_>, signo: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) takes a pidfd, a signal number (the kernel checks it), no
    // siginfo and no flags; it touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signo,
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

/// Makes the child of `cmd` move itself into the cgroup whose `cgroup.procs` is `procs` (writing
/// "0", cgroup-v2.rst) after fork and before exec, so that nothing it starts is ever outside that
/// cgroup. A failed write fails the spawn.
pub fn exec_in_cgroup(cmd: &mut std::process::Command, procs: OwnedFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only write(2), which
    // is async-signal-safe (signal-safety(7)); it allocates nothing. `procs` is moved into the
    // closure, so the descriptor stays open as long as the command; it is close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1);
            if r == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}
