//! The holder of a systemd scope: a process that only keeps the scope populated.

use std::io;

use nix::unistd::Pid;

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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

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
