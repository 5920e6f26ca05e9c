//! The pid lock `<entry>.pid`: its existence means "keep this service up"; its content is the
//! pid and a newline.
//!
//! It is read without following symlinks and, when keepup runs as root, only trusted if root
//! owns it and nobody else may write it: otherwise any user could make root signal any pid.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::files;
use crate::pid::{Pid, parse_pid_file};

/// What the pid lock says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PidLock {
    /// No lock: the service should be down.
    Absent,
    /// A lock holding a well-formed pid (which may or may not be the service).
    Held(Pid),
    /// A lock that exists but is not trusted for its pid: why.
    Stale(String),
}

impl PidLock {
    #[must_use]
    pub fn exists(&self) -> bool {
        !matches!(self, PidLock::Absent)
    }

    #[must_use]
    pub fn pid(&self) -> Option<Pid> {
        match self {
            PidLock::Held(pid) => Some(*pid),
            _ => None,
        }
    }
}

pub fn read(path: &Path) -> Result<PidLock> {
    let opened = OpenOptions::new()
        .read(true)
        // Never follow a symlink; never block on a FIFO someone put there.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PidLock::Absent),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Ok(PidLock::Stale("is a symlink: refused as unsafe".into()));
        }
        Err(e) => return Err(Error::io("reading pid lock", path)(e)),
    };
    Ok(check(&file, path)?.map_or_else(
        || {
            let mut content = Vec::new();
            let read = file.take(64).read_to_end(&mut content);
            match read {
                Ok(_) => match parse_pid_file(&content) {
                    Ok(pid) => PidLock::Held(pid),
                    Err(bad) => PidLock::Stale(bad.to_string()),
                },
                Err(e) => PidLock::Stale(format!("cannot be read: {e}")),
            }
        },
        PidLock::Stale,
    ))
}

/// Why an opened lock must not be trusted, if it must not.
fn check(file: &File, path: &Path) -> Result<Option<String>> {
    let meta = file
        .metadata()
        .map_err(Error::io("reading pid lock", path))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Ok(Some(format!("is {kind}: refused as unsafe")));
    }
    if nix::unistd::geteuid().is_root() {
        if meta.uid() != 0 {
            return Ok(Some(format!(
                "is owned by uid {}, and keepup runs as root: refused as unsafe",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Ok(Some(
                "is writable by group or others, and keepup runs as root: refused as unsafe".into(),
            ));
        }
    }
    Ok(None)
}

/// Writes `pid` and a newline, atomically.
pub fn write(path: &Path, pid: Pid) -> Result<()> {
    files::write_atomic(path, format!("{pid}\n").as_bytes())
}

/// Removes the lock. A directory in its place cannot be, and is reported.
pub fn remove(path: &Path) -> Result<bool> {
    files::remove(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_content(content: &[u8]) -> PidLock {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.pid");
        std::fs::write(&path, content).unwrap();
        read(&path).unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.pid");
        assert_eq!(read(&path).unwrap(), PidLock::Absent);
        write(&path, Pid::new(4321).unwrap()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"4321\n");
        assert_eq!(read(&path).unwrap(), PidLock::Held(Pid::new(4321).unwrap()));
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        // Nothing but the lock is left behind by the atomic write.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_content_is_stale() {
        for content in [
            &b""[..],
            b"0\n",
            b"-1\n",
            b"1\n",
            b"abc\n",
            b"99999999999\n",
            b"1 2\n",
        ] {
            assert!(
                matches!(read_content(content), PidLock::Stale(_)),
                "{content:?}"
            );
        }
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "1234\n").unwrap();
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(read(&link).unwrap(), PidLock::Stale(why) if why.contains("symlink")));
        let dangling = dir.path().join("dangling.pid");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(read(&dangling).unwrap(), PidLock::Stale(why) if why.contains("symlink")));
        let sub = dir.path().join("sub.pid");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(read(&sub).unwrap(), PidLock::Stale(why) if why.contains("directory")));
    }

    #[test]
    fn writable_by_others_is_refused_as_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.pid");
        std::fs::write(&path, "1234\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let lock = read(&path).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert!(matches!(lock, PidLock::Stale(why) if why.contains("writable")));
        } else {
            assert_eq!(lock.pid().map(Pid::get), Some(1234));
        }
    }
}
