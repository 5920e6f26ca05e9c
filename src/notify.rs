//! The `sd_notify` protocol, as keepup reads it: `ready = "notify"` counts a start done at
//! `READY=1`, and `watchdog` ends a service that stops sending `WATCHDOG=1`. Here: what a
//! datagram says (pure, unit-tested) and where the socket is. The socket itself, and who sent
//! a datagram, are the process layer's (`process::notify`).

use std::path::Path;
use std::time::Duration;

/// The socket's suffix: `<name>.notify` in the state folder.
pub const SUFFIX: &str = ".notify";

/// The longest path a `sockaddr_un` holds (108 bytes with its NUL on Linux, 104 on macOS).
#[cfg(target_os = "linux")]
const MAX_PATH: usize = 107;
#[cfg(not(target_os = "linux"))]
const MAX_PATH: usize = 103;

/// What one line of a datagram says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `READY=1`: the start is done.
    Ready,
    /// `STATUS=…`: one line for `status`.
    Status(String),
    /// `EXTEND_TIMEOUT_USEC=…`: the start may take this much longer, from now.
    ExtendTimeout(Duration),
    /// `MAINPID=…`: which process is the main one.
    MainPid(i32),
    /// `STOPPING=1`: the coming exit is intended.
    Stopping,
    /// `WATCHDOG=1`: alive.
    Watchdog,
    /// `WATCHDOG=trigger`: act as if the watchdog had run out.
    WatchdogTrigger,
}

/// The notices in one datagram: `KEY=VALUE` lines; unknown keys and bad values are ignored,
/// as the protocol says.
#[must_use]
pub fn parse(datagram: &[u8]) -> Vec<Notice> {
    let text = String::from_utf8_lossy(datagram);
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some(match key {
                "READY" if value == "1" => Notice::Ready,
                "STATUS" => Notice::Status(value.to_owned()),
                "EXTEND_TIMEOUT_USEC" => {
                    Notice::ExtendTimeout(Duration::from_micros(value.parse().ok()?))
                }
                "MAINPID" => Notice::MainPid(value.parse().ok().filter(|p| *p > 1)?),
                "STOPPING" if value == "1" => Notice::Stopping,
                "WATCHDOG" if value == "1" => Notice::Watchdog,
                "WATCHDOG" if value == "trigger" => Notice::WatchdogTrigger,
                _ => return None,
            })
        })
        .collect()
}

/// Where the socket is bound: a path in the state folder, or (Linux) an abstract name when
/// that path is too long for a socket address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Path(std::path::PathBuf),
    /// Without the leading NUL (`@` in `NOTIFY_SOCKET`).
    Abstract(String),
}

impl Address {
    /// The address for the socket at `path` (the state folder's `<name>.notify`).
    #[must_use]
    pub fn for_path(path: &Path) -> Address {
        use std::os::unix::ffi::OsStrExt;
        if path.as_os_str().as_bytes().len() <= MAX_PATH || !cfg!(target_os = "linux") {
            return Address::Path(path.to_path_buf());
        }
        // Stable for the path, so every launch and the waiting watcher agree on it.
        let hash = crate::fingerprint::of(path.as_os_str().as_bytes());
        Address::Abstract(format!("keepup-{hash:016x}"))
    }

    /// `NOTIFY_SOCKET`'s value.
    #[must_use]
    pub fn env_value(&self) -> std::ffi::OsString {
        match self {
            Address::Path(path) => path.as_os_str().to_owned(),
            Address::Abstract(name) => format!("@{name}").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_servers_send() {
        // gunicorn's, and a service's by hand.
        assert_eq!(
            parse(b"READY=1\nSTATUS=Gunicorn arbiter booted"),
            [
                Notice::Ready,
                Notice::Status("Gunicorn arbiter booted".into())
            ]
        );
        assert_eq!(
            parse(b"WATCHDOG=1\nEXTEND_TIMEOUT_USEC=2500000\nMAINPID=4242\nSTOPPING=1\n"),
            [
                Notice::Watchdog,
                Notice::ExtendTimeout(Duration::from_millis(2500)),
                Notice::MainPid(4242),
                Notice::Stopping
            ]
        );
        assert_eq!(parse(b"WATCHDOG=trigger"), [Notice::WatchdogTrigger]);
    }

    #[test]
    fn ignores_unknown_keys_and_bad_values() {
        assert_eq!(
            parse(b"X_MINE=1\nREADY=0\nMAINPID=1\nMAINPID=x\nEXTEND_TIMEOUT_USEC=-1\nnoise\n"),
            []
        );
    }

    #[test]
    fn a_long_path_gets_an_abstract_name_stable_for_it() {
        let short = Path::new("/srv/app/svc.py.notify");
        assert_eq!(Address::for_path(short), Address::Path(short.to_path_buf()));
        assert_eq!(
            Address::for_path(short).env_value(),
            "/srv/app/svc.py.notify"
        );
        let long = format!("/srv/{}/svc.py.notify", "x".repeat(120));
        let address = Address::for_path(Path::new(&long));
        if cfg!(target_os = "linux") {
            assert!(matches!(&address, Address::Abstract(n) if n.starts_with("keepup-")));
            assert!(
                address
                    .env_value()
                    .to_string_lossy()
                    .starts_with("@keepup-")
            );
            assert_eq!(address, Address::for_path(Path::new(&long)));
        }
    }
}
