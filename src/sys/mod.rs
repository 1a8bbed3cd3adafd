//! The only module with `unsafe` (src/lib.rs denies it elsewhere): the system calls that `nix`
//! does not wrap and the child's steps between clone and exec, which may only use
//! async-signal-safe raw calls. Every unsafe block says which man page or kernel document it
//! relies on (`clippy::undocumented_unsafe_blocks` is denied here).
//!
//! - `clone`: clone3 with `CLONE_INTO_CGROUP` (fork where it is refused), the child's steps
//!   before exec and its report on the error pipe ([`Stage`], [`REPORT_LEN`]).
//! - `credentials`: dropping the child to another user.
//! - `holder`: the systemd scope's holder process.
//! - `syscalls`: pidfds, extended attributes, raw signals, stdin, `openat` into an owned
//!   descriptor, and a hook's move into its cgroup before exec.

#![deny(clippy::undocumented_unsafe_blocks)]

mod clone;
mod credentials;
mod holder;
mod syscalls;

pub use clone::{CLONE_NEWCGROUP, ExecSpec, REPORT_LEN, Stage, Started, spawn_into};
pub use credentials::Credentials;
pub use holder::spawn_holder;
pub use syscalls::{
    exec_in_cgroup, getxattr, kill_request_signal, limits_changed_signal, openat, pidfd_open,
    pidfd_send_raw_signal, pidfd_send_signal, setxattr, stdin_fd, with_raw_signal,
};
