//! Memory and judgement: the event history, the crash-loop guard, readiness, and the log's
//! rotation, on real processes.

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::testenv::{Run, TestEnv, free_port, locked_pid, wait_for};

/// The events as `keepup events --json` gives them: (event, outcome, by).
fn story(env: &TestEnv) -> Vec<(String, String, String)> {
    let run = env.keepup(&["events", "-n", "100", "--json"]);
    run.expect(0);
    let events: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    events
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap().to_owned();
            (field("event"), field("outcome"), field("by"))
        })
        .collect()
}

fn said(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

#[test]
fn crash_loop_guard_trips_cools_down_retries_once_and_start_clears_it() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // Runs only while the file `ok` exists; otherwise exits at once.
    let entry = env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport os, sys, time\nif not os.path.exists('ok'):\n    \
         print('no ok file', flush=True)\n    sys.exit(1)\nwhile True:\n    time.sleep(1)\n",
    );
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"3s\"\nwatch = false\n\n[restart_limit]\nburst = 3\ninterval = \"1h\"\ncooldown = \"3s\"\nbackoff = \"0s\"\n",
    );
    env.write("ok", "");
    env.keepup(&["start"]).expect(0);
    std::fs::remove_file(env.path("ok")).unwrap();
    env.keepup(&["kill"]).expect(0);

    // As the timer would, minute after minute: exactly `burst` revivals...
    for _ in 0..3 {
        env.keepup(&["restart", "--timer"])
            .expect(1)
            .stderr_has("exited at once with code 1");
    }
    // ...then the guard trips, says so once and when it will try again...
    let trip = env.keepup(&["restart", "--timer"]);
    trip.expect(1)
        .stderr_has("crash-loop guard")
        .stderr_has("revived 3 times within 1h");
    let quiet = env.keepup(&["restart", "--timer"]);
    assert_eq!(
        said(quiet.expect(1)),
        "",
        "a blocked timer run repeats itself"
    );
    env.keepup(&["restart"]).expect(1).stderr_has("next try at");
    env.keepup(&["status"])
        .expect(1)
        .stdout_has("guard:    tripped")
        .stdout_has("3 revivals in the last 24 h");
    assert!(env.instances(&entry).is_empty());

    // ...not before the cool-down, then once...
    let tripped_at = Instant::now();
    wait_for("the one revival after the cool-down", || {
        said(&env.keepup(&["restart", "--timer"])).contains("failed to start")
    });
    assert!(
        tripped_at.elapsed() >= Duration::from_secs(2),
        "revived before the cool-down"
    );
    // ...and since that one did not hold, it trips again.
    env.keepup(&["restart", "--timer"])
        .expect(1)
        .stderr_has("crash-loop guard");
    assert_eq!(said(env.keepup(&["restart", "--timer"]).expect(1)), "");

    // A manual start clears the guard at once.
    env.write("ok", "");
    let pid = env.keepup(&["start"]).expect(0).stdout_has("started").pid();
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("guard:    ok")
        .stdout_has("4 revivals in the last 24 h");
    assert_eq!(env.keepup(&["restart", "--timer"]).expect(0).stdout, "");
    assert_eq!(env.instances(&entry), [pid]);

    let expected: Vec<(&str, &str, &str)> = vec![
        ("start", "ok", "user"),
        ("kill", "ok", "user"),
        ("revive", "failed", "timer"),
        ("revive", "failed", "timer"),
        ("revive", "failed", "timer"),
        ("guard_trip", "ok", "timer"),
        ("revive", "failed", "timer"),
        ("guard_trip", "ok", "timer"),
        ("start", "ok", "user"),
    ];
    let got = story(&env);
    let got: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, expected);
    let text = env.keepup(&["events", "-n", "2"]);
    let lines: Vec<&str> = text.expect(0).stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("guard trip") && lines[1].contains("start"),
        "{lines:?}"
    );
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn concurrent_invocations_lose_and_interleave_no_event() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    let children: Vec<_> = (0..16)
        .map(|i| env.keepup_spawn(&[if i % 2 == 0 { "kill" } else { "stop" }]))
        .collect();
    for child in children {
        Run::from_output(&child.wait_with_output().unwrap()).expect(0);
    }
    let text = std::fs::read_to_string(env.path("svc.py.events")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16, "{text}");
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(event["outcome"], "not_running");
        assert_eq!(event["by"], "user");
    }
    let kinds = story(&env);
    assert_eq!(kinds.iter().filter(|(k, _, _)| k == "kill").count(), 8);
    assert_eq!(kinds.iter().filter(|(k, _, _)| k == "stop").count(), 8);
}

/// A service that listens on `port` after `delay` seconds (never, if `None`).
fn late_listener(env: &TestEnv, port: u16, delay: Option<f64>, ready: &str, timeout: &str) {
    let prelude = match delay {
        Some(delay) => format!(
            "import socket\ntime.sleep({delay})\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port}))\ns.listen(16)\nprint('listening', flush=True)"
        ),
        None => String::new(),
    };
    env.python_service("svc.py", &prelude);
    env.config(&format!(
        "entry = \"svc.py\"\nready = \"{ready}\"\nstart_timeout = \"{timeout}\"\n"
    ));
}

#[test]
fn start_waits_for_a_service_that_binds_late() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = free_port();
    late_listener(
        &env,
        port,
        Some(1.0),
        &format!("tcp:127.0.0.1:{port}"),
        "15s",
    );
    let began = Instant::now();
    env.keepup(&["start"]).expect(0).stdout_has("started");
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "started before it bound"
    );
    // Ready means listening, now, without waiting.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("started but not listening");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn ready_command_decides_too() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "time.sleep(0.5)\nopen('ready-flag', 'w').close()");
    env.config("entry = \"svc.py\"\nready = \"cmd:test -e {dir}/ready-flag\"\n");
    env.keepup(&["start"]).expect(0);
    assert!(
        env.path("ready-flag").exists(),
        "started before the ready command passed"
    );
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn start_fails_for_a_service_that_never_binds() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = free_port();
    late_listener(&env, port, None, &format!("tcp:127.0.0.1:{port}"), "2s");
    let entry = env.path("svc.py");
    let began = Instant::now();
    let start = env.keepup(&["start"]);
    start
        .expect(1)
        .stderr_has("not ready within 2s")
        .stderr_has(&format!("tcp:127.0.0.1:{port}"));
    assert!(began.elapsed() >= Duration::from_secs(2));
    assert_eq!(locked_pid(&entry), None, "a failed start left a lock");
    assert!(
        env.instances(&entry).is_empty(),
        "a failed start left its process"
    );
    assert_eq!(
        story(&env),
        [("start".into(), "failed".into(), "user".into())]
    );
}

/// Numbers of the `line N` lines in `text`, which must follow each other without a gap. The
/// oldest copy may begin with the end of a line cut at a block boundary: that is passed over.
fn assert_consecutive(text: &str) -> usize {
    let lines = text.lines().skip_while(|l| !l.starts_with("line "));
    let numbers: Vec<u64> = lines
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "a line was lost or doubled between {} and {}",
            pair[0],
            pair[1]
        );
    }
    numbers.len()
}

#[test]
fn log_is_rotated_while_the_service_writes_losing_nothing() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service(
        "svc.py",
        "import itertools\nfor i in itertools.count():\n    print(f'line {i:08d}', flush=True)\n    time.sleep(0.0005)",
    );
    env.config("entry = \"svc.py\"\nlog_max_size = \"16KB\"\nlog_keep = 2\n");
    env.keepup(&["start"]).expect(0);
    let log = env.path("svc.py.log");
    for round in 1..=3 {
        wait_for("the log to grow past log_max_size", || {
            std::fs::metadata(&log).is_ok_and(|m| m.len() > 16 * 1024)
        });
        env.keepup(&["restart"]).expect(0).stdout_has("is running");
        assert!(
            env.path("svc.py.log.1").exists(),
            "round {round}: not rotated"
        );
    }
    assert!(env.path("svc.py.log.2").exists());
    assert!(
        !env.path("svc.py.log.3").exists(),
        "log_keep = 2 not honoured"
    );
    // The live log keeps growing with the service's descriptor.
    let size = std::fs::metadata(&log).unwrap().len();
    wait_for("the service to go on writing", || {
        std::fs::metadata(&log).unwrap().len() > size + 100
    });
    env.keepup(&["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());

    let mut all = Vec::new();
    for file in ["svc.py.log.2", "svc.py.log.1", "svc.py.log"] {
        all.extend(std::fs::read(env.path(file)).unwrap());
    }
    let lines = assert_consecutive(&String::from_utf8(all).unwrap());
    assert!(lines > 1000, "{lines}");

    let tail = env.keepup(&["logs", "-n", "3"]);
    let live = std::fs::read_to_string(&log).unwrap();
    let last: Vec<&str> = live
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(tail.expect(0).stdout.lines().collect::<Vec<_>>(), last);
}

#[test]
fn the_timer_log_is_rotated_like_the_service_log() {
    // It was never rotated: an unguarded crash loop wrote 800 KB to it in 20 s.
    let env = TestEnv::new();
    env.script("svc.sh", "#!/bin/sh\nexec sleep 600\n");
    env.config("entry = \"svc.sh\"\nlog_max_size = \"16KB\"\nlog_keep = 2\n");
    let timer_log = env.path("svc.sh.timer.log");
    let before = (0..4000)
        .map(|i| format!("timer line {i:08}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&timer_log, &before).unwrap();
    // Held open for appending across the rotation, as the crontab line's `>>` and the
    // watcher hold it.
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&timer_log)
        .unwrap();
    env.keepup(&["restart"]).expect(0);
    let rotated = std::fs::read_to_string(env.path("svc.sh.timer.log.1")).unwrap();
    let live = std::fs::read_to_string(&timer_log).unwrap();
    assert!(live.len() <= 16 * 1024, "left {} bytes", live.len());
    assert_eq!(format!("{rotated}{live}"), before, "bytes lost or doubled");
    writer.write_all(b"after the rotation\n").unwrap();
    let live = std::fs::read_to_string(&timer_log).unwrap();
    assert!(live.len() <= 16 * 1024, "the writer wrote past a hole");
    assert!(live.ends_with("after the rotation\n"), "{live:?}");
    env.keepup(&["events"])
        .expect(0)
        .stdout_has("the timer's log");
}

#[test]
fn logs_follow_prints_what_is_written_next() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    env.write("svc.py.log", "old line\n");
    let mut follow = env.keepup_spawn(&["logs", "-f", "-n", "1"]);
    let stdout = follow.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let deadline = Duration::from_secs(20);
    assert_eq!(received.recv_timeout(deadline).unwrap(), "old line");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(env.path("svc.py.log"))
        .unwrap();
    writeln!(log, "new line").unwrap();
    assert_eq!(received.recv_timeout(deadline).unwrap(), "new line");
    follow.kill().unwrap();
    follow.wait().unwrap();
}
