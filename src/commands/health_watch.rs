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
use crate::process::{self, Identity};
use crate::ready::Ready;
use crate::service::Service;
use crate::signal::Signal;
use crate::watcher;

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
/// out. `None` as soon as `asked` says so (a reload asked of the watcher).
pub(super) fn wait_for_end_or(
    config: Option<&Config>,
    identity: &Identity,
    waits: Waits,
    asked: &mut dyn FnMut() -> bool,
) -> Option<Ended> {
    let Some(config) = config.filter(|c| wakes(c)) else {
        return process::exit::wait_for_end_or(identity, waits, asked);
    };
    let watched = match Watched::begin(identity, waits) {
        Ok(watched) => watched,
        Err(ended) => return Some(ended),
    };
    let mut vigil = Vigil::new(config, identity);
    loop {
        let deadline = [vigil.next_probe, vigil.watchdog_end(), vigil.next_look]
            .into_iter()
            .flatten()
            .min();
        match process::notify::with_fd(|fd| watched.until_asked(deadline, fd, &mut *asked)) {
            Wake::Asked => return None,
            Wake::Ended(ended) => {
                // What it said just before it ended may have come with its end, unread.
                vigil.last_words();
                if vigil.record.stopping {
                    note(&format!(
                        "{}{} ({}) said STOPPING=1, then {ended}",
                        stamp(Who::Watcher),
                        config.name,
                        identity.pid
                    ));
                }
                return Some(ended);
            }
            Wake::Readable => vigil.read_notifications(),
            Wake::Deadline => {
                let now = Instant::now();
                vigil.watchdog(now);
                vigil.memory(now);
                vigil.probe(now);
            }
        }
    }
}

/// What the watcher keeps while it watches one instance.
struct Vigil<'c> {
    config: &'c Config,
    identity: &'c Identity,
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
    fn new(config: &'c Config, identity: &'c Identity) -> Vigil<'c> {
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

    /// What the service sent: kept for `status`; `WATCHDOG=1` re-arms the watchdog, and
    /// `WATCHDOG=trigger` ends it at once.
    /// What the service said before it ended, for the record (a `STOPPING=1` sent a moment
    /// before its exit arrives with it): noted, not acted on.
    fn last_words(&mut self) {
        let mut said = false;
        for datagram in process::notify::receive(self.identity.pid) {
            for notice in notify::parse(&datagram) {
                if !matches!(notice, Notice::Watchdog | Notice::WatchdogTrigger) {
                    self.record.note(notice);
                    said = true;
                }
            }
        }
        if said {
            let _ = health::write(&self.record_file, &self.record);
        }
    }

    fn read_notifications(&mut self) {
        let mut trigger = false;
        for datagram in process::notify::receive(self.identity.pid) {
            for notice in notify::parse(&datagram) {
                match notice {
                    Notice::Watchdog => {
                        self.last_ping = Instant::now();
                        self.record.watchdog_at = Some(now_text());
                    }
                    Notice::WatchdogTrigger => trigger = true,
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
        let Some((used, what)) = used_memory(&self.service, self.identity) else {
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
        if result.is_err() && !process::is_running(self.identity) {
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
        if let Err(e) = end(&self.service, self.identity, kind, why, first) {
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
    if watcher::read(&service.watcher_file()).map(|w| w.identity()) != Some(me) {
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
