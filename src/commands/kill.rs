//! `kill`: SIGKILL the service's group at once, keeping the pid lock so it is revived.

use super::Locked;
use super::stop::kill_instance;
use crate::error::Result;
use crate::exit_code;
use crate::service::Service;

pub fn run(service: &Service) -> Result<u8> {
    let locked = Locked::acquire(service)?;
    let name = &service.config.name;
    match locked.locate()? {
        None => println!("{name} is not running"),
        Some(instance) => {
            kill_instance(service, &locked.finder, &instance)?;
            println!("{name} ({}) killed", instance.pid());
        }
    }
    Ok(exit_code::OK)
}
