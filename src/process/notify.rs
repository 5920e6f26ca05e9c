//! The `sd_notify` socket as this process holds it: bound once by the keepup that launches (the
//! watcher, which keeps it across revivals and across its re-exec into the waiting state, so
//! the address a service was given stays good), and read with the sender checked: a datagram
//! counts only if its sender is the service's main process or one of its descendants, or a
//! process the service left to this one, its subreaper (Linux: `SO_PASSCRED`; macOS attaches
//! no credentials, see `macos.rs`). The same rule says which process `MAINPID=` may name.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr};

use super::{Finder, Identity, Instance, os};
use crate::error::{Error, Result};
use crate::notify::Address;
use crate::pid::Pid;

/// The variable that names the socket's descriptor across the watcher's re-exec.
const HANDED: &str = "KEEPUP_NOTIFY_FD";

/// The bound socket and its address.
struct Held {
    fd: OwnedFd,
    address: Address,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Makes sure this process holds the socket at `address` (bound now, or kept from before).
pub fn open(address: &Address) -> Result<()> {
    HELD.with_borrow_mut(|held| {
        if held.as_ref().is_some_and(|h| &h.address == address) {
            return Ok(());
        }
        let fd = bind(address).map_err(|e| {
            Error::Failed(format!(
                "binding the notify socket {}: {e}",
                address.env_value().to_string_lossy()
            ))
        })?;
        *held = Some(Held {
            fd,
            address: address.clone(),
        });
        Ok(())
    })
}

fn bind(address: &Address) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let unix = match address {
        Address::Path(path) => {
            // A socket left by an earlier watcher: nobody reads it any more.
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
                Ok(_) => {
                    return Err(std::io::Error::other(format!(
                        "{} is in the way, and is not a socket",
                        path.display()
                    )));
                }
                Err(_) => {}
            }
            UnixAddr::new(path.as_path())?
        }
        Address::Abstract(name) => os::abstract_address(name)?,
    };
    nix::sys::socket::bind(fd.as_raw_fd(), &unix)?;
    if let Address::Path(path) = address {
        // Only the service's user may write to it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    os::pass_credentials(&fd)?;
    Ok(fd)
}

/// Discards what waits on the socket: a previous instance's last words are not the new one's.
pub fn drain() {
    HELD.with_borrow(|held| {
        if let Some(held) = held {
            while os::receive_with_sender(&held.fd).is_some() {}
        }
    });
}

/// The datagrams waiting on the socket from the service whose main process is `main`, or
/// from its family (see [`of_service`]); others are dropped unread.
#[must_use]
pub fn receive(main: &Identity) -> Vec<Vec<u8>> {
    HELD.with_borrow(|held| {
        let mut datagrams = Vec::new();
        if let Some(held) = held {
            while let Some((sender, datagram)) = os::receive_with_sender(&held.fd) {
                if sender.is_none_or(|pid| of_service(pid, main)) {
                    datagrams.push(datagram);
                }
            }
        }
        datagrams
    })
}

/// Whether `pid` is the service's whose main process is `main`: `main` itself, one of its
/// descendants, or one of theirs that this process (the service's subreaper) inherited when
/// its parent ended, as a daemon's child is when the daemon's first process exits: the kernel
/// no longer tells it from the descendants of its parent, so it must be a child of this
/// process that started no earlier than `main` (an older generation, beside a `reload`, did).
fn of_service(pid: i32, main: &Identity) -> bool {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let mut at = pid;
    for _ in 0..64 {
        if at == main.pid.get() {
            return true;
        }
        match os::ppid(at) {
            Some(parent) if parent == me => return started_since(at, main),
            Some(parent) if parent > 1 && parent != at => at = parent,
            _ => return false,
        }
    }
    false
}

/// Whether `pid` started no earlier than `main` did (in the platform's unit, the last part of
/// an identity's start).
fn started_since(pid: i32, main: &Identity) -> bool {
    let main_start = main
        .start
        .rsplit(':')
        .next()
        .and_then(|t| t.parse::<u64>().ok());
    match (os::facts(pid), main_start) {
        (Some(facts), Some(since)) => !facts.zombie && facts.start_ticks >= since,
        _ => false,
    }
}

impl Finder<'_> {
    /// The process `named` (by `MAINPID=`) as the service's new main process, if it may be:
    /// alive, ours, not keepup, and the service's (see [`of_service`]) whose main process is
    /// `main`. Says why not.
    pub fn named_main(&self, main: &Identity, named: i32) -> std::result::Result<Instance, String> {
        let pid = Pid::new(named.into()).ok_or_else(|| "not a process id".to_owned())?;
        if !self.exists(pid) {
            return Err("no process runs as that pid".to_owned());
        }
        // Another user's, keepup or its callers: not the service's either.
        let facts = self.eligible(pid).filter(|_| of_service(named, main));
        let Some(facts) = facts else {
            return Err(format!(
                "not a process of {} (only its main process, {}, one of its descendants, or \
                 one they left to keepup may be named)",
                self.config.name, main.pid
            ));
        };
        Ok(super::instance(pid, facts))
    }
}

/// Runs `f` with the socket's descriptor, if this process holds one.
pub fn with_fd<T>(f: impl FnOnce(Option<BorrowedFd<'_>>) -> T) -> T {
    HELD.with_borrow(|held| f(held.as_ref().map(|h| h.fd.as_fd())))
}

/// Waits up to `timeout` for a datagram; true if one came.
#[must_use]
pub fn wait(timeout: std::time::Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    with_fd(|fd| {
        let Some(fd) = fd else {
            std::thread::sleep(timeout);
            return false;
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        rustix::event::poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0)
    })
}

/// Before the watcher runs keepup afresh: the socket goes along (inherited, its number in
/// [`HANDED`]), so its address stays bound for the service.
pub fn hand_over() {
    HELD.with_borrow(|held| {
        let Some(held) = held else {
            return;
        };
        let fd = held.fd.as_raw_fd();
        let inherit = nix::fcntl::fcntl(
            held.fd.as_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
        if inherit.is_ok() {
            let value = match &held.address {
                Address::Path(path) => format!("{fd}:{}", path.display()),
                Address::Abstract(name) => format!("{fd}:@{name}"),
            };
            // SAFETY: the watcher is single-threaded, and is about to exec.
            unsafe { std::env::set_var(HANDED, value) };
        }
    });
}

/// In the image the watcher became: takes back the socket [`hand_over`] passed along.
pub fn take_handed() {
    let Some(value) = std::env::var_os(HANDED) else {
        return;
    };
    // SAFETY: the waiting state is single-threaded; nothing it starts may inherit the name.
    unsafe { std::env::remove_var(HANDED) };
    let Some((fd, address)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return;
    };
    let Ok(fd) = fd.parse::<RawFd>() else {
        return;
    };
    if fd <= 2 {
        return;
    }
    let address = match address.strip_prefix('@') {
        Some(name) => Address::Abstract(name.to_owned()),
        None => Address::Path(address.into()),
    };
    // SAFETY: handed to this image alone by `hand_over`, whose variable this is; marked
    // close-on-exec at once, so no service inherits it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .is_err()
    {
        std::mem::forget(fd);
        return;
    }
    HELD.with_borrow_mut(|held| *held = Some(Held { fd, address }));
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own() -> Identity {
        super::super::own_identity().unwrap()
    }

    #[test]
    fn an_abstract_name_is_bound_and_reached_by_its_at_form() {
        use std::os::linux::net::SocketAddrExt;
        // Its own thread: the socket a thread holds is its own.
        std::thread::spawn(|| {
            let name = format!("keepup-test-{}", std::process::id());
            open(&Address::Abstract(name.clone())).unwrap();
            let to = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
            sender.send_to_addr(b"STATUS=up", &to).unwrap();
            assert!(wait(std::time::Duration::from_secs(5)));
            assert_eq!(receive(&own()), [b"STATUS=up".to_vec()]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_datagram_from_this_process_counts_only_for_its_own_family() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.notify");
        let address = Address::Path(path.clone());
        open(&address).unwrap();
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.send_to(b"READY=1", &path).unwrap();
        assert!(wait(std::time::Duration::from_secs(5)));
        assert_eq!(receive(&own()), [b"READY=1".to_vec()]);
        // Sent by this process, which does not descend from a child of its own: dropped.
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let other = Identity {
            pid: Pid::new(i64::from(child.id())).unwrap(),
            start: os::facts(i32::try_from(child.id()).unwrap()).unwrap().start,
        };
        sender.send_to(b"READY=1", &path).unwrap();
        assert!(wait(std::time::Duration::from_secs(5)));
        let got = receive(&other);
        let _ = child.kill();
        let _ = child.wait();
        assert!(got.is_empty());
        // Bound again at the same address: kept, not rebound.
        open(&address).unwrap();
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
    }
}
