//! One configured service: its files beside the entry, and the lookup that says whether (and
//! where) it runs: the pid lock's pid first, then the recorded instance, and only then a scan
//! of the whole process table.

use std::cell::RefCell;
use std::path::PathBuf;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::{self, Trusted};
use crate::oplock::{self, OpLock};
use crate::pidfile::{self, PidLock};
use crate::process::{Finder, Identity, Instance};

pub struct Service {
    pub config: Config,
    /// `<entry>.pid`: the pid lock.
    pub pid_file: PathBuf,
    /// `<entry>.instance`: the identity (pid and start) of the instance keepup started or
    /// adopted, so a reused pid is never taken for it.
    pub record_file: PathBuf,
    /// `<entry>.lock`: the operation lock.
    pub lock_file: PathBuf,
    /// `<entry>.timer.log`: what the timer's `restart` did.
    pub timer_log: PathBuf,
    /// `<entry>.events`: the event history.
    pub events_file: PathBuf,
    /// The instance record as last read or written by this invocation.
    record_cache: RefCell<Cached>,
}

/// The instance record, once this invocation knows it.
#[derive(Clone)]
enum Cached {
    Unread,
    Known(Option<Identity>),
}

/// Where the service runs, and what was wrong with the pid lock on the way.
#[derive(Debug)]
pub struct Lookup {
    pub instance: Option<Instance>,
    /// What is wrong with the pid lock, when its pid was not used for something other than
    /// the service having ended: bad content, an unsafe file, a pid now another process's.
    pub stale: Option<String>,
}

impl Service {
    #[must_use]
    pub fn new(config: Config) -> Service {
        Service {
            pid_file: config.beside_entry(".pid"),
            record_file: config.beside_entry(".instance"),
            lock_file: config.beside_entry(".lock"),
            timer_log: config.beside_entry(".timer.log"),
            events_file: config.beside_entry(".events"),
            record_cache: RefCell::new(Cached::Unread),
            config,
        }
    }

    #[must_use]
    pub fn finder(&self) -> Finder<'_> {
        Finder::new(&self.config)
    }

    pub fn lock(&self) -> Result<OpLock> {
        oplock::acquire(&self.lock_file)
    }

    pub fn pid_lock(&self) -> Result<PidLock> {
        pidfile::read(&self.pid_file)
    }

    /// The recorded instance; a missing, unsafe or garbled record is no record. Read once:
    /// this invocation holds the operation lock, so only it changes the file.
    fn record(&self) -> Option<Identity> {
        if let Cached::Known(record) = &*self.record_cache.borrow() {
            return record.clone();
        }
        let record = match files::read_trusted(&self.record_file, 4096) {
            Ok(Trusted::Content(json)) => serde_json::from_slice(&json).ok(),
            _ => None,
        };
        *self.record_cache.borrow_mut() = Cached::Known(record.clone());
        record
    }

    /// Finds the running service, trying the cheapest sure answer first.
    pub fn locate(&self, finder: &Finder<'_>, lock: &PidLock) -> Result<Lookup> {
        let record = self.record();
        let mut stale = match lock {
            PidLock::Stale(why) => Some(format!("pid lock {} {why}", self.pid_file.display())),
            PidLock::Absent | PidLock::Held(_) => None,
        };
        if let PidLock::Held(pid) = lock {
            let found = match &record {
                // keepup started this pid: only that very process will do.
                Some(record) if record.pid == *pid => finder.by_identity(record),
                // A lock keepup did not write (or an older record): the search rule decides.
                _ => finder.by_rule(*pid)?,
            };
            if found.is_some() {
                return Ok(Lookup {
                    instance: found,
                    stale,
                });
            }
            // A pid that has simply ended is the service being dead, not a stale lock.
            if finder.exists(*pid) {
                stale = Some(format!(
                    "pid lock {} holds {pid}, which is now another process, not {}",
                    self.pid_file.display(),
                    self.config.name
                ));
            }
        }
        // The recorded instance may still run with the lock gone or garbled, or after a chdir.
        let recorded = record
            .filter(|r| lock.pid() != Some(r.pid))
            .and_then(|r| finder.by_identity(&r));
        let instance = match recorded {
            Some(instance) => Some(instance),
            None => finder.scan()?.into_iter().next(),
        };
        Ok(Lookup { instance, stale })
    }

    /// Records `instance` as the service and points the pid lock at it, writing only what
    /// differs (the timer's every-minute check then writes nothing).
    pub fn remember(&self, instance: &Instance, lock: &PidLock) -> Result<()> {
        if self.record().as_ref() != Some(&instance.identity) {
            let json = serde_json::to_vec(&instance.identity)
                .map_err(|e| Error::Failed(format!("encoding instance record: {e}")))?;
            files::write_atomic(&self.record_file, &json)?;
            *self.record_cache.borrow_mut() = Cached::Known(Some(instance.identity.clone()));
        }
        if lock.pid() != Some(instance.pid()) {
            pidfile::write(&self.pid_file, instance.pid())?;
        }
        Ok(())
    }

    /// Drops the record of an instance that has ended.
    pub fn forget(&self) -> Result<()> {
        *self.record_cache.borrow_mut() = Cached::Known(None);
        files::remove(&self.record_file).map(drop)
    }
}
