//! `export systemd` / `export launchd`: the config as a unit or agent, on stdout; on stderr,
//! where it goes and how to switch, one supervisor at a time. Nothing is written or started.

use super::note;
use crate::error::{Error, Result};
use crate::exit_code;
use crate::export::{self, Scope};
use crate::service::Service;
use crate::text::{shell_path, shell_word};

/// What to export to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `socket`: the socket unit of `listen` instead of the service unit.
    Systemd {
        scope: Scope,
        name: Option<String>,
        socket: bool,
    },
    Launchd {
        label: Option<String>,
    },
}

pub fn run(service: &Service, target: &Target) -> Result<u8> {
    let config = &service.config;
    let file = shell_path(&config.file);
    // What keepup's own launch would find the program with, and give the service.
    let path_env = crate::environment::path_of(&service.launch_env()?);
    let advice = match target {
        Target::Systemd {
            scope,
            name,
            socket,
        } => {
            let name =
                export::unit_name(&name.clone().unwrap_or_else(|| export::entry_stem(config)))?;
            if *socket {
                print!("{}", export::socket_unit(config)?);
                return Ok(socket_advice(&file, *scope, &name));
            }
            print!("{}", export::unit(config, *scope, &path_env)?);
            if !config.listen.is_empty() {
                note(&format!(
                    "its sockets (listen) go in a socket unit of the same name: keepup -c {file} \
                     export systemd --socket{}",
                    if *scope == Scope::System {
                        " --system"
                    } else {
                        ""
                    }
                ));
            }
            match scope {
                Scope::User => format!(
                    "save it as ~/.config/systemd/user/{}, then: systemctl --user \
                     daemon-reload && systemctl --user enable --now {}; and, for it to run \
                     while you are logged out and after a reboot: loginctl enable-linger $USER",
                    shell_word(&format!("{name}.service")),
                    shell_word(&name)
                ),
                Scope::System => format!(
                    "save it (as root) as /etc/systemd/system/{}, then: systemctl \
                     daemon-reload && systemctl enable --now {}",
                    shell_word(&format!("{name}.service")),
                    shell_word(&name)
                ),
            }
        }
        Target::Launchd { label } => {
            let label = label
                .clone()
                .unwrap_or_else(|| format!("local.{}", export::default_label(config)));
            if label.is_empty() || label.contains('/') {
                return Err(Error::Failed(format!(
                    "--label {label:?}: a launchd label is a name like com.example.bot, without /"
                )));
            }
            print!("{}", export::plist(config, &label, &path_env)?);
            let file = shell_word(&format!("{label}.plist"));
            format!(
                "save it as ~/Library/LaunchAgents/{file}, then: launchctl bootstrap \
                 gui/$(id -u) ~/Library/LaunchAgents/{file}"
            )
        }
    };
    note(&advice);
    let kept = service.pid_lock()?.exists()
        || super::timer::installed(service).unwrap_or(false)
        || service.watcher(&service.finder()).is_some();
    if kept {
        note(&format!(
            "keepup keeps {} now: first run `keepup -c {file} stop` and `keepup -c {file} \
             uninstall-timer`, so that two supervisors never keep one service",
            config.name
        ));
    }
    Ok(exit_code::OK)
}

/// Where the socket unit goes: beside its service, enabled instead of it (systemd starts the
/// service with the sockets).
fn socket_advice(file: &str, scope: Scope, name: &str) -> u8 {
    let unit = shell_word(&format!("{name}.socket"));
    note(&match scope {
        Scope::User => format!(
            "save it as ~/.config/systemd/user/{unit}, beside {service} (keepup -c {file} export \
             systemd), then: systemctl --user daemon-reload && systemctl --user enable --now \
             {unit}",
            service = shell_word(&format!("{name}.service"))
        ),
        Scope::System => format!(
            "save it (as root) as /etc/systemd/system/{unit}, beside {service} (keepup -c \
             {file} export systemd --system), then: systemctl daemon-reload && systemctl enable \
             --now {unit}",
            service = shell_word(&format!("{name}.service"))
        ),
    });
    exit_code::OK
}
