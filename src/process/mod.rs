//! Recognising the service among running processes, starting it, and signalling it.
//!
//! This is the only module that asks the OS about processes or sends signals. Platform code
//! (how to read a process's facts) sits in `linux.rs` (`/proc`) and `macos.rs` (sysinfo),
//! behind the same few functions; the rules for what counts as the service are here, once.
//! Starting it is in `spawn.rs`, ending it (signals, groups, leftovers) in `ending.rs`, the
//! watcher's own process in `watcher.rs`, and waiting for an exit in `exit.rs`.
//!
//! Safety rules kept here:
//! - a signal goes only to an [`Instance`], made by recognising a live process, and its identity
//!   (pid and start time) is checked again right before each signal;
//! - keepup itself, its ancestors, zombies and other users' processes are never recognised;
//! - a process group is signalled only when the service leads it and keepup is not in it.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Search};
use crate::error::{Error, Result};
use crate::files::FileId;
use crate::pid::Pid;
use crate::startup::Pattern;

pub mod descriptors;
mod ending;
pub mod exit;
#[cfg(target_os = "linux")]
mod linux;
pub mod lsof;
pub mod notify;
pub mod ports;
pub mod sockets;
mod spawn;
mod table;
pub mod watcher;

use ending::to_nix;
pub use ending::{KILL_GRACE, Kin, Leftovers, Stopping};
#[cfg(target_os = "linux")]
use linux as os;
pub use spawn::{
    Spawned, Started, become_subreaper, defer_interrupts, resume_interrupts, spawn_deaf,
};
use spawn::{command_line, reset_signals};
pub use table::Table;
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
    /// Its session: its own pid once it has left its parent's (`setsid`).
    pub sid: i32,
    pub uid: u32,
    pub zombie: bool,
    /// Stopped, so it runs no code until SIGCONT: `stopped (SIGSTOP)` (or SIGTSTP and the
    /// like), `stopped (traced)` under a debugger.
    pub stopped: Option<&'static str>,
    /// Unique for this process across pid reuse and reboots (boot id and start tick on Linux).
    pub start: String,
    /// The start in the platform's unit (clock ticks since boot on Linux, epoch seconds on macOS).
    start_ticks: u64,
    /// Resident memory in the platform's unit (pages on Linux, bytes on macOS).
    rss_pages: u64,
}

/// Which of a process's links a scan looks through: where it runs, or what it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// Its working directory.
    Cwd,
    /// Its executable.
    Exe,
}

/// What one cheap look through a process's [`Link`] told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// The file it leads to.
    At(FileId),
    /// The process has ended.
    Gone,
    /// Not told (another user's process, a deleted file, a platform that cannot say cheaply):
    /// such a process must be judged by the whole rule.
    Unknown,
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

    /// Whether it is stopped (see [`Facts::stopped`]): running, yet doing nothing.
    #[must_use]
    pub fn stopped(&self) -> Option<&'static str> {
        self.facts.stopped
    }

    #[must_use]
    pub fn memory_bytes(&self) -> Option<u64> {
        os::rss_bytes(&self.facts)
    }

    /// The file its standard output goes to, where the platform tells it.
    #[must_use]
    pub fn output_file(&self) -> Option<std::path::PathBuf> {
        os::output_file(self.facts.pid)
    }

    /// The whole service: every live process descended from it, whatever its session or
    /// group (workers that `setsid`, as the backends of `postgres` do), and what `reaper` (the
    /// watcher, their subreaper) was left with, with their descendants: workers that left and
    /// outlived their parent. Memory as the sum of each one's PSS (shared pages split among
    /// those that share them: what the service really costs) and of its RSS (shared pages
    /// counted in full by each).
    #[must_use]
    pub fn usage(&self, reaper: Option<&Identity>) -> Usage {
        let mut roots = vec![self.facts.pid];
        if let Some(reaper) = reaper.filter(|r| is_running(r)) {
            roots.extend(
                watcher::orphans_of(reaper.pid.get(), Some(self))
                    .iter()
                    .map(|o| o.pid.get()),
            );
        }
        let mut members: Vec<Facts> = descendants(&roots)
            .into_iter()
            .filter_map(os::facts)
            .filter(|f| !f.zombie)
            .collect();
        if !members.iter().any(|f| f.pid == self.facts.pid) {
            members.push(self.facts.clone());
        }
        Usage {
            processes: members.len(),
            rss_bytes: members.iter().map(os::rss_bytes).sum(),
            pss_bytes: members.iter().map(|f| os::pss_bytes(f.pid)).sum(),
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
    /// Live processes, as `ps` counts them.
    pub processes: usize,
    /// The sum of their resident memory (shared pages counted once per process).
    pub rss_bytes: Option<u64>,
    /// The sum of their proportional set sizes (each shared page split among its sharers);
    /// `None` where the platform does not tell it (macOS) or a process's is not readable.
    pub pss_bytes: Option<u64>,
}

/// `roots` and every live process below them, each once: from the kernel's children lists
/// where it keeps them, else from the whole table's parent links.
fn descendants(roots: &[i32]) -> Vec<i32> {
    let by_lists: Option<Vec<Vec<i32>>> = roots.iter().map(|r| os::family(*r)).collect();
    let mut found = by_lists.map_or_else(
        || {
            let table: Vec<(i32, i32)> = os::pids()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| Some((p, os::ppid(p)?)))
                .collect();
            let mut found = roots.to_vec();
            let mut next = 0;
            while let Some(&parent) = found.get(next) {
                next += 1;
                found.extend(
                    table
                        .iter()
                        .filter(|(_, pp)| *pp == parent)
                        .map(|(p, _)| *p),
                );
            }
            found
        },
        |families| families.concat(),
    );
    let mut seen = HashSet::new();
    found.retain(|p| seen.insert(*p));
    found
}

/// Finds the service's processes for one config.
pub struct Finder<'a> {
    config: &'a Config,
    /// Where the entry resolved when the recorded instance started (it may resolve elsewhere
    /// now, after a release switch).
    recorded_entry: Option<std::path::PathBuf>,
    /// The entry and its folder as the service was last launched, by identity (from the record
    /// of what keepup keeps): they follow a renamed or swapped folder, where paths do not.
    launched_entry: Option<FileId>,
    launched_dir: Option<FileId>,
    me: i32,
    uid: u32,
    ancestors: OnceCell<HashSet<i32>>,
    /// The table a command that searches for many services read once (`list`).
    table: Option<&'a Table>,
}

impl<'a> Finder<'a> {
    #[must_use]
    pub fn new(config: &'a Config) -> Self {
        Finder {
            config,
            recorded_entry: None,
            launched_entry: None,
            launched_dir: None,
            me: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            uid: crate::ownership::euid(),
            ancestors: OnceCell::new(),
            table: None,
        }
    }

    /// Searches `table` (read once for many services) rather than a table of its own.
    #[must_use]
    pub fn in_table(mut self, table: &'a Table) -> Self {
        self.table = Some(table);
        self
    }

    /// Also takes the entry as it resolved when the recorded instance started.
    #[must_use]
    pub fn with_recorded_entry(mut self, resolved: Option<std::path::PathBuf>) -> Self {
        self.recorded_entry = resolved;
        self
    }

    /// Also takes the entry and its folder as the service was last launched.
    #[must_use]
    pub fn with_last_launch(mut self, entry: Option<FileId>, dir: Option<FileId>) -> Self {
        self.launched_entry = entry;
        self.launched_dir = dir;
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
            .matches(pid.get(), &cmdline, None)?
            .then(|| instance(pid, facts)))
    }

    /// Every running instance of the service, oldest first. A process whose parent is also an
    /// instance (a worker forked by the service) is part of its parent, not another instance;
    /// what a dead instance left (`dead`) is none.
    pub fn scan(&self, dead: Option<&Leftovers>) -> Result<Vec<Instance>> {
        let own;
        let table = if let Some(table) = self.table {
            table
        } else {
            own = Table::read().map_err(Error::io("listing processes in", "/proc"))?;
            &own
        };
        let by_argv = self.config.search != Search::ProcExe
            || self
                .config
                .pattern
                .as_ref()
                .is_some_and(Pattern::needs_argv);
        let by_exe_alone = self.may_match_exe();
        let (link, files) = self.place();
        let mut found = Vec::new();
        for pid in table
            .at(link, &files)
            .into_iter()
            .filter_map(|p| Pid::new(p.into()))
        {
            if pid.get() == self.me || table.uid(pid.get()) != Some(self.uid) {
                continue;
            }
            // Cheapest first: the command line must hold the entry's name for the argv rule to
            // take it (a search in memory), and a native entry is told by one readlink; only
            // a process that passes is judged by the whole rule and checked for being
            // eligible at all.
            let cmdline = if by_argv {
                table.cmdline(pid.get())
            } else {
                Rc::from(Vec::new())
            };
            let candidate = !by_argv
                || self
                    .config
                    .pattern
                    .as_ref()
                    .is_some_and(|p| p.may_match(&cmdline, self.recorded_entry.as_deref()))
                || (by_exe_alone
                    && table
                        .exe(pid.get())
                        .is_some_and(|exe| self.is_entry_program(&exe)));
            if !candidate || !self.matches(pid.get(), &cmdline, Some(table))? {
                continue;
            }
            if let Some(facts) = self.eligible(pid)
                && !dead.is_some_and(|d| {
                    d.group().is_some_and(|g| g.get() == facts.pgid) || d.is_runaway(pid)
                })
            {
                found.push(instance(pid, facts));
            }
        }
        let pids: HashSet<i32> = found.iter().map(|i| i.facts.pid).collect();
        found.retain(|i| !pids.contains(&i.facts.ppid));
        found.sort_by_key(|i| (i.facts.start_ticks, i.facts.pid));
        Ok(found)
    }

    /// Where the service's processes are, told by one cheap look at each process, so that a
    /// scan reads command lines only there. An entry recognised by its executable (`proc_exe`,
    /// and a native entry under `auto`): that executable. Any other: the working directory
    /// keepup starts it in, the entry's folder, where a copy started by hand exactly as
    /// `startup` would start it runs too. Each as the entry is written, as it resolves now, as
    /// it resolved when the recorded instance started (a switched `current ->` release), and as
    /// it was last launched (a folder swapped for another by a deploy).
    fn place(&self) -> (Link, Vec<FileId>) {
        let config = self.config;
        let by_exe = match config.search {
            Search::ProcExe => true,
            Search::Auto => config
                .pattern
                .as_ref()
                .is_none_or(|p| p.interpreter.is_none() && p.command.is_none()),
            Search::ProcCwd | Search::LsofCwd => false,
        };
        let entries = [
            Some(config.entry.as_path()),
            config.resolved.as_deref(),
            self.recorded_entry.as_deref(),
        ];
        let (link, paths): (Link, Vec<&std::path::Path>) = if by_exe {
            (Link::Exe, entries.into_iter().flatten().collect())
        } else {
            (
                Link::Cwd,
                entries
                    .into_iter()
                    .flatten()
                    .filter_map(std::path::Path::parent)
                    .collect(),
            )
        };
        let mut files: Vec<FileId> = paths.into_iter().filter_map(FileId::of).collect();
        files.extend(if by_exe {
            self.launched_entry
        } else {
            self.launched_dir
        });
        files.dedup();
        (link, files)
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

    /// Whether `exe` is the entry's program: as the config names it, as it resolves now, or as
    /// it resolved when the recorded instance started.
    fn is_entry_program(&self, exe: &std::path::Path) -> bool {
        let config = self.config;
        exe == config.entry
            || Some(exe) == config.resolved.as_deref()
            || Some(exe) == self.recorded_entry.as_deref()
    }

    /// The search rule, on one process (its executable from `table` when one was read).
    fn matches(&self, pid: i32, cmdline: &[u8], table: Option<&Table>) -> Result<bool> {
        let config = self.config;
        let also = self.recorded_entry.as_deref();
        let argv: Vec<&OsStr> = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(os_str)
            .collect();
        let by_exe = || {
            config.pattern.as_ref().is_none_or(|p| p.accepts_exe(&argv))
                && match table {
                    Some(table) => table
                        .exe(pid)
                        .is_some_and(|exe| self.is_entry_program(&exe)),
                    None => os::exe(pid).is_some_and(|exe| self.is_entry_program(&exe)),
                }
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

/// Who holds the operation lock at `path`, if the platform tells it cheaply: the holder's pid
/// and command line, for a command that waits for it to say whom it waits for.
#[must_use]
pub fn lock_holder(path: &std::path::Path) -> Option<(Pid, String)> {
    let pid = os::flock_holder(path)?;
    let line = command_line(pid);
    (!line.is_empty()).then_some((Pid::new(pid.into())?, line))
}

/// Whether a live process runs any of the programs `names` (whoever runs it): `doctor` asks
/// this of the cron daemon.
#[must_use]
pub fn any_named(names: &[&str]) -> bool {
    os::pids().unwrap_or_default().into_iter().any(|pid| {
        os::name(pid).is_some_and(|n| names.contains(&n.as_str()))
            && os::facts(pid).is_some_and(|f| !f.zombie)
    })
}

/// Whether the process `identity` still runs (whoever it is: the watcher's own check).
#[must_use]
pub fn is_running(identity: &Identity) -> bool {
    os::facts(identity.pid.get()).is_some_and(|f| !f.zombie && f.start == identity.start)
}

/// Whether the process `identity` (the watcher) is stopped (see [`Facts::stopped`]).
#[must_use]
pub fn stopped(identity: &Identity) -> Option<&'static str> {
    os::facts(identity.pid.get())
        .filter(|f| !f.zombie && f.start == identity.start)
        .and_then(|f| f.stopped)
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
                via_sysinfo.sid,
                via_sysinfo.uid,
                via_sysinfo.zombie
            ),
            (
                via_proc.pid,
                via_proc.ppid,
                via_proc.pgid,
                via_proc.sid,
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
