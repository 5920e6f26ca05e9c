//! The verbs, one file each. Each takes the loaded [`Service`] and returns the exit code;
//! results go to stdout, messages to stderr.

use std::path::Path;

use crate::config;
use crate::error::{Error, Result};
use crate::events::{Kind, Who};
use crate::exit_code;
use crate::ownership;
use crate::service::Service;

mod doctor;
mod events_cmd;
mod export;
mod health_watch;
mod kill;
mod launch;
mod list;
mod locked;
mod logs;
mod reload;
mod restart;
mod start;
mod status;
mod stop;
mod timer;
pub mod watch;

use locked::Locked;

pub use export::Target as ExportTarget;

/// What the user asked for, free of the command-line parser's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Kill,
    Restart {
        force: bool,
        timer: bool,
    },
    Reload,
    Status {
        json: bool,
    },
    InstallTimer,
    UninstallTimer,
    Events {
        lines: usize,
        json: bool,
    },
    Logs {
        lines: usize,
        follow: bool,
    },
    Export(ExportTarget),
    /// Every kept service, from the crontab's timer lines and `configs`.
    List {
        json: bool,
        configs: Vec<std::path::PathBuf>,
    },
    Doctor,
    /// The watcher's own life (started by keepup itself, never by a person).
    Watch {
        lock_fd: i32,
        report_fd: i32,
        launch: Option<LaunchOrder>,
    },
}

/// A launch handed to a process of its own (the watcher, or with `watch = false` a launcher that
/// leaves once done), so that the caller's Ctrl-C or death cannot cut it in half: it records
/// the launch as `kind` by `by` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchOrder {
    pub kind: Kind,
    pub by: Who,
    pub once: bool,
}

/// Loads the config and runs `command`. A config error comes back before anything is done.
pub fn run(command: Command, config_path: &Path) -> Result<u8> {
    // These report on configs, broken ones too: they load them themselves.
    match command {
        Command::List { json, configs } => return list::run(&configs, json),
        Command::Doctor => return Ok(doctor::run(config_path)),
        _ => {}
    }
    crate::process::watcher::keep_own_program();
    let config_meta = ownership::act_as_config_owner(config_path)?;
    // A moved or removed config's timer line still names it: removing it needs only the path.
    if command == Command::UninstallTimer && !config_path.exists() {
        return timer::uninstall_gone(
            &std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf()),
        );
    }
    let (config, text) = match (config::load_with_text(config_path), &command) {
        (Err(e @ Error::Config { .. }), Command::Status { json }) => {
            return status::run_broken(config_path, *json, e);
        }
        (loaded, _) => loaded?,
    };
    if let Some(meta) = &config_meta {
        ownership::refuse_unsafe_as_root(&config.file, config.trusted_by_root(meta))?;
    }
    let service = Service::open(config);
    match command {
        Command::Start => start::run(&service),
        Command::Stop => stop::run(&service),
        Command::Kill => kill::run(&service),
        Command::Reload => reload::run(&service),
        Command::Restart { force, timer } => restart::run(&service, force, timer),
        Command::InstallTimer => timer::install(&service),
        Command::UninstallTimer => timer::uninstall(&service),
        Command::Events { lines, json } => events_cmd::run(&service, lines, json),
        Command::Logs { lines, follow } => logs::run(&service, lines, follow),
        Command::Export(target) => export::run(&service, &target),
        Command::List { .. } | Command::Doctor => unreachable!("handled before loading"),
        Command::Watch {
            lock_fd,
            report_fd,
            launch,
        } => watch::run(&service, &text, lock_fd, report_fd, launch),
        // status answers "unknown" (LSB 4) when it cannot tell, rather than "failed".
        Command::Status { json } => status::run(&service, json).or_else(|e| match e {
            Error::Config { .. } => Err(e),
            other => {
                if json {
                    let unknown = serde_json::json!({
                        "name": service.config.name,
                        "state": "unknown",
                        "reason": other.to_string(),
                        "config": service.config.file,
                    });
                    println!("{unknown}");
                }
                eprintln!("keepup: {other}");
                Ok(exit_code::status::UNKNOWN)
            }
        }),
    }
}

/// A message for the user on stderr, one line. A stderr that cannot be written (a closed
/// pipe, a full disk under the watcher's log) loses the message, not the action.
fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "keepup: {message}");
}

/// A result on stdout, one line; like [`note`], never fatal.
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{message}");
}

/// Where the timer's and the watcher's lines start: the time, since they go to a log.
fn stamp(who: Who) -> String {
    if who.is_person() {
        String::new()
    } else {
        format!("{} ", crate::text::time_text(std::time::SystemTime::now()))
    }
}
