//! Stopping and killing reach the whole process group and return only when it is gone; a
//! service that dies at once fails `start` clearly and leaves no lock.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid as NixPid;

use crate::testenv::{Run, TestEnv, alive, locked_pid, state, wait_for};

/// Pids whose process group is `group`, zombies excluded.
fn group_members(group: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let fields: Vec<&str> = stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                fields.get(2) == Some(&group.to_string().as_str()) && alive(*pid)
            })
        })
        .collect()
}

#[test]
fn service_ignoring_sigterm_is_killed_after_stop_timeout() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service(
        "svc.py",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ignoring TERM', flush=True)",
    );
    env.config("entry = \"svc.py\"\nstop_timeout = \"1s\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    // Only once the handler is in place is the test meaningful.
    wait_for("the service to ignore SIGTERM", || {
        std::fs::read_to_string(env.path("svc.py.log")).is_ok_and(|l| l.contains("ignoring TERM"))
    });
    let began = Instant::now();
    let stop = env.keepup(&["stop"]);
    stop.expect(0)
        .stderr_has("sending SIGKILL")
        .stdout_has(&format!("({pid}) stopped"));
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "SIGKILL came before stop_timeout"
    );
    assert!(!alive(pid));
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn stop_and_kill_leave_no_member_of_a_forking_service() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service(
        "svc.py",
        "child = os.fork()\nif child == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    \
         while True: time.sleep(1)\nprint('forked', child, flush=True)",
    );
    env.config("entry = \"svc.py\"\nstop_timeout = \"1s\"\nwatch = false\n");
    for verb in ["stop", "kill"] {
        let pid = env.keepup(&["start"]).expect(0).pid();
        wait_for("the service's child", || group_members(pid).len() == 2);
        env.keepup(&["status"])
            .expect(0)
            .stdout_has(&format!("pid:      {pid}"));
        env.keepup(&[verb]).expect(0);
        // No polling: the command returns only when the group is gone.
        assert_eq!(group_members(pid), Vec::<i32>::new(), "{verb} left members");
        assert!(env.instances(&entry).is_empty());
    }
}

#[test]
fn kill_keeps_the_lock_and_stop_removes_it() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nwatch = false\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    env.keepup(&["kill"])
        .expect(0)
        .stdout_has(&format!("({pid}) killed"));
    assert_eq!(locked_pid(&entry), Some(pid));
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    env.keepup(&["stop"]).expect(0).stdout_has("not running");
    assert_eq!(locked_pid(&entry), None);
    assert!(!env.path("svc.py.pid").exists());
}

#[test]
fn restart_force_replaces_the_running_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    let first = env.keepup(&["start"]).expect(0).pid();
    let second = env
        .keepup(&["restart", "--force"])
        .expect(0)
        .stdout_has("restarted")
        .pid();
    assert_ne!(first, second);
    assert!(!alive(first));
    assert_eq!(env.instances(&entry), [second]);
    assert_eq!(locked_pid(&entry), Some(second));
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn service_that_exits_at_once_fails_start_and_leaves_no_lock() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport sys\nprint('config missing: token', flush=True)\nsys.exit(3)\n",
    );
    env.config("entry = \"svc.py\"\n");
    let start = env.keepup(&["start"]);
    start
        .expect(1)
        .stderr_has("svc.py failed to start")
        .stderr_has("exited at once with code 3")
        .stderr_has("config missing: token");
    assert!(
        !env.path("svc.py.pid").exists(),
        "a failed start left a pid lock"
    );
    assert!(env.instances(&entry).is_empty());
    // Nothing keeps it up now: no revival is coming, so none is announced.
    let status = env.keepup(&["status"]);
    status.expect(3).stdout_has("guard:    ok");
    assert!(!status.stdout.contains("next revival"), "{status:#?}");
    assert_eq!(env.status_json()["guard"]["state"], "ok");
}

#[test]
fn startup_that_cannot_run_fails_clearly() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\nstartup = \"no-such-program-here {entry}\"\nsearch = \"proc_cwd\"\n",
    );
    env.keepup(&["start"])
        .expect(1)
        .stderr_has("cannot run no-such-program-here");
    assert!(!env.path("svc.py.pid").exists());
}

/// The exec itself fails in the started process (a file marked executable that no kernel
/// runs): the child says why through keepup's memory-sharing start, and nothing is left.
#[test]
fn startup_whose_exec_fails_says_why_and_leaves_nothing() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    let tool = env.write("tool", "\u{1}\u{2} not a program\n");
    let mut mode = std::fs::metadata(&tool).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&tool, mode).unwrap();
    env.config("entry = \"svc.py\"\nstartup = \"./tool {entry}\"\n");
    env.keepup(&["start"])
        .expect(1)
        .stderr_has("cannot run")
        .stderr_has("Exec format error");
    assert!(!env.path("svc.py.pid").exists());
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

#[test]
fn failed_start_shows_the_last_lines_even_after_64kib_of_output() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.script(
        "svc.py",
        "#!/usr/bin/env python3\nimport sys\nfor i in range(3000):\n    print('noise ' * 8, i)\n\
         print('the real reason', flush=True)\nsys.exit(3)\n",
    );
    env.config("entry = \"svc.py\"\n");
    let start = env.keepup(&["start"]);
    start.expect(1).stderr_has("the real reason");
    assert!(
        !start.stderr.contains("noise  0\n"),
        "shows the first lines, not the last"
    );
}

/// Starts a Python service that, on `signal` (`WINCH`, `TERM`), writes its name to the file
/// `graceful` and exits; `stop_signal` and `stop_timeout` as given. Returns its pid once its
/// handler is in place.
fn graceful_service(env: &TestEnv, signal: &str, stop: &str) -> i32 {
    env.python_service(
        "svc.py",
        &format!(
            "def graceful(*_):\n    open('graceful', 'w').write('{signal}')\n    sys.exit(0)\n\
             signal.signal(signal.SIG{signal}, graceful)\nprint('handles {signal}', flush=True)"
        ),
    );
    env.config(&format!("entry = \"svc.py\"\n{stop}"));
    let pid = env.keepup(&["start"]).expect(0).pid();
    wait_for("the signal handler", || {
        std::fs::read_to_string(env.path("svc.py.log"))
            .is_ok_and(|l| l.contains(&format!("handles {signal}")))
    });
    pid
}

/// `stop` ended the service by its handler for `signal`, without SIGKILL.
#[track_caller]
fn stopped_gracefully(env: &TestEnv, stop: &Run, pid: i32, signal: &str) {
    stop.expect(0).stdout_has(&format!("({pid}) stopped"));
    assert!(!stop.stderr.contains("sending SIGKILL"), "{stop:#?}");
    assert_eq!(
        std::fs::read_to_string(env.path("graceful"))
            .ok()
            .as_deref(),
        Some(signal)
    );
}

/// Apache stops gracefully on WINCH: any signal the system defines may be `stop_signal`.
#[test]
fn stop_signal_may_be_any_signal_the_system_defines() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let pid = graceful_service(
        &env,
        "WINCH",
        "stop_signal = \"SIGWINCH\"\nstop_timeout = \"20s\"\n",
    );
    let stop = env.keepup(&["stop"]);
    stopped_gracefully(&env, &stop, pid, "WINCH");
}

/// A service paused with SIGSTOP acts on `stop_signal` only once it runs again: keepup sends
/// SIGCONT right after it, so the service stops by its own handler, not by SIGKILL at the
/// timeout.
#[test]
fn stop_ends_a_paused_service_gracefully() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let pid = graceful_service(&env, "TERM", "stop_timeout = \"30s\"\n");
    kill(NixPid::from_raw(pid), Signal::SIGSTOP).unwrap();
    wait_for("the service to be stopped", || state(pid) == Some('T'));
    let began = Instant::now();
    let stop = env.keepup(&["stop"]);
    stopped_gracefully(&env, &stop, pid, "TERM");
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "the paused service waited for SIGKILL"
    );
}

/// A celery-like master: two workers, each working on a "task" (a file written in ten steps,
/// then renamed `.done`), that die at once on TERM; on TERM the master tells them to finish
/// their task (USR1), waits for them, and exits. A third child ("beat") it does not wait for
/// ends gracefully on TERM.
const CELERY_LIKE: &str = "#!/usr/bin/env python3
import os, signal, sys, time
def worker(n):
    leave = []
    signal.signal(signal.SIGUSR1, lambda *_: leave.append(1))
    task = 0
    while not leave:
        task += 1
        name = 'task-%d-%d' % (n, task)
        with open(name + '.part', 'w') as f:
            for step in range(10):
                f.write('step %d\\n' % step)
                f.flush()
                time.sleep(0.1)
        os.rename(name + '.part', name + '.done')
    os._exit(0)
def beat():
    def stopped(*_):
        open('beat-stopped', 'w').close()
        os._exit(0)
    signal.signal(signal.SIGTERM, stopped)
    while True:
        time.sleep(1)
workers = []
for n in range(2):
    pid = os.fork()
    if pid == 0:
        worker(n)
    workers.append(pid)
if os.fork() == 0:
    beat()
def warm_shutdown(*_):
    for w in workers:
        os.kill(w, signal.SIGUSR1)
    for w in workers:
        os.waitpid(w, 0)
    open('master-done', 'w').close()
    sys.exit(0)
signal.signal(signal.SIGTERM, warm_shutdown)
print('up', flush=True)
while True:
    time.sleep(1)
";

/// The tasks in progress: `task-*.part` files in `dir`.
fn tasks(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some(n.strip_suffix(suffix)?.to_owned()))
        .filter(|n| n.starts_with("task-"))
        .collect();
    names.sort();
    names
}

/// celery's pool workers die on TERM and lose the task at hand; TERM to the master alone lets
/// them finish it. So `stop_signal` goes to the main process first, and to the rest (beat)
/// once it has exited; `stop_mode = "group"` keeps the old all-at-once, and cuts the tasks.
#[test]
fn stop_lets_a_master_finish_its_workers_tasks_and_group_mode_cuts_them() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.script("app/master.py", CELERY_LIKE);
    let dir = env.path("app");
    for mode in ["leader", "group"] {
        for leftover in std::fs::read_dir(&dir).unwrap() {
            let path = leftover.unwrap().path();
            if path != entry {
                std::fs::remove_file(path).unwrap();
            }
        }
        let mode_line = if mode == "group" {
            "stop_mode = \"group\"\n"
        } else {
            ""
        };
        env.config(&format!(
            "entry = \"app/master.py\"\nstop_timeout = \"20s\"\n{mode_line}"
        ));
        let pid = env.keepup(&["start"]).expect(0).pid();
        wait_for("both workers at a task", || {
            let working = tasks(&dir, ".part");
            working.iter().any(|t| t.starts_with("task-0-"))
                && working.iter().any(|t| t.starts_with("task-1-"))
        });
        let stop = env.keepup(&["stop"]);
        stop.expect(0).stdout_has(&format!("({pid}) stopped"));
        assert!(
            !stop.stderr.contains("sending SIGKILL"),
            "{mode}: {stop:#?}"
        );
        assert!(env.instances(&entry).is_empty(), "{mode}");
        assert!(
            dir.join("beat-stopped").exists(),
            "{mode}: beat got no TERM"
        );
        if mode == "leader" {
            assert!(dir.join("master-done").exists());
            assert_eq!(tasks(&dir, ".part"), Vec::<String>::new(), "a task was cut");
            assert!(tasks(&dir, ".done").len() >= 2);
        } else {
            assert_eq!(
                tasks(&dir, ".part").len(),
                2,
                "group mode let the tasks finish"
            );
        }
    }
}
