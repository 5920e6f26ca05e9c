//! keepup's small state files beside the entry: written so that a reader never sees half of
//! one, and read so that nobody else can make keepup trust them.
//!
//! A file keepup acts on (the pid lock, the instance record) is read without following
//! symlinks and, when keepup runs as root, only trusted if root owns it and nobody else may
//! write it: otherwise any user who can write the entry's folder could make root signal any
//! process.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// What reading a state file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Trusted {
    Absent,
    /// Its content, at most the `limit` asked for.
    Content(Vec<u8>),
    /// It exists but must not be trusted: why.
    Refused(String),
}

/// Reads up to `limit` bytes of `path`, refusing symlinks, non-regular files and, as root,
/// files another user owns or may write.
pub fn read_trusted(path: &Path, limit: u64) -> Result<Trusted> {
    let opened = OpenOptions::new()
        .read(true)
        // Never follow a symlink; never block on a FIFO someone put there.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Trusted::Absent),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Ok(Trusted::Refused("is a symlink: refused as unsafe".into()));
        }
        Err(e) => return Err(Error::io("reading", path)(e)),
    };
    if let Some(why) = distrust(&file, path)? {
        return Ok(Trusted::Refused(why));
    }
    let mut content = Vec::new();
    match file.take(limit).read_to_end(&mut content) {
        Ok(_) => Ok(Trusted::Content(content)),
        Err(e) => Ok(Trusted::Refused(format!("cannot be read: {e}"))),
    }
}

/// Why an opened file must not be trusted, if it must not.
fn distrust(file: &File, path: &Path) -> Result<Option<String>> {
    let meta = file.metadata().map_err(Error::io("reading", path))?;
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

/// Replaces `path` with `content` atomically: a temp file in the same folder, synced, then
/// renamed over it. A crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp = dir.join(temp_name);
    // A leftover from a crashed writer with our pid; create_new then refuses anything else
    // found there (a planted file or link) instead of writing through it.
    let _ = fs::remove_file(&temp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(Error::io("writing", path))
}

/// Removes `path`; true if it was there.
pub fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(read_trusted(&path, 10).unwrap(), Trusted::Absent);
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(
            read_trusted(&path, 6).unwrap(),
            Trusted::Content(b"second".to_vec())
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn write_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = dir.path().join("state");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(matches!(
            read_trusted(&path, 10).unwrap(),
            Trusted::Refused(_)
        ));
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(
            read_trusted(&path, 10).unwrap(),
            Trusted::Content(b"new".to_vec())
        );
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(
            matches!(read_trusted(&path, 10).unwrap(), Trusted::Refused(why) if why.contains("regular"))
        );
    }
}
