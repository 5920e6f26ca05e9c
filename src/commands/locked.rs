//! The service under the operation lock: what every verb that may act holds, with the
//! actions they share (finding the instance, launching, the watcher, the history).

use std::cell::RefCell;

use super::{launch, note, say, stamp, watch};
use crate::error::{Error, Result};
use crate::events::{self, Event, Kind, Outcome, Who};
use crate::logfile;
use crate::oplock::{self, OpLock};
use crate::pid::Pid;
use crate::pidfile::{self, PidLock};
use crate::process::exit::Waits;
use crate::process::watcher::{First, Orphan};
use crate::process::{self, Finder, Instance, Leftovers};
use crate::service::{Lookup, Service};
use crate::signal::Signal;
use crate::waiting::{Note, Waiting};
use crate::watcher::{self, WatcherRecord};

/// What every verb that may act holds: the operation lock, and the pid lock as read under it.
/// It also keeps the log rotated and the event history written, for all of them alike.
pub(super) struct Locked<'a> {
    pub(super) service: &'a Service,
    pub(super) lock: OpLock,
    pub(super) finder: Finder<'a>,
    pub(super) pid_lock: PidLock,
    pub(super) who: Who,
    /// What the history could not hold, for the guard to count all the same.
    pub(super) memory: RefCell<Memory>,
    /// Events told now and written once the launch they precede is on its way (see
    /// [`Locked::record_later`]).
    later: RefCell<Vec<Event>>,
}

/// Events the history could not take (a full disk, a directory in its place), kept so that the
/// crash-loop guard counts them all the same: without, a loop the history cannot see would be
/// revived without end. The watcher carries it from one revival to the next.
#[derive(Default)]
pub(super) struct Memory {
    unrecorded: Vec<Event>,
    /// The trouble has been said: once per episode, not at every revival.
    said: bool,
}

impl Memory {
    /// Whether it holds anything the guard still needs.
    pub(super) fn holds_events(&self) -> bool {
        !self.unrecorded.is_empty()
    }

    /// Forgets what the guard can no longer need: events older than `keep`.
    pub(super) fn forget_before(&mut self, keep: std::time::Duration) {
        let now = std::time::SystemTime::now();
        self.unrecorded.retain(|e| {
            e.at()
                .is_none_or(|t| now.duration_since(t).unwrap_or_default() < keep)
        });
    }

    /// `history` with the events it could not take, in order of time.
    pub(super) fn complete(&self, mut history: Vec<Event>) -> Vec<Event> {
        if self.unrecorded.is_empty() {
            return history;
        }
        history.extend(self.unrecorded.iter().cloned());
        history.sort_by_key(Event::at);
        history
    }

    /// Says `trouble` with the history, once per episode.
    pub(super) fn trouble(&mut self, trouble: &str) {
        if !std::mem::replace(&mut self.said, true) {
            note(&format!(
                "{trouble}; until it can be, the crash-loop guard counts revivals in memory"
            ));
        }
    }
}

/// When another keepup acts on the service: the note a person gets if they wait long, naming
/// it. The timer waits unsaid: its log holds what it did.
fn waiting_for_the_lock(service: &Service) -> Option<Waiting> {
    let lock_file = service.lock_file();
    if !matches!(oplock::try_acquire_existing(&lock_file), Ok(None)) || !lock_file.exists() {
        return None;
    }
    let name = service.config.name.clone();
    Some(Waiting::begin(move || {
        let holder = process::lock_holder(&lock_file)
            .map_or_else(String::new, |(pid, line)| format!(" (pid {pid}: {line})"));
        format!("another keepup acting on {name} to finish{holder}")
    }))
}

/// The most events kept in memory: more than any guard needs.
const MEMORY_EVENTS: usize = 256;

impl Drop for Locked<'_> {
    /// Under the operation lock still (its fields go after this): every writer of the history
    /// holds it.
    fn drop(&mut self) {
        self.write_later();
    }
}

impl<'a> Locked<'a> {
    /// Claims the service and takes its operation lock; `keep`: the verb starts keeping it.
    pub(super) fn acquire(service: &'a Service, who: Who, keep: bool) -> Result<Locked<'a>> {
        let waiting = who
            .is_person()
            .then(|| waiting_for_the_lock(service))
            .flatten();
        let lock = service.lock(keep)?;
        drop(waiting);
        Locked::holding(service, lock, who)
    }

    /// Acts under `lock`, already held.
    pub(super) fn holding(service: &'a Service, lock: OpLock, who: Who) -> Result<Locked<'a>> {
        let config = &service.config;
        let rotated = logfile::rotate_if_needed(&config.log, config.log_max_size, config.log_keep);
        // The crontab line's `>>` and the watcher append to the timer's log, and a crash loop
        // fills it as fast as the service's: it is rotated the same way, and by the same rules.
        let timer_log = service.timer_log();
        let timer_rotated =
            logfile::rotate_if_needed(&timer_log, config.log_max_size, config.log_keep);
        let locked = Locked {
            service,
            lock,
            finder: service.finder(),
            pid_lock: service.pid_lock()?,
            who,
            memory: RefCell::default(),
            later: RefCell::default(),
        };
        locked.record_rotation(rotated, None);
        let which = format!("the timer's log, {}", timer_log.display());
        locked.record_rotation(timer_rotated, Some(&which));
        Ok(locked)
    }

    /// A log that cannot be rotated is worth a word, not a failed revival: one word per failure
    /// episode (the every-minute timer would repeat it into its log), and one event. `which`:
    /// the log, when it is not the service's.
    pub(super) fn record_rotation(&self, rotated: Result<bool>, which: Option<&str>) {
        match rotated {
            Ok(false) => {}
            Ok(true) => self.record(Kind::Rotate, Outcome::Ok, None, which),
            Err(e) => {
                let history = events::read(&self.service.events_file()).unwrap_or_default();
                let failing_already = history
                    .iter()
                    .rev()
                    .find(|e| e.event == Kind::Rotate)
                    .is_some_and(|e| e.outcome == Outcome::Failed);
                if !failing_already {
                    let why = format!(
                        "log not rotated: {e}; the log and its rotated copies are as they were"
                    );
                    note(&why);
                    self.record(Kind::Rotate, Outcome::Failed, None, Some(&why));
                }
            }
        }
    }

    /// The running instance (or what is left of a dead one), saying on stderr (and in the
    /// history) what was wrong with the pid lock, if anything. An instance that another config
    /// keeps is not this config's to act on.
    pub(super) fn locate(&self) -> Result<Lookup> {
        let lookup = self.service.locate(&self.finder, &self.pid_lock)?;
        if let Some(stale) = &lookup.stale {
            note(stale);
            self.record(
                Kind::StaleLock,
                Outcome::Ok,
                self.pid_lock.pid(),
                Some(stale),
            );
        }
        if let Some(instance) = &lookup.instance {
            // Recognition moved: the history says so, not only the rewritten pid lock.
            if let Some(old) = self.pid_lock.pid().filter(|old| *old != instance.pid()) {
                self.record(
                    Kind::PidChange,
                    Outcome::Ok,
                    Some(instance.pid()),
                    Some(&format!(
                        "{} runs as {}, not as {old} (the pid lock's)",
                        self.service.config.name,
                        instance.pid()
                    )),
                );
            }
        }
        Ok(lookup)
    }

    /// [`Locked::locate`] after the caller saw the instance `ended` (its own child) end: the
    /// table is searched only when the pid lock or the record names another process.
    pub(super) fn locate_after_end(&self, ended: Option<Pid>) -> Result<Lookup> {
        if let Some(ended) = ended
            && let Some(lookup) =
                self.service
                    .locate_after_end(&self.finder, &self.pid_lock, ended)?
        {
            return Ok(lookup);
        }
        self.locate()
    }

    /// Ends what is left of a dead instance (`signal`, then SIGKILL after `stop_timeout`), and
    /// says so on stderr and in the history.
    pub(super) fn end_leftovers(&self, leftovers: &Leftovers, signal: Signal) -> Result<()> {
        let config = &self.service.config;
        let ended = self
            .finder
            .end_leftovers(leftovers, signal, config.stop_timeout);
        let ended = self.record_result(
            Kind::Leftovers,
            Some(leftovers.of),
            ended.map(|()| format!("ended {leftovers}")),
        )?;
        note(&ended);
        Ok(())
    }

    /// Launches the service and records it as `kind`. In the watcher, from this process;
    /// otherwise through a process of its own, detached, that takes over this lock: a new
    /// watcher, which becomes the service's parent (any other watcher is ended first, with what
    /// it was left with), or without `watch` a launcher that leaves once done. Either records
    /// the launch itself, so a Ctrl-C or a kill of this keepup never leaves a service running,
    /// kept and unrecorded, or half started.
    pub(super) fn launch(&self, lock: &PidLock, kind: Kind) -> Result<Instance> {
        let service = self.service;
        // What launches is what the config names now: the service moves to its place first.
        service.settle()?;
        if self.who == Who::Watcher {
            return self.launch_here(lock, kind);
        }
        self.end_watcher(None)?;
        let first = First::Launch {
            kind: kind.name(),
            by: self.who.name(),
            once: !service.config.watch,
        };
        let mut note = service
            .config
            .ready
            .as_ref()
            .filter(|_| self.who.is_person())
            .map(|ready| {
                let what = format!(
                    "{} to pass its ready check, ready = \"{ready}\", for up to {} (start_timeout)",
                    service.config.name,
                    crate::text::duration_text(service.config.start_timeout)
                );
                Note::new(move || what)
            });
        let answer = process::watcher::spawn(&service.config.file, &self.lock, first, &mut |t| {
            if let Some(note) = note.as_mut() {
                note.waited(t);
            }
        });
        drop(note);
        let mut answer = match answer {
            Ok(answer) => answer,
            // It never took over: nothing was launched, and nobody else records that.
            Err(e) => return self.record_launch(kind, Err(e)),
        };
        // The launcher wrote the record and the pid lock.
        service.reread_record();
        watch::take_answer(&mut answer, &self.finder, &service.config.name)?.ok_or_else(|| {
            Error::Failed(format!(
                "{}: the watcher answered what it was not asked: {:?}",
                service.config.name, answer.text
            ))
        })
    }

    /// Launches the service from this process and records it as `kind`; a `start` that fails
    /// leaves nothing asking the timer to keep retrying it.
    pub(super) fn launch_here(&self, lock: &PidLock, kind: Kind) -> Result<Instance> {
        let service = self.service;
        let launched = launch::launch(service, &self.finder, lock, &|| self.write_later());
        let launched = self.record_launch(kind, launched);
        if launched.is_err() && kind == Kind::Start {
            pidfile::remove(&service.pid_file())?;
            service.unkeep()?;
        }
        launched
    }

    /// With `watch`, makes sure a watcher watches `instance` (one is started if none runs);
    /// without, that none does. A watcher it starts is recorded (a `watcher` event) and said
    /// on stdout when a log is listening; its pid is returned, for a person to be told.
    pub(super) fn ensure_watcher(&self, instance: &Instance) -> Result<Option<Pid>> {
        let service = self.service;
        if self.who == Who::Watcher {
            return Ok(None);
        }
        if !service.config.watch {
            return self.end_watcher(Some(instance)).map(|()| None);
        }
        let mut replaced = false;
        if let Some(record) = watcher::read(&service.watcher_file()) {
            if self
                .finder
                .watches(&record.identity(), &service.config.file)
            {
                return Ok(None);
            }
            // One started for this config at its old path (the folder moved) would look there
            // at the next crash: a new one takes over.
            if self.finder.is_watcher(&record.identity()) {
                self.end_watcher(Some(instance))?;
                replaced = true;
            }
        }
        if !replaced && self.rerecord_watcher(instance)? {
            return Ok(None);
        }
        let mut answer =
            process::watcher::spawn(&service.config.file, &self.lock, First::Watch, &mut |_| {})?;
        watch::take_answer(&mut answer, &self.finder, &service.config.name)?;
        let Some(watcher) = watcher::read(&service.watcher_file()) else {
            return Ok(None);
        };
        let what = format!(
            "{} ({}) {}: started a watcher ({})",
            service.config.name,
            instance.pid(),
            if replaced {
                "had a watcher for its config's old path"
            } else {
                "ran without a watcher"
            },
            watcher.pid
        );
        self.tell_watcher(watcher.pid, &what);
        Ok(Some(watcher.pid))
    }

    /// A `watcher` event for what was done about the watcher, said on stdout too when a log
    /// is listening (the timer's), not a person.
    fn tell_watcher(&self, watcher: Pid, what: &str) {
        self.record(Kind::Watcher, Outcome::Ok, Some(watcher), Some(what));
        if !self.who.is_person() {
            say(&format!("{}{what}", stamp(self.who)));
        }
    }

    /// A watcher that runs for this config though no record names it (the record was removed
    /// by hand) is recorded again, rather than joined by another (the oldest, if keepup before
    /// this check left more than one: the others leave at the service's next end, when they
    /// find the record naming another). Whether one was found.
    fn rerecord_watcher(&self, instance: &Instance) -> Result<bool> {
        let service = self.service;
        let Some((found, waits)) = self
            .finder
            .running_watchers(&service.config.file)
            .into_iter()
            .next()
        else {
            return Ok(false);
        };
        let record = WatcherRecord::since(
            &found.identity,
            waits.unwrap_or_else(Waits::here),
            found
                .started_at()
                .unwrap_or_else(std::time::SystemTime::now),
        );
        watcher::write(&service.watcher_file(), &record)?;
        let what = format!(
            "{} ({}) had a watcher ({}) no record named: recorded it again",
            service.config.name,
            instance.pid(),
            found.pid()
        );
        self.tell_watcher(found.pid(), &what);
        Ok(true)
    }

    /// Ends the watcher, if one runs, and first what it was left with (other than `keep`);
    /// its record goes with it.
    pub(super) fn end_watcher(&self, keep: Option<&Instance>) -> Result<()> {
        let service = self.service;
        let Some(record) = watcher::read(&service.watcher_file()) else {
            return Ok(());
        };
        let config = &service.config;
        let ended = self.finder.end_watcher(
            &record.identity(),
            keep,
            config.stop_signal,
            config.stop_timeout,
        );
        self.record_orphans(ended, self.recorded_main())?;
        watcher::remove(&service.watcher_file())
    }

    /// In the watcher: ends what the dead instance left to it as subreaper (its workers, in its
    /// process group or not), before a new instance starts. The recorded instance, if it runs,
    /// is spared: a process the service named its main one (`MAINPID=`) is left to the watcher
    /// too once the process keepup started has exited, and it is the service.
    pub(super) fn end_orphans_of_me(&self) -> Result<()> {
        let config = &self.service.config;
        let me = Pid::new(std::process::id().into())
            .ok_or_else(|| Error::Failed("keepup runs as an impossible pid".to_owned()))?;
        // Most deaths leave nothing: the recorded instance is not looked for then.
        if !self.finder.left_any(me.get()) {
            return Ok(());
        }
        let recorded = self
            .service
            .record()
            .and_then(|r| self.finder.by_identity(&r.identity()));
        let ended = self.finder.end_orphans(
            me.get(),
            recorded.as_ref(),
            config.stop_signal,
            config.stop_timeout,
        );
        self.record_orphans(ended, self.recorded_main())
    }

    /// The recorded instance's pid, and whether it led its process group.
    fn recorded_main(&self) -> Option<(Pid, bool)> {
        self.service.record().map(|r| (r.pid, r.leads_group))
    }

    /// Records (and says) the ending of what the watcher was left with; `main`: the service's
    /// main process that left them, and whether it led its group (each is said to be in that
    /// group or to have left it).
    pub(super) fn record_orphans(
        &self,
        ended: Result<Vec<Orphan>>,
        main: Option<(Pid, bool)>,
    ) -> Result<()> {
        let name = &self.service.config.name;
        match ended {
            Ok(orphans) if orphans.is_empty() => Ok(()),
            other => {
                let pid = main
                    .map(|(pid, _)| pid)
                    .or_else(|| other.as_ref().ok()?.first().map(|o| o.pid));
                let done = self.record_result(
                    Kind::Leftovers,
                    pid,
                    other.map(|orphans| orphans_text(name, &orphans, main)),
                )?;
                note(&done);
                Ok(())
            }
        }
    }

    /// Adds an event to the history. A history that cannot be written is worth a word on
    /// stderr, not a failed action.
    pub(super) fn record(
        &self,
        kind: Kind,
        outcome: Outcome,
        pid: Option<Pid>,
        detail: Option<&str>,
    ) {
        self.write_later();
        self.append(self.event(kind, outcome, pid, detail));
    }

    /// As [`Locked::record`], with the time of now, but written only when the next event is,
    /// once the launch that follows has let its process run, or when the lock is let go,
    /// whichever comes first: the watcher's `exit` is not on the revival's way.
    pub(super) fn record_later(
        &self,
        kind: Kind,
        outcome: Outcome,
        pid: Option<Pid>,
        detail: Option<&str>,
    ) {
        let event = self.event(kind, outcome, pid, detail);
        self.later.borrow_mut().push(event);
    }

    /// Writes what [`Locked::record_later`] held back.
    pub(super) fn write_later(&self) {
        let held = std::mem::take(&mut *self.later.borrow_mut());
        for event in held {
            self.append(event);
        }
    }

    fn event(&self, kind: Kind, outcome: Outcome, pid: Option<Pid>, detail: Option<&str>) -> Event {
        let event = Event::now(kind, self.who, outcome, pid);
        match detail {
            Some(detail) => event.detail(detail),
            None => event,
        }
    }

    fn append(&self, event: Event) {
        let mut memory = self.memory.borrow_mut();
        match events::append(&self.service.events_file(), &event) {
            Ok(()) => memory.said = false,
            Err(e) => {
                memory.trouble(&format!("event not recorded: {e}"));
                if memory.unrecorded.len() >= MEMORY_EVENTS {
                    memory.unrecorded.remove(0);
                }
                memory.unrecorded.push(event);
            }
        }
    }

    /// Does `action` to the running instance, if there is one, records `kind` either way, and
    /// says what happened (`done`: "stopped", "killed").
    /// With no instance, what is left of a dead one is ended, by `leftover_signal` first.
    pub(super) fn act_on_running<T: Detail>(
        &self,
        kind: Kind,
        done: &str,
        leftover_signal: Signal,
        action: impl FnOnce(&Instance) -> Result<T>,
    ) -> Result<()> {
        let name = &self.service.config.name;
        let lookup = self.locate()?;
        match lookup.instance {
            None => {
                if let Some(leftovers) = &lookup.leftovers {
                    self.end_leftovers(leftovers, leftover_signal)?;
                }
                self.record(kind, Outcome::NotRunning, None, None);
                println!("{name} is not running");
            }
            Some(instance) => {
                self.record_result(kind, Some(instance.pid()), action(&instance))?;
                println!("{name} ({}) {done}", instance.pid());
            }
        }
        Ok(())
    }

    /// Records the outcome of launching an instance and passes it on.
    fn record_launch(&self, kind: Kind, launched: Result<Instance>) -> Result<Instance> {
        let pid = launched.as_ref().ok().map(Instance::pid);
        self.record_result(kind, pid, launched)
    }

    /// Records the outcome of an action on `pid` and passes its result on.
    pub(super) fn record_result<T: Detail>(
        &self,
        kind: Kind,
        pid: Option<Pid>,
        result: Result<T>,
    ) -> Result<T> {
        match &result {
            Ok(value) => self.record(kind, Outcome::Ok, pid, value.detail()),
            Err(e @ Error::NotLaunched(_)) => {
                self.record(kind, Outcome::NotLaunched, pid, Some(&e.to_string()));
            }
            Err(e) => self.record(kind, Outcome::Failed, pid, Some(&e.to_string())),
        }
        result
    }
}

/// What an action's success adds to its event, if anything.
pub(super) trait Detail {
    fn detail(&self) -> Option<&str> {
        None
    }
}

impl Detail for () {}
impl Detail for Instance {}
impl Detail for String {
    fn detail(&self) -> Option<&str> {
        Some(self)
    }
}
impl Detail for Option<String> {
    fn detail(&self) -> Option<&str> {
        self.as_deref()
    }
}

/// What ending `orphans` was: who left them behind and, when the main process led a group,
/// which were still in it and which had left it.
fn orphans_text(name: &str, orphans: &[Orphan], main: Option<(Pid, bool)>) -> String {
    let list = |orphans: &[&Orphan]| {
        let pids: Vec<String> = orphans.iter().map(|o| o.pid.to_string()).collect();
        pids.join(", ")
    };
    let all: Vec<&Orphan> = orphans.iter().collect();
    let ended = format!(
        "ended {} that {name}{} left behind",
        crate::text::count_text(orphans.len(), "process"),
        main.map_or_else(String::new, |(pid, _)| format!(" ({pid})"))
    );
    let Some((group, true)) = main else {
        return format!("{ended}: {}", list(&all));
    };
    let (inside, outside): (Vec<&Orphan>, Vec<&Orphan>) =
        orphans.iter().partition(|o| o.pgid == group.get());
    match (inside.is_empty(), outside.is_empty()) {
        (false, true) => format!("{ended}, in its process group: {}", list(&inside)),
        (true, false) => format!(
            "{ended}, which had left its process group: {}",
            list(&outside)
        ),
        _ => format!(
            "{ended}: {} in its process group; {} had left it",
            list(&inside),
            list(&outside)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_said_to_be_in_the_group_or_to_have_left_it() {
        let pid = |p| Pid::new(p).unwrap();
        let orphan = |p: i64, pgid| Orphan { pid: pid(p), pgid };
        let main = Some((pid(42), true));
        assert_eq!(
            orphans_text("svc", &[orphan(43, 42), orphan(44, 42)], main),
            "ended 2 processes that svc (42) left behind, in its process group: 43, 44"
        );
        assert_eq!(
            orphans_text("svc", &[orphan(50, 50)], main),
            "ended 1 process that svc (42) left behind, which had left its process group: 50"
        );
        assert_eq!(
            orphans_text("svc", &[orphan(43, 42), orphan(50, 50)], main),
            "ended 2 processes that svc (42) left behind: 43 in its process group; 50 had left it"
        );
        assert_eq!(
            orphans_text("svc", &[orphan(43, 7)], Some((pid(42), false))),
            "ended 1 process that svc (42) left behind: 43"
        );
        assert_eq!(
            orphans_text("svc", &[orphan(43, 7)], None),
            "ended 1 process that svc left behind: 43"
        );
    }
}
