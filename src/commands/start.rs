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
        // Not the instance keepup started or adopted before: found running, it is adopted now.
        let adopted = service
            .record()
            .is_none_or(|r| r.identity() != instance.identity);
        service.remember(&instance, &locked.pid_lock)?;
        let watcher = locked.ensure_watcher(&instance)?;
        // What keepup knows, not what happened: an instance it started whose record was lost
        // (removed with its state files) is adopted too.
        let adoption = format!(
            "adopted {name} ({}), which no record says keepup started",
            instance.pid()
        );
        locked.record(
            Kind::Start,
            Outcome::AlreadyRunning,
            Some(instance.pid()),
            adopted.then_some(adoption.as_str()),
        );
        let how = match (adopted, watcher) {
            (true, _) => ": adopted (no record says keepup started it), and kept up from now on",
            (false, Some(_)) => ", without a watcher: started one",
            (false, None) => "",
        };
        println!("{name} ({}) is running{how}", instance.pid());
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
