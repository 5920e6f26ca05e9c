//! One configured service: its state files, and the lookup that says whether (and where) it
//! runs: the pid lock's pid first, then the recorded instance, and only then a scan of the
//! whole process table. When it does not run, the lookup also finds what is left of it: the
//! live members of the process group a dead instance led.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::{self, Trusted};
use crate::keeper::{self, Found};
use crate::oplock::OpLock;
use crate::pid::Pid;
use crate::pidfile::{self, PidLock};
use crate::process::{self, Finder, Instance, Leftovers};
use crate::record::Record;
use crate::registry::{self, Keeping, Registry, Trouble};
use crate::watcher::{self, WatcherRecord};

pub struct Service {
    pub config: Config,
    /// The acting user's record of what keepup keeps.
    pub registry: Registry,
    /// This service's record there, as found or claimed.
    keeper: RefCell<Found>,
    /// [`Service::place`], once known (every state file's path asks it).
    place: RefCell<Option<(PathBuf, String)>>,
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
    /// The service `config` names, as the acting user's record finds it (nothing is locked or
    /// written).
    #[must_use]
    pub fn open(config: Config) -> Service {
        let registry = Registry::of_this_user();
        let found = keeper::find(&registry, &config);
        Service {
            config,
            registry,
            keeper: RefCell::new(found),
            place: RefCell::new(None),
            record_cache: RefCell::new(Cached::Unread),
        }
    }

    /// The record this service is kept by, its own or another config's.
    #[must_use]
    pub fn keeping(&self) -> Option<Keeping> {
        match &*self.keeper.borrow() {
            Found::Own(k) | Found::Other(k) => Some(k.clone()),
            Found::None => None,
        }
    }

    /// The config that keeps this service when it is not this one.
    #[must_use]
    pub fn other_keeper(&self) -> Option<PathBuf> {
        match &*self.keeper.borrow() {
            Found::Other(k) => Some(k.config.clone()),
            _ => None,
        }
    }

    /// Refused, naming the keeper, when another config keeps this service (what a claim says,
    /// for a verb that takes none).
    pub fn refuse_other_keeper(&self) -> Result<()> {
        match &*self.keeper.borrow() {
            Found::Other(other) => Err(keeper::kept_by_other(&self.config, other)),
            _ => Ok(()),
        }
    }

    /// The state folder and the state files' name in use: the record's while its folder is
    /// there (a renamed entry, a switched release keep theirs until the next launch), else the
    /// config's (a moved folder took its files along).
    #[must_use]
    pub fn place(&self) -> (PathBuf, String) {
        if let Some(place) = &*self.place.borrow() {
            return place.clone();
        }
        let place = match &*self.keeper.borrow() {
            Found::Own(k) | Found::Other(k) if k.state_dir.is_dir() => {
                (k.state_dir.clone(), k.name.clone())
            }
            _ => (keeper::state_dir_of(&self.config), self.config.name.clone()),
        };
        self.place.replace(Some(place.clone()));
        place
    }

    /// The record, as found or claimed; where the state files are, and so what this
    /// invocation read of the instance record, follow it.
    fn set_keeper(&self, found: Found) {
        self.keeper.replace(found);
        self.place.replace(None);
        self.record_cache.replace(Cached::Unread);
    }

    /// A state file named `<name><suffix>` in the state folder in use.
    #[must_use]
    pub fn state_file(&self, suffix: &str) -> PathBuf {
        let (dir, name) = self.place();
        keeper::state_file(&dir, &name, suffix)
    }

    /// The log `instance` writes to: the config's, where it led when the instance was launched
    /// (after a `current ->` release switch, the old release's instance still writes to its
    /// own folder's log). A standard output the service itself sent elsewhere (another name)
    /// is not keepup's log: the config's is named then, and so it is, as written, when it is
    /// the very file the instance writes.
    #[must_use]
    pub fn log_of(&self, instance: Option<&Instance>) -> PathBuf {
        let log = &self.config.log;
        instance
            .and_then(Instance::output_file)
            .filter(|output| output.file_name() == log.file_name() && output.is_file())
            .filter(|output| files::FileId::of(output) != files::FileId::of(log))
            .unwrap_or_else(|| log.clone())
    }

    /// `<name>.pid`: the pid lock.
    #[must_use]
    pub fn pid_file(&self) -> PathBuf {
        self.state_file(".pid")
    }

    /// `<name>.instance`: the identity (pid and start) of the instance keepup started or
    /// adopted, so a reused pid is never taken for it.
    #[must_use]
    pub fn record_file(&self) -> PathBuf {
        self.state_file(".instance")
    }

    /// `<name>.timer.log`: what the timer's `restart` and the watcher did.
    #[must_use]
    pub fn timer_log(&self) -> PathBuf {
        self.state_file(".timer.log")
    }

    /// `<name>.events`: the event history.
    #[must_use]
    pub fn events_file(&self) -> PathBuf {
        self.state_file(".events")
    }

    /// `<name>.env`: the environment of the last manual start, which every launch starts from.
    #[must_use]
    pub fn recorded_env(&self) -> PathBuf {
        self.state_file(".env")
    }

    /// What a launch gives the service now: the environment of the last manual start (or this
    /// process's), then `env_file`'s, then `env` (`environment`'s one rule).
    pub fn launch_env(&self) -> Result<crate::environment::Environment> {
        crate::environment::for_launch(
            &self.recorded_env(),
            self.config.env_file.as_deref(),
            &self.config.env,
        )
    }

    /// `<name>.reload`: a reload asked of the watcher, and how far it got.
    #[must_use]
    pub fn reload_file(&self) -> PathBuf {
        self.state_file(".reload")
    }

    /// `<name>.watcher`: who the watcher is.
    #[must_use]
    pub fn watcher_file(&self) -> PathBuf {
        self.state_file(".watcher")
    }

    /// The operation lock's file (in the registry, named by the service's id).
    #[must_use]
    pub fn lock_file(&self) -> PathBuf {
        self.registry.lock_path(&self.id())
    }

    /// Claims the service for this config (refused when another config keeps it) and takes
    /// its operation lock. `keep`: the verb starts keeping it (see [`keeper::claim`]).
    pub fn lock(&self, keep: bool) -> Result<OpLock> {
        let found = self.keeper.borrow().clone();
        let claimed = keeper::claim(&self.registry, &self.config, keep, &found)?;
        // The place may differ from what this invocation read before it held the lock.
        self.set_keeper(if claimed.recorded {
            Found::Own(claimed.keeping)
        } else {
            Found::None
        });
        self.make_state_dir()?;
        Ok(claimed.lock)
    }

    /// Before a launch (under the operation lock): the service moves to the config's place,
    /// its history, records and pid lock with it (a renamed entry, a switched release), and
    /// the record says so. The pid lock is written there before it goes here, so the service
    /// is never unkept on the way.
    pub fn settle(&self) -> Result<()> {
        let from = self.place();
        let to = (keeper::state_dir_of(&self.config), self.config.name.clone());
        if from != to {
            if !to.0.is_dir() {
                std::fs::create_dir_all(&to.0)
                    .map_err(Error::io("creating the state folder", &to.0))?;
            }
            let file = |(dir, name): &(PathBuf, String), suffix: &str| {
                keeper::state_file(dir, name, suffix)
            };
            for suffix in [".events", ".instance", ".watcher", ".env"] {
                move_state_file(&file(&from, suffix), &file(&to, suffix))?;
            }
            if let PidLock::Held(pid) = pidfile::read(&file(&from, ".pid"))? {
                pidfile::write(&file(&to, ".pid"), pid)?;
            }
        }
        let fresh = keeper::fresh(&self.config, self.id());
        if self.keeping().as_ref() != Some(&fresh) {
            self.registry.write(&fresh)?;
            self.set_keeper(Found::Own(fresh));
        }
        if from != to {
            pidfile::remove(&keeper::state_file(&from.0, &from.1, ".pid"))?;
        }
        Ok(())
    }

    /// The first acting verb makes a `state_dir` not made yet; but never a folder that a config
    /// no longer on disk names (a moved folder is not made again where it was).
    fn make_state_dir(&self) -> Result<()> {
        let (dir, _) = self.place();
        if dir.is_dir() || !self.config.file.is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(Error::io("creating the state folder", &dir))
    }

    /// What the watcher could not do, for `status` to say (until the next launch).
    pub fn trouble(&self, what: &str) {
        let Found::Own(mut keeping) = self.keeper.borrow().clone() else {
            return;
        };
        if keeping.trouble.as_ref().is_some_and(|t| t.what == what) {
            return;
        }
        keeping.trouble = Some(Trouble {
            at: crate::text::time_text(std::time::SystemTime::now()),
            what: what.to_owned(),
        });
        if self.registry.write(&keeping).is_ok() {
            self.set_keeper(Found::Own(keeping));
        }
    }

    /// The service is no longer kept (after its pid lock went): the recorded environment
    /// (secrets, maybe) and the record go.
    pub fn unkeep(&self) -> Result<()> {
        files::remove(&self.recorded_env())?;
        self.release()
    }

    /// The service is no longer kept: its record goes (its id and lock stay known by its
    /// config's name).
    pub fn release(&self) -> Result<()> {
        let Found::Own(keeping) = self.keeper.borrow().clone() else {
            return Ok(());
        };
        self.set_keeper(Found::None);
        self.registry.remove(&keeping)
    }

    /// The service's id: its record's, or the one a record of this config would get.
    fn id(&self) -> String {
        match &*self.keeper.borrow() {
            Found::Own(k) => k.id.clone(),
            _ => registry::id_of(&self.config.file),
        }
    }

    /// The finder, which also knows where the entry resolved when the recorded instance
    /// started.
    #[must_use]
    pub fn finder(&self) -> Finder<'_> {
        let recorded = self
            .record()
            .and_then(|r| r.launch.as_ref()?.resolved.clone());
        // Two identities read from the record in place: the revival's way makes a finder.
        let (entry, dir) = match &*self.keeper.borrow() {
            Found::Own(k) | Found::Other(k) => (k.entry_file, k.entry_dir),
            Found::None => (None, None),
        };
        Finder::new(&self.config)
            .with_recorded_entry(recorded)
            .with_last_launch(entry, dir)
    }

    pub fn pid_lock(&self) -> Result<PidLock> {
        pidfile::read(&self.pid_file())
    }

    /// The recorded instance; a missing, unsafe or garbled record is no record. Read once
    /// (this invocation holds the operation lock, so only it changes the file) and shared.
    #[must_use]
    pub fn record(&self) -> Option<Rc<Record>> {
        if let Cached::Known(record) = &*self.record_cache.borrow() {
            return record.clone();
        }
        let record = match files::read_trusted(&self.record_file(), 4096) {
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
            PidLock::Stale(why) => Some(format!("pid lock {} {why}", self.pid_file().display())),
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
                    self.pid_file().display(),
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
        let instance = finder.scan(leftovers.as_ref())?.into_iter().next();
        Ok(Lookup {
            instance,
            stale,
            leftovers,
        })
    }

    /// What is left of the recorded instance `ended`, which the caller (the watcher, its parent)
    /// saw end: no instance it launched runs, so the table is not searched for one (a copy
    /// started by hand beside it is not looked for here: the timer's check does that when the
    /// watcher is gone). `None` when the pid lock or the record names another process: then
    /// [`Service::locate`] must decide.
    pub fn locate_after_end(
        &self,
        finder: &Finder<'_>,
        lock: &PidLock,
        ended: Pid,
    ) -> Result<Option<Lookup>> {
        let record = self.record();
        let ours = record.as_ref().is_some_and(|r| r.pid == ended);
        if !ours || lock.pid() != Some(ended) || finder.exists(ended) {
            return Ok(None);
        }
        Ok(Some(Lookup {
            instance: None,
            stale: None,
            leftovers: leftovers(finder, record.as_deref(), lock)?,
        }))
    }

    /// Records `instance` as the service and points the pid lock at it, writing only what
    /// differs (the timer's every-minute check then writes nothing).
    pub fn remember(&self, instance: &Instance, lock: &PidLock) -> Result<()> {
        self.write_remembered(instance, Some(lock), files::write_atomic, true)
    }

    /// The identity of a process just spawned, waiting at its gate: the one thing every later
    /// command needs to find it, written before it may run, without waiting for the disk (a
    /// revival's milliseconds; [`Service::settled`] makes it durable once confirmed).
    pub fn remember_spawned(&self, instance: &Instance) -> Result<()> {
        self.write_remembered(instance, None, files::rewrite_in_place, false)
    }

    /// Points the pid lock at a process that runs now (after [`Service::remember_spawned`]).
    pub fn point_lock(&self, instance: &Instance, lock: &PidLock) -> Result<()> {
        self.write_remembered(instance, Some(lock), files::write_atomic_unsynced, false)
    }

    /// The confirmed instance's record and pid lock, on disk.
    pub fn settled(&self) -> Result<()> {
        files::sync(&self.record_file())?;
        files::sync(&self.pid_file())
    }

    /// Writes the instance record (unless it already names `instance`) and, given the pid
    /// lock as read, points it at `instance` (unless it does already). `running`: the instance
    /// runs its program (it is not waiting at its gate), so its kin can be noted.
    fn write_remembered(
        &self,
        instance: &Instance,
        lock: Option<&PidLock>,
        write: fn(&Path, &[u8]) -> Result<()>,
        running: bool,
    ) -> Result<()> {
        let known = self
            .record()
            .is_some_and(|r| r.pid == instance.pid() && r.start == instance.identity.start);
        if !known {
            let mut record = Record::new(instance, &self.config);
            if running {
                record.kin = instance.kin();
            }
            let json = serde_json::to_vec(&record)
                .map_err(|e| Error::Failed(format!("encoding instance record: {e}")))?;
            write(&self.record_file(), &json)?;
            *self.record_cache.borrow_mut() = Cached::Known(Some(Rc::new(record)));
        }
        if let Some(lock) = lock
            && lock.pid() != Some(instance.pid())
        {
            write(&self.pid_file(), pidfile::text(instance.pid()).as_bytes())?;
        }
        Ok(())
    }

    /// The running watcher, as its record names it (a record whose process has gone, or is
    /// now another, names none).
    #[must_use]
    pub fn watcher(&self, finder: &Finder<'_>) -> Option<WatcherRecord> {
        watcher::read(&self.watcher_file()).filter(|w| finder.is_watcher(&w.identity()))
    }

    /// Whether the watcher record names `me` (`None`: no record): a watcher that took over
    /// since, or none at all, makes a watcher that waited for the operation lock leave the
    /// service to it.
    #[must_use]
    pub fn watched_by(&self, me: Option<&process::Identity>) -> bool {
        watcher::read(&self.watcher_file())
            .map(|w| w.identity())
            .as_ref()
            == me
    }

    /// Forgets what this invocation read of the instance record: another process (the
    /// watcher it handed the launch to) has written it since.
    pub fn reread_record(&self) {
        *self.record_cache.borrow_mut() = Cached::Unread;
    }

    /// Drops the record of an instance that has ended.
    pub fn forget(&self) -> Result<()> {
        *self.record_cache.borrow_mut() = Cached::Known(None);
        files::remove(&self.record_file()).map(drop)
    }
}

/// What a dead instance left: the live members of the group it led, known from the record
/// (same boot, and it led its group), or from the pid lock's pid when one of them is
/// recognised; and, for an instance keepup adopted, its runaways (workers that left its
/// session, which nothing else ties to it once it has died).
fn leftovers(
    finder: &Finder<'_>,
    record: Option<&Record>,
    lock: &PidLock,
) -> Result<Option<Leftovers>> {
    if let Some(record) = record.filter(|r| process::this_boot(&r.start)) {
        let group = if record.leads_group {
            finder.leftovers(record.pid, false)?
        } else {
            None
        };
        let runaways = match &record.kin {
            Some(kin) => finder.runaways(&record.identity(), kin)?,
            None => Vec::new(),
        };
        if let Some(leftovers) = Leftovers::join(record.pid, group, runaways) {
            return Ok(Some(leftovers));
        }
    }
    match lock.pid() {
        Some(pid) if record.is_none_or(|r| r.pid != pid) => finder.leftovers(pid, true),
        _ => Ok(None),
    }
}

/// Moves a state file to the service's new place; a history already there (from an earlier
/// life at that place) takes the moved one's lines after its own.
fn move_state_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::symlink_metadata(from).is_err() {
        return Ok(());
    }
    let appended = to.extension().is_some_and(|e| e == "events") && to.exists();
    if !appended && std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    // Another file system, or a history to add to.
    let content = std::fs::read(from).map_err(Error::io("reading", from))?;
    if appended {
        crate::events::append_lines(to, content)?;
    } else {
        files::write_atomic(to, &content)?;
    }
    files::remove(from).map(drop)
}
