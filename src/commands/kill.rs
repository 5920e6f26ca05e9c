//! `kill`: SIGKILL the service's group at once, keeping the pid lock so it is revived.

use super::Locked;
use super::stop::kill_instance;
use crate::error::Result;
use crate::events::{Kind, Outcome, Who};
use crate::exit_code;
use crate::service::Service;

pub fn run(service: &Service) -> Result<u8> {
    let locked = Locked::acquire(service, Who::User)?;
    let name = &service.config.name;
    match locked.locate()? {
        None => {
            locked.record(Kind::Kill, Outcome::NotRunning, None, None);
            println!("{name} is not running");
        }
        Some(instance) => {
            let pid = Some(instance.pid());
            locked.record_result(
                Kind::Kill,
                pid,
                kill_instance(service, &locked.finder, &instance),
            )?;
            println!("{name} ({}) killed", instance.pid());
        }
    }
    Ok(exit_code::OK)
}
