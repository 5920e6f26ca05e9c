//! The command line. clap's types stay here; `main` turns them into a [`Command`].

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{Command, ExportTarget, LaunchOrder};
use crate::events::{Kind, Who};
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

    /// Whether the config was named (by `-c` or `KEEPUP_CONFIG`), not taken by default.
    #[arg(skip)]
    pub config_named: bool,

    #[command(subcommand)]
    pub verb: Verb,
}

impl Cli {
    /// Parses `args`; a usage error (or `--help`) is printed and exits, as with `parse_from`.
    #[must_use]
    pub fn parse_args(args: Vec<std::ffi::OsString>) -> Cli {
        let matches = Cli::command().get_matches_from(args);
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.config_named =
            matches.value_source("config") != Some(clap::parser::ValueSource::DefaultValue);
        cli
    }

    /// What to run: the verb's command; `list` also lists a config that was named.
    #[must_use]
    pub fn request(&self) -> Command {
        let mut command = self.verb.command();
        if let Command::List { configs, .. } = &mut command
            && self.config_named
        {
            configs.push(self.config.clone());
        }
        command
    }
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
    /// Start a new generation on the held sockets (`listen`), then stop the old one once the
    /// new one is ready; if it fails, the old one serves on (exit 1).
    Reload,
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
    /// Every service you keep (keepup's record of what it keeps, your crontab's timer lines, and the configs given), one row each.
    #[command(visible_alias = "ls")]
    List {
        /// A JSON array of `status --json` objects instead of a table.
        #[arg(long)]
        json: bool,
        /// More configs to list beside those kept and those of the timer lines (a config named
        /// by `-c` or `KEEPUP_CONFIG` is one).
        configs: Vec<PathBuf>,
    },
    /// Check what would make the service or its timer fail silently, each with its fix.
    Doctor,
    /// Print a shell completion script.
    Completions {
        /// The shell whose completion script to print.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
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
        /// Launch the service first, and record it as this.
        #[arg(long, value_parser = ["start", "revive"])]
        launch: Option<String>,
        /// Who asked for the launch.
        #[arg(long, value_parser = ["user", "timer"], requires = "launch")]
        by: Option<String>,
        /// Leave once the launch is done (watch = false).
        #[arg(long, requires = "launch")]
        once: bool,
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
        /// The unit's name (default: the entry's name without its extension), escaped as
        /// systemd-escape escapes it, but for a `-`, which stays.
        #[arg(long)]
        name: Option<String>,
        /// Print the matching socket unit (`NAME.socket`, a `ListenStream=` for each socket of
        /// `listen`) instead of the service unit.
        #[arg(long)]
        socket: bool,
    },
    /// A launchd agent property list.
    Launchd {
        /// The agent's label (default: local.<the entry's name without its extension>).
        #[arg(long)]
        label: Option<String>,
    },
}

/// `command` without its hidden verbs (the watcher's): `clap_complete`'s bash script would offer
/// them all the same.
fn without_hidden(command: &clap::Command) -> clap::Command {
    clap::Command::new("keepup")
        .version(env!("CARGO_PKG_VERSION"))
        .args(command.get_arguments().cloned())
        .subcommands(
            command
                .get_subcommands()
                .filter(|v| !v.is_hide_set())
                .cloned(),
        )
}

impl Verb {
    /// What the verbs that only print keepup's own documents print: a completion script, the
    /// man page. `None` for every verb that acts on a config.
    #[must_use]
    pub fn text(&self) -> Option<String> {
        match *self {
            Verb::Completions { shell } => {
                let mut out = Vec::new();
                clap_complete::generate(
                    shell,
                    &mut without_hidden(&Cli::command()),
                    "keepup",
                    &mut out,
                );
                Some(String::from_utf8_lossy(&out).into_owned())
            }
            Verb::Man => Some(crate::manual::page(Cli::command())),
            _ => None,
        }
    }

    #[must_use]
    pub fn command(&self) -> Command {
        match *self {
            Verb::Start => Command::Start,
            Verb::Stop => Command::Stop,
            Verb::Kill => Command::Kill,
            Verb::Reload => Command::Reload,
            Verb::Restart { force, timer } => Command::Restart { force, timer },
            Verb::Status { json } => Command::Status { json },
            Verb::InstallTimer => Command::InstallTimer,
            Verb::UninstallTimer => Command::UninstallTimer,
            Verb::Events { lines, json } => Command::Events { lines, json },
            Verb::Logs { lines, follow } => Command::Logs { lines, follow },
            Verb::List { json, ref configs } => Command::List {
                json,
                configs: configs.clone(),
            },
            Verb::Doctor => Command::Doctor,
            Verb::Completions { .. } | Verb::Man => {
                unreachable!("printed by Verb::text, not run")
            }
            Verb::Export { ref to } => Command::Export(match *to {
                ExportTo::Systemd {
                    system,
                    ref name,
                    socket,
                    ..
                } => ExportTarget::Systemd {
                    scope: if system { Scope::System } else { Scope::User },
                    name: name.clone(),
                    socket,
                },
                ExportTo::Launchd { ref label } => ExportTarget::Launchd {
                    label: label.clone(),
                },
            }),
            Verb::Watch {
                lock_fd,
                report_fd,
                ref launch,
                ref by,
                once,
            } => Command::Watch {
                lock_fd,
                report_fd,
                launch: launch.as_deref().map(|kind| LaunchOrder {
                    kind: if kind == "revive" {
                        Kind::Revive
                    } else {
                        Kind::Start
                    },
                    by: if by.as_deref() == Some("timer") {
                        Who::Timer
                    } else {
                        Who::User
                    },
                    once,
                }),
            },
        }
    }
}
