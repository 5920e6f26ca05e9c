//! `listen`: the watcher binds the sockets once and hands them to every launch (fds 3…,
//! `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, `{fd}`), so a service killed by SIGKILL refuses no
//! connection: the kernel queues them until the revived one accepts. With the real servers.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::recipes::{installed, tool_path};
use crate::testenv::{PATIENCE, Run, TestEnv, alive, free_port, locked_pid, sigkill, wait_for};

/// What a stream of requests met: each on a new connection, as a browser or a load balancer's
/// health check opens them.
#[derive(Debug, Default)]
pub struct Tally {
    pub answered: AtomicUsize,
    pub refused: AtomicUsize,
    /// Connected and asked, then closed with not a byte of an answer (reset, or the end of the
    /// stream): what a server does to a connection it accepted but had not read when it was
    /// told to stop (uvicorn, see [`Server::closes_unread_at_stop`]), or when it was killed.
    pub unanswered: AtomicUsize,
    /// Connected, but no whole answer otherwise: cut in the middle, not HTTP, not 200, or the
    /// connection or request failed.
    pub failed: AtomicUsize,
}

/// Requests `GET /` on `port` one after the other until `stop`, counting what each met.
pub fn stream(port: u16, stop: Arc<AtomicBool>) -> (Arc<Tally>, std::thread::JoinHandle<()>) {
    let tally = Arc::new(Tally::default());
    let counts = Arc::clone(&tally);
    let client = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let got = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.kind());
            let counter = match got {
                Err(ErrorKind::ConnectionRefused) => &counts.refused,
                Err(_) => &counts.failed,
                Ok(mut stream) => {
                    let _ = stream.set_read_timeout(Some(PATIENCE));
                    let mut answer = String::new();
                    let read = stream
                        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                        .map(|()| stream.read_to_string(&mut answer).map_err(|e| e.kind()));
                    match read {
                        Ok(Ok(_)) if answer.starts_with("HTTP/1.") && answer.contains(" 200 ") => {
                            &counts.answered
                        }
                        Ok(Ok(0) | Err(ErrorKind::ConnectionReset)) if answer.is_empty() => {
                            &counts.unanswered
                        }
                        _ => &counts.failed,
                    }
                }
            };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (tally, client)
}

/// The service's pid as keepup knows it, once it runs and answers on `port`.
pub fn serving(entry: &Path, port: u16, not: Option<i32>) -> i32 {
    let mut pid = 0;
    wait_for("the service to run and answer", || {
        pid = locked_pid(entry).unwrap_or(0);
        pid != 0 && Some(pid) != not && alive(pid) && get(port).is_some()
    });
    pid
}

pub fn get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.contains(" 200 ").then_some(answer)
}

/// keepup with the recipes' PATH (gunicorn and uvicorn from their virtualenv).
pub fn keepup(env: &TestEnv, args: &[&str]) -> Run {
    let output = env
        .keepup_command(
            Path::new(env!("CARGO_BIN_EXE_keepup")),
            &env.path("cfg.toml"),
        )
        .env("PATH", tool_path())
        .args(args)
        .output()
        .unwrap();
    Run::from_output(&output)
}

/// Starts the service of `env`'s config, SIGKILLs it three times while a client asks without
/// pause, and asserts that no connection was refused; then that `stop` closes the socket.
fn no_refusal_through_kills(env: &TestEnv, entry: &Path, port: u16) {
    keepup(env, &["start"]).expect(0).stdout_has("started");
    let mut pid = serving(entry, port, None);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, client) = stream(port, Arc::clone(&stop));
    for _ in 0..3 {
        let before = tally.answered.load(Ordering::SeqCst);
        wait_for("requests answered between kills", || {
            tally.answered.load(Ordering::SeqCst) >= before + 5
        });
        sigkill(pid);
        pid = serving(entry, port, Some(pid));
    }
    let before = tally.answered.load(Ordering::SeqCst);
    wait_for("requests answered after the last revival", || {
        tally.answered.load(Ordering::SeqCst) >= before + 5
    });
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(
        tally.refused.load(Ordering::SeqCst),
        0,
        "connections refused while the service was revived: {tally:?}"
    );
    keepup(env, &["stop"]).expect(0);
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::ConnectionRefused),
        "the socket outlived stop"
    );
}

pub fn example_server(env: &TestEnv) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("server/runserver.py");
    env.script(
        "server/runserver.py",
        &std::fs::read_to_string(source).unwrap(),
    )
}

/// The servers, each on a held socket (`listen` on `port`) answering `running`, the way its
/// README example takes it; each finishes its requests on TERM. Returns the entry, or `None`
/// (said as a skip) when the server is not installed.
pub enum Server {
    /// `server/runserver.py`: reads `LISTEN_FDS`.
    Example,
    /// gunicorn reads `LISTEN_FDS` itself (no --bind), only when `LISTEN_PID` is its own pid.
    Gunicorn,
    /// uvicorn takes the descriptor as a flag, `--fd {fd}`.
    Uvicorn,
    /// node takes it in code, `listen({ fd: 3 })`.
    Node,
}

impl Server {
    /// Whether the server, told to stop, closes unanswered a connection it has accepted but
    /// whose request it has not read yet: uvicorn (0.54) does (`h11_impl`'s `shutdown` closes
    /// a connection with no request cycle). In a reload, the old generation may accept one in
    /// the moment before its stop signal; nothing outside the server can take it back (README,
    /// "reload").
    pub fn closes_unread_at_stop(&self) -> bool {
        matches!(self, Server::Uvicorn)
    }

    pub fn set_up(&self, env: &TestEnv, port: u16) -> Option<std::path::PathBuf> {
        // Time to start on a loaded machine (the tests run in parallel): a reload fails a
        // generation that is not ready within start_timeout.
        let held = format!(
            "listen = [\"tcp:127.0.0.1:{port}\"]\nready = \"http://127.0.0.1:{port}/\"\n\
             stop_timeout = \"10s\"\nstart_timeout = \"20s\"\n"
        );
        let (entry, config) = match self {
            Server::Example => (
                example_server(env),
                "entry = \"server/runserver.py\"\n".to_owned(),
            ),
            Server::Gunicorn => {
                if !installed("gunicorn", "pip install gunicorn") {
                    return None;
                }
                let app = env.write(
                    "app.py",
                    "def app(environ, start_response):\n    \
                     start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
                     return [b'running']\n",
                );
                let config = "entry = \"app.py\"\nstartup = \"gunicorn -w 2 app:app\"\n";
                (app, config.to_owned())
            }
            Server::Uvicorn => {
                if !installed("uvicorn", "pip install uvicorn") {
                    return None;
                }
                let app = env.write(
                    "app.py",
                    "async def app(scope, receive, send):\n    if scope['type'] != 'http':\n        \
                     return\n    await send({'type': 'http.response.start', 'status': 200, \
                     'headers': []})\n    \
                     await send({'type': 'http.response.body', 'body': b'running'})\n",
                );
                let config = "entry = \"app.py\"\nstartup = \"uvicorn --fd {fd} app:app\"\n";
                (app, config.to_owned())
            }
            Server::Node => {
                if !crate::testenv::have("node", "nodejs") {
                    return None;
                }
                let server = env.script(
                    "server.js",
                    "#!/usr/bin/env node\nconst http = require('http');\nconst server = \
                     http.createServer((req, res) => res.end('running')).listen({ fd: 3 });\n\
                     process.on('SIGTERM', () => server.close(() => process.exit(0)));\n",
                );
                (server, "entry = \"server.js\"\n".to_owned())
            }
        };
        env.config(&format!("{config}{held}"));
        Some(entry)
    }

    /// Rewrites the app so that it answers `to` instead of `from`.
    pub fn answer(&self, entry: &Path, from: &str, to: &str) {
        let (from, to) = match self {
            Server::Example => (format!("\"msg\": \"{from}\""), format!("\"msg\": \"{to}\"")),
            Server::Gunicorn | Server::Uvicorn => (format!("b'{from}'"), format!("b'{to}'")),
            Server::Node => (format!("end('{from}')"), format!("end('{to}')")),
        };
        let text = std::fs::read_to_string(entry).unwrap();
        assert!(text.contains(&from), "{from} not in {}", entry.display());
        std::fs::write(entry, text.replace(&from, &to)).unwrap();
    }
}

fn sigkilled_without_refusal(server: &Server) {
    let env = TestEnv::new();
    let port = free_port();
    if let Some(entry) = server.set_up(&env, port) {
        no_refusal_through_kills(&env, &entry, port);
    }
}

#[test]
fn the_example_server_refuses_no_connection_while_it_is_sigkilled() {
    sigkilled_without_refusal(&Server::Example);
}

#[test]
fn gunicorn_takes_listen_fds_without_a_flag_and_refuses_no_connection() {
    sigkilled_without_refusal(&Server::Gunicorn);
}

#[test]
fn uvicorn_takes_the_socket_by_its_fd_flag_and_refuses_no_connection() {
    sigkilled_without_refusal(&Server::Uvicorn);
}

#[test]
fn node_takes_fd_3_in_code_and_refuses_no_connection() {
    sigkilled_without_refusal(&Server::Node);
}

/// What the test service saw of itself, one `KEY=VALUE` a line.
const SELF_REPORT: &str = "import socket\n\
lines = ['pid=%d' % os.getpid(), 'argv=%s' % ' '.join(sys.argv[1:])]\n\
for key in ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']:\n    \
lines.append('%s=%s' % (key, os.environ.get(key)))\n\
for fd in [3, 4]:\n    \
s = socket.socket(fileno=fd)\n    \
lines.append('fd%d=%s listening=%d inode=%d' % (fd, s.getsockname(), \
s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), os.fstat(fd).st_ino))\n    \
s.detach()\n\
lines.append('fd5=%s' % os.path.exists('/proc/self/fd/5'))\n\
open('seen.%d' % os.getpid(), 'w').write('\\n'.join(lines) + '\\n')\n";

fn seen(env: &TestEnv, pid: i32) -> String {
    let file = env.path(&format!("seen.{pid}"));
    wait_for("the service's report", || file.exists());
    let mut text = String::new();
    wait_for("the service's whole report", || {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        text.contains("fd5=")
    });
    text
}

fn inode_of(report: &str, fd: &str) -> String {
    let line = report
        .lines()
        .find(|l| l.starts_with(fd))
        .unwrap_or_else(|| panic!("no {fd} in {report}"));
    line.rsplit_once("inode=").unwrap().1.to_owned()
}

#[test]
fn listen_pid_is_the_services_own_pid_and_the_sockets_sit_at_fd_3_on() {
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", SELF_REPORT);
    let port = free_port();
    env.config(&format!(
        "entry = \"svc.py\"\nstartup = \"python3 {{entry}} --web={{fd}} --ctl={{fd:ctl}}\"\n\
         listen = [\"tcp:127.0.0.1:{port}\", \"ctl=unix:ctl.sock\"]\n"
    ));
    let first = env.keepup(&["start"]).expect(0).pid();
    let report = seen(&env, first);
    let sock = env.path("ctl.sock");
    for line in [
        format!("pid={first}"),
        format!("LISTEN_PID={first}"),
        "LISTEN_FDS=2".to_owned(),
        format!("LISTEN_FDNAMES={port}:ctl"),
        "argv=--web=3 --ctl=4".to_owned(),
        format!("fd3=('127.0.0.1', {port}) listening=1"),
        format!("fd4={} listening=1", sock.display()),
        "fd5=False".to_owned(),
    ] {
        assert!(report.contains(&line), "{line:?} not in:\n{report}");
    }

    // Revived by the watcher from its waiting state (a fresh image of keepup): the same
    // sockets, never closed, with the new pid in LISTEN_PID.
    sigkill(first);
    let mut second = 0;
    wait_for("the revival", || {
        second = locked_pid(&entry).unwrap_or(first);
        second != first && env.path(&format!("seen.{second}")).exists()
    });
    let again = seen(&env, second);
    assert!(again.contains(&format!("LISTEN_PID={second}")), "{again}");
    for fd in ["fd3", "fd4"] {
        assert_eq!(inode_of(&report, fd), inode_of(&again, fd), "{fd}: {again}");
    }
    env.keepup(&["stop"]).expect(0);
    assert!(
        UnixStream::connect(&sock).is_err(),
        "the unix socket outlived stop"
    );
}

#[test]
fn a_taken_port_is_a_start_failure_that_names_who_holds_it() {
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.config(&format!(
        "entry = \"svc.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n"
    ));
    env.keepup(&["start"])
        .expect(1)
        .stderr_has(&format!("listen = \"tcp:127.0.0.1:{port}\""))
        .stderr_has(&format!(" {} (", std::process::id()));
    // The watcher that answered "failed" leaves a moment after its answer.
    wait_for("nothing left running", || env.own_processes().is_empty());
}

#[test]
fn a_stale_unix_socket_is_replaced() {
    let env = TestEnv::new();
    let entry = example_server(&env);
    let sock = env.path("app.sock");
    // A dead run's socket: the file stays, nobody accepts.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(UnixStream::connect(&sock).is_err());
    env.config("entry = \"server/runserver.py\"\nlisten = [\"unix:app.sock\"]\n");
    env.keepup(&["start"]).expect(0);
    let _ = locked_pid(&entry);
    let mut answer = String::new();
    let mut stream = UnixStream::connect(&sock).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("{\"msg\":\"running\"}"), "{answer}");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn another_users_socket_is_never_replaced() {
    let Some(user) = crate::testenv::TestUser::new() else {
        return;
    };
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    let sock = env.path("app.sock");
    drop(UnixListener::bind(&sock).unwrap());
    user.give(&sock);
    env.config("entry = \"svc.py\"\nlisten = [\"unix:app.sock\"]\n");
    env.keepup(&["start"]).expect(1).stderr_has(&format!(
        "{} is a socket of {}'s",
        sock.display(),
        user.name
    ));
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::symlink_metadata(&sock).unwrap()),
        user.uid
    );
    // The watcher that answered "failed" leaves a moment after its answer.
    wait_for("nothing left running", || env.own_processes().is_empty());
}

/// The watcher holds the sockets: killed, it takes them along. The running service keeps its
/// copies; the timer's next `restart` starts a watcher, and the next launch binds them again.
#[test]
fn when_the_watcher_dies_the_next_launch_binds_the_sockets_again() {
    let env = TestEnv::new();
    let entry = example_server(&env);
    let port = free_port();
    env.config(&format!(
        "entry = \"server/runserver.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n\
         ready = \"http://127.0.0.1:{port}/\"\n\
         [restart_limit]\nbackoff = \"0s\"\n"
    ));
    let watcher = |env: &TestEnv| {
        let status = env.keepup(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
        i32::try_from(json["watcher"]["pid"].as_i64().unwrap()).unwrap()
    };
    env.keepup(&["start"]).expect(0);
    let first = serving(&entry, port, None);
    sigkill(watcher(&env));
    assert!(
        get(port).is_some(),
        "the service's own copy stopped serving"
    );
    env.keepup(&["restart", "--timer"])
        .expect(0)
        .stdout_has("started a watcher");
    // The new watcher holds nothing while the old generation holds the socket.
    env.keepup(&["reload"])
        .expect(1)
        .stderr_has("does not hold")
        .stderr_has("restart --force");
    // Its revival binds them; from then on they are held again.
    sigkill(first);
    let second = serving(&entry, port, Some(first));
    env.keepup(&["reload"]).expect(0);
    assert!(!alive(second));

    // Watcher and service both gone: refused until the timer's check revives it.
    sigkill(watcher(&env));
    let third = locked_pid(&entry).unwrap();
    sigkill(third);
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::ConnectionRefused)
    );
    env.keepup(&["restart", "--timer"])
        .expect(0)
        .stdout_has("revived");
    serving(&entry, port, Some(third));
    env.keepup(&["reload"]).expect(0);
    env.keepup(&["stop"]).expect(0);
}
