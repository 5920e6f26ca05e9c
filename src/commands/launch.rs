//! Starting a new instance, shared by `start` and `restart`'s revival.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::health::{self, HealthRecord};
use crate::logfile;
use crate::notify::{self, Notice};
use crate::pid::Pid;
use crate::pidfile::PidLock;
use crate::process::{self, Finder, Instance, Spawned, Started, poll_until};
use crate::ready::Ready;
use crate::service::Service;

/// How many of the log's newest lines a failed start shows.
const LOG_TAIL_LINES: usize = 10;

/// Without a `ready` check, how long a just-recognised service must stay up to count as
/// started (supervisord's `startsecs` has the same default).
pub const SETTLE: Duration = Duration::from_secs(1);

/// Between readiness probes.
const PROBE_PAUSE: Duration = Duration::from_millis(50);

/// The probe before launching, which should find nothing: refused at once on loopback.
const PRECHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// At least how long a check waits for some process to accept its connection, to learn which
/// generation did (the old one takes it within a moment).
const ACCEPT_WAIT: Duration = Duration::from_millis(250);

/// How long a service that forked into the background may take to leave its daemon.
const DAEMON_GRACE: Duration = Duration::from_secs(1);

/// Spawns the service and waits until it is recognised and then ready (or, with no `ready`
/// check, still up after [`SETTLE`]); on success the instance is recorded and the pid lock
/// points at it. On failure nothing started is left running (or, for a service that forked
/// into the background unrecognised, the message says how to stop what it left); the pid
/// lock is left as it was, for the caller to decide.
/// `released`: called once the process may run its program (what waited for the launch to be
/// on its way, such as the history's word of the death before it).
pub fn launch(
    service: &Service,
    finder: &Finder<'_>,
    lock: &PidLock,
    released: &dyn Fn(),
) -> Result<Instance> {
    launch_generation(service, finder, lock, false, released)
}

/// As [`launch`], for a new generation beside one that serves on the same held sockets
/// (`reload`): its ready check counts only an answer from the new generation's own processes.
pub fn launch_beside(service: &Service, finder: &Finder<'_>, lock: &PidLock) -> Result<Instance> {
    launch_generation(service, finder, lock, true, &|| {})
}

fn launch_generation(
    service: &Service,
    finder: &Finder<'_>,
    lock: &PidLock,
    beside: bool,
    released: &dyn Fn(),
) -> Result<Instance> {
    let config = &service.config;
    if service.pid_file().is_dir() {
        return Err(Error::Failed(format!(
            "pid lock {} is a directory: remove it, then start again",
            service.pid_file().display()
        )));
    }
    check_runnable(service)?;
    // On a socket keepup holds, the check would ask the queue of keepup's own socket.
    if config.listen.is_empty() {
        check_ready_is_not_taken(service)?;
    }
    let log_start = std::fs::metadata(&config.log).map_or(0, |m| m.len());
    let mut env = service
        .launch_env()
        .map_err(|e| Error::Failed(format!("{} not started: {e}", config.name)))?;
    // A notify socket or watchdog keepup's own caller was given (keepup run from a systemd
    // unit) is not the service's: it gets keepup's, or none.
    for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        env.remove(std::ffi::OsStr::new(key));
    }
    if config.ready == Some(Ready::Notify) {
        notify_socket(service, &mut env).map_err(|e| not_launched(config, &e))?;
    }
    process::become_subreaper();
    let sockets = process::sockets::hold(&config.listen, &config.name)?;
    let mut child = finder.spawn(env, &sockets).map_err(|e| match e {
        Error::Io { .. } => not_launched(config, &e),
        e => e,
    })?;
    let deadline = Instant::now() + config.start_timeout;
    let outcome = match finder.started(&mut child) {
        // Recorded before it runs its program (it waits at a gate until then), and before it is
        // confirmed: if this keepup dies meanwhile (a watcher killed mid-revival), either the
        // process never runs the service, or every later command knows it. Running but
        // untracked is worse than not running: a failed record ends it.
        Ok(Started::Running(instance)) => {
            if let Err(e) = service.remember_spawned(&instance) {
                Err(Failure::Own(e))
            } else if let Err(why) = child.release() {
                Err(Failure::Service(why))
            } else if let Err(e) = service.point_lock(&instance, lock) {
                Err(Failure::Own(e))
            } else {
                released();
                let mut exited = || child.try_wait().ok().flatten().map(describe_exit);
                // It leads its own group (a new session): its workers answer for it too.
                let group = beside.then(|| instance.pid().get());
                match confirm(service, finder, &instance, &mut exited, deadline, group) {
                    Ok(named) => named
                        .map_or(Ok(instance), |named| {
                            service.remember(&named, lock).map(|()| named)
                        })
                        .and_then(|main| service.settled().map(|()| main))
                        .map_err(Failure::Own),
                    Err(why) => match child.try_wait() {
                        Ok(Some(status)) if status.success() => {
                            adopt_daemon(service, finder, &child, lock, deadline)
                                .map_err(Failure::Service)
                        }
                        _ => Err(Failure::Service(why)),
                    },
                }
            }
        }
        Ok(Started::Exited(status)) if status.success() => {
            adopt_daemon(service, finder, &child, lock, deadline).map_err(Failure::Service)
        }
        Ok(Started::Exited(status)) => Err(Failure::Service(describe_exit(status))),
        Err(e) => Err(Failure::Own(e)),
    };
    let failure = match outcome {
        Ok(instance) => return Ok(instance),
        Err(failure) => failure,
    };
    finder.abandon(&mut child);
    match failure {
        Failure::Own(e) => Err(not_launched(config, &e)),
        Failure::Service(why) => Err(Error::Failed(format!(
            "{} failed to start: {why}{}",
            config.name,
            log_tail(&config.log, log_start)
        ))),
    }
}

/// Why a launch did not make a running service.
enum Failure {
    /// The service failed: it could not run, exited, or was not ready in time.
    Service(String),
    /// keepup did (its files could not be written, the process could not be watched): the
    /// service is not to blame.
    Own(Error),
}

fn not_launched(config: &crate::config::Config, e: &Error) -> Error {
    Error::NotLaunched(format!("{} not launched: {e}", config.name))
}

/// When startup runs the entry itself, it must be executable and, unless it is a binary, say
/// by its `#!` line what runs it (or the system runs it with /bin/sh: "import: not found").
fn check_runnable(service: &Service) -> Result<()> {
    let config = &service.config;
    let Some(program) = config.startup.first() else {
        return Ok(());
    };
    let program = config.dir().join(program);
    // The entry as the config resolved it, most often word for word (no path walked again).
    let runs_entry = config.resolved.as_ref().is_some_and(|resolved| {
        program == *resolved || program.canonicalize().is_ok_and(|p| p == *resolved)
    });
    if !program.is_absolute() || !runs_entry {
        return Ok(());
    }
    let entry = config.entry.display();
    let interpreter = match config.entry.extension().and_then(|e| e.to_str()) {
        Some("py") => "python3",
        Some("js" | "mjs") => "node",
        Some("rb") => "ruby",
        Some("pl") => "perl",
        Some("sh") => "sh",
        _ => "INTERPRETER",
    };
    let through = format!("startup = \"{interpreter} {{entry}}\"");
    if !crate::files::is_executable(&program) {
        return Err(Error::Failed(format!(
            "{} not started: {entry} is not executable: chmod +x {entry}, or run it through its \
             interpreter with {through}",
            config.name
        )));
    }
    let head = crate::files::read_head(&program, 4).unwrap_or_default();
    let n = head.len();
    let binary = [
        &b"\x7fELF"[..],
        b"\xcf\xfa\xed\xfe",
        b"\xce\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ];
    if n >= 2 && !head.starts_with(b"#!") && !binary.contains(&&head[..n]) {
        return Err(Error::Failed(format!(
            "{} not started: {entry} has no #! line, so the system would run it with /bin/sh: \
             make its first line say what runs it (#!/usr/bin/env {interpreter}), or use {through}",
            config.name
        )));
    }
    Ok(())
}

/// A `ready` check that passes before anything was started would pass for someone else's
/// server (the port is taken), and the service would die unseen: refuse at once, naming who
/// answers.
fn check_ready_is_not_taken(service: &Service) -> Result<()> {
    let config = &service.config;
    let Some(ready) = &config.ready else {
        return Ok(());
    };
    if ready.probe(config.dir(), PRECHECK_TIMEOUT).is_err() {
        return Ok(());
    }
    let who = match ready.port() {
        Some(port) => process::ports::describe(port),
        None => "stop what makes it pass, or make the check one that only this service passes"
            .to_owned(),
    };
    Err(Error::Failed(format!(
        "{} not started: ready = \"{ready}\" already passes before anything was started, so it \
         cannot tell that {} is up: {who}",
        config.name, config.name
    )))
}

/// The first process exited with success: it may have forked into the background, leaving its
/// daemon to keepup (its subreaper). A daemon the search rule recognises is adopted (and said
/// to be better run in the foreground); otherwise the message says what it left, and how to
/// stop it.
fn adopt_daemon(
    service: &Service,
    finder: &Finder<'_>,
    child: &Spawned,
    lock: &PidLock,
    deadline: Instant,
) -> Result<Instance, String> {
    let config = &service.config;
    let foreground = "keepup needs it to stay in the foreground (its --foreground, --no-daemon or \
                      `daemon off` option, as under systemd's Type=simple)";
    let look_until = deadline.min(Instant::now() + DAEMON_GRACE);
    // A double fork passes through an intermediate process that exits at once: a recognised
    // stray that dies while being confirmed sends keepup looking again.
    let instance = loop {
        let mut strays = Vec::new();
        let mut found = None;
        poll_until(look_until, || {
            strays = finder.strays(child);
            found = strays
                .iter()
                .find_map(|pid| finder.by_rule(*pid).ok().flatten());
            found.is_some()
        });
        let Some(instance) = found else {
            return Err(unrecognised_daemon(
                finder,
                &strays,
                &config.name,
                foreground,
            ));
        };
        let mut exited = || {
            finder
                .by_identity(&instance.identity)
                .is_none()
                .then(|| "its background process exited at once".to_owned())
        };
        match confirm(service, finder, &instance, &mut exited, deadline, None) {
            Ok(named) => break named.unwrap_or(instance),
            Err(_) if Instant::now() < look_until => {}
            Err(why) => return Err(why),
        }
    };
    service
        .remember(&instance, lock)
        .map_err(|e| e.to_string())?;
    super::note(&format!(
        "{} forked into the background: adopted its process {}; {foreground}, so that its exit is \
         seen at once",
        config.name,
        instance.pid()
    ));
    Ok(instance)
}

/// Why a service that forked into the background failed: what it left, and how to stop it.
fn unrecognised_daemon(
    finder: &Finder<'_>,
    strays: &[Pid],
    name: &str,
    foreground: &str,
) -> String {
    if strays.is_empty() {
        return "it exited at once with code 0".to_owned();
    }
    let left: Vec<String> = strays
        .iter()
        .map(|p| format!("{p} ({})", finder.command_of(*p)))
        .collect();
    let pids: Vec<String> = strays.iter().map(ToString::to_string).collect();
    format!(
        "it forked into the background and its first process exited, leaving {}, which keepup \
         does not recognise as {name}: {foreground}; to stop what it left: kill {}",
        left.join(", "),
        pids.join(" ")
    )
}

/// Confirms a recognised service, `main`: its `ready` check passes before `deadline` and it
/// is still alive then, or without a check, it stays up for [`SETTLE`]. `exited` says why it
/// is gone, if it is. `group`: only an answer from a process of this group counts, on the
/// sockets keepup holds. Says why not; on success, the process it named its main one
/// (`MAINPID=`), if it named another.
fn confirm(
    service: &Service,
    finder: &Finder<'_>,
    main: &Instance,
    exited: &mut dyn FnMut() -> Option<String>,
    deadline: Instant,
    group: Option<i32>,
) -> Result<Option<Instance>, String> {
    let config = &service.config;
    if config.ready == Some(Ready::Notify) {
        return notified(service, finder, main, exited, deadline);
    }
    let Some(ready) = &config.ready else {
        let settle = Instant::now() + SETTLE.min(config.start_timeout);
        let mut why = None;
        poll_until(settle, || {
            why = exited();
            why.is_some()
        });
        return why.map_or(Ok(None), Err);
    };
    loop {
        if let Some(why) = exited() {
            return Err(why);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let taker = |server: SocketAddr, client: SocketAddr| match group {
            Some(group) if holds(&config.listen, server) => {
                let wait = left.max(ACCEPT_WAIT);
                process::ports::accepted_in_group(server, client, group, Instant::now() + wait)
            }
            _ => Ok(()),
        };
        let last = match ready.probe_taken_by(config.dir(), left, &taker) {
            // Whatever answered, a service that died meanwhile has not started.
            Ok(()) => return exited().map_or(Ok(None), Err),
            Err(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "it was not ready within {} (ready = \"{ready}\": {last}); if it needs longer \
                 to start, raise start_timeout in {} (start_timeout = \"{}\")",
                crate::text::duration_text(config.start_timeout),
                config.file.display(),
                longer(config.start_timeout)
            ));
        }
        // The last probe runs at the deadline itself.
        std::thread::sleep(PROBE_PAUSE.min(deadline - now));
    }
}

/// The notify socket, bound (or kept) by this process, and named in the service's `env`
/// (`NOTIFY_SOCKET`, and `WATCHDOG_USEC` with a watchdog).
fn notify_socket(service: &Service, env: &mut crate::environment::Environment) -> Result<()> {
    let address = notify::Address::for_path(&service.state_file(notify::SUFFIX));
    process::notify::open(&address)?;
    // What an earlier instance sent last is not the new one's word.
    process::notify::drain();
    env.insert("NOTIFY_SOCKET".into(), address.env_value());
    if let Some(watchdog) = service.config.watchdog {
        env.insert(
            "WATCHDOG_USEC".into(),
            watchdog.as_micros().to_string().into(),
        );
    }
    Ok(())
}

/// Confirms a service with `ready = "notify"`: `READY=1` from it (its main process `main`, its
/// family, see `process::notify`) before `deadline`, which `EXTEND_TIMEOUT_USEC=` moves;
/// `STATUS=` and the like are kept for `status`. `MAINPID=` naming another process of the
/// service makes that one the main process (the one returned), whose end is the service's from
/// then on: a daemon's first process may leave once its child has said so.
fn notified(
    service: &Service,
    finder: &Finder<'_>,
    main: &Instance,
    exited: &mut dyn FnMut() -> Option<String>,
    mut deadline: Instant,
) -> Result<Option<Instance>, String> {
    let config = &service.config;
    let record_file = service.state_file(health::SUFFIX);
    let mut record = HealthRecord::new(main.pid());
    let mut named: Option<Instance> = None;
    loop {
        // Read before the exit is looked at: what it said may name the process that runs on.
        let mut ready = false;
        let mut said = false;
        let mut identity = named.as_ref().unwrap_or(main).identity.clone();
        for datagram in process::notify::receive(&identity) {
            said = true;
            for notice in notify::parse(&datagram) {
                match notice {
                    Notice::Ready => ready = true,
                    Notice::ExtendTimeout(more) => {
                        deadline = deadline.max(Instant::now() + more);
                    }
                    Notice::MainPid(pid) => match finder.named_main(&identity, pid) {
                        Ok(new) if new.pid() != identity.pid => {
                            record.moved_to(new.pid());
                            identity = new.identity.clone();
                            named = Some(new);
                        }
                        Ok(_) => {}
                        Err(why) => super::note(&format!(
                            "{} ({}): ignored MAINPID={pid}: {why}",
                            config.name, identity.pid
                        )),
                    },
                    notice => record.note(notice),
                }
            }
        }
        if said {
            let _ = health::write(&record_file, &record);
        }
        let gone = match &named {
            Some(named) => finder.by_identity(&named.identity).is_none().then(|| {
                format!(
                    "the process it named its main one ({}, MAINPID=) exited",
                    named.pid()
                )
            }),
            None => exited(),
        };
        if let Some(why) = gone {
            return Err(why);
        }
        if ready {
            return Ok(named);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "it sent no READY=1 within {} (ready = \"notify\": keepup passes NOTIFY_SOCKET, \
                 and waits for the service to say it is ready, as systemd's Type=notify does); if \
                 it needs longer to start, raise start_timeout in {} (start_timeout = \"{}\")",
                crate::text::duration_text(config.start_timeout),
                config.file.display(),
                longer(config.start_timeout)
            ));
        }
        let _ = process::notify::wait(PROBE_PAUSE.min(deadline - now));
    }
}

/// Whether `server` is the address of a TCP socket of `listen` (one bound to every address
/// takes connections to each).
fn holds(listen: &[crate::listen::Listen], server: SocketAddr) -> bool {
    listen.iter().any(|l| match &l.address {
        crate::listen::Address::Tcp(held) => {
            held.port() == server.port() && (held.ip() == server.ip() || held.ip().is_unspecified())
        }
        crate::listen::Address::Unix(_) => false,
    })
}

/// A `start_timeout` to suggest to a service that was not ready in `time`: twice as long, in
/// whole seconds, as the config writes it.
fn longer(time: Duration) -> String {
    let seconds = time.saturating_mul(2).as_secs_f64().ceil();
    humantime::format_duration(Duration::from_secs_f64(seconds.max(1.0)))
        .to_string()
        .replace(' ', "")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_start_timeout_reads_back_as_a_duration() {
        for (time, suggested) in [
            (Duration::from_secs(5), "10s"),
            (Duration::from_millis(750), "2s"),
            (Duration::from_secs(45), "1m30s"),
        ] {
            assert_eq!(longer(time), suggested);
            let back = humantime::parse_duration(suggested).unwrap();
            assert!(back >= time * 2);
        }
    }
}
