//! keepup's small state files beside the entry: written so that a reader never sees half of
//! one, and read so that nobody else can make keepup trust them.
//!
//! A file keepup acts on (the pid lock, the instance record) is read without following
//! symlinks and, when keepup runs as root, only trusted if root owns it and nobody else may
//! write it: otherwise any user who can write the entry's folder could make root signal any
//! process.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ownership;

/// A file's device and inode: they follow it through a rename or a moved folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The file `path` names now (symlinks followed), if it exists.
    #[must_use]
    pub fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

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
        Err(e) => return Err(ownership::io_error("reading", path, e)),
    };
    let meta = file.metadata().map_err(Error::io("reading", path))?;
    if let Some(why) = distrust(&meta, path) {
        return Ok(Trusted::Refused(why));
    }
    // Room for it all at once: grown from nothing, a history took a dozen reads and copies.
    let mut content = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0) + 1);
    // The size it has now, and no more: a read past it, only to hear the end, is one system
    // call more, and a revival reads half a dozen of these files. One that says it is empty
    // is read to its end all the same (a file system that tells no sizes).
    let size = if meta.len() == 0 {
        limit
    } else {
        meta.len().min(limit)
    };
    match file.take(size).read_to_end(&mut content) {
        Ok(_) => Ok(Trusted::Content(content)),
        Err(e) => Ok(Trusted::Refused(format!("cannot be read: {e}"))),
    }
}

/// Why an opened file must not be trusted, if it must not.
fn distrust(meta: &std::fs::Metadata, path: &Path) -> Option<String> {
    if !meta.is_file() {
        return Some(format!(
            "is {}, not a regular file: refused as unsafe; remove it ({} {})",
            kind_name(meta.file_type()),
            if meta.is_dir() { "rmdir" } else { "rm" },
            path.display()
        ));
    }
    if ownership::euid() == 0 {
        if meta.uid() != 0 {
            return Some(format!(
                "is owned by uid {}, and keepup runs as root: refused as unsafe",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(
                "is writable by group or others, and keepup runs as root: refused as unsafe".into(),
            );
        }
    }
    None
}

/// A JSON record of keepup's (the watcher's, a reload's), if there is a trustworthy,
/// well-formed one of at most `limit` bytes.
#[must_use]
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, limit: u64) -> Option<T> {
    match read_trusted(path, limit) {
        Ok(Trusted::Content(json)) => serde_json::from_slice(&json).ok(),
        _ => None,
    }
}

/// Writes `value` as JSON to `path`, atomically; `what` names the record in an error.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T, what: &str) -> Result<()> {
    let json =
        serde_json::to_vec(value).map_err(|e| Error::Failed(format!("encoding {what}: {e}")))?;
    write_atomic(path, &json)
}

/// Replaces `path` with `content` atomically: a temp file in the same folder, synced, then
/// renamed over it. A crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    write_with_mode(path, content, 0o644, true)
}

/// As [`write_atomic`], readable by its owner alone (mode 0600): for values that may be secrets.
pub fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    write_with_mode(path, content, 0o600, true)
}

/// As [`write_atomic`] (a reader sees the old file or the new one, never a mix), without
/// waiting for the disk: for what a power loss makes moot anyway (the record of a process
/// that the same power loss ends), where every millisecond counts (between a crash and the
/// revival). [`sync`] makes it durable later.
pub fn write_atomic_unsynced(path: &Path, content: &[u8]) -> Result<()> {
    write_with_mode(path, content, 0o644, false)
}

/// Rewrites `path` in place (made if missing), fast: no new file, no rename, no wait for the
/// disk, so none of the flushes a file system does to protect replace-by-rename. A reader may
/// see it half written (a record that does not parse reads as none): for a record whose
/// readers can bear that for a moment, on the path between a crash and the revival. A file
/// that is not a regular file of this user's is replaced atomically instead.
pub fn rewrite_in_place(path: &Path, content: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let Ok(file) = opened else {
        return write_atomic_unsynced(path, content);
    };
    let ours = file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.uid() == ownership::euid() && m.nlink() == 1);
    if !ours {
        return write_atomic_unsynced(path, content);
    }
    file.write_all_at(content, 0)
        .and_then(|()| file.set_len(content.len() as u64))
        .map_err(|e| ownership::io_error("writing", path, e))
}

/// Waits until `path` and its folder's entry for it are on disk.
pub fn sync(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(path)
        .and_then(|f| f.sync_all())
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| ownership::io_error("syncing", path, e))
}

fn write_with_mode(path: &Path, content: &[u8], mode: u32, synced: bool) -> Result<()> {
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
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(content)?;
        if synced {
            file.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| ownership::io_error("writing", path, e))
}

/// Opens `path` for appending (made if missing) without ever blocking: a FIFO where a file
/// should be would otherwise hang keepup while it holds the operation lock, and every later
/// command (and cron run) behind it. It must be a regular file or, with `devices`, a character
/// device (`/dev/null`). `follow`: whether a symlink there may be followed.
pub fn open_append(path: &Path, action: &'static str, devices: bool, follow: bool) -> Result<File> {
    open_appending(path, action, devices, follow, false)
}

/// As [`open_append`] (a regular file, no symlink followed), also open for reading: for a
/// writer that must see how the file ends before it adds to it.
pub fn open_append_readable(path: &Path, action: &'static str) -> Result<File> {
    open_appending(path, action, false, false, true)
}

fn open_appending(
    path: &Path,
    action: &'static str,
    devices: bool,
    follow: bool,
    read: bool,
) -> Result<File> {
    let mut flags = nix::libc::O_NONBLOCK;
    if !follow {
        flags |= nix::libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(read)
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // A FIFO with no reader refuses a non-blocking writer.
            Some(nix::libc::ENXIO) => not_a_file(path, "a FIFO"),
            Some(nix::libc::ELOOP) => not_a_file(path, "a symlink"),
            _ => ownership::io_error(action, path, e),
        })?;
    let kind = file
        .metadata()
        .map_err(Error::io(action, path))?
        .file_type();
    if !appends_to(kind, devices) {
        return Err(not_a_file(path, kind_name(kind)));
    }
    // Writes to a device (a terminal) must wait, not fail with EAGAIN.
    let _ = nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
    );
    Ok(file)
}

/// Whether [`open_append`] writes to a file of this kind: a regular file or, with `devices`, a
/// character device.
fn appends_to(kind: std::fs::FileType, devices: bool) -> bool {
    kind.is_file() || (devices && kind.is_char_device())
}

/// Why [`open_append`] would fail at a path.
#[derive(Debug, PartialEq, Eq)]
pub enum Unappendable {
    /// The folder it would be made in is not there (or is not a folder): this one.
    NoFolder(PathBuf),
    /// Something else is there: what.
    NotAFile(&'static str),
    /// This user may not write it, or make it in its folder: that path.
    Denied(PathBuf),
}

/// Why [`open_append`] (with the same `devices` and `follow`) would fail at `path` now, if it
/// would; found without opening or making anything, for a check that must not write the file
/// it checks.
#[must_use]
pub fn unappendable(path: &Path, devices: bool, follow: bool) -> Option<Unappendable> {
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    let target = match meta {
        Ok(meta) if !appends_to(meta.file_type(), devices) => {
            return Some(Unappendable::NotAFile(kind_name(meta.file_type())));
        }
        Ok(_) => path.to_path_buf(),
        Err(_) => {
            let folder = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !folder.is_dir() {
                return Some(Unappendable::NoFolder(folder.to_path_buf()));
            }
            folder.to_path_buf()
        }
    };
    nix::unistd::access(&target, nix::unistd::AccessFlags::W_OK)
        .is_err()
        .then_some(Unappendable::Denied(target))
}

/// The error for something other than a regular file where keepup keeps a file.
#[must_use]
pub fn not_a_file(path: &Path, kind: &str) -> Error {
    Error::Failed(format!(
        "{} is {kind}, not a regular file: keepup will not read or write it; remove it (rm {}) \
         and run the command again",
        path.display(),
        path.display()
    ))
}

/// What a file that is not a regular one is, for a message.
#[must_use]
pub fn kind_name(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Whether `path` is a file its owner, group or others may execute (what `execve` will try).
#[must_use]
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this user may run `path`: executable, and every folder on the way open to them (a
/// program in `/root/.cargo/bin` is executable, but not by another user).
#[must_use]
pub fn can_run(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// The first executable `program` on `path_env` (a `PATH` value), as `execvp` would find it.
#[must_use]
pub fn find_on_path(program: &str, path_env: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    std::env::split_paths(path_env)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// The first bytes of `path` (up to `limit`), without ever blocking on a FIFO put in a
/// program's place.
#[must_use]
pub fn read_head(path: &Path, limit: usize) -> Option<Vec<u8>> {
    let mut head = vec![0u8; limit];
    let n = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    head.truncate(n);
    Some(head)
}

/// Removes `path`; true if it was there.
pub fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ownership::io_error("removing", path, e)),
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
    fn unappendable_says_what_open_append_would_meet() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        assert_eq!(unappendable(&file, true, true), None);
        assert_eq!(
            unappendable(&dir.path().join("gone/log"), true, true),
            Some(Unappendable::NoFolder(dir.path().join("gone")))
        );
        assert_eq!(
            unappendable(dir.path(), true, true),
            Some(Unappendable::NotAFile("a directory"))
        );
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            unappendable(&file, true, true),
            Some(Unappendable::NotAFile("a FIFO"))
        );
        assert!(open_append(&file, "opening", true, true).is_err());
        assert_eq!(unappendable(Path::new("/dev/null"), true, true), None);
        assert_eq!(
            unappendable(Path::new("/dev/null"), false, true),
            Some(Unappendable::NotAFile("a character device"))
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
