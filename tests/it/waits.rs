//! A command that waits longer than a second says once, on stderr, what it waits for (one line
//! in a pipe, as here); a command that does not wait says nothing more.

use crate::testenv::{Run, TestEnv, wait_for};

/// The lines of `run`'s stderr that say it waits.
fn waits(run: &Run) -> Vec<&str> {
    assert!(
        !run.stderr.contains('\r'),
        "a terminal's line in a pipe: {run:#?}"
    );
    run.stderr
        .lines()
        .filter(|l| l.contains("waiting for"))
        .collect()
}

#[test]
fn kill_behind_a_stop_says_once_that_it_waits_for_that_stop() {
    // A `kill` behind a `stop` that waited out a service ignoring TERM sat 3 s without a word,
    // and so did the stop.
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "signal.signal(signal.SIGTERM, signal.SIG_IGN)");
    env.config("entry = \"svc.py\"\nstop_timeout = \"3s\"\n");
    env.keepup(&["start"]).expect(0);
    let stop = env.keepup_spawn(&["stop"]);
    // It removes the pid lock under the operation lock, then waits out stop_timeout.
    wait_for("the stop to begin", || !env.path("svc.py.pid").exists());
    let kill = env.keepup(&["kill"]);
    let stop_pid = stop.id();
    let stop = Run::from_output(&stop.wait_with_output().unwrap());
    stop.expect(0);
    kill.expect(0);
    let said = waits(&kill);
    assert_eq!(said.len(), 1, "{kill:#?}");
    assert!(
        said[0].starts_with("keepup: waiting for another keepup acting on svc.py to finish")
            && said[0].contains(&format!("(pid {stop_pid}: "))
            && said[0].contains(" stop"),
        "it does not name the stop it waits for: {kill:#?}"
    );
    // The stop itself waited out stop_timeout: it says what for, once.
    assert_eq!(waits(&stop).len(), 1, "{stop:#?}");
    assert!(
        waits(&stop)[0].starts_with("keepup: waiting for svc.py (")
            && waits(&stop)[0].ends_with(") to end on SIGTERM (SIGKILL after stop_timeout, 3s)"),
        "{stop:#?}"
    );
}

#[test]
fn start_with_a_slow_ready_check_says_once_that_it_waits_for_the_check_and_its_deadline() {
    // A `start` whose ready check took its time said nothing until it passed.
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "time.sleep(2)\nopen('ready.flag', 'w').close()");
    env.config("entry = \"svc.py\"\nready = \"cmd:test -f ready.flag\"\nstart_timeout = \"20s\"\n");
    let start = env.keepup(&["start"]);
    start.expect(0).stdout_has("started");
    assert_eq!(
        waits(&start),
        [
            "keepup: waiting for svc.py to pass its ready check, ready = \"cmd:test -f \
             ready.flag\", for up to 20s (start_timeout)"
        ],
        "{start:#?}"
    );
    // Commands that do not wait say nothing more.
    for args in [&["status"][..], &["restart"], &["stop"]] {
        let run = env.keepup(args);
        assert!(waits(&run).is_empty(), "{run:#?}");
    }
}
