//! The watcher: one per kept-up service, started by keepup itself (never by a person, and
//! hidden from `--help`). It waits for the instance to end without waking while it runs, then
//! does at once what the timer's `restart` does: same operation lock, guard and history, by
//! "watcher". It re-reads the config for each revival, and leaves when the pid lock is gone.
//!
//! Its life starts under the lock of the keepup that started it (see `process::watcher`):
//! it launches the service as its own child (or takes the running one), writes down who it
//! is, answers, and only then lets go of the lock.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::locked::Memory;
use super::restart::{Revival, revive};
use super::{LaunchOrder, Locked, note, stamp};
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::events::{Kind, Outcome, Who};
use crate::exit_code;
use crate::oplock::OpLock;
use crate::pid::Pid;
use crate::process::exit::{Children, Ended, Waits};
use crate::process::watcher::Handed;
use crate::process::{self, Finder, Identity, Instance};
use crate::service::Service;
use crate::watcher::{self, WatcherRecord};

/// When a revival fails for a reason the guard does not count (no space for keepup's files, no
/// process slot, the entry gone), the first wait before trying again; it doubles up to the
/// guard's `backoff_max` (so the service is back that soon after the cause ends), and never
/// shrinks below it (so a zero `backoff_max` does not spin).
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The watcher's first state, under the lock of the keepup that started it: the launch it
/// was handed (recorded here, so that nothing the caller suffers cuts it in half), or the
/// running instance to watch. With a launch `once` (`watch = false`), it leaves when done.
pub fn run(
    service: &Service,
    text: &str,
    lock_fd: i32,
    report_fd: i32,
    launch: Option<LaunchOrder>,
) -> Result<u8> {
    // It may live for months: it keeps nothing of its starter's caller (a deploy's `flock`
    // would be held until `stop`).
    process::descriptors::close_all_but(&[lock_fd, report_fd]);
    // SAFETY: keepup passes these on the watcher's command line, which only
    // `process::watcher::spawn` writes: they are the lock and pipe it handed over.
    let handed = unsafe { Handed::take(lock_fd, report_fd)? };
    process::watcher::begin();
    let waits = Waits::here();
    let me = process::own_identity()
        .ok_or_else(|| Error::Failed("the watcher cannot tell its own identity".to_owned()))?;
    let Handed { lock, report } = handed;
    let locked = Locked::holding(
        service,
        OpLock::inherited(lock),
        launch.map_or(Who::Watcher, |l| l.by),
    )?;
    let first = match launch {
        Some(order) => locked.launch_here(&locked.pid_lock, order.kind),
        None => locked.locate().and_then(|lookup| {
            lookup.instance.ok_or_else(|| {
                Error::Failed(format!(
                    "{} stopped before its watcher began",
                    service.config.name
                ))
            })
        }),
    };
    let once = launch.is_some_and(|l| l.once);
    let mut answer = match &first {
        Ok(instance) => format!(
            "{} {} {}\n",
            if launch.is_some() {
                "started"
            } else {
                "watching"
            },
            instance.pid(),
            instance.identity.start
        ),
        Err(e @ Error::NotLaunched(_)) => format!("{NOT_LAUNCHED}\n{e}"),
        Err(e) => format!("failed\n{e}"),
    };
    let recorded = match &first {
        Ok(_) if !once => watcher::write(&service.watcher_file(), &WatcherRecord::new(&me, waits)),
        _ => Ok(()),
    };
    if let Err(e) = &recorded {
        let _ = writeln!(
            answer,
            "note: the watcher is not running: it could not write {}: {e}; the timer's next \
             check starts one",
            service.watcher_file().display()
        );
    }
    process::watcher::detach_output(&service.timer_log());
    report.answer(&answer);
    drop(locked);
    super::health_watch::before_waiting(&service.config);
    match (first, recorded) {
        (Ok(instance), Ok(())) if !once => Err(process::watcher::become_waiting(
            &service.config.file,
            &instance.identity,
            waits,
            text,
        )),
        (Ok(_), Ok(())) => Ok(exit_code::OK),
        _ => Ok(exit_code::FAILED),
    }
}

/// The waiting state, if `args` is its command line: blocks until the instance ends, then
/// acts in this same image (no exec on the way to the revival: it would cost a millisecond),
/// and at the end becomes the lean waiting state again. Returns the exit code when it leaves.
#[must_use]
pub fn waiting(args: &[std::ffi::OsString]) -> Option<u8> {
    let mut waiting = process::watcher::waiting_args(args)?;
    process::watcher::begin();
    process::notify::take_handed();
    process::watcher::ready_to_act();
    // Known before the wait, not after it: one read of /proc less on the revival's way.
    let me = process::own_identity();
    let config_file = waiting.config.clone();
    let probing = super::health_watch::probing_config(&config_file, || waiting.last_good());
    let ended = super::reload::watch(
        &config_file,
        probing.as_ref(),
        &waiting.identity,
        waiting.waits,
    );
    let loaded = match config::load_with_text(&waiting.config) {
        Err(e) => match waiting.last_good() {
            Some(text) => {
                // A config that is gone is said once, as the reason nothing is revived.
                if waiting.config.is_file() {
                    note(&format!(
                        "{}{e}; the service is revived with the config as last loaded",
                        stamp(Who::Watcher)
                    ));
                }
                config::parse(&waiting.config, &text).map(|config| (config, text))
            }
            None => Err(e),
        },
        loaded => loaded,
    };
    Some(
        match loaded.and_then(|(config, text)| act(config, text, me, ended, waiting.waits)) {
            Ok(code) => code,
            Err(e) => {
                note(&format!("{}{e}", stamp(Who::Watcher)));
                exit_code::FAILED
            }
        },
    )
}

/// The acting state: records how the instance `ended` (its pid, and how), revives the service
/// (or waits out the guard) until something runs, then becomes the waiting state for it;
/// leaves when the service is no longer kept up. `me`: this watcher's identity, if known.
pub fn act(
    mut config: Config,
    text: String,
    me: Option<Identity>,
    ended: (Pid, Ended),
    waits: Waits,
) -> Result<u8> {
    let me = me
        .or_else(process::own_identity)
        .ok_or_else(|| Error::Failed("the watcher cannot tell its own identity".to_owned()))?;
    let mut text = text;
    // Just loaded: the first check needs no second read.
    let mut fresh = true;
    let mut failures: u32 = 0;
    let mut last_failure = String::new();
    let mut memory = Memory::default();
    let mut ended = Some(ended);
    loop {
        if !std::mem::take(&mut fresh) {
            reload(&mut config, &mut text);
        }
        let limit = config.restart_limit;
        memory.forget_before(limit.interval + limit.cooldown);
        match revive_once(&config, &me, &mut memory, ended.take()) {
            // What the history could not take lives only here: the lean waiting state would
            // lose it, so this image waits.
            Next::Watch(identity) if memory.holds_events() => {
                // A revival made: a later failure of keepup's own is a new episode, said again
                // and retried from the first pause, as in a fresh image.
                failures = 0;
                last_failure.clear();
                ended = Some(super::reload::watch(
                    &config.file,
                    Some(&config),
                    &identity,
                    waits,
                ));
            }
            Next::Watch(identity) => {
                super::health_watch::before_waiting(&config);
                return Err(process::watcher::become_waiting(
                    &config.file,
                    &identity,
                    waits,
                    &text,
                ));
            }
            Next::Leave => return Ok(exit_code::OK),
            Next::Wait(until) => Children::watch().sleep_until(until),
            Next::Again => {}
            Next::Retry(e) => {
                let why = e.to_string();
                if why != last_failure {
                    note(&format!("{}{why}", stamp(Who::Watcher)));
                    last_failure = why;
                }
                let pause = FIRST_RETRY
                    .saturating_mul(1 << failures.min(6))
                    .min(limit.backoff_max.max(FIRST_RETRY));
                failures = failures.saturating_add(1);
                Children::watch().sleep_until(SystemTime::now() + pause);
            }
        }
    }
}

/// The config as it is now, or as last loaded if it no longer loads (said in the log).
fn reload(config: &mut Config, text: &mut String) {
    match config::load_with_text(&config.file) {
        Ok((fresh, fresh_text)) => {
            *config = fresh;
            *text = fresh_text;
        }
        Err(e) if config.file.is_file() => note(&format!(
            "{}{e}; {} is revived with the config as last loaded",
            stamp(Who::Watcher),
            config.name
        )),
        Err(_) => {}
    }
}

/// What to do after a revival check.
enum Next {
    Watch(Identity),
    Leave,
    Wait(SystemTime),
    Again,
    Retry(Error),
}

/// One revival check, under the operation lock, with what the history could not take; first
/// the `exit` event of the instance that `ended`, if it is news.
fn revive_once(
    config: &Config,
    me: &Identity,
    memory: &mut Memory,
    ended: Option<(Pid, Ended)>,
) -> Next {
    let service = Service::open(config.clone());
    // Never a silent death, and never a folder made again where it was: said in the timer's
    // log and the record (status shows it), and left to whoever starts it where it is now.
    if let Some(gone) = gone(&service) {
        let why = format!("{}: not revived: {gone}", config.name);
        note(&format!("{}{why}", stamp(Who::Watcher)));
        service.trouble(&why);
        return Next::Leave;
    }
    let locked = match Locked::acquire(&service, Who::Watcher, false) {
        Ok(locked) => locked,
        Err(e) => return Next::Retry(e),
    };
    locked.memory.replace(std::mem::take(memory));
    let next = revive_locked(&locked, config, me, ended);
    locked.write_later();
    *memory = locked.memory.take();
    next
}

fn revive_locked(
    locked: &Locked<'_>,
    config: &Config,
    me: &Identity,
    ended: Option<(Pid, Ended)>,
) -> Next {
    let service = locked.service;
    // Another watcher took over while this one waited for the lock: it is not ours to act.
    if !service.watched_by(Some(me)) {
        return Next::Leave;
    }
    if let Some((pid, how)) = ended {
        // A service that said STOPPING=1 (sd_notify) meant to end: its exit is no failure,
        // whatever its code (it is revived all the same while its pid lock exists).
        // Read only where the service can say it: the revival's path stays as it was otherwise.
        let intended = config.ready == Some(crate::ready::Ready::Notify)
            && crate::health::read(&service.state_file(crate::health::SUFFIX))
                .is_some_and(|r| r.pid == pid && r.stopping);
        let outcome = if how.clean() || intended {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        let said = if intended {
            " after it said STOPPING=1"
        } else {
            ""
        };
        let what = format!("{} ({pid}) {how}{said}", config.name);
        // Written once the revival is on its way, or it would wait for this write.
        locked.record_later(Kind::Exit, outcome, Some(pid), Some(&what));
    }
    if !config.watch {
        note(&format!(
            "{}{}: watch = false now: the watcher leaves revivals to the timer",
            stamp(Who::Watcher),
            config.name
        ));
        let _ = watcher::remove(&service.watcher_file());
        return Next::Leave;
    }
    // Its own child, reaped here: the watcher knows it ended, and that nothing it launched runs.
    let own_child = ended
        .filter(|(_, how)| *how != Ended::Unknown)
        .map(|(pid, _)| pid);
    match revive(locked, own_child) {
        Ok(Revival::NotKept) => {
            let _ = watcher::remove(&service.watcher_file());
            Next::Leave
        }
        Ok(Revival::Running(instance) | Revival::Revived(instance)) => {
            Next::Watch(instance.identity)
        }
        Ok(Revival::Waiting { until, .. }) => Next::Wait(until),
        // The guard counts it: the next check decides when to try again.
        Ok(Revival::Failed(e)) => {
            note(&e.to_string());
            Next::Again
        }
        Err(e) => Next::Retry(e),
    }
}

/// What is gone that the service's revival needs: its config, or the state folder it is kept
/// in (a moved or removed folder, an old release deleted).
fn gone(service: &Service) -> Option<String> {
    let config = &service.config.file;
    if !config.is_file() {
        return Some(format!(
            "its config {} is gone (moved or removed?): if it moved, `keepup start --config` with \
             its new path takes the service over",
            config.display()
        ));
    }
    let kept_in = service.keeping()?.state_dir;
    (!kept_in.is_dir()).then(|| {
        format!(
            "its state folder {} is gone (moved or removed?), and the pid lock with it: `keepup \
             start` keeps it up again",
            kept_in.display()
        )
    })
}

/// The answer's first word when keepup could not launch the service for a reason of its own.
const NOT_LAUNCHED: &str = "not-launched";

/// The watcher's answer, as its starter reads it: the instance it launched (`Some`), or that
/// it watches the running one (`None`); a failed launch is the error it gives. Notes it adds
/// are passed on.
pub fn take_answer(
    answer: &mut process::watcher::Answer,
    finder: &Finder<'_>,
    name: &str,
) -> Result<Option<Instance>> {
    let (head, rest) = answer.text.split_once('\n').unwrap_or((&answer.text, ""));
    let mut words = head.split(' ');
    let verb = words.next().unwrap_or_default();
    let failed = match verb {
        "failed" => Some(Error::Failed(rest.trim_end().to_owned())),
        NOT_LAUNCHED => Some(Error::NotLaunched(rest.trim_end().to_owned())),
        _ => None,
    };
    if let Some(failed) = failed {
        answer.leaves();
        return Err(failed);
    }
    for line in rest.lines() {
        if let Some(text) = line.strip_prefix("note: ") {
            note(text);
        }
    }
    let identity = match (
        words.next().and_then(|p| p.parse::<i64>().ok()),
        words.next(),
    ) {
        (Some(pid), Some(start)) => crate::pid::Pid::new(pid).map(|pid| Identity {
            pid,
            start: start.to_owned(),
        }),
        _ => None,
    };
    match (verb, identity) {
        ("watching", _) => Ok(None),
        ("started", Some(identity)) => finder.by_identity(&identity).map(Some).ok_or_else(|| {
            Error::Failed(format!(
                "{name} ({}) started, then ended at once",
                identity.pid
            ))
        }),
        _ => Err(Error::Failed(format!(
            "the watcher gave an answer keepup does not know: {head:?}"
        ))),
    }
}
