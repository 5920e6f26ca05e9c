//! Starting a new instance, shared by `start` and `restart`'s revival.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::logfile;
use crate::pidfile::PidLock;
use crate::process::{Finder, Instance, Started, poll_until};
use crate::service::Service;

/// How many of the log's newest lines a failed start shows.
const LOG_TAIL_LINES: usize = 10;

/// Without a `ready` check, how long a just-recognised service must stay up to count as
/// started (supervisord's `startsecs` has the same default).
pub const SETTLE: Duration = Duration::from_secs(1);

/// Between readiness probes.
const PROBE_PAUSE: Duration = Duration::from_millis(50);

/// Spawns the service and waits until it is recognised and then ready (or, with no `ready`
/// check, still up after [`SETTLE`]); on success the instance is recorded and the pid lock
/// points at it. On failure nothing started is left running; the pid lock is left as it was,
/// for the caller to decide.
pub fn launch(service: &Service, finder: &Finder<'_>, lock: &PidLock) -> Result<Instance> {
    let config = &service.config;
    if service.pid_file.is_dir() {
        return Err(Error::Failed(format!(
            "pid lock {} is a directory: remove it, then start again",
            service.pid_file.display()
        )));
    }
    let log_start = std::fs::metadata(&config.log).map_or(0, |m| m.len());
    let mut child = finder.spawn()?;
    let deadline = Instant::now() + config.start_timeout;
    let failure = match finder.wait_recognised(&mut child, deadline) {
        Ok(Started::Running(instance)) => match confirm(service, &mut child, deadline) {
            Ok(()) => match service.remember(&instance, lock) {
                Ok(()) => return Ok(instance),
                // Running but untracked is worse than not running: end it.
                Err(e) => e.to_string(),
            },
            Err(why) => why,
        },
        Ok(Started::Exited(status)) => describe_exit(status),
        Ok(Started::TimedOut) => format!(
            "its process was not recognised within {} (search = \"{}\"): does startup run the entry?",
            humantime::format_duration(config.start_timeout),
            config.search.name()
        ),
        Err(e) => e.to_string(),
    };
    finder.abandon(&mut child);
    Err(Error::Failed(format!(
        "{} failed to start: {failure}{}",
        config.name,
        log_tail(&config.log, log_start)
    )))
}

/// Confirms a recognised service: its `ready` check passes before `deadline`, or without one,
/// it stays up for [`SETTLE`]. Says why not.
fn confirm(service: &Service, child: &mut Child, deadline: Instant) -> Result<(), String> {
    let config = &service.config;
    let exited = |child: &mut Child| child.try_wait().ok().flatten();
    let Some(ready) = &config.ready else {
        let settle = Instant::now() + SETTLE.min(config.start_timeout);
        let mut status = None;
        poll_until(settle, || {
            status = exited(child);
            status.is_some()
        });
        return status.map_or(Ok(()), |s| Err(describe_exit(s)));
    };
    loop {
        if let Some(status) = exited(child) {
            return Err(describe_exit(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match ready.probe(config.dir(), left) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "it was not ready within {} (ready = \"{ready}\": {last})",
                humantime::format_duration(config.start_timeout)
            ));
        }
        // The last probe runs at the deadline itself.
        std::thread::sleep(PROBE_PAUSE.min(deadline - now));
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited at once with code {code}"),
        (None, Some(signal)) => format!("it was killed at once by signal {signal}"),
        (None, None) => format!("it ended at once ({status})"),
    }
}

/// The last lines the service wrote since byte `from`, ready to follow an error line.
fn log_tail(log: &Path, from: u64) -> String {
    if !log.is_file() {
        return String::new();
    }
    match logfile::tail(log, LOG_TAIL_LINES, from) {
        Ok(lines) if lines.is_empty() => format!("\n(it wrote nothing to {})", log.display()),
        Ok(lines) => format!("\nlast lines of {}:\n{}", log.display(), lines.join("\n")),
        Err(_) => String::new(),
    }
}
