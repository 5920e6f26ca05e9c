//! Health: whether a running service still does its work, not only whether it runs. The
//! watcher probes it every `health_interval` (the same checks as `ready`); `health_failures`
//! failed probes in a row make it unhealthy, and the watcher ends and revives it.
//!
//! Here: the settings, the policy (a pure tally of probe results, unit-tested), and the
//! record of the last result that `status` reads (`<name>.health`). The probing loop lives
//! with the watcher (`commands::health_watch`), which alone may end the service.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{self, Trusted};
use crate::notify::Notice;
use crate::pid::Pid;
use crate::ready::Ready;

/// The default `health_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The default `health_failures`.
pub const DEFAULT_FAILURES: u32 = 3;

/// The health record's suffix: `<name>.health` in the state folder.
pub const SUFFIX: &str = ".health";

/// What the watcher checks while the service runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The probe (`health`).
    pub check: Ready,
    /// How often it runs, and the most one probe may take (`health_interval`).
    pub interval: Duration,
    /// Failed probes in a row that make the service unhealthy (`health_failures`).
    pub failures: u32,
}

/// `max_memory`: the ceiling, and how often it is checked (`health_interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub max: u64,
    pub interval: Duration,
}

/// Checks in a row above `max_memory` that restart the service: one alone may be a moment's
/// peak.
pub const MEMORY_CHECKS: u32 = 2;

/// Checks above the ceiling so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Above(pub u32);

impl Above {
    /// Counts one check that found `used` bytes against `max`: true when it is time to restart.
    pub fn count(&mut self, used: u64, max: u64) -> bool {
        self.0 = if used > max { self.0 + 1 } else { 0 };
        self.0 >= MEMORY_CHECKS
    }
}

/// The probes' results so far, as the policy counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Failed probes in a row.
    pub failed: u32,
    /// What the last failed probe saw (kept while the failures last).
    pub last_answer: Option<String>,
}

/// What the tally says after a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passing, or not yet failing often enough.
    Fine,
    /// `failures` in a row: end and revive it; the last probe's answer says why.
    Unhealthy(String),
}

impl Tally {
    /// Counts one probe's `result` against `failures` in a row.
    pub fn count(&mut self, result: std::result::Result<(), String>, failures: u32) -> Verdict {
        match result {
            Ok(()) => {
                *self = Tally::default();
                Verdict::Fine
            }
            Err(answer) => {
                self.failed = self.failed.saturating_add(1);
                self.last_answer = Some(answer.clone());
                if self.failed >= failures.max(1) {
                    Verdict::Unhealthy(answer)
                } else {
                    Verdict::Fine
                }
            }
        }
    }
}

/// When the probe after one that began at `began` and ended at `now` runs: one interval after
/// the last began, never before the last has ended (probes never overlap).
#[must_use]
pub fn next_probe(began: Instant, now: Instant, interval: Duration) -> Instant {
    (began + interval).max(now)
}

/// What `status` shows of the running instance's health: `<name>.health`, rewritten in place
/// by the watcher after every probe and every notification (unsynced: a power loss makes it
/// moot), and by a launch that read the service's `STATUS=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// The instance: a record of another is stale.
    pub pid: Pid,
    /// The last health probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// The service's last `STATUS=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The main process it named (`MAINPID=`), once keepup took it as the service: then also
    /// [`HealthRecord::pid`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<i32>,
    /// When its last `WATCHDOG=1` came: RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_at: Option<String>,
    /// It said `STOPPING=1`: its coming exit is intended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

/// One health probe's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Whether it passed.
    pub ok: bool,
    /// What it saw, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Failed probes in a row.
    pub failures: u32,
    /// When it ran: RFC 3339, UTC.
    pub at: String,
}

impl HealthRecord {
    #[must_use]
    pub fn new(pid: Pid) -> HealthRecord {
        HealthRecord {
            pid,
            probe: None,
            status: None,
            main_pid: None,
            watchdog_at: None,
            stopping: false,
        }
    }

    /// Keeps what a notification other than the watchdog's says. `MAINPID=` is kept only
    /// once it is taken ([`HealthRecord::moved_to`]): a refused one names no process of the
    /// service.
    pub fn note(&mut self, notice: Notice) {
        match notice {
            Notice::Status(text) => self.status = Some(text),
            Notice::Stopping => self.stopping = true,
            Notice::MainPid(_)
            | Notice::Ready
            | Notice::ExtendTimeout(_)
            | Notice::Watchdog
            | Notice::WatchdogTrigger => {}
        }
    }

    /// The service's main process is now `pid`, which it named (`MAINPID=`): the record is
    /// that instance's.
    pub fn moved_to(&mut self, pid: Pid) {
        self.pid = pid;
        self.main_pid = Some(pid.get());
    }

    /// Notes a probe's result, as `tally` now counts it.
    pub fn probed(&mut self, tally: &Tally) {
        self.probe = Some(Probe {
            ok: tally.failed == 0,
            answer: tally.last_answer.clone(),
            failures: tally.failed,
            at: crate::text::time_text(SystemTime::now()),
        });
    }
}

impl Probe {
    /// One line for `status`: "ok at …" or "failing (2 in a row) at …: answer".
    #[must_use]
    pub fn text(&self) -> String {
        if self.ok {
            format!("ok at {}", self.at)
        } else {
            format!(
                "failing ({} in a row) at {}: {}",
                self.failures,
                self.at,
                self.answer.as_deref().unwrap_or("")
            )
        }
    }
}

/// The record, if there is a trustworthy, well-formed one.
#[must_use]
pub fn read(path: &Path) -> Option<HealthRecord> {
    match files::read_trusted(path, 8192) {
        Ok(Trusted::Content(json)) => serde_json::from_slice(&json).ok(),
        _ => None,
    }
}

pub fn write(path: &Path, record: &HealthRecord) -> Result<()> {
    let json = serde_json::to_vec(record)
        .map_err(|e| Error::Failed(format!("encoding the health record: {e}")))?;
    files::rewrite_in_place(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_only_after_that_many_failures_in_a_row() {
        let mut tally = Tally::default();
        assert_eq!(tally.count(Err("a".into()), 3), Verdict::Fine);
        assert_eq!(tally.count(Err("b".into()), 3), Verdict::Fine);
        // A pass in between starts the count afresh.
        assert_eq!(tally.count(Ok(()), 3), Verdict::Fine);
        assert_eq!(tally, Tally::default());
        assert_eq!(tally.count(Err("c".into()), 3), Verdict::Fine);
        assert_eq!(tally.count(Err("d".into()), 3), Verdict::Fine);
        assert_eq!(
            tally.count(Err("e".into()), 3),
            Verdict::Unhealthy("e".into())
        );
        assert_eq!(tally.failed, 3);
    }

    #[test]
    fn one_failure_is_enough_at_one_and_at_zero() {
        for failures in [0, 1] {
            let mut tally = Tally::default();
            assert_eq!(
                tally.count(Err("x".into()), failures),
                Verdict::Unhealthy("x".into())
            );
        }
    }

    #[test]
    fn memory_restarts_only_after_two_checks_above_in_a_row() {
        let mut above = Above::default();
        assert!(!above.count(600, 500));
        assert!(!above.count(400, 500));
        assert!(!above.count(600, 500));
        assert!(above.count(501, 500));
        // At the ceiling is not above it.
        let mut at = Above::default();
        assert!(!at.count(500, 500));
        assert!(!at.count(500, 500));
    }

    #[test]
    fn probes_never_overlap_and_keep_their_cadence() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        // A quick probe: the next one interval after the last began.
        assert_eq!(
            next_probe(t0, t0 + Duration::from_millis(5), second),
            t0 + second
        );
        // One that took the whole interval (hung): the next at once, not during it.
        assert_eq!(next_probe(t0, t0 + second * 2, second), t0 + second * 2);
    }

    #[test]
    fn the_record_reads_back_and_says_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.health");
        assert_eq!(read(&path), None);
        let mut tally = Tally::default();
        tally.count(Err("GET / answered \"HTTP/1.0 500\"".into()), 3);
        let mut record = HealthRecord::new(Pid::new(4242).unwrap());
        record.probed(&tally);
        record.status = Some("serving".into());
        write(&path, &record).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, record);
        let text = back.probe.unwrap().text();
        assert!(text.starts_with("failing (1 in a row) at "), "{text}");
        assert!(text.ends_with("answered \"HTTP/1.0 500\""));
        std::fs::write(&path, "{").unwrap();
        assert_eq!(read(&path), None);
    }
}
