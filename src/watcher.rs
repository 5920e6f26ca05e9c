//! The watcher's record `<entry>.watcher`: who the running watcher is (pid and start, so a
//! reused pid is never taken for it), since when, and how it waits. The watcher writes it
//! under the operation lock before it lets go of the lock, so there is never a watcher that
//! the next keepup cannot see; it removes it when it leaves, and `stop` removes it after
//! ending it.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::files;
use crate::pid::Pid;
use crate::process::Identity;
use crate::process::exit::Waits;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherRecord {
    pub pid: Pid,
    pub start: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub waits: Waits,
}

impl WatcherRecord {
    #[must_use]
    pub fn new(identity: &Identity, waits: Waits) -> WatcherRecord {
        WatcherRecord::since(identity, waits, SystemTime::now())
    }

    /// For a watcher that started at `started_at` (one found running, recorded again).
    #[must_use]
    pub fn since(identity: &Identity, waits: Waits, started_at: SystemTime) -> WatcherRecord {
        WatcherRecord {
            pid: identity.pid,
            start: identity.start.clone(),
            started_at: crate::text::time_text(started_at),
            waits,
        }
    }

    #[must_use]
    pub fn identity(&self) -> Identity {
        Identity {
            pid: self.pid,
            start: self.start.clone(),
        }
    }
}

/// The record, if there is a trustworthy, well-formed one.
#[must_use]
pub fn read(path: &Path) -> Option<WatcherRecord> {
    files::read_json(path, 4096)
}

pub fn write(path: &Path, record: &WatcherRecord) -> Result<()> {
    files::write_json(path, record, "the watcher's record")
}

pub fn remove(path: &Path) -> Result<()> {
    files::remove(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbled_or_foreign_records_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.watcher");
        assert_eq!(read(&path), None);
        for bad in [
            "",
            "{",
            "{\"pid\":0,\"start\":\"b:1\",\"started_at\":\"x\",\"waits\":\"pidfd\"}",
            "{\"pid\":-1,\"start\":\"b:1\",\"started_at\":\"x\",\"waits\":\"pidfd\"}",
            "{\"pid\":1,\"start\":\"b:1\",\"started_at\":\"x\",\"waits\":\"pidfd\"}",
            "{\"pid\":42,\"start\":\"b:1\",\"started_at\":\"x\",\"waits\":\"sometimes\"}",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(read(&path), None, "{bad:?}");
        }
        let record = WatcherRecord::new(
            &Identity {
                pid: Pid::new(4242).unwrap(),
                start: "b:1".into(),
            },
            Waits::Pidfd,
        );
        write(&path, &record).unwrap();
        assert_eq!(read(&path), Some(record));
    }
}
