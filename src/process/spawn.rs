//! Starting the service: detached, in its own session and process group, with a clean
//! signal state, output to the log; and what a start leaves when it goes wrong (a child that
//! exited, one that forked into the background).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

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
    /// entry's folder. The process waits at a gate before it runs the service's program, until
    /// [`Spawned::release`]: keepup records it first, so no instance ever runs unrecorded (a
    /// keepup killed before it records one closes the gate, and the process leaves).
    /// `sockets`: what it gets at fds 3… (`listen`), with `LISTEN_FDS`, `LISTEN_FDNAMES` and its
    /// own pid in `LISTEN_PID`.
    pub fn spawn(
        &self,
        env: crate::environment::Environment,
        sockets: &super::sockets::Handed,
    ) -> Result<Spawned> {
        let config = self.config;
        let log = crate::files::open_append(&config.log, "opening log", true, true)?;
        let null = std::fs::File::open("/dev/null").map_err(Error::io("opening", "/dev/null"))?;
        let (program, _) = config
            .startup
            .split_first()
            .ok_or_else(|| Error::Failed("startup is empty".into()))?;
        let cannot_run = |e: std::io::Error| {
            Error::Failed(format!(
                "{}: cannot run {}: {e}",
                config.name,
                Path::new(program).display()
            ))
        };
        // What execvp would run, found before the fork: the child may only make system calls.
        let path_env = crate::environment::path_of(&env);
        let resolved = if program.contains('/') {
            PathBuf::from(program)
        } else {
            crate::files::find_on_path(program, &path_env)
                .ok_or_else(|| cannot_run(std::io::Error::from_raw_os_error(nix::libc::ENOENT)))?
        };
        let exec = Exec::new(&resolved, &config.startup, env, config.dir(), sockets)
            .ok_or_else(|| Error::Failed(format!("{}: startup holds a NUL byte", config.name)))?;
        // Out of descriptors or process slots: keepup's own trouble, passing, not the service's.
        let no_launch = |what: &str, e: nix::errno::Errno| {
            Error::NotLaunched(format!(
                "{}: not launched: {what}: {}",
                config.name,
                std::io::Error::from(e)
            ))
        };
        let (gate_out, gate_in) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| no_launch("making a pipe", e))?;
        let (errors_out, errors_in) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| no_launch("making a pipe", e))?;
        let mut lent = Box::new(Lent {
            exec,
            gate: gate_out.as_raw_fd(),
            gate_in: gate_in.as_raw_fd(),
            errors: errors_in.as_raw_fd(),
            errors_out: errors_out.as_raw_fd(),
            null: null.as_raw_fd(),
            log: log.as_raw_fd(),
        });
        // Left unwritten: the child touches a page or two at its top, and zeroing all of it
        // faulted in every page on the revival's way (40 µs here).
        let mut stack = Box::<[u8]>::new_uninit_slice(CHILD_STACK);
        // No handler of keepup's may run in the child while it shares keepup's memory: it
        // starts with every signal blocked, and sets them to their defaults before unblocking.
        let mut before = nix_signal::SigSet::empty();
        let _ = nix_signal::pthread_sigmask(
            nix_signal::SigmaskHow::SIG_SETMASK,
            Some(&nix_signal::SigSet::all()),
            Some(&mut before),
        );
        // SAFETY: keepup is single-threaded where it launches (a command's main thread, or the
        // watcher); `start_child` makes only system calls, on `lent` and `stack`, which
        // `Spawned` keeps unchanged until the child has exec'd or exited, and reads `errno`
        // only past its gate, while this process waits in `release`.
        let started =
            unsafe { os::start_sharing(start_child, (&raw mut *lent).cast(), &mut stack) };
        let _ =
            nix_signal::pthread_sigmask(nix_signal::SigmaskHow::SIG_SETMASK, Some(&before), None);
        let child = started.map_err(|e| no_launch("fork", e))?;
        // The child's ends are its own now (it has its own table of descriptors).
        drop(gate_out);
        drop(errors_in);
        Ok(Spawned {
            pid: NixPid::from_raw(child),
            gate: Some(gate_in),
            errors: Some(errors_out),
            status: None,
            program: resolved,
            lent: Some(Lending {
                _lent: lent,
                _stack: stack,
            }),
        })
    }

    /// Live processes whose parent is keepup, other than `child`: what a service that forked
    /// into the background left behind, once keepup is their subreaper ([`become_subreaper`]).
    #[must_use]
    pub fn strays(&self, child: &Spawned) -> Vec<Pid> {
        let child = child.pid.as_raw();
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
    pub fn started(&self, child: &mut Spawned) -> Result<Started> {
        let pid = Pid::new(child.pid.as_raw().into())
            .ok_or_else(|| Error::Failed(format!("spawned an impossible pid {}", child.pid)))?;
        match child.try_wait() {
            Ok(Some(status)) => Ok(Started::Exited(status)),
            Ok(None) => Ok(match os::facts(pid.get()) {
                // It may not have reached its `setsid` yet; no process that runs the service
                // has not, so it leads its own group (what its record says of it).
                Some(mut facts) if !facts.zombie => {
                    facts.pgid = facts.pid;
                    Started::Running(instance(pid, facts))
                }
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
    pub fn abandon(&self, child: &mut Spawned) {
        // Before its release it may not lead its group yet (the group's signal then finds
        // nobody); it leaves by itself once the gate closes.
        child.gate = None;
        if child.status.is_none() {
            let _ = nix_signal::killpg(child.pid, nix_signal::Signal::SIGKILL);
            let _ = nix_signal::kill(child.pid, nix_signal::Signal::SIGKILL);
        }
        let _ = child.wait();
    }
}

/// A service process just started, held at its gate until released.
#[derive(Debug)]
pub struct Spawned {
    pid: NixPid,
    /// Closing it without a byte makes the process leave instead of running the program.
    gate: Option<OwnedFd>,
    /// Where the process says why its exec failed; closed unread by a successful exec.
    errors: Option<OwnedFd>,
    status: Option<ExitStatus>,
    program: PathBuf,
    /// What the child reads in keepup's memory until it has exec'd or exited.
    lent: Option<Lending>,
}

/// The child's memory, held for it (see [`os::start_sharing`]).
struct Lending {
    _lent: Box<Lent>,
    _stack: Box<[std::mem::MaybeUninit<u8>]>,
}

impl std::fmt::Debug for Lending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lending")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A child not known to have exec'd or exited may still read it: leaked, never freed
        // under it (a launch ends by `release` or `abandon`, which settle it; this is the
        // fallback).
        if self.status.is_none()
            && let Some(lending) = self.lent.take()
        {
            std::mem::forget(lending);
        }
    }
}

/// How much stack the child gets: it runs a few system calls on memory prepared for it.
const CHILD_STACK: usize = 64 * 1024;

/// What the child needs, in keepup's memory: the program and its setting, and the
/// descriptors it uses (`gate`, `errors`, `null`, `log`) or closes (keepup's ends).
struct Lent {
    exec: Exec,
    gate: RawFd,
    gate_in: RawFd,
    errors: RawFd,
    errors_out: RawFd,
    null: RawFd,
    log: RawFd,
}

/// The child's first instruction: it closes its copies of keepup's ends of the pipes (so
/// keepup's death closes the gate), then waits at the gate and runs the program.
extern "C" fn start_child(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    // SAFETY: `arg` is the `Lent` that `Spawned` keeps for this process, unchanged.
    let lent = unsafe { &*arg.cast::<Lent>() };
    // SAFETY: descriptors of this process's own table; system calls only.
    unsafe {
        nix::libc::close(lent.gate_in);
        nix::libc::close(lent.errors_out);
        lent.exec.run(lent.gate, lent.errors, lent.null, lent.log)
    }
}

impl Spawned {
    /// Lets the process run the service's program; says why it could not, if it could not.
    pub fn release(&mut self) -> Result<(), String> {
        let Some(gate) = self.gate.take() else {
            return Ok(());
        };
        let opened = nix::unistd::write(&gate, b"g");
        drop(gate);
        let Some(errors) = self.errors.take() else {
            return Ok(());
        };
        let mut errno = [0u8; 4];
        let mut got = 0;
        let mut closed = false;
        while got < errno.len() {
            match nix::unistd::read(&errors, &mut errno[got..]) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        // Closed unsaid: the child has exec'd (its exec closed the pipe once it had a memory
        // of its own) or has ended. One that said why it failed is still on its way out.
        if closed && got == 0 {
            self.lent = None;
        }
        if got == errno.len() {
            return Err(format!(
                "cannot run {}: {}",
                self.program.display(),
                std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))
            ));
        }
        opened.map(drop).map_err(|e| {
            format!(
                "cannot run {}: {}",
                self.program.display(),
                std::io::Error::from(e)
            )
        })
    }

    /// Its exit status, if it has exited (reaped here).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.reap(nix::sys::wait::WaitPidFlag::WNOHANG)
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.reap(nix::sys::wait::WaitPidFlag::empty())? {
                return Ok(status);
            }
        }
    }

    fn reap(&mut self, flags: nix::sys::wait::WaitPidFlag) -> std::io::Result<Option<ExitStatus>> {
        use nix::sys::wait::{WaitStatus, waitpid};
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = match waitpid(self.pid, Some(flags)) {
            Ok(WaitStatus::Exited(_, code)) => ExitStatus::from_raw((code & 0xff) << 8),
            Ok(WaitStatus::Signaled(_, signal, _)) => ExitStatus::from_raw(signal as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.status = Some(status);
        self.lent = None;
        Ok(Some(status))
    }
}

/// Everything the forked process needs to run the service, prepared before the fork (it may
/// not allocate).
struct Exec {
    program: CString,
    /// The sockets to put at fds 3… (`listen`).
    sockets: Vec<RawFd>,
    /// `LISTEN_PID=` (with `listen`) and `WATCHDOG_PID=` (with a watchdog), each with room for
    /// the child's pid, which only the child knows: written there after the fork, through
    /// `pid_digits` (entries of `envp_ptrs` point at them).
    _pid_vars: Vec<Vec<u8>>,
    pid_digits: Vec<*mut u8>,
    /// What `argv_ptrs` points into: owned here for as long as the pointers are used.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const nix::libc::c_char>,
    /// Likewise for `envp_ptrs`.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const nix::libc::c_char>,
    dir: CString,
}

impl Exec {
    fn new(
        program: &Path,
        argv: &[String],
        mut env: BTreeMap<OsString, OsString>,
        dir: &Path,
        sockets: &super::sockets::Handed,
    ) -> Option<Exec> {
        use std::os::unix::ffi::OsStrExt;
        let mut pid_keys = Vec::new();
        // What the environment says of sockets describes keepup's own, not what this launch
        // hands over.
        if !sockets.fds.is_empty() {
            for key in LISTEN_KEYS {
                env.remove(OsStr::new(key));
            }
            env.insert("LISTEN_FDS".into(), sockets.fds.len().to_string().into());
            env.insert("LISTEN_FDNAMES".into(), sockets.names.clone().into());
            pid_keys.push("LISTEN_PID");
        }
        // A watchdog is the service's own: sd_watchdog_enabled() checks the pid.
        env.remove(OsStr::new("WATCHDOG_PID"));
        if env.contains_key(OsStr::new("WATCHDOG_USEC")) {
            pid_keys.push("WATCHDOG_PID");
        }
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).ok())
            .collect::<Option<_>>()?;
        let envp: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| {
                let mut pair = std::os::unix::ffi::OsStringExt::into_vec(k);
                pair.push(b'=');
                pair.extend_from_slice(v.as_bytes());
                CString::new(pair).ok()
            })
            .collect::<Option<_>>()?;
        let pointers = |strings: &[CString]| {
            let mut pointers: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
            pointers.push(std::ptr::null());
            pointers
        };
        let mut envp_ptrs = pointers(&envp);
        let mut pid_vars: Vec<Vec<u8>> = pid_keys
            .iter()
            .map(|key| {
                let mut var = format!("{key}=").into_bytes();
                var.resize(var.len() + PID_DIGITS + 1, 0);
                var
            })
            .collect();
        // Derived once, and only written through in the child (each buffer stays where it is
        // when the list of them moves).
        let pid_digits = pid_vars
            .iter_mut()
            .zip(&pid_keys)
            .map(|(var, key)| {
                let start = var.as_mut_ptr();
                envp_ptrs.insert(envp_ptrs.len() - 1, start.cast_const().cast());
                // SAFETY: within the buffer: "KEY=" is followed by the digits' room.
                unsafe { start.add(key.len() + 1) }
            })
            .collect();
        Some(Exec {
            program: CString::new(program.as_os_str().as_bytes()).ok()?,
            sockets: sockets.fds.clone(),
            _pid_vars: pid_vars,
            pid_digits,
            argv_ptrs: pointers(&argv),
            envp_ptrs,
            _argv: argv,
            _envp: envp,
            dir: CString::new(dir.as_os_str().as_bytes()).ok()?,
        })
    }

    /// In the child (see [`start_child`]): takes its own session, stdin from `null`, stdout
    /// and stderr to `log`, the entry's folder and default signals, waits at `gate`, then
    /// lets signals in and runs the program, or says on `errors` why it could not (only past
    /// the gate, when keepup waits for it). Never returns.
    ///
    /// # Safety
    /// Only in the child [`os::start_sharing`] started, with these descriptors open, while
    /// keepup keeps this `Exec` unchanged.
    unsafe fn run(&self, gate: RawFd, errors: RawFd, null: RawFd, log: RawFd) -> ! {
        use nix::libc;
        // SAFETY: async-signal-safe system calls only, on memory prepared before the start.
        unsafe {
            let mut errors = errors;
            let fail = |errors: RawFd, errno: i32| -> ! {
                let bytes = errno.to_ne_bytes();
                libc::write(errors, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127)
            };
            // What needs no word from keepup is done before the gate, while keepup writes
            // down who this process is, rather than after it, on a revival's way. The calls
            // are rustix's, the kernel's own: they set no `errno`, which keepup, running
            // meanwhile in this same memory, may be reading. (The gate and `errors` are above
            // 2: Rust's runtime keeps 0, 1 and 2 open in keepup.)
            let detached = self.detach(null, log);
            default_signals();
            let mut byte = 0u8;
            // A closed gate (keepup died before recording this process): leave unrun.
            loop {
                match libc::read(gate, (&raw mut byte).cast(), 1) {
                    1 => break,
                    -1 if nix::errno::Errno::last_raw() == libc::EINTR => {}
                    _ => libc::_exit(126),
                }
            }
            libc::close(gate);
            if let Err(errno) = detached {
                fail(errors, errno.raw_os_error());
            }
            if !self.sockets.is_empty() {
                errors = self
                    .hand_sockets(errors)
                    .unwrap_or_else(|errno| fail(errors, errno));
            }
            for digits in &self.pid_digits {
                write_pid(*digits, libc::getpid());
            }
            unblock_signals();
            let first_free = crate::listen::fd_of(self.sockets.len());
            super::descriptors::close_inherited(first_free, errors);
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            );
            fail(errors, nix::errno::Errno::last_raw())
        }
    }
}

impl Exec {
    /// In the child: its own session, stdin from `null`, stdout and stderr to `log`, the
    /// entry's folder.
    ///
    /// # Safety
    /// As [`Exec::run`]; `null` and `log` are open in this process.
    unsafe fn detach(&self, null: RawFd, log: RawFd) -> rustix::io::Result<()> {
        use std::os::fd::BorrowedFd;
        // SAFETY: open descriptors of this process's own table (the caller's word).
        let (null, log) = unsafe { (BorrowedFd::borrow_raw(null), BorrowedFd::borrow_raw(log)) };
        rustix::process::setsid()?;
        rustix::stdio::dup2_stdin(null)?;
        rustix::stdio::dup2_stdout(log)?;
        rustix::stdio::dup2_stderr(log)?;
        rustix::process::chdir(self.dir.as_c_str())
    }

    /// In the child: puts the sockets at fds 3… (inheritable), moving first out of
    /// their way `errors` (returned at its new number) and the sockets themselves, which may
    /// sit where another must go. Says the errno when a step fails.
    ///
    /// # Safety
    /// As [`Exec::run`].
    unsafe fn hand_sockets(&self, errors: RawFd) -> Result<RawFd, i32> {
        use nix::libc;
        let count = self.sockets.len().min(crate::listen::MAX_LISTEN);
        let above = crate::listen::fd_of(count);
        let mut moved = [-1; crate::listen::MAX_LISTEN];
        // SAFETY: fcntl and dup2 on descriptors this process holds; no allocation.
        unsafe {
            let errors = libc::fcntl(errors, libc::F_DUPFD_CLOEXEC, above);
            if errors < 0 {
                return Err(nix::errno::Errno::last_raw());
            }
            for (i, fd) in self.sockets.iter().take(count).enumerate() {
                moved[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, above);
                if moved[i] < 0 {
                    return Err(nix::errno::Errno::last_raw());
                }
            }
            for (i, fd) in moved.iter().take(count).enumerate() {
                // dup2 leaves the new descriptor inheritable.
                if libc::dup2(*fd, crate::listen::fd_of(i)) < 0 {
                    return Err(nix::errno::Errno::last_raw());
                }
            }
            Ok(errors)
        }
    }
}

/// The variables of socket activation, which a launch that hands sockets sets anew.
const LISTEN_KEYS: [&str; 4] = [
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_PID",
    "LISTEN_PIDFDID",
];

/// Room for a pid's decimal digits.
const PID_DIGITS: usize = 20;

/// Writes `pid` in decimal at `at` (room for [`PID_DIGITS`] and a NUL), in the forked child:
/// no allocation, no formatting machinery.
///
/// # Safety
/// `at` must point at that much writable memory of this process's own.
unsafe fn write_pid(at: *mut u8, pid: nix::libc::pid_t) {
    let mut digits = [0u8; PID_DIGITS];
    let mut n = 0;
    let mut left = u64::try_from(pid).unwrap_or(0);
    loop {
        digits[n] = b'0' + u8::try_from(left % 10).unwrap_or(0);
        n += 1;
        left /= 10;
        if left == 0 || n == PID_DIGITS {
            break;
        }
    }
    for i in 0..n {
        // SAFETY: i < n <= PID_DIGITS, within the room the caller promises.
        unsafe { *at.add(i) = digits[n - 1 - i] };
    }
    // SAFETY: as above; n <= PID_DIGITS, and the room holds one more byte for the NUL.
    unsafe { *at.add(n) = 0 };
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

/// The interrupts a person or a script sends a command (Ctrl-C, `kill`, a closed terminal).
const INTERRUPTS: [nix_signal::Signal; 4] = [
    nix_signal::Signal::SIGINT,
    nix_signal::Signal::SIGTERM,
    nix_signal::Signal::SIGHUP,
    nix_signal::Signal::SIGQUIT,
];

fn interrupts() -> nix_signal::SigSet {
    let mut set = nix_signal::SigSet::empty();
    for signal in INTERRUPTS {
        set.add(signal);
    }
    set
}

/// Holds back interrupts (they stay pending) until [`resume_interrupts`]: for a command's
/// part that must not be cut in half (`restart --force` between stopping the old instance and
/// handing the new one's launch to a process of its own).
pub fn defer_interrupts() {
    let _ = interrupts().thread_block();
}

/// Runs `work` on a thread of its own that interrupts never reach: they stay with the main
/// thread, which may be holding them back ([`defer_interrupts`]); on another thread they would
/// end the command all the same.
pub fn spawn_deaf<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    blocking(interrupts(), || std::thread::Builder::new().spawn(work))
}

/// Runs `work` on a thread of `scope` that no signal reaches: each stays with the main thread,
/// whatever it blocks or waits for there (held-back interrupts, a `signalfd`).
pub fn spawn_deaf_in<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    work: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, T>> {
    blocking(nix_signal::SigSet::all(), || {
        std::thread::Builder::new().spawn_scoped(scope, work)
    })
}

/// Starts a thread (`spawn`) with `signals` blocked from its first instruction: a new thread
/// starts with its creator's mask, which is put back after.
fn blocking<T>(signals: nix_signal::SigSet, spawn: impl FnOnce() -> T) -> T {
    let before = signals.thread_swap_mask(nix_signal::SigmaskHow::SIG_BLOCK);
    let spawned = spawn();
    if let Ok(before) = before {
        let _ = before.thread_set_mask();
    }
    spawned
}

/// Lets held-back interrupts in (one pending now takes effect: the command ends).
pub fn resume_interrupts() {
    let _ = interrupts().thread_unblock();
}

/// The service should not inherit keepup's caller's ignored or blocked signals (cron, nohup),
/// or `stop` could not stop it. Nor what was sent to keepup's process group before this child
/// left it (a Ctrl-C while `restart --force` holds interrupts back, in the moment between the
/// fork and the `setsid`): pending behind keepup's mask, it would end the child the moment the
/// mask is cleared. Ignoring a signal discards it where it is pending; then the default, then
/// the mask.
pub(super) fn reset_signals() {
    default_signals();
    unblock_signals();
}

/// The dispositions of [`reset_signals`], each signal pending discarded; the mask is left.
fn default_signals() {
    use nix_signal::{SigHandler, Signal as S};
    for signal in [
        S::SIGHUP,
        S::SIGINT,
        S::SIGQUIT,
        S::SIGTERM,
        S::SIGUSR1,
        S::SIGUSR2,
        S::SIGPIPE,
    ] {
        // SAFETY: ignoring, then restoring the default disposition, installs no handler.
        unsafe {
            let _ = nix_signal::signal(signal, SigHandler::SigIgn);
            let _ = nix_signal::signal(signal, SigHandler::SigDfl);
        }
    }
}

/// The mask of [`reset_signals`]: nothing blocked.
fn unblock_signals() {
    use nix_signal::{SigSet, SigmaskHow};
    let _ = nix_signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
