//! `kill`: SIGKILL the service's group at once, keeping the pid lock so it is revived.

use super::Locked;
use super::stop::kill_instance;
use crate::error::Result;
use crate::events::{Kind, Who};
use crate::exit_code;
use crate::service::Service;
use crate::signal::Signal;

pub fn run(service: &Service) -> Result<u8> {
    let locked = Locked::acquire(service, Who::User, false)?;
    locked.act_on_running(Kind::Kill, "killed", Signal::KILL, |instance| {
        kill_instance(service, &locked.finder, instance)
    })?;
    Ok(exit_code::OK)
}
