//! The watcher: a crash is revived at once; the watcher itself is revived by the timer; `stop`
//! ends both and nothing comes back; concurrent verbs leave one of each; a crash loop costs it
//! next to nothing; idle, it never wakes. Real processes and signals; every wait is a poll with
//! a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::testenv::{
    Run, TestEnv, alive, cmdline, group_of, install_program, locked_pid, sigkill, wait_for,
};

/// A Python service that counts for one process; confirmed after 300 ms (its settle), and a
/// guard that lets it be revived, at once, as often as the test kills it.
fn service(env: &TestEnv) -> PathBuf {
    let entry = env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\n\n[restart_limit]\nburst = 1000\nbackoff = \"0s\"\n",
    );
    entry
}

fn status(env: &TestEnv) -> Value {
    let run = env.keepup(&["status", "--json"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

fn pid_of(value: &Value) -> Option<i32> {
    value.as_i64().and_then(|p| i32::try_from(p).ok())
}

fn events(env: &TestEnv) -> Vec<Value> {
    let run = env.keepup(&["events", "--json", "-n", "10000"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// Whether the history has a `revive` of `pid` by the watcher, with `outcome`.
fn revived_by_watcher(env: &TestEnv, pid: i32) -> bool {
    events(env).iter().any(|e| {
        e["event"] == "revive"
            && e["by"] == "watcher"
            && e["outcome"] == "ok"
            && pid_of(&e["pid"]) == Some(pid)
    })
}

/// Waits for the service to run as another pid than `old`, seen by `status`; never two
/// instances meanwhile. Returns the new pid and how long it took from `since`.
#[track_caller]
fn await_revival(env: &TestEnv, entry: &Path, old: i32, since: Instant) -> (i32, Duration) {
    let mut new = None;
    wait_for("a new instance", || {
        // A launch passes through shims (pyenv's bash) in the new instance's own group: one
        // group is one instance.
        // One that ended between the two looks has no group left to count.
        let mut groups: Vec<i32> = env
            .instances(entry)
            .into_iter()
            .filter_map(group_of)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        assert!(groups.len() <= 1, "two instances: {groups:?}");
        let value = status(env);
        new = pid_of(&value["pid"]).filter(|p| *p != old && value["state"] == "running");
        new.is_some()
    });
    (new.unwrap(), since.elapsed())
}

#[test]
fn a_killed_service_is_back_within_a_second_fifty_times() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    let mut pid = env.keepup(&["start"]).expect(0).pid();
    let mut pids = vec![pid];
    let mut slowest = Duration::ZERO;
    for round in 0..50 {
        let killed = Instant::now();
        if round % 2 == 0 {
            sigkill(pid);
        } else {
            env.keepup(&["kill"]).expect(0).stdout_has("killed");
        }
        let (new, took) = await_revival(&env, &entry, pid, killed);
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: back after {took:?}"
        );
        wait_for("the watcher's revive event", || {
            revived_by_watcher(&env, new)
        });
        assert_eq!(env.instances(&entry), [new], "round {round}");
        assert_eq!(env.watchers().len(), 1, "round {round}");
        pid = new;
        pids.push(new);
    }
    eprintln!("slowest revival seen by status: {slowest:?}");
    // Each death is in the history, before the revival that answered it: the watcher writes
    // the `exit` once the new process runs, but never after its `revive`.
    let history = events(&env);
    let place = |kind: &str, pid: i32| {
        history
            .iter()
            .position(|e| e["event"] == kind && pid_of(&e["pid"]) == Some(pid))
            .unwrap_or_else(|| panic!("no {kind} of {pid}: {history:#?}"))
    };
    for pair in pids.windows(2) {
        assert!(
            place("exit", pair[0]) < place("revive", pair[1]),
            "{pair:?}: {history:#?}"
        );
    }
    env.keepup(&["stop"]).expect(0);
    assert!(
        env.own_processes().is_empty(),
        "stop left {:?}",
        env.own_processes()
    );
}

#[test]
fn a_killed_watcher_leaves_the_service_alone_and_the_timer_brings_it_back() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    let pid = env.keepup(&["start"]).expect(0).pid();
    let watcher = pid_of(&status(&env)["watcher"]["pid"]).expect("no watcher");
    assert_eq!(env.watchers(), [watcher]);

    sigkill(watcher);
    let value = status(&env);
    assert_eq!(pid_of(&value["pid"]), Some(pid), "{value}");
    assert_eq!(value["watcher"], Value::Null, "{value}");
    // Without a timer line, nothing would start a watcher: status must not say the timer does.
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("watcher:  not running, and no timer line to start one");
    env.keepup(&["install-timer"]).expect(0);
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("watcher:  not running — the timer restarts it");

    let tick = env.keepup(&["restart", "--timer"]);
    tick.expect(0).stdout_has("watcher (");
    let watcher = pid_of(&status(&env)["watcher"]["pid"]).expect("no new watcher");
    assert_eq!(env.watchers(), [watcher]);
    assert_eq!(env.instances(&entry), [pid], "the service was touched");
    // The next tick finds both: nothing to do, nothing said.
    let quiet = env.keepup(&["restart", "--timer"]);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (0, ""), "{quiet:#?}");

    // A reboot: both gone. One tick brings back both.
    sigkill(watcher);
    sigkill(pid);
    let tick = env.keepup(&["restart", "--timer"]);
    let revived = tick.expect(0).stdout_has("revived").pid();
    assert_eq!(env.instances(&entry), [revived]);
    let watcher = pid_of(&status(&env)["watcher"]["pid"]).expect("no watcher after the tick");
    assert_eq!(env.watchers(), [watcher]);
    // And it watches: a crash now is revived by it.
    sigkill(revived);
    await_revival(&env, &entry, revived, Instant::now());
    env.keepup(&["stop"]).expect(0);
}

/// The watcher's record removed by hand while it waits: `start` and the timer's `restart`
/// record that watcher again, rather than starting a second one beside it and saying the
/// service ran without one, also once an upgrade has replaced the program the watcher runs;
/// and it still revives the service.
#[test]
fn a_watcher_whose_record_was_removed_is_recorded_again_not_doubled() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    let built = Path::new(env!("CARGO_BIN_EXE_keepup"));
    let keepup = env.path("bin/keepup");
    install_program(built, &keepup);
    let config = env.path("cfg.toml");
    let pid = env.keepup_as(&keepup, &config, &["start"]).expect(0).pid();
    let value = status(&env);
    let watcher = pid_of(&value["watcher"]["pid"]).expect("no watcher");
    let since = value["watcher"]["started_at"].as_str().unwrap().to_owned();
    // So that a record written anew, rather than for when the watcher started, shows.
    wait_for("a second past the watcher's start", || {
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string() > since
    });
    for (upgraded, verb) in [(false, &["start"][..]), (true, &["restart", "--timer"])] {
        if upgraded {
            // A new file in its place: the watcher's program is a deleted one now.
            install_program(built, &keepup);
        }
        std::fs::remove_file(env.path("svc.py.watcher")).unwrap();
        let run = env.keepup_as(&keepup, &config, verb);
        run.expect(0);
        if verb == ["start"] {
            assert!(!run.stdout.contains("watcher"), "{run:#?}");
        } else {
            // The timer's check says what it did, in the timer log.
            run.stdout_has(&format!("had a watcher ({watcher}) no record named"));
        }
        assert_eq!(env.watchers(), [watcher], "{verb:?}");
        let value = status(&env);
        assert_eq!(pid_of(&value["watcher"]["pid"]), Some(watcher), "{value}");
        assert_eq!(value["watcher"]["waits"], "pidfd", "{value}");
        let again = value["watcher"]["started_at"].as_str().unwrap();
        assert!(
            *again <= *since,
            "recorded as started at {again}, not {since}"
        );
    }
    env.keepup(&["events"]).stdout_has(&format!(
        "had a watcher ({watcher}) no record named: recorded it again"
    ));
    sigkill(pid);
    await_revival(&env, &entry, pid, Instant::now());
    assert_eq!(env.watchers(), [watcher]);
    // In `ps` and `pgrep`, by its own name, also once it has run itself afresh after acting.
    let name = std::fs::read_to_string(format!("/proc/{watcher}/comm")).unwrap();
    assert_eq!(name, "keepup\n");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn stop_racing_kill_leaves_nothing_that_comes_back() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    for round in 0..40 {
        env.keepup(&["start"]).expect(0);
        let kill = env.keepup_spawn(&["kill"]);
        let stop = env.keepup_spawn(&["stop"]);
        let stopped = Run::from_output(&stop.wait_with_output().unwrap());
        stopped.expect(0);
        let killed = Run::from_output(&kill.wait_with_output().unwrap());
        killed.expect(0);
        // Two seconds of looking: nothing runs and nothing is revived.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            assert!(
                env.instances(&entry).is_empty(),
                "round {round}: revived after stop"
            );
            assert!(
                env.watchers().is_empty(),
                "round {round}: a watcher after stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(locked_pid(&entry), None);
    }
}

#[test]
fn eight_starts_at_once_make_one_service_and_one_watcher() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    for round in 0..20 {
        let children: Vec<_> = (0..8).map(|_| env.keepup_spawn(&["start"])).collect();
        let runs: Vec<Run> = children
            .into_iter()
            .map(|c| Run::from_output(&c.wait_with_output().unwrap()))
            .collect();
        for run in &runs {
            run.expect(0);
        }
        assert_eq!(
            runs.iter().filter(|r| r.stdout.contains("started")).count(),
            1,
            "round {round}: {runs:#?}"
        );
        let running = env.instances(&entry);
        assert_eq!(running.len(), 1, "round {round}");
        assert_eq!(env.watchers().len(), 1, "round {round}");
        env.keepup(&["stop"]).expect(0);
        assert!(env.own_processes().is_empty(), "round {round}");
    }
}

#[test]
fn the_timer_racing_the_watcher_leaves_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    let mut pid = env.keepup(&["start"]).expect(0).pid();
    for round in 0..20 {
        sigkill(pid);
        let tick = env.keepup(&["restart", "--timer"]);
        tick.expect(0);
        let (new, _) = await_revival(&env, &entry, pid, Instant::now());
        wait_for("the revival to be recorded", || {
            locked_pid(&entry) == Some(new)
        });
        assert_eq!(env.instances(&entry), [new], "round {round}");
        assert_eq!(env.watchers().len(), 1, "round {round}");
        pid = new;
    }
    env.keepup(&["stop"]).expect(0);
}

/// CPU time (user + system) of `pid` in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_crash_loop_trips_the_guard_and_costs_the_watcher_next_to_nothing() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // Runs only while the file `ok` exists; otherwise exits at once.
    // A shell script, so it fails well within its settle however loaded the machine.
    let entry = env.script(
        "svc.sh",
        "#!/bin/sh\ntest -e ok || exit 1\nexec sleep 100000\n",
    );
    env.config(
        "entry = \"svc.sh\"\nstart_timeout = \"1s\"\n\n[restart_limit]\nburst = 3\n\
         interval = \"1m\"\ncooldown = \"3s\"\n",
    );
    env.write("ok", "");
    let pid = env.keepup(&["start"]).expect(0).pid();
    let watcher = pid_of(&status(&env)["watcher"]["pid"]).expect("no watcher");
    let before = cpu_ticks(watcher);
    std::fs::remove_file(env.path("ok")).unwrap();
    sigkill(pid);
    let trips = |env: &TestEnv| {
        events(env)
            .iter()
            .filter(|e| e["event"] == "guard_trip")
            .count()
    };
    wait_for("the guard to trip twice", || trips(&env) >= 2);
    let spent = cpu_ticks(watcher) - before;
    let history = events(&env);
    // The exit of the killed instance, which the watcher read; the launches that died at once
    // are failed revivals, not exits.
    let exits = history.iter().filter(|e| e["event"] == "exit").count();
    assert_eq!(exits, 1, "{history:#?}");
    let after_start: Vec<&Value> = history
        .iter()
        .skip_while(|e| e["event"] != "start")
        .skip(1)
        .filter(|e| e["event"] != "exit")
        .collect();
    let kinds: Vec<String> = after_start
        .iter()
        .map(|e| format!("{} {} {}", e["event"], e["by"], e["outcome"]).replace('"', ""))
        .collect();
    assert_eq!(
        kinds,
        [
            "revive watcher failed",
            "revive watcher failed",
            "revive watcher failed",
            "guard_trip watcher ok",
            "revive watcher failed",
            "guard_trip watcher ok",
        ],
        "{history:#?}"
    );
    // The one retry waited out the cool-down.
    let at = |e: &Value| humantime::parse_rfc3339(e["time"].as_str().unwrap()).unwrap();
    let waited = at(after_start[4])
        .duration_since(at(after_start[3]))
        .unwrap();
    assert!(waited >= Duration::from_secs(3), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
    // Clock ticks are 10 ms: 10 of them is 100 ms, for five launches and their records on a
    // loaded machine (it measured 10 to 60 ms); an unguarded loop spent seconds.
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap();
    let spent_ms = spent * 1000 / u64::try_from(per_second).unwrap();
    eprintln!("the watcher's CPU time over the crash loop: {spent_ms} ms");
    assert!(spent_ms <= 100, "the watcher spent {spent_ms} ms of CPU");
    assert!(env.instances(&entry).is_empty());
    env.keepup(&["stop"]).expect(0);
    assert!(env.own_processes().is_empty());
}

/// Context switches of `pid`, voluntary and not: each is a wakeup.
fn switches(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Starts the service; its watcher's pid, once it waits in its lean state.
fn started_and_waiting(env: &TestEnv) -> i32 {
    env.keepup(&["start"]).expect(0);
    let watcher = pid_of(&status(env)["watcher"]["pid"]).expect("no watcher");
    wait_for("the watcher to wait", || {
        cmdline(watcher).iter().any(|w| w == "--wait")
    });
    watcher
}

#[test]
fn an_idle_watcher_never_wakes() {
    require!("python3", "python3");
    let env = TestEnv::new();
    service(&env);
    let watcher = started_and_waiting(&env);
    let before = switches(watcher);
    // Ten seconds of a healthy service: the observation itself, not a wait for something.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        switches(watcher),
        before,
        "the watcher woke while all was well"
    );
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn without_pidfd_the_watcher_looks_every_100ms_and_still_revives() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    let start = env
        .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
        .env("KEEPUP_WATCH_POLL", "1")
        .args(["--config", "cfg.toml", "start"])
        .output()
        .unwrap();
    let pid = Run::from_output(&start).expect(0).pid();
    let value = status(&env);
    assert_eq!(value["watcher"]["waits"], "polling", "{value}");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("looks every 100 ms");
    let killed = Instant::now();
    sigkill(pid);
    let (new, took) = await_revival(&env, &entry, pid, killed);
    assert!(took < Duration::from_secs(1), "back after {took:?}");
    wait_for("the revival to be recorded", || {
        revived_by_watcher(&env, new)
    });
    let after = status(&env);
    assert_eq!(after["watcher"], value["watcher"], "{after}");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn workers_that_leave_the_group_are_ended_by_stop_and_before_a_revival() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // Its worker leaves the process group (and session) and says where it went.
    env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport os, time\nif os.fork() == 0:\n    os.setsid()\n    \
         open('worker-%d' % os.getpid(), 'w').close()\n    while True:\n        time.sleep(1)\n\
         while True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"svc.py\"\nstart_timeout = \"300ms\"\nstop_timeout = \"2s\"\n");
    let worker = |env: &TestEnv, not: &[i32]| {
        let mut found = None;
        wait_for("the worker", || {
            found = std::fs::read_dir(&env.root)
                .unwrap()
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix("worker-")?
                        .parse()
                        .ok()
                })
                .find(|p: &i32| !not.contains(p) && alive(*p));
            found.is_some()
        });
        found.unwrap()
    };
    let dead = env.keepup(&["start"]).expect(0).pid();
    let first = worker(&env, &[]);
    assert_ne!(
        group_of(first),
        Some(dead),
        "the worker did not leave the group"
    );

    // The leader dies; the worker it left is ended before the new instance starts.
    sigkill(dead);
    let entry = env.path("svc.py");
    let mut leader = dead;
    wait_for("the watcher's revival", || {
        leader = locked_pid(&entry).unwrap_or(dead);
        leader != dead
    });
    let second = worker(&env, &[first]);
    assert!(!alive(first), "the old worker survived the revival");
    assert_ne!(leader, first, "the old worker was taken for the service");

    env.keepup(&["stop"]).expect(0);
    assert!(!alive(second), "stop left the worker that left the group");
    assert!(!alive(leader));
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

#[test]
fn each_revival_reads_the_config_afresh_or_keeps_the_last_good_one() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = service(&env);
    let good = |flavour: &str| {
        env.config(&format!(
            "entry = \"svc.py\"\nstart_timeout = \"300ms\"\n[env]\nFLAVOUR = \"{flavour}\"\n\
             [restart_limit]\nburst = 1000\nbackoff = \"0s\"\n"
        ));
    };
    // Read once the launch has gone through its execs (`env`, pyenv's shim, python): in the
    // middle of an exec the new image's environment reads empty for a moment.
    let flavour = |pid: i32| {
        let read = || {
            std::fs::read(format!("/proc/{pid}/environ"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .find_map(|v| v.strip_prefix(b"FLAVOUR=").map(<[u8]>::to_vec))
        };
        let mut found = None;
        wait_for("the revived service's environment", || {
            found = read();
            found.is_some() || !alive(pid)
        });
        found
    };
    good("one");
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(flavour(pid).as_deref(), Some(&b"one"[..]));

    // A fix to the config takes effect at the next crash.
    good("two");
    sigkill(pid);
    let (pid, _) = await_revival(&env, &entry, pid, Instant::now());
    assert_eq!(flavour(pid).as_deref(), Some(&b"two"[..]));

    // A config that no longer loads: said in the timer's log, and the last good one is used.
    env.config("entry = \"svc.py\"\nstartup = \n");
    wait_for("the watcher to wait", || locked_pid(&entry) == Some(pid));
    sigkill(pid);
    let mut revived = pid;
    wait_for("the revival with the last good config", || {
        revived = locked_pid(&entry).unwrap_or(pid);
        revived != pid && alive(revived)
    });
    assert_eq!(flavour(revived).as_deref(), Some(&b"two"[..]));
    let log = std::fs::read_to_string(env.path("svc.py.timer.log")).unwrap();
    assert!(
        log.contains("cfg.toml") && log.contains("revived with the config as last loaded"),
        "{log}"
    );
    good("two");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn root_starts_a_watcher_that_acts_as_the_owner_of_the_config() {
    require!("python3", "python3");
    let Some(alice) = crate::testenv::TestUser::new() else {
        return;
    };
    let env = TestEnv::new();
    let entry = env.script(
        "app/svc.py",
        "#!/usr/bin/python3\nimport time\nwhile True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"app/svc.py\"\nstart_timeout = \"300ms\"\n");
    alice.give(&env.root);
    // Root's own start: keepup acts as the config's owner, and so does the watcher it leaves.
    let pid = env.keepup(&["start"]).expect(0).pid();
    let watcher = pid_of(&status(&env)["watcher"]["pid"]).expect("no watcher");
    assert_eq!(crate::testenv::process_uid(watcher), Some(alice.uid));
    sigkill(pid);
    let (revived, _) = await_revival(&env, &entry, pid, Instant::now());
    assert_eq!(crate::testenv::process_uid(revived), Some(alice.uid));
    // She stops it herself: her watcher, her service.
    alice.keepup(&env, &["stop"]).expect(0);
    assert!(!alive(watcher) && !alive(revived));
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

/// With `health`, the watcher wakes for its probes, and for little else: the timer's wakeup
/// and what the probe itself waits for (a connection on loopback: nothing). Five seconds of a
/// healthy service probed every second: the observation itself.
#[test]
fn a_probing_watcher_wakes_about_once_per_probe() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = crate::testenv::free_port();
    env.python_service(
        "svc.py",
        &format!("import socket\nlistener = socket.create_server(('127.0.0.1', {port}))"),
    );
    env.config(&format!(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nhealth = \"tcp:127.0.0.1:{port}\"\n\
         health_interval = \"1s\"\n"
    ));
    let watcher = started_and_waiting(&env);
    let before = switches(watcher);
    std::thread::sleep(Duration::from_secs(5));
    let woke = switches(watcher) - before;
    // Five or six probes in five seconds, at most two wakeups each.
    assert!((4..=12).contains(&woke), "{woke} wakeups for 5 probes");
    eprintln!("{woke} wakeups in 5 s of probes every second");
    env.keepup(&["stop"]).expect(0);
}

/// A notify service that says nothing (no watchdog): the watcher, waiting on the socket as
/// well, never wakes.
#[test]
fn a_notify_watcher_without_a_watchdog_never_wakes() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service(
        "svc.py",
        "import socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])",
    );
    env.config("entry = \"svc.py\"\nready = \"notify\"\n");
    let watcher = started_and_waiting(&env);
    let before = switches(watcher);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        switches(watcher),
        before,
        "the watcher woke while all was quiet"
    );
    env.keepup(&["stop"]).expect(0);
}
