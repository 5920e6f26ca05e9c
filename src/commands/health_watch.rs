//! The watcher's wait for a service with a health check: between probes it sleeps as it does
//! without one (pidfd + poll), only with a deadline, the next probe. A probe runs in the
//! watcher itself, given at most one `health_interval`, so probes never overlap and a hung one
//! fails at the interval. After `health_failures` failures in a row the watcher ends the
//! instance, under the operation lock and as `stop` does (`unhealthy` event), and its wait sees
//! the end: the revival that follows is an ordinary one, judged by the crash-loop guard.
//!
//! Probes run only here, in the wait for a running instance: never during a start (the
//! revival's `ready` check decides that), nor while the guard holds a revival back.

use std::path::Path;
use std::time::Instant;

use super::{Locked, note, stamp, stop};
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::events::{Kind, Outcome, Who};
use crate::health::{self, Above, HealthRecord, Tally, Verdict};
use crate::notify::{self, Notice};
use crate::process::exit::{Ended, Waits, Wake, Watched};
use crate::process::{self, Identity, Instance};
use crate::ready::Ready;
use crate::service::Service;
use crate::signal::Signal;

/// Set in the watcher's environment as it becomes the waiting state, when that state has
/// something to do besides waiting (probes, memory looks, notifications): only then does it
/// read its config, so that one without keeps it as lean as it was.
const VIGIL: &str = "KEEPUP_VIGIL";

/// Before the watcher runs keepup afresh into its waiting state for `config`'s service.
pub(super) fn before_waiting(config: &Config) {
    // SAFETY: the watcher is single-threaded, and about to exec.
    unsafe {
        if wakes(config) {
            std::env::set_var(VIGIL, "1");
        } else {
            std::env::remove_var(VIGIL);
        }
    }
}

/// The config the waiting state keeps watch with: the text it acted with (`last_good`, else
/// the file as it is now), read and parsed only if [`before_waiting`] said there is a need.
pub(super) fn probing_config(
    file: &Path,
    last_good: impl FnOnce() -> Option<String>,
) -> Option<Config> {
    std::env::var_os(VIGIL)?;
    // SAFETY: the waiting state is single-threaded; nothing it starts may inherit the mark.
    unsafe { std::env::remove_var(VIGIL) };
    let text = last_good().or_else(|| std::fs::read_to_string(file).ok())?;
    config::parse(file, &text).ok().filter(wakes)
}

/// Whether the watcher has anything to do while `config`'s service runs.
fn wakes(config: &Config) -> bool {
    config.health.is_some() || config.memory.is_some() || config.ready == Some(Ready::Notify)
}

/// Blocks until the instance `identity` has ended, and says how; with a health check in
/// `config`, probes it meanwhile, with `max_memory` looks at its memory, and with `ready =
/// "notify"` reads what it sends; ends it when it is unhealthy, too big, or its watchdog runs
/// out. A `MAINPID=` it sends that keepup takes makes `identity` the process it named, and the
/// wait goes on for that one. `None` as soon as `asked` says so (a reload asked of the
/// watcher).
pub(super) fn wait_for_end_or(
    config: Option<&Config>,
    identity: &mut Identity,
    waits: Waits,
    asked: &mut dyn FnMut() -> bool,
) -> Option<Ended> {
    let Some(config) = config.filter(|c| wakes(c)) else {
        return process::exit::wait_for_end_or(identity, waits, asked);
    };
    let mut watched = match Watched::begin(identity, waits) {
        Ok(watched) => watched,
        Err(ended) => return Some(ended),
    };
    let mut vigil = Vigil::new(config, identity.clone());
    loop {
        let deadline = [vigil.next_probe, vigil.watchdog_end(), vigil.next_look]
            .into_iter()
            .flatten()
            .min();
        let successor =
            match process::notify::with_fd(|fd| watched.until_asked(deadline, fd, &mut *asked)) {
                Wake::Asked => return None,
                Wake::Ended(ended) => {
                    // What it said just before it ended may have come with its end, unread: a
                    // successor it named (a daemon's first process, leaving) is the service now.
                    if let Some(successor) = vigil.last_words() {
                        successor
                    } else {
                        if vigil.record.stopping {
                            note(&format!(
                                "{}{} ({}) said STOPPING=1, then {ended}",
                                stamp(Who::Watcher),
                                config.name,
                                vigil.identity.pid
                            ));
                        }
                        return Some(ended);
                    }
                }
                Wake::Readable => match vigil.read_notifications() {
                    Some(successor) => successor,
                    None => continue,
                },
                Wake::Deadline => {
                    let now = Instant::now();
                    vigil.watchdog(now);
                    vigil.memory(now);
                    vigil.probe(now);
                    continue;
                }
            };
        *identity = successor;
        // One wait at a time: the old one's hold on SIGCHLD goes before the new one's.
        drop(watched);
        watched = match Watched::begin(identity, waits) {
            Ok(watched) => watched,
            Err(ended) => return Some(ended),
        };
    }
}

/// What the watcher keeps while it watches one instance.
struct Vigil<'c> {
    config: &'c Config,
    /// The instance: the one the wait began with, or the process it named since (`MAINPID=`).
    identity: Identity,
    service: Service,
    record_file: std::path::PathBuf,
    record: HealthRecord,
    tally: Tally,
    next_probe: Option<Instant>,
    next_look: Option<Instant>,
    above: Above,
    last_ping: Instant,
}

impl<'c> Vigil<'c> {
    fn new(config: &'c Config, identity: Identity) -> Vigil<'c> {
        let service = Service::open(config.clone());
        let record_file = service.state_file(health::SUFFIX);
        // What the launch wrote (its STATUS=) is kept.
        let record = health::read(&record_file)
            .filter(|r| r.pid == identity.pid)
            .unwrap_or_else(|| HealthRecord::new(identity.pid));
        let now = Instant::now();
        Vigil {
            config,
            identity,
            service,
            record_file,
            record,
            tally: Tally::default(),
            next_probe: config.health.as_ref().map(|h| now + h.interval),
            next_look: config.memory.map(|m| now + m.interval),
            above: Above::default(),
            // Armed once the start is done (READY=1), as systemd arms it.
            last_ping: now,
        }
    }

    fn watchdog_end(&self) -> Option<Instant> {
        self.config.watchdog.map(|w| self.last_ping + w)
    }

    /// What the service said before it ended, for the record (a `STOPPING=1` sent a moment
    /// before its exit arrives with it): noted, not acted on; but a successor it named
    /// (`MAINPID=`) and keepup took, which runs, is returned: the service did not end.
    fn last_words(&mut self) -> Option<Identity> {
        let mut said = false;
        let mut successor = None;
        for datagram in process::notify::receive(&self.identity) {
            for notice in notify::parse(&datagram) {
                match notice {
                    Notice::Watchdog | Notice::WatchdogTrigger => {}
                    Notice::MainPid(named) => successor = self.named(named).or(successor),
                    notice => {
                        self.record.note(notice);
                        said = true;
                    }
                }
            }
        }
        if said || successor.is_some() {
            let _ = health::write(&self.record_file, &self.record);
        }
        successor.filter(process::is_running)
    }

    /// What the service sent: kept for `status`; `WATCHDOG=1` re-arms the watchdog, and
    /// `WATCHDOG=trigger` ends it at once. A successor it named (`MAINPID=`) and keepup took
    /// is returned, for the wait to watch from now on.
    fn read_notifications(&mut self) -> Option<Identity> {
        let mut trigger = false;
        let mut successor = None;
        for datagram in process::notify::receive(&self.identity) {
            for notice in notify::parse(&datagram) {
                match notice {
                    Notice::Watchdog => {
                        self.last_ping = Instant::now();
                        self.record.watchdog_at = Some(now_text());
                    }
                    Notice::WatchdogTrigger => trigger = true,
                    Notice::MainPid(named) => successor = self.named(named).or(successor),
                    notice => self.record.note(notice),
                }
            }
        }
        let _ = health::write(&self.record_file, &self.record);
        if trigger && self.config.watchdog.is_some() {
            self.end(
                Kind::Unhealthy,
                "it sent WATCHDOG=trigger",
                Some(Signal::ABRT),
            );
            self.last_ping = Instant::now();
        }
        successor
    }

    /// `MAINPID=named`: taken (see [`hand_over`]), the process it names is the instance from
    /// now on, for every later look and end, and is returned; refused, said in the timer's log.
    fn named(&mut self, named: i32) -> Option<Identity> {
        match hand_over(&self.service, &self.identity, named) {
            Ok(Some(successor)) => {
                self.identity = successor.identity;
                self.record.moved_to(self.identity.pid);
                Some(self.identity.clone())
            }
            Ok(None) => None,
            Err(e) => {
                note(&format!("{}{e}", stamp(Who::Watcher)));
                None
            }
        }
    }

    fn watchdog(&mut self, now: Instant) {
        let (Some(end), Some(watchdog)) = (self.watchdog_end(), self.config.watchdog) else {
            return;
        };
        if now < end {
            return;
        }
        let why = format!(
            "no WATCHDOG=1 for {} (watchdog = \"{}\")",
            crate::text::duration_text(watchdog),
            crate::text::duration_text(watchdog)
        );
        self.end(Kind::Unhealthy, &why, Some(Signal::ABRT));
        // Ended, the wait says so next; not, it is given a whole watchdog again.
        self.last_ping = Instant::now();
    }

    fn memory(&mut self, now: Instant) {
        let Some(limit) = self.config.memory else {
            return;
        };
        if self.next_look.is_none_or(|at| now < at) {
            return;
        }
        self.next_look = Some(now + limit.interval);
        let Some((used, what)) = used_memory(&self.service, &self.identity) else {
            return;
        };
        if self.above.count(used, limit.max) {
            let why = format!(
                "its processes used {} {what}, above max_memory ({}) at {} checks in a row",
                crate::text::format_bytes(used),
                crate::text::format_bytes(limit.max),
                health::MEMORY_CHECKS
            );
            self.end(Kind::Memory, &why, None);
            self.above = Above::default();
        }
    }

    fn probe(&mut self, now: Instant) {
        let Some(health) = &self.config.health else {
            return;
        };
        if self.next_probe.is_none_or(|at| now < at) {
            return;
        }
        let began = Instant::now();
        let result = health.check.probe(self.config.dir(), health.interval);
        self.next_probe = Some(health::next_probe(began, Instant::now(), health.interval));
        // A probe that failed because the instance has just ended says nothing of its
        // health: the wait says how it ended.
        if result.is_err() && !process::is_running(&self.identity) {
            return;
        }
        let verdict = self.tally.count(result, health.failures);
        self.record.probed(&self.tally);
        let _ = health::write(&self.record_file, &self.record);
        if let Verdict::Unhealthy(answer) = verdict {
            let why = format!(
                "it failed {} in a row ({}), the last: {answer}",
                crate::text::count_text(health.failures as usize, "health check"),
                health.check
            );
            self.end(Kind::Unhealthy, &why, None);
            // Ended, its end is the wait's next answer; not, judged afresh.
            self.tally = Tally::default();
        }
    }

    /// Ends the instance for `why`; a failure to is said in the timer's log.
    fn end(&self, kind: Kind, why: &str, first: Option<Signal>) {
        if let Err(e) = end(&self.service, &self.identity, kind, why, first) {
            note(&format!("{}{e}", stamp(Who::Watcher)));
        }
    }
}

fn now_text() -> String {
    crate::text::time_text(std::time::SystemTime::now())
}

/// What the instance's processes use, as `status` counts it (every descendant, and what this
/// watcher was left with): PSS where the system tells it, else RSS; and which it is.
fn used_memory(service: &Service, identity: &Identity) -> Option<(u64, &'static str)> {
    let finder = service.finder();
    let instance = finder.by_identity(identity)?;
    let usage = instance.usage(process::own_identity().as_ref());
    match (usage.pss_bytes, usage.rss_bytes) {
        (Some(pss), _) => Some((pss, "PSS")),
        (None, Some(rss)) => Some((rss, "RSS")),
        (None, None) => None,
    }
}

/// The service whose instance is `identity` named `named` its main process (`MAINPID=`):
/// under the operation lock, if this watcher is still the service's and `named` is a process
/// of the service (see `Finder::named_main`), it becomes the recorded instance, the pid lock
/// names it, and the history says so (`pid_change`). `None` when there is nothing to move
/// (it named itself); an error says why it was refused.
fn hand_over(service: &Service, identity: &Identity, named: i32) -> Result<Option<Instance>> {
    let me = process::own_identity()
        .ok_or_else(|| Error::Failed("the watcher cannot tell its own identity".to_owned()))?;
    let locked = Locked::acquire(service, Who::Watcher, false)?;
    if !service.watched_by(Some(&me)) {
        return Ok(None);
    }
    let name = &service.config.name;
    let old = identity.pid;
    let successor = locked
        .finder
        .named_main(identity, named)
        .map_err(|why| Error::Failed(format!("{name} ({old}): ignored MAINPID={named}: {why}")))?;
    if successor.pid() == old {
        return Ok(None);
    }
    service.remember(&successor, &locked.pid_lock)?;
    let what = format!("{name} ({old}) named {named} its main process (MAINPID={named})");
    note(&format!("{}{what}", stamp(Who::Watcher)));
    locked.record(
        Kind::PidChange,
        Outcome::Ok,
        Some(successor.pid()),
        Some(&what),
    );
    Ok(Some(successor))
}

/// Ends the instance `identity` as `stop` does (after `first`, if given: SIGABRT for a
/// watchdog, as systemd sends), under the operation lock, if this watcher is still the
/// service's and the instance still runs. The event (`kind`) says `why`.
fn end(
    service: &Service,
    identity: &Identity,
    kind: Kind,
    why: &str,
    first: Option<Signal>,
) -> Result<()> {
    let me = process::own_identity()
        .ok_or_else(|| Error::Failed("the watcher cannot tell its own identity".to_owned()))?;
    let locked = Locked::acquire(service, Who::Watcher, false)?;
    if !service.watched_by(Some(&me)) {
        return Ok(());
    }
    let Some(instance) = locked.finder.by_identity(identity) else {
        return Ok(());
    };
    let config = &service.config;
    let why = format!("{} ({}): {why}", config.name, identity.pid);
    let how = first.map_or_else(String::new, |s| format!(" ({s} first)"));
    let ending = if kind == Kind::Memory {
        "restarting it"
    } else {
        "ending it"
    };
    note(&format!("{}{why}: {ending}{how}", stamp(Who::Watcher)));
    locked.record(kind, Outcome::Failed, Some(identity.pid), Some(&why));
    if let Some(signal) = first {
        locked.finder.signal(&instance, signal)?;
        // A core dump may take a moment; whatever is left then is stopped as usual.
        if locked.finder.wait_gone(&instance, ABORT_GRACE) {
            return Ok(());
        }
    }
    stop::stop_instance(&locked, &instance).map(drop)
}

/// How long a service given SIGABRT may take to end by itself before it is stopped.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
