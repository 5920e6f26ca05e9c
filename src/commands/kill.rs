//! `kill`: SIGKILL the service's group at once, keeping the pid lock so it is revived.

use super::note;
use super::stop::kill_instance;
use crate::error::Result;
use crate::exit_code;
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
    match lookup.instance {
        None => println!("{name} is not running"),
        Some(instance) => {
            kill_instance(service, &finder, &instance)?;
            println!("{name} ({}) killed", instance.pid());
        }
    }
    Ok(exit_code::OK)
}
