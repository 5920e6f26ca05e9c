//! Ending the service: signals (only ever to a recognised instance, checked again right
//! before), its main process first and then what is left of it, or its whole group at once;
//! waiting until nothing of it is left; and what a dead instance left behind (its group's
//! members and, for an adopted one, its runaways).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal as nix_signal;
use nix::unistd::Pid as NixPid;

use serde::{Deserialize, Serialize};

use super::watcher::{Orphan, orphans_of, signal_orphans};
use super::{Finder, Identity, Instance, is_running, os, poll_until, this_boot};
use crate::config::StopMode;
use crate::error::{Error, Result};
use crate::pid::Pid;
use crate::signal::Signal;

/// What is left of a dead instance: the live members of the process group it led (workers
/// whose leader has ended; the group's id cannot be given to a new process while any member
/// lives, so the group is still the dead instance's, whatever its members run and whoever
/// they run as), and its runaways (see [`Finder::runaways`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftovers {
    /// The dead instance's pid: its group's id, when it led one.
    pub of: Pid,
    /// Whether it led a group whose members are left.
    led_group: bool,
    /// Every leftover: its group's members, then its runaways.
    pub members: Vec<Pid>,
    runaways: Vec<Identity>,
}

impl Leftovers {
    /// The group's leftovers (if any) and the runaways of the dead instance `of`, as one; none
    /// when nothing is left.
    #[must_use]
    pub fn join(of: Pid, group: Option<Leftovers>, runaways: Vec<Identity>) -> Option<Leftovers> {
        let mut joined = group.unwrap_or(Leftovers {
            of,
            led_group: false,
            members: Vec::new(),
            runaways: Vec::new(),
        });
        joined.members.extend(runaways.iter().map(|s| s.pid));
        joined.runaways.extend(runaways);
        (!joined.members.is_empty()).then_some(joined)
    }

    /// The dead instance's group, when members of it are left.
    #[must_use]
    pub fn group(&self) -> Option<Pid> {
        self.led_group.then_some(self.of)
    }

    /// Whether `pid` is a leftover that left the dead instance's group.
    #[must_use]
    pub fn is_runaway(&self, pid: Pid) -> bool {
        self.runaways.iter().any(|s| s.pid == pid)
    }
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
            self.of,
            pids.join(", ")
        )
    }
}

/// What keepup notes of an instance it adopts, to know its runaways once it has died: workers
/// that left its session (`setsid`, as a postgres server's backends do) are handed to init (or
/// to a subreaper above it) when it dies, and then nothing else ties them to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kin {
    /// Its program and working directory, which the workers it forks share.
    pub exe: PathBuf,
    pub cwd: PathBuf,
    /// Its start, in the platform's unit: its workers start no earlier.
    pub since: u64,
    /// Its ancestors: besides init, the only processes its orphans can be handed to.
    pub reapers: Vec<Identity>,
}

impl Instance {
    /// What its runaways will share with it (see [`Kin`]); `None` where the platform does not
    /// tell its program or folder.
    #[must_use]
    pub fn kin(&self) -> Option<Kin> {
        let mut reapers = Vec::new();
        let mut parent = self.facts.ppid;
        // Pid::new stops at init (1) and at "no parent" (0); the bound, at a cycle.
        while let Some(pid) = Pid::new(parent.into()).filter(|_| reapers.len() < 64) {
            let Some(facts) = os::facts(parent) else {
                break;
            };
            reapers.push(Identity {
                pid,
                start: facts.start,
            });
            parent = facts.ppid;
        }
        Some(Kin {
            exe: os::exe(self.facts.pid)?,
            cwd: os::cwd(self.facts.pid)?,
            since: self.facts.start_ticks,
            reapers,
        })
    }
}

impl Finder<'_> {
    /// Sends `signal` to the instance's group (or only to it, when it leads no group of its
    /// own). Returns false when the instance is already gone, so nothing was sent.
    pub fn signal(&self, instance: &Instance, signal: Signal) -> Result<bool> {
        if self.by_identity(&instance.identity).is_none() {
            return Ok(false);
        }
        let result = match instance.group() {
            Some(group) => {
                to_nix(signal).and_then(|s| nix_signal::killpg(NixPid::from_raw(group.get()), s))
            }
            None => to_nix(signal)
                .and_then(|s| nix_signal::kill(NixPid::from_raw(instance.pid().get()), s)),
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

    /// Begins to stop `instance`: `signal` to its main process (with [`StopMode::Group`], to
    /// its whole group and to what `reaper` was left with, at once), each followed by SIGCONT.
    /// [`Stopping::wait`] sends `signal` to the rest once the main process has exited;
    /// [`Stopping::kill`] ends whatever runs after that. `reaper`: the watcher, whose children
    /// other than the service are workers that left the service's group (it is their
    /// subreaper).
    pub fn stop<'f>(
        &'f self,
        instance: &Instance,
        reaper: Option<&Identity>,
        signal: Signal,
        mode: StopMode,
        timeout: Duration,
    ) -> Result<Stopping<'f>> {
        let mut stopping = Stopping {
            finder: self,
            instance: instance.clone(),
            group: instance.group(),
            reaper: reaper.filter(|r| self.is_watcher(r)).cloned(),
            signal,
            mode,
            deadline: Instant::now() + timeout,
            leader_gone: None,
            rest_signalled: false,
            orphans: Vec::new(),
        };
        if self.by_identity(&instance.identity).is_some() {
            let (target, group) = match (mode, stopping.group) {
                (StopMode::Group, Some(group)) => (group, true),
                _ => (instance.pid(), false),
            };
            deliver(target, group, signal).map_err(|e| {
                Error::Failed(format!(
                    "sending {signal} to {} ({}): {}",
                    self.config.name,
                    instance.pid(),
                    e.desc()
                ))
            })?;
            stopping.rest_signalled = group;
        }
        stopping.step();
        Ok(stopping)
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
            None => self.signal(instance, Signal::KILL).map(drop),
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
        Ok(Some(Leftovers {
            of: group,
            led_group: true,
            members,
            runaways: Vec::new(),
        }))
    }

    /// The runaways of the dead instance `dead`, which `kin` describes: the live processes of
    /// this user that started after it, run its program in its working directory, lead a
    /// session of their own, and belong now to init or to one of its ancestors (as its orphans
    /// do). Nothing else can be all of these but a worker it forked that left its session.
    pub fn runaways(&self, dead: &Identity, kin: &Kin) -> Result<Vec<Identity>> {
        if is_running(dead) || !this_boot(&dead.start) {
            return Ok(Vec::new());
        }
        let pids = os::pids().map_err(Error::io("listing processes in", "/proc"))?;
        let mut found = Vec::new();
        for pid in pids.into_iter().filter_map(|p| Pid::new(p.into())) {
            let Some(facts) = self
                .eligible(pid)
                .filter(|f| pid != dead.pid && f.sid == f.pid)
            else {
                continue;
            };
            let handed_down = facts.ppid == 1
                || kin
                    .reapers
                    .iter()
                    .any(|r| r.pid.get() == facts.ppid && is_running(r));
            if facts.start_ticks >= kin.since
                && handed_down
                && os::exe(pid.get()).as_ref() == Some(&kin.exe)
                && os::cwd(pid.get()).as_ref() == Some(&kin.cwd)
            {
                found.push(Identity {
                    pid,
                    start: facts.start,
                });
            }
        }
        Ok(found)
    }

    /// Ends `leftovers`: `signal` (then SIGCONT) to their group and to each runaway (with the
    /// group it leads), up to `timeout` for them to end, then SIGKILL.
    pub fn end_leftovers(
        &self,
        leftovers: &Leftovers,
        signal: Signal,
        timeout: Duration,
    ) -> Result<()> {
        let group = leftovers.group();
        // The leader's pid must still be free: then the group is still the dead instance's.
        let group_left = |group: Pid| !self.exists(group) && group_alive(group);
        let send = |signal: Signal| {
            if let Some(group) = group.filter(|g| group_left(*g)) {
                if self.ancestors().contains(&group.get())
                    || nix::unistd::getpgrp().as_raw() == group.get()
                {
                    return Err(Error::Failed(format!(
                        "leftovers of {}: keepup itself runs in their group {group}",
                        self.config.name
                    )));
                }
                deliver(group, true, signal).map_err(|e| {
                    Error::Failed(format!(
                        "ending {leftovers}: sending {signal} to group {group}: {} (they run as \
                         another user: run keepup as that user or as root)",
                        e.desc()
                    ))
                })?;
            }
            let own_group = nix::unistd::getpgrp().as_raw();
            for runaway in &leftovers.runaways {
                // The very process recognised as a runaway, checked again right before.
                let Some(facts) = self.by_identity(runaway).map(|i| i.facts) else {
                    continue;
                };
                let leads = facts.pgid == facts.pid && facts.pgid != own_group;
                deliver(runaway.pid, leads, signal).map_err(|e| {
                    Error::Failed(format!(
                        "ending {leftovers}: sending {signal} to {}: {}",
                        runaway.pid,
                        e.desc()
                    ))
                })?;
            }
            Ok(())
        };
        let gone = |within: Duration| {
            poll_until(Instant::now() + within, || {
                !group.is_some_and(group_left) && leftovers.runaways.iter().all(|s| !is_running(s))
            })
        };
        send(signal)?;
        let first_wait = if signal == Signal::KILL {
            KILL_GRACE
        } else {
            timeout
        };
        if gone(first_wait) {
            return Ok(());
        }
        send(Signal::KILL)?;
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
}

/// A stop under way: `signal` has gone to the main process (or to the whole group).
pub struct Stopping<'f> {
    finder: &'f Finder<'f>,
    instance: Instance,
    /// The group the service leads, which keepup may signal.
    group: Option<Pid>,
    reaper: Option<Identity>,
    signal: Signal,
    mode: StopMode,
    /// `stop_timeout` after the first signal.
    deadline: Instant,
    leader_gone: Option<Instant>,
    rest_signalled: bool,
    /// The reaper's children sent `signal` so far.
    orphans: Vec<Orphan>,
}

impl Stopping<'_> {
    /// Waits until nothing of the service is left (true) or `stop_timeout` has passed since
    /// the first signal, sending `signal` to what is left as soon as the main process exits.
    pub fn wait(&mut self) -> bool {
        let deadline = self.deadline;
        poll_until(deadline, || self.step())
    }

    /// SIGKILL to whatever of the service still runs; waits until it is gone.
    pub fn kill(&mut self) -> Result<()> {
        let finder = self.finder;
        if !finder.signal(&self.instance, Signal::KILL)? {
            finder.kill_leftovers(&self.instance)?;
        }
        self.kill_orphans();
        if poll_until(Instant::now() + KILL_GRACE, || self.step()) {
            return Ok(());
        }
        // What a leader still alive at the first SIGKILL left to the reaper only then.
        finder.kill_leftovers(&self.instance)?;
        self.kill_orphans();
        if poll_until(Instant::now() + KILL_GRACE, || self.step()) {
            return Ok(());
        }
        Err(Error::Failed(format!(
            "{} ({}) is still running {} after SIGKILL",
            finder.config.name,
            self.instance.pid(),
            crate::text::duration_text(KILL_GRACE)
        )))
    }

    /// The watcher's children that were ended with the service: workers handed to it when the
    /// main process exited (in its group or not), and any that had left before.
    #[must_use]
    pub fn orphans(&self) -> &[Orphan] {
        &self.orphans
    }

    fn kill_orphans(&mut self) {
        if let Some(reaper) = self.reaper.clone().filter(is_running) {
            let left = orphans_of(reaper.pid.get(), Some(&self.instance));
            signal_orphans(reaper.pid.get(), &left, Signal::KILL);
            for orphan in left {
                if !self.orphans.iter().any(|o| o.pid == orphan.pid) {
                    self.orphans.push(orphan);
                }
            }
        }
    }

    /// One look: once the main process has gone (at once, by group), `signal` to the rest of
    /// the service, and to each child the reaper is newly left with; true when nothing is left.
    fn step(&mut self) -> bool {
        let finder = self.finder;
        let leader_alive = finder.by_identity(&self.instance.identity).is_some();
        if !leader_alive && self.leader_gone.is_none() {
            self.leader_gone = Some(Instant::now());
        }
        if leader_alive && self.mode == StopMode::Leader {
            return false;
        }
        if !self.rest_signalled {
            self.rest_signalled = true;
            // The leader's pid is held while any member lives: the group is still the
            // service's. What this cannot reach (a member run by another user) SIGKILL names.
            if let Some(group) = self.group.filter(|g| group_exists(*g)) {
                let _ = deliver(group, true, self.signal);
            }
        }
        let orphans = self
            .reaper
            .clone()
            .filter(is_running)
            .map_or_else(Vec::new, |r| orphans_of(r.pid.get(), Some(&self.instance)));
        let new: Vec<Orphan> = orphans
            .iter()
            .filter(|p| !self.orphans.iter().any(|o| o.pid == p.pid))
            .copied()
            .collect();
        if let Some(reaper) = &self.reaper {
            signal_orphans(reaper.pid.get(), &new, self.signal);
        }
        self.orphans.extend(new);
        if leader_alive || !orphans.is_empty() {
            return false;
        }
        match self.group {
            None => true,
            // The group is empty once its last member is reaped, which its reaper does within
            // microseconds; the whole table is searched for live members only if it lingers.
            Some(group) => {
                !group_exists(group)
                    || (self
                        .leader_gone
                        .is_some_and(|since| since.elapsed() >= REAP_GRACE)
                        && !group_alive(group))
            }
        }
    }
}

/// `signal` to `pid` (with `group`, to the group it leads), then SIGCONT: a stopped process
/// acts on a signal only once it runs again (systemd sends SIGCONT likewise). A target that
/// has just ended (ESRCH) is no error.
pub(super) fn deliver(pid: Pid, group: bool, signal: Signal) -> nix::Result<()> {
    let target = NixPid::from_raw(pid.get());
    let send = |signal: Signal| {
        let signal = to_nix(signal)?;
        let sent = if group {
            nix_signal::killpg(target, signal)
        } else {
            nix_signal::kill(target, signal)
        };
        match sent {
            Err(Errno::ESRCH) => Ok(()),
            other => other,
        }
    };
    send(signal)?;
    if signal != Signal::KILL && signal != Signal::CONT {
        send(Signal::CONT)?;
    }
    Ok(())
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

/// The OS's signal for `signal`: EINVAL for one the OS would not know (none: the table of
/// signals is the platform's, and a test holds it to nix's).
pub(super) fn to_nix(signal: Signal) -> nix::Result<nix_signal::Signal> {
    nix_signal::Signal::try_from(signal.number())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config's signals are exactly the OS's: each converts, under its own name, and every
    /// signal nix knows for this platform can be named.
    #[test]
    fn the_signal_table_is_the_platforms() {
        for signal in Signal::all() {
            let os = to_nix(signal).unwrap();
            assert_eq!(os.as_str(), signal.to_string());
        }
        for os in nix_signal::Signal::iterator() {
            let signal: Signal = os.as_str().parse().unwrap();
            assert_eq!(to_nix(signal), Ok(os));
        }
    }
}
