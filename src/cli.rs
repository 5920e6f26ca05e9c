//! The command line. clap's types stay here; `main` turns them into a [`Command`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{Command, ExportTarget};
use crate::export::Scope;

/// Keeps one long-running program alive, without root and without systemd.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The service's config file.
    #[arg(
        short,
        long,
        env = "KEEPUP_CONFIG",
        default_value = "cfg.toml",
        global = true
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Start the service (or adopt the running one) and keep it up.
    Start,
    /// Stop the service and stop keeping it up.
    Stop,
    /// SIGKILL the service; it stays kept up, so the next restart revives it.
    Kill,
    /// Revive the service if it is kept up and not running (the timer's check).
    Restart {
        /// Stop it if it runs, then start it.
        #[arg(long)]
        force: bool,
        /// Run as the timer (the crontab line passes it): print only what was done.
        #[arg(long, conflicts_with = "force")]
        timer: bool,
    },
    /// Show whether the service runs (exit 0 running, 1 dead, 3 stopped, 4 unknown).
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a line to your crontab that runs restart for this config every minute.
    InstallTimer,
    /// Remove exactly that line from your crontab.
    UninstallTimer,
    /// Show the history: starts, stops, kills, revivals, guard trips, stale locks.
    Events {
        /// How many of the newest events.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: usize,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the service log's tail.
    Logs {
        /// How many of the newest lines.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: usize,
        /// Keep printing what the service writes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print this config as a systemd unit or a launchd agent (writes nothing, starts nothing).
    Export {
        #[command(subcommand)]
        to: ExportTo,
    },
    /// The watcher's own life: keepup starts it, with the operation lock and a pipe to answer
    /// on; never run by hand.
    #[command(hide = true)]
    Watch {
        #[arg(long)]
        lock_fd: i32,
        #[arg(long)]
        report_fd: i32,
        #[arg(long)]
        launch: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportTo {
    /// A systemd service unit.
    Systemd {
        /// For the user's manager (systemctl --user): the default.
        #[arg(long, conflicts_with = "system")]
        user: bool,
        /// For the system manager, running as the config's owner (User=, Group=).
        #[arg(long)]
        system: bool,
        /// The unit's name (default: the entry's name without its extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// A launchd agent property list.
    Launchd {
        /// The agent's label (default: local.<the entry's name without its extension>).
        #[arg(long)]
        label: Option<String>,
    },
}

impl Verb {
    #[must_use]
    pub fn command(&self) -> Command {
        match *self {
            Verb::Start => Command::Start,
            Verb::Stop => Command::Stop,
            Verb::Kill => Command::Kill,
            Verb::Restart { force, timer } => Command::Restart { force, timer },
            Verb::Status { json } => Command::Status { json },
            Verb::InstallTimer => Command::InstallTimer,
            Verb::UninstallTimer => Command::UninstallTimer,
            Verb::Events { lines, json } => Command::Events { lines, json },
            Verb::Logs { lines, follow } => Command::Logs { lines, follow },
            Verb::Export { ref to } => Command::Export(match *to {
                ExportTo::Systemd {
                    system, ref name, ..
                } => ExportTarget::Systemd {
                    scope: if system { Scope::System } else { Scope::User },
                    name: name.clone(),
                },
                ExportTo::Launchd { ref label } => ExportTarget::Launchd {
                    label: label.clone(),
                },
            }),
            Verb::Watch {
                lock_fd,
                report_fd,
                launch,
            } => Command::Watch {
                lock_fd,
                report_fd,
                launch,
            },
        }
    }
}
