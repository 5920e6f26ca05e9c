//! `stop`: remove the pid lock, then stop the service and wait until nothing of it is left.

use super::{Locked, note};
use crate::error::{Error, Result};
use crate::events::{Kind, Outcome, Who};
use crate::exit_code;
use crate::pid::Pid;
use crate::pidfile;
use crate::process::{Finder, Identity, Instance, KILL_GRACE};
use crate::reloading::{self, ReloadRecord};
use crate::service::Service;
use crate::signal::Signal;
use crate::waiting::Waiting;

pub fn run(service: &Service) -> Result<u8> {
    let locked = Locked::acquire(service, Who::User, false)?;
    // The pid lock goes first: from here on, no revival. A lock that cannot go stops nothing,
    // or the timer would revive what was stopped.
    if let Err(e) = pidfile::remove(&service.pid_file()) {
        let why = format!(
            "{e}: {} was not stopped, and is still kept up; the state folder {} must be writable \
             by the user who runs keepup (or set state_dir)",
            service.config.name,
            service.config.state_dir.display()
        );
        locked.record(
            Kind::Stop,
            Outcome::Failed,
            locked.pid_lock.pid(),
            Some(&why),
        );
        return Err(Error::Failed(why));
    }
    locked.act_on_running(
        Kind::Stop,
        "stopped",
        service.config.stop_signal,
        |instance| stop_instance(&locked, instance),
    )?;
    stop_old_generation(&locked)?;
    // After the service: the watcher is the parent of workers that left its group, and they
    // must not pass to init untracked. Seeing the service end, it waits for the operation lock,
    // so it revives nothing meanwhile.
    locked.end_watcher(None)?;
    service.forget()?;
    service.unkeep()?;
    Ok(exit_code::OK)
}

/// The old generation of a reload whose watcher died while both generations ran: its record
/// says they overlap, yet no watcher serves it (one that did would hold the operation lock this
/// command holds). Recorded nowhere else, it is stopped with the service if it still runs as
/// the record names it (same pid, same start); the record goes.
fn stop_old_generation(locked: &Locked<'_>) -> Result<()> {
    let service = locked.service;
    let file = service.reload_file();
    let Some(record) = reloading::read(&file).filter(ReloadRecord::overlapping) else {
        return Ok(());
    };
    let old = record
        .old
        .and_then(|pid| Pid::new(pid.into()))
        .zip(record.old_start)
        .and_then(|(pid, start)| locked.finder.by_identity(&Identity { pid, start }));
    if let Some(old) = old {
        locked.record_result(Kind::Stop, Some(old.pid()), stop_instance(locked, &old))?;
        println!(
            "{} ({}) stopped: the old generation of a reload its watcher did not finish",
            service.config.name,
            old.pid()
        );
    }
    reloading::remove(&file)
}

/// `stop_signal` to the main process (or, with `stop_mode = "group"`, to its whole group at
/// once), then to what is left of the service once it has exited: its group, and what the
/// watcher was left with. SIGKILL to whatever still runs `stop_timeout` after the first signal;
/// that it had to is the stop event's detail.
pub(super) fn stop_instance(locked: &Locked<'_>, instance: &Instance) -> Result<Option<String>> {
    let config = &locked.service.config;
    let reaper = locked.service.watcher(&locked.finder).map(|w| w.identity());
    let mut stopping = locked.finder.stop(
        instance,
        reaper.as_ref(),
        config.stop_signal,
        config.stop_mode,
        config.stop_timeout,
    )?;
    // A graceful end may take a while (celery finishing its task): a person is told what for.
    let said = locked.who.is_person().then(|| {
        let what = format!(
            "{} ({}) to end on {} (SIGKILL after stop_timeout, {})",
            config.name,
            instance.pid(),
            config.stop_signal,
            crate::text::duration_text(config.stop_timeout)
        );
        Waiting::begin(move || what)
    });
    let ended = stopping.wait();
    drop(said);
    let stopped = if ended {
        Ok(None)
    } else {
        let still = format!(
            "{} ({}) still running {} after {}",
            config.name,
            instance.pid(),
            crate::text::duration_text(config.stop_timeout),
            config.stop_signal
        );
        note(&format!("{still}: sending SIGKILL"));
        stopping
            .kill()
            .map(|()| Some(format!("{still} (stop_timeout): ended by SIGKILL")))
    };
    locked.record_orphans(
        Ok(stopping.orphans().to_vec()),
        Some((instance.pid(), instance.leads_group())),
    )?;
    stopped
}

/// SIGKILL to the instance and whatever is left of its group; waits until it is gone.
pub fn kill_instance(service: &Service, finder: &Finder<'_>, instance: &Instance) -> Result<()> {
    // SIGKILL to the group while its leader lives; once the leader is gone (it ended on
    // stop_signal), to what is left of the group.
    if !finder.signal(instance, Signal::KILL)? {
        finder.kill_leftovers(instance)?;
    }
    if finder.wait_gone(instance, KILL_GRACE) {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "{} ({}) is still running {} after SIGKILL",
            service.config.name,
            instance.pid(),
            crate::text::duration_text(KILL_GRACE)
        )))
    }
}
