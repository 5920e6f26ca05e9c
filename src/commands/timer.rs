//! `install-timer` and `uninstall-timer`: keepup's one line in the user's crontab.

use std::path::Path;

use super::note;
use crate::error::{Error, Result};
use crate::exit_code;
use crate::service::Service;
use crate::timer::{self, Crontab, Installed, TimerSpec};

pub fn install(service: &Service) -> Result<u8> {
    // Its timer would be refused every minute.
    service.refuse_other_keeper()?;
    let _lock = service.registry.crontab_lock()?;
    let keepup = crate::process::watcher::own_path()?;
    // Resolved where the user can; a path they cannot resolve is refused just below.
    let keepup = keepup.canonicalize().unwrap_or(keepup);
    // cron runs the line as this user: a keepup only root can reach would fail every minute.
    if !crate::files::can_run(&keepup) {
        let quoted = shell_words::quote(&keepup.to_string_lossy()).into_owned();
        return Err(Error::Failed(format!(
            "cannot install the timer: {} cannot run {} (a folder on its way is closed to them), \
             and cron would run it as them every minute: put keepup where every user can run \
             it (install -m 755 {quoted} /usr/local/bin/keepup) and run install-timer with that \
             one; nothing was written",
            crate::ownership::user_name(crate::ownership::euid()),
            keepup.display()
        )));
    }
    let path_env = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    let spec = TimerSpec {
        keepup: &keepup,
        config: &service.config.file,
        log: &service.timer_log(),
        path_env: &path_env,
    };
    let line =
        timer::line(&spec).map_err(|e| Error::Failed(format!("cannot install the timer: {e}")))?;
    let crontab = Crontab::from_env();
    let current = crontab.read()?;
    let name = &service.config.name;
    let done = match timer::install(&current, &line, &service.config.file) {
        Installed::Already => "is already installed",
        Installed::Added(text) => {
            crontab.write(&text)?;
            "installed"
        }
        Installed::Replaced(text) => {
            crontab.write(&text)?;
            "updated"
        }
    };
    // The line is only a line until a cron daemon reads it.
    if timer::cron_daemon().is_some() {
        println!("timer for {name} {done}: restart runs every minute");
    } else {
        println!("timer for {name} {done}, but nothing runs it yet");
        note(&format!(
            "{}: the line fires only once one runs; {}; if cron is not installed: {}; \
             `keepup doctor` checks it",
            timer::NO_CRON_DAEMON,
            timer::START_CRON,
            timer::INSTALL_CRON
        ));
    }
    Ok(exit_code::OK)
}

pub fn uninstall(service: &Service) -> Result<u8> {
    uninstall_line(
        &service.registry,
        &service.config.file,
        &service.config.name,
    )
}

/// Removes the timer line of a config that is no longer there (its folder moved): the line
/// names it by its path, which is all this needs.
pub fn uninstall_gone(config_file: &Path) -> Result<u8> {
    let name = config_file.file_name().map_or_else(
        || config_file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    uninstall_line(
        &crate::registry::Registry::of_this_user(),
        config_file,
        &name,
    )
}

fn uninstall_line(registry: &crate::registry::Registry, config: &Path, name: &str) -> Result<u8> {
    let _lock = registry.crontab_lock()?;
    let crontab = Crontab::from_env();
    let current = crontab.read()?;
    match timer::uninstall(&current, config) {
        None => println!("timer for {name} is not installed"),
        Some(text) => {
            crontab.write(&text)?;
            println!("timer for {name} removed");
        }
    }
    Ok(exit_code::OK)
}

/// Whether the timer line for this config is in the crontab; the error, if it cannot be read.
pub fn installed(service: &Service) -> Result<bool> {
    let current = Crontab::from_env().read()?;
    Ok(timer::find(&current, &service.config.file).is_some())
}
