//! The operation lock `<entry>.lock`: every command that may change the service holds it, so
//! concurrent invocations for one config (a user's `start` and the timer's `restart`) run one
//! after the other and never start two instances.
//!
//! It is an advisory `flock` on a file that is never unlinked: unlinking would let two holders
//! lock two different inodes under one name.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, Result};

/// Held until dropped; the kernel releases it if keepup dies.
#[derive(Debug)]
pub struct OpLock {
    _file: File,
}

/// Waits for the lock. Every holder is bounded by its own timeouts, so the wait is too.
pub fn acquire(path: &Path) -> Result<OpLock> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::io("opening operation lock", path))?;
    file.lock().map_err(Error::io("locking", path))?;
    Ok(OpLock { _file: file })
}
