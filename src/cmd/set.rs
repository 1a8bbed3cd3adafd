//! `claude-cage set CAGE... | --name BOT [--memory-high S] [--memory-max S] [--pids-max N]
//! [--cpu-max P] [--cpu-weight W]`: changes the limits of live cages, like `systemctl
//! set-property`. The values pass the policy's own rules first (sizes, ranges, memory.high not
//! above memory.max, the cage's current value standing in for the one not given); nothing is
//! written unless every value is valid (exit 125). A systemd scope's unit properties are set
//! first (`SetUnitProperties`, for this boot, like `systemctl set-property --runtime`), so that
//! systemd never re-applies the old ones; then each cage's files are written (the scope's cgroup
//! is the cage), and its supervisor, told by a real-time signal through its pidfd, writes a
//! `limits-changed` event with the cage's limits as they now are. `ps` reads the live files, so
//! it shows the new values at once. The same cages may be changed as may be killed: root's, or
//! the user's own.

use std::os::fd::AsFd;

use crate::cgroup::fs;
use crate::cgroup::limits::{Values, read_limit};
use crate::cmd::kill::Target;
use crate::policy::{self, Overrides};
use crate::registry::{CageState, Found};
use crate::state;
use crate::sys;
use crate::units::{self, Bytes, Limit};

/// The limits to set; `None`: unchanged.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub memory_high: Option<String>,
    pub memory_max: Option<String>,
    pub pids_max: Option<String>,
    pub cpu_max: Option<String>,
    pub cpu_weight: Option<String>,
}

/// The validated changes (never `swap_max`).
type Valid = Values;

/// The flags through the policy's rules: a policy with no file, the flags as its overrides.
fn validate(c: &Changes) -> Result<Valid, String> {
    let o = Overrides {
        memory_high: c.memory_high.clone(),
        memory_max: c.memory_max.clone(),
        pids_max: c.pids_max.clone(),
        ..Overrides::default()
    };
    let p = policy::parse_with("", "claude-cage set", &o, &crate::prepare::mem_total)
        .map_err(|e| e.to_string())?;
    let cpu_max = c
        .cpu_max
        .as_deref()
        .map(units::parse_cpu_max)
        .transpose()
        .map_err(|e| format!("--cpu-max: {}", e.0))?;
    let cpu_weight = match c.cpu_weight.as_deref() {
        None => None,
        Some(w) => match w.trim().parse::<u32>() {
            Ok(v) if (1..=10_000).contains(&v) => Some(v),
            _ => {
                return Err(format!(
                    "--cpu-weight: {w:?} is out of range: the kernel takes 1 to 10000 (100 is the default)"
                ));
            }
        },
    };
    Ok(Valid {
        memory_high: p.memory_high.filter(|_| c.memory_high.is_some()),
        memory_max: p.memory_max.filter(|_| c.memory_max.is_some()),
        swap_max: None,
        pids_max: p.pids_max.filter(|_| c.pids_max.is_some()),
        cpu_max,
        cpu_weight,
    })
}

fn value(l: Limit) -> String {
    match l {
        Limit::Max => "max".to_owned(),
        Limit::Bytes(b) => b.to_string(),
    }
}

fn words(l: Limit) -> String {
    match l {
        Limit::Max => "max".to_owned(),
        Limit::Bytes(b) => Bytes(b).to_string(),
    }
}

/// Whether the changes keep the cage's memory.high at or below its memory.max, the cage's
/// current value standing in for the one not given.
fn consistent(f: &Found, v: &Valid) -> Result<(), String> {
    let high = v.memory_high.or(read_limit(&f.dir, fs::MEMORY_HIGH));
    let max = v.memory_max.or(read_limit(&f.dir, fs::MEMORY_MAX));
    // memory.high "max" (no throttling) goes with any memory.max.
    let above = matches!((high, max), (Some(Limit::Bytes(h)), Some(Limit::Bytes(m))) if h > m);
    if above {
        return Err(format!(
            "{}: memory.high {} would be above memory.max {}: give --memory-high too",
            f.id,
            high.map(words).unwrap_or_default(),
            max.map(words).unwrap_or_default()
        ));
    }
    Ok(())
}

/// Writes the changes into one cage, memory.high never left above memory.max; the words of what
/// was set.
fn apply(f: &Found, v: &Valid) -> Result<String, String> {
    let max_now = read_limit(&f.dir, fs::MEMORY_MAX);
    let mut writes: Vec<(&str, String)> = Vec::new();
    // Lowering: memory.high first, so that it is never above memory.max; raising: memory.max
    // first.
    let lowering = matches!((v.memory_max, max_now), (Some(Limit::Bytes(n)), Some(Limit::Bytes(o))) if n < o)
        || matches!(
            (v.memory_max, max_now),
            (Some(Limit::Bytes(_)), Some(Limit::Max))
        );
    let mem = [
        v.memory_high.map(|l| (fs::MEMORY_HIGH, l)),
        v.memory_max.map(|l| (fs::MEMORY_MAX, l)),
    ];
    let mem: Vec<(&str, Limit)> = if lowering {
        mem.into_iter().flatten().collect()
    } else {
        mem.into_iter().rev().flatten().collect()
    };
    for (file, l) in mem {
        writes.push((file, value(l)));
    }
    if let Some(l) = v.pids_max {
        // A scope's pids.max counts its holder (as its TasksMax= does).
        let l = match l {
            Limit::Bytes(n) => Limit::Bytes(n.saturating_add(crate::cgroup::id::holders(&f.dir))),
            l => l,
        };
        writes.push((fs::PIDS_MAX, value(l)));
    }
    if let Some(c) = v.cpu_max {
        writes.push((fs::CPU_MAX, c.to_cgroup_value()));
    }
    if let Some(w) = v.cpu_weight {
        writes.push((fs::CPU_WEIGHT, w.to_string()));
    }
    let mut done = Vec::new();
    for (file, text) in &writes {
        fs::write(&f.dir, file, text).map_err(|e| {
            format!(
                "{}: failed to write {file}: {e}{}",
                f.id,
                if done.is_empty() {
                    " (nothing was changed)".to_owned()
                } else {
                    format!(" (already set: {})", done.join(", "))
                }
            )
        })?;
        done.push(format!("{file} {text}"));
    }
    Ok(done.join(", "))
}

/// Sets the changes as the scope's unit properties, when the cage is a systemd scope. Where
/// this user's service manager does not hold the scope (root changing a user manager's scope),
/// or does not answer, a warning says so and the files alone are written.
#[cfg(feature = "systemd")]
fn set_unit(f: &Found, v: &Valid) {
    let Some(unit) = f
        .dir
        .file_name()
        .filter(|n| crate::cgroup::id::is_scope(n))
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return;
    };
    let why = match crate::systemd::Manager::connect().and_then(|m| m.set_limits(&unit, v)) {
        Ok(true) => return,
        Ok(false) => "this user's service manager has no such unit".to_owned(),
        Err(e) => crate::error::error_chain(&e),
    };
    crate::warning!(
        "{}: the limits of {unit} were not set in systemd ({why}): its cgroup files alone are written, and systemd may put back the unit's own limits when it applies them again",
        f.id
    );
}

#[cfg(not(feature = "systemd"))]
fn set_unit(_: &Found, _: &Valid) {}

/// Tells a live supervisor that its cage's limits changed, through its pidfd.
fn tell(f: &Found) {
    let Some(r) = f.record.as_ref().filter(|r| state::supervisor_alive(r)) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(r.supervisor_pid);
    if let Ok(pidfd) = sys::pidfd_open(pid) {
        // Checked again with the pidfd open: it names the process that was identified.
        if state::supervisor_alive(r) {
            let _ = sys::pidfd_send_raw_signal(pidfd.as_fd(), sys::limits_changed_signal());
        }
    }
}

/// The `set` command.
pub fn set_cmd(target: Target, changes: &Changes) -> i32 {
    let valid = match validate(changes) {
        Ok(v) => v,
        Err(e) => {
            crate::error!("{e}");
            return crate::exit::FAILURE;
        }
    };
    let survey = match super::survey() {
        Ok(s) => s,
        Err(status) => return status,
    };
    let live = |f: &Found| matches!(f.state, CageState::Running | CageState::Starting);
    let (chosen, mut status) = match super::select(&survey, &target, live, "live cage") {
        Ok(c) => c,
        Err(status) => return status,
    };
    // Every cage is checked before any is written: a refused value changes nothing anywhere.
    let refused: Vec<String> = chosen
        .iter()
        .filter_map(|f| consistent(f, &valid).err())
        .collect();
    if !refused.is_empty() {
        for e in refused {
            crate::error!("{e}; nothing was changed");
        }
        return crate::exit::FAILURE;
    }
    for f in chosen {
        set_unit(f, &valid);
        match apply(f, &valid) {
            Ok(what) => {
                tell(f);
                println!("set {what} on cage {}", f.id);
            }
            Err(e) => {
                crate::error!("{e}");
                status = crate::exit::COMMAND_FAILED;
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::CpuMax;

    #[test]
    fn the_values_pass_the_policys_rules() {
        let c = |high: Option<&str>, max: Option<&str>| Changes {
            memory_high: high.map(str::to_owned),
            memory_max: max.map(str::to_owned),
            ..Changes::default()
        };
        let v = validate(&c(Some("1G"), Some("2G"))).unwrap();
        assert_eq!(
            (v.memory_high, v.memory_max),
            (Some(Limit::Bytes(1 << 30)), Some(Limit::Bytes(2 << 30)))
        );
        let e = validate(&c(Some("3G"), Some("2G"))).unwrap_err();
        assert!(
            e.contains("memory.high (3.0 GiB) is above memory.max"),
            "{e}"
        );
        let e = validate(&c(None, Some("lots"))).unwrap_err();
        assert!(e.contains("--memory-max") && e.contains("bad size"), "{e}");
        assert_eq!(
            validate(&c(None, Some("max"))).unwrap().memory_max,
            Some(Limit::Max)
        );
        let cpu = |m: &str, w: &str| Changes {
            cpu_max: Some(m.into()),
            cpu_weight: Some(w.into()),
            ..Changes::default()
        };
        let v = validate(&cpu("150%", "200")).unwrap();
        assert_eq!(
            (v.cpu_max, v.cpu_weight),
            (Some(CpuMax::Percent(150)), Some(200))
        );
        assert!(
            validate(&cpu("150%", "0"))
                .unwrap_err()
                .contains("--cpu-weight")
        );
        assert!(
            validate(&cpu("1.5", "100"))
                .unwrap_err()
                .contains("--cpu-max")
        );
    }
}
