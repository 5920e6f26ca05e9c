//! The recipes in `examples/`, end to end with the real servers: start, ask, SIGKILL the leader
//! alone (as the OOM killer does), revive, and stop with a request in flight.
//!
//! Each test copies its recipe into its own folder and gives it a free port. The servers come
//! from the machine (nginx-light, redis-server, node) and from a virtualenv that `.ci/run`
//! makes (`target/recipes-venv`: gunicorn, flask, uvicorn); a missing one is a skip, except
//! under CI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::testenv::{PATIENCE, Run, TestEnv, alive, free_port, group_of, sigkill, wait_for};

/// PATH with the recipes' virtualenv first, when there is one.
pub fn tool_path() -> String {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/recipes-venv/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    if venv.is_dir() {
        format!("{}:{path}", venv.display())
    } else {
        path
    }
}

/// Whether `program` is on the recipes' PATH: a skip when not, a failure under CI.
pub fn installed(program: &str, install: &str) -> bool {
    let found = std::env::split_paths(&tool_path()).any(|dir| dir.join(program).is_file());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this recipe, but {program} is not installed ({install})"
        );
        crate::testenv::skip(&format!("{program} not installed ({install})"));
    }
    found
}

/// How a test holds a request in flight while `stop` runs.
enum InFlight {
    /// `GET /slow` takes 2 s; the server touches `slow.started` when it begins.
    SlowPage,
    /// nginx: a 512 KiB file served at 256 KiB/s.
    Download,
    /// redis: a Lua script that works for 2 s, logging when it begins and ends. Not `DEBUG
    /// SLEEP`: TERM wakes its sleep at once, so it "completes" at once.
    SlowScript,
}

/// Busy for 2 s by redis' own clock, then done; its log lines go to redis' stdout, the log.
const SLOW_SCRIPT: &str = "redis.log(redis.LOG_WARNING, 'slow script started')
local function now()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local start = now()
while now() - start < 2000000 do end
redis.log(redis.LOG_WARNING, 'slow script done')
return 'slow done'";

/// `words` as a redis command (RESP), whatever they hold.
fn resp(words: &[&str]) -> Vec<u8> {
    let mut request = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        write!(request, "${}\r\n{word}\r\n", word.len()).unwrap();
    }
    request
}

struct Recipe {
    name: &'static str,
    /// The port the recipe is written with; the test gives it another.
    port: &'static str,
    program: &'static str,
    install: &'static str,
    /// The least number of processes of a running instance (leader and workers).
    processes: u64,
    in_flight: InFlight,
}

/// The recipe, copied into the test's folder on a free port; keepup runs with its PATH.
/// nginx clears its environment and redis overwrites it with its title, so the servers are
/// followed by process group (each instance leads its own), and a failing test ends exactly
/// the groups it started.
struct Copy {
    env: TestEnv,
    dir: PathBuf,
    port: u16,
    groups: std::cell::RefCell<Vec<i32>>,
}

impl Drop for Copy {
    fn drop(&mut self) {
        for group in self.groups.borrow().iter() {
            if *group > 1 && !members(*group).is_empty() {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(*group),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The live processes of process group `group`.
fn members(group: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| alive(*p) && group_of(*p) == Some(group))
        .collect()
}

impl Copy {
    fn new(recipe: &Recipe) -> Copy {
        let env = TestEnv::new();
        let port = free_port();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(recipe.name);
        for file in std::fs::read_dir(&source).unwrap() {
            let file = file.unwrap().path();
            let text = std::fs::read_to_string(&file).unwrap();
            let name = format!(
                "{}/{}",
                recipe.name,
                file.file_name().unwrap().to_str().unwrap()
            );
            let copy = env.write(&name, &text.replace(recipe.port, &port.to_string()));
            std::fs::set_permissions(&copy, std::fs::metadata(&file).unwrap().permissions())
                .unwrap();
        }
        let dir = env.path(recipe.name);
        Copy {
            env,
            dir,
            port,
            groups: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// A leader this test started, to be ended on drop whatever happens.
    fn started(&self, run: &Run) -> i32 {
        let pid = run.pid();
        self.groups.borrow_mut().push(pid);
        pid
    }

    fn keepup(&self, args: &[&str]) -> Run {
        let output = self
            .env
            .keepup_command(
                Path::new(env!("CARGO_BIN_EXE_keepup")),
                &self.dir.join("cfg.toml"),
            )
            .env("PATH", tool_path())
            .args(args)
            .output()
            .unwrap();
        Run::from_output(&output)
    }

    fn log(&self) -> String {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }
}

/// One request and its whole answer.
fn ask(port: u16, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    Some(answer)
}

fn get(port: u16, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    ask(port, request.as_bytes()).map(|a| String::from_utf8_lossy(&a).into_owned())
}

/// Asks the server its ordinary question: an HTTP GET, or redis' PING.
fn answers(recipe: &Recipe, port: u16) -> bool {
    if recipe.name == "redis" {
        // Refused is "not yet": the revived instance runs (and is waited for) before it listens.
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    } else {
        get(port, "/").is_some_and(|a| a.contains("running"))
    }
}

/// Starts a request that takes about 2 s and returns once the server is working on it; the
/// receiver gets, once it is over, what was wrong with how it ended, if anything.
fn request_in_flight(recipe: &Recipe, copy: &Copy) -> mpsc::Receiver<Result<(), String>> {
    let (done, completed) = mpsc::channel();
    let port = copy.port;
    match recipe.in_flight {
        InFlight::SlowPage => {
            let marker = copy.dir.join("slow.started");
            std::thread::spawn(move || {
                let answer = get(port, "/slow").unwrap_or_default();
                let _ = done.send(whole(answer.contains("slow done"), &answer));
            });
            wait_for("the slow request to begin", || marker.exists());
        }
        InFlight::Download => {
            let size = 512 * 1024;
            copy.env.write("nginx/files/big.bin", &"x".repeat(size));
            let (begun, started) = mpsc::channel();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                stream
                    .write_all(b"GET /files/big.bin HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .unwrap();
                let mut first = [0u8; 1024];
                let n = stream.read(&mut first).unwrap();
                begun.send(()).unwrap();
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                let answer = [&first[..n], &rest[..]].concat();
                let body = answer
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(0, |i| answer.len() - i - 4);
                let _ = done.send(whole(body == size, &format!("{body} bytes of {size}")));
            });
            started.recv_timeout(PATIENCE).unwrap();
        }
        InFlight::SlowScript => {
            // keepup's log for the entry redis.conf: redis logs to its stdout.
            let log = copy.dir.join("redis.conf.log");
            std::thread::spawn(move || {
                let answer = ask(port, &resp(&["EVAL", SLOW_SCRIPT, "0"])).unwrap_or_default();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                // redis 7.0 handles TERM between commands: the script runs to its end, and
                // then redis exits in the same turn of its event loop, before it sends the
                // reply (it flushes only its replicas' buffers). The README says so.
                let ended = if !log.contains("slow script done") {
                    Err(format!("the script in flight was cut by stop:\n{log}"))
                } else if !answer.is_empty() {
                    Err(format!(
                        "redis answered {:?} before it exited, which 7.0 does not: the \
                         README's redis recipe must now say the reply is sent",
                        String::from_utf8_lossy(&answer)
                    ))
                } else {
                    Ok(())
                };
                let _ = done.send(ended);
            });
            wait_for("redis to run the script", || {
                copy.log().contains("slow script started")
            });
        }
    }
    completed
}

/// A request's answer came whole, or says how it was cut.
fn whole(complete: bool, answer: &str) -> Result<(), String> {
    if complete {
        Ok(())
    } else {
        Err(format!("the request in flight was cut by stop: {answer}"))
    }
}

fn exercise(recipe: &Recipe) {
    if !installed(recipe.program, recipe.install) {
        return;
    }
    let copy = Copy::new(recipe);
    let first = copy.started(copy.keepup(&["start"]).expect(0).stdout_has("started"));
    assert!(
        answers(recipe, copy.port),
        "{} does not answer",
        recipe.name
    );
    wait_for("all its workers", || {
        members(first).len() as u64 >= recipe.processes
    });

    // status counts the whole group, as systemd counts a unit.
    let status = copy.keepup(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert!(
        value["processes"].as_u64() >= Some(recipe.processes),
        "{status:#?}"
    );
    assert!(value["memory_bytes"].as_u64() >= value["leader_memory_bytes"].as_u64());

    // The leader alone dies; the revival ends what is left of it before starting afresh.
    let old = members(first);
    assert!(old.len() as u64 >= recipe.processes, "{old:?}");
    sigkill(first);
    // Its watcher revives it at once, ending the old generation first.
    let mut second = first;
    wait_for("the watcher's revival", || {
        let status = copy.keepup(&["status", "--json"]);
        let value: serde_json::Value =
            serde_json::from_str(status.stdout.trim()).unwrap_or_default();
        let locked = value["pid_lock"]
            .as_str()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.trim().parse::<i64>().ok());
        second = value["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(first);
        second != first && locked == Some(i64::from(second))
    });
    copy.groups.borrow_mut().push(second);
    for pid in &old {
        assert!(
            !alive(*pid),
            "{pid} of the old generation survived the revival"
        );
    }
    let log = copy.log();
    for bind_failure in ["in use", "EADDRINUSE"] {
        assert!(
            !log.contains(bind_failure),
            "{bind_failure} in the log:\n{log}"
        );
    }
    // The new instance is recorded the moment it runs; it answers once it is ready.
    wait_for(
        &format!("{} to answer after the revival", recipe.name),
        || answers(recipe, copy.port),
    );
    // Exactly one generation: the new one, whole.
    assert_eq!(
        members(first),
        Vec::<i32>::new(),
        "the old generation lives on"
    );
    wait_for("the new generation's workers", || {
        members(second).len() as u64 >= recipe.processes
    });

    // stop is graceful: a request in flight completes.
    let ended = request_in_flight(recipe, &copy);
    copy.keepup(&["stop"]).expect(0).stdout_has("stopped");
    if let Err(why) = ended.recv_timeout(PATIENCE).unwrap() {
        panic!("{why}");
    }
    wait_for("nothing of it left", || {
        members(second).is_empty() && copy.env.own_processes().is_empty()
    });
}

#[test]
fn nginx_recipe() {
    exercise(&Recipe {
        name: "nginx",
        port: "8080",
        program: "nginx",
        install: "apt-get install nginx-light",
        processes: 3,
        in_flight: InFlight::Download,
    });
}

#[test]
fn gunicorn_recipe() {
    exercise(&Recipe {
        name: "gunicorn",
        port: "8001",
        program: "gunicorn",
        install: "pip install gunicorn flask, or run .ci/run",
        processes: 3,
        in_flight: InFlight::SlowPage,
    });
}

#[test]
fn uvicorn_recipe() {
    exercise(&Recipe {
        name: "uvicorn",
        port: "8002",
        program: "uvicorn",
        install: "pip install uvicorn, or run .ci/run",
        processes: 3,
        in_flight: InFlight::SlowPage,
    });
}

#[test]
fn redis_recipe() {
    exercise(&Recipe {
        name: "redis",
        port: "6380",
        program: "redis-server",
        install: "apt-get install redis-server",
        processes: 1,
        in_flight: InFlight::SlowScript,
    });
}

#[test]
fn node_recipe() {
    exercise(&Recipe {
        name: "node",
        port: "8003",
        program: "node",
        install: "apt-get install nodejs",
        processes: 1,
        in_flight: InFlight::SlowPage,
    });
}

/// A celery app with a filesystem broker (no server needed) and one task that takes 3 s.
const CELERY_TASKS: &str = "import time\nfrom celery import Celery\n\
app = Celery('tasks', broker='filesystem://')\n\
app.conf.broker_transport_options = {'data_folder_in': 'broker', 'data_folder_out': 'broker', \
'processed_folder': 'processed'}\n\
@app.task\ndef work(name):\n    open('started-' + name, 'w').close()\n    time.sleep(3)\n    \
open('done-' + name, 'w').close()\n";

/// Real celery, prefork pool. Its documented stop is TERM to the main process: a warm
/// shutdown that lets the task at hand finish. keepup's default stop does just that; with
/// `stop_mode = "group"` the pool's worker gets TERM too, dies, and the task is lost (before,
/// that was every stop: celery's `WorkerLostError`).
#[test]
fn celery_finishes_the_task_at_hand_on_stop_and_group_mode_cuts_it() {
    if !installed("celery", "pip install celery") {
        return;
    }
    for (mode, finishes) in [("leader", true), ("group", false)] {
        let env = TestEnv::new();
        std::fs::create_dir(env.path("broker")).unwrap();
        std::fs::create_dir(env.path("processed")).unwrap();
        env.write("tasks.py", CELERY_TASKS);
        env.config(&format!(
            "entry = \"tasks.py\"\n\
             startup = \"celery -A tasks worker --pool=prefork --concurrency=1 --loglevel=info\"\n\
             stop_mode = \"{mode}\"\nstop_timeout = \"20s\"\n[env]\nPATH = \"{}\"\n",
            tool_path()
        ));
        env.keepup(&["start"]).expect(0);
        let log = || std::fs::read_to_string(env.path("tasks.py.log")).unwrap_or_default();
        wait_for("celery to be ready", || log().contains("ready."));
        let sent = env
            .command(Path::new("sh"))
            .args(["-c", "celery -A tasks call tasks.work --args '[\"a\"]'"])
            .env("PATH", tool_path())
            .output()
            .unwrap();
        assert!(sent.status.success(), "{sent:?}");
        wait_for("the task to begin", || env.path("started-a").exists());
        let stop = env.keepup(&["stop"]);
        stop.expect(0);
        assert!(
            !stop.stderr.contains("sending SIGKILL"),
            "{mode}: {stop:#?}"
        );
        assert_eq!(
            env.path("done-a").exists(),
            finishes,
            "stop_mode = {mode}:\n{}",
            log()
        );
        if !finishes {
            assert!(log().contains("exited with 'signal 15"), "{}", log());
        }
        assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
    }
}

/// A copy of `recipe` whose ready check is `ready = "notify"`, with `conf_line` added to the
/// server's own conf file `conf` (if given).
fn notify_copy(recipe: &Recipe, conf: Option<(&str, &str)>) -> Copy {
    let copy = Copy::new(recipe);
    let cfg = copy.dir.join("cfg.toml");
    let text: Vec<String> = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("ready =") {
                "ready = \"notify\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&cfg, text.join("\n") + "\n").unwrap();
    if let Some((file, line)) = conf {
        let path = copy.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{line}\n")).unwrap();
    }
    copy
}

/// gunicorn speaks `sd_notify` out of the box: with `ready = "notify"` its start is done at its
/// `READY=1`, and `status` shows what it said with it.
#[test]
fn gunicorn_with_ready_notify_is_started_by_its_own_ready_1() {
    let recipe = Recipe {
        name: "gunicorn",
        port: "8001",
        program: "gunicorn",
        install: "pip install gunicorn flask, or run .ci/run",
        processes: 3,
        in_flight: InFlight::SlowPage,
    };
    if !installed(recipe.program, recipe.install) {
        return;
    }
    let copy = notify_copy(&recipe, None);
    copy.started(copy.keepup(&["start"]).expect(0).stdout_has("started"));
    assert!(answers(&recipe, copy.port), "gunicorn does not answer");
    copy.keepup(&["status"])
        .expect(0)
        .stdout_has("says:     Gunicorn arbiter booted");
    copy.keepup(&["stop"]).expect(0);
}

/// redis with `supervised systemd` says READY=1 once it accepts connections.
#[test]
fn redis_supervised_systemd_with_ready_notify() {
    let recipe = Recipe {
        name: "redis",
        port: "6380",
        program: "redis-server",
        install: "apt-get install redis-server",
        processes: 1,
        in_flight: InFlight::SlowScript,
    };
    if !installed(recipe.program, recipe.install) {
        return;
    }
    let copy = notify_copy(&recipe, Some(("redis.conf", "supervised systemd")));
    copy.started(copy.keepup(&["start"]).expect(0).stdout_has("started"));
    assert!(answers(&recipe, copy.port), "redis does not answer");
    let status = copy.keepup(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert!(
        value["health"]["status"]
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains("ready")),
        "{status:#?}"
    );
    copy.keepup(&["stop"]).expect(0);
}
