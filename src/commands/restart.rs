//! `restart`: the timer's check. Revives the service only while its pid lock exists.
//! `--force`: stop it if it runs, then start it (systemctl restart).

use super::launch::launch;
use super::note;
use super::stop::stop_instance;
use crate::error::Result;
use crate::exit_code;
use crate::pidfile::PidLock;
use crate::service::Service;

pub fn run(service: &Service, force: bool) -> Result<u8> {
    let _lock = service.lock()?;
    let finder = service.finder();
    let pid_lock = service.pid_lock()?;
    let name = &service.config.name;
    if !force && !pid_lock.exists() {
        println!("{name} has no pid lock: not reviving (start keeps it up)");
        return Ok(exit_code::OK);
    }
    let lookup = service.locate(&finder, &pid_lock)?;
    if let Some(stale) = &lookup.stale {
        note(stale);
    }
    let verb = match (lookup.instance, force) {
        (Some(instance), false) => {
            service.remember(&instance, &pid_lock)?;
            println!("{name} ({}) is running", instance.pid());
            return Ok(exit_code::OK);
        }
        (Some(instance), true) => {
            stop_instance(service, &finder, &instance)?;
            note(&format!("{name} ({}) stopped", instance.pid()));
            "restarted"
        }
        (None, true) => "started",
        (None, false) => "revived",
    };
    // After a forced stop the old pid is gone: whatever the lock says, rewrite it.
    let lock = if force { PidLock::Absent } else { pid_lock };
    let instance = launch(service, &finder, &lock)?;
    println!("{name} ({}) {verb}", instance.pid());
    Ok(exit_code::OK)
}
