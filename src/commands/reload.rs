//! `reload`: a deploy that refuses and fails no request. The watcher holds the sockets
//! (`listen`), so only it can start a new generation on them: `reload` asks it (the reload
//! record, and a SIGCHLD to wake it), and waits for its answer. The watcher starts the new
//! generation beside the old one, waits until its ready check passes (an answer from the new
//! generation itself, not the old one on the same socket), and only then sends the old one
//! `stop_signal`, so it finishes the requests it has; if the new one fails, it is ended and the
//! old one serves on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::launch::launch_beside;
use super::{Locked, note, say, stamp};
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::events::{Kind, Outcome, Who};
use crate::exit_code;
use crate::pid::Pid;
use crate::process::exit::{Ended, Waits};
use crate::process::{self, Identity, Instance};
use crate::reloading::{self, Phase, ReloadRecord};
use crate::service::Service;
use crate::waiting::Note;

/// How long the asker waits beyond the reload's own timeouts: for the watcher to take the
/// operation lock, and the old generation's SIGKILL.
const SLACK: Duration = Duration::from_secs(15);

/// Between looks at the record.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// The verb: asks the watcher, waits for its answer, says it.
pub fn run(service: &Service) -> Result<u8> {
    let config = &service.config;
    check_reloadable(config)?;
    let locked = Locked::acquire(service, Who::User, false)?;
    let name = &config.name;
    if !locked.pid_lock.exists() {
        return Err(Error::Failed(format!(
            "{name} is not kept up (no pid lock): nothing to reload; start starts it"
        )));
    }
    let Some(old) = locked.locate()?.instance else {
        return Err(Error::Failed(format!(
            "{name} is not running: nothing to reload (restart revives it)"
        )));
    };
    let Some(watcher) = service.watcher(&locked.finder) else {
        return Err(Error::Failed(format!(
            "{name} ({}) runs without a watcher, so nothing holds its sockets: `keepup restart \
             --force` starts it anew with a watcher that binds them; reload works from then on",
            old.pid()
        )));
    };
    let record_file = service.reload_file();
    let budget = config.start_timeout + config.stop_timeout + SLACK;
    let id = format!("{}-{}", std::process::id(), reloading::now_ms());
    reloading::write(
        &record_file,
        &ReloadRecord {
            id: id.clone(),
            phase: Phase::Asked,
            until_ms: reloading::now_ms() + budget.as_millis(),
            old: Some(old.pid().get()),
            old_start: None,
            new: None,
            message: None,
        },
    )?;
    // The watcher acts under the operation lock: this one lets go first.
    let finder = service.finder();
    drop(locked);
    if !finder.wake_watcher(&watcher.identity()) {
        let _ = reloading::remove(&record_file);
        return Err(Error::Failed(format!(
            "the watcher ({}) of {name} is gone: nothing holds its sockets now",
            watcher.pid
        )));
    }
    let answer = wait_for_answer(service, &record_file, &id, budget)?;
    let _ = reloading::remove(&record_file);
    let old_pid = old.pid();
    match answer.phase {
        Phase::Done => {
            say(&format!(
                "{name} reloaded: {} serves, {old_pid} stopped{}",
                answer
                    .new
                    .map_or_else(|| "the new generation".to_owned(), |p| p.to_string()),
                answer
                    .message
                    .map_or_else(String::new, |m| format!(" ({m})"))
            ));
            Ok(exit_code::OK)
        }
        _ => Err(Error::Failed(format!(
            "reload failed: {}; {name} ({old_pid}) serves on",
            answer
                .message
                .unwrap_or_else(|| "the watcher gave no reason".to_owned())
        ))),
    }
}

/// A reload needs the held sockets, and a check that tells when the new generation is ready:
/// `http://` (an answer counts only from the new generation, see `launch_beside`) or `cmd:`;
/// a `notify` check (issue 22) would fit as it is, its `READY=1` coming from the new
/// generation's own pid. `tcp:` never gets here: the config refuses it beside `listen`.
fn check_reloadable(config: &Config) -> Result<()> {
    let refuse = |message: &str| {
        Err(Error::Config {
            file: config.file.clone(),
            message: message.to_owned(),
        })
    };
    if config.listen.is_empty() {
        return refuse(
            "reload needs `listen`: the new generation starts on sockets the watcher holds while \
             the old one still serves; without them, `restart --force` stops it and starts it \
             again",
        );
    }
    if config.ready.is_none() {
        return refuse(
            "reload needs a `ready` check (ready = \"http://HOST:PORT/PATH\" or \"cmd:…\"): the \
             old generation is stopped only once the new one passes it",
        );
    }
    Ok(())
}

/// Waits until the watcher has finished the reload `id`, or took too long (then the request
/// is withdrawn, unless the watcher took it meanwhile).
fn wait_for_answer(
    service: &Service,
    record_file: &Path,
    id: &str,
    budget: Duration,
) -> Result<ReloadRecord> {
    let name = service.config.name.clone();
    let what = format!(
        "the new generation of {name} to pass its ready check and the old one to end (up to \
         start_timeout and stop_timeout)"
    );
    let mut said = Note::new(move || what);
    let began = Instant::now();
    loop {
        let record = reloading::read(record_file).filter(|r| r.id == id);
        match record {
            Some(r) if matches!(r.phase, Phase::Done | Phase::Failed) => return Ok(r),
            None => {
                return Err(Error::Failed(format!(
                    "the reload of {name} was taken from its record before it ended (another \
                     reload?)"
                )));
            }
            Some(_) => {}
        }
        if began.elapsed() > budget {
            break;
        }
        said.waited(began.elapsed());
        std::thread::sleep(LOOK_EVERY);
    }
    drop(said);
    // Under the lock the watcher acts with: a request it has not taken is withdrawn.
    let _locked = Locked::acquire(service, Who::User, false)?;
    match reloading::read(record_file).filter(|r| r.id == id) {
        Some(r) if matches!(r.phase, Phase::Done | Phase::Failed) => Ok(r),
        Some(r) if r.phase == Phase::Asked => {
            let _ = reloading::remove(record_file);
            Err(Error::Failed(format!(
                "the watcher of {name} did not take the reload within {}; nothing changed",
                crate::text::duration_text(budget)
            )))
        }
        _ => Err(Error::Failed(format!(
            "the reload of {name} did not end within {}; see keepup status and events",
            crate::text::duration_text(budget)
        ))),
    }
}

/// In the watcher: waits for the instance `identity` to end, as
/// [`process::exit::wait_for_end_or`] does, serving the reloads asked meanwhile (each replaces
/// the instance watched). Returns the instance that ended, and how.
/// `probing`: the config the watcher keeps watch with (health checks, notifications), if any.
pub fn watch(
    config_file: &Path,
    probing: Option<&Config>,
    identity: &Identity,
    waits: Waits,
) -> (Pid, Ended) {
    let mut identity = identity.clone();
    // Found once: the wait asks at every wake-up (every 100 ms when it polls).
    let mut record_file: Option<Option<PathBuf>> = None;
    loop {
        let mut asked = || {
            record_file
                .get_or_insert_with(|| {
                    config::load(config_file)
                        .ok()
                        .map(|c| Service::open(c).reload_file())
                })
                .as_ref()
                .is_some_and(|f| {
                    f.exists() && reloading::read(f).is_some_and(|r| r.phase == Phase::Asked)
                })
        };
        let ended = super::health_watch::wait_for_end_or(probing, &mut identity, waits, &mut asked);
        if let Some(ended) = ended {
            return (identity.pid, ended);
        }
        if let Some((watched, config, text)) = serve(config_file, &identity) {
            identity = watched;
            // Lean again, as after any action; on failure it waits on in this image.
            super::health_watch::before_waiting(&config);
            let e = process::watcher::become_waiting(config_file, &identity, waits, &text);
            note(&format!("{}{e}", stamp(Who::Watcher)));
        }
    }
}

/// Serves the reload asked of this watcher, which watches `old`: the instance to watch from
/// now on (the new generation, or the old one if the new one failed), and the config text it
/// acted with; `None` when there was nothing to serve.
fn serve(config_file: &Path, old: &Identity) -> Option<(Identity, Config, String)> {
    let (config, text) = match config::load_with_text(config_file) {
        Ok(loaded) => loaded,
        Err(e) => {
            note(&format!("{}{e}: reload not served", stamp(Who::Watcher)));
            return None;
        }
    };
    let service = Service::open(config);
    let record_file = service.reload_file();
    let locked = match Locked::acquire(&service, Who::Watcher, false) {
        Ok(locked) => locked,
        Err(e) => {
            note(&format!("{}{e}: reload not served", stamp(Who::Watcher)));
            return None;
        }
    };
    let mut record = reloading::read(&record_file).filter(|r| r.phase == Phase::Asked)?;
    if record.until_ms < reloading::now_ms() {
        // Its asker has given up: a late reload would surprise whoever deploys next.
        let _ = reloading::remove(&record_file);
        return None;
    }
    let answer = |record: &mut ReloadRecord, phase: Phase, message: Option<String>| {
        record.phase = phase;
        record.message = message;
        if let Err(e) = reloading::write(&record_file, record) {
            note(&format!("{}{e}", stamp(Who::Watcher)));
        }
    };
    let old_instance = match reloadable(&locked, old) {
        Ok(instance) => instance,
        Err(why) => {
            answer(&mut record, Phase::Failed, Some(why));
            return None;
        }
    };
    record.old = Some(old.pid.get());
    record.old_start = Some(old.start.clone());
    answer(&mut record, Phase::Starting, None);
    let name = &service.config.name;
    match launch_beside(&service, &locked.finder, &locked.pid_lock) {
        Ok(new) => {
            record.new = Some(new.pid().get());
            let what = format!(
                "{name} ({}) serves on the held sockets; the old generation ({}) gets {}",
                new.pid(),
                old.pid,
                service.config.stop_signal
            );
            locked.record(Kind::Reload, Outcome::Ok, Some(new.pid()), Some(&what));
            answer(&mut record, Phase::Stopping, None);
            let how = stop_old(&locked, &old_instance);
            answer(&mut record, Phase::Done, how);
            Some((new.identity, service.config.clone(), text))
        }
        Err(e) => {
            // The old generation was recorded until the launch: it is again.
            service.reread_record();
            let restored = service
                .pid_lock()
                .and_then(|lock| service.remember(&old_instance, &lock));
            let why = match restored {
                Ok(()) => e.to_string(),
                Err(restoring) => format!("{e}; and the old generation's record: {restoring}"),
            };
            locked.record(Kind::Reload, Outcome::Failed, Some(old.pid), Some(&why));
            answer(&mut record, Phase::Failed, Some(why));
            Some((old.clone(), service.config.clone(), text))
        }
    }
}

/// The running instance, if it is `watched` (the one this watcher watches) and the service is
/// still kept up, with what a reload needs; why not otherwise.
fn reloadable(locked: &Locked<'_>, watched: &Identity) -> Result<Instance, String> {
    let service = locked.service;
    let name = &service.config.name;
    if !service.watched_by(process::own_identity().as_ref()) {
        return Err(format!("another watcher keeps {name} now"));
    }
    if !locked.pid_lock.exists() {
        return Err(format!("{name} is no longer kept up (stopped meanwhile)"));
    }
    if let Err(e) = check_reloadable(&service.config) {
        return Err(e.to_string());
    }
    // The running generation holds them, and a new one could not bind beside it.
    if !process::sockets::holds_all(&service.config.listen) {
        return Err(format!(
            "this watcher does not hold {name}'s sockets (it was started while {name} ran, after \
             the watcher that held them had died; or listen changed since): `keepup restart \
             --force` starts {name} anew with its sockets bound, and reload works from then on"
        ));
    }
    match locked.locate() {
        Ok(lookup) => match lookup.instance {
            Some(instance) if instance.identity == *watched => Ok(instance),
            _ => Err(format!("{name} is not running as the watcher last saw it")),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// `stop_signal` to the old generation alone (its group; never the new one, also the
/// watcher's child), SIGKILL after `stop_timeout`. How it ended, if it took SIGKILL.
fn stop_old(locked: &Locked<'_>, old: &Instance) -> Option<String> {
    let config = &locked.service.config;
    let stopping = locked.finder.stop(
        old,
        None,
        config.stop_signal,
        config.stop_mode,
        config.stop_timeout,
    );
    let mut stopping = match stopping {
        Ok(stopping) => stopping,
        Err(e) => return Some(e.to_string()),
    };
    if stopping.wait() {
        return None;
    }
    let still = format!(
        "the old generation ({}) still ran {} after {}: ended by SIGKILL",
        old.pid(),
        crate::text::duration_text(config.stop_timeout),
        config.stop_signal
    );
    Some(match stopping.kill() {
        Ok(()) => still,
        Err(e) => format!("{still}; {e}"),
    })
}
