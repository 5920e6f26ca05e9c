//! `logs`: the service log's tail, and with `--follow` whatever it writes next.

use std::io::Write;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exit_code;
use crate::logfile;
use crate::oplock;
use crate::service::Service;

/// The operation lock while nobody holds it (rotations run under it), looked for every 20 ms
/// for up to [`FREE_WAIT`]; after that, `None`: a long holder (a `stop` waiting out its
/// timeout) must not keep `logs` from answering.
fn between_rotations(lock_file: &std::path::Path) -> Result<Option<oplock::OpLock>> {
    let until = std::time::Instant::now() + FREE_WAIT;
    loop {
        let guard = oplock::try_acquire_existing(lock_file)?;
        if guard.is_some() || !lock_file.exists() || std::time::Instant::now() >= until {
            return Ok(guard);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long `logs` waits for a rotation under way to end before it reads anyway.
const FREE_WAIT: Duration = Duration::from_secs(2);

/// How often `--follow` looks for new lines.
const FOLLOW_PAUSE: Duration = Duration::from_millis(200);

pub fn run(service: &Service, lines: usize, follow: bool) -> Result<u8> {
    // The log the recorded instance writes, if it runs (a switched release): what keepup
    // started or adopted has a record, so no search of the process table is needed to tell.
    let running = service
        .record()
        .and_then(|record| service.finder().by_identity(&record.identity()));
    let log = &service.log_of(running.as_ref());
    if !log.is_file() {
        return Err(Error::Failed(format!(
            "{} has no log at {}",
            service.config.name,
            log.display()
        )));
    }
    // Where following starts is fixed before the tail is read up to it: a line written in
    // between is then printed once, by the follower, instead of by neither. Both are read
    // between rotations (a length taken in the middle of one would start mid-line).
    let lock_file = service.lock_file();
    let guard = between_rotations(&lock_file)?;
    let mut follower = logfile::Follower::new(log, service.config.log_keep)?;
    let tail = logfile::tail_before(log, lines, 0, follower.position())?;
    drop(guard);
    let mut out = std::io::stdout().lock();
    for line in tail {
        // A closed pipe (`keepup logs | head`) ends the command quietly.
        if writeln!(out, "{line}").is_err() {
            return Ok(exit_code::OK);
        }
    }
    if !follow {
        return Ok(exit_code::OK);
    }
    loop {
        let _ = out.flush();
        std::thread::sleep(FOLLOW_PAUSE);
        // Rotations run under the operation lock: read only while no one holds it, so a
        // rotation is never seen half done. A holder (a `stop` waiting) only delays the next look.
        let lock_file_exists = lock_file.exists();
        let guard = oplock::try_acquire_existing(&lock_file)?;
        if lock_file_exists && guard.is_none() {
            continue;
        }
        let polled = follower.poll(&mut out);
        drop(guard);
        if let Err(e) = polled {
            // A closed pipe (`keepup logs -f | head`) ends the command quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(exit_code::OK);
            }
            return Err(Error::io("following log", log)(e));
        }
    }
}
