//! Stopping and killing reach the whole process group and return only when it is gone; a
//! service that dies at once fails `start` clearly and leaves no lock.

use std::time::{Duration, Instant};

use crate::testenv::{TestEnv, alive, locked_pid, wait_for};

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
    env.keepup(&["status"]).expect(3);
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

/// Apache stops gracefully on WINCH: any signal the system defines may be `stop_signal`.
#[test]
fn stop_signal_may_be_any_signal_the_system_defines() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service(
        "svc.py",
        "def graceful(*_):\n    open('graceful', 'w').write('WINCH')\n    sys.exit(0)\n\
         signal.signal(signal.SIGWINCH, graceful)\nprint('handles WINCH', flush=True)",
    );
    env.config("entry = \"svc.py\"\nstop_signal = \"SIGWINCH\"\nstop_timeout = \"20s\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    wait_for("the WINCH handler", || {
        std::fs::read_to_string(env.path("svc.py.log")).is_ok_and(|l| l.contains("handles WINCH"))
    });
    let stop = env.keepup(&["stop"]);
    stop.expect(0).stdout_has(&format!("({pid}) stopped"));
    assert!(!stop.stderr.contains("SIGKILL"), "{stop:#?}");
    assert_eq!(
        std::fs::read_to_string(env.path("graceful"))
            .ok()
            .as_deref(),
        Some("WINCH")
    );
}
