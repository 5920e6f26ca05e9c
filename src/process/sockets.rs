//! The listening sockets the watcher holds for the service (`listen`): bound once, kept open
//! while the service dies and revives and across the watcher's own re-exec into its waiting
//! state, and handed to every launch (the child puts them at fds 3…).
//!
//! They belong to the process, not to one revival: the watcher builds its state afresh for
//! each action, and the sockets must outlive all of them, so they live in one place here.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use crate::error::{Error, Result};
use crate::listen::{Address, Listen};

/// The sockets this process holds, with where each listens.
static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

struct Held {
    address: Address,
    fd: OwnedFd,
}

/// What a launch hands the service: the held sockets in `listen`'s order, and their names.
#[derive(Debug, Default)]
pub struct Handed {
    pub fds: Vec<RawFd>,
    /// `LISTEN_FDNAMES`.
    pub names: String,
}

/// Makes this process hold exactly the sockets of `listen`: those held already stay (the
/// queue of a socket never closed loses no connection), the others are bound now, and those no
/// longer listed are closed. `name`: the service, for messages.
pub fn hold(listen: &[Listen], name: &str) -> Result<Handed> {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.retain(|h| listen.iter().any(|l| l.address == h.address));
    let mut fds = Vec::with_capacity(listen.len());
    for one in listen {
        let fd = if let Some(h) = held.iter().find(|h| h.address == one.address) {
            h.fd.as_raw_fd()
        } else {
            let fd = bind(&one.address).map_err(|why| {
                Error::Failed(format!(
                    "{name} not started: listen = \"{}\": {why}",
                    one.address
                ))
            })?;
            let raw = fd.as_raw_fd();
            held.push(Held {
                address: one.address.clone(),
                fd,
            });
            raw
        };
        fds.push(fd);
    }
    Ok(Handed {
        fds,
        names: crate::listen::names(listen),
    })
}

/// Whether this process holds every socket of `listen` already (a watcher started while the
/// service ran, after the one that bound them died, holds none until the next launch binds them).
#[must_use]
pub fn holds_all(listen: &[Listen]) -> bool {
    let held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    listen
        .iter()
        .all(|l| held.iter().any(|h| h.address == l.address))
}

/// The sockets held, made inheritable across an exec of keepup itself (into the watcher's
/// waiting state): their numbers, for its command line ("" when none).
#[must_use]
pub fn inheritable() -> String {
    let held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fds: Vec<String> = held
        .iter()
        .filter(|h| fcntl(h.fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).is_ok())
        .map(|h| h.fd.as_raw_fd().to_string())
        .collect();
    fds.join(",")
}

/// Takes back the sockets a previous image of this process held (`fds`, as [`inheritable`]
/// wrote them): each is known again by the address it is bound to.
///
/// # Safety
/// The numbers must be descriptors this process inherited for this purpose and nothing else
/// owns.
pub unsafe fn adopt(fds: &str) {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for fd in fds.split(',').filter_map(|f| f.parse::<RawFd>().ok()) {
        if fd <= 2 {
            continue;
        }
        // SAFETY: the caller's word; checked open by the fcntl before it is owned.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
            continue;
        }
        // SAFETY: open, and no one else's, by the caller's word.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(address) = bound_address(&fd) {
            held.push(Held { address, fd });
        }
    }
}

/// Where a socket is bound, as `listen` writes it.
fn bound_address(fd: &OwnedFd) -> Option<Address> {
    use std::os::unix::ffi::OsStrExt;
    let any = rustix::net::getsockname(fd).ok()?;
    if let Ok(addr) = std::net::SocketAddr::try_from(any.clone()) {
        return Some(Address::Tcp(addr));
    }
    let unix = rustix::net::SocketAddrUnix::try_from(any).ok()?;
    let path = unix.path()?;
    Some(Address::Unix(std::path::PathBuf::from(
        std::ffi::OsStr::from_bytes(path.to_bytes()),
    )))
}

/// Binds and listens: `SO_REUSEADDR` (a port whose last connections linger in `TIME_WAIT` binds
/// again), never `SO_REUSEPORT` (closing such a socket drops its queue); the longest queue the
/// system allows, so a slow revival makes clients wait, not fail. Close-on-exec: only a launch
/// hands them on, on purpose.
fn bind(address: &Address) -> std::result::Result<OwnedFd, String> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = match address {
        Address::Tcp(std::net::SocketAddr::V4(_)) => AddressFamily::INET,
        Address::Tcp(std::net::SocketAddr::V6(_)) => AddressFamily::INET6,
        Address::Unix(_) => AddressFamily::UNIX,
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| format!("cannot make a socket: {}", std::io::Error::from(e)))?;
    let bound = match address {
        Address::Tcp(addr) => {
            rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
                .map_err(|e| format!("SO_REUSEADDR: {}", std::io::Error::from(e)))?;
            rustix::net::bind(&fd, addr).map_err(|e| match e {
                rustix::io::Errno::ADDRINUSE => super::ports::describe(addr.port()),
                e => format!("cannot bind it: {}", std::io::Error::from(e)),
            })
        }
        Address::Unix(path) => {
            clear_stale(path)?;
            let addr = rustix::net::SocketAddrUnix::new(path.as_path())
                .map_err(|e| format!("{}: {}", path.display(), std::io::Error::from(e)))?;
            rustix::net::bind(&fd, &addr).map_err(|e| {
                format!(
                    "cannot bind {}: {}",
                    path.display(),
                    std::io::Error::from(e)
                )
            })
        }
    };
    bound?;
    rustix::net::listen(&fd, nix::libc::SOMAXCONN)
        .map_err(|e| format!("cannot listen: {}", std::io::Error::from(e)))?;
    Ok(fd)
}

/// A socket file left by a dead run (nothing accepts on it) is removed so the path binds
/// again. Anything else at the path stays: a live server's socket, another user's socket
/// (root never follows or replaces a path another user controls), a file that is no socket.
fn clear_stale(path: &Path) -> std::result::Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket: remove it, or choose another path",
            path.display()
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        let owner = crate::ownership::user_name(meta.uid());
        return Err(format!(
            "{} is a socket of {owner}'s, and keepup replaces only its own user's: remove it, \
             or choose another path",
            path.display()
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(format!(
            "{} is a live socket (something accepts on it): stop what listens there, or choose \
             another path",
            path.display()
        )),
        Err(_) => std::fs::remove_file(path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display())),
    }
}
