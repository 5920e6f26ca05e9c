//! Health checks: the watcher probes the running service; a service that is alive but does not
//! answer is ended and revived, one that answers is left alone under load; a hung probe fails
//! at the interval; the crash-loop guard counts these revivals as any other. Real processes,
//! real signals; every wait is a poll with a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::testenv::{TestEnv, alive, free_port, http_get, wait_for};

/// A threaded HTTP service on `port`: `GET /freeze` answers, then stops the whole process
/// with SIGSTOP (alive, its port open, no more answers); anything else answers 200.
fn freezable_service(env: &TestEnv, port: u16, keys: &str) {
    env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport os, signal\n\
         from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n\
         class H(BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
                 self.send_response(200)\n        self.end_headers()\n        \
                 self.wfile.write(b'ok')\n        self.wfile.flush()\n        \
                 if self.path == '/freeze':\n            \
                     self.connection.close()\n            \
                     os.kill(os.getpid(), signal.SIGSTOP)\n    \
             def log_message(self, *a):\n        pass\n\
         ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
    );
    env.config(&format!(
        "entry = \"svc.py\"\nstart_timeout = \"10s\"\nstop_timeout = \"2s\"\n\
         ready = \"http://127.0.0.1:{port}/\"\n{keys}\n[env]\nPORT = \"{port}\"\n\n\
         [restart_limit]\nburst = 1000\nbackoff = \"0s\"\n"
    ));
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// The freezable service on a free port (returned), its page probed every second, three
/// failures in a row making it unhealthy.
fn probed_every_second(env: &TestEnv) -> u16 {
    let port = free_port();
    freezable_service(
        env,
        port,
        &format!(
            "health = \"http://127.0.0.1:{port}/\"\nhealth_interval = \"1s\"\nhealth_failures = 3\n"
        ),
    );
    port
}

/// Sends `GET path` and reads what comes back (the freeze answers before it stops).
fn get(port: u16, path: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.contains("200"), "{answer:?}");
}

/// The running pid other than `old`, with its port answering.
fn revived(env: &TestEnv, old: i32, port: u16) -> Option<i32> {
    let value = env.status_json();
    let pid = value["pid"].as_i64().and_then(|p| i32::try_from(p).ok())?;
    (pid != old && value["state"] == "running" && http_get(port).is_some()).then_some(pid)
}

#[test]
fn a_frozen_service_is_ended_and_revived_within_5s_with_one_unhealthy_event() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = probed_every_second(&env);
    let old = env.keepup(&["start"]).expect(0).pid();
    get(port, "/freeze");
    let frozen = Instant::now();
    // Stopped, or already ended by the watcher (a loaded machine may look late).
    wait_for("the service to stop itself", || {
        crate::testenv::state(old).is_none_or(|s| s == 'T')
    });
    let mut new = None;
    wait_for("the revival", || {
        new = revived(&env, old, port);
        new.is_some()
    });
    let took = frozen.elapsed();
    assert!(took < Duration::from_secs(5), "revived after {took:?}");
    assert!(!alive(old), "the frozen instance {old} still runs");
    let history = env.events_json();
    let unhealthy: Vec<&Value> = history
        .iter()
        .filter(|e| e["event"] == "unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "{history:#?}");
    assert_eq!(unhealthy[0]["by"], "watcher");
    let detail = unhealthy[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("3 health checks in a row")
            && detail.contains("GET /: no answer within 1s"),
        "{detail}"
    );
    wait_for("the revive event", || {
        env.events_json().iter().any(|e| {
            e["event"] == "revive"
                && e["outcome"] == "ok"
                && e["pid"].as_i64() == new.map(i64::from)
        })
    });
    env.keepup(&["stop"]).expect(0);
    eprintln!("frozen service revived after {took:?}");
}

/// Sixty seconds of a healthy service under a steady load: the observation itself.
#[test]
fn a_healthy_service_under_load_is_never_restarted() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = probed_every_second(&env);
    let pid = env.keepup(&["start"]).expect(0).pid();
    let until = Instant::now() + Duration::from_secs(60);
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut answered = 0_u32;
                while Instant::now() < until {
                    if http_get(port).is_some() {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let answered: u32 = loaders.into_iter().map(|l| l.join().unwrap()).sum();
    assert!(answered > 100, "only {answered} requests answered");
    let history = env.events_json();
    assert_eq!(count(&history, "unhealthy"), 0, "{history:#?}");
    assert_eq!(count(&history, "revive"), 0, "{history:#?}");
    assert_eq!(count(&history, "exit"), 0, "{history:#?}");
    let value = env.status_json();
    assert_eq!(value["pid"].as_i64(), Some(i64::from(pid)), "{value}");
    let health = std::fs::read_to_string(env.path("svc.py.health")).unwrap();
    assert!(health.contains("\"ok\":true"), "{health}");
    eprintln!("{answered} requests answered in 60 s under health checks every second");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn a_hung_probe_fails_at_the_interval() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nhealth = \"cmd:sleep 600\"\n\
         health_interval = \"500ms\"\nhealth_failures = 2\n\n[restart_limit]\nburst = 1000\n",
    );
    let old = env.keepup(&["start"]).expect(0).pid();
    let began = Instant::now();
    wait_for("the unhealthy event", || {
        count(&env.events_json(), "unhealthy") == 1
    });
    // Two probes of half a second each, after the first interval: not 600 s.
    let took = began.elapsed();
    assert!(took < Duration::from_secs(5), "unhealthy after {took:?}");
    let history = env.events_json();
    let detail = history
        .iter()
        .find(|e| e["event"] == "unhealthy")
        .and_then(|e| e["detail"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("sleep took longer than 500ms"), "{detail}");
    wait_for("the revival", || env.runs_other_than(old));
    // No probe is left behind: each hung one was ended at its interval.
    let sleeps = env
        .own_processes()
        .into_iter()
        .filter(|p| {
            crate::testenv::cmdline(*p)
                .first()
                .is_some_and(|w| w == "sleep")
        })
        .count();
    assert!(sleeps <= 1, "{sleeps} probes still run");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn unhealthy_revivals_trip_the_crash_loop_guard() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nhealth = \"cmd:false\"\n\
         health_interval = \"200ms\"\nhealth_failures = 1\n\n\
         [restart_limit]\nburst = 2\nbackoff = \"0s\"\ninterval = \"1h\"\ncooldown = \"1h\"\n",
    );
    env.keepup(&["start"]).expect(0);
    wait_for("the guard to trip", || {
        count(&env.events_json(), "guard_trip") == 1
    });
    let history = env.events_json();
    assert_eq!(count(&history, "revive"), 2, "{history:#?}");
    assert_eq!(count(&history, "unhealthy"), 3, "{history:#?}");
    // Tripped: nothing runs, and nothing is probed.
    assert_eq!(env.status_json()["state"], "dead");
    env.keepup(&["stop"]).expect(0);
}

/// A service whose worker grows to 80 MiB past a `max_memory` of 50 MiB, checked every second:
/// restarted, worker and all, within two checks of passing the ceiling.
#[test]
fn a_service_that_grows_past_max_memory_is_restarted_with_its_workers() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport os, time\n\
         if os.fork() == 0:\n    data = []\n    for _ in range(16):\n        \
             data.append(bytearray(b'\\x01') * (5 << 20))\n    \
             open('big-%d' % os.getpid(), 'w').close()\n    \
             while True:\n        time.sleep(1)\n\
         while True:\n    time.sleep(1)\n",
    );
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nmax_memory = \"50MB\"\n\
         health_interval = \"1s\"\n\n[restart_limit]\nburst = 1000\nbackoff = \"0s\"\n",
    );
    let old = env.keepup(&["start"]).expect(0).pid();
    let mut marker = None;
    wait_for("the worker to grow", || {
        marker = std::fs::read_dir(&env.root)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("big-"))
            .map(|e| e.path());
        marker.is_some()
    });
    let marker = marker.unwrap();
    let worker: i32 = marker
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let grown = std::fs::metadata(&marker).unwrap().modified().unwrap();
    let mut event = None;
    wait_for("the memory event", || {
        event = env
            .events_json()
            .into_iter()
            .find(|e| e["event"] == "memory");
        event.is_some()
    });
    let event = event.unwrap();
    assert_eq!(event["pid"].as_i64(), Some(i64::from(old)), "{event}");
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("MiB PSS, above max_memory (50.0 MiB) at 2 checks in a row"),
        "{detail}"
    );
    let at = humantime::parse_rfc3339_weak(event["time"].as_str().unwrap()).unwrap();
    let took = at.duration_since(grown).unwrap_or_default();
    // Two checks a second apart, and a second's slack for a loaded machine.
    assert!(
        took < Duration::from_secs(3),
        "restarted {took:?} after it grew past max_memory"
    );
    wait_for("the revival", || env.runs_other_than(old));
    assert!(!alive(old), "the old instance {old} still runs");
    assert!(!alive(worker), "its worker {worker} still runs");
    // Gracefully: stop_signal (TERM), not SIGKILL.
    let exit = env.exit_of(old);
    assert!(exit.contains("SIGTERM"), "{exit}");
    env.keepup(&["stop"]).expect(0);
    eprintln!("restarted {took:?} after it grew past max_memory");
}

/// status, status --json and list show the last probe's result and when.
#[test]
fn status_and_list_show_the_last_probe() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    let config = env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nhealth = \"cmd:true\"\n\
         health_interval = \"300ms\"\n",
    );
    let pid = env.keepup(&["start"]).expect(0).pid();
    wait_for("a probe", || {
        env.status_json()["health"]["probe"]["ok"] == true
    });
    let value = env.status_json();
    assert_eq!(
        value["health"]["pid"].as_i64(),
        Some(i64::from(pid)),
        "{value}"
    );
    assert!(value["health"]["probe"]["at"].is_string(), "{value}");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("health:   ok at ");
    let list = env.keepup_with(&config, &["list"]);
    let header = list.stdout.lines().next().unwrap_or_default().to_owned();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("svc.py"))
        .unwrap_or_default()
        .to_owned();
    let column = header.find("HEALTH").expect("no HEALTH column");
    assert!(row[column..].starts_with("ok "), "{header}\n{row}");
    env.keepup(&["stop"]).expect(0);
}
