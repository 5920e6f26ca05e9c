//! Every word true (issue 21): `status` counts what the service really is and says when it or
//! its watcher is stopped; events say how the service ended and what keepup had to do. Real
//! processes and signals; every wait is a poll with a deadline.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid as NixPid;
use serde_json::Value;

use crate::testenv::{TestEnv, alive, cmdline, state, wait_for};

fn status(env: &TestEnv) -> Value {
    let run = env.keepup(&["status", "--json"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// The watcher's pid, as keepup's record (checked against the process table) tells it: a look
/// through /proc may meet it in the middle of its exec into the waiting state, and miss it.
fn watcher_of(env: &TestEnv) -> i32 {
    let mut pid = None;
    wait_for("the watcher", || {
        pid = status(env)["watcher"]["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        pid.is_some()
    });
    pid.unwrap()
}

fn stat_field(pid: i32, index: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

fn parent(pid: i32) -> Option<i32> {
    stat_field(pid, 1).and_then(|p| i32::try_from(p).ok())
}

fn session(pid: i32) -> Option<i32> {
    stat_field(pid, 3).and_then(|p| i32::try_from(p).ok())
}

/// The service's own processes, as `ps` would list them: this test's, less keepup's.
fn service_processes(env: &TestEnv) -> Vec<i32> {
    env.own_processes()
        .into_iter()
        .filter(|p| !cmdline(*p).first().is_some_and(|a| a.ends_with("keepup")))
        .collect()
}

/// Resident bytes of `pid`, from `/proc/<pid>/statm`.
fn rss(pid: i32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The backends of `postgres` leave its session; a worker's helper double-forks and
/// is handed to the watcher. `status` counted the leader alone ("1 process"): it must count
/// what `ps` shows, and give PSS beside RSS.
#[test]
fn status_counts_workers_that_left_the_session_and_what_the_watcher_was_left_with() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service(
        "svc.py",
        "def forever():\n    while True:\n        time.sleep(1)\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        forever()\n    \
         forever()\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
         open('orphan-%d' % os.getpid(), 'w').close()\n        forever()\n    os._exit(0)\n",
    );
    env.config("entry = \"svc.py\"\nstart_timeout = \"300ms\"\n");
    let leader = env.keepup(&["start"]).expect(0).pid();
    // The leader, its worker (own session) and the worker's child, the orphan.
    wait_for("four processes of the service", || {
        service_processes(&env).len() == 4
    });
    let watcher = watcher_of(&env);
    let mut orphan = None;
    wait_for("the orphan", || {
        orphan = service_processes(&env)
            .into_iter()
            .find(|p| env.path(&format!("orphan-{p}")).exists());
        orphan.is_some()
    });
    let orphan = orphan.unwrap();
    wait_for("the orphan to be the watcher's", || {
        parent(orphan) == Some(watcher)
    });
    let all = service_processes(&env);
    assert!(
        all.iter().filter(|p| session(**p) != Some(leader)).count() >= 2,
        "the workers did not leave the session: {all:?}"
    );

    let value = status(&env);
    assert_eq!(value["processes"], 4, "{value}");
    let rss_sum: u64 = all.iter().map(|p| rss(*p)).sum();
    let said = value["memory_bytes"].as_u64().unwrap();
    assert!(
        said * 10 >= rss_sum * 9 && said * 10 <= rss_sum * 11,
        "RSS sum {said}, by /proc {rss_sum}"
    );
    let pss = value["memory_pss_bytes"].as_u64().expect("a PSS sum");
    assert!(pss > 0 && pss < said, "PSS {pss}, RSS {said}");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has(" PSS, ")
        .stdout_has(" RSS in 4 processes (leader ");

    env.keepup(&["stop"]).expect(0);
    assert!(all.iter().all(|p| !alive(*p)), "stop left some: {all:?}");
}

/// Sends SIGCONT to the processes it holds when dropped (before the `TestEnv`, declared
/// earlier, kills them), so a failing test leaves nothing stopped.
struct Resume(Vec<i32>);

impl Drop for Resume {
    fn drop(&mut self) {
        for pid in &self.0 {
            if *pid > 1 && alive(*pid) {
                let _ = kill(NixPid::from_raw(*pid), Signal::SIGCONT);
            }
        }
    }
}

fn signal(pid: i32, signal: Signal) {
    assert!(pid > 1);
    kill(NixPid::from_raw(pid), signal).unwrap();
}

/// A stopped (SIGSTOP) service, or a stopped watcher that cannot revive anything, read as
/// running and watching, as if all were well.
#[test]
fn a_stopped_service_or_watcher_is_said_to_be_stopped() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nstart_timeout = \"300ms\"\n");
    let service = env.keepup(&["start"]).expect(0).pid();
    let watcher = watcher_of(&env);
    let _resume = Resume(vec![service, watcher]);
    let value = status(&env);
    assert_eq!(value["suspended"], Value::Null, "{value}");
    assert_eq!(value["watcher"]["suspended"], Value::Null, "{value}");

    signal(service, Signal::SIGSTOP);
    wait_for("the service to stop", || state(service) == Some('T'));
    let text = env.keepup(&["status"]);
    text.expect(0).stdout_has(&format!(
        "svc.py: running, but stopped (SIGSTOP): it does nothing until SIGCONT (kill -CONT \
         {service})"
    ));
    let value = status(&env);
    assert_eq!(value["suspended"], "stopped (SIGSTOP)", "{value}");
    assert_eq!(value["watcher"]["suspended"], Value::Null, "{value}");

    signal(watcher, Signal::SIGSTOP);
    wait_for("the watcher to stop", || state(watcher) == Some('T'));
    env.keepup(&["status"]).expect(0).stdout_has(&format!(
        "stopped (SIGSTOP): it revives nothing until SIGCONT (kill -CONT {watcher})"
    ));
    let value = status(&env);
    assert_eq!(
        value["watcher"]["suspended"], "stopped (SIGSTOP)",
        "{value}"
    );

    signal(service, Signal::SIGCONT);
    signal(watcher, Signal::SIGCONT);
    wait_for("both to run again", || {
        state(service) != Some('T') && state(watcher) != Some('T')
    });
    let value = status(&env);
    assert_eq!(value["suspended"], Value::Null, "{value}");
    assert_eq!(value["watcher"]["suspended"], Value::Null, "{value}");
    assert!(!env.keepup(&["status"]).stdout.contains("SIGSTOP"));
    env.keepup(&["stop"]).expect(0);
}

fn events(env: &TestEnv) -> Vec<Value> {
    let run = env.keepup(&["events", "--json", "-n", "1000"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// The pids a `leftovers` detail says were in the main process's group, and those it says
/// had left it.
fn in_and_out(detail: &str) -> (Vec<i32>, Vec<i32>) {
    let pids = |text: &str| -> Vec<i32> {
        text.split(", ")
            .map(|p| p.trim().parse().unwrap_or_else(|_| panic!("{detail}")))
            .collect()
    };
    if let Some((_, list)) = detail.split_once(", in its process group: ") {
        return (pids(list), Vec::new());
    }
    if let Some((_, list)) = detail.split_once(", which had left its process group: ") {
        return (Vec::new(), pids(list));
    }
    let (_, lists) = detail
        .split_once("left behind: ")
        .unwrap_or_else(|| panic!("not what was left behind: {detail}"));
    let (inside, outside) = lists
        .strip_suffix(" had left it")
        .and_then(|l| l.split_once(" in its process group; "))
        .unwrap_or_else(|| panic!("neither in nor out of the group: {detail}"));
    (pids(inside), pids(outside))
}

/// The workers of a dead main process, each `worker-in-PID` (in its group) or
/// `worker-out-PID` (`setsid`), that are alive and not in `not`.
fn workers(env: &TestEnv, not: &[i32]) -> (Vec<i32>, Vec<i32>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    wait_for("three workers", || {
        (inside, outside) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&env.root).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (list, pid) = if let Some(pid) = name.strip_prefix("worker-in-") {
                (&mut inside, pid)
            } else if let Some(pid) = name.strip_prefix("worker-out-") {
                (&mut outside, pid)
            } else {
                continue;
            };
            let pid: i32 = pid.parse().unwrap();
            if alive(pid) && !not.contains(&pid) {
                list.push(pid);
            }
        }
        inside.len() == 2 && outside.len() == 1
    });
    inside.sort_unstable();
    (inside, outside)
}

/// nginx, Apache, php-fpm, node, celery, hypercorn: workers in the master's group were said
/// to have "left the service's process group" when the dead master left them to the watcher.
#[test]
fn leftovers_are_said_to_be_in_the_group_or_to_have_left_it() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service(
        "svc.py",
        "for kind in ('in', 'in', 'out'):\n    if os.fork() == 0:\n        if kind == 'out':\n            \
         os.setsid()\n        open('worker-%s-%d' % (kind, os.getpid()), 'w').close()\n        \
         while True:\n            time.sleep(1)\n",
    );
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nstop_timeout = \"5s\"\n\n\
         [restart_limit]\nbackoff = \"0s\"\n",
    );
    let first = env.keepup(&["start"]).expect(0).pid();
    let (inside, outside) = workers(&env, &[]);

    // The main process dies alone: the watcher ends what it left before reviving.
    crate::testenv::sigkill(first);
    let mut detail = String::new();
    wait_for("the watcher's leftovers event", || {
        detail = events(&env)
            .iter()
            .find(|e| e["event"] == "leftovers" && e["by"] == "watcher")
            .map(ToString::to_string)
            .unwrap_or_default();
        !detail.is_empty()
    });
    let event: Value = serde_json::from_str(&detail).unwrap();
    let detail = event["detail"].as_str().unwrap();
    let (mut said_in, said_out) = in_and_out(detail);
    said_in.sort_unstable();
    assert_eq!(
        (said_in, said_out),
        (inside.clone(), outside.clone()),
        "{detail}"
    );
    assert!(detail.starts_with(&format!(
        "ended 3 processes that svc.py ({first}) left behind"
    )));
    assert_eq!(
        event["pid"], first,
        "the event's pid is the dead main process: {event}"
    );

    // stop: the main process exits on TERM, and the watcher is handed what it leaves.
    let (inside, outside) = workers(&env, &[inside, outside].concat());
    let second = crate::testenv::locked_pid(&env.path("svc.py")).unwrap();
    env.keepup(&["stop"]).expect(0);
    let stopped: Vec<String> = events(&env)
        .iter()
        .filter(|e| e["event"] == "leftovers" && e["by"] == "user")
        .filter_map(|e| e["detail"].as_str().map(str::to_owned))
        .collect();
    let [detail] = stopped.as_slice() else {
        panic!("one leftovers event for the stopped instance {second}: {stopped:?}");
    };
    let (said_in, said_out) = in_and_out(detail);
    assert_eq!(said_out, outside, "{detail}");
    assert!(said_in.iter().all(|p| inside.contains(p)), "{detail}");
}

/// A service that exits with the code written to `exit-code` (within 50 ms), and, started
/// while `stubborn` exists, ignores SIGTERM.
fn exiting_service(env: &TestEnv) -> std::path::PathBuf {
    let entry = env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport os, signal, sys, time\n\
         if os.path.exists('stubborn'):\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         print('up', os.getpid(), flush=True)\nwhile True:\n    if os.path.exists('exit-code'):\n        \
         code = int(open('exit-code').read())\n        os.remove('exit-code')\n        \
         sys.exit(code)\n    time.sleep(0.05)\n",
    );
    env.config(
        "entry = \"svc.py\"\nstart_timeout = \"300ms\"\nstop_timeout = \"1s\"\n\n\
         [restart_limit]\nburst = 100\nbackoff = \"0s\"\n",
    );
    entry
}

/// The newest event of `kind` about `pid`, once there is one.
#[track_caller]
fn event_about(env: &TestEnv, kind: &str, pid: i32) -> Value {
    let mut found = None;
    wait_for(&format!("a {kind} event for {pid}"), || {
        found = events(env)
            .into_iter()
            .rev()
            .find(|e| e["event"] == kind && e["pid"] == pid);
        found.is_some()
    });
    found.unwrap()
}

/// Waits for the watcher's revival of a service whose instance `old` ended; its new pid.
#[track_caller]
fn revived(env: &TestEnv, entry: &std::path::Path, old: i32) -> i32 {
    let mut new = None;
    wait_for("the revival", || {
        new = crate::testenv::locked_pid(entry).filter(|p| *p != old && alive(*p));
        new.is_some_and(|p| {
            events(env)
                .iter()
                .any(|e| e["event"] == "revive" && e["pid"] == p)
        })
    });
    new.unwrap()
}

/// The history said a service was revived, never that, or how, it had ended: the watcher, its
/// parent, reads the exit code or the signal; for an adopted instance it says "ended".
#[test]
fn the_watcher_records_how_the_service_ended() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = exiting_service(&env);
    let first = env.keepup(&["start"]).expect(0).pid();

    env.write("exit-code", "7");
    let exit = event_about(&env, "exit", first);
    assert_eq!(exit["by"], "watcher", "{exit}");
    assert_eq!(exit["outcome"], "failed", "{exit}");
    assert_eq!(
        exit["detail"],
        format!("svc.py ({first}) exited with code 7"),
        "{exit}"
    );
    let second = revived(&env, &entry, first);

    env.keepup(&["kill"]).expect(0);
    let exit = event_about(&env, "exit", second);
    assert_eq!(
        exit["detail"],
        format!("svc.py ({second}) was killed by signal 9 (SIGKILL)"),
        "{exit}"
    );
    let third = revived(&env, &entry, second);

    env.write("exit-code", "0");
    let exit = event_about(&env, "exit", third);
    assert_eq!(exit["outcome"], "ok", "{exit}");
    assert_eq!(
        exit["detail"],
        format!("svc.py ({third}) exited with code 0")
    );
    let fourth = revived(&env, &entry, third);
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(fourth));

    // Started by hand, then adopted: the watcher is not its parent, and cannot read its end.
    let by_hand = env.spawn(&env.root.clone(), entry.to_str().unwrap(), &[]);
    wait_for("the hand-started service to run python", || {
        cmdline(by_hand)
            .first()
            .is_some_and(|p| p.ends_with("python3"))
    });
    env.keepup(&["start"]).expect(0).stdout_has("adopted");
    env.write("exit-code", "3");
    let exit = event_about(&env, "exit", by_hand);
    let detail = exit["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("svc.py ({by_hand}) ended")) && !detail.contains("code"),
        "{exit}"
    );
    revived(&env, &entry, by_hand);
    env.keepup(&["stop"]).expect(0);
}

/// `stop` that had to SIGKILL, `restart` that started a missing watcher, and `start` that
/// adopted a hand-started instance all looked like nothing special in the history.
#[test]
fn events_say_what_keepup_had_to_do() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = exiting_service(&env);

    // Started by hand, exactly as startup would run it: start adopts it, and says so.
    let by_hand = env.spawn(&env.root.clone(), entry.to_str().unwrap(), &[]);
    wait_for("the hand-started service to run python", || {
        cmdline(by_hand)
            .first()
            .is_some_and(|p| p.ends_with("python3"))
    });
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("svc.py ({by_hand}) is running: adopted"));
    let start = event_about(&env, "start", by_hand);
    assert_eq!(start["outcome"], "already_running", "{start}");
    assert!(
        start["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("adopted"),
        "{start}"
    );
    // Once adopted, it is kept: a second start adopts nothing.
    let again = env.keepup(&["start"]);
    again.expect(0);
    assert!(!again.stdout.contains("adopted"), "{again:#?}");

    // Its watcher is killed: restart starts one, and says so, on stdout and in the history.
    let watcher = watcher_of(&env);
    crate::testenv::sigkill(watcher);
    env.keepup(&["restart"])
        .expect(0)
        .stdout_has("without a watcher: started one (");
    let new_watcher = watcher_of(&env);
    let started = event_about(&env, "watcher", new_watcher);
    assert_eq!(started["outcome"], "ok", "{started}");
    assert_eq!(
        started["detail"],
        format!("svc.py ({by_hand}) ran without a watcher: started a watcher ({new_watcher})"),
    );
    env.keepup(&["stop"]).expect(0);

    // A service that ignores SIGTERM: stop_timeout passes, and the stop event says SIGKILL.
    env.write("stubborn", "");
    let stubborn = env.keepup(&["start"]).expect(0).pid();
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(stubborn));
    let stop = event_about(&env, "stop", stubborn);
    assert_eq!(stop["outcome"], "ok", "{stop}");
    assert_eq!(
        stop["detail"],
        format!(
            "svc.py ({stubborn}) still running 1s after SIGTERM (stop_timeout): ended by SIGKILL"
        ),
    );
}

/// "not ready within 5s" left people guessing which setting to change.
#[test]
fn a_slow_start_names_start_timeout() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    let config =
        env.config("entry = \"svc.py\"\nready = \"cmd:false\"\nstart_timeout = \"700ms\"\n");
    env.keepup(&["start"])
        .expect(1)
        .stderr_has("not ready within 700ms")
        .stderr_has(&format!(
            "if it needs longer to start, raise start_timeout in {} (start_timeout = \"2s\")",
            config.display()
        ));
}
