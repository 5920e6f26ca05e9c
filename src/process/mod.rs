//! Recognising the service among running processes, starting it, and signalling it.
//!
//! This is the only module that asks the OS about processes or sends signals. Platform code
//! (how to read a process's facts) sits in `linux.rs` (`/proc`) and `macos.rs` (sysinfo),
//! behind the same few functions; the rules for what counts as the service are here, once.
//!
//! Safety rules kept here:
//! - a signal goes only to an [`Instance`], made by recognising a live process, and its identity
//!   (pid and start time) is checked again right before each signal;
//! - keepup itself, its ancestors, zombies and other users' processes are never recognised;
//! - a process group is signalled only when the service leads it and keepup is not in it.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::signal as nix_signal;
use nix::unistd::Pid as NixPid;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Search};
use crate::error::{Error, Result};
use crate::pid::Pid;
use crate::signal::Signal;
use crate::startup::Pattern;

pub mod exit;
#[cfg(target_os = "linux")]
mod linux;
pub mod lsof;
pub mod ports;
pub mod watcher;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;
// No macOS machine builds this project's CI: Linux test builds type-check the macOS code
// against the same sysinfo API (a dev-dependency everywhere), so it cannot rot unseen.
#[cfg(all(test, target_os = "linux"))]
#[path = "macos.rs"]
#[allow(dead_code)]
mod macos_type_check;

/// What the platform tells of one process.
#[derive(Clone, Debug)]
pub struct Facts {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub uid: u32,
    pub zombie: bool,
    /// Unique for this process across pid reuse and reboots (boot id and start tick on Linux).
    pub start: String,
    /// The start in the platform's unit (clock ticks since boot on Linux, epoch seconds on macOS).
    start_ticks: u64,
    /// Resident memory in the platform's unit (pages on Linux, bytes on macOS).
    rss_pages: u64,
}

/// What makes a started process unique: recorded when keepup starts or adopts it, compared
/// before every signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub pid: Pid,
    pub start: String,
}

/// A running process recognised as the service.
#[derive(Clone, Debug)]
pub struct Instance {
    pub identity: Identity,
    facts: Facts,
}

impl Instance {
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.identity.pid
    }

    #[must_use]
    pub fn started_at(&self) -> Option<SystemTime> {
        os::started_at(&self.facts)
    }

    #[must_use]
    pub fn memory_bytes(&self) -> Option<u64> {
        os::rss_bytes(&self.facts)
    }

    /// The whole service, as systemd counts a unit: the live processes of the group it leads
    /// (its workers too) and their resident memory; only itself when it leads no group.
    #[must_use]
    pub fn group_usage(&self) -> Usage {
        let alone = Usage {
            processes: 1,
            memory_bytes: self.memory_bytes(),
        };
        if !self.leads_group() {
            return alone;
        }
        // Its workers are its descendants (a live leader's group is its family): look there
        // first, and through the whole table only where the kernel cannot tell a family.
        let Some(pids) = os::family(self.facts.pid).or_else(|| os::pids().ok()) else {
            return alone;
        };
        let members: Vec<Facts> = pids
            .into_iter()
            .filter(|p| os::live_in_group(*p, self.facts.pgid))
            .filter_map(os::facts)
            .collect();
        if members.is_empty() {
            return alone;
        }
        Usage {
            processes: members.len(),
            memory_bytes: members.iter().map(os::rss_bytes).sum(),
        }
    }

    /// Whether it leads its own process group (as an instance keepup started does): then the
    /// members left when it dies are its leftovers.
    #[must_use]
    pub fn leads_group(&self) -> bool {
        self.facts.pgid == self.facts.pid
    }

    /// The group to signal: the service's own, when it leads one that keepup is not in.
    fn group(&self) -> Option<Pid> {
        let own = nix::unistd::getpgrp().as_raw();
        (self.facts.pgid == self.facts.pid && self.facts.pgid != own).then_some(self.identity.pid)
    }
}

/// How much of the machine a running service takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub processes: usize,
    pub memory_bytes: Option<u64>,
}

/// What is left of a dead instance's process group: workers whose leader has ended. The
/// group's id cannot be given to a new process while any member lives, so the group is still
/// the dead instance's, whatever its members run and whoever they run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftovers {
    pub group: Pid,
    pub members: Vec<Pid>,
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pids: Vec<String> = self.members.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} of the dead instance {} ({})",
            if self.members.len() == 1 {
                "1 process".to_owned()
            } else {
                format!("{} processes", self.members.len())
            },
            self.group,
            pids.join(", ")
        )
    }
}

/// Finds the service's processes for one config.
pub struct Finder<'a> {
    config: &'a Config,
    /// Where the entry resolved when the recorded instance started (it may resolve elsewhere
    /// now, after a release switch).
    recorded_entry: Option<std::path::PathBuf>,
    me: i32,
    uid: u32,
    ancestors: OnceCell<HashSet<i32>>,
}

impl<'a> Finder<'a> {
    #[must_use]
    pub fn new(config: &'a Config) -> Self {
        Finder {
            config,
            recorded_entry: None,
            me: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            uid: crate::ownership::euid(),
            ancestors: OnceCell::new(),
        }
    }

    /// Also takes the entry as it resolved when the recorded instance started.
    #[must_use]
    pub fn with_recorded_entry(mut self, resolved: Option<std::path::PathBuf>) -> Self {
        self.recorded_entry = resolved;
        self
    }

    /// keepup's parent chain: a `sh -c "keepup restart"` above us must never be taken for
    /// the service, whatever its argv says.
    fn ancestors(&self) -> &HashSet<i32> {
        self.ancestors.get_or_init(|| {
            let mut chain = HashSet::new();
            let mut pid = self.me;
            while let Some(parent) = os::ppid(pid) {
                if parent <= 1 || !chain.insert(parent) {
                    break;
                }
                pid = parent;
            }
            chain
        })
    }

    /// The facts of `pid` if it may be the service at all: alive, ours, not a zombie, not
    /// keepup or one of its ancestors.
    fn eligible(&self, pid: Pid) -> Option<Facts> {
        let pid = pid.get();
        if pid == self.me {
            return None;
        }
        let facts = os::facts(pid)?;
        (!facts.zombie && facts.uid == self.uid && !self.ancestors().contains(&pid))
            .then_some(facts)
    }

    /// Whether any live process has `pid` (whatever it is).
    #[must_use]
    pub fn exists(&self, pid: Pid) -> bool {
        os::facts(pid.get()).is_some_and(|f| !f.zombie)
    }

    /// The process recorded as `identity`, if it still runs: same pid, same start.
    #[must_use]
    pub fn by_identity(&self, identity: &Identity) -> Option<Instance> {
        let facts = self.eligible(identity.pid)?;
        (facts.start == identity.start).then(|| Instance {
            identity: identity.clone(),
            facts,
        })
    }

    /// `pid`, if the search rule recognises it as the service.
    pub fn by_rule(&self, pid: Pid) -> Result<Option<Instance>> {
        let Some(facts) = self.eligible(pid) else {
            return Ok(None);
        };
        let cmdline = os::cmdline(pid.get()).unwrap_or_default();
        Ok(self
            .matches(pid.get(), &cmdline)?
            .then(|| instance(pid, facts)))
    }

    /// Every running instance of the service, oldest first. A process whose parent is also an
    /// instance (a worker forked by the service) is part of its parent, not another instance;
    /// a member of a `dead` group (the leftovers of an instance that died) is none.
    pub fn scan(&self, dead: &[Pid]) -> Result<Vec<Instance>> {
        let pids = os::pids().map_err(Error::io("listing processes in", "/proc"))?;
        let mut found = Vec::new();
        for pid in pids.into_iter().filter_map(|p| Pid::new(p.into())) {
            if pid.get() == self.me || os::uid(pid.get()) != Some(self.uid) {
                continue;
            }
            // Cheapest first: the argv filter (or, by executable, one readlink) decides for
            // almost every process; only a match is checked for being eligible at all.
            let by_argv = self.config.search != Search::ProcExe
                || self
                    .config
                    .pattern
                    .as_ref()
                    .is_some_and(Pattern::needs_argv);
            let cmdline = if by_argv {
                os::cmdline(pid.get()).unwrap_or_default()
            } else {
                Vec::new()
            };
            let candidate = !by_argv
                || self.may_match_exe()
                || self
                    .config
                    .pattern
                    .as_ref()
                    .is_some_and(|p| p.may_match(&cmdline, self.recorded_entry.as_deref()));
            if !candidate || !self.matches(pid.get(), &cmdline)? {
                continue;
            }
            if let Some(facts) = self.eligible(pid)
                && !dead.iter().any(|g| g.get() == facts.pgid)
            {
                found.push(instance(pid, facts));
            }
        }
        let pids: HashSet<i32> = found.iter().map(|i| i.facts.pid).collect();
        found.retain(|i| !pids.contains(&i.facts.ppid));
        found.sort_by_key(|i| (i.facts.start_ticks, i.facts.pid));
        Ok(found)
    }

    /// Under `auto`, a native entry is recognised by its executable, whatever its argv.
    fn may_match_exe(&self) -> bool {
        self.config.search == Search::Auto
            && self
                .config
                .pattern
                .as_ref()
                .is_none_or(|p| p.interpreter.is_none() && p.command.is_none() && p.args.is_none())
    }

    /// The search rule, on one process.
    fn matches(&self, pid: i32, cmdline: &[u8]) -> Result<bool> {
        let config = self.config;
        let also = self.recorded_entry.as_deref();
        let argv: Vec<&OsStr> = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(os_str)
            .collect();
        let by_exe = || {
            config.pattern.as_ref().is_none_or(|p| p.accepts_exe(&argv))
                && os::exe(pid).is_some_and(|exe| {
                    exe == config.entry
                        || Some(exe.as_path()) == config.resolved.as_deref()
                        || Some(exe.as_path()) == also
                })
        };
        let by_argv = |cwd: &mut dyn FnMut() -> Option<std::path::PathBuf>| {
            config
                .pattern
                .as_ref()
                .is_some_and(|p| p.matches_argv(&argv, cwd, also))
        };
        let mut lsof_failure = None;
        let mut cwd_from_lsof = || match lsof::cwds(&[pid]) {
            Ok(mut cwds) => cwds.remove(&pid),
            Err(e) => {
                lsof_failure = Some(e);
                None
            }
        };
        let matched = match self.config.search {
            Search::ProcExe => by_exe(),
            Search::LsofCwd => by_argv(&mut cwd_from_lsof),
            Search::ProcCwd => by_argv(&mut || os::cwd(pid)),
            // Where the platform cannot tell a cwd (macOS without permission), ask lsof.
            Search::Auto => by_exe() || by_argv(&mut || os::cwd(pid).or_else(&mut cwd_from_lsof)),
        };
        // A failed lsof must not read as "not running": that would start a duplicate.
        match lsof_failure {
            Some(e) => Err(e),
            None => Ok(matched),
        }
    }

    /// Sends `signal` to the instance's group (or only to it, when it leads no group of its
    /// own). Returns false when the instance is already gone, so nothing was sent.
    pub fn signal(&self, instance: &Instance, signal: Signal) -> Result<bool> {
        if self.by_identity(&instance.identity).is_none() {
            return Ok(false);
        }
        let result = match instance.group() {
            Some(group) => nix_signal::killpg(NixPid::from_raw(group.get()), to_nix(signal)),
            None => nix_signal::kill(NixPid::from_raw(instance.pid().get()), to_nix(signal)),
        };
        match result {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(e) => Err(Error::Failed(format!(
                "sending {signal} to {} ({}): {}",
                self.config.name,
                instance.pid(),
                e.desc()
            ))),
        }
    }

    /// SIGKILL for what is left of the instance's group after its leader has gone.
    pub fn kill_leftovers(&self, instance: &Instance) -> Result<()> {
        match instance.group() {
            // A pgid is never reused while any member lives, so a group that still has live
            // members is still the service's.
            Some(group) if group_alive(group) => {
                match nix_signal::killpg(NixPid::from_raw(group.get()), nix_signal::Signal::SIGKILL)
                {
                    Ok(()) | Err(Errno::ESRCH) => Ok(()),
                    Err(e) => Err(Error::Failed(format!(
                        "sending SIGKILL to group {group}: {}",
                        e.desc()
                    ))),
                }
            }
            Some(_) => Ok(()),
            None => self.signal(instance, Signal::Kill).map(drop),
        }
    }

    /// Waits until nothing of the instance is left (its group's live members, or itself when
    /// it leads no group), or `timeout` passes; true if it is gone.
    #[must_use]
    pub fn wait_gone(&self, instance: &Instance, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut leader_dead_since = None;
        poll_until(deadline, || match instance.group() {
            None => self.by_identity(&instance.identity).is_none(),
            Some(group) => {
                // The group is empty once its last member is reaped, which init does within
                // microseconds. Until then only the leader is looked at; the whole table is
                // scanned for other live members only if the group lingers past REAP_GRACE.
                if !group_exists(group) {
                    return true;
                }
                if self.by_identity(&instance.identity).is_some() {
                    return false;
                }
                let since = *leader_dead_since.get_or_insert_with(Instant::now);
                since.elapsed() >= REAP_GRACE && !group_alive(group)
            }
        })
    }

    /// The leftovers of a dead instance that led `group`: its group's live members, once no
    /// live process holds the leader's pid. With `must_match`, only if one of them is
    /// recognised by the search rule (the group is known from the pid lock alone).
    pub fn leftovers(&self, group: Pid, must_match: bool) -> Result<Option<Leftovers>> {
        if self.exists(group) || !group_exists(group) {
            return Ok(None);
        }
        let pids = os::pids().map_err(Error::io("listing processes in", "/proc"))?;
        let members: Vec<Pid> = pids
            .into_iter()
            .filter(|p| os::live_in_group(*p, group.get()))
            .filter_map(|p| Pid::new(p.into()))
            .collect();
        if members.is_empty() {
            return Ok(None);
        }
        if must_match {
            let mut recognised = false;
            for pid in &members {
                recognised = recognised || self.by_rule(*pid)?.is_some();
            }
            if !recognised {
                return Ok(None);
            }
        }
        Ok(Some(Leftovers { group, members }))
    }

    /// Ends `leftovers`: `signal` to their group, up to `timeout` for it to empty, then SIGKILL.
    pub fn end_leftovers(
        &self,
        leftovers: &Leftovers,
        signal: Signal,
        timeout: Duration,
    ) -> Result<()> {
        let group = leftovers.group;
        let send = |signal: Signal| {
            // The leader's pid must still be free: then the group is still the dead instance's.
            if self.exists(group) || !group_alive(group) {
                return Ok(());
            }
            if self.ancestors().contains(&group.get())
                || nix::unistd::getpgrp().as_raw() == group.get()
            {
                return Err(Error::Failed(format!(
                    "leftovers of {}: keepup itself runs in their group {group}",
                    self.config.name
                )));
            }
            match nix_signal::killpg(NixPid::from_raw(group.get()), to_nix(signal)) {
                Ok(()) | Err(Errno::ESRCH) => Ok(()),
                Err(e) => Err(Error::Failed(format!(
                    "ending {leftovers}: sending {signal} to group {group}: {} (they run as another user: run keepup as that user or as root)",
                    e.desc()
                ))),
            }
        };
        let gone = |within: Duration| {
            poll_until(Instant::now() + within, || {
                self.exists(group) || !group_alive(group)
            })
        };
        send(signal)?;
        let first_wait = if signal == Signal::Kill {
            KILL_GRACE
        } else {
            timeout
        };
        if gone(first_wait) {
            return Ok(());
        }
        send(Signal::Kill)?;
        if gone(KILL_GRACE) {
            return Ok(());
        }
        Err(Error::Failed(format!(
            "{leftovers} still run{} after SIGKILL",
            if leftovers.members.len() == 1 {
                "s"
            } else {
                ""
            }
        )))
    }

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

/// The outcome of waiting for a just-started service.
#[derive(Debug)]
pub enum Started {
    Running(Instance),
    Exited(ExitStatus),
}

fn instance(pid: Pid, facts: Facts) -> Instance {
    Instance {
        identity: Identity {
            pid,
            start: facts.start.clone(),
        },
        facts,
    }
}

/// A process's command line, words joined by spaces, for messages; empty when unreadable.
fn command_line(pid: i32) -> String {
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

/// Whether the process `identity` still runs (whoever it is: the watcher's own check).
#[must_use]
pub fn is_running(identity: &Identity) -> bool {
    os::facts(identity.pid.get()).is_some_and(|f| !f.zombie && f.start == identity.start)
}

/// This process's own identity (the watcher writes it down).
#[must_use]
pub fn own_identity() -> Option<Identity> {
    let pid = Pid::new(std::process::id().into())?;
    let facts = os::facts(pid.get())?;
    Some(Identity {
        pid,
        start: facts.start,
    })
}

/// Whether a process start (as in [`Identity::start`]) is from this boot: a group id from
/// another boot says nothing of today's groups.
#[must_use]
pub fn this_boot(start: &str) -> bool {
    os::this_boot(start)
}

/// How long the kernel may take to finish processes sent SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long a group whose leader has ended may show members (zombies awaiting their reaper,
/// usually) before the process table is searched for live ones.
const REAP_GRACE: Duration = Duration::from_millis(10);

/// Whether any process, zombies included, is in `group`: one syscall.
fn group_exists(group: Pid) -> bool {
    !matches!(
        nix_signal::killpg(NixPid::from_raw(group.get()), None),
        Err(Errno::ESRCH)
    )
}

/// Whether any live (non-zombie) process is in `group`.
fn group_alive(group: Pid) -> bool {
    // Members may all be zombies that nobody has reaped yet: those are gone for us.
    group_exists(group)
        && os::pids()
            .unwrap_or_default()
            .into_iter()
            .any(|pid| os::live_in_group(pid, group.get()))
}

/// Calls `done` until it says true or `deadline` passes; short sleeps first, so a prompt
/// process is seen within a millisecond or two, and never more than 10 ms between looks.
pub fn poll_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    let mut pause = Duration::from_micros(500);
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn to_nix(signal: Signal) -> nix_signal::Signal {
    use nix_signal::Signal as S;
    match signal {
        Signal::Hup => S::SIGHUP,
        Signal::Int => S::SIGINT,
        Signal::Quit => S::SIGQUIT,
        Signal::Kill => S::SIGKILL,
        Signal::Usr1 => S::SIGUSR1,
        Signal::Usr2 => S::SIGUSR2,
        Signal::Term => S::SIGTERM,
    }
}

/// The service should not inherit keepup's caller's ignored or blocked signals (cron, nohup),
/// or `stop` could not stop it.
fn reset_signals() {
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

#[cfg(unix)]
fn os_str(bytes: &[u8]) -> &OsStr {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(bytes)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{linux, macos_type_check as macos};

    /// The copy the watcher carries across exec reads back whole, from the start, on either
    /// platform's way of making it.
    #[test]
    fn inheritable_copies_read_back() {
        use std::io::Read;
        for make in [linux::inheritable_copy, macos::inheritable_copy] {
            let fd = make(b"entry = \"svc.py\"\n").unwrap();
            let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_eq!(flags & nix::libc::FD_CLOEXEC, 0, "it must survive exec");
            let mut text = String::new();
            std::fs::File::from(fd).read_to_string(&mut text).unwrap();
            assert_eq!(text, "entry = \"svc.py\"\n");
        }
        assert!(macos::inheritable_copy(&vec![b'x'; 20 * 1024]).is_err());
    }

    /// macOS's layer run on Linux's sysinfo must say what `/proc` says of the same process.
    #[test]
    fn sysinfo_layer_agrees_with_proc() {
        let me = i32::try_from(std::process::id()).unwrap();
        let (via_sysinfo, via_proc) = (macos::facts(me).unwrap(), linux::facts(me).unwrap());
        assert_eq!(
            (
                via_sysinfo.pid,
                via_sysinfo.ppid,
                via_sysinfo.pgid,
                via_sysinfo.uid,
                via_sysinfo.zombie
            ),
            (
                via_proc.pid,
                via_proc.ppid,
                via_proc.pgid,
                via_proc.uid,
                via_proc.zombie
            )
        );
        assert_eq!(macos::cmdline(me), linux::cmdline(me));
        assert_eq!(macos::exe(me), linux::exe(me));
        assert_eq!(macos::cwd(me), linux::cwd(me));
        assert_eq!(macos::ppid(me), linux::ppid(me));
        assert!(macos::live_in_group(me, via_proc.pgid));
        assert!(macos::pids().unwrap().contains(&me));
        assert_eq!(macos::uid(me), linux::uid(me));
    }
}
