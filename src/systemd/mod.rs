//! The systemd backend: a transient scope per cage, asked of the service manager over D-Bus
//! (org.freedesktop.systemd1, `StartTransientUnit`), so that cages show in `systemctl status`
//! and `systemd-cgtop`, sit in a slice with aggregate limits, and systemd never finds cgroups in
//! its tree that it did not make. The system manager serves root; the user's manager serves
//! everyone else.
//!
//! claude-cage speaks D-Bus itself (`bus.rs`): as root it talks to the system manager on its
//! private socket, `/run/systemd/private`, as `systemctl` and `systemd-run` do, and a user to
//! their manager's, `$XDG_RUNTIME_DIR/systemd/private`. No broker is in between, no `Hello`
//! or match rules are needed, and systemd sends its job signals to every private connection
//! unasked. Where that socket cannot be reached, the same calls go through the message bus
//! (dbus-daemon), after `Hello`, a match rule for `JobRemoved` and `Subscribe`. claude-cage only
//! talks to the manager while a cage starts and ends, never in the supervisor's poll loop.

mod bus;

use std::cell::RefCell;
use std::path::PathBuf;

use nix::unistd::{Pid, Uid};

pub use bus::BusError;
use bus::{Address, Body, Bus, Target, Value};

use crate::cgroup::limits::Values as Limits;
use crate::policy::Policy;
use crate::units::{CPU_PERIOD_US, CpuMax, Limit};

/// A D-Bus or service manager failure, with the operation it broke.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("failed to connect to the {bus} bus of the service manager")]
    Connect { bus: &'static str, source: BusError },
    #[error("failed to {op} unit {unit}")]
    Call {
        op: &'static str,
        unit: String,
        source: BusError,
    },
    #[error("systemd's job to {op} unit {unit} ended with {result:?}")]
    Job {
        op: &'static str,
        unit: String,
        result: String,
    },
}

/// The fix for a service manager that does not answer: `run` and `check` give the same advice.
pub const CONNECT_ADVICE: &str = "run as root for the system manager, or in a user session whose bus is reachable ($DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus); or set [cage] backend = \"cgroupfs\" inside a delegated subtree";

/// The service manager's Manager object.
const MANAGER: Target<'static> = Target {
    destination: "org.freedesktop.systemd1",
    path: "/org/freedesktop/systemd1",
    interface: "org.freedesktop.systemd1.Manager",
};

/// The properties of the Manager object.
const MANAGER_PROPERTIES: Target<'static> = Target {
    interface: "org.freedesktop.DBus.Properties",
    ..MANAGER
};

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// A connection to the service manager. A cage keeps none while it lives: the manager sends
/// every connection on its private socket the signals of every unit, and would keep them
/// queued for one that nobody reads.
pub struct Manager {
    bus: RefCell<Bus>,
    pub user: bool,
    /// Whether the connection is the manager's private socket (not through a message bus).
    pub direct: bool,
}

impl Manager {
    /// The system manager as root, the user's manager otherwise: on its private socket, or
    /// through the message bus where that cannot be reached.
    pub fn connect() -> Result<Manager, SystemdError> {
        let user = !Uid::effective().is_root();
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let private = if user {
            runtime.as_ref().map(|d| d.join("systemd/private"))
        } else {
            Some(PathBuf::from("/run/systemd/private"))
        };
        let (mut conn, direct) = match private.and_then(|p| Bus::connect(&Address::Path(p)).ok()) {
            Some(b) => (b, true),
            None => {
                let bus = if user { "user session" } else { "system" };
                let conn = message_bus(user, runtime)
                    .map_err(|source| SystemdError::Connect { bus, source })?;
                (conn, false)
            }
        };
        conn.watch(MANAGER.interface, "JobRemoved");
        Ok(Manager {
            bus: RefCell::new(conn),
            user,
            direct,
        })
    }

    /// Starts the scope `name` in `slice` holding `pids` (the cage's holder, and for a user's
    /// manager the waiting child), with the policy's limits, and waits until systemd has moved
    /// the processes into it.
    pub fn start_scope(
        &self,
        name: &str,
        slice: &str,
        description: &str,
        pids: &[Pid],
        policy: &Policy,
    ) -> Result<(), SystemdError> {
        let mut props: Vec<(&str, Value)> = vec![
            ("Description", Value::Str(description.to_owned())),
            ("Slice", Value::Str(slice.to_owned())),
            (
                "PIDs",
                Value::U32Array(pids.iter().map(|p| p.as_raw() as u32).collect()),
            ),
            // The cage makes `hold` and `main` (and Claude Code its own cgroups) inside the
            // scope.
            ("Delegate", Value::Bool(true)),
            // A failed scope is collected too, so no unit is left behind.
            ("CollectMode", Value::Str("inactive-or-failed".to_owned())),
        ];
        props.extend(limit_properties(
            &Limits {
                memory_high: policy.memory_high,
                memory_max: policy.memory_max,
                swap_max: policy.swap_max,
                // Unset means unlimited, as with cgroupfs; left out, systemd would apply its
                // DefaultTasksMax= (15% of the kernel's limit) to the scope.
                pids_max: Some(policy.pids_max.unwrap_or(Limit::Max)),
                cpu_max: policy.cpu_max,
                cpu_weight: policy.cpu_weight,
            },
            1,
        ));
        let body = Body::new()
            .string(name)
            .string("fail")
            .properties(&props)
            .no_aux_units();
        self.run_job("start", name, "StartTransientUnit", body)
    }

    /// Changes the limits of a live unit for this boot (`systemctl set-property --runtime`), so
    /// that systemd's idea of the scope matches its cgroup files and it never re-applies the
    /// old values. `Ok(false)`: this manager has no such unit (a scope of another manager).
    pub fn set_limits(&self, unit: &str, limits: &Limits) -> Result<bool, SystemdError> {
        let holders = crate::cgroup::id::holders(std::path::Path::new(unit));
        let props = limit_properties(limits, holders);
        let body = Body::new().string(unit).boolean(true).properties(&props);
        match self
            .bus
            .borrow_mut()
            .call(&MANAGER, "SetUnitProperties", body)
        {
            Ok(_) => Ok(true),
            Err(BusError::Method { name, .. }) if name == NO_SUCH_UNIT => Ok(false),
            Err(source) => Err(SystemdError::Call {
                op: "set the properties of",
                unit: unit.to_owned(),
                source,
            }),
        }
    }

    /// The cgroup (relative to the cgroup2 mount) of the slice `slice` of this manager: the
    /// manager's own cgroup, then the slice's ancestors by systemd's naming rule.
    pub fn slice_cgroup(&self, slice: &str) -> Result<String, SystemdError> {
        let err = |source| SystemdError::Call {
            op: "read the ControlGroup of",
            unit: "the manager".into(),
            source,
        };
        let body = Body::new().string(MANAGER.interface).string("ControlGroup");
        let reply = self
            .bus
            .borrow_mut()
            .call(&MANAGER_PROPERTIES, "Get", body)
            .map_err(err)?;
        let mut r = reply.body("v").map_err(err)?;
        if r.signature().map_err(err)? != "s" {
            return Err(err(BusError::Protocol("ControlGroup is not a string")));
        }
        let root = r.string().map_err(err)?;
        Ok(format!(
            "{}{}",
            root.trim_end_matches('/'),
            slice_path(slice)
        ))
    }

    /// Calls a method that returns a job, and waits for the job's JobRemoved signal. Signals
    /// that come while the call waits for its reply are kept, so the job's cannot be missed.
    fn run_job(
        &self,
        op: &'static str,
        unit: &str,
        method: &str,
        body: Body,
    ) -> Result<(), SystemdError> {
        let err = |source| SystemdError::Call {
            op,
            unit: unit.to_owned(),
            source,
        };
        let mut bus = self.bus.borrow_mut();
        let reply = bus.call(&MANAGER, method, body).map_err(err)?;
        let job = reply.body("o").and_then(|mut r| r.string()).map_err(err)?;
        loop {
            let signal = bus.next_signal().map_err(err)?;
            // JobRemoved(u id, o job, s unit, s result)
            let Ok(mut r) = signal.body("uoss") else {
                continue;
            };
            let (Ok(_id), Ok(path), Ok(_unit), Ok(result)) =
                (r.u32(), r.string(), r.string(), r.string())
            else {
                continue;
            };
            if path == job {
                return if result == "done" {
                    Ok(())
                } else {
                    Err(SystemdError::Job {
                        op,
                        unit: unit.to_owned(),
                        result,
                    })
                };
            }
        }
    }
}

/// The message bus of the system manager (root) or of the user's: `Hello`, the match rule for
/// the manager's `JobRemoved`, and `Subscribe`, without which the manager sends no job signals
/// to the bus.
fn message_bus(user: bool, runtime: Option<PathBuf>) -> Result<Bus, BusError> {
    let (var, fallback) = if user {
        ("DBUS_SESSION_BUS_ADDRESS", runtime.map(|d| d.join("bus")))
    } else {
        (
            "DBUS_SYSTEM_BUS_ADDRESS",
            Some(PathBuf::from("/run/dbus/system_bus_socket")),
        )
    };
    let addr = match std::env::var(var) {
        Ok(list) => Address::parse(&list).ok_or(BusError::NoAddress(
            "no unix: address in the bus address variable",
        ))?,
        Err(_) => Address::Path(fallback.ok_or(BusError::NoAddress(
            "$DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR are unset",
        ))?),
    };
    let mut conn = Bus::connect(&addr)?;
    conn.hello()?;
    conn.add_match(
        "type='signal',sender='org.freedesktop.systemd1',path='/org/freedesktop/systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'",
    )?;
    conn.call(&MANAGER, "Subscribe", Body::new())?;
    Ok(conn)
}

/// The unit properties of `limits`; TasksMax= allows `holders` more tasks than `pids_max` (a
/// scope's holder is a task too: `sys::spawn_holder`).
fn limit_properties(limits: &Limits, holders: u64) -> Vec<(&'static str, Value)> {
    let bytes = |l: Option<Limit>| l.map(|l| l.bytes().unwrap_or(u64::MAX));
    let mut props = Vec::new();
    if let Some(v) = bytes(limits.memory_high) {
        props.push(("MemoryHigh", Value::U64(v)));
    }
    if let Some(v) = bytes(limits.memory_max) {
        props.push(("MemoryMax", Value::U64(v)));
    }
    if let Some(v) = bytes(limits.swap_max) {
        props.push(("MemorySwapMax", Value::U64(v)));
    }
    match bytes(limits.pids_max) {
        None => {}
        Some(u64::MAX) => props.push(("TasksMax", Value::U64(u64::MAX))),
        Some(n) => props.push(("TasksMax", Value::U64(n.saturating_add(holders)))),
    }
    if let Some(c) = limits.cpu_max {
        let per_sec = match c {
            CpuMax::Max => u64::MAX,
            // CPUQuotaPerSecUSec: microseconds of CPU time per second of wall time.
            CpuMax::Percent(p) => u64::from(p) * 1_000_000 / 100,
        };
        props.push(("CPUQuotaPerSecUSec", Value::U64(per_sec)));
        props.push(("CPUQuotaPeriodUSec", Value::U64(CPU_PERIOD_US)));
    }
    if let Some(w) = limits.cpu_weight {
        props.push(("CPUWeight", Value::U64(u64::from(w))));
    }
    props
}

/// The cgroup path of a slice below its manager's root: "claude-cage.slice" is
/// "/claude.slice/claude-cage.slice"; "-.slice" is the root itself.
pub fn slice_path(slice: &str) -> String {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return format!("/{slice}");
    };
    if stem == "-" || stem.is_empty() {
        return String::new();
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_paths() {
        assert_eq!(
            slice_path("claude-cage.slice"),
            "/claude.slice/claude-cage.slice"
        );
        assert_eq!(slice_path("bots.slice"), "/bots.slice");
        assert_eq!(slice_path("-.slice"), "");
        assert_eq!(slice_path("a-b-c.slice"), "/a.slice/a-b.slice/a-b-c.slice");
    }
}
