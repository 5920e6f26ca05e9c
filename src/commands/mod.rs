//! The verbs, one file each. Each takes the loaded [`Service`] and returns the exit code;
//! results go to stdout, messages to stderr.

use std::path::Path;

use crate::config;
use crate::error::{Error, Result};
use crate::events::{self, Event, Kind, Outcome, Who};
use crate::exit_code;
use crate::logfile;
use crate::oplock::OpLock;
use crate::pid::Pid;
use crate::pidfile::PidLock;
use crate::process::{Finder, Instance};
use crate::service::Service;

mod events_cmd;
mod kill;
mod launch;
mod logs;
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
    Events { lines: usize, json: bool },
    Logs { lines: usize, follow: bool },
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
        Command::Events { lines, json } => events_cmd::run(&service, lines, json),
        Command::Logs { lines, follow } => logs::run(&service, lines, follow),
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
/// It also keeps the log rotated and the event history written, for all of them alike.
struct Locked<'a> {
    service: &'a Service,
    _lock: OpLock,
    finder: Finder<'a>,
    pid_lock: PidLock,
    who: Who,
}

impl<'a> Locked<'a> {
    fn acquire(service: &'a Service, who: Who) -> Result<Locked<'a>> {
        let lock = service.lock()?;
        let config = &service.config;
        // A log that cannot be rotated is worth a word, not a failed revival.
        if let Err(e) = logfile::rotate_if_needed(&config.log, config.log_max_size, config.log_keep)
        {
            note(&format!("log not rotated: {e}"));
        }
        Ok(Locked {
            service,
            _lock: lock,
            finder: service.finder(),
            pid_lock: service.pid_lock()?,
            who,
        })
    }

    /// The running instance, saying on stderr (and in the history) what was wrong with the
    /// pid lock, if anything.
    fn locate(&self) -> Result<Option<Instance>> {
        let lookup = self.service.locate(&self.finder, &self.pid_lock)?;
        if let Some(stale) = &lookup.stale {
            note(stale);
            self.record(
                Kind::StaleLock,
                Outcome::Ok,
                self.pid_lock.pid(),
                Some(stale),
            );
        }
        Ok(lookup.instance)
    }

    /// Adds an event to the history. A history that cannot be written is worth a word on
    /// stderr, not a failed action.
    fn record(&self, kind: Kind, outcome: Outcome, pid: Option<Pid>, detail: Option<&str>) {
        let mut event = Event::now(kind, self.who, outcome, pid);
        if let Some(detail) = detail {
            event = event.detail(detail);
        }
        if let Err(e) = events::append(&self.service.events_file, &event) {
            note(&format!("event not recorded: {e}"));
        }
    }

    /// Does `action` to the running instance, if there is one, records `kind` either way, and
    /// says what happened (`done`: "stopped", "killed").
    fn act_on_running(
        &self,
        kind: Kind,
        done: &str,
        action: impl FnOnce(&Instance) -> Result<()>,
    ) -> Result<()> {
        let name = &self.service.config.name;
        match self.locate()? {
            None => {
                self.record(kind, Outcome::NotRunning, None, None);
                println!("{name} is not running");
            }
            Some(instance) => {
                self.record_result(kind, Some(instance.pid()), action(&instance))?;
                println!("{name} ({}) {done}", instance.pid());
            }
        }
        Ok(())
    }

    /// Records the outcome of launching an instance and passes it on.
    fn record_launch(&self, kind: Kind, launched: Result<Instance>) -> Result<Instance> {
        let pid = launched.as_ref().ok().map(Instance::pid);
        self.record_result(kind, pid, launched)
    }

    /// Records the outcome of an action on `pid` and passes its result on.
    fn record_result<T>(&self, kind: Kind, pid: Option<Pid>, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.record(kind, Outcome::Ok, pid, None),
            Err(e) => self.record(kind, Outcome::Failed, pid, Some(&e.to_string())),
        }
        result
    }
}
