//! `restart`: the timer's check. Revives the service only while its pid lock exists.
//! `--force`: stop it if it runs, then start it (systemctl restart).

use super::launch::launch;
use super::stop::stop_instance;
use super::{Locked, note};
use crate::error::Result;
use crate::exit_code;
use crate::pidfile::PidLock;
use crate::service::Service;

/// `timer`: run by the crontab line; says nothing when there is nothing to do, so the timer's
/// log holds only what happened.
pub fn run(service: &Service, force: bool, timer: bool) -> Result<u8> {
    let locked = Locked::acquire(service)?;
    let name = &service.config.name;
    if !force && !locked.pid_lock.exists() {
        if !timer {
            println!("{name} has no pid lock: not reviving (start keeps it up)");
        }
        return Ok(exit_code::OK);
    }
    let verb = match (locked.locate()?, force) {
        (Some(instance), false) => {
            service.remember(&instance, &locked.pid_lock)?;
            if !timer {
                println!("{name} ({}) is running", instance.pid());
            }
            return Ok(exit_code::OK);
        }
        (Some(instance), true) => {
            stop_instance(service, &locked.finder, &instance)?;
            note(&format!("{name} ({}) stopped", instance.pid()));
            "restarted"
        }
        (None, true) => "started",
        (None, false) => "revived",
    };
    // After a forced stop the old pid is gone: whatever the lock says, rewrite it.
    let lock = if force {
        PidLock::Absent
    } else {
        locked.pid_lock.clone()
    };
    let instance = launch(service, &locked.finder, &lock)?;
    let when = if timer {
        format!(
            "{} ",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        )
    } else {
        String::new()
    };
    println!("{when}{name} ({}) {verb}", instance.pid());
    Ok(exit_code::OK)
}
