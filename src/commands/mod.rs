//! The verbs, one file each. Each takes the loaded [`Service`] and returns the exit code;
//! results go to stdout, messages to stderr.

use std::path::Path;

use crate::config;
use crate::error::{Error, Result};
use crate::exit_code;
use crate::oplock::OpLock;
use crate::pidfile::PidLock;
use crate::process::{Finder, Instance};
use crate::service::Service;

mod kill;
mod launch;
mod restart;
mod start;
mod status;
mod stop;
mod timer;

/// What the user asked for, free of the command-line parser's types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Kill,
    Restart { force: bool, timer: bool },
    Status { json: bool },
    InstallTimer,
    UninstallTimer,
}

/// Loads the config and runs `command`. A config error comes back before anything is done.
pub fn run(command: Command, config_path: &Path) -> Result<u8> {
    let service = Service::new(config::load(config_path)?);
    match command {
        Command::Start => start::run(&service),
        Command::Stop => stop::run(&service),
        Command::Kill => kill::run(&service),
        Command::Restart { force, timer } => restart::run(&service, force, timer),
        Command::InstallTimer => timer::install(&service),
        Command::UninstallTimer => timer::uninstall(&service),
        // status answers "unknown" (LSB 4) when it cannot tell, rather than "failed".
        Command::Status { json } => status::run(&service, json).or_else(|e| match e {
            Error::Config { .. } => Err(e),
            other => {
                eprintln!("keepup: {other}");
                Ok(exit_code::status::UNKNOWN)
            }
        }),
    }
}

/// A message for the user on stderr, one line.
fn note(message: &str) {
    eprintln!("keepup: {message}");
}

/// What every verb that may act holds: the operation lock, and the pid lock as read under it.
struct Locked<'a> {
    service: &'a Service,
    _lock: OpLock,
    finder: Finder<'a>,
    pid_lock: PidLock,
}

impl<'a> Locked<'a> {
    fn acquire(service: &'a Service) -> Result<Locked<'a>> {
        let lock = service.lock()?;
        Ok(Locked {
            service,
            _lock: lock,
            finder: service.finder(),
            pid_lock: service.pid_lock()?,
        })
    }

    /// The running instance, saying on stderr what was wrong with the pid lock, if anything.
    fn locate(&self) -> Result<Option<Instance>> {
        let lookup = self.service.locate(&self.finder, &self.pid_lock)?;
        if let Some(stale) = &lookup.stale {
            note(stale);
        }
        Ok(lookup.instance)
    }
}
