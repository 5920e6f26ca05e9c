//! The operation lock (`locks/<id>.lock` in the record of what keepup keeps, see
//! `registry.rs`): every command that may change the service holds it, so
//! concurrent invocations for one config (a user's `start` and the timer's `restart`) run one
//! after the other and never start two instances.
//!
//! It is an advisory `flock` on a file that is never unlinked: unlinking would let two holders
//! lock two different inodes under one name.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, Result};
use crate::files;
use std::os::unix::fs::OpenOptionsExt;

/// Held until dropped; the kernel releases it if keepup dies.
#[derive(Debug)]
pub struct OpLock {
    file: File,
}

impl OpLock {
    /// The lock a keepup that holds it handed to this process (the same open file, so the
    /// same lock): the watcher it starts acts under it.
    #[must_use]
    pub fn inherited(fd: std::os::fd::OwnedFd) -> OpLock {
        OpLock {
            file: File::from(fd),
        }
    }
}

impl std::os::fd::AsFd for OpLock {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Waits for the lock. Every holder is bounded by its own timeouts, so the wait is too.
pub fn acquire(path: &Path) -> Result<OpLock> {
    let file = open(path)?;
    file.lock().map_err(Error::io("locking", path))?;
    Ok(OpLock { file })
}

/// Opens (or makes) the lock file.
fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        // A FIFO there must not hang every command: without a reader it refuses a
        // non-blocking writer (ENXIO); with one, its inode locks as well as a file's would.
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ENXIO) => files::not_a_file(path, "a FIFO"),
            _ => crate::ownership::io_error("opening operation lock", path, e),
        })
}

/// Takes the lock (made if missing) if nobody holds it; `None` when someone does.
pub fn try_acquire(path: &Path) -> Result<Option<OpLock>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(OpLock { file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", path)(e)),
    }
}

/// Takes the lock if nobody holds it; `None` when someone does, or when it was never made
/// (then no rotation has ever run under it). For readers that must not wait behind a `stop`.
pub fn try_acquire_existing(path: &Path) -> Result<Option<OpLock>> {
    // Without blocking: a FIFO there must not hang a reader either.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening operation lock", path)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(OpLock { file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", path)(e)),
    }
}
