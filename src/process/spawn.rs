//! Starting the service: detached, in its own session and process group, with a clean
//! signal state, output to the log; and what a start leaves when it goes wrong (a child that
//! exited, one that forked into the background).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::sys::signal as nix_signal;
use nix::unistd::Pid as NixPid;

use super::{Finder, Instance, instance, os};
use crate::error::{Error, Result};
use crate::pid::Pid;

/// The outcome of waiting for a just-started service.
#[derive(Debug)]
pub enum Started {
    Running(Instance),
    Exited(ExitStatus),
}

impl Finder<'_> {
    /// Starts the service detached: a new session (so a terminal's hangup does not reach it and
    /// its group is its own), stdin from /dev/null, output appended to the log, cwd = the
    /// entry's folder.
    pub fn spawn(&self) -> Result<Child> {
        let config = self.config;
        let log = crate::files::open_append(&config.log, "opening log", true, true)?;
        let log_err = log
            .try_clone()
            .map_err(Error::io("opening log", &config.log))?;
        let (program, args) = config
            .startup
            .split_first()
            .ok_or_else(|| Error::Failed("startup is empty".into()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(config.dir())
            .envs(&config.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; setsid,
        // sigprocmask and sigaction are, and nothing here allocates.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                reset_signals();
                Ok(())
            });
        }
        command.spawn().map_err(|e| {
            Error::Failed(format!(
                "{}: cannot run {}: {}",
                config.name,
                Path::new(program).display(),
                e
            ))
        })
    }

    /// Live processes whose parent is keepup, other than `child`: what a service that forked
    /// into the background left behind, once keepup is their subreaper ([`become_subreaper`]).
    #[must_use]
    pub fn strays(&self, child: &Child) -> Vec<Pid> {
        let child = i32::try_from(child.id()).unwrap_or(0);
        os::pids()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| *p != child && os::ppid(*p) == Some(self.me))
            .filter(|p| os::facts(*p).is_some_and(|f| !f.zombie))
            .filter_map(|p| Pid::new(p.into()))
            .collect()
    }

    /// A stray's command line, for a message.
    #[must_use]
    pub fn command_of(&self, pid: Pid) -> String {
        command_line(pid.get())
    }

    /// The child just spawned, as the instance: keepup started it, so it is the service
    /// whatever its argv says or later says (nginx and redis rewrite theirs), known from here on
    /// by its identity. `Exited` if it has already ended.
    pub fn started(&self, child: &mut Child) -> Result<Started> {
        let pid = Pid::new(child.id().into())
            .ok_or_else(|| Error::Failed(format!("spawned an impossible pid {}", child.id())))?;
        match child.try_wait() {
            Ok(Some(status)) => Ok(Started::Exited(status)),
            Ok(None) => Ok(match os::facts(pid.get()) {
                Some(facts) if !facts.zombie => Started::Running(instance(pid, facts)),
                _ => match child.wait() {
                    Ok(status) => Started::Exited(status),
                    Err(e) => return Err(Error::io("waiting for", "the started process")(e)),
                },
            }),
            Err(e) => Err(Error::io("waiting for", "the started process")(e)),
        }
    }

    /// Ends a child that was never recognised: its group, which it leads and which cannot be
    /// reused while the child is not reaped.
    pub fn abandon(&self, child: &mut Child) {
        if let Some(pid) = Pid::new(child.id().into()) {
            let _ = nix_signal::killpg(NixPid::from_raw(pid.get()), nix_signal::Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A process's command line, words joined by spaces, for messages; empty when unreadable.
pub(super) fn command_line(pid: i32) -> String {
    let words = os::cmdline(pid).unwrap_or_default();
    let words: Vec<String> = words
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    words.join(" ")
}

/// Makes keepup the reaper of what its children leave: a service that forks into the
/// background and lets its first process exit leaves its daemon to keepup, where `start` can
/// find it, instead of to init.
pub fn become_subreaper() {
    os::become_subreaper();
}

/// The service should not inherit keepup's caller's ignored or blocked signals (cron, nohup),
/// or `stop` could not stop it.
pub(super) fn reset_signals() {
    use nix_signal::{SigHandler, SigSet, SigmaskHow, Signal as S};
    let _ = nix_signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for signal in [
        S::SIGHUP,
        S::SIGINT,
        S::SIGQUIT,
        S::SIGTERM,
        S::SIGUSR1,
        S::SIGUSR2,
        S::SIGPIPE,
    ] {
        // SAFETY: restoring the default disposition installs no handler.
        let _ = unsafe { nix_signal::signal(signal, SigHandler::SigDfl) };
    }
}
