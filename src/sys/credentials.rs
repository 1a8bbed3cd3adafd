//! Dropping the child to another user between clone and exec: the capability bounding and
//! ambient sets, the groups, gid and uid, the remaining capability sets, and `no_new_privs`.

use std::os::fd::RawFd;

use super::clone::{Stage, errno, fail};

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
pub(super) unsafe fn drop_privileges(c: &Credentials, error_fd: RawFd) {
    // SAFETY: prctl(2), setgroups(2), setgid(2), setuid(2) and capset(2) are system calls that
    // may run between clone and exec (signal-safety(7)); `groups` was allocated before the clone. capset(2) reads a header and two data structs
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

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::AsRawFd;

    use nix::sys::signal::{SigSet, Signal};
    use nix::unistd::Pid;

    use super::*;
    use crate::sys::{ExecSpec, Started, spawn_into};

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
}
