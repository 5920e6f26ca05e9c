//! The verbs, one file each. Each takes the loaded [`Service`] and returns the exit code;
//! results go to stdout, messages to stderr.

use std::path::Path;

use crate::config;
use crate::error::{Error, Result};
use crate::exit_code;
use crate::service::Service;

mod kill;
mod launch;
mod restart;
mod start;
mod status;
mod stop;

/// What the user asked for, free of the command-line parser's types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Kill,
    Restart { force: bool },
    Status { json: bool },
}

/// Loads the config and runs `command`. A config error comes back before anything is done.
pub fn run(command: Command, config_path: &Path) -> Result<u8> {
    let service = Service::new(config::load(config_path)?);
    match command {
        Command::Start => start::run(&service),
        Command::Stop => stop::run(&service),
        Command::Kill => kill::run(&service),
        Command::Restart { force } => restart::run(&service, force),
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
