//! The watcher as a process: starting it detached, handing it the operation lock, knowing it
//! again, and ending it with whatever it was left with.
//!
//! It is started by a keepup that holds the operation lock, and takes over that very lock (the
//! same open file, inherited): so it launches the service, or writes down who it is, before any
//! other keepup for the config can act. It answers on a pipe, then lets go of the lock, and of
//! the caller's terminal, and stays.

use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal as nix_signal;
use nix::unistd::Pid as NixPid;

use super::exit::Waits;
use super::{Finder, Identity, Instance, os, poll_until, reset_signals, to_nix};
use crate::error::{Error, Result};
use crate::pid::Pid;
use crate::signal::Signal;

/// The hidden verb that runs the watcher (see `cli.rs`).
pub const VERB: &str = "watch";

/// How long a watcher may take to end on SIGTERM: it is only ever waiting (for the operation
/// lock, the service's exit, or a backoff), never in the middle of an action.
const END_GRACE: Duration = Duration::from_secs(2);

/// What the watcher was asked to do first, under the caller's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// Launch the service (as its parent) and record it as `kind` (`start`, `revive`) by `by`
    /// (`user`, `timer`); then watch it, or, `once`, leave (`watch = false`).
    Launch {
        kind: &'static str,
        by: &'static str,
        once: bool,
    },
    /// Watch the instance that runs.
    Watch,
}

/// Starts a watcher for `config_file`, handing it `lock`, and returns its answer: what it
/// reported (its first line says how it went), or why it said nothing.
pub fn spawn(
    config_file: &Path,
    lock: &impl AsFd,
    first: First,
    waited: &mut dyn FnMut(Duration),
) -> Result<Answer> {
    let exe = own_path()?;
    let (mut answer, report) = std::io::pipe()
        .map_err(|e| Error::NotLaunched(format!("making a pipe for the watcher: {e}")))?;
    let lock_fd = lock.as_fd().as_raw_fd();
    let report_fd = report.as_raw_fd();
    // Run through the program itself, not its path: keepup may live where the acting user
    // cannot go (root's /root/.cargo/bin for another user, a checkout in a 0700 folder).
    let mut command = Command::new(os::program_to_run());
    command
        .arg0(&exe)
        .arg("--config")
        .arg(config_file)
        .arg(VERB)
        .arg("--lock-fd")
        .arg(lock_fd.to_string())
        .arg("--report-fd")
        .arg(report_fd.to_string())
        // It may live for months: it must not keep the caller's folder busy (an unmount, a
        // removed checkout). Every path it uses is absolute.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Inherited until it has answered: a note it has for the user (a service that forked
        // into the background) reaches them.
        .stderr(Stdio::inherit());
    if let First::Launch { kind, by, once } = first {
        command.args(["--launch", kind, "--by", by]);
        if once {
            command.arg("--once");
        }
    }
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, fcntl, sigprocmask
    // and sigaction; nothing allocates.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            for fd in [lock_fd, report_fd] {
                fcntl(
                    std::os::fd::BorrowedFd::borrow_raw(fd),
                    FcntlArg::F_SETFD(FdFlag::empty()),
                )?;
            }
            reset_signals();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        // No process slot or memory for it: keepup's own trouble, not the service's.
        .map_err(|e| {
            Error::NotLaunched(format!("cannot run the watcher {}: {e}", exe.display()))
        })?;
    drop(report);
    // The launch is the watcher's now: an interrupt held back until here may end this keepup.
    super::resume_interrupts();
    let began = Instant::now();
    // Told every second how long the answer takes (a ready check may take a while), without a
    // thread of its own: each takes a process slot the launch may need.
    while !readable(&answer, ANSWER_TICK) {
        waited(began.elapsed());
    }
    let mut text = String::new();
    let read = answer.read_to_string(&mut text);
    if read.is_err() || text.is_empty() {
        // It died before answering: whatever it is, it must not be left half-started.
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Failed(
            "the watcher ended before it said how the launch went".to_owned(),
        ));
    }
    let mut answer = Answer {
        text,
        watcher: Some(child),
    };
    if matches!(first, First::Launch { once: true, .. }) {
        answer.leaves();
    }
    Ok(answer)
}

/// What a watcher answered its starter, with the watcher itself, which may still be on its way
/// out.
#[derive(Debug)]
pub struct Answer {
    /// Its first line says how it went.
    pub text: String,
    /// Left unwaited when it stays: reaped by whoever inherits it once this keepup exits.
    watcher: Option<std::process::Child>,
}

impl Answer {
    /// For a watcher that does not stay (a launcher, or one whose launch or watch failed):
    /// waits until it is gone. It answers before it exits, and nothing of the command's work
    /// may outlive the command.
    pub fn leaves(&mut self) {
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.wait();
        }
    }
}

/// How often a caller waiting for the watcher's answer hears how long it has waited.
const ANSWER_TICK: Duration = Duration::from_secs(1);

/// Whether `pipe` has something to read (or its writer is gone) within `timeout`.
fn readable(pipe: &impl AsFd, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(pipe, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // An interrupted poll: the caller looks again.
    rustix::event::poll(&mut fds, Some(&timeout)).is_ok_and(|_| !fds[0].revents().is_empty())
}

/// keepup's own program (and its path), kept before root acts as another user: she may not
/// be able to reach it by its path, nor read `/proc/self/exe` once the switch is made. Root
/// only: nobody else changes users.
pub fn keep_own_program() {
    if nix::unistd::geteuid().is_root() {
        os::keep_program();
        let _ = OWN_PATH.set(current_path());
    }
}

static OWN_PATH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// keepup's own path (what `ps` shows, what a timer line runs).
pub fn own_path() -> Result<PathBuf> {
    OWN_PATH
        .get_or_init(current_path)
        .clone()
        .ok_or_else(|| Error::Failed("keepup cannot find its own program".to_owned()))
}

/// The path keepup runs from, as its name: without the " (deleted)" the kernel adds once an
/// upgrade has replaced the file.
fn current_path() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::env::current_exe().ok()?;
    let bytes = path.as_os_str().as_bytes();
    Some(PathBuf::from(OsStr::from_bytes(
        bytes.strip_suffix(b" (deleted)").unwrap_or(bytes),
    )))
}

/// After each action the watcher runs keepup afresh under the same pid (so its identity, pid
/// and start, stays) in its waiting state: lean (no config, no argument parser), so that what
/// it held to act is not kept resident for the days it waits. Its command line names the
/// config and the verb, as [`Finder::is_watcher`] and [`Finder::watches`] expect.
#[must_use]
pub fn become_waiting(
    config_file: &Path,
    identity: &Identity,
    waits: Waits,
    last_good: &str,
) -> Error {
    let waits = match waits {
        Waits::Pidfd => "pidfd",
        Waits::Polling => "polling",
    };
    // The config it acted with goes along, to revive with if the file breaks meanwhile; "-"
    // when it cannot (the watcher then leaves the next revival to the timer, if it must).
    let copy = os::inheritable_copy(last_good.as_bytes()).ok();
    let copy_fd = copy
        .as_ref()
        .map_or_else(|| "-".to_owned(), |fd| fd.as_raw_fd().to_string());
    super::notify::hand_over();
    let pid = identity.pid.to_string();
    let mut args = vec![
        config_file.as_os_str(),
        OsStr::new(VERB),
        OsStr::new(WAIT),
        OsStr::new(&pid),
        OsStr::new(&identity.start),
        OsStr::new(waits),
        OsStr::new(&copy_fd),
    ];
    // The sockets it holds (`listen`) stay open across the exec: closing one would refuse the
    // connections in its queue.
    let held = super::sockets::inheritable();
    if !held.is_empty() {
        args.extend([OsStr::new(HELD), OsStr::new(&held)]);
    }
    exec_self(&args)
}

/// The waiting state, as its command line describes it.
pub struct Waiting {
    pub config: PathBuf,
    pub identity: Identity,
    pub waits: Waits,
    last_good: Option<std::fs::File>,
}

impl Waiting {
    /// The config text the watcher last acted with.
    pub fn last_good(&mut self) -> Option<String> {
        use std::io::{Read, Seek};
        let file = self.last_good.as_mut()?;
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        Some(text)
    }
}

/// Whether `argv` (NUL-separated) is a watcher's for `config_file`.
fn is_watcher_for(argv: &[u8], config_file: &Path) -> bool {
    let config = config_file.as_os_str().as_encoded_bytes();
    let words: Vec<&[u8]> = argv.split(|b| *b == 0).collect();
    words.contains(&VERB.as_bytes())
        && words
            .windows(2)
            .any(|w| w[0] == b"--config" && w[1] == config)
}

/// How a watcher whose command line is `argv` waits, when it is in its waiting state:
/// `--wait PID START WAITS …`, as [`become_waiting`] writes it.
fn waits_in(argv: &[u8]) -> Option<Waits> {
    let mut words = argv.split(|b| *b == 0);
    words.position(|w| w == WAIT.as_bytes())?;
    match words.nth(2)? {
        b"pidfd" => Some(Waits::Pidfd),
        b"polling" => Some(Waits::Polling),
        _ => None,
    }
}

/// The waiting state's command line, if `args` is one.
#[must_use]
pub fn waiting_args(args: &[OsString]) -> Option<Waiting> {
    let (args, held) = match args {
        [args @ .., flag, held] if flag == HELD => (args, Some(held)),
        args => (args, None),
    };
    let [_, flag, config, verb, wait, pid, start, waits, copy] = args else {
        return None;
    };
    if flag != "--config" || verb != VERB || wait != WAIT {
        return None;
    }
    if let Some(held) = held.and_then(|h| h.to_str()) {
        // SAFETY: handed to this image alone by `become_waiting`, whose command line this is.
        unsafe { super::sockets::adopt(held) };
    }
    let pid = Pid::new(pid.to_str()?.parse().ok()?)?;
    let waits = match waits.to_str()? {
        "pidfd" => Waits::Pidfd,
        "polling" => Waits::Polling,
        _ => return None,
    };
    let last_good = copy
        .to_str()?
        .parse::<RawFd>()
        .ok()
        .filter(|fd| *fd > 2)
        // SAFETY: handed to this image alone by `become_waiting`, whose command line this is.
        .and_then(|fd| unsafe { take_inherited(fd) }.ok())
        .map(std::fs::File::from);
    Some(Waiting {
        config: PathBuf::from(config),
        identity: Identity {
            pid,
            start: start.to_str()?.to_owned(),
        },
        waits,
        last_good,
    })
}

/// The flag of the waiting state.
const WAIT: &str = "--wait";

/// Before the listening sockets the waiting state holds (`listen`): their descriptors.
const HELD: &str = "--held";

/// Replaces this process's image with keepup's own program, run with `--config` and `args`.
fn exec_self(args: &[&OsStr]) -> Error {
    use std::os::unix::ffi::OsStrExt;
    let program = os::own_program();
    // What `ps` shows: keepup's path, not /proc/self/exe.
    let name = own_path().map_or_else(|_| OsString::from("keepup"), PathBuf::into_os_string);
    let mut words = vec![name.as_os_str(), OsStr::new("--config")];
    words.extend_from_slice(args);
    let cstrings: std::result::Result<Vec<CString>, _> =
        words.iter().map(|a| CString::new(a.as_bytes())).collect();
    let (Ok(path), Ok(cstrings)) = (CString::new(program.as_os_str().as_bytes()), cstrings) else {
        return Error::Failed("the watcher's command line holds a NUL byte".to_owned());
    };
    match nix::unistd::execv(&path, &cstrings) {
        Err(e) => Error::Failed(format!(
            "the watcher cannot run keepup again ({}): {}",
            program.display(),
            e.desc()
        )),
    }
}

/// What a watcher received from the keepup that started it.
pub struct Handed {
    /// The operation lock, held (the caller's open file).
    pub lock: OwnedFd,
    /// Where it answers.
    pub report: Report,
}

/// The pipe on which the watcher answers the keepup that started it.
pub struct Report(std::fs::File);

impl Handed {
    /// Takes the descriptors named on the command line.
    ///
    /// # Safety
    /// `lock_fd` and `report_fd` must be open descriptors that nothing else in this process
    /// owns: the ones [`spawn`] hands over.
    pub unsafe fn take(lock_fd: RawFd, report_fd: RawFd) -> Result<Handed> {
        // SAFETY: the caller's word, passed on.
        let (lock, report) = unsafe { (take_inherited(lock_fd)?, take_inherited(report_fd)?) };
        Ok(Handed {
            lock,
            report: Report(std::fs::File::from(report)),
        })
    }
}

/// Takes ownership of `fd`, inherited across exec, and marks it close-on-exec: nothing the
/// watcher starts may inherit it (the service would hold the operation lock).
///
/// # Safety
/// `fd` must be a descriptor that nothing else in this process owns.
unsafe fn take_inherited(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: only looked at here; owned below once known to be open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| Error::Failed(format!("watcher: descriptor {fd}: {}", e.desc())))?;
    // SAFETY: open (the fcntl above succeeded), and no one else's, by the caller's word.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Report {
    /// Answers the keepup that started this watcher; it stops waiting when this is closed.
    pub fn answer(mut self, text: &str) {
        let _ = self.0.write_all(text.as_bytes());
    }
}

/// Readies the waiting image to act at once when the service ends: the pages of its
/// programs are mapped now, shared and unwritten, rather than one fault at a time on the way
/// to the revival; and the CPU's features are known (the history's read asks, for its
/// searches), which takes `cpuid` instructions, each a trap to the hypervisor on a virtual
/// machine: 40 µs of a revival's way here.
pub fn ready_to_act() {
    os::map_programs();
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("avx2");
}

/// What each image of the watcher does first, the acting one and the waiting one alike: it
/// takes its signals calm, its name as `ps` shows it (keepup's, not the `exe` of the path it
/// runs by), and becomes the reaper of what its service leaves.
pub fn begin() {
    calm_signals();
    os::name_self();
    super::become_subreaper();
}

/// The watcher has no terminal, and what it writes goes to a log: a hangup or a closed pipe
/// must not end it. SIGTERM (from `stop`) must.
fn calm_signals() {
    use nix_signal::{SigHandler, Signal as S};
    // SAFETY: setting dispositions installs no handler code.
    unsafe {
        let _ = nix_signal::signal(S::SIGHUP, SigHandler::SigIgn);
        let _ = nix_signal::signal(S::SIGPIPE, SigHandler::SigIgn);
        let _ = nix_signal::signal(S::SIGTERM, SigHandler::SigDfl);
    }
}

/// From here on the watcher's output goes to `log` (the timer's log), and it holds nothing of
/// the terminal or pipes of whoever started it; `/dev/null` when the log cannot be opened.
pub fn detach_output(log: &Path) {
    let target =
        crate::files::open_append(log, "opening the timer's log", false, false).or_else(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(Error::io("opening", "/dev/null"))
        });
    if let Ok(file) = target {
        let _ = nix::unistd::dup2_stdout(&file);
        let _ = nix::unistd::dup2_stderr(&file);
    }
}

impl Finder<'_> {
    /// Whether `identity` is a watcher, still running: same process (pid and start), ours,
    /// and running the watch verb. For any config: a watcher whose config has since moved is
    /// still the service's, and must be found to be ended.
    #[must_use]
    pub fn is_watcher(&self, identity: &Identity) -> bool {
        self.watcher_argv(identity).is_some_and(|argv| {
            argv.is_empty() || argv.split(|b| *b == 0).any(|w| w == VERB.as_bytes())
        })
    }

    /// Whether `identity` is a watcher, still running, for `config_file` (one started for the
    /// config at another path, before its folder moved, must be replaced).
    #[must_use]
    pub fn watches(&self, identity: &Identity, config_file: &Path) -> bool {
        self.watcher_argv(identity)
            .is_some_and(|argv| argv.is_empty() || is_watcher_for(&argv, config_file))
    }

    /// The watchers running for `config_file` that no record names (it was removed by hand),
    /// oldest first, each with how it waits when its command line says: this user's keepup
    /// processes whose command line is a watcher's for that config. One look at each process's
    /// executable, for keepup's own program, passes over the others.
    #[must_use]
    pub fn running_watchers(&self, config_file: &Path) -> Vec<(Instance, Option<Waits>)> {
        let Some(own) = crate::files::FileId::of(&os::own_program()) else {
            return Vec::new();
        };
        let Ok(table) = super::Table::read() else {
            return Vec::new();
        };
        // Also those whose executable is not told: one started before an upgrade replaced it.
        let mut found: Vec<(Instance, Option<Waits>)> = table
            .at(super::Link::Exe, &[own])
            .into_iter()
            .filter(|&pid| pid != self.me && table.uid(pid) == Some(self.uid))
            .filter_map(|pid| {
                let argv = table.cmdline(pid);
                if !is_watcher_for(&argv, config_file) {
                    return None;
                }
                let facts = os::facts(pid).filter(|f| !f.zombie && f.uid == self.uid)?;
                Some((
                    super::instance(Pid::new(pid.into())?, facts),
                    waits_in(&argv),
                ))
            })
            .collect();
        found.sort_by_key(|(watcher, _)| (watcher.facts.start_ticks, watcher.facts.pid));
        found
    }

    /// The command line (NUL-separated) of the live process `identity` (ours, same start);
    /// empty while it is between its two states (an exec), when the identity alone is the
    /// answer.
    fn watcher_argv(&self, identity: &Identity) -> Option<Vec<u8>> {
        let facts = os::facts(identity.pid.get())?;
        if facts.zombie || facts.start != identity.start || facts.uid != self.uid {
            return None;
        }
        Some(os::cmdline(identity.pid.get()).unwrap_or_default())
    }

    /// Wakes the watcher `identity`, if it is one, to look for what is asked of it (a reload):
    /// with SIGCHLD, which it waits for anyway (it reaps its children) and which does nothing
    /// else to it.
    #[must_use]
    pub fn wake_watcher(&self, identity: &Identity) -> bool {
        self.is_watcher(identity)
            && nix_signal::kill(
                NixPid::from_raw(identity.pid.get()),
                nix_signal::Signal::SIGCHLD,
            )
            .is_ok()
    }

    /// Ends the watcher `identity`, and first what it was left with as subreaper: the live
    /// processes it is the parent of, other than `keep` (the service, when it is to run on).
    /// Those get `signal`, then SIGKILL after `timeout`. Returns their pids.
    pub fn end_watcher(
        &self,
        identity: &Identity,
        keep: Option<&Instance>,
        signal: Signal,
        timeout: Duration,
    ) -> Result<Vec<Orphan>> {
        if !self.is_watcher(identity) {
            return Ok(Vec::new());
        }
        let watcher = identity.pid.get();
        let left = self.end_orphans(watcher, keep, signal, timeout)?;
        for signal in [Signal::TERM, Signal::KILL] {
            if !self.is_watcher(identity) {
                break;
            }
            match to_nix(signal).and_then(|s| nix_signal::kill(NixPid::from_raw(watcher), s)) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    return Err(Error::Failed(format!(
                        "sending {signal} to the watcher {watcher}: {}",
                        e.desc()
                    )));
                }
            }
            if poll_until(Instant::now() + END_GRACE, || !self.is_watcher(identity)) {
                return Ok(left);
            }
        }
        if self.is_watcher(identity) {
            return Err(Error::Failed(format!(
                "the watcher {watcher} still runs after SIGKILL"
            )));
        }
        Ok(left)
    }

    /// Whether `watcher` has any live child: most deaths leave none.
    #[must_use]
    pub fn left_any(&self, watcher: i32) -> bool {
        !orphans_of(watcher, None).is_empty()
    }

    /// Ends the live children of `watcher` other than `keep` (what a subreaper is left with):
    /// `signal`, then SIGKILL after `timeout`. Returns their pids.
    pub fn end_orphans(
        &self,
        watcher: i32,
        keep: Option<&Instance>,
        signal: Signal,
        timeout: Duration,
    ) -> Result<Vec<Orphan>> {
        let left = orphans_of(watcher, keep);
        if left.is_empty() {
            return Ok(left);
        }
        signal_orphans(watcher, &left, signal);
        if poll_until(Instant::now() + timeout, || {
            orphans_of(watcher, keep).is_empty()
        }) {
            return Ok(left);
        }
        let still = orphans_of(watcher, keep);
        signal_orphans(watcher, &still, Signal::KILL);
        if poll_until(Instant::now() + super::KILL_GRACE, || {
            orphans_of(watcher, keep).is_empty()
        }) {
            return Ok(left);
        }
        Err(Error::Failed(format!(
            "{} still run after SIGKILL: {}",
            crate::text::count_text(still.len(), "process"),
            pid_list(
                &orphans_of(watcher, keep)
                    .iter()
                    .map(|o| o.pid)
                    .collect::<Vec<_>>()
            )
        )))
    }
}

/// A process the watcher was left with (as subreaper), and the process group it was in when
/// first seen: the dead instance's, or one of its own (it left with `setsid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub pid: Pid,
    pub pgid: i32,
}

/// The live children of `watcher` other than `keep`: a process's parent is only ever
/// changed to a subreaper or init, so these are the watcher's own or what it inherited.
pub(super) fn orphans_of(watcher: i32, keep: Option<&Instance>) -> Vec<Orphan> {
    let keep = keep.map(|k| k.pid().get());
    // Its own children list first: the size of the service, not of the process table.
    let listed = if u32::try_from(watcher).is_ok_and(|w| w == std::process::id()) {
        os::own_children()
    } else {
        os::children(watcher)
    };
    listed
        .or_else(|| os::pids().ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| Some(*p) != keep)
        .filter_map(os::facts)
        .filter(|f| f.ppid == watcher && !f.zombie)
        .filter_map(|f| {
            Some(Orphan {
                pid: Pid::new(f.pid.into())?,
                pgid: f.pgid,
            })
        })
        .collect()
}

/// `signal` (then SIGCONT) to each of `orphans` still the watcher's child (and to the group
/// it leads, if it leads one: a worker that left with `setsid` took its own children along).
pub(super) fn signal_orphans(watcher: i32, orphans: &[Orphan], signal: Signal) {
    let own_group = nix::unistd::getpgrp().as_raw();
    for orphan in orphans {
        let pid = orphan.pid;
        let Some(facts) = os::facts(pid.get()) else {
            continue;
        };
        // Still the watcher's: a pid cannot be reused before its parent reaps it.
        if facts.ppid != watcher || facts.zombie {
            continue;
        }
        let _ = super::ending::deliver(
            pid,
            facts.pgid == facts.pid && facts.pgid != own_group,
            signal,
        );
    }
}

/// Pids for a message: "12, 34".
#[must_use]
pub fn pid_list(pids: &[Pid]) -> String {
    let words: Vec<String> = pids.iter().map(ToString::to_string).collect();
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<u8> {
        words.join("\0").into_bytes()
    }

    #[test]
    fn a_watchers_command_line_is_told_by_its_config_and_says_how_it_waits() {
        let config = Path::new("/srv/app/cfg.toml");
        let waiting = |waits: &str| {
            argv(&[
                "/usr/bin/keepup",
                "--config",
                "/srv/app/cfg.toml",
                VERB,
                WAIT,
                "4242",
                "boot:123",
                waits,
                "3",
            ])
        };
        assert!(is_watcher_for(&waiting("pidfd"), config));
        assert_eq!(waits_in(&waiting("pidfd")), Some(Waits::Pidfd));
        assert_eq!(waits_in(&waiting("polling")), Some(Waits::Polling));
        assert_eq!(waits_in(&waiting("other")), None);
        // Acting: launching, with no waiting arguments.
        let acting = argv(&[
            "/usr/bin/keepup",
            "--config",
            "/srv/app/cfg.toml",
            VERB,
            "--lock-fd",
            "3",
        ]);
        assert!(is_watcher_for(&acting, config));
        assert_eq!(waits_in(&acting), None);
        // Another config's watcher, a config only named, and another verb are not.
        assert!(!is_watcher_for(
            &waiting("pidfd"),
            Path::new("/srv/other/cfg.toml")
        ));
        assert!(!is_watcher_for(&waiting("pidfd"), Path::new("/srv/app")));
        let status = argv(&["/usr/bin/keepup", "--config", "/srv/app/cfg.toml", "status"]);
        assert!(!is_watcher_for(&status, config));
        assert!(!is_watcher_for(b"", config));
    }
}
