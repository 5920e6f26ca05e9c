//! The descriptors a started program holds: only what keepup means it to. A caller's open
//! files (a deploy's `flock`, a shell's strays) reach neither the service nor the watcher.

use std::os::fd::RawFd;

use super::os;

/// In a service process just started, before exec: closes every descriptor from `first` (3,
/// or past the sockets it is handed) on but `keep`, so the program runs with what keepup means
/// it to have and nothing of its caller's (a deploy's `flock`, a shell's strays). System calls
/// only (async-signal-safe).
pub fn close_inherited(first: RawFd, keep: RawFd) {
    // SAFETY: close(2) on numbers this process may or may not have open; nothing else in this
    // process uses them (it is about to exec).
    unsafe {
        for (low, high) in [(first, keep - 1), (keep + 1, RawFd::MAX)] {
            if low > high {
                continue;
            }
            if !os::close_range(low, high) {
                for fd in low..=high.min(open_limit()) {
                    nix::libc::close(fd);
                }
            }
        }
    }
}

/// The highest descriptor number this process may have, from its limit.
fn open_limit() -> RawFd {
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct given.
    let got = unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &raw mut limit) };
    if got != 0 {
        return 1024;
    }
    RawFd::try_from(limit.rlim_cur.min(1 << 20)).unwrap_or(1 << 20)
}

/// Closes every descriptor of this process but 0, 1, 2 and `keep`: what the watcher does
/// first, so it holds nothing of whoever started it.
pub fn close_all_but(keep: &[RawFd]) {
    let open: Vec<RawFd> = std::fs::read_dir(os::OWN_FDS)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: a descriptor this process has open (the directory's own was closed when
        // the listing ended, and closing a closed one only fails), owned by nothing that will
        // use it again: the watcher has not opened anything of its own yet.
        unsafe {
            nix::libc::close(fd);
        }
    }
}
