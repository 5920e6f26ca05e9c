//! `ready = "notify"` and `watchdog`: a start is done at the service's own `READY=1`, not
//! before, and not at anyone else's; a service that stops pinging is ended and revived. Real
//! processes and a real socket; every wait is a poll with a deadline. (gunicorn's and redis'
//! own notifications: recipes.rs.)

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::testenv::{TestEnv, alive, locked_pid, wait_for};

/// A Python service with `notify(text)` (`sd_notify` by hand) defined before `body` runs.
fn notifying_service(env: &TestEnv, body: &str) {
    env.script(
        "svc.py",
        &format!(
            "#!/usr/bin/env python3\nimport os, socket, time\n\
             def notify(text):\n    \
                 address = os.environ['NOTIFY_SOCKET']\n    \
                 if address.startswith('@'):\n        address = '\\0' + address[1:]\n    \
                 s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n    \
                 s.sendto(text.encode(), address)\n    s.close()\n\
             {body}\nwhile True:\n    time.sleep(1)\n"
        ),
    );
}

#[test]
fn ready_notify_waits_for_the_services_own_ready_1() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // Ready after 2 s; it marks the moment just before it says so.
    notifying_service(
        &env,
        "time.sleep(2)\nopen('saying-ready', 'w').close()\nnotify('READY=1\\nSTATUS=serving requests')",
    );
    env.config("entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"10s\"\n");
    let began = Instant::now();
    let mut start = env.keepup_spawn(&["start"]);
    // Someone else says READY=1 for it, at once: not the service, so not its start.
    let socket = env.path("svc.py.notify");
    wait_for("the notify socket", || socket.exists());
    let outsider = UnixDatagram::unbound().unwrap();
    outsider.send_to(b"READY=1", &socket).unwrap();
    assert!(
        !env.path("saying-ready").exists(),
        "the service said READY=1 before the outsider: the test proves nothing"
    );
    let mut code = None;
    wait_for("start to end", || {
        code = start.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    let took = began.elapsed();
    assert_eq!(code, Some(Some(0)));
    assert!(
        env.path("saying-ready").exists(),
        "start ended before the service said READY=1 (after {took:?})"
    );
    assert!(took >= Duration::from_secs(2), "started after {took:?}");
    let value = env.status_json();
    assert_eq!(value["state"], "running", "{value}");
    assert_eq!(value["health"]["status"], "serving requests", "{value}");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("says:     serving requests");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn a_service_that_never_says_ready_fails_to_start() {
    require!("python3", "python3");
    let env = TestEnv::new();
    notifying_service(&env, "print('up, saying nothing', flush=True)");
    env.config("entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"1s\"\n");
    env.keepup(&["start"])
        .expect(1)
        .stderr_has("sent no READY=1 within 1s");
    // The watcher that launched it leaves once it has answered.
    wait_for("nothing of it left", || env.own_processes().is_empty());
}

#[test]
fn extend_timeout_usec_moves_the_start_deadline() {
    require!("python3", "python3");
    let env = TestEnv::new();
    notifying_service(
        &env,
        "notify('EXTEND_TIMEOUT_USEC=5000000')\ntime.sleep(2)\nnotify('READY=1')",
    );
    env.config("entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"1s\"\n");
    env.keepup(&["start"]).expect(0).stdout_has("started");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn a_notify_service_that_stops_pinging_is_revived_within_4s() {
    require!("python3", "python3");
    let env = TestEnv::new();
    notifying_service(
        &env,
        "open('usec', 'w').write(os.environ.get('WATCHDOG_USEC', ''))\n\
         open('watchdog-pid', 'w').write(os.environ.get('WATCHDOG_PID', '') + ' ' + str(os.getpid()))\n\
         notify('READY=1')\n\
         for _ in range(5):\n    notify('WATCHDOG=1')\n    time.sleep(0.3)\n\
         open('silent-%d' % os.getpid(), 'w').close()",
    );
    env.config(
        "entry = \"svc.py\"\nready = \"notify\"\nwatchdog = \"2s\"\nstart_timeout = \"5s\"\n\
         stop_timeout = \"2s\"\n\n[restart_limit]\nburst = 1000\nbackoff = \"0s\"\n",
    );
    let old = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(
        std::fs::read_to_string(env.path("usec")).unwrap(),
        "2000000"
    );
    // WATCHDOG_PID is its own pid (sd_watchdog_enabled() checks it).
    let (said, own) = std::fs::read_to_string(env.path("watchdog-pid"))
        .unwrap()
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    assert_eq!(said, own);
    assert_eq!(own, old.to_string());
    // status shows the pings as they come.
    wait_for("status to show a ping", || {
        env.status_json()["health"]["watchdog_at"].is_string()
    });
    let silent = env.path(&format!("silent-{old}"));
    wait_for("the service to fall silent", || silent.exists());
    let since = Instant::now();
    wait_for("the revival", || env.runs_other_than(old));
    let took = since.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "revived {took:?} after its last ping"
    );
    let history = env.events_json();
    let unhealthy = history
        .iter()
        .find(|e| e["event"] == "unhealthy")
        .unwrap_or_else(|| panic!("{history:#?}"));
    assert_eq!(unhealthy["pid"].as_i64(), Some(i64::from(old)));
    let detail = unhealthy["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("no WATCHDOG=1 for 2s"), "{detail}");
    let exit = env.exit_of(old);
    assert!(exit.contains("SIGABRT"), "{exit}");
    env.keepup(&["stop"]).expect(0);
    eprintln!("revived {took:?} after its last ping");
}

#[test]
fn watchdog_trigger_ends_it_at_once() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // Pings, then asks to be ended; a new instance (no 'triggered' file yet) does likewise.
    notifying_service(
        &env,
        "notify('READY=1')\nif not os.path.exists('triggered'):\n    \
         open('triggered', 'w').close()\n    time.sleep(0.5)\n    notify('WATCHDOG=trigger')",
    );
    env.config(
        "entry = \"svc.py\"\nready = \"notify\"\nwatchdog = \"1h\"\nstart_timeout = \"5s\"\n\
         stop_timeout = \"2s\"\n\n[restart_limit]\nburst = 1000\nbackoff = \"0s\"\n",
    );
    let old = env.keepup(&["start"]).expect(0).pid();
    wait_for("the revival", || env.runs_other_than(old));
    let history = env.events_json();
    let detail = history
        .iter()
        .find(|e| e["event"] == "unhealthy")
        .and_then(|e| e["detail"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("WATCHDOG=trigger"), "{history:#?}");
    env.keepup(&["stop"]).expect(0);
}

/// `STOPPING=1` marks the coming exit as intended: the `exit` event is no failure, whatever
/// the code, and says why; the service is revived all the same (its pid lock is there).
#[test]
fn an_exit_after_stopping_1_is_recorded_as_intended() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // The first instance says STOPPING=1 and exits with code 3 once asked (a file); the next
    // one stays.
    notifying_service(
        &env,
        "notify('READY=1')\n\
         if not os.path.exists('stopped-once'):\n    \
             while not os.path.exists('please-stop'):\n        time.sleep(0.05)\n    \
             open('stopped-once', 'w').close()\n    \
             notify('STOPPING=1')\n    os._exit(3)",
    );
    env.config("entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"10s\"\n");
    let first = env.keepup(&["start"]).expect(0).pid();
    env.write("please-stop", "");
    let mut exit = None;
    wait_for("the exit event of the first instance", || {
        exit = env
            .events_json()
            .into_iter()
            .find(|e| e["event"] == "exit" && e["pid"] == first);
        exit.is_some()
    });
    let exit = exit.unwrap();
    assert_eq!(exit["outcome"], "ok", "{exit}");
    assert!(
        exit["detail"]
            .as_str()
            .is_some_and(|d| d.contains("exited with code 3 after it said STOPPING=1")),
        "{exit}"
    );
    wait_for("the revival", || {
        env.events_json()
            .iter()
            .any(|e| e["event"] == "revive" && e["outcome"] == "ok")
    });
    env.keepup(&["stop"]).expect(0);
}

/// The pid a service wrote to `file` (in the test's folder), once it has.
fn written_pid(env: &TestEnv, file: &str) -> i32 {
    let path = env.path(file);
    let mut pid = None;
    wait_for(file, || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

/// Events of `kind` in the history.
fn events_of(env: &TestEnv, kind: &str) -> Vec<serde_json::Value> {
    env.events_json()
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// `stop` ends the process `pid` that runs as the service, and nothing of it is left.
fn stop_ends(env: &TestEnv, pid: i32) {
    env.keepup(&["stop"])
        .expect(0)
        .stdout_has(&format!("({pid}) stopped"));
    wait_for("the main process to end", || !alive(pid));
    wait_for("nothing of it left", || env.own_processes().is_empty());
}

/// A service that hands over during its start (the classic daemon: the first process forks,
/// its child says `MAINPID=<own pid>` and `READY=1`, the first exits 0): the child is the
/// service. Before, keepup took the first process's exit for the service's end.
#[test]
fn mainpid_from_a_forked_child_makes_it_the_service() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // The first process leaves only once its child has said both, as a daemon's parent does.
    notifying_service(
        &env,
        "open('first-pid', 'w').write(str(os.getpid()))\n\
         r, w = os.pipe()\n\
         if os.fork() == 0:\n    \
             notify('MAINPID=%d' % os.getpid())\n    \
             notify('READY=1\\nSTATUS=the child serves')\n    \
             open('child-pid', 'w').write(str(os.getpid()))\n    \
             os.write(w, b'x')\n\
         else:\n    \
             os.read(r, 1)\n    os._exit(0)",
    );
    let entry = env.path("svc.py");
    env.config(
        "entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"5s\"\nstop_timeout = \"2s\"\n",
    );
    let started = env.keepup(&["start"]).expect(0).pid();
    let first = written_pid(&env, "first-pid");
    let child = written_pid(&env, "child-pid");
    assert_ne!(first, child);
    assert_eq!(started, child, "start names the process that said MAINPID=");
    wait_for("the first process to be gone", || !alive(first));
    let value = env.status_json();
    assert_eq!(value["state"], "running", "{value}");
    assert_eq!(value["pid"].as_i64(), Some(i64::from(child)), "{value}");
    assert_eq!(value["health"]["status"], "the child serves", "{value}");
    assert_eq!(locked_pid(&entry), Some(child));
    assert_eq!(env.instances(&entry), [child]);
    let history = env.events_json();
    assert_eq!(events_of(&env, "start").len(), 1, "{history:#?}");
    assert!(events_of(&env, "revive").is_empty(), "{history:#?}");
    stop_ends(&env, child);
}

/// A service that hands over once it runs (its main process forks a successor, which says
/// `MAINPID=`, and leaves): the watcher follows the successor, as the pid lock does, and the
/// history says so; the first one's exit is no crash.
#[test]
fn mainpid_after_the_start_moves_the_service_to_its_successor() {
    require!("python3", "python3");
    let env = TestEnv::new();
    notifying_service(
        &env,
        "notify('READY=1')\n\
         open('first-pid', 'w').write(str(os.getpid()))\n\
         while not os.path.exists('hand-over'):\n    time.sleep(0.05)\n\
         r, w = os.pipe()\n\
         if os.fork() == 0:\n    \
             notify('MAINPID=%d' % os.getpid())\n    \
             open('child-pid', 'w').write(str(os.getpid()))\n    \
             os.write(w, b'x')\n\
         else:\n    \
             os.read(r, 1)\n    os._exit(0)",
    );
    let entry = env.path("svc.py");
    env.config(
        "entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"5s\"\nstop_timeout = \"2s\"\n",
    );
    let first = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(written_pid(&env, "first-pid"), first);
    env.write("hand-over", "");
    let child = written_pid(&env, "child-pid");
    wait_for("the pid lock to name the successor", || {
        locked_pid(&entry) == Some(child)
    });
    wait_for("the first process to be gone", || !alive(first));
    wait_for("status to show the successor", || {
        env.status_json()["pid"].as_i64() == Some(i64::from(child))
    });
    assert_eq!(env.status_json()["state"], "running");
    let history = env.events_json();
    let moved = events_of(&env, "pid_change");
    assert_eq!(moved.len(), 1, "{history:#?}");
    assert_eq!(
        moved[0]["pid"].as_i64(),
        Some(i64::from(child)),
        "{history:#?}"
    );
    let detail = moved[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("MAINPID={child}")), "{detail}");
    assert!(events_of(&env, "revive").is_empty(), "{history:#?}");
    assert_eq!(events_of(&env, "start").len(), 1, "{history:#?}");
    assert_eq!(env.instances(&entry), [child]);
    stop_ends(&env, child);
}

/// `MAINPID=` naming a process that is not the service's (here: the test itself) is refused,
/// and said: keepup would otherwise stop, and revive on the end of, a stranger.
#[test]
fn mainpid_naming_a_process_outside_the_service_is_ignored() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.write("outsider", &std::process::id().to_string());
    notifying_service(
        &env,
        "notify('MAINPID=%s\\nREADY=1' % open('outsider').read())",
    );
    let entry = env.path("svc.py");
    env.config("entry = \"svc.py\"\nready = \"notify\"\nstart_timeout = \"5s\"\n");
    let run = env.keepup(&["start"]);
    run.expect(0).stderr_has(&format!(
        "ignored MAINPID={}: not a process of svc.py",
        std::process::id()
    ));
    let started = run.pid();
    assert_eq!(locked_pid(&entry), Some(started));
    let value = env.status_json();
    assert_eq!(value["pid"].as_i64(), Some(i64::from(started)), "{value}");
    assert!(events_of(&env, "pid_change").is_empty());
    stop_ends(&env, started);
}
