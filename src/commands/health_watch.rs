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
use crate::health::{self, Health, HealthRecord, Tally, Verdict};
use crate::process::exit::{Ended, Waits, Watched};
use crate::process::{self, Identity};
use crate::service::Service;
use crate::watcher;

/// The config the waiting state probes with: the text it acted with (`last_good`, else the
/// file as it is now), parsed only if it may have a health check at all.
pub(super) fn probing_config(file: &Path, last_good: Option<String>) -> Option<Config> {
    let text = last_good.or_else(|| std::fs::read_to_string(file).ok())?;
    if !health::mentioned(&text) {
        return None;
    }
    config::parse(file, &text)
        .ok()
        .filter(|c| c.health.is_some())
}

/// Blocks until the instance `identity` has ended, and says how; with a health check in
/// `config`, probes it meanwhile and ends it when it is unhealthy.
pub(super) fn wait_for_end(config: Option<&Config>, identity: &Identity, waits: Waits) -> Ended {
    let Some((config, health)) = config.and_then(|c| Some((c, c.health.as_ref()?))) else {
        return process::exit::wait_for_end(identity, waits);
    };
    let watched = match Watched::begin(identity, waits) {
        Ok(watched) => watched,
        Err(ended) => return ended,
    };
    let service = Service::open(config.clone());
    let record_file = service.state_file(health::SUFFIX);
    let mut tally = Tally::default();
    let mut next = Instant::now() + health.interval;
    loop {
        if let Some(ended) = watched.until(Some(next)) {
            return ended;
        }
        let began = Instant::now();
        let result = health.check.probe(config.dir(), health.interval);
        next = health::next_probe(began, Instant::now(), health.interval);
        // A probe that failed because the instance has just ended says nothing of its health:
        // the wait says how it ended.
        if result.is_err() && !process::is_running(identity) {
            continue;
        }
        let verdict = tally.count(result, health.failures);
        let _ = health::write(&record_file, &HealthRecord::new(identity.pid, &tally));
        if let Verdict::Unhealthy(answer) = verdict {
            if let Err(e) = end_unhealthy(&service, identity, health, &answer) {
                note(&format!("{}{e}", stamp(Who::Watcher)));
            }
            // Ended, its end is the wait's next answer; not, it is judged afresh.
            tally = Tally::default();
        }
    }
}

/// Ends the unhealthy instance `identity` as `stop` does, under the operation lock, if this
/// watcher is still the service's and the instance still runs.
fn end_unhealthy(
    service: &Service,
    identity: &Identity,
    health: &Health,
    answer: &str,
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
    let why = format!(
        "{} ({}) failed {} in a row ({}), the last: {answer}",
        config.name,
        identity.pid,
        crate::text::count_text(health.failures as usize, "health check"),
        health.check
    );
    note(&format!("{}{why}: ending it", stamp(Who::Watcher)));
    locked.record(
        Kind::Unhealthy,
        Outcome::Failed,
        Some(identity.pid),
        Some(&why),
    );
    stop::stop_instance(&locked, &instance).map(drop)
}
