//! Files in places another user can touch — users' state directories, the events file's
//! directory — reached only through directory handles.
//!
//! A path is opened one component at a time from `/` with `O_NOFOLLOW`, and each directory on
//! the way is checked with fstat(2): owned by root or by a user the caller names, and writable
//! by no one else (a sticky directory such as /tmp excepted on the way, where another user may
//! add entries but not replace one that is not theirs). Inside the last directory, files are
//! opened with `openat(2)` and `O_NOFOLLOW | O_NONBLOCK`, must be regular files, and are read up
//! to a cap; they are created, renamed and removed with `openat`, `renameat` and `unlinkat` on
//! the handle. So swapping a directory for a symbolic link mid-run, a FIFO or a link to
//! /dev/zero under a file's name, or a directory another user can write changes nothing root
//! does. The trust model itself (whose file may cause what) is at the top of docs/security.md.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};
use nix::unistd::UnlinkatFlags;

use crate::sys;

/// An open directory that passed the checks of [`Dir::open`].
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    owner: u32,
}

/// The directories a path may lead through: owned by root or by one of `owners`.
#[derive(Debug, Clone, Copy)]
pub struct Writers<'a> {
    /// Users besides root who may own (and so write) a directory on the way.
    pub owners: &'a [u32],
    /// The user who must own the last directory; `None`: root or any of `owners`.
    pub last: Option<u32>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

fn stat_of(fd: &OwnedFd) -> io::Result<FileStat> {
    Ok(fstat(fd.as_raw_fd())?)
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        _ => "not a regular file",
    }
}

impl Dir {
    /// Opens the absolute `path`, checking every directory from `/` (see the module's doc).
    /// With `create`, missing directories are made with `mode` (the caller then owns them).
    pub fn open(path: &Path, writers: Writers<'_>, create_mode: Option<u32>) -> io::Result<Dir> {
        if !path.is_absolute() {
            return Err(invalid(format!(
                "{} is not an absolute path",
                path.display()
            )));
        }
        // Symbolic links on the way are resolved first (a link in a checked directory was put
        // there by root or an allowed user); the resolved path is then walked without following
        // any, so a link swapped in after the resolution fails the walk.
        let (existing, missing) = split_existing(path);
        let resolved = std::fs::canonicalize(&existing)?;
        let root: OwnedFd = File::open("/")?.into();
        let mut dir = Dir {
            owner: stat_of(&root)?.st_uid,
            fd: root,
            path: PathBuf::from("/"),
        };
        let comps: Vec<OsString> = resolved
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                _ => None,
            })
            .chain(missing)
            .collect();
        let n = comps.len();
        for (i, name) in comps.iter().enumerate() {
            dir.check(writers, false)?;
            let next = dir.path.join(name);
            let opened = sys::openat(
                dir.fd.as_fd(),
                Path::new(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                Mode::empty(),
            );
            let fd = match (opened, create_mode) {
                (Ok(fd), _) => fd,
                (Err(e), Some(mode)) if e.kind() == io::ErrorKind::NotFound => {
                    match nix::sys::stat::mkdirat(
                        Some(dir.fd.as_raw_fd()),
                        Path::new(name),
                        Mode::from_bits_truncate(mode),
                    ) {
                        Ok(()) | Err(nix::Error::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    sys::openat(
                        dir.fd.as_fd(),
                        Path::new(name),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                        Mode::empty(),
                    )?
                }
                // ELOOP or ENOTDIR: a symbolic link (or a file) where a directory must be.
                (Err(e), _) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    return Err(invalid(format!(
                        "{} is not a directory (a symbolic link or a file was put in its place)",
                        next.display()
                    )));
                }
                (Err(e), _) => return Err(e),
            };
            dir = Dir {
                owner: stat_of(&fd)?.st_uid,
                fd,
                path: next,
            };
            if i + 1 == n {
                dir.check(writers, true)?;
            }
        }
        if n == 0 {
            dir.check(writers, true)?;
        }
        Ok(dir)
    }

    /// Whether this directory may be trusted on the way (`last` false) or as the last one.
    fn check(&self, writers: Writers<'_>, last: bool) -> io::Result<()> {
        let st = stat_of(&self.fd)?;
        let mode = st.st_mode & 0o7777;
        let allowed = st.st_uid == 0 || writers.owners.contains(&st.st_uid);
        if !allowed {
            return Err(invalid(format!(
                "{} belongs to uid {}, who may replace what is in it",
                self.path.display(),
                st.st_uid
            )));
        }
        if last {
            if let Some(u) = writers.last {
                if st.st_uid != u {
                    return Err(invalid(format!(
                        "{} belongs to uid {}, not uid {u}",
                        self.path.display(),
                        st.st_uid
                    )));
                }
            }
        }
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && (last || !sticky) {
            return Err(invalid(format!(
                "{} is writable by {} (mode {mode:o})",
                self.path.display(),
                if mode & 0o002 != 0 {
                    "every user"
                } else {
                    "its group"
                }
            )));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The uid that owns the directory.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// The names in the directory.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = sys::openat(
            self.fd.as_fd(),
            Path::new("."),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        let mut d = nix::dir::Dir::from(fd)?;
        let mut out = Vec::new();
        for e in d.iter() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(out)
    }

    /// Opens `name` in the directory without following a link and without blocking on a FIFO;
    /// it must be a regular file.
    fn open_file(&self, name: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
        let fd = sys::openat(
            self.fd.as_fd(),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => invalid(format!(
                "{} is a symbolic link",
                self.path.join(name).display()
            )),
            Some(libc::ENXIO) => invalid(format!(
                "{} is a FIFO or socket",
                self.path.join(name).display()
            )),
            _ => e,
        })?;
        let st = stat_of(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(invalid(format!(
                "{} is {}, not a regular file",
                self.path.join(name).display(),
                kind(&st)
            )));
        }
        Ok(File::from(fd))
    }

    /// Reads the regular file `name`, refusing one larger than `cap` bytes.
    pub fn read(&self, name: &Path, cap: u64) -> io::Result<Vec<u8>> {
        let f = self.open_file(name, OFlag::O_RDONLY, 0)?;
        let mut buf = Vec::new();
        f.take(cap + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {cap} bytes",
                    self.path.join(name).display()
                ),
            ));
        }
        Ok(buf)
    }

    /// Opens the regular file `name` for reading and writing in place, creating it with `mode`.
    pub fn open_rw(&self, name: &Path, mode: u32) -> io::Result<File> {
        self.open_file(name, OFlag::O_RDWR | OFlag::O_CREAT, mode)
    }

    /// Opens the regular file `name` for reading.
    pub fn open_ro(&self, name: &Path) -> io::Result<File> {
        self.open_file(name, OFlag::O_RDONLY, 0)
    }

    /// Opens the regular file `name` for appending, creating it with `mode`.
    pub fn append(&self, name: &Path, mode: u32) -> io::Result<File> {
        self.open_file(
            name,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
            mode,
        )
    }

    /// Writes `name` atomically: a new temporary file (`O_EXCL`), renamed over the name.
    pub fn write_atomic(&self, name: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut tmp = OsString::from(".");
        tmp.push(name.as_os_str());
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = self.unlink(&tmp);
        let mut f = self.open_file(&tmp, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, mode)?;
        let written = f.write_all(bytes).and_then(|()| {
            nix::fcntl::renameat(
                Some(self.fd.as_raw_fd()),
                &tmp,
                Some(self.fd.as_raw_fd()),
                name,
            )
            .map_err(io::Error::from)
        });
        if written.is_err() {
            let _ = self.unlink(&tmp);
        }
        written
    }

    /// Removes the file `name` from this directory (never from wherever a path now leads).
    pub fn unlink(&self, name: &Path) -> io::Result<()> {
        Ok(nix::unistd::unlinkat(
            Some(self.fd.as_raw_fd()),
            name,
            UnlinkatFlags::NoRemoveDir,
        )?)
    }
}

/// The longest prefix of `path` that exists, and the names after it.
fn split_existing(path: &Path) -> (PathBuf, Vec<OsString>) {
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(p)) => {
                missing.push(n.to_owned());
                existing = p.to_path_buf();
            }
            _ => break,
        }
    }
    missing.reverse();
    (existing, missing)
}

/// Locks `f` as `how` (`flock(2)`), waiting for the lock and retrying after a signal; the lock
/// goes with the returned file.
pub fn lock(mut f: File, how: nix::fcntl::FlockArg) -> io::Result<nix::fcntl::Flock<File>> {
    loop {
        match nix::fcntl::Flock::lock(f, how) {
            Ok(l) => return Ok(l),
            Err((back, nix::errno::Errno::EINTR)) => f = back,
            Err((_, e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn scratch(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("claude-cage-trust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn me() -> u32 {
        nix::unistd::Uid::effective().as_raw()
    }

    #[test]
    fn files_are_regular_links_and_fifos_are_refused() {
        let d = scratch("files");
        std::fs::write(d.join("ok.json"), "{}").unwrap();
        symlink("/etc/hostname", d.join("link.json")).unwrap();
        symlink("/dev/zero", d.join("zero.json")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo.json"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(d.join("big.json"), vec![b' '; 100]).unwrap();
        let w = Writers {
            owners: &[me()],
            last: None,
        };
        let dir = Dir::open(&d, w, None).unwrap();
        let read = |n: &str| dir.read(Path::new(n), 64).map_err(|e| e.to_string());
        let results = (
            read("ok.json"),
            read("link.json"),
            read("zero.json"),
            read("fifo.json"),
            read("big.json"),
        );
        let mut names = dir.names().unwrap();
        names.sort();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(results.0, Ok(b"{}".to_vec()));
        assert!(results.1.unwrap_err().contains("symbolic link"));
        assert!(results.2.unwrap_err().contains("symbolic link"));
        assert!(results.3.unwrap_err().contains("a FIFO"));
        assert!(results.4.unwrap_err().contains("larger than 64 bytes"));
        assert_eq!(names.len(), 5);
    }

    #[test]
    fn writable_by_others_or_swapped_for_a_link_is_refused() {
        let d = scratch("dirs");
        let w = Writers {
            owners: &[me()],
            last: None,
        };
        std::fs::create_dir(d.join("open")).unwrap();
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(d.join("real")).unwrap();
        symlink(d.join("real"), d.join("swapped")).unwrap();
        let open = Dir::open(&d.join("open"), w, None).map_err(|e| e.to_string());
        // A sticky world-writable directory on the way is fine (as /tmp is).
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::create_dir(d.join("open/mine")).unwrap();
        std::fs::set_permissions(d.join("open/mine"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let through_sticky = Dir::open(&d.join("open/mine"), w, None).map(|_| ());
        let sticky_last = Dir::open(&d.join("open"), w, None).map(|_| ());
        // Created on the way, with the mode asked for.
        let made = Dir::open(&d.join("made/deeper"), w, Some(0o700)).map(|d| d.path().to_owned());
        let made_mode = std::fs::metadata(d.join("made/deeper")).map(|m| m.permissions().mode());
        // The last directory must be owned by the user named, when one is.
        let not_theirs = Dir::open(
            &d,
            Writers {
                owners: &[me(), 4242],
                last: Some(4242),
            },
            None,
        )
        .map_err(|e| e.to_string());
        std::fs::remove_dir_all(&d).unwrap();
        assert!(open.unwrap_err().contains("writable by every user"));
        through_sticky.unwrap();
        assert!(sticky_last.is_err());
        assert_eq!(made.unwrap(), d.join("made/deeper"));
        assert_eq!(made_mode.unwrap() & 0o777, 0o700);
        assert!(not_theirs.unwrap_err().contains("not uid 4242"));
    }

    #[test]
    fn unlink_and_atomic_write_stay_in_the_opened_directory() {
        let d = scratch("unlink");
        let w = Writers {
            owners: &[me()],
            last: None,
        };
        std::fs::create_dir(d.join("a")).unwrap();
        std::fs::create_dir(d.join("elsewhere")).unwrap();
        std::fs::write(d.join("elsewhere/victim.json"), "x").unwrap();
        let a = Dir::open(&d.join("a"), w, None).unwrap();
        a.write_atomic(Path::new("r.json"), b"{}", 0o600).unwrap();
        // The directory is swapped for a link to another one after it was opened.
        std::fs::rename(d.join("a"), d.join("a.old")).unwrap();
        symlink(d.join("elsewhere"), d.join("a")).unwrap();
        let removed = a.unlink(Path::new("r.json"));
        let victim_removed = a.unlink(Path::new("victim.json"));
        let victim = std::fs::read_to_string(d.join("elsewhere/victim.json"));
        let left: Vec<_> = std::fs::read_dir(d.join("a.old"))
            .unwrap()
            .flatten()
            .collect();
        std::fs::remove_dir_all(&d).unwrap();
        removed.unwrap();
        assert!(victim_removed.is_err());
        assert_eq!(victim.unwrap(), "x");
        assert!(left.is_empty(), "no temporary file left");
    }
}
