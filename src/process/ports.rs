//! Who listens on a TCP port, for the message of a start refused because its `ready` check
//! already passes: "port 8000 is held by pid 1234 (python3 -m http.server 8000)".
//!
//! Linux: the LISTEN sockets of `/proc/net/tcp` and `tcp6` on the port give socket inodes;
//! the processes whose `/proc/<pid>/fd/*` link to `socket:[INODE]` hold them. Another user's
//! descriptors cannot be read without root: such a holder is said to be unseen.

/// A process that listens on the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// Its command line, words joined by spaces; empty when unreadable.
    pub command: String,
}

/// Who listens on a port, as far as keepup can see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    pub holders: Vec<Holder>,
    /// Whether a LISTEN socket on the port has no holder keepup could see.
    pub unseen: bool,
}

/// Who listens on TCP `port`, on any local address, IPv4 or IPv6.
#[cfg(target_os = "linux")]
#[must_use]
pub fn listeners(port: u16) -> Listening {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Listening::default();
    }
    let mut holders = Vec::new();
    let mut found = Vec::new();
    for pid in super::os::pids().unwrap_or_default() {
        let held: Vec<u64> = sockets_of(pid)
            .into_iter()
            .filter(|inode| inodes.contains(inode))
            .collect();
        if !held.is_empty() {
            found.extend(held);
            holders.push(Holder {
                pid,
                command: super::command_line(pid),
            });
        }
    }
    Listening {
        unseen: inodes.iter().any(|inode| !found.contains(inode)),
        holders,
    }
}

#[cfg(not(target_os = "linux"))]
#[must_use]
pub fn listeners(_port: u16) -> Listening {
    Listening::default()
}

/// Whether the connection from `client` to `server` (a socket keepup holds, shared by two
/// generations of the service during a reload) was accepted by a process of `group`: the
/// connection's row in `/proc/net/tcp` (or `tcp6`) gets the accepted socket's inode once a
/// process accepts it, and that process holds `socket:[INODE]`. Waits until `deadline` for an
/// accept; says who took it otherwise.
#[cfg(target_os = "linux")]
pub fn accepted_in_group(
    server: std::net::SocketAddr,
    client: std::net::SocketAddr,
    group: i32,
    deadline: std::time::Instant,
) -> Result<(), String> {
    let table = if server.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let mut inode = None;
    super::poll_until(deadline, || {
        inode = std::fs::read_to_string(table)
            .ok()
            .and_then(|text| connection_inode(&text, server, client));
        inode.is_some()
    });
    let Some(inode) = inode else {
        return Err(format!("no process accepted the connection to {server}"));
    };
    let holds = |pid: i32| sockets_of(pid).contains(&inode);
    let pids = super::os::pids().unwrap_or_default();
    if pids
        .iter()
        .any(|p| super::os::live_in_group(*p, group) && holds(*p))
    {
        return Ok(());
    }
    let taker = pids.into_iter().find(|p| holds(*p));
    Err(match taker {
        Some(pid) => {
            format!("the old generation answered (pid {pid} accepted the check's connection)")
        }
        None => "another process answered".to_owned(),
    })
}

/// The inodes of the sockets `pid` holds, from its `/proc/<pid>/fd` links (none when they
/// cannot be read: another user's, without root).
#[cfg(target_os = "linux")]
fn sockets_of(pid: i32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or_else(
        |_| Vec::new(),
        |fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|link| socket_inode(&link.to_string_lossy()))
                .collect()
        },
    )
}

#[cfg(not(target_os = "linux"))]
pub fn accepted_in_group(
    _server: std::net::SocketAddr,
    _client: std::net::SocketAddr,
    _group: i32,
    _deadline: std::time::Instant,
) -> Result<(), String> {
    Ok(())
}

/// The inode of the accepted socket of the connection `server` ⇐ `client` in a `/proc/net/tcp`
/// table; `None` until a process has accepted it (the kernel shows inode 0 while it waits in
/// the queue).
fn connection_inode(
    table: &str,
    server: std::net::SocketAddr,
    client: std::net::SocketAddr,
) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = proc_address(fields.get(1)?)?;
        let remote = proc_address(fields.get(2)?)?;
        let inode: u64 = fields.get(9)?.parse().ok()?;
        (local == server && remote == client && inode != 0).then_some(inode)
    })
}

/// `HEXIP:HEXPORT` as the kernel writes it: the address in 32-bit words of host byte order.
fn proc_address(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// One line for a message: who holds `port`.
#[must_use]
pub fn describe(port: u16) -> String {
    let listening = listeners(port);
    let named: Vec<String> = listening
        .holders
        .iter()
        .map(|h| format!("{} ({})", h.pid, shorten(&h.command)))
        .collect();
    match (named.as_slice(), listening.unseen) {
        ([], false) => format!("something answers on port {port}; stop it or change the port"),
        ([], true) => format!(
            "port {port} is held by a process keepup cannot see (another user's?); stop it or \
             change the port"
        ),
        ([one], _) => format!("port {port} is held by pid {one}; stop it or change the port"),
        (many, _) => format!(
            "port {port} is held by pids {}; stop them or change the port",
            many.join(", ")
        ),
    }
}

/// The inodes of the LISTEN sockets on `port` in a `/proc/net/tcp` or `tcp6` table: after a
/// header line, `sl local_address rem_address st ... inode`, addresses as `HEXIP:HEXPORT`,
/// state `0A` for LISTEN.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let listening = *fields.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn shorten(command: &str) -> String {
    const MAX: usize = 80;
    if command.chars().count() <= MAX {
        return command.to_owned();
    }
    let mut short: String = command.chars().take(MAX - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0
   1: 0100007F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0 20 4 30 10 -1
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0
";

    const TABLE6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5151 1 0 100 0 0 10 0
";

    #[test]
    fn finds_listen_sockets_on_the_port_only() {
        assert_eq!(listening_inodes(TABLE, 8000), [4242]);
        assert_eq!(listening_inodes(TABLE, 80), [4444]);
        assert!(listening_inodes(TABLE, 8001).is_empty());
        assert_eq!(listening_inodes(TABLE6, 8000), [5151]);
        assert!(listening_inodes("garbage\nmore garbage", 8000).is_empty());
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
    }

    #[test]
    fn finds_an_accepted_connection_by_both_ends() {
        let server = "127.0.0.1:8000".parse().unwrap();
        let client = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(connection_inode(TABLE, server, client), Some(4343));
        let queued = TABLE.replace(" 4343 ", " 0 ");
        assert_eq!(connection_inode(&queued, server, client), None);
        let other = "127.0.0.1:54322".parse().unwrap();
        assert_eq!(connection_inode(TABLE, server, other), None);
        assert_eq!(
            proc_address("00000000000000000000000001000000:1F40"),
            Some("[::1]:8000".parse().unwrap())
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn finds_this_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = i32::try_from(std::process::id()).unwrap();
        let listening = listeners(port);
        assert!(
            listening.holders.iter().any(|h| h.pid == me),
            "{listening:?}"
        );
        // Named among the holders: a parallel test's fork holds the socket too until its exec,
        // and the text then says "pids …, …".
        let text = describe(port);
        assert!(text.contains(&format!(" {me} (")), "{text}");
        // Nothing is asserted once it is closed: a parallel test may take the freed port.
        drop(listener);
    }
}
