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
use crate::health::{self, HealthRecord, Tally, Verdict};
use crate::notify::{self, Notice};
use crate::process::exit::{Ended, Waits, Wake, Watched};
use crate::process::{self, Identity};
use crate::ready::Ready;
use crate::service::Service;
use crate::signal::Signal;
use crate::watcher;

/// The config the waiting state probes with: the text it acted with (`last_good`, else the
/// file as it is now), parsed only if it may have a health check or a notify socket at all.
pub(super) fn probing_config(file: &Path, last_good: Option<String>) -> Option<Config> {
    let text = last_good.or_else(|| std::fs::read_to_string(file).ok())?;
    if !health::mentioned(&text) {
        return None;
    }
    config::parse(file, &text).ok().filter(wakes)
}

/// Whether the watcher has anything to do while `config`'s service runs.
fn wakes(config: &Config) -> bool {
    config.health.is_some() || config.ready == Some(Ready::Notify)
}

/// Blocks until the instance `identity` has ended, and says how; with a health check in
/// `config`, probes it meanwhile, and with `ready = "notify"` reads what it sends; ends it when
/// it is unhealthy or its watchdog runs out.
pub(super) fn wait_for_end(config: Option<&Config>, identity: &Identity, waits: Waits) -> Ended {
    let Some(config) = config.filter(|c| wakes(c)) else {
        return process::exit::wait_for_end(identity, waits);
    };
    let watched = match Watched::begin(identity, waits) {
        Ok(watched) => watched,
        Err(ended) => return ended,
    };
    let service = Service::open(config.clone());
    let record_file = service.state_file(health::SUFFIX);
    // What the launch wrote (its STATUS=) is kept.
    let mut record = health::read(&record_file)
        .filter(|r| r.pid == identity.pid)
        .unwrap_or_else(|| HealthRecord::new(identity.pid));
    let health = config.health.as_ref();
    let mut tally = Tally::default();
    let mut next_probe = health.map(|h| Instant::now() + h.interval);
    // Armed once the start is done (READY=1), as systemd arms it.
    let mut last_ping = Instant::now();
    loop {
        let watchdog_end = config.watchdog.map(|w| last_ping + w);
        let deadline = [next_probe, watchdog_end].into_iter().flatten().min();
        let wake = process::notify::with_fd(|fd| watched.until_or(deadline, fd));
        match wake {
            Wake::Ended(ended) => {
                if record.stopping {
                    note(&format!(
                        "{}{} ({}) said STOPPING=1, then {ended}",
                        stamp(Who::Watcher),
                        config.name,
                        identity.pid
                    ));
                }
                return ended;
            }
            Wake::Readable => {
                let mut trigger = false;
                for datagram in process::notify::receive(identity.pid) {
                    for notice in notify::parse(&datagram) {
                        match notice {
                            Notice::Watchdog => {
                                last_ping = Instant::now();
                                record.watchdog_at = Some(now_text());
                            }
                            Notice::WatchdogTrigger => trigger = true,
                            notice => record.note(notice),
                        }
                    }
                }
                let _ = health::write(&record_file, &record);
                if trigger && config.watchdog.is_some() {
                    let why = "it sent WATCHDOG=trigger".to_owned();
                    end_or_say(&service, identity, &why, Some(Signal::ABRT));
                    last_ping = Instant::now();
                }
            }
            Wake::Deadline => {
                let now = Instant::now();
                if let (Some(end), Some(watchdog)) = (watchdog_end, config.watchdog)
                    && now >= end
                {
                    let why = format!(
                        "no WATCHDOG=1 for {} (watchdog = \"{}\")",
                        crate::text::duration_text(watchdog),
                        crate::text::duration_text(watchdog)
                    );
                    end_or_say(&service, identity, &why, Some(Signal::ABRT));
                    // Ended, the wait says so next; not, it is given a whole watchdog again.
                    last_ping = Instant::now();
                }
                if let Some(health) = health
                    && next_probe.is_some_and(|at| now >= at)
                {
                    let began = Instant::now();
                    let result = health.check.probe(config.dir(), health.interval);
                    next_probe = Some(health::next_probe(began, Instant::now(), health.interval));
                    // A probe that failed because the instance has just ended says nothing of
                    // its health: the wait says how it ended.
                    if result.is_err() && !process::is_running(identity) {
                        continue;
                    }
                    let verdict = tally.count(result, health.failures);
                    record.probed(&tally);
                    let _ = health::write(&record_file, &record);
                    if let Verdict::Unhealthy(answer) = verdict {
                        let why = format!(
                            "it failed {} in a row ({}), the last: {answer}",
                            crate::text::count_text(health.failures as usize, "health check"),
                            health.check
                        );
                        end_or_say(&service, identity, &why, None);
                        // Ended, its end is the wait's next answer; not, judged afresh.
                        tally = Tally::default();
                    }
                }
            }
        }
    }
}

fn now_text() -> String {
    crate::text::time_text(std::time::SystemTime::now())
}

/// Ends the instance for `why`; a failure to is said in the timer's log.
fn end_or_say(service: &Service, identity: &Identity, why: &str, first: Option<Signal>) {
    if let Err(e) = end_unhealthy(service, identity, why, first) {
        note(&format!("{}{e}", stamp(Who::Watcher)));
    }
}

/// Ends the unhealthy instance `identity` as `stop` does (after `first`, if given: SIGABRT
/// for a watchdog, as systemd sends), under the operation lock, if this watcher is still the
/// service's and the instance still runs. The `unhealthy` event says `why`.
fn end_unhealthy(
    service: &Service,
    identity: &Identity,
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
    note(&format!("{}{why}: ending it{how}", stamp(Who::Watcher)));
    locked.record(
        Kind::Unhealthy,
        Outcome::Failed,
        Some(identity.pid),
        Some(&why),
    );
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
