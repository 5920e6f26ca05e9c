//! One configured service: its state files, and the lookup that says whether (and where) it
//! runs: the pid lock's pid first, then the recorded instance, and only then a scan of the
//! whole process table. When it does not run, the lookup also finds what is left of it: the
//! live members of the process group a dead instance led.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::{self, Trusted};
use crate::oplock::{self, OpLock};
use crate::pidfile::{self, PidLock};
use crate::process::{self, Finder, Instance, Leftovers};
use crate::record::Record;
use crate::watcher::{self, WatcherRecord};

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
    /// `<entry>.watcher`: who the watcher is.
    pub watcher_file: PathBuf,
    /// The instance record as last read or written by this invocation.
    record_cache: RefCell<Cached>,
}

/// The instance record, once this invocation knows it.
#[derive(Clone)]
enum Cached {
    Unread,
    Known(Option<Rc<Record>>),
}

/// Where the service runs, and what was wrong with the pid lock on the way.
#[derive(Debug)]
pub struct Lookup {
    pub instance: Option<Instance>,
    /// What is wrong with the pid lock, when its pid was not used for something other than
    /// the service having ended: bad content, an unsafe file, a pid now another process's.
    pub stale: Option<String>,
    /// What is left of a dead instance's group, when the service does not run.
    pub leftovers: Option<Leftovers>,
}

impl Service {
    #[must_use]
    pub fn new(config: Config) -> Service {
        Service {
            pid_file: config.state_file(".pid"),
            record_file: config.state_file(".instance"),
            lock_file: config.state_file(".lock"),
            timer_log: config.state_file(".timer.log"),
            events_file: config.state_file(".events"),
            watcher_file: config.state_file(".watcher"),
            record_cache: RefCell::new(Cached::Unread),
            config,
        }
    }

    /// The finder, which also knows where the entry resolved when the recorded instance
    /// started.
    #[must_use]
    pub fn finder(&self) -> Finder<'_> {
        let recorded = self
            .record()
            .and_then(|r| r.launch.as_ref()?.resolved.clone());
        Finder::new(&self.config).with_recorded_entry(recorded)
    }

    /// Takes the operation lock; the first acting verb makes a `state_dir` not made yet.
    pub fn lock(&self) -> Result<OpLock> {
        match oplock::acquire(&self.lock_file) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let dir = &self.config.state_dir;
                std::fs::create_dir_all(dir)
                    .map_err(Error::io("creating the state folder", dir))?;
                oplock::acquire(&self.lock_file)
            }
            other => other,
        }
    }

    pub fn pid_lock(&self) -> Result<PidLock> {
        pidfile::read(&self.pid_file)
    }

    /// The recorded instance; a missing, unsafe or garbled record is no record. Read once
    /// (this invocation holds the operation lock, so only it changes the file) and shared.
    #[must_use]
    pub fn record(&self) -> Option<Rc<Record>> {
        if let Cached::Known(record) = &*self.record_cache.borrow() {
            return record.clone();
        }
        let record = match files::read_trusted(&self.record_file, 4096) {
            Ok(Trusted::Content(json)) => serde_json::from_slice(&json).ok().map(Rc::new),
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
                Some(record) if record.pid == *pid => finder.by_identity(&record.identity()),
                // A lock keepup did not write (or an older record): the search rule decides.
                _ => finder.by_rule(*pid)?,
            };
            if found.is_some() {
                return Ok(Lookup {
                    instance: found,
                    stale,
                    leftovers: None,
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
            .as_ref()
            .filter(|r| lock.pid() != Some(r.pid))
            .and_then(|r| finder.by_identity(&r.identity()));
        if recorded.is_some() {
            return Ok(Lookup {
                instance: recorded,
                stale,
                leftovers: None,
            });
        }
        let leftovers = leftovers(finder, record.as_deref(), lock)?;
        let dead: Vec<_> = leftovers.iter().map(|l| l.group).collect();
        let instance = finder.scan(&dead)?.into_iter().next();
        Ok(Lookup {
            instance,
            stale,
            leftovers,
        })
    }

    /// Records `instance` as the service and points the pid lock at it, writing only what
    /// differs (the timer's every-minute check then writes nothing).
    pub fn remember(&self, instance: &Instance, lock: &PidLock) -> Result<()> {
        let known = self
            .record()
            .is_some_and(|r| r.pid == instance.pid() && r.start == instance.identity.start);
        if !known {
            let record = Record::new(instance, &self.config);
            let json = serde_json::to_vec(&record)
                .map_err(|e| Error::Failed(format!("encoding instance record: {e}")))?;
            files::write_atomic(&self.record_file, &json)?;
            *self.record_cache.borrow_mut() = Cached::Known(Some(Rc::new(record)));
        }
        if lock.pid() != Some(instance.pid()) {
            pidfile::write(&self.pid_file, instance.pid())?;
        }
        Ok(())
    }

    /// The running watcher, as its record names it (a record whose process has gone, or is
    /// now another, names none).
    #[must_use]
    pub fn watcher(&self, finder: &Finder<'_>) -> Option<WatcherRecord> {
        watcher::read(&self.watcher_file)
            .filter(|w| finder.is_watcher(&w.identity(), &self.config.file))
    }

    /// Forgets what this invocation read of the instance record: another process (the
    /// watcher it handed the launch to) has written it since.
    pub fn reread_record(&self) {
        *self.record_cache.borrow_mut() = Cached::Unread;
    }

    /// Drops the record of an instance that has ended.
    pub fn forget(&self) -> Result<()> {
        *self.record_cache.borrow_mut() = Cached::Known(None);
        files::remove(&self.record_file).map(drop)
    }
}

/// The live members of the group a dead instance led: known from the record (same boot,
/// and it led its group), or from the pid lock's pid when one of them is recognised.
fn leftovers(
    finder: &Finder<'_>,
    record: Option<&Record>,
    lock: &PidLock,
) -> Result<Option<Leftovers>> {
    if let Some(record) = record.filter(|r| r.leads_group && process::this_boot(&r.start))
        && let Some(leftovers) = finder.leftovers(record.pid, false)?
    {
        return Ok(Some(leftovers));
    }
    match lock.pid() {
        Some(pid) if record.is_none_or(|r| r.pid != pid) => finder.leftovers(pid, true),
        _ => Ok(None),
    }
}
