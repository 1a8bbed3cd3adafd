//! The `[cage]` section: the bot's name, where its cgroups go, how they are made and whom the
//! child runs as; and the rules for bot names and parent paths.

use super::schema::RawCage;
use super::validate::{Origin, Validator, owned};
use super::{
    Backend, Controller, DEFAULT_MAX_DEPTH, DEFAULT_MAX_DESCENDANTS, DEFAULT_SLICE, Overrides,
    Parent, PolicyError,
};

/// The `[cage]` section, validated.
pub(super) struct Cage {
    pub(super) name: Option<String>,
    pub(super) parent: Parent,
    pub(super) backend: Backend,
    pub(super) slice: String,
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
    pub(super) cgroupns: bool,
    pub(super) require: Vec<Controller>,
    pub(super) max_descendants: u32,
    pub(super) max_depth: u32,
}

impl Validator<'_> {
    /// The `[cage]` section, with `--name` and `--parent` replacing its values.
    pub(super) fn cage(&self, cage: RawCage, o: &Overrides) -> Result<Cage, PolicyError> {
        let name = match self.pick(
            cage.name.as_ref(),
            "cage.name",
            o.name.as_ref(),
            "--name",
            owned,
        ) {
            Some((n, origin)) => {
                check_name(&n).map_err(|m| self.error(&origin, m))?;
                Some(n)
            }
            None => None,
        };

        let parent = match self.pick(
            cage.parent.as_ref(),
            "cage.parent",
            o.parent.as_ref(),
            "--parent",
            owned,
        ) {
            None => Parent::Auto,
            Some((p, origin)) => parse_parent(&p).map_err(|m| self.error(&origin, m))?,
        };

        let backend = self.backend(&cage)?;
        let slice = self.slice(&cage)?;
        self.user_and_group(&cage)?;
        let require = self.require(&cage)?;
        let max_descendants = self.nesting(
            cage.max_descendants.as_ref(),
            "cage.max-descendants",
            DEFAULT_MAX_DESCENDANTS,
            2,
        )?;
        let max_depth = self.nesting(
            cage.max_depth.as_ref(),
            "cage.max-depth",
            DEFAULT_MAX_DEPTH,
            1,
        )?;
        Ok(Cage {
            name,
            parent,
            backend,
            slice,
            user: cage.user.as_ref().map(|u| u.get_ref().clone()),
            group: cage.group.as_ref().map(|g| g.get_ref().clone()),
            cgroupns: cage.cgroupns.unwrap_or(false),
            require,
            max_descendants,
            max_depth,
        })
    }

    /// `cage.max-descendants` or `cage.max-depth`: a whole number from `least` up.
    fn nesting(
        &self,
        v: Option<&toml::Spanned<i64>>,
        key: &'static str,
        default: u32,
        least: u32,
    ) -> Result<u32, PolicyError> {
        let Some(v) = v else {
            return Ok(default);
        };
        let n = *v.get_ref();
        u32::try_from(n)
            .ok()
            .filter(|n| *n >= least)
            .ok_or_else(|| {
                self.error(
                    &Origin::File {
                        key,
                        start: v.span().start,
                    },
                    format!("{n} is not a whole number from {least} to {}", u32::MAX),
                )
            })
    }

    fn backend(&self, cage: &RawCage) -> Result<Backend, PolicyError> {
        Ok(match &cage.backend {
            None => Backend::Auto,
            Some(b) => match b.get_ref().as_str() {
                "auto" => Backend::Auto,
                "cgroupfs" => Backend::Cgroupfs,
                "systemd" => Backend::Systemd,
                other => {
                    return Err(self.error(
                        &Origin::File {
                            key: "cage.backend",
                            start: b.span().start,
                        },
                        format!("{other:?} is not one of \"auto\", \"cgroupfs\", \"systemd\""),
                    ));
                }
            },
        })
    }

    fn slice(&self, cage: &RawCage) -> Result<String, PolicyError> {
        Ok(match &cage.slice {
            None => DEFAULT_SLICE.to_owned(),
            Some(sl) => {
                let v = sl.get_ref();
                let ok = v.ends_with(".slice")
                    && v.len() > ".slice".len()
                    && v.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b":-_.\\".contains(&c));
                if !ok {
                    return Err(self.error(
                        &Origin::File {
                            key: "cage.slice",
                            start: sl.span().start,
                        },
                        format!("{v:?} is not a slice unit name such as \"claude-cage.slice\""),
                    ));
                }
                v.clone()
            }
        })
    }

    /// `user` and `group` are checked for their form here; whether they exist, when the child
    /// is started.
    fn user_and_group(&self, cage: &RawCage) -> Result<(), PolicyError> {
        for (key, v) in [("cage.user", &cage.user), ("cage.group", &cage.group)] {
            if let Some(v) = v {
                let ok = !v.get_ref().is_empty()
                    && v.get_ref()
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
                if !ok {
                    return Err(self.error(
                        &Origin::File {
                            key,
                            start: v.span().start,
                        },
                        format!("{:?} is not a user or group name or number", v.get_ref()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn require(&self, cage: &RawCage) -> Result<Vec<Controller>, PolicyError> {
        let mut require = Vec::new();
        if let Some(r) = &cage.require {
            let origin = Origin::File {
                key: "cage.require",
                start: r.span().start,
            };
            for c in r.get_ref() {
                let ctl = Controller::parse(c).ok_or_else(|| {
                    self.error(
                        &origin,
                        format!(
                            "unknown controller {c:?}: expected \"memory\", \"pids\" or \"cpu\""
                        ),
                    )
                })?;
                if !require.contains(&ctl) {
                    require.push(ctl);
                }
            }
        }
        Ok(require)
    }
}

/// The longest bot name: it leaves room for `-<pid>-<n>` in a cage id.
pub const NAME_MAX: usize = 48;

/// Checks a bot name against `[a-z0-9][a-z0-9-]{0,47}`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use 1 to {NAME_MAX} characters of a-z, 0-9 and '-', not starting with '-'"
        ))
    }
}

/// Turns a program's file name into a bot name, for runs whose policy names none.
pub fn name_from_program(program: &str) -> String {
    let base = program.rsplit('/').next().unwrap_or(program);
    let mut name: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(NAME_MAX);
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() {
        "cage".to_owned()
    } else {
        name
    }
}

pub(super) fn parse_parent(p: &str) -> Result<Parent, String> {
    if p == "auto" {
        return Ok(Parent::Auto);
    }
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} must be \"auto\" or a cgroup path starting with '/', such as \"/bots\""
        ));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{p:?} must not contain '.' or '..' components"));
    }
    if p.contains('\0') || p.contains('\n') {
        return Err(format!("{p:?} contains a control character"));
    }
    let trimmed = format!(
        "/{}",
        p.split('/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    );
    Ok(Parent::Path(trimmed))
}
