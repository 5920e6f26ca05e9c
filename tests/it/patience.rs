//! Patient revivals, at default settings: a crash after a healthy run is revived at once; a
//! cause that blocks revivals for 30 s is outlived; keepup's own failures (a fork refused)
//! are never the service's crashes; a history that cannot be written limits revivals all the
//! same; `status` and `restart` judge the guard alike. Real processes, ports and limits.

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::testenv::{TestEnv, TestUser, free_port, sigkill, wait_for};

fn status(env: &TestEnv) -> Value {
    let run = env.keepup(&["status", "--json"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

fn running_pid(env: &TestEnv) -> Option<i64> {
    let value = status(env);
    (value["state"] == "running")
        .then(|| value["pid"].as_i64())
        .flatten()
}

/// The history after the last `start`, as `event by outcome` words.
fn since_start(env: &TestEnv) -> Vec<Value> {
    let run = env.keepup(&["events", "--json", "-n", "10000"]);
    let all: Vec<Value> =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"));
    let from = all.iter().rposition(|e| e["event"] == "start").unwrap_or(0);
    all[from + 1..].to_vec()
}

fn at(event: &Value) -> SystemTime {
    humantime::parse_rfc3339(event["time"].as_str().unwrap()).unwrap()
}

/// Waits until the service runs as another pid than `old`; returns the new one.
#[track_caller]
fn await_new_instance(env: &TestEnv, old: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(pid) = running_pid(env).filter(|p| *p != old) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "not back within {within:?}: {:#?}",
            since_start(env)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cause has just ended: the service runs again within 10 s, by itself.
#[track_caller]
fn back_within_ten_seconds(env: &TestEnv, old: i64, cause: &str) {
    let freed = Instant::now();
    await_new_instance(env, old, Duration::from_secs(12));
    let back = freed.elapsed();
    eprintln!("back {back:?} after {cause}");
    assert!(
        back < Duration::from_secs(10),
        "back {back:?} after {cause}"
    );
}

#[test]
fn a_crash_after_a_healthy_run_is_revived_at_once_at_default_settings() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    let pid = i64::from(env.keepup(&["start"]).expect(0).pid());
    // A healthy run is one of backoff_max (10 s) or more: the scenario, not a wait for an event.
    std::thread::sleep(Duration::from_millis(10_500));
    let killed = Instant::now();
    sigkill(i32::try_from(pid).unwrap());
    await_new_instance(&env, pid, Duration::from_secs(1));
    let took = killed.elapsed();
    eprintln!("revived after a healthy run in {took:?}");
    wait_for("the revival to be confirmed", || {
        since_start(&env)
            .iter()
            .any(|e| e["event"] == "revive" && e["outcome"] == "ok")
    });
    env.keepup(&["stop"]).expect(0);
}

/// The port the service listens on is held by someone else for 30 s after a crash: every
/// launch meanwhile dies at once. Before, the guard spent its revivals in milliseconds and the
/// service stayed down ten minutes; now it is back within 10 s of the port coming free.
#[test]
fn a_port_held_for_thirty_seconds_is_outlived_at_default_settings() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport socket, sys, time\n\
         port = int(open('port').read())\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         try:\n    s.bind(('127.0.0.1', port))\nexcept OSError as e:\n    print(e, flush=True)\n    sys.exit(1)\n\
         s.listen()\nprint('listening on', port, flush=True)\n\
         while True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"svc.py\"\n");
    env.write("port", &free_port().to_string());
    let pid = i64::from(env.keepup(&["start"]).expect(0).pid());

    let holder = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    env.write("port", &holder.local_addr().unwrap().port().to_string());
    sigkill(i32::try_from(pid).unwrap());
    // The cause lasts 30 s: the scenario itself.
    std::thread::sleep(Duration::from_secs(30));
    let failed_while_held = since_start(&env);
    drop(holder);
    back_within_ten_seconds(&env, pid, "the port came free");

    let tries: Vec<&Value> = failed_while_held
        .iter()
        .filter(|e| e["event"] == "revive")
        .collect();
    assert!(
        failed_while_held.iter().all(|e| e["event"] != "guard_trip"),
        "{failed_while_held:#?}"
    );
    // 1, 2, 4, 8, 10, 10 s apart: 6 or 7 tries in 30 s, not hundreds.
    assert!(
        (4..=8).contains(&tries.len()),
        "{} tries: {failed_while_held:#?}",
        tries.len()
    );
    for pair in tries.windows(2) {
        let gap = at(pair[1]).duration_since(at(pair[0])).unwrap();
        assert!(gap >= Duration::from_millis(900), "{gap:?}: {tries:#?}");
    }
    assert_eq!(status(&env)["guard"]["state"], "ok");
    env.keepup(&["stop"]).expect(0);
}

/// Processes of `user` that take up her process slots until dropped (killed and reaped: a
/// zombie still holds its slot).
struct Slots(Vec<std::process::Child>);

impl Slots {
    fn take(env: &TestEnv, user: &TestUser, count: usize) -> Slots {
        Slots(
            (0..count)
                .map(|_| {
                    env.command(std::path::Path::new("setpriv"))
                        .arg(format!("--reuid={}", user.uid))
                        .arg(format!("--regid={}", user.gid))
                        .arg("--init-groups")
                        .args(["sleep", "100000"])
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The user the service runs as is out of process slots (`RLIMIT_NPROC`) for 20 s after a
/// crash, so the watcher cannot fork: keepup's own trouble, recorded as `not_launched`, tried
/// again 1, 2, 4, 8 … 10 s apart, never counted; back within 10 s of the slots coming free.
/// Before, each refused fork was a failed revival: the guard tripped in milliseconds.
#[test]
fn a_fork_refused_is_keepups_failure_and_never_trips_the_guard() {
    require!("python3", "python3");
    // Root is not held to RLIMIT_NPROC: the service and its watcher run as a user of their own.
    let Some(alice) = TestUser::new() else {
        return;
    };
    let env = TestEnv::new();
    env.script(
        "app/svc.py",
        "#!/usr/bin/python3\nimport time\nwhile True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"app/svc.py\"\n");
    alice.give(&env.root);
    // She may have 5 processes: the watcher inherits the limit from the start.
    // Only the soft limit: the hard one may not be raised again without CAP_SYS_RESOURCE.
    let started = env
        .command(std::path::Path::new("bash"))
        .args(["-c", "ulimit -Su 5 && exec \"$@\"", "bash"])
        .arg(env!("CARGO_BIN_EXE_keepup"))
        .arg("--config")
        .arg(env.path("cfg.toml"))
        .arg("start")
        .output()
        .unwrap();
    let pid = i64::from(crate::testenv::Run::from_output(&started).expect(0).pid());
    // Watcher, service and these four: once the service dies, her five slots are taken.
    let slots = Slots::take(&env, &alice, 4);
    sigkill(i32::try_from(pid).unwrap());
    wait_for("a launch refused", || {
        since_start(&env)
            .iter()
            .any(|e| e["event"] == "revive" && e["outcome"] == "not_launched")
    });
    // 20 s out of process slots: the scenario itself.
    std::thread::sleep(Duration::from_secs(20));
    let refused = since_start(&env);
    drop(slots);
    back_within_ten_seconds(&env, pid, "the process slots came free");

    let tries = refused
        .iter()
        .filter(|e| e["event"] == "revive" && e["outcome"] == "not_launched")
        .count();
    assert!((3..=7).contains(&tries), "{tries} tries: {refused:#?}");
    // Each try was keepup's failure, never the service's (the one `exit` is the crash itself).
    assert!(
        refused.iter().all(|e| e["event"] != "guard_trip"
            && (e["event"] != "revive" || e["outcome"] == "not_launched")),
        "{refused:#?}"
    );
    assert_eq!(status(&env)["guard"]["state"], "ok");
    alice.keepup(&env, &["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

/// `<name>.events` replaced by a directory: nothing can be recorded. The guard still limits a
/// crash loop (before: thousands of revivals a second), and says so once.
#[test]
fn without_a_history_revivals_are_limited_all_the_same() {
    let env = TestEnv::new();
    env.script(
        "svc.sh",
        "#!/bin/sh\ntest -e ok && exec sleep 100000\necho launched >>launches\nexit 1\n",
    );
    env.config("entry = \"svc.sh\"\nstart_timeout = \"1s\"\n");
    env.write("ok", "");
    let pid = env.keepup(&["start"]).expect(0).pid();
    std::fs::remove_file(env.path("ok")).unwrap();
    std::fs::remove_file(env.path("svc.sh.events")).unwrap();
    std::fs::create_dir(env.path("svc.sh.events")).unwrap();
    sigkill(pid);
    let launches = || {
        std::fs::read_to_string(env.path("launches"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("the first revival", || launches() >= 1);
    // 15 s of a crash loop: the scenario itself. Backing off 1, 2, 4, 8 s: 4 or 5 launches.
    std::thread::sleep(Duration::from_secs(15));
    let count = launches();
    assert!((3..=6).contains(&count), "{count} launches in 15 s");
    let timer_log = std::fs::read_to_string(env.path("svc.sh.timer.log")).unwrap();
    let said = timer_log.matches("counts revivals in memory").count();
    assert_eq!(said, 1, "{timer_log}");
    env.keepup(&["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

/// A trip recorded while the clock ran an hour ahead: `restart` refuses to revive, and
/// `status` says tripped, not ok (before, the two disagreed).
#[test]
fn status_and_restart_judge_a_trip_from_the_future_alike() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nwatch = false\n");
    // Kept up, not running.
    env.write("svc.py.pid", "4194000\n");
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let line = |time: SystemTime, event: &str| {
        format!(
            "{{\"time\":\"{}\",\"event\":\"{event}\",\"pid\":null,\"by\":\"timer\",\"outcome\":\"ok\"}}\n",
            humantime::format_rfc3339_millis(time)
        )
    };
    env.write(
        "svc.py.events",
        &[line(now - hour, "start"), line(now + hour, "guard_trip")].concat(),
    );
    let judged = status(&env);
    assert_eq!(judged["guard"]["state"], "tripped", "{judged:#}");
    env.keepup(&["status"]).stdout_has("guard:    tripped");
    env.keepup(&["restart"])
        .expect(1)
        .stderr_has("crash-loop guard");
}

/// The state folder's disk is full for 20 s after a crash: keepup cannot write the new
/// instance's record, so it may not run it (never running untracked). That is keepup's own
/// trouble: tried again 1, 2, 4, 8 … 10 s apart at next to no cost, never counted, and the
/// service is back within 10 s of the space coming free. Before, each try was a failed
/// revival: five in 5 ms, then the guard held the service down for ten minutes.
#[test]
fn a_full_disk_is_outlived_at_next_to_no_cost() {
    require!("python3", "python3");
    if !nix::unistd::geteuid().is_root() {
        crate::testenv::skip("needs root to mount a small tmpfs in a private mount namespace");
        return;
    }
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    std::fs::create_dir(env.path("disk")).unwrap();
    env.config("entry = \"svc.py\"\nstate_dir = \"disk\"\n");
    // In a mount namespace of its own (the watcher inherits it), the state folder is a small
    // disk; the script reports the watcher's CPU ticks over the 20 s and how long after the
    // space came free the service ran again.
    let script = r#"
        set -e
        mount -t tmpfs -o size=512k,mode=0755 tmpfs disk
        k() { "$KEEPUP" --config cfg.toml "$@"; }
        k start >/dev/null
        old=$(cat disk/svc.py.pid)
        watcher=$(k status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["watcher"]["pid"])')
        dd if=/dev/zero of=disk/filler bs=4096 2>/dev/null || true
        ticks() { awk '{print $14 + $15}' "/proc/$watcher/stat"; }
        before=$(ticks)
        kill -9 "$old"
        sleep 20
        after=$(ticks)
        rm disk/filler
        freed=$(date +%s%N)
        back=
        for _ in $(seq 1 400); do
            if k status >/dev/null && [ "$(cat disk/svc.py.pid)" != "$old" ]; then
                back=$(( ($(date +%s%N) - freed) / 1000000 )); break
            fi
            sleep 0.05
        done
        echo "TICKS $((after - before))"
        echo "BACK_MS ${back:-never}"
        k events
        k stop >/dev/null
    "#;
    let output = env
        .command(std::path::Path::new("unshare"))
        .args(["--mount", "--propagation", "private", "bash", "-c", script])
        .env("KEEPUP", env!("CARGO_BIN_EXE_keepup"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:#?}");
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .and_then(|v| v.parse::<u64>().ok())
    };
    let back = value("BACK_MS ").unwrap_or_else(|| panic!("never back:\n{out}"));
    let ticks = value("TICKS ").unwrap();
    eprintln!("back {back} ms after the space came free; the watcher spent {ticks} ticks");
    assert!(back < 10_000, "back {back} ms after:\n{out}");
    // Clock ticks are 10 ms: 30 of them is 0.3 s of CPU in 20 s.
    assert!(ticks <= 30, "the watcher spent {ticks} ticks:\n{out}");
    assert!(!out.contains("guard trip"), "{out}");
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}
