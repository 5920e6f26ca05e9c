//! Waiting for the service to end, for the watcher, without waking while it runs.
//!
//! On Linux a pidfd turns readable when its process exits, whoever its parent is (an adopted
//! instance too); the watcher sleeps in poll(2) on it and on SIGCHLD (it is the subreaper of
//! what the service leaves, and must reap it). Where no pidfd can be had (Linux before 5.3, a
//! seccomp filter, macOS, or [`POLL_SWITCH`] set), it looks every [`POLL_EVERY`] instead.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Identity, os};

/// Set to `1` in the environment of the `keepup` that starts the watcher, it makes the
/// watcher look every [`POLL_EVERY`] instead of waiting on a pidfd (for kernels whose pidfd
/// misbehaves, and for the tests of that path).
pub const POLL_SWITCH: &str = "KEEPUP_WATCH_POLL";

/// How often the watcher looks when it cannot wait.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// How the watcher learns of the service's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waits {
    /// Woken by the kernel the moment it exits.
    Pidfd,
    /// Looks every [`POLL_EVERY`].
    Polling,
}

impl Waits {
    /// How this process would wait: a pidfd on itself tells whether the kernel has them.
    #[must_use]
    pub fn here() -> Waits {
        let forced = std::env::var_os(POLL_SWITCH).is_some_and(|v| v == "1");
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        if !forced && os::pidfd(me).is_ok() {
            Waits::Pidfd
        } else {
            Waits::Polling
        }
    }
}

/// Reaps what ends below the watcher (the service, and what it leaves to the subreaper) and
/// wakes it when that happens. Children are not reaped while it is dropped.
pub struct Children {
    signals: Option<os::ChildSignals>,
}

impl Children {
    #[must_use]
    pub fn watch() -> Children {
        let children = Children {
            signals: os::ChildSignals::block(),
        };
        // What ended before SIGCHLD was blocked sent its signal to nobody.
        Children::reap();
        children
    }

    fn reap() {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    }

    /// Sleeps until `until` (wall clock, re-read after each wakeup: a step of the clock moves
    /// the wake-up with it), reaping children meanwhile.
    pub fn sleep_until(&self, until: SystemTime) {
        loop {
            let Ok(left) = until.duration_since(SystemTime::now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            let step = if self.signals.is_some() {
                left
            } else {
                left.min(POLL_EVERY)
            };
            os::wait(None, self.signals.as_ref(), Some(step));
            Children::reap();
        }
    }
}

/// Blocks until the process `identity` has ended (at once if it already has), reaping
/// children meanwhile. This is all the watcher does while the service runs.
pub fn wait_for_end(identity: &Identity, waits: Waits) {
    let children = Children::watch();
    let pidfd = match waits {
        Waits::Pidfd => os::pidfd(identity.pid.get()).ok(),
        Waits::Polling => None,
    };
    // The pid may have been reused before the pidfd was opened: the identity, checked after,
    // says the fd is the instance's.
    if !super::is_running(identity) {
        return;
    }
    let timeout = match pidfd {
        Some(_) => None,
        None => Some(POLL_EVERY),
    };
    loop {
        let ended = os::wait(pidfd.as_ref(), children.signals.as_ref(), timeout);
        Children::reap();
        if ended || (pidfd.is_none() && !super::is_running(identity)) {
            return;
        }
    }
}
