//! `start`: make sure the service runs and is kept up.

use super::launch::launch;
use super::note;
use crate::error::Result;
use crate::exit_code;
use crate::pidfile;
use crate::service::Service;

pub fn run(service: &Service) -> Result<u8> {
    let _lock = service.lock()?;
    let finder = service.finder();
    let pid_lock = service.pid_lock()?;
    let lookup = service.locate(&finder, &pid_lock)?;
    if let Some(stale) = &lookup.stale {
        note(stale);
    }
    let name = &service.config.name;
    if let Some(instance) = lookup.instance {
        service.remember(&instance, &pid_lock)?;
        println!("{name} ({}) is running", instance.pid());
        return Ok(exit_code::OK);
    }
    match launch(service, &finder, &pid_lock) {
        Ok(instance) => {
            println!("{name} ({}) started", instance.pid());
            Ok(exit_code::OK)
        }
        Err(e) => {
            // A start that failed leaves nothing asking the timer to keep retrying it.
            pidfile::remove(&service.pid_file)?;
            Err(e)
        }
    }
}
