//! `status`: is it running? Reads only; takes no lock, so it answers even while a `stop` waits.

use std::time::{Duration, SystemTime};

use crate::config::RestartLimit;
use crate::environment;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::guard::{self, Standing};
use crate::output::{EnvSummary, Guard, Watcher};
use crate::output::{State, Status};
use crate::pidfile::PidLock;
use crate::process::{Instance, Table};
use crate::record::Launch;
use crate::service::Service;
use crate::text::time_text;
use crate::watcher::WatcherRecord;

pub fn run(service: &Service, json: bool) -> Result<u8> {
    let status = of(service)?;
    if json {
        let text = serde_json::to_string(&status)
            .map_err(|e| Error::Failed(format!("encoding status: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", status.render());
    }
    Ok(status.state.exit_code())
}

/// Everything `status` tells of one service.
pub fn of(service: &Service) -> Result<Status> {
    of_in(service, &Shared::default())
}

/// What a command that shows many services (`list`) reads once for all of them: the process
/// table and the crontab (its text, or why it could not be read).
#[derive(Default)]
pub struct Shared<'a> {
    pub table: Option<&'a Table>,
    pub crontab: Option<&'a std::result::Result<String, String>>,
}

/// Everything `status` tells of one service, from what was read once for many (`list` shows
/// one row of it per service).
pub fn of_in(service: &Service, shared: &Shared<'_>) -> Result<Status> {
    let finder = match shared.table {
        Some(table) => service.finder().in_table(table),
        None => service.finder(),
    };
    let pid_lock = service.pid_lock()?;
    let lookup = service.locate(&finder, &pid_lock)?;
    let state = match (&lookup.instance, &pid_lock) {
        (Some(_), _) => State::Running,
        (None, PidLock::Absent) => State::Stopped,
        (None, _) => State::Dead,
    };
    let timer = match shared.crontab {
        Some(Ok(crontab)) => Ok(crate::timer::find(crontab, &service.config.file).is_some()),
        Some(Err(why)) => Err(Error::Failed(why.clone())),
        None => super::timer::installed(service),
    };
    let history = events::read(&service.events_file())?;
    let now = SystemTime::now();
    let instance = lookup.instance.as_ref();
    let (started_at, uptime_seconds) = Status::new_started(instance.and_then(Instance::started_at));
    let watcher = service.watcher(&finder);
    let reaper = watcher.as_ref().map(WatcherRecord::identity);
    let usage = instance.map(|i| i.usage(reaper.as_ref()));
    let status = Status {
        name: service.config.name.clone(),
        state,
        pid: instance.map(|i| i.pid().get()),
        started_at,
        uptime_seconds,
        suspended: instance.and_then(Instance::stopped),
        memory_bytes: usage.and_then(|u| u.rss_bytes),
        memory_pss_bytes: usage.and_then(|u| u.pss_bytes),
        leader_memory_bytes: instance.and_then(Instance::memory_bytes),
        processes: usage.map(|u| u.processes),
        kept_up: pid_lock.exists(),
        pid_lock: service.pid_file().clone(),
        pid_lock_problem: lookup.stale.clone(),
        leftovers: lookup
            .leftovers
            .iter()
            .flat_map(|l| l.members.iter().map(|p| p.get()))
            .collect(),
        warnings: warnings(service, instance, &history, now),
        log: service.log_of(instance),
        config: service.config.file.clone(),
        environment: environment_of(service),
        timer_installed: timer.as_ref().ok().copied(),
        timer_problem: timer.err().map(|e| e.to_string()),
        watch: service.config.watch,
        watcher: watcher.map(|w| Watcher {
            pid: w.pid.get(),
            started_at: w.started_at,
            waits: w.waits,
            suspended: reaper.as_ref().and_then(crate::process::stopped),
        }),
        // Only while a watcher runs: one that died mid-reload left its record behind.
        reloading: crate::reloading::read(&service.reload_file())
            .filter(|r| r.overlapping() && reaper.is_some())
            .map(|r| crate::output::Reloading {
                phase: r.phase,
                old_pid: r.old,
            }),
        guard: guard_state(
            &history,
            now,
            &service.config.restart_limit,
            instance.is_some(),
            pid_lock.exists(),
        ),
        revivals_24h: guard::revivals_within(&history, now, DAY),
        health: instance.and_then(|i| {
            crate::health::read(&service.state_file(crate::health::SUFFIX))
                .filter(|r| r.pid == i.pid())
        }),
        watchdog_seconds: service.config.watchdog.map(|w| w.as_secs_f64()),
        recent_events: history[history.len().saturating_sub(RECENT_EVENTS)..].to_vec(),
    };
    Ok(status)
}

/// Where a launch takes the service's environment from: counts, never values.
fn environment_of(service: &Service) -> EnvSummary {
    let config = &service.config;
    let recorded = environment::recorded(&service.recorded_env())
        .ok()
        .flatten();
    let file = config.env_file.as_deref().map(environment::env_file);
    EnvSummary {
        recorded: recorded.as_ref().map(|(vars, _)| vars.len()),
        recorded_at: recorded.and_then(|(_, at)| at).map(time_text),
        env_file: config.env_file.clone(),
        env_file_variables: file.as_ref().and_then(|f| f.as_ref().ok()).map(Vec::len),
        env_file_problem: file.and_then(Result::err).map(|e| e.to_string()),
        env: config.env.len(),
    }
}

/// What a person should know of the entry and the config, beside the state.
fn warnings(
    service: &Service,
    instance: Option<&Instance>,
    history: &[Event],
    now: SystemTime,
) -> Vec<String> {
    let config = &service.config;
    let mut warnings = Vec::new();
    if let Some(keeper) = service.other_keeper() {
        let quoted = shell_words::quote(&keeper.to_string_lossy()).into_owned();
        warnings.push(format!(
            "kept by another config, {}: act on it with --config {quoted}",
            keeper.display()
        ));
    }
    if let Some(trouble) = service.keeping().and_then(|k| k.trouble) {
        warnings.push(format!("at {}, {}", trouble.at, trouble.what));
    }
    if let Some(latest) = guard::from_the_future(history, now) {
        warnings.push(format!(
            "the history holds events from the future (up to {}): the clock was stepped back; \
             they count as now",
            time_text(latest)
        ));
    }
    if config.resolved.is_none() {
        warnings.push(format!(
            "the entry {} does not exist: stop and kill still work; start needs it back",
            config.entry.display()
        ));
    }
    let record = instance.and_then(|i| service.record().filter(|r| r.pid == i.pid()));
    let Some(launch) = record.as_ref().and_then(|r| r.launch.as_ref()) else {
        return warnings;
    };
    if service.other_keeper().is_some() {
        return warnings;
    }
    let current = Launch::of(config);
    if launch.entry != config.entry {
        warnings.push(format!(
            "the config now names {}, and this instance runs {}: restart --force ends it and \
             starts {}",
            config.entry.display(),
            launch.entry.display(),
            config.name
        ));
        return warnings;
    }
    if let (Some(then), Some(resolved)) = (&launch.resolved, &config.resolved)
        && then != resolved
    {
        warnings.push(format!(
            "the entry now resolves to {}, and this instance runs {}: restart --force runs the new one",
            resolved.display(),
            then.display()
        ));
    }
    let changed = launch.changed_keys(&current);
    if !changed.is_empty() {
        warnings.push(format!(
            "running with an older config ({} changed since it started): restart --force applies it",
            changed.join(", ")
        ));
    }
    warnings
}

/// How many events `status` shows.
const RECENT_EVENTS: usize = 5;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// `kept`: the pid lock asks for it to be kept up. Without it no revival comes, and a backoff
/// (after a start that failed) names the time of none.
fn guard_state(
    history: &[Event],
    now: SystemTime,
    limit: &RestartLimit,
    running: bool,
    kept: bool,
) -> Guard {
    let at = |t: SystemTime| Some(time_text(t));
    let (state, until, revivals) = match guard::standing(history, now, limit, running) {
        Standing::Ok => ("ok", None, None),
        Standing::Backoff(_) if !kept => ("ok", None, None),
        Standing::Backoff(until) => ("backoff", at(until), None),
        Standing::Tripped(until) => ("tripped", at(until), None),
        Standing::Armed { revivals } => ("armed", None, Some(revivals)),
    };
    Guard {
        state,
        until,
        revivals,
        interval: crate::text::duration_text(limit.interval),
    }
}

/// `status` on a config that does not load (a broken deploy): whether the service runs still
/// matters most, so what keepup's record of it tells (the pid lock, and the recorded instance,
/// checked against the process table) comes first, then the config error (exit 78). Without
/// a record for this config, only the error.
pub fn run_broken(config_path: &std::path::Path, json: bool, error: Error) -> Result<u8> {
    use crate::files::{self, Trusted};
    let config = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let Some(keeping) = crate::registry::Registry::of_this_user().for_config(&config) else {
        return Err(error);
    };
    let file = |suffix| crate::keeper::state_file(&keeping.state_dir, &keeping.name, suffix);
    let Ok(pid_lock) = crate::pidfile::read(&file(".pid")) else {
        return Err(error);
    };
    let record: Option<crate::record::Record> = match files::read_trusted(&file(".instance"), 4096)
    {
        Ok(Trusted::Content(json)) => serde_json::from_slice(&json).ok(),
        _ => None,
    };
    let running = record
        .map(|r| r.identity())
        .filter(crate::process::is_running);
    let state = match (&running, &pid_lock) {
        (Some(_), _) => State::Running,
        (None, PidLock::Absent) => State::Stopped,
        (None, _) => State::Dead,
    };
    let pid = running.map(|identity| identity.pid.get());
    if json {
        let known = serde_json::json!({
            "name": keeping.name,
            "state": state.name(),
            "pid": pid,
            "config": config,
            "config_error": error.to_string(),
        });
        println!("{known}");
    } else {
        let pid = pid.map_or_else(String::new, |pid| format!(" (pid {pid})"));
        println!(
            "{}: {}{pid}, by keepup's record of it; its config does not load, so that is all",
            keeping.name,
            state.name()
        );
    }
    Err(error)
}
