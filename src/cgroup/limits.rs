//! The one writer of limits: which of a policy's limits a cage gets with the controllers it has
//! ([`for_cage`]: what the cgroupfs backend writes and the systemd backend asks of the service
//! manager), writing them into a cage and the bot's aggregate limits into the bot's cgroup, and
//! enabling controllers for a cgroup's children.

use std::path::Path;

use super::fs::{
    CPU_MAX, CPU_WEIGHT, MEMORY_HIGH, MEMORY_MAX, MEMORY_OOM_GROUP, MEMORY_SWAP_MAX, PIDS_MAX,
    SUBTREE_CONTROL, write,
};
use super::{CgroupError, Placement, fs};
use crate::policy::{Controller, Policy};
use crate::units::Limit;

/// The limits actually written, for the `start` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub memory_high: Option<Limit>,
    pub memory_max: Option<Limit>,
    pub swap_max: Option<Limit>,
    pub oom_group: Option<bool>,
    pub pids_max: Option<Limit>,
    pub cpu_max: Option<String>,
    pub cpu_weight: Option<u32>,
    pub bot_memory_high: Option<Limit>,
    pub bot_memory_max: Option<Limit>,
    pub bot_pids_max: Option<Limit>,
}

/// Limits to give a cgroup: a new systemd scope or a bot's slice (as unit properties), or a live
/// cage (`claude-cage set`); `None`: not given, left as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Values {
    pub memory_high: Option<Limit>,
    pub memory_max: Option<Limit>,
    pub swap_max: Option<Limit>,
    pub pids_max: Option<Limit>,
    pub cpu_max: Option<crate::units::CpuMax>,
    pub cpu_weight: Option<u32>,
}

/// A limit file's value: `Limit::Max`, bytes, or `None` when the file is missing or unreadable.
pub fn read_limit(dir: &Path, name: &str) -> Option<Limit> {
    let t = super::fs::read_optional(dir, name).ok().flatten()?;
    match t.trim() {
        "max" => Some(Limit::Max),
        n => n.parse().ok().map(Limit::Bytes),
    }
}

impl Applied {
    /// The memory limits as the cage's files (and its bot's) say now: `claude-cage set` may
    /// have changed them since they were written. A file that cannot be read (a systemd scope
    /// already gone) leaves the value as it was; so does "max" where nothing was set.
    pub fn refresh(&mut self, cage_dir: &Path, bot_dir: &Path) {
        let now = |old: Option<Limit>, dir: &Path, file: &str| match (old, read_limit(dir, file)) {
            (None, Some(Limit::Max)) | (_, None) => old,
            (_, new) => new,
        };
        self.memory_high = now(self.memory_high, cage_dir, MEMORY_HIGH);
        self.memory_max = now(self.memory_max, cage_dir, MEMORY_MAX);
        if self.bot_memory_max.is_some() {
            self.bot_memory_max = now(self.bot_memory_max, bot_dir, MEMORY_MAX);
        }
    }
}

/// The limits of `policy` that a cage with `controllers` gets, the bot's aggregate ones
/// included; `oom_group` is set once it is written ([`write_oom_group`]).
pub fn for_cage(policy: &Policy, controllers: &[Controller]) -> Applied {
    let has = |c| controllers.contains(&c);
    let mut a = Applied::default();
    if has(Controller::Memory) {
        a.memory_high = policy.memory_high;
        a.memory_max = policy.memory_max;
        a.swap_max = policy.swap_max;
        a.bot_memory_high = policy.bot_memory_high;
        a.bot_memory_max = policy.bot_memory_max;
    }
    if has(Controller::Pids) {
        a.pids_max = policy.pids_max;
        a.bot_pids_max = policy.bot_pids_max;
    }
    if has(Controller::Cpu) {
        a.cpu_max = policy.cpu_max.map(|c| c.to_cgroup_value());
        a.cpu_weight = policy.cpu_weight;
    }
    a
}

/// Writes `a`'s per-cage limits into the cage `dir`. `memory.max` goes before `memory.high`
/// (the order the kernel's documentation uses). A kernel without swap accounting has no
/// `memory.swap.max`: then `swap_max` is cleared, not written, and the caller warns.
pub fn write_cage(dir: &Path, a: &mut Applied) -> Result<(), CgroupError> {
    if let Some(v) = a.memory_max {
        write(dir, MEMORY_MAX, &v.to_cgroup_value())?;
    }
    if let Some(v) = a.memory_high {
        write(dir, MEMORY_HIGH, &v.to_cgroup_value())?;
    }
    if let Some(v) = a.swap_max {
        if dir.join(MEMORY_SWAP_MAX).exists() {
            write(dir, MEMORY_SWAP_MAX, &v.to_cgroup_value())?;
        } else {
            a.swap_max = None;
        }
    }
    if let Some(v) = a.pids_max {
        write(dir, PIDS_MAX, &v.to_cgroup_value())?;
    }
    if let Some(v) = &a.cpu_max {
        write(dir, CPU_MAX, v)?;
    }
    if let Some(v) = a.cpu_weight {
        write(dir, CPU_WEIGHT, &v.to_string())?;
    }
    Ok(())
}

/// Bounds the cgroups the child may make inside the cage `dir` (`cgroup.max.descendants`,
/// `cgroup.max.depth`), which the child cannot raise: the files stay root's even when the cage
/// is delegated to `[cage] user`. Not applied (a warning) where this user may not write them.
pub fn write_nesting(dir: &Path, policy: &Policy) {
    for (file, key, v) in [
        (
            fs::MAX_DESCENDANTS,
            "cage.max-descendants",
            policy.max_descendants,
        ),
        (fs::MAX_DEPTH, "cage.max-depth", policy.max_depth),
    ] {
        if let Err(e) = write(dir, file, &v.to_string()) {
            crate::warning!("{key} is not applied: {}", crate::error::error_chain(&e));
        }
    }
}

/// Writes `memory.oom.group` into `dir` (the cage, or its `main`: see the systemd backend).
pub fn write_oom_group(dir: &Path, on: bool) -> Result<(), CgroupError> {
    write(dir, MEMORY_OOM_GROUP, if on { "1" } else { "0" })
}

/// Writes the bot's aggregate limits (resetting to "max" what the policy leaves unset, so the
/// policy is the whole truth) and enables the controllers for its cages.
pub(super) fn setup_bot(
    bot_dir: &Path,
    place: &Placement,
    policy: &Policy,
) -> Result<(), CgroupError> {
    let has = |c| place.controllers.contains(&c);
    if has(Controller::Memory) {
        // memory.high before memory.max is never above it for long: the policy keeps it at or
        // below, and the kernel accepts either order.
        write(
            bot_dir,
            MEMORY_HIGH,
            &policy
                .bot_memory_high
                .unwrap_or(Limit::Max)
                .to_cgroup_value(),
        )?;
        write(
            bot_dir,
            MEMORY_MAX,
            &policy
                .bot_memory_max
                .unwrap_or(Limit::Max)
                .to_cgroup_value(),
        )?;
    }
    if has(Controller::Pids) {
        write(
            bot_dir,
            PIDS_MAX,
            &policy.bot_pids_max.unwrap_or(Limit::Max).to_cgroup_value(),
        )?;
    }
    enable(bot_dir, &place.controllers)
}

/// Enables `controllers` for the children of `dir`, one at a time so that an error names the
/// controller. Already enabled ones are left alone (no write at all when nothing is missing).
pub fn enable(dir: &Path, controllers: &[Controller]) -> Result<(), CgroupError> {
    let enabled = fs::words(&fs::read(dir, SUBTREE_CONTROL)?);
    for c in controllers {
        if enabled.iter().any(|e| e == c.name()) {
            continue;
        }
        if let Err(e) = write(dir, SUBTREE_CONTROL, &format!("+{}", c.name())) {
            if super::cage::vanished(&e) {
                return Err(e);
            }
            let why = match &e {
                CgroupError::Write { source, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
                    format!(
                        "{} holds processes, and the kernel's no-internal-process rule forbids enabling \
                     controllers for the children of a non-root cgroup that does; move those processes \
                     into a child cgroup (systemd: DelegateSubgroup=) or choose another parent",
                        dir.display()
                    )
                }
                CgroupError::Write { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            return Err(CgroupError::Enable {
                path: dir.to_path_buf(),
                controller: c.name(),
                why,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        crate::policy::parse(text, "p", &Default::default(), 1 << 30).unwrap()
    }

    /// The end's line names the limits the files hold then (`set` may have changed them); a
    /// file that is gone or says "max" where nothing was set changes nothing.
    #[test]
    fn refresh_reads_the_files() {
        let d = std::env::temp_dir().join(format!("claude-cage-refresh-{}", std::process::id()));
        let (cage, bot) = (d.join("bot/cage"), d.join("bot"));
        std::fs::create_dir_all(&cage).unwrap();
        std::fs::write(cage.join(MEMORY_MAX), "209715200\n").unwrap();
        std::fs::write(cage.join(MEMORY_HIGH), "max\n").unwrap();
        std::fs::write(bot.join(MEMORY_MAX), "max\n").unwrap();
        let mut a = Applied {
            memory_max: Some(Limit::Bytes(4 << 30)),
            memory_high: None,
            bot_memory_max: Some(Limit::Bytes(12 << 30)),
            ..Applied::default()
        };
        a.refresh(&cage, &bot);
        assert_eq!(a.memory_max, Some(Limit::Bytes(200 << 20)));
        assert_eq!(a.memory_high, None, "max where none was set");
        assert_eq!(a.bot_memory_max, Some(Limit::Max), "raised to max by set");
        let mut b = Applied {
            memory_max: Some(Limit::Bytes(1 << 30)),
            ..Applied::default()
        };
        b.refresh(&d.join("gone"), &d.join("gone"));
        assert_eq!(
            b.memory_max,
            Some(Limit::Bytes(1 << 30)),
            "unreadable: unchanged"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A limit is applied only where its controller is: the `start` event never claims one the
    /// kernel does not enforce.
    #[test]
    fn limits_follow_the_controllers() {
        let p = policy(
            "[memory]\nhigh = \"1G\"\nmax = \"2G\"\n[pids]\nmax = 100\n[cpu]\nmax = \"150%\"\nweight = 50\n[bot]\nmemory-max = \"4G\"\npids-max = 400\n",
        );
        let all = for_cage(&p, &Controller::ALL);
        assert_eq!(all.memory_high, Some(Limit::Bytes(1 << 30)));
        assert_eq!(all.memory_max, Some(Limit::Bytes(2 << 30)));
        assert_eq!(all.pids_max, Some(Limit::Bytes(100)));
        assert_eq!(all.cpu_max.as_deref(), Some("150000 100000"));
        assert_eq!(all.cpu_weight, Some(50));
        assert_eq!(all.bot_memory_max, Some(Limit::Bytes(4 << 30)));
        assert_eq!(all.bot_pids_max, Some(Limit::Bytes(400)));
        // oom_group is reported once written, never assumed.
        assert_eq!(all.oom_group, None);

        let pids_only = for_cage(&p, &[Controller::Pids]);
        assert_eq!(
            pids_only,
            Applied {
                pids_max: Some(Limit::Bytes(100)),
                bot_pids_max: Some(Limit::Bytes(400)),
                ..Applied::default()
            }
        );
        assert_eq!(for_cage(&p, &[]), Applied::default());
    }

    /// The writes go where `for_cage` says, and a kernel without `memory.swap.max` (no swap
    /// accounting) gets no swap limit written nor reported. A temporary directory stands in for
    /// the cage: this tests which files are written, not what the kernel does with them.
    #[test]
    fn writes_only_what_applies() {
        let dir = std::env::temp_dir().join(format!("claude-cage-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [MEMORY_MAX, MEMORY_HIGH, PIDS_MAX, CPU_MAX, CPU_WEIGHT] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let p = policy("[memory]\nmax = \"2G\"\nswap-max = \"0\"\n[pids]\nmax = 100\n");
        let mut a = for_cage(&p, &Controller::ALL);
        assert_eq!(a.swap_max, Some(Limit::Bytes(0)));
        let written = write_cage(&dir, &mut a);
        let read = |f| std::fs::read_to_string(dir.join(f)).unwrap();
        let (max, pids, high) = (read(MEMORY_MAX), read(PIDS_MAX), read(MEMORY_HIGH));
        std::fs::remove_dir_all(&dir).unwrap();
        written.unwrap();
        assert_eq!(max, (2u64 << 30).to_string());
        assert_eq!(pids, "100");
        assert_eq!(high, "", "memory.high is unset in the policy");
        assert_eq!(a.swap_max, None);
    }
}
