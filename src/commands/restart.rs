//! `restart`: the timer's check. Revives the service only while its pid lock exists, and only
//! as the crash-loop guard allows. `--force`: stop it if it runs, then start it (systemctl
//! restart), which, being a manual start, clears the guard.

use std::time::SystemTime;

use super::launch::launch;
use super::stop::stop_instance;
use super::{Locked, note};
use crate::error::{Error, Result};
use crate::events::{self, Kind, Outcome, Who};
use crate::exit_code;
use crate::guard::{self, Verdict};
use crate::output::time_text;
use crate::pidfile::PidLock;
use crate::service::Service;

/// `timer`: run by the crontab line; says nothing when there is nothing to do, so the timer's
/// log holds only what happened.
pub fn run(service: &Service, force: bool, timer: bool) -> Result<u8> {
    let who = if timer { Who::Timer } else { Who::User };
    if force {
        service.config.launchable_entry()?;
    }
    let locked = Locked::acquire(service, who)?;
    let name = &service.config.name;
    if force {
        return force_restart(service, &locked);
    }
    if !locked.pid_lock.exists() {
        if !timer {
            println!("{name} has no pid lock: not reviving (start keeps it up)");
        }
        return Ok(exit_code::OK);
    }
    let lookup = locked.locate()?;
    if let Some(instance) = lookup.instance {
        service.remember(&instance, &locked.pid_lock)?;
        if !timer {
            println!("{name} ({}) is running", instance.pid());
        }
        return Ok(exit_code::OK);
    }
    let stamp = if timer {
        format!("{} ", time_text(SystemTime::now()))
    } else {
        String::new()
    };
    let history = events::read(&service.events_file)?;
    let limit = &service.config.restart_limit;
    match guard::judge(&history, SystemTime::now(), limit) {
        Verdict::Revive => {}
        Verdict::Backoff { until } => {
            println!(
                "{stamp}{name} is dead: backing off, next revival at {}",
                time_text(until)
            );
            return Ok(exit_code::OK);
        }
        Verdict::Tripped {
            until,
            new,
            revivals,
        } => {
            let why = format!(
                "crash-loop guard: {name} was revived {} within {}; next try at {} \
                 (start clears the guard)",
                crate::output::count_text(revivals, "time"),
                crate::output::duration_text(limit.interval),
                time_text(until)
            );
            if new {
                locked.record(Kind::GuardTrip, Outcome::Ok, None, Some(&why));
            }
            // Every minute would repeat it: the timer says it once, when the guard trips.
            if new || !timer {
                note(&format!("{stamp}{why}"));
            }
            return Ok(exit_code::FAILED);
        }
    }
    service.config.launchable_entry()?;
    if let Some(leftovers) = &lookup.leftovers {
        locked.end_leftovers(leftovers, service.config.stop_signal)?;
    }
    let launched = launch(service, &locked.finder, &locked.pid_lock);
    let instance = locked
        .record_launch(Kind::Revive, launched)
        .map_err(|e| match e {
            Error::Failed(why) if timer => Error::Failed(format!("{stamp}{why}")),
            other => other,
        })?;
    println!("{stamp}{name} ({}) revived", instance.pid());
    Ok(exit_code::OK)
}

fn force_restart(service: &Service, locked: &Locked<'_>) -> Result<u8> {
    let name = &service.config.name;
    let lookup = locked.locate()?;
    if let Some(leftovers) = &lookup.leftovers {
        locked.end_leftovers(leftovers, service.config.stop_signal)?;
    }
    let verb = match lookup.instance {
        Some(instance) => {
            let stopped = stop_instance(service, &locked.finder, &instance);
            locked.record_result(Kind::Stop, Some(instance.pid()), stopped)?;
            note(&format!("{name} ({}) stopped", instance.pid()));
            "restarted"
        }
        None => "started",
    };
    // The old pid is gone: whatever the lock says, rewrite it.
    let launched = launch(service, &locked.finder, &PidLock::Absent);
    let instance = locked.record_launch(Kind::Start, launched)?;
    println!("{name} ({}) {verb}", instance.pid());
    Ok(exit_code::OK)
}
