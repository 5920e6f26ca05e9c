//! `start`: make sure the service runs and is kept up. A manual start clears the crash-loop
//! guard (its event is where the guard starts counting again).

use super::Locked;
use crate::environment;
use crate::error::Result;
use crate::events::{Kind, Outcome, Who};
use crate::exit_code;
use crate::pidfile;
use crate::service::Service;

pub fn run(service: &Service) -> Result<u8> {
    service.config.launchable_entry()?;
    let locked = Locked::acquire(service, Who::User, true)?;
    let name = &service.config.name;
    let lookup = locked.locate()?;
    // Every later launch, by whoever, starts from this start's environment.
    environment::record(&service.recorded_env())?;
    if let Some(instance) = lookup.instance {
        service.remember(&instance, &locked.pid_lock)?;
        locked.ensure_watcher(&instance)?;
        locked.record(
            Kind::Start,
            Outcome::AlreadyRunning,
            Some(instance.pid()),
            None,
        );
        println!("{name} ({}) is running", instance.pid());
        return Ok(exit_code::OK);
    }
    if let Some(leftovers) = &lookup.leftovers {
        locked.end_leftovers(leftovers, service.config.stop_signal)?;
    }
    match locked.launch(&locked.pid_lock, Kind::Start) {
        Ok(instance) => {
            println!("{name} ({}) started", instance.pid());
            Ok(exit_code::OK)
        }
        Err(e) => {
            // A start that failed leaves nothing asking the timer to keep retrying it (the
            // launcher has seen to it already, unless it never ran).
            pidfile::remove(&service.pid_file())?;
            service.unkeep()?;
            Err(e)
        }
    }
}
