//! The command-line flags of `run` that replace a policy's values.

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub name: Option<String>,
    pub parent: Option<String>,
    pub memory_high: Option<String>,
    pub memory_max: Option<String>,
    pub pids_max: Option<String>,
    pub max_runtime: Option<String>,
    pub idle_timeout: Option<String>,
    pub stdin_eof_grace: Option<String>,
    pub term_grace: Option<String>,
    pub events: Option<String>,
}

impl Overrides {
    /// Sets the override of the `run` flag `--FLAG` (without the dashes) to `value`; false for
    /// a name that is no such flag.
    pub fn set(&mut self, flag: &str, value: String) -> bool {
        let slot = match flag {
            "name" => &mut self.name,
            "parent" => &mut self.parent,
            "memory-high" => &mut self.memory_high,
            "memory-max" => &mut self.memory_max,
            "pids-max" => &mut self.pids_max,
            "max-runtime" => &mut self.max_runtime,
            "idle-timeout" => &mut self.idle_timeout,
            "stdin-eof-grace" => &mut self.stdin_eof_grace,
            "term-grace" => &mut self.term_grace,
            "events" => &mut self.events,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}
