//! `restart`: the timer's check. Revives the service only while its pid lock exists, and only
//! as the crash-loop guard allows. `--force`: stop it if it runs, then start it (systemctl
//! restart), which, being a manual start, clears the guard.

use std::time::SystemTime;

use super::stop::stop_instance;
use super::{Locked, note, say, stamp};
use crate::environment;
use crate::error::{Error, Result};
use crate::events::{self, Kind, Outcome, Who};
use crate::exit_code;
use crate::guard::{self, Verdict};
use crate::pid::Pid;
use crate::pidfile::PidLock;
use crate::process::Instance;
use crate::service::Service;
use crate::text::time_text;

/// `timer`: run by the crontab line; says nothing when there is nothing to do, so the timer's
/// log holds only what happened.
pub fn run(service: &Service, force: bool, timer: bool) -> Result<u8> {
    let who = if timer { Who::Timer } else { Who::User };
    if force {
        service.config.launchable_entry()?;
    }
    let locked = Locked::acquire(service, who, force)?;
    let name = &service.config.name;
    if force {
        return force_restart(service, &locked);
    }
    match revive(&locked, None)? {
        Revival::NotKept => {
            if !timer {
                say(&format!(
                    "{name} has no pid lock: not reviving (start keeps it up)"
                ));
            }
            Ok(exit_code::OK)
        }
        Revival::Running(instance) => {
            let started = locked.ensure_watcher(&instance)?;
            if !timer {
                let watcher = started.map_or_else(String::new, |w| {
                    format!(", without a watcher: started one ({w})")
                });
                say(&format!("{name} ({}) is running{watcher}", instance.pid()));
            }
            Ok(exit_code::OK)
        }
        Revival::Revived(_) | Revival::Waiting { tripped: false, .. } => Ok(exit_code::OK),
        Revival::Failed(e) => Err(e),
        Revival::Waiting { tripped: true, .. } => Ok(exit_code::FAILED),
    }
}

/// What the revival check came to.
pub(super) enum Revival {
    /// No pid lock: the service is not kept up.
    NotKept,
    Running(Instance),
    Revived(Instance),
    /// The revival failed (and counts for the guard): why.
    Failed(Error),
    /// Dead, and the guard allows no revival before `until`; `tripped` when it has tripped
    /// (not a backoff).
    Waiting {
        until: SystemTime,
        tripped: bool,
    },
}

/// The revival check, shared by the timer's `restart` and the watcher: revives the service
/// if its pid lock exists, nothing runs, and the crash-loop guard allows it; says what it
/// did (only what it did, when a log listens rather than a person). `ended`: the instance the
/// caller saw end as its own child (the watcher), which spares the search for a running one.
pub(super) fn revive(locked: &Locked<'_>, ended: Option<Pid>) -> Result<Revival> {
    let service = locked.service;
    let name = &service.config.name;
    let quiet = !locked.who.is_person();
    if !locked.pid_lock.exists() {
        return Ok(Revival::NotKept);
    }
    // The watcher's live children are what the instance it watched left to it (its workers,
    // in its group or not): never the service, and ended now, as systemd ends a unit's cgroup.
    if locked.who == Who::Watcher {
        locked.end_orphans_of_me()?;
    }
    let lookup = locked.locate_after_end(ended)?;
    if let Some(instance) = lookup.instance {
        service.remember(&instance, &locked.pid_lock)?;
        return Ok(Revival::Running(instance));
    }
    let stamp = stamp(locked.who);
    let history = match events::read_since_start(&service.events_file()) {
        Ok(history) => history,
        // Fail safe, not open: judged on what memory holds, never as if nothing had happened.
        Err(e) => {
            locked.memory.borrow_mut().trouble(&format!("{stamp}{e}"));
            Vec::new()
        }
    };
    let history = locked.memory.borrow().complete(history);
    let limit = &service.config.restart_limit;
    match guard::judge(&history, SystemTime::now(), limit) {
        Verdict::Revive => {}
        // A person who asks is not a loop: only a tripped guard holds their revival back.
        Verdict::Backoff { .. } if !quiet => {}
        Verdict::Backoff { until } => {
            say(&format!(
                "{stamp}{name} is dead: backing off, next revival at {}",
                time_text(until)
            ));
            return Ok(Revival::Waiting {
                until,
                tripped: false,
            });
        }
        Verdict::Tripped {
            until,
            new,
            revivals,
        } => {
            let why = format!(
                "crash-loop guard: {name} was revived {} within {}; next try at {} \
                 (start clears the guard)",
                crate::text::count_text(revivals, "time"),
                crate::text::duration_text(limit.interval),
                time_text(until)
            );
            if new {
                locked.record(Kind::GuardTrip, Outcome::Ok, None, Some(&why));
            }
            // Every minute would repeat it: the timer says it once, when the guard trips.
            if new || !quiet {
                note(&format!("{stamp}{why}"));
            }
            return Ok(Revival::Waiting {
                until,
                tripped: true,
            });
        }
    }
    service.config.launchable_entry()?;
    // An env_file that does not read is the config's fault, not a crash of the service: said,
    // and tried again later (the watcher backs off), never counted by the guard.
    if let Some(file) = &service.config.env_file {
        environment::env_file(file)?;
    }
    if let Some(leftovers) = &lookup.leftovers {
        locked.end_leftovers(leftovers, service.config.stop_signal)?;
    }
    match locked.launch(&locked.pid_lock, Kind::Revive) {
        Ok(instance) => {
            say(&format!("{stamp}{name} ({}) revived", instance.pid()));
            Ok(Revival::Revived(instance))
        }
        // Not the service's failure: not counted, tried again soon (the watcher) or at the
        // timer's next check.
        Err(Error::NotLaunched(why)) if quiet => Err(Error::NotLaunched(format!("{stamp}{why}"))),
        Err(e @ Error::NotLaunched(_)) => Err(e),
        Err(Error::Failed(why)) if quiet => {
            Ok(Revival::Failed(Error::Failed(format!("{stamp}{why}"))))
        }
        Err(e) => Ok(Revival::Failed(e)),
    }
}

fn force_restart(service: &Service, locked: &Locked<'_>) -> Result<u8> {
    let name = &service.config.name;
    // Stopped and not yet started again would be half a restart: Ctrl-C (or a TERM) waits until
    // the new launch is the launcher's.
    crate::process::defer_interrupts();
    let lookup = locked.locate()?;
    if let Some(leftovers) = &lookup.leftovers {
        locked.end_leftovers(leftovers, service.config.stop_signal)?;
    }
    let verb = match lookup.instance {
        Some(instance) => {
            let stopped = stop_instance(locked, &instance);
            locked.record_result(Kind::Stop, Some(instance.pid()), stopped)?;
            note(&format!("{name} ({}) stopped", instance.pid()));
            "restarted"
        }
        None => "started",
    };
    // A manual start: every later launch starts from its environment.
    environment::record(&service.recorded_env())?;
    // The old pid is gone: whatever the lock says, rewrite it.
    let instance = locked.launch(&PidLock::Absent, Kind::Start)?;
    say(&format!("{name} ({}) {verb}", instance.pid()));
    Ok(exit_code::OK)
}
