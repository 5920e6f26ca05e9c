//! Readiness: the optional check that says a started service is really up (its port answers,
//! its health page says 2xx, a command exits 0), not only running.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::startup;

/// The least time a probe is given, however close the deadline.
const MIN_BUDGET: Duration = Duration::from_millis(10);

/// How much of an HTTP answer is read before closing: enough for any health page; reading it
/// (rather than closing with it unread) spares the server a reset connection.
const MAX_ANSWER: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ready {
    /// A TCP connection to `host:port` succeeds.
    Tcp { host: String, port: u16 },
    /// `GET path` on `host:port` answers 2xx.
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// The command (split like `startup`, run without a shell in the entry's folder) exits 0.
    Cmd(Vec<String>),
    /// The service says so itself: `READY=1` on `NOTIFY_SOCKET` (`sd_notify`), read by the
    /// launch, not probed.
    Notify,
}

impl Ready {
    /// Parses `tcp:HOST:PORT`, `http://HOST:PORT/PATH`, `cmd:COMMAND` or `notify`.
    pub fn parse(text: &str, entry: &Path, dir: &Path) -> Result<Ready, String> {
        if text == "notify" {
            Ok(Ready::Notify)
        } else if let Some(rest) = text.strip_prefix("tcp:") {
            let (host, port) = host_port(rest, None)?;
            Ok(Ready::Tcp { host, port })
        } else if let Some(rest) = text.strip_prefix("http://") {
            let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
            let (host, port) = host_port(authority, Some(80))?;
            Ok(Ready::Http {
                host,
                port,
                path: path.to_owned(),
            })
        } else if let Some(command) = text.strip_prefix("cmd:") {
            startup::split(command, entry, dir).map(Ready::Cmd)
        } else {
            Err(format!(
                "\"{text}\" is not a check (write \"tcp:HOST:PORT\", \"http://HOST:PORT/PATH\", \"cmd:COMMAND\" or \"notify\")"
            ))
        }
    }

    /// The port a network check connects to.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        match self {
            Ready::Tcp { port, .. } | Ready::Http { port, .. } => Some(*port),
            Ready::Cmd(_) | Ready::Notify => None,
        }
    }

    /// Runs the check once, within `budget` (the time left until the start deadline, so a
    /// slow `cmd:` check may take all of it): `Ok` if it passes, else what it saw.
    pub fn probe(&self, dir: &Path, budget: Duration) -> Result<(), String> {
        self.probe_taken_by(dir, budget, &|_, _| Ok(()))
    }

    /// As [`Ready::probe`], but a network check's answer counts only if `taker`, told the
    /// server's and the check's own address once connected, says the right process took the
    /// connection (during a reload two generations accept on one socket). A `cmd:` check
    /// runs as it is.
    pub fn probe_taken_by(&self, dir: &Path, budget: Duration, taker: Taker) -> Result<(), String> {
        let budget = budget.max(MIN_BUDGET);
        match self {
            Ready::Tcp { host, port } => {
                connect(host, *port, budget).and_then(|stream| taken(&stream, taker))
            }
            Ready::Http { host, port, path } => http_get(host, *port, path, budget, taker),
            Ready::Cmd(words) => run(words, dir, budget),
            Ready::Notify => Err("notify is not probed: the service sends READY=1".to_owned()),
        }
    }
}

impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ready::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Ready::Http { host, port, path } => write!(f, "http://{host}:{port}{path}"),
            Ready::Cmd(words) => write!(f, "cmd:{}", shell_words::join(words)),
            Ready::Notify => f.write_str("notify"),
        }
    }
}

fn host_port(text: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = match text.rsplit_once(':') {
        // [::1]:80 or host:80, but not the inside of a bare [::1]
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (text, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("\"{text}\" names no host"));
    }
    let port = match (port, default_port) {
        (Some(port), _) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("\"{port}\" is not a port"))?,
        (None, Some(default)) => default,
        (None, None) => return Err(format!("\"{text}\" names no port (write HOST:PORT)")),
    };
    Ok((host.to_owned(), port))
}

fn connect(host: &str, port: u16, budget: Duration) -> Result<TcpStream, String> {
    let addresses = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, budget) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connecting to {address}: {e}"),
        }
    }
    Err(last)
}

/// Says whether the process that took a check's connection may answer it: told the server's
/// address and the check's own.
pub type Taker<'a> = &'a dyn Fn(SocketAddr, SocketAddr) -> Result<(), String>;

fn taken(stream: &TcpStream, taker: Taker) -> Result<(), String> {
    match (stream.peer_addr(), stream.local_addr()) {
        (Ok(server), Ok(client)) => taker(server, client),
        (Err(e), _) | (_, Err(e)) => Err(format!("the check's connection: {e}")),
    }
}

fn http_get(
    host: &str,
    port: u16,
    path: &str,
    budget: Duration,
    taker: Taker,
) -> Result<(), String> {
    let mut stream = connect(host, port, budget)?;
    // Before the request: the server waits for it, so the connection it accepted is there to
    // be found.
    taken(&stream, taker)?;
    let _ = stream.set_read_timeout(Some(budget));
    let _ = stream.set_write_timeout(Some(budget));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    // The whole answer (HTTP/1.0 with Connection: close ends it by closing), so that the
    // server never writes into a connection already reset by the prober.
    let mut answer = Vec::new();
    match stream.take(MAX_ANSWER).read_to_end(&mut answer) {
        Ok(_) => {}
        Err(_) if !answer.is_empty() => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(format!(
                "GET {path}: no answer within {}",
                crate::text::duration_text(budget)
            ));
        }
        Err(e) => return Err(format!("reading the answer: {e}")),
    }
    let status_line = String::from_utf8_lossy(&answer[..answer.len().min(256)]);
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "GET {path} answered {:?}",
            status_line.lines().next().unwrap_or("")
        ))
    }
}

fn run(words: &[String], dir: &Path, budget: Duration) -> Result<(), String> {
    let (program, args) = words.split_first().ok_or("the command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + budget;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} ended with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} took longer than {}",
                    crate::text::duration_text(budget)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Ready, String> {
        Ready::parse(text, Path::new("/srv/bot.py"), Path::new("/srv"))
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(
            parse("tcp:127.0.0.1:8000"),
            Ok(Ready::Tcp {
                host: "127.0.0.1".into(),
                port: 8000
            })
        );
        assert_eq!(
            parse("tcp:[::1]:80"),
            Ok(Ready::Tcp {
                host: "::1".into(),
                port: 80
            })
        );
        assert_eq!(
            parse("http://localhost:8000/health?x=1"),
            Ok(Ready::Http {
                host: "localhost".into(),
                port: 8000,
                path: "/health?x=1".into()
            })
        );
        assert_eq!(
            parse("http://localhost"),
            Ok(Ready::Http {
                host: "localhost".into(),
                port: 80,
                path: "/".into()
            })
        );
        assert_eq!(
            parse("cmd:test -e {dir}/ready"),
            Ok(Ready::Cmd(vec![
                "test".into(),
                "-e".into(),
                "/srv/ready".into()
            ]))
        );
    }

    #[test]
    fn refuses_bad_checks() {
        for bad in [
            "tcp:localhost",
            "tcp::80",
            "tcp:host:0",
            "tcp:host:99999",
            "https://x/",
            "ping",
            "cmd:a | b",
            "cmd:",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probes_a_real_port_and_command() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = Ready::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(tcp.probe(Path::new("/"), Duration::from_secs(1)).is_ok());
        drop(listener);
        assert!(tcp.probe(Path::new("/"), Duration::from_secs(1)).is_err());
        assert!(
            Ready::Cmd(vec!["true".into()])
                .probe(Path::new("/"), Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            Ready::Cmd(vec!["false".into()])
                .probe(Path::new("/"), Duration::from_secs(1))
                .is_err()
        );
    }
}
