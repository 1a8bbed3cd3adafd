//! The exit statuses of `claude-cage run`, in one place. The README's table is this one.

/// `max-runtime` or `stdin-eof-grace` ran out and the cage was killed (as timeout(1)).
pub const TIMEOUT: i32 = 124;
/// claude-cage itself failed (bad policy, cgroup set-up); nothing was started.
pub const FAILURE: i32 = 125;
/// The program was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The program was not found.
pub const NOT_FOUND: i32 = 127;
/// A child killed by signal N ends claude-cage with `SIGNALED_BASE + N`.
pub const SIGNALED_BASE: i32 = 128;
/// Operator commands (`kill`, `ps`): the named cage does not exist or the command failed.
pub const COMMAND_FAILED: i32 = 1;
