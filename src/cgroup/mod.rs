//! Everything that touches cgroupfs: finding the hierarchy (`mount`), choosing where cages go
//! (`placement`), the limits (`limits`), creating, killing and removing a cage (`cage`), cage
//! ids and scope names (`id`), and every cgroup file name (`fs`).

mod cage;
pub mod fs;
pub mod id;
pub mod limits;
mod mount;
mod placement;
pub mod snapshot;

use std::io;
use std::path::PathBuf;

pub use cage::{Cage, Counters};
pub use fs::{is_marked, mark, wait_unpopulated};
pub use limits::Applied;
pub use mount::Hierarchy;
pub use placement::{Placement, choose_parent, missing_at_root, own_is_delegated, plan};

/// A cgroup operation that failed; the message names the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo); claude-cage needs cgroup v2"
    )]
    NoMount,
    #[error("failed to write {value:?} to {}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("failed to read {}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("failed to create cgroup {}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("failed to remove cgroup {}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("failed to enable the {controller} controller in {}: {why}", path.display())]
    Enable {
        path: PathBuf,
        controller: &'static str,
        why: String,
    },
    #[error("the {controller} controller is required by the policy but cannot be used: {why}")]
    Unavailable {
        controller: &'static str,
        why: String,
    },
    #[error("{0}")]
    Placement(String),
    #[error("cage {} is still populated after it was killed", path.display())]
    StillPopulated { path: PathBuf },
    #[error("failed to watch {}", path.display())]
    Watch { path: PathBuf, source: nix::Error },
}
