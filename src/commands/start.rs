//! `start`: make sure the service runs and is kept up.

use super::Locked;
use super::launch::launch;
use crate::error::Result;
use crate::exit_code;
use crate::pidfile;
use crate::service::Service;

pub fn run(service: &Service) -> Result<u8> {
    let locked = Locked::acquire(service)?;
    let name = &service.config.name;
    if let Some(instance) = locked.locate()? {
        service.remember(&instance, &locked.pid_lock)?;
        println!("{name} ({}) is running", instance.pid());
        return Ok(exit_code::OK);
    }
    match launch(service, &locked.finder, &locked.pid_lock) {
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
