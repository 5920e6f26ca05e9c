//! The pid lock `<entry>.pid`: its existence means "keep this service up"; its content is the
//! pid and a newline.
//! It is read with [`files::read_trusted`]: no symlinks, and as root only root's own file.

use std::path::Path;

use crate::error::Result;
use crate::files::{self, Trusted};
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
    Ok(match files::read_trusted(path, 64)? {
        Trusted::Absent => PidLock::Absent,
        Trusted::Refused(why) => PidLock::Stale(why),
        Trusted::Content(content) => match parse_pid_file(&content) {
            Ok(pid) => PidLock::Held(pid),
            Err(bad) => PidLock::Stale(bad.to_string()),
        },
    })
}

/// Writes `pid` and a newline, atomically.
pub fn write(path: &Path, pid: Pid) -> Result<()> {
    files::write_atomic(path, text(pid).as_bytes())
}

/// What the pid lock holds for `pid`: the pid and a newline, nothing else.
#[must_use]
pub fn text(pid: Pid) -> String {
    format!("{pid}\n")
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
