//! Finding the cgroup v2 hierarchy: its mount (from `/proc/self/mountinfo`, never assumed to be
//! `/sys/fs/cgroup`), this process's own cgroup in it, and which controllers a cgroup v1
//! hierarchy holds on a hybrid host.

use std::path::{Path, PathBuf};

use super::CgroupError;

/// The cgroup v2 hierarchy as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where cgroup2 is mounted, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`.
    pub mount: PathBuf,
    /// This process's cgroup relative to the mount, always starting with '/'.
    pub own: String,
    /// Controllers bound to cgroup v1 hierarchies (they cannot be used in v2).
    pub v1_controllers: Vec<String>,
    /// Whether cgroup2 is mounted with `nsdelegate`: only then does the kernel refuse to move a
    /// process out of its cgroup namespace (cgroup-v2.rst, "Delegation Containment").
    pub nsdelegate: bool,
    /// Whether that mount is read-only (a container runtime's default): no cage can be made.
    pub read_only: bool,
}

impl Hierarchy {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn discover() -> Result<Self, CgroupError> {
        let proc_self = Path::new("/proc/self");
        let mountinfo = super::fs::read(proc_self, "mountinfo")?;
        let cgroup = super::fs::read(proc_self, "cgroup")?;
        Self::from_texts(&mountinfo, &cgroup)
    }

    /// The pure part of [`Hierarchy::discover`].
    pub fn from_texts(mountinfo: &str, proc_cgroup: &str) -> Result<Self, CgroupError> {
        let own_ns = proc_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| p.trim().trim_end_matches(" (deleted)").to_owned());
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        let v2: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
        let own_ns = own_ns.ok_or(CgroupError::NoMount)?;
        // Prefer the mount whose root contains our cgroup (a container may bind-mount a subtree).
        let best = v2
            .iter()
            .filter(|m| {
                own_ns == m.root
                    || own_ns.starts_with(&format!("{}/", m.root.trim_end_matches('/')))
                    || m.root == "/"
            })
            .max_by_key(|m| m.root.len())
            .ok_or(CgroupError::NoMount)?;
        let rel = if best.root == "/" {
            own_ns.clone()
        } else {
            own_ns[best.root.len()..].to_owned()
        };
        let own = if rel.is_empty() { "/".to_owned() } else { rel };
        let v1_controllers = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup")
            .flat_map(|m| {
                m.super_options
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(Hierarchy {
            mount: best.mount_point.clone(),
            own,
            v1_controllers,
            nsdelegate: best.super_options.split(',').any(|o| o == "nsdelegate"),
            read_only: best.read_only,
        })
    }

    /// Why no cage can be made here, when the mount is read-only; `run` refuses with it and
    /// `check` reports it.
    pub fn read_only_problem(&self) -> Option<String> {
        self.read_only.then(|| {
            format!(
                "the cgroup2 mount at {} is read-only, as container runtimes mount it by default, so no cage can be made: give the container a private cgroup namespace with a writable cgroup mount (an OCI config's cgroup mount with \"rw\"; Podman: --systemd=always; Docker mounts it writable only for --privileged containers)",
                self.mount.display()
            )
        })
    }

    /// The directory of a cgroup given relative to the mount ("/" is the root).
    pub fn dir(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            self.mount.clone()
        } else {
            self.mount.join(rel)
        }
    }

    /// The path of a directory under the mount, relative to it ("/bots/a").
    pub fn relative(&self, dir: &Path) -> String {
        match dir.strip_prefix(&self.mount) {
            Ok(p) if p.as_os_str().is_empty() => "/".to_owned(),
            Ok(p) => format!("/{}", p.display()),
            Err(_) => dir.display().to_string(),
        }
    }

    /// Whether `controller` is bound to a cgroup v1 hierarchy on this host.
    pub fn is_v1(&self, controller: &str) -> bool {
        self.v1_controllers.iter().any(|c| c == controller)
    }
}

struct Mount {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
    read_only: bool,
}

impl Mount {
    /// One line of proc(5) mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS".
    fn parse(line: &str) -> Option<Mount> {
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        Some(Mount {
            root: unescape(l.get(3)?),
            mount_point: PathBuf::from(unescape(l.get(4)?)),
            fstype: (*r.first()?).to_owned(),
            super_options: r.get(2).copied().unwrap_or("").to_owned(),
            read_only: l.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro")),
        })
    }
}

/// Undoes mountinfo's octal escapes ("\040" for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host() {
        let h = Hierarchy::from_texts(HYBRID, "4:memory:/x\n0::/\n").unwrap();
        assert_eq!(h.mount, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(h.own, "/");
        assert!(h.is_v1("memory") && h.is_v1("pids") && !h.is_v1("cpu"));
        assert!(!h.nsdelegate);
        assert_eq!(
            h.dir("/bots/a"),
            PathBuf::from("/sys/fs/cgroup/unified/bots/a")
        );
        assert_eq!(h.dir("/"), PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            h.relative(Path::new("/sys/fs/cgroup/unified/bots/a")),
            "/bots/a"
        );
    }

    #[test]
    fn unified_host_in_a_service() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let h = Hierarchy::from_texts(mi, "0::/system.slice/bot.service/supervisor\n").unwrap();
        assert_eq!(h.mount, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(h.own, "/system.slice/bot.service/supervisor");
        assert!(h.v1_controllers.is_empty());
        assert!(h.nsdelegate);
    }

    #[test]
    fn container_with_a_bind_mounted_subtree() {
        let mi = "50 40 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_texts(mi, "0::/docker/abc/app\n").unwrap();
        assert_eq!(h.own, "/app");
        let h = Hierarchy::from_texts(mi, "0::/docker/abc\n").unwrap();
        assert_eq!(h.own, "/");
    }

    /// Docker's mount in a container with a private cgroup namespace (not --privileged).
    #[test]
    fn read_only_container_mount() {
        let mi = "612 604 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_texts(mi, "0::/\n").unwrap();
        assert!(h.read_only);
        let why = h.read_only_problem().unwrap();
        assert!(
            why.starts_with("the cgroup2 mount at /sys/fs/cgroup is read-only"),
            "{why}"
        );
        assert!(
            why.contains("\"rw\"") && why.contains("--privileged"),
            "{why}"
        );
        let rw =
            "612 604 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_texts(rw, "0::/\n").unwrap();
        assert_eq!(h.read_only_problem(), None);
    }

    #[test]
    fn escaped_mount_point() {
        let mi = "41 31 0:38 / /mnt/cg\\040two rw - cgroup2 none rw\n";
        let h = Hierarchy::from_texts(mi, "0::/\n").unwrap();
        assert_eq!(h.mount, PathBuf::from("/mnt/cg two"));
    }

    #[test]
    fn no_cgroup2() {
        let mi = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(matches!(
            Hierarchy::from_texts(mi, "4:memory:/\n"),
            Err(CgroupError::NoMount)
        ));
    }
}
