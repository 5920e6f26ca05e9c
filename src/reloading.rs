//! The reload record `<name>.reload`: a `keepup reload` asks the watcher for a new generation
//! through it, and the watcher tells there how far it got (for the asker, which waits for the
//! end, and for `status`, which shows both generations while they overlap). Written atomically;
//! the asker removes it once it has read the outcome.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::files;

/// How far a reload got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asked; the watcher has not taken it yet.
    Asked,
    /// The new generation is starting; the old one serves.
    Starting,
    /// The new one is ready and serves; the old one got `stop_signal` and finishes its
    /// requests.
    Stopping,
    Done,
    /// The new one failed and was ended; the old one serves on.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRecord {
    /// The asker's own mark, so it knows its answer.
    pub id: String,
    pub phase: Phase,
    /// Until when (Unix milliseconds) the asker waits: the watcher drops an older request.
    pub until_ms: u128,
    /// The generation that served when the watcher took it.
    #[serde(default)]
    pub old: Option<i32>,
    /// When that generation started (as a process identity tells it): what tells it from a
    /// process that took its pid since, should the watcher die before it is ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_start: Option<String>,
    /// The new generation, once launched.
    #[serde(default)]
    pub new: Option<i32>,
    /// What happened, in a line.
    #[serde(default)]
    pub message: Option<String>,
}

impl ReloadRecord {
    /// Whether it describes two generations at once.
    #[must_use]
    pub fn overlapping(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Stopping)
    }
}

/// Unix milliseconds now.
#[must_use]
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The record, if there is a trustworthy, well-formed one.
#[must_use]
pub fn read(path: &Path) -> Option<ReloadRecord> {
    files::read_json(path, 4096)
}

pub fn write(path: &Path, record: &ReloadRecord) -> Result<()> {
    files::write_json(path, record, "the reload record")
}

pub fn remove(path: &Path) -> Result<()> {
    files::remove(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_wrote_and_nothing_garbled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.reload");
        assert_eq!(read(&path), None);
        std::fs::write(&path, "{\"id\":1}").unwrap();
        assert_eq!(read(&path), None);
        let record = ReloadRecord {
            id: "42-1".into(),
            phase: Phase::Stopping,
            until_ms: 7,
            old: Some(10),
            old_start: None,
            new: Some(11),
            message: None,
        };
        write(&path, &record).unwrap();
        assert_eq!(read(&path), Some(record.clone()));
        assert!(record.overlapping());
        remove(&path).unwrap();
        assert!(!path.exists());
    }
}
