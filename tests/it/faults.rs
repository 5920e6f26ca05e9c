//! Calm under faults: nothing lost, nothing hung, and every message says what to do.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use crate::testenv::{TestEnv, free_port, wait_for};

/// The example server, copied into the test's folder, on a port of its own.
fn example_server(env: &TestEnv) -> (std::path::PathBuf, u16) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("server/runserver.py");
    let entry = env.script("runserver.py", &std::fs::read_to_string(source).unwrap());
    let port = free_port();
    env.config(&format!(
        "entry = \"runserver.py\"\nready = \"http://127.0.0.1:{port}/\"\n[env]\nPORT = \"{port}\"\n"
    ));
    (entry, port)
}

#[test]
fn the_http_probe_leaves_nothing_alarming_in_the_example_log() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, _) = example_server(&env);
    // Before the fix, one start in two to six logged a ConnectionResetError traceback.
    for _ in 0..20 {
        env.keepup(&["start"]).expect(0).stdout_has("started");
        env.keepup(&["stop"]).expect(0);
    }
    let log = std::fs::read_to_string(format!("{}.log", entry.display())).unwrap();
    assert!(log.contains("\"GET / HTTP/1.0\" 200"), "{log}");
    for alarming in ["Traceback", "Error", "reset"] {
        assert!(!log.contains(alarming), "{alarming} in the log:\n{log}");
    }
}

#[test]
fn a_cmd_check_may_take_until_the_start_deadline() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nready = \"cmd:sleep 3\"\nstart_timeout = \"10s\"\n");
    let began = Instant::now();
    env.keepup(&["start"]).expect(0).stdout_has("started");
    assert!(began.elapsed().as_secs_f64() >= 3.0);
    env.keepup(&["stop"]).expect(0);
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_full_disk_during_rotation_leaves_every_log_as_it_was() {
    require!("python3", "python3");
    if !is_root() {
        crate::testenv::skip("needs root to mount a small tmpfs in a private mount namespace");
        return;
    }
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    std::fs::create_dir(env.path("disk")).unwrap();
    env.config(
        "entry = \"svc.py\"\nlog = \"disk/svc.log\"\nlog_max_size = \"16KB\"\nlog_keep = 3\n",
    );
    // Inside its own mount namespace, the test's folder gets a 256 KiB disk holding a log due
    // for rotation, three rotated copies, and a filler that takes every free byte.
    let script = r#"
        set -e
        mount -t tmpfs -o size=256k tmpfs disk
        seq 1 4000 | sed 's/^/live line /' > disk/svc.log
        for n in 1 2 3; do seq 1 600 | sed "s/^/copy $n line /" > disk/svc.log.$n; done
        dd if=/dev/zero of=disk/filler bs=4096 2>/dev/null || true
        echo BEFORE; md5sum disk/svc.log*
        for run in 1 2 3; do "$KEEPUP" restart --timer --config cfg.toml >> timer.log 2>&1 || true; done
        echo AFTER; md5sum disk/svc.log*; ls -a disk
    "#;
    let output = env
        .command(Path::new("unshare"))
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("KEEPUP", env!("CARGO_BIN_EXE_keepup"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:#?}");
    let (before, after) = out.split_once("AFTER").unwrap();
    let before = before.trim_start_matches("BEFORE").trim();
    assert!(after.trim().starts_with(before), "the logs changed:\n{out}");
    assert!(
        !after.contains(".rotating"),
        "a temporary file was left:\n{out}"
    );
    let timer_log = std::fs::read_to_string(env.path("timer.log")).unwrap();
    assert_eq!(
        timer_log.matches("not rotated").count(),
        1,
        "said once per episode:\n{timer_log}"
    );
    let events = env.keepup(&["events"]);
    events.expect(0).stdout_has("rotate").stdout_has("failed");
}

/// `logs -f` while the log is rotated six times: what it printed is exactly what the log and
/// its rotated copies hold, from its first line to the end, each line once, in order.
fn follow_across_rotations(log_dir: &Path) {
    let env = TestEnv::new();
    env.python_service(
        "svc.py",
        "i = 0\nwhile True:\n    print('line %08d' % i, flush=True)\n    i += 1\n    time.sleep(0.0005)",
    );
    let log = log_dir.join("svc.log");
    env.config(&format!(
        "entry = \"svc.py\"\nlog = \"{}\"\nlog_max_size = \"8KB\"\nlog_keep = 20\nstop_timeout = \"5s\"\n",
        log.display()
    ));
    env.keepup(&["start"]).expect(0);
    let printed = env.path("followed.txt");
    let mut follower = env
        .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
        .args(["--config", "cfg.toml", "logs", "-f", "-n", "0"])
        .stdout(std::fs::File::create(&printed).unwrap())
        .spawn()
        .unwrap();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    for n in 1..=6 {
        wait_for("the log to outgrow log_max_size", || size(&log) > 8 * 1024);
        env.keepup(&["restart"]).expect(0);
        let copy = format!("{}.{n}", log.display());
        assert!(Path::new(&copy).exists(), "rotation {n} made no {copy}");
    }
    env.keepup(&["stop"]).expect(0);
    let on_disk = || {
        let mut all = String::new();
        for n in (1..=20).rev() {
            all += &std::fs::read_to_string(format!("{}.{n}", log.display())).unwrap_or_default();
        }
        all + &std::fs::read_to_string(&log).unwrap()
    };
    let all = on_disk();
    wait_for("the follower to reach the end", || {
        std::fs::read_to_string(&printed).is_ok_and(|p| all.ends_with(&p) && p.len() > 1000)
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let text = std::fs::read_to_string(&printed).unwrap();
    assert!(
        text.starts_with("line "),
        "began mid-line: {:?}",
        &text[..40]
    );
    let first = text.lines().next().unwrap();
    let from = all.find(first).unwrap();
    assert_eq!(&all[from..], text, "lines lost, doubled or broken");
    assert!(std::path::PathBuf::from(format!("{}.6", log.display())).exists());
}

#[test]
fn logs_follow_prints_every_line_once_across_collapsing_rotations() {
    require!("python3", "python3");
    let dir = tempfile::tempdir().unwrap();
    follow_across_rotations(dir.path());
}

#[test]
fn logs_follow_prints_every_line_once_across_truncating_rotations() {
    require!("python3", "python3");
    // tmpfs cannot collapse a file's start: rotation copies and truncates there.
    let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
        crate::testenv::skip("no /dev/shm (tmpfs) to rotate a log on");
        return;
    };
    follow_across_rotations(dir.path());
}

#[test]
fn logs_follow_starts_at_a_line_boundary_while_the_service_writes_half_a_line() {
    // `logs -f` took the log's length as where to follow from while the service was between
    // the two halves of a line (under load, the kernel grows the file a page at a time): its
    // tail showed the first half as a line, and the follower began with the second.
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service(
        "svc.py",
        "print('whole line', flush=True)\nsys.stdout.write('first half ')\nsys.stdout.flush()\n\
         while not os.path.exists('go'):\n    time.sleep(0.01)\n\
         print('second half', flush=True)",
    );
    env.config("entry = \"svc.py\"\n");
    env.keepup(&["start"]).expect(0);
    let log = env.path("svc.py.log");
    wait_for("the first half of the line", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.ends_with("first half "))
    });
    let printed = env.path("followed.txt");
    let mut follower = env
        .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
        .args(["--config", "cfg.toml", "logs", "-f", "-n", "1"])
        .stdout(std::fs::File::create(&printed).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&printed).unwrap_or_default();
    wait_for("the tail", || !read().is_empty());
    env.write("go", "");
    wait_for("the lines after it", || read().contains("\nup "));
    let _ = follower.kill();
    let _ = follower.wait();
    let text = read();
    assert!(
        text.starts_with("whole line\nfirst half second half\nup "),
        "a line was broken: {text:?}"
    );
}

/// Runs keepup with a deadline: a hang is a failure, not a stuck test.
fn keepup_within(env: &TestEnv, config: &Path, args: &[&str]) -> crate::testenv::Run {
    let mut child = env
        .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keepup {args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    crate::testenv::Run::from_output(&child.wait_with_output().unwrap())
}

#[test]
fn a_torn_last_line_does_not_swallow_the_next_event() {
    // A write cut short by a full disk left `{"time` without its newline; the next event was
    // appended to it, and `events` passed over both without a word.
    let env = TestEnv::new();
    env.script("svc.sh", "#!/bin/sh\nexec sleep 600\n");
    env.config("entry = \"svc.sh\"\n");
    env.write("svc.sh.events", "{\"time");
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    let text = env.keepup(&["events"]);
    text.expect(0)
        .stdout_has("kill")
        .stdout_has("not running")
        .stderr_has("1 line of ")
        .stderr_has("svc.sh.events could not be read");
    assert_eq!(text.stdout.lines().count(), 1, "{text:#?}");
    // `--json`: stdout stays an array of events, the count goes to stderr.
    let json = env.keepup(&["events", "--json"]);
    json.expect(0).stderr_has("1 line of ");
    let events: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{json:#?}");
    assert_eq!(events[0]["event"], "kill", "{json:#?}");
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

#[test]
fn a_fifo_where_a_file_should_be_never_hangs_keepup() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    // A FIFO as the log: a clear error naming it, nothing started.
    fifo(&env.path("svc.py.log"));
    let config = env.config("entry = \"svc.py\"\nstop_timeout = \"5s\"\n");
    keepup_within(&env, &config, &["start"])
        .expect(1)
        .stderr_has("svc.py.log is a FIFO")
        .stderr_has("rm ");
    assert!(env.instances(&entry).is_empty());
    std::fs::remove_file(env.path("svc.py.log")).unwrap();

    // A FIFO at the event history: the service starts, the history is said to be unwritable,
    // and the next command is not stuck behind the first.
    let _ = std::fs::remove_file(env.path("svc.py.events"));
    fifo(&env.path("svc.py.events"));
    keepup_within(&env, &config, &["start"])
        .expect(0)
        .stderr_has("svc.py.events is a FIFO");
    keepup_within(&env, &config, &["status"]).expect(0);
    keepup_within(&env, &config, &["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());

    // A FIFO as the operation lock (in the record of what keepup keeps, under HOME).
    std::fs::remove_file(env.path("svc.py.events")).unwrap();
    let locks = env.home.path().join(".local/state/keepup/locks");
    let mut found = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().path());
    let (Some(lock), None) = (found.next(), found.next()) else {
        panic!("not one operation lock in {}", locks.display());
    };
    std::fs::remove_file(&lock).unwrap();
    fifo(&lock);
    keepup_within(&env, &config, &["start"])
        .expect(1)
        .stderr_has(&format!("{} is a FIFO", lock.display()));
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn a_non_executable_entry_is_named_with_the_fix() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.write(
        "svc.py",
        "#!/usr/bin/env python3\nimport time\ntime.sleep(100)\n",
    );
    env.config("entry = \"svc.py\"\n");
    env.keepup(&["start"])
        .expect(1)
        .stderr_has(&format!("{} is not executable", entry.display()))
        .stderr_has("chmod +x")
        .stderr_has("startup = \"python3 {entry}\"");
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn a_script_without_a_shebang_is_named_with_the_fix() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.script("svc.py", "import time\ntime.sleep(100)\n");
    env.config("entry = \"svc.py\"\n");
    let start = env.keepup(&["start"]);
    start
        .expect(1)
        .stderr_has("no #! line")
        .stderr_has("/bin/sh")
        .stderr_has("#!/usr/bin/env python3");
    assert!(!start.stderr.contains("not found"), "{start:#?}");
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn proc_exe_for_a_script_is_refused_at_load() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nsearch = \"proc_exe\"\n");
    let began = Instant::now();
    env.keepup(&["start"])
        .expect(78)
        .stderr_has("`search`")
        .stderr_has("native binaries")
        .stderr_has("\"auto\" or \"proc_cwd\"");
    assert!(
        began.elapsed().as_secs_f64() < 2.0,
        "refused only after start_timeout"
    );
}

#[test]
fn a_directory_as_the_pid_lock_is_named_on_stderr_with_the_fix() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    std::fs::create_dir(env.path("svc.py.pid")).unwrap();
    let lock = env.path("svc.py.pid").display().to_string();
    env.keepup(&["restart"])
        .expect(1)
        .stderr_has(&lock)
        .stderr_has("is a directory")
        .stderr_has(&format!("rmdir {lock}"));
}

#[test]
fn durations_and_counts_read_as_a_person_writes_them() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nready = \"cmd:sleep 30\"\nstart_timeout = \"1700ms\"\n");
    let start = env.keepup(&["start"]);
    start.expect(1).stderr_has("not ready within 1.7s");
    for noise in ["ms ", "us ", "ns"] {
        assert!(!start.stderr.contains(noise), "{noise:?} in {start:#?}");
    }
    assert!(env.instances(&entry).is_empty());

    env.config("entry = \"svc.py\"\nwatch = false\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    crate::testenv::sigkill(pid);
    env.keepup(&["restart"]).expect(0).stdout_has("revived");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("1 revival in the last 24 h");
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn stop_in_a_read_only_folder_stops_nothing_and_says_why() {
    require!("python3", "python3");
    let Some(alice) = crate::testenv::TestUser::new() else {
        return;
    };
    let env = TestEnv::new();
    let entry = env.script(
        "app/svc.py",
        "#!/usr/bin/python3\nimport time\nwhile True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"app/svc.py\"\nstop_timeout = \"5s\"\n");
    alice.give(&env.root);
    let pid = alice.keepup(&env, &["start"]).expect(0).pid();
    let folder = env.path("app");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();

    let stop = alice.keepup(&env, &["stop"]);
    stop.expect(1)
        .stderr_has(&format!("{}.pid", entry.display()))
        .stderr_has("was not stopped");
    assert!(crate::testenv::alive(pid), "the service was stopped anyway");
    assert_eq!(crate::testenv::locked_pid(&entry), Some(pid), "lock lost");
    let events = alice.keepup(&env, &["events", "-n", "1"]);
    events.expect(0).stdout_has("stop").stdout_has("failed");

    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    alice.keepup(&env, &["stop"]).expect(0);
    assert!(!crate::testenv::alive(pid));
}
