//! `listen`: the sockets the watcher binds once and hands to every launch of the service, so
//! that a crash, a revival or a reload never refuses a connection (the kernel queues them while
//! no process accepts). This module is the config form and the pure rules: how an entry is
//! written, the descriptor each one gets in the service (`3…`, systemd's order), the names in
//! `LISTEN_FDNAMES`, and `{fd}` / `{fd:NAME}` in `startup`. Binding and handing them over is
//! `process::sockets`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The service's first inherited socket (systemd's `SD_LISTEN_FDS_START`).
pub const FIRST_FD: i32 = 3;

/// More would be no service's need, and the child that hands them over counts them in a
/// fixed array (it may not allocate).
pub const MAX_LISTEN: usize = 64;

/// The longest path a unix socket address holds (`sun_path`, less its closing NUL).
const MAX_UNIX_PATH: usize = 107;

/// One entry of `listen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// What `LISTEN_FDNAMES` and `{fd:NAME}` call it.
    pub name: String,
    pub address: Address,
}

/// Where a socket listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    Tcp(SocketAddr),
    /// Absolute.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Listen {
    /// Parses one entry, `[NAME=]tcp:HOST:PORT` or `[NAME=]unix:PATH` (relative to `dir`,
    /// the config's folder). The name defaults to the port, or the socket file's stem.
    pub fn parse(text: &str, dir: &Path) -> Result<Listen, String> {
        let (name, spec) = match text.split_once('=') {
            Some((name, spec)) if !name.contains(':') => (Some(name), spec),
            _ => (None, text),
        };
        let address = if let Some(rest) = spec.strip_prefix("tcp:") {
            Address::Tcp(tcp_address(rest).map_err(|e| format!("\"{text}\": {e}"))?)
        } else if let Some(rest) = spec.strip_prefix("unix:") {
            Address::Unix(unix_path(rest, dir).map_err(|e| format!("\"{text}\": {e}"))?)
        } else {
            return Err(format!(
                "\"{text}\" is neither \"tcp:HOST:PORT\" nor \"unix:PATH\""
            ));
        };
        let name = match name {
            Some(name) => name.to_owned(),
            None => default_name(&address),
        };
        check_name(&name).map_err(|e| format!("\"{text}\": {e}"))?;
        Ok(Listen { name, address })
    }
}

fn tcp_address(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "a TCP address is HOST:PORT, e.g. tcp:127.0.0.1:8000".to_owned())?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("\"{port}\" is not a port (1 to 65535)"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => host.parse::<IpAddr>().map_err(|_| {
            format!(
                "\"{host}\" is not an IP address (write 127.0.0.1, 0.0.0.0, [::1] or localhost)"
            )
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn unix_path(text: &str, dir: &Path) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the socket's path is empty".to_owned());
    }
    let path = crate::startup::clean(&dir.join(text));
    let length = path.as_os_str().len();
    if length > MAX_UNIX_PATH {
        return Err(format!(
            "{} is {length} bytes long, and a unix socket's path holds at most {MAX_UNIX_PATH}: \
             choose a shorter one",
            path.display()
        ));
    }
    Ok(path)
}

fn default_name(address: &Address) -> String {
    match address {
        Address::Tcp(addr) => addr.port().to_string(),
        Address::Unix(path) => path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
    }
}

/// `LISTEN_FDNAMES` joins names with `:`, and `{fd:NAME}` ends at `}`.
fn check_name(name: &str) -> Result<(), String> {
    let good = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 255 || !name.chars().all(good) {
        return Err(format!(
            "the name \"{name}\" must be 1 to 255 letters, digits, '_', '-' or '.' (NAME=tcp:…)"
        ));
    }
    Ok(())
}

/// Checks a whole `listen` list: each entry, and no name or address twice.
pub fn parse_all(entries: &[String], dir: &Path) -> Result<Vec<Listen>, String> {
    if entries.len() > MAX_LISTEN {
        return Err(format!("at most {MAX_LISTEN} sockets"));
    }
    let mut listen: Vec<Listen> = Vec::with_capacity(entries.len());
    for entry in entries {
        let one = Listen::parse(entry, dir)?;
        if let Some(twin) = listen
            .iter()
            .find(|l| l.name == one.name || l.address == one.address)
        {
            return Err(format!(
                "\"{entry}\" repeats the name or address of {} (named {}): give each its own, \
                 NAME=…",
                twin.address, twin.name
            ));
        }
        listen.push(one);
    }
    Ok(listen)
}

/// The descriptor entry `index` has in the service.
#[must_use]
pub fn fd_of(index: usize) -> i32 {
    FIRST_FD + i32::try_from(index).unwrap_or(i32::MAX - FIRST_FD)
}

/// `LISTEN_FDNAMES`: the names, in descriptor order, joined by `:`.
#[must_use]
pub fn names(listen: &[Listen]) -> String {
    let names: Vec<&str> = listen.iter().map(|l| l.name.as_str()).collect();
    names.join(":")
}

/// Replaces `{fd}` (the first socket's descriptor) and `{fd:NAME}` in each startup word, for
/// servers that take a descriptor as a flag (`uvicorn --fd {fd}`).
pub fn substitute(words: &mut [String], listen: &[Listen]) -> Result<(), String> {
    for word in words.iter_mut() {
        let mut out = String::with_capacity(word.len());
        let mut rest = word.as_str();
        while let Some(at) = rest.find("{fd") {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 3..];
            let (fd, used) = if let Some(after) = tail.strip_prefix('}') {
                if listen.is_empty() {
                    return Err(
                        "{fd} names the first socket of `listen`, and there is none: \
                                add listen = [\"tcp:127.0.0.1:8000\"]"
                            .to_owned(),
                    );
                }
                (fd_of(0), tail.len() - after.len())
            } else if let Some(named) = tail.strip_prefix(':') {
                let Some(end) = named.find('}') else {
                    return Err(format!("\"{word}\": {{fd:NAME}} lacks its closing brace"));
                };
                let name = &named[..end];
                let Some(index) = listen.iter().position(|l| l.name == name) else {
                    let known: Vec<&str> = listen.iter().map(|l| l.name.as_str()).collect();
                    return Err(format!(
                        "{{fd:{name}}}: no socket of `listen` is named \"{name}\" (names: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                };
                (fd_of(index), 1 + end + 1)
            } else {
                out.push_str("{fd");
                rest = tail;
                continue;
            };
            out.push_str(&fd.to_string());
            rest = &tail[used..];
        }
        out.push_str(rest);
        *word = out;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Listen, String> {
        Listen::parse(text, Path::new("/srv/app"))
    }

    #[test]
    fn entries_parse_with_default_and_given_names() {
        let tcp = parse("tcp:127.0.0.1:8000").unwrap();
        assert_eq!(tcp.name, "8000");
        assert_eq!(tcp.address.to_string(), "tcp:127.0.0.1:8000");
        assert_eq!(
            parse("tcp:localhost:80").unwrap().address.to_string(),
            "tcp:127.0.0.1:80"
        );
        assert_eq!(
            parse("tcp:[::1]:8000").unwrap().address.to_string(),
            "tcp:[::1]:8000"
        );
        let unix = parse("unix:run/app.sock").unwrap();
        assert_eq!(unix.name, "app");
        assert_eq!(unix.address, Address::Unix("/srv/app/run/app.sock".into()));
        let named = parse("web=tcp:0.0.0.0:8080").unwrap();
        assert_eq!(named.name, "web");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (bad, says) in [
            ("8000", "neither"),
            ("tcp:127.0.0.1", "is HOST:PORT"),
            ("tcp:127.0.0.1:0", "is not a port"),
            ("tcp:example.com:80", "not an IP address"),
            ("unix:", "empty"),
            ("a:b=tcp:127.0.0.1:1", "neither"),
            ("we b=tcp:127.0.0.1:1", "the name"),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let long = format!("unix:{}", "x".repeat(120));
        assert!(parse(&long).unwrap_err().contains("at most 107"));
        let twice = parse_all(
            &["tcp:127.0.0.1:1".into(), "tcp:127.0.0.1:1".into()],
            Path::new("/"),
        );
        assert!(twice.unwrap_err().contains("repeats"));
    }

    #[test]
    fn fd_placeholders_become_descriptor_numbers() {
        let listen = parse_all(
            &["tcp:127.0.0.1:8000".into(), "unix:app.sock".into()],
            Path::new("/srv"),
        )
        .unwrap();
        let mut words: Vec<String> = [
            "--fd",
            "{fd}",
            "--bind=fd://{fd:app}",
            "{fdx}",
            "x{fd:8000}y",
        ]
        .map(String::from)
        .into();
        substitute(&mut words, &listen).unwrap();
        assert_eq!(words, ["--fd", "3", "--bind=fd://4", "{fdx}", "x3y"]);
        assert_eq!(names(&listen), "8000:app");
        let mut unknown = vec!["{fd:web}".to_owned()];
        assert!(
            substitute(&mut unknown, &listen)
                .unwrap_err()
                .contains("names: 8000, app")
        );
        let mut none = vec!["{fd}".to_owned()];
        assert!(
            substitute(&mut none, &[])
                .unwrap_err()
                .contains("there is none")
        );
    }
}
