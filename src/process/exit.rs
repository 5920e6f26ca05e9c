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

/// How the watched instance ended, as the watcher learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// A signal (by number) ended it; `core`: it dumped core.
    Killed { signal: i32, core: bool },
    /// It was not the watcher's child (an instance keepup adopted): only its own parent can
    /// read how it ended.
    Unknown,
}

impl Ended {
    /// Whether it ended as a service that was asked to (exit code 0) would.
    #[must_use]
    pub fn clean(self) -> bool {
        self == Ended::Exited(0)
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Ended::Exited(code) => write!(f, "exited with code {code}"),
            Ended::Killed { signal, core } => {
                write!(f, "was killed by signal {signal}")?;
                if let Ok(name) = nix::sys::signal::Signal::try_from(signal) {
                    write!(f, " ({})", name.as_str())?;
                }
                if core {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            Ended::Unknown => f.write_str(
                "ended (its exit status is its parent's to read, and keepup did not start it)",
            ),
        }
    }
}

/// Reaps what ends below the watcher (the service, and what it leaves to the subreaper) and
/// wakes it when that happens; keeps how `watched` (the instance, if it is a child) ended.
/// Children are not reaped while it is dropped.
pub struct Children {
    signals: Option<os::ChildSignals>,
    watched: Option<i32>,
    ended: std::cell::Cell<Option<Ended>>,
}

impl Children {
    #[must_use]
    pub fn watch() -> Children {
        Children::of(None)
    }

    fn of(watched: Option<i32>) -> Children {
        let children = Children {
            signals: os::ChildSignals::block(),
            watched,
            ended: std::cell::Cell::new(None),
        };
        // What ended before SIGCHLD was blocked sent its signal to nobody.
        children.reap();
        children
    }

    fn reap(&self) {
        use nix::sys::wait::{WaitPidFlag, waitpid};
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if self.keep(status) {
                break;
            }
        }
    }

    /// Keeps `status` if it is the watched instance's; true when there is nothing (more) to
    /// reap now.
    fn keep(&self, status: nix::sys::wait::WaitStatus) -> bool {
        use nix::sys::wait::WaitStatus;
        let ended = match status {
            WaitStatus::StillAlive => return true,
            WaitStatus::Exited(pid, code) => (pid, Ended::Exited(code)),
            WaitStatus::Signaled(pid, signal, core) => (
                pid,
                Ended::Killed {
                    signal: signal as i32,
                    core,
                },
            ),
            _ => return false,
        };
        if Some(ended.0.as_raw()) == self.watched {
            self.ended.set(Some(ended.1));
        }
        false
    }

    /// How the watched instance ended, once it has: reaped here if it is a child (the pidfd
    /// turns readable as it becomes a zombie, so it is there to reap), `Unknown` if it is not.
    fn ended(&self) -> Ended {
        use nix::errno::Errno;
        use nix::sys::wait::{WaitPidFlag, waitpid};
        let Some(pid) = self.watched else {
            return Ended::Unknown;
        };
        let deadline = std::time::Instant::now() + REAP_WAIT;
        super::poll_until(deadline, || {
            if self.ended.get().is_some() {
                return true;
            }
            match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(status) => self.keep(status) && self.ended.get().is_some(),
                // Not a child of this process: its status is not ours to read.
                Err(Errno::ECHILD) => true,
                Err(_) => false,
            }
        });
        self.ended.get().unwrap_or(Ended::Unknown)
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
            self.reap();
        }
    }
}

/// How long a child that has ended may take to become a zombie the watcher can reap (its
/// other threads are still being torn down).
const REAP_WAIT: Duration = Duration::from_secs(1);

/// Blocks until the process `identity` has ended (at once if it already has), reaping
/// children meanwhile, and says how it ended; `None` as soon as `asked` says so (see
/// [`Watched::until_asked`]). This is all the watcher does while the service runs.
pub fn wait_for_end_or(
    identity: &Identity,
    waits: Waits,
    asked: &mut dyn FnMut() -> bool,
) -> Option<Ended> {
    match Watched::begin(identity, waits) {
        Ok(watched) => match watched.until_asked(None, None, asked) {
            Wake::Asked => None,
            Wake::Ended(ended) => Some(ended),
            Wake::Deadline | Wake::Readable => Some(Ended::Unknown),
        },
        Err(ended) => Some(ended),
    }
}

/// Why [`Watched::until_asked`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Ended(Ended),
    Deadline,
    /// The extra descriptor has something to read.
    Readable,
    /// Something was asked of the watcher (a reload): see [`Watched::until_asked`].
    Asked,
}

/// An instance being waited for, when the waiting stops now and then (to probe its health).
pub struct Watched {
    identity: Identity,
    children: Children,
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl Watched {
    /// Starts waiting for `identity`; `Err`: how it ended, if it already has.
    pub fn begin(identity: &Identity, waits: Waits) -> Result<Watched, Ended> {
        let children = Children::of(Some(identity.pid.get()));
        let pidfd = match waits {
            Waits::Pidfd => os::pidfd(identity.pid.get()).ok(),
            Waits::Polling => None,
        };
        // The pid may have been reused before the pidfd was opened: the identity, checked
        // after, says the fd is the instance's.
        if !super::is_running(identity) {
            return Err(children.ended());
        }
        Ok(Watched {
            identity: identity.clone(),
            children,
            pidfd,
        })
    }

    /// Blocks until the instance has ended, `deadline` has come (never, without one), `extra`
    /// (the notify socket, if any) turns readable, or `asked` says so ([`Wake::Asked`]): it is
    /// asked before the wait and at every other wake-up (a SIGCHLD, which `keepup reload`
    /// sends to ask; the signal is blocked since [`Watched::begin`], so one sent after a look
    /// wakes the wait).
    #[must_use]
    pub fn until_asked(
        &self,
        deadline: Option<std::time::Instant>,
        extra: Option<std::os::fd::BorrowedFd<'_>>,
        asked: &mut dyn FnMut() -> bool,
    ) -> Wake {
        loop {
            if asked() {
                return Wake::Asked;
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let timeout = match (&self.pidfd, left) {
                (Some(_), left) => left,
                (None, Some(left)) => Some(left.min(POLL_EVERY)),
                (None, None) => Some(POLL_EVERY),
            };
            let signals = self.children.signals.as_ref();
            let (ended, readable) = match extra {
                Some(extra) => os::wait_also(self.pidfd.as_ref(), signals, extra, timeout),
                None => (os::wait(self.pidfd.as_ref(), signals, timeout), false),
            };
            self.children.reap();
            if ended || (self.pidfd.is_none() && !super::is_running(&self.identity)) {
                return Wake::Ended(self.children.ended());
            }
            if readable {
                return Wake::Readable;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Wake::Deadline;
            }
        }
    }
}
