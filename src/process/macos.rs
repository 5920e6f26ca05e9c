//! Process facts from macOS's process API, through `sysinfo`. macOS has no `/proc`; sysinfo
//! reads argv, cwd and executable with `sysctl` and `proc_pidinfo`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sysinfo::{
    Pid as SysPid, Process, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System,
    UpdateKind,
};

use std::os::fd::RawFd;

use super::{Facts, Link, Look};
use crate::files::FileId;

fn with_process<T>(pid: i32, kind: ProcessRefreshKind, f: impl FnOnce(&Process) -> T) -> Option<T> {
    let mut system = System::new().ok()?;
    let pid = SysPid::from_u32(u32::try_from(pid).ok()?);
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
    system.process(pid).map(f)
}

pub fn pids() -> std::io::Result<Vec<i32>> {
    let mut system = System::new().map_err(|e| std::io::Error::other(e.to_string()))?;
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    Ok(system
        .processes()
        .keys()
        .filter_map(|p| i32::try_from(p.as_u32()).ok())
        .collect())
}

pub fn uid(pid: i32) -> Option<u32> {
    with_process(
        pid,
        ProcessRefreshKind::nothing().with_user(UpdateKind::Always),
        |p| p.user_id().map(|u| **u),
    )
    .flatten()
}

pub fn facts(pid: i32) -> Option<Facts> {
    let kind = ProcessRefreshKind::nothing()
        .with_user(UpdateKind::Always)
        .with_memory();
    let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).ok()?;
    let session = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).ok()?;
    with_process(pid, kind, |p| Facts {
        pid,
        ppid: p
            .parent()
            .and_then(|pp| i32::try_from(pp.as_u32()).ok())
            .unwrap_or(0),
        pgid: group.as_raw(),
        sid: session.as_raw(),
        uid: p.user_id().map_or(u32::MAX, |u| **u),
        zombie: p.status() == ProcessStatus::Zombie,
        stopped: match p.status() {
            ProcessStatus::Stop => Some("stopped (SIGSTOP)"),
            ProcessStatus::Tracing => Some("stopped (traced)"),
            _ => None,
        },
        // Seconds since the epoch: unique with the pid, across reboots too.
        start: p.start_time().to_string(),
        start_ticks: p.start_time(),
        rss_pages: p.memory(),
    })
}

pub fn ppid(pid: i32) -> Option<i32> {
    facts(pid).map(|f| f.ppid)
}

pub fn live_in_group(pid: i32, group: i32) -> bool {
    facts(pid).is_some_and(|f| f.pgid == group && !f.zombie)
}

pub fn cmdline(pid: i32) -> Option<Vec<u8>> {
    with_process(
        pid,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
        |p| {
            let mut line = Vec::new();
            for word in p.cmd() {
                line.extend_from_slice(word.as_encoded_bytes());
                line.push(0);
            }
            line
        },
    )
}

/// Not told here (it would take `lsof`): the config's log is shown.
pub fn output_file(_pid: i32) -> Option<PathBuf> {
    None
}

pub fn cwd(pid: i32) -> Option<PathBuf> {
    with_process(
        pid,
        ProcessRefreshKind::nothing().with_cwd(UpdateKind::Always),
        |p| p.cwd().map(PathBuf::from),
    )
    .flatten()
}

pub fn exe(pid: i32) -> Option<PathBuf> {
    with_process(
        pid,
        ProcessRefreshKind::nothing().with_exe(UpdateKind::Always),
        |p| p.exe().map(PathBuf::from),
    )
    .flatten()
}

/// The file a process's `link` leads to, from its path: what `lsof` or the process API tell.
pub fn link_file(pid: i32, link: Link) -> Look {
    let path = match link {
        Link::Cwd => cwd(pid),
        Link::Exe => exe(pid),
    };
    path.and_then(|p| FileId::of(&p))
        .map_or(Look::Unknown, Look::At)
}

/// No children lists here: the caller looks through the whole table.
pub fn family(_pid: i32) -> Option<Vec<i32>> {
    None
}

/// A process run by its own path keeps its name here.
pub fn name_self() {}

/// macOS has no subreaper: a daemonizing service is reported as such by its exit, no more.
pub fn become_subreaper() {}

/// Whether `start` (epoch seconds, from [`facts`]) is since this boot.
pub fn this_boot(start: &str) -> bool {
    start
        .parse::<u64>()
        .is_ok_and(|s| s >= sysinfo::System::boot_time().unwrap_or(0))
}

pub fn started_at(facts: &Facts) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(facts.start_ticks))
}

/// sysinfo reports memory in bytes already. (`Option` as in `linux.rs`: one interface.)
#[allow(clippy::unnecessary_wraps)]
pub fn rss_bytes(facts: &Facts) -> Option<u64> {
    Some(facts.rss_pages)
}

/// macOS tells no proportional set size: memory is given as RSS alone there.
pub fn pss_bytes(_pid: i32) -> Option<u64> {
    None
}

/// No children lists here: callers look through the whole table.
pub fn children(_pid: i32) -> Option<Vec<i32>> {
    None
}

/// As [`children`], for this process.
pub fn own_children() -> Option<Vec<i32>> {
    None
}

/// Where this process's open descriptors are listed.
pub const OWN_FDS: &str = "/dev/fd";

/// No `close_range` here: the caller closes one by one.
pub unsafe fn close_range(_low: RawFd, _high: RawFd) -> bool {
    false
}

/// A plain fork here: the child runs `child(arg)` in its own copy of this process's memory.
///
/// # Safety
/// As Linux's: `child` makes only system calls and never returns.
pub unsafe fn start_sharing(
    child: extern "C" fn(*mut nix::libc::c_void) -> nix::libc::c_int,
    arg: *mut nix::libc::c_void,
    _stack: &mut [std::mem::MaybeUninit<u8>],
) -> nix::Result<i32> {
    // SAFETY: the caller's word: only system calls in the child, then exec or exit.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            child(arg);
            // SAFETY: leaving the child without running anything of the parent's.
            unsafe { nix::libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// Nothing to keep here: keepup is run by its path.
pub fn keep_program() {}

/// No read-populate advice on macOS: pages are mapped as they are first used.
pub fn map_programs() {}

/// keepup's own program, by its path.
pub fn program_to_run() -> PathBuf {
    own_program()
}

/// keepup's own program, to run again.
pub fn own_program() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("keepup"))
}

/// A pipe holding `bytes` whose reading end an exec'd program inherits (no close-on-exec):
/// how the watcher carries its last good config into its next image. A pipe holds 16 KiB
/// here; a larger config is not carried (the watcher then leaves if the file breaks).
pub fn inheritable_copy(bytes: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::Write;
    use std::os::fd::AsFd;
    if bytes.len() > 16 * 1024 {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    let (reader, mut writer) = std::io::pipe()?;
    writer.write_all(bytes)?;
    drop(writer);
    let fd = std::os::fd::OwnedFd::from(reader);
    nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    Ok(fd)
}

/// The program name of `pid`.
pub fn name(pid: i32) -> Option<String> {
    with_process(pid, ProcessRefreshKind::nothing(), |p| {
        p.name().to_string_lossy().into_owned()
    })
}

/// No pidfd here: the watcher looks every 100 ms instead.
pub fn pidfd(_pid: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// No signalfd here: children are reaped at each look.
pub struct ChildSignals;

impl ChildSignals {
    pub fn block() -> Option<ChildSignals> {
        None
    }
}

/// Sleeps for `timeout`: with nothing to wait on, only the clock wakes the watcher.
pub fn wait(
    _watched: Option<&std::os::fd::OwnedFd>,
    _children: Option<&ChildSignals>,
    timeout: Option<Duration>,
) -> bool {
    std::thread::sleep(timeout.unwrap_or(Duration::from_secs(1)));
    false
}

/// As [`wait`], also woken when `extra` turns readable (there is nothing else to poll here).
pub fn wait_also(
    _watched: Option<&std::os::fd::OwnedFd>,
    _children: Option<&ChildSignals>,
    extra: std::os::fd::BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> (bool, bool) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&extra, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: i64::try_from(timeout.unwrap_or(Duration::from_secs(1)).as_secs())
            .unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.unwrap_or_default().subsec_nanos()),
    };
    let readable = rustix::event::poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0);
    (false, readable)
}

/// Who holds a `flock`: macOS has no cheap way to tell.
pub fn flock_holder(_path: &std::path::Path) -> Option<i32> {
    None
}

/// macOS attaches no credentials to datagrams (no `SO_PASSCRED`): the notify socket is a file
/// of mode 0600 in the state folder, which only the service's user can reach, and its
/// datagrams are taken without a sender check.
#[allow(clippy::unnecessary_wraps)] // Linux's can fail: one signature for both.
pub fn pass_credentials(_fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
    Ok(())
}

/// macOS has no abstract socket names.
pub fn abstract_address(name: &str) -> std::io::Result<nix::sys::socket::UnixAddr> {
    Err(std::io::Error::other(format!(
        "no abstract socket names on macOS (@{name}): use a shorter state_dir"
    )))
}

/// One datagram waiting on `fd` (without blocking); its sender is unknown on macOS.
pub fn receive_with_sender(fd: &std::os::fd::OwnedFd) -> Option<(Option<i32>, Vec<u8>)> {
    let mut buffer = vec![0_u8; 4096];
    let bytes = nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(fd),
        &mut buffer,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    buffer.truncate(bytes);
    Some((None, buffer))
}
