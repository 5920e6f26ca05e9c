//! Process facts from Linux's `/proc`. Each function reads only the one file it needs, so a
//! check of one pid costs a few small reads, and a full scan takes one `statx` of each
//! process's working directory (or executable) and reads more only where the service may be.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::OwnedFd;

use std::os::fd::RawFd;

use super::{Facts, Link, Look};
use crate::files::FileId;

fn path(pid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// `/proc/<pid>/<file>` (or `/proc/<pid>` when `file` is empty) built on the stack, for the
/// reads a scan makes of every process: no allocation per process.
struct ProcPath {
    bytes: [u8; 48],
    len: usize,
}

impl ProcPath {
    fn new(pid: i32, file: &str) -> Option<ProcPath> {
        if file.is_empty() {
            ProcPath::written(format_args!("/proc/{pid}"))
        } else {
            ProcPath::written(format_args!("/proc/{pid}/{file}"))
        }
    }

    /// `<pid>/<file>`, for a look from [`proc_dir`].
    fn within(pid: i32, file: &str) -> Option<ProcPath> {
        ProcPath::written(format_args!("{pid}/{file}"))
    }

    fn written(path: std::fmt::Arguments<'_>) -> Option<ProcPath> {
        use std::io::Write as _;
        let mut bytes = [0u8; 48];
        let mut cursor = &mut bytes[..];
        cursor.write_fmt(path).ok()?;
        let len = 48 - cursor.len();
        Some(ProcPath { bytes, len })
    }

    fn as_path(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(&self.bytes[..self.len]))
    }
}

/// Reads a `/proc` file whole. Their size shows as 0, so `fs::read` would start small, and
/// `read_to_end` asks the size and position first (two more system calls per file): plain
/// reads into room for 4 KiB take a `stat`, a `comm` and most command lines at once.
fn read_proc(path: &Path) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    let mut content = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == content.len() {
            content.resize(len * 2, 0);
        }
        match file.read(&mut content[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    content.truncate(len);
    Some(content)
}

/// Reads `/proc/<pid>/stat` into `buffer` with one read, building its path on the stack: the
/// ancestor walk and group checks do this for many processes. A line is far below 1 KiB.
fn read_stat(pid: i32, buffer: &mut [u8; 1024]) -> Option<&[u8]> {
    let path = ProcPath::new(pid, "stat")?;
    let n = File::open(path.as_path()).ok()?.read(buffer).ok()?;
    Some(&buffer[..n])
}

/// State, ppid and pgrp from `/proc/<pid>/stat`, parsed in place.
fn stat_head(pid: i32) -> Option<(u8, i32, i32)> {
    let mut buffer = [0u8; 1024];
    let stat = read_stat(pid, &mut buffer)?;
    let after_name = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
    let mut fields = after_name.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let number = |field: &[u8]| std::str::from_utf8(field).ok()?.parse().ok();
    let parent = number(fields.next()?)?;
    let group = number(fields.next()?)?;
    Some((state, parent, group))
}

/// The parent of `pid`, reading no more of its `stat` than that.
pub fn ppid(pid: i32) -> Option<i32> {
    stat_head(pid).map(|(_, ppid, _)| ppid)
}

/// Whether `pid` is a live (non-zombie) member of process group `group`.
pub fn live_in_group(pid: i32, group: i32) -> bool {
    stat_head(pid)
        .is_some_and(|(state, _, pgrp)| !matches!(state, b'Z' | b'X' | b'x') && pgrp == group)
}

fn read_proc_text(path: &Path) -> Option<String> {
    String::from_utf8(read_proc(path)?).ok()
}

/// Every pid in the table (ours to filter). Read raw: the listing costs about a microsecond a
/// process in the kernel, and a scan of thousands must add little to it (std's reader makes
/// two strings of every name).
pub fn pids() -> std::io::Result<Vec<i32>> {
    use rustix::fs::{Mode, OFlags, RawDir, open};
    let dir = open(
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut buffer = vec![std::mem::MaybeUninit::uninit(); 32 * 1024];
    let mut entries = RawDir::new(dir, &mut buffer);
    let mut pids = Vec::new();
    while let Some(entry) = entries.next() {
        if let Some(pid) = decimal(entry?.file_name().to_bytes()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// A `/proc` entry's name as a pid: digits only.
fn decimal(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 10 {
        return None;
    }
    name.iter().try_fold(0i32, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(i32::from(b - b'0')))
            .flatten()
    })
}

/// The effective uid a process runs as, from its `/proc` folder's owner (one `stat`).
pub fn uid(pid: i32) -> Option<u32> {
    std::fs::metadata(ProcPath::new(pid, "")?.as_path())
        .ok()
        .map(|m| m.uid())
}

pub fn facts(pid: i32) -> Option<Facts> {
    let mut buffer = [0u8; 1024];
    let stat = std::str::from_utf8(read_stat(pid, &mut buffer)?).ok()?;
    let mut facts = parse_stat(stat)?;
    facts.uid = uid(pid)?;
    Some(facts)
}

/// Parses `/proc/<pid>/stat`. The command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Facts> {
    let pid = stat.split_once(' ')?.0.parse().ok()?;
    // Fields after the name, counted from 0 (state): ppid 1, pgrp 2, session 3, starttime 19,
    // rss 21.
    let mut fields = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    let state = fields.next()?;
    let parent = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    let start_ticks: u64 = fields.nth(15)?.parse().ok()?;
    let rss_pages = fields
        .nth(1)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    Some(Facts {
        pid,
        zombie: matches!(state, "Z" | "X" | "x"),
        stopped: match state {
            "T" => Some(STOPPED_BY_SIGNAL),
            "t" => Some("stopped (traced)"),
            _ => None,
        },
        ppid: parent,
        pgid: group,
        sid: session,
        uid: 0,
        start: format!("{}:{start_ticks}", boot_id()),
        start_ticks,
        rss_pages,
    })
}

/// What `ps` shows as `T`: SIGSTOP, or one of the terminal's stop signals, which a detached
/// service only gets when someone sends it.
const STOPPED_BY_SIGNAL: &str = "stopped (SIGSTOP)";

/// Differs on every boot, so a start time from before a reboot never matches one after it.
fn boot_id() -> &'static str {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    BOOT_ID.get_or_init(|| {
        read_proc_text(Path::new("/proc/sys/kernel/random/boot_id"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

pub fn become_subreaper() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Once is enough (it outlives an exec too): a launch asks again, on a revival's way.
    static DONE: AtomicBool = AtomicBool::new(false);
    // Without it (a very old kernel) a daemonizing service is only reported, never adopted.
    if !DONE.load(Ordering::Relaxed) && nix::sys::prctl::set_child_subreaper(true).is_ok() {
        DONE.store(true, Ordering::Relaxed);
    }
}

/// keepup run through `/proc/self/exe` (as the watcher is) is named `exe` by the kernel: in
/// `ps`, `top` and `pgrep` it takes its own name back.
pub fn name_self() {
    let _ = nix::sys::prctl::set_name(c"keepup");
}

/// `pid` and every process below it, from each thread's `children` list: the size of the
/// service, not of the process table. `None` where the kernel lacks those lists.
pub fn family(pid: i32) -> Option<Vec<i32>> {
    let mut found = vec![pid];
    let mut next = 0;
    while let Some(&parent) = found.get(next) {
        next += 1;
        let Ok(tasks) = std::fs::read_dir(path(parent, "task")) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            match children_listed(&task.path().join("children")) {
                Ok(children) => found.extend(children),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(_) => {}
            }
        }
    }
    Some(found)
}

/// The children of this process's main thread: all of its children while it is
/// single-threaded (the watcher, which asks on a revival's way), and all it inherits as
/// subreaper (the kernel hands an orphan to its reaper's first live thread, the main one).
/// One read, not a walk of its tasks; `None` where the kernel lacks the list.
pub fn own_children() -> Option<Vec<i32>> {
    let list = format!("/proc/self/task/{}/children", std::process::id());
    children_listed(Path::new(&list)).ok()
}

/// The pids a thread's `children` file lists. Read in chunks: the kernel tells no size for
/// it, and a read that asks one first spends a system call on the answer `0`.
fn children_listed(list: &Path) -> std::io::Result<Vec<i32>> {
    use std::io::Read as _;
    let mut file = File::open(list)?;
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&text)
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .collect())
}

/// The children of `pid`, from each thread's `children` list; `None` where the kernel lacks
/// those lists.
pub fn children(pid: i32) -> Option<Vec<i32>> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(path(pid, "task"))
        .ok()?
        .filter_map(Result::ok)
    {
        match children_listed(&task.path().join("children")) {
            Ok(children) => found.extend(children),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => {}
        }
    }
    Some(found)
}

/// Whether `start` (from [`facts`]) was taken during this boot.
pub fn this_boot(start: &str) -> bool {
    start
        .split_once(':')
        .is_some_and(|(boot, _)| !boot.is_empty() && boot == boot_id())
}

/// The command line, its words each ended by a NUL. The kernel fills a read from the process's
/// memory for as long as there is more, so a read that leaves room over has it all: one read
/// for nearly every process (a scan makes this read of each process of its user).
pub fn cmdline(pid: i32) -> Option<Vec<u8>> {
    let mut file = File::open(ProcPath::new(pid, "cmdline")?.as_path()).ok()?;
    let mut buffer = [0u8; 4096];
    let n = loop {
        match file.read(&mut buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            read => break read.ok()?,
        }
    };
    if n < buffer.len() {
        return Some(buffer[..n].to_vec());
    }
    let mut content = buffer.to_vec();
    file.read_to_end(&mut content).ok()?;
    Some(content)
}

/// The file its standard output goes to; not a pipe, a socket or a deleted file.
pub fn output_file(pid: i32) -> Option<PathBuf> {
    let path = std::fs::read_link(ProcPath::new(pid, "fd/1")?.as_path()).ok()?;
    (path.is_absolute() && !path.as_os_str().as_bytes().ends_with(b" (deleted)")).then_some(path)
}

pub fn cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(ProcPath::new(pid, "cwd")?.as_path()).ok()
}

/// `/proc`, opened once for the looks of a scan.
fn proc_dir() -> Option<std::os::fd::BorrowedFd<'static>> {
    use std::os::fd::AsFd;
    static PROC: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PROC.get_or_init(|| {
        use rustix::fs::{Mode, OFlags, open};
        open(
            "/proc",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    })
    .as_ref()
    .map(AsFd::as_fd)
}

/// The file a process's `link` leads to, by one `statx` that asks its file system for
/// nothing it does not already know (a process sitting in a dead NFS mount must not hang a
/// scan). A deleted file (a release folder removed, a binary replaced) is not told.
pub fn link_file(pid: i32, link: Link) -> Look {
    use rustix::fs::{AtFlags, CWD, StatxFlags, makedev, statx};
    use rustix::io::Errno;
    let name = match link {
        Link::Cwd => "cwd",
        Link::Exe => "exe",
    };
    // From an open `/proc`: the walk skips `/` and `proc` for each of thousands of processes.
    let (from, path) = match proc_dir() {
        Some(proc) => (proc, ProcPath::within(pid, name)),
        None => (CWD, ProcPath::new(pid, name)),
    };
    let Some(path) = path else {
        return Look::Unknown;
    };
    match statx(
        from,
        path.as_path(),
        AtFlags::STATX_DONT_SYNC,
        StatxFlags::INO | StatxFlags::NLINK,
    ) {
        Ok(file) if file.stx_mask & StatxFlags::NLINK.bits() == 0 || file.stx_nlink > 0 => {
            Look::At(FileId {
                dev: makedev(file.stx_dev_major, file.stx_dev_minor),
                ino: file.stx_ino,
            })
        }
        Err(Errno::NOENT | Errno::SRCH) => Look::Gone,
        Ok(_) | Err(_) => Look::Unknown,
    }
}

/// The executable; a binary replaced on disk (rebuilt) still counts as its path.
pub fn exe(pid: i32) -> Option<PathBuf> {
    let link = std::fs::read_link(ProcPath::new(pid, "exe")?.as_path())
        .ok()?
        .into_os_string();
    let bytes = link.into_vec();
    let bytes = bytes
        .strip_suffix(b" (deleted)")
        .map_or_else(|| bytes.clone(), <[u8]>::to_vec);
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

/// When the process started, from its start in clock ticks since boot.
pub fn started_at(facts: &Facts) -> Option<SystemTime> {
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()?;
    let uptime: f64 = read_proc_text(Path::new("/proc/uptime"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    #[allow(clippy::cast_precision_loss)]
    let since_boot = facts.start_ticks as f64 / ticks_per_second as f64;
    let ago = Duration::try_from_secs_f64((uptime - since_boot).max(0.0)).ok()?;
    SystemTime::now().checked_sub(ago)
}

pub fn rss_bytes(facts: &Facts) -> Option<u64> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(facts.rss_pages * u64::try_from(page).ok()?)
}

/// The proportional set size of `pid` (each shared page divided among the processes that map
/// it), from `/proc/<pid>/smaps_rollup` (Linux 4.14); `None` where it cannot be read.
pub fn pss_bytes(pid: i32) -> Option<u64> {
    let text = read_proc_text(&path(pid, "smaps_rollup"))?;
    let kib: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Where this process's open descriptors are listed.
pub const OWN_FDS: &str = "/proc/self/fd";

/// `close_range(2)` (Linux 5.9); false where the kernel lacks it.
pub unsafe fn close_range(low: RawFd, high: RawFd) -> bool {
    let (Ok(low), Ok(high)) = (u32::try_from(low), u32::try_from(high)) else {
        return false;
    };
    // SAFETY: the caller's word: nothing in this process uses these descriptors again.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, low, high, 0) == 0 }
}

/// Starts a process that runs `child(arg)` on `stack`, in this process's memory rather than a
/// copy of it, until it execs or exits (as `posix_spawn` does): a fork copied the page tables
/// of the whole acting watcher and then paid a copy-on-write fault for every page it wrote
/// after, the largest part of a revival's own time. Its descriptors and signal dispositions
/// are its own copies. Returns its pid; its end is reported as a fork's is (SIGCHLD).
///
/// # Safety
/// `child` must never return, make only system calls, and use only `stack` and memory this
/// process neither frees nor changes until it has exec'd or exited; both processes share
/// `errno`, so the child may read it only while this one is blocked in a system call. All
/// signals must be blocked in this thread across the call, so no handler of this process runs
/// in the child.
pub unsafe fn start_sharing(
    child: extern "C" fn(*mut nix::libc::c_void) -> nix::libc::c_int,
    arg: *mut nix::libc::c_void,
    stack: &mut [std::mem::MaybeUninit<u8>],
) -> nix::Result<i32> {
    // The stack grows down from its 16-byte aligned end.
    let top = stack.as_mut_ptr_range().end;
    let top = top.wrapping_sub(top as usize % 16);
    // SAFETY: the caller's word on `child`, `arg` and `stack`; no CLONE_VFORK, so this process
    // goes on at once (the child waits at its gate for what this one writes next).
    let pid = unsafe {
        nix::libc::clone(
            child,
            top.cast(),
            nix::libc::CLONE_VM | nix::libc::SIGCHLD,
            arg,
        )
    };
    nix::errno::Errno::result(pid)
}

/// keepup's program, opened while it could still be reached (before root became another user:
/// `/proc/self/exe` is then closed to the process itself).
static KEPT_PROGRAM: OnceLock<File> = OnceLock::new();

/// Maps every page of the code this process runs (keepup's own, libc's, the loader's) from
/// the page cache now, so that a revival from a freshly exec'd image does not stop at a page
/// fault wherever it goes (a third of its time, measured). These pages are shared with every
/// other process that maps them, and none is written: what the machine holds for each more
/// watcher stays its private pages, and its share of the code (its data is left to be mapped
/// as it is used: with it, 100 watchers took 33 KiB more each). Linux 5.14 and later; on an
/// older kernel it does nothing.
pub fn map_programs() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // A file's code (the sixth field is its path), never anonymous memory.
        if perms != "r-xp" || !fields.nth(3).is_some_and(|p| p.starts_with('/')) {
            continue;
        }
        let Some((Ok(start), Ok(end))) = range
            .split_once('-')
            .map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
        else {
            continue;
        };
        // SAFETY: advice on a mapping of this process, as /proc/self/maps lists it: it asks the
        // kernel to map pages that are already there to read, and changes no content.
        unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end.saturating_sub(start),
                nix::libc::MADV_POPULATE_READ,
            );
        }
    }
}

/// Opens keepup's own program and keeps it open (see [`program_to_run`]).
pub fn keep_program() {
    if let Ok(file) = File::open("/proc/self/exe") {
        let _ = KEPT_PROGRAM.set(file);
    }
}

/// A path that runs keepup's own program whatever folders lead to it (a checkout in a 0700
/// folder, `/root/.cargo/bin` for another user): exec through it needs only the file's own
/// execute permission.
pub fn program_to_run() -> PathBuf {
    use std::os::fd::AsRawFd;
    KEPT_PROGRAM.get().map_or_else(own_program, |file| {
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    })
}

/// keepup's own program, to run again: `/proc/self/exe` still runs it after a rebuild or an
/// upgrade replaced the file.
pub fn own_program() -> PathBuf {
    PathBuf::from("/proc/self/exe")
}

/// A file in memory holding `bytes`, read from the start, that an exec'd program inherits
/// (no close-on-exec): how the watcher carries its last good config into its next image.
pub fn inheritable_copy(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let fd = nix::sys::memfd::memfd_create("keepup-config", nix::sys::memfd::MFdFlags::empty())?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// The program name the kernel keeps for `pid` (its `comm`, at most 15 bytes).
pub fn name(pid: i32) -> Option<String> {
    read_proc_text(&path(pid, "comm")).map(|n| n.trim_end().to_owned())
}

/// A pidfd for `pid`: it turns readable when the process exits, whoever its parent is.
pub fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(std::io::ErrorKind::InvalidInput)?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// SIGCHLD, blocked and readable as a file: a wakeup only when a child ends. Unblocked on drop,
/// so what runs later (a `ready` command, the service) starts with the usual mask.
pub struct ChildSignals(SignalFd);

impl ChildSignals {
    pub fn block() -> Option<ChildSignals> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().ok()?;
        if let Ok(fd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        {
            Some(ChildSignals(fd))
        } else {
            let _ = mask.thread_unblock();
            None
        }
    }

    fn drain(&self) {
        while let Ok(Some(_)) = self.0.read_signal() {}
    }
}

impl Drop for ChildSignals {
    fn drop(&mut self) {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let _ = mask.thread_unblock();
    }
}

/// Sleeps until `watched` turns readable (true), a child ends, or `timeout` passes.
pub fn wait(
    watched: Option<&OwnedFd>,
    children: Option<&ChildSignals>,
    timeout: Option<Duration>,
) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = Vec::with_capacity(2);
    if let Some(fd) = watched {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    if let Some(children) = children {
        fds.push(PollFd::new(&children.0, PollFlags::IN));
    }
    if fds.is_empty() {
        // Nothing to wait on (no signalfd): only the clock.
        std::thread::sleep(timeout.unwrap_or(Duration::from_secs(1)));
        return false;
    }
    let timeout = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    // EINTR and the like: the caller looks again.
    if rustix::event::poll(&mut fds, timeout.as_ref()).is_err() {
        return false;
    }
    if let Some(children) = children {
        children.drain();
    }
    watched.is_some() && !fds[0].revents().is_empty()
}

/// As [`wait`], also woken when `extra` turns readable: says whether the watched process
/// ended, and whether `extra` is readable.
pub fn wait_also(
    watched: Option<&OwnedFd>,
    children: Option<&ChildSignals>,
    extra: std::os::fd::BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> (bool, bool) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = vec![PollFd::new(&extra, PollFlags::IN)];
    if let Some(fd) = watched {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    if let Some(children) = children {
        fds.push(PollFd::new(&children.0, PollFlags::IN));
    }
    let timeout = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    if rustix::event::poll(&mut fds, timeout.as_ref()).is_err() {
        return (false, false);
    }
    if let Some(children) = children {
        children.drain();
    }
    let readable = !fds[0].revents().is_empty();
    (watched.is_some() && !fds[1].revents().is_empty(), readable)
}

/// The pid that took the `flock` on `path`, from `/proc/locks`, if it still has the file open
/// (the taker may have handed the lock to a child and exited, and its pid be reused since).
pub fn flock_holder(path: &Path) -> Option<i32> {
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    // The kernel's split of a dev_t, as glibc's major() and minor() do it.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let file = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = flock_taker(&locks, &file)?;
    let path = path.canonicalize().ok()?;
    let open = std::fs::read_dir(self::path(pid, "fd")).ok()?;
    open.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
        .then_some(pid)
}

/// The pid in the `FLOCK` line of `/proc/locks` for `file` (`MAJOR:MINOR:INODE`); a waiter's
/// line (`1: -> FLOCK …`) is not a holder's.
fn flock_taker(locks: &str, file: &str) -> Option<i32> {
    locks.lines().find_map(
        |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "FLOCK", _, _, pid, id, ..] if id == file => pid.parse().ok(),
            _ => None,
        },
    )
}

/// Asks the kernel to attach the sender's credentials to each datagram on `fd` (`sd_notify`'s
/// sender check).
pub fn pass_credentials(fd: &OwnedFd) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::PassCred, &true)
        .map_err(std::io::Error::from)
}

/// An abstract socket address (no file), for a state folder whose path is too long.
pub fn abstract_address(name: &str) -> std::io::Result<nix::sys::socket::UnixAddr> {
    nix::sys::socket::UnixAddr::new_abstract(name.as_bytes()).map_err(std::io::Error::from)
}

/// One datagram waiting on `fd` (without blocking), and the pid of its sender, from the
/// credentials the kernel attached (`SCM_CREDENTIALS`).
pub fn receive_with_sender(fd: &OwnedFd) -> Option<(Option<i32>, Vec<u8>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg};
    use std::os::fd::AsRawFd;
    let mut buffer = vec![0_u8; 4096];
    let mut space = nix::cmsg_space!(UnixCredentials);
    let (bytes, sender) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let sender = message.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(credentials) => Some(credentials.pid()),
                _ => None,
            })
        });
        (message.bytes, sender)
    };
    buffer.truncate(bytes);
    Some((sender, buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_digits_that_make_a_pid_from_the_listing() {
        assert_eq!(decimal(b"1"), Some(1));
        assert_eq!(decimal(b"4194304"), Some(4_194_304));
        assert_eq!(decimal(b"2147483647"), Some(i32::MAX));
        for name in [
            &b""[..],
            b"self",
            b"thread-self",
            b"12a",
            b"-1",
            b"+1",
            b" 1",
            b"2147483648",
            b"99999999999",
        ] {
            assert_eq!(decimal(name), None, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 321 18446744073709551615";
        let facts = parse_stat(stat).unwrap();
        assert_eq!((facts.pid, facts.ppid, facts.pgid), (4242, 1, 4242));
        assert_eq!(facts.sid, 4242);
        assert_eq!(facts.start_ticks, 987_654);
        assert_eq!(facts.rss_pages, 321);
        assert!(!facts.zombie);
        assert!(
            parse_stat("12 (z) Z 1 12 12 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0")
                .unwrap()
                .zombie
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn reads_our_own_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let facts = facts(me).unwrap();
        assert_eq!(ppid(me), Some(facts.ppid));
        assert!(live_in_group(me, facts.pgid));
        assert!(!live_in_group(me, facts.pgid + 1));
        assert_eq!(facts.pid, me);
        assert!(started_at(&facts).unwrap() <= SystemTime::now());
        assert!(exe(me).unwrap().is_absolute());
        assert!(cmdline(me).unwrap().len() > 1);
    }

    /// A scan's one look at a process: the same device and inode as a `stat` of the path
    /// (a move of the folder or a second path to it changes nothing), no answer for a deleted
    /// folder (judged by the whole rule), and gone once it has ended.
    #[test]
    fn tells_where_a_process_runs_and_what_it_runs() {
        let place = tempfile::tempdir().unwrap();
        let folder = place.path().join("app");
        std::fs::create_dir(&folder).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .current_dir(&folder)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let running = exe(pid).unwrap();
        assert_eq!(
            link_file(pid, Link::Exe),
            Look::At(FileId::of(&running).unwrap())
        );
        let moved = place.path().join("moved");
        std::fs::rename(&folder, &moved).unwrap();
        assert_eq!(
            link_file(pid, Link::Cwd),
            Look::At(FileId::of(&moved).unwrap())
        );
        std::fs::remove_dir(&moved).unwrap();
        assert_eq!(link_file(pid, Link::Cwd), Look::Unknown);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(link_file(pid, Link::Cwd), Look::Gone);
        assert_eq!(link_file(pid, Link::Exe), Look::Gone);
    }

    #[test]
    fn finds_who_took_a_flock_and_not_who_waits_for_it() {
        let locks = "1: POSIX  ADVISORY  WRITE 700 fd:01:42 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4343 fd:01:1234 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 500 08:02:1234 0 EOF\n";
        assert_eq!(flock_taker(locks, "fd:01:1234"), Some(4242));
        assert_eq!(flock_taker(locks, "08:02:1234"), Some(500));
        assert_eq!(
            flock_taker(locks, "fd:01:42"),
            None,
            "a POSIX lock is not keepup's"
        );
        assert_eq!(flock_taker(locks, "fd:01:9"), None);
    }
}
