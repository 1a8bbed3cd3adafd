//! The systemd backend: a transient scope per cage, asked of the service manager over D-Bus
//! (org.freedesktop.systemd1, `StartTransientUnit`), so that cages show in `systemctl status`
//! and `systemd-cgtop`, sit in a slice with aggregate limits, and systemd never finds cgroups in
//! its tree that it did not make. The system manager serves root; the user's manager (the
//! session bus) serves everyone else.
//!
//! zbus's blocking API runs its own I/O thread; claude-cage only talks to the bus while a cage
//! starts and ends, never in the supervisor's poll loop.

use nix::unistd::{Pid, Uid};
use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::cgroup::limits::Values as Limits;
use crate::policy::Policy;
use crate::units::{CPU_PERIOD_US, CpuMax, Limit};

/// A D-Bus or service manager failure, with the operation it broke.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("failed to connect to the {bus} bus of the service manager")]
    Connect {
        bus: &'static str,
        source: zbus::Error,
    },
    #[error("failed to {op} unit {unit}")]
    Call {
        op: &'static str,
        unit: String,
        source: zbus::Error,
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

/// A connection to the service manager.
#[derive(Clone)]
pub struct Manager {
    _conn: Connection,
    proxy: Proxy<'static>,
    pub user: bool,
}

impl Manager {
    /// The system manager as root, the user's manager otherwise.
    ///
    /// Over the bus, not the manager's private socket (`/run/systemd/private`, which
    /// `systemctl` uses as root): the manager signs what it sends there with its well-known name
    /// as the sender, which zbus 5 refuses to parse (its executor thread panics).
    pub fn connect() -> Result<Manager, SystemdError> {
        let user = !Uid::effective().is_root();
        let bus = if user { "user session" } else { "system" };
        let conn = if user {
            Connection::session()
        } else {
            Connection::system()
        }
        .map_err(|source| SystemdError::Connect { bus, source })?;
        // No property cache: it would fetch every property of the manager (`GetAll`) and watch
        // them for changes, where one `Get` of `ControlGroup` is all a cage needs.
        let proxy = zbus::blocking::proxy::Builder::<Proxy<'static>>::new(&conn)
            .destination("org.freedesktop.systemd1")
            .and_then(|b| b.path("/org/freedesktop/systemd1"))
            .and_then(|b| b.interface("org.freedesktop.systemd1.Manager"))
            .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No))
            .and_then(|b| b.build())
            .map_err(|source| SystemdError::Connect { bus, source })?;
        // JobRemoved is only sent once someone subscribed.
        proxy
            .call::<_, _, ()>("Subscribe", &())
            .map_err(|source| SystemdError::Connect { bus, source })?;
        Ok(Manager {
            _conn: conn,
            proxy,
            user,
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
        let mut props: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(description)),
            ("Slice", Value::from(slice)),
            (
                "PIDs",
                Value::from(pids.iter().map(|p| p.as_raw() as u32).collect::<Vec<u32>>()),
            ),
            // The cage makes `hold` and `main` (and Claude Code its own cgroups) inside the
            // scope.
            ("Delegate", Value::from(true)),
            // A failed scope is collected too, so no unit is left behind.
            ("CollectMode", Value::from("inactive-or-failed")),
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
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        self.run_job(
            "start",
            name,
            "StartTransientUnit",
            &(name, "fail", props, aux),
        )
    }

    /// Changes the limits of a live unit for this boot (`systemctl set-property --runtime`), so
    /// that systemd's idea of the scope matches its cgroup files and it never re-applies the
    /// old values. `Ok(false)`: this manager has no such unit (a scope of another manager).
    pub fn set_limits(&self, unit: &str, limits: &Limits) -> Result<bool, SystemdError> {
        let holders = crate::cgroup::id::holders(std::path::Path::new(unit));
        let props = limit_properties(limits, holders);
        match self
            .proxy
            .call::<_, _, ()>("SetUnitProperties", &(unit, true, props))
        {
            Ok(()) => Ok(true),
            Err(zbus::Error::MethodError(n, _, _))
                if n.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok(false)
            }
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
        let root: String =
            self.proxy
                .get_property("ControlGroup")
                .map_err(|e| SystemdError::Call {
                    op: "read the ControlGroup of",
                    unit: "the manager".into(),
                    source: e,
                })?;
        Ok(format!(
            "{}{}",
            root.trim_end_matches('/'),
            slice_path(slice)
        ))
    }

    /// Stops the unit and waits for it; a unit that is already gone is fine.
    pub fn stop(&self, name: &str) -> Result<(), SystemdError> {
        match self.run_job("stop", name, "StopUnit", &(name, "fail")) {
            Err(SystemdError::Call {
                source: zbus::Error::MethodError(n, _, _),
                ..
            }) if n.as_str() == "org.freedesktop.systemd1.NoSuchUnit" => Ok(()),
            other => other,
        }
    }

    /// Calls a method that returns a job, and waits for the job's JobRemoved signal. The
    /// subscription is made before the call, so the signal cannot be missed.
    fn run_job<B>(
        &self,
        op: &'static str,
        unit: &str,
        method: &str,
        body: &B,
    ) -> Result<(), SystemdError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let err = |source| SystemdError::Call {
            op,
            unit: unit.to_owned(),
            source,
        };
        let mut removed = self.proxy.receive_signal("JobRemoved").map_err(err)?;
        let job: OwnedObjectPath = self.proxy.call(method, body).map_err(err)?;
        for msg in removed.by_ref() {
            let Ok((_id, path, _unit, result)) = msg
                .body()
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
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
        Err(SystemdError::Job {
            op,
            unit: unit.to_owned(),
            result: "no answer (the bus closed)".to_owned(),
        })
    }
}

/// The unit properties of `limits`; TasksMax= allows `holders` more tasks than `pids_max` (a
/// scope's holder is a task too: `sys::spawn_holder`).
fn limit_properties(limits: &Limits, holders: u64) -> Vec<(&'static str, Value<'static>)> {
    let bytes = |l: Option<Limit>| l.map(|l| l.bytes().unwrap_or(u64::MAX));
    let mut props = Vec::new();
    if let Some(v) = bytes(limits.memory_high) {
        props.push(("MemoryHigh", Value::from(v)));
    }
    if let Some(v) = bytes(limits.memory_max) {
        props.push(("MemoryMax", Value::from(v)));
    }
    if let Some(v) = bytes(limits.swap_max) {
        props.push(("MemorySwapMax", Value::from(v)));
    }
    match bytes(limits.pids_max) {
        None => {}
        Some(u64::MAX) => props.push(("TasksMax", Value::from(u64::MAX))),
        Some(n) => props.push(("TasksMax", Value::from(n.saturating_add(holders)))),
    }
    if let Some(c) = limits.cpu_max {
        let per_sec = match c {
            CpuMax::Max => u64::MAX,
            // CPUQuotaPerSecUSec: microseconds of CPU time per second of wall time.
            CpuMax::Percent(p) => u64::from(p) * 1_000_000 / 100,
        };
        props.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
        props.push(("CPUQuotaPeriodUSec", Value::from(CPU_PERIOD_US)));
    }
    if let Some(w) = limits.cpu_weight {
        props.push(("CPUWeight", Value::from(u64::from(w))));
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
