//! What a service and its watcher start with: none of the caller's descriptors (a deploy
//! script's lock, stray files), and the environment of the last manual start (plus
//! `env_file`, plus `env`) at every launch; a start interrupted midway still completes and is
//! recorded; root starting another user's service with a keepup she cannot reach; a log
//! symlink another user controls. Real processes; every wait is a poll with a deadline.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid as NixPid;
use serde_json::Value;

use crate::testenv::{
    MARK, PATIENCE, Run, TestEnv, TestUser, alive, locked_pid, process_uid, sigkill, wait_for,
};

fn keepup_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keepup"))
}

fn status_of(env: &TestEnv, config: &Path) -> Value {
    let run = env.keepup_with(config, &["status", "--json"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

fn events_of(env: &TestEnv, config: &Path) -> Vec<Value> {
    let run = env.keepup_with(config, &["events", "--json", "-n", "10000"]);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

fn pid_of(value: &Value) -> Option<i32> {
    value.as_i64().and_then(|p| i32::try_from(p).ok())
}

/// The descriptors `pid` has open, by number.
fn fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// What `pid`'s descriptors lead to, with their numbers.
fn fd_targets(pid: i32) -> Vec<(i32, PathBuf)> {
    fds(pid)
        .into_iter()
        .filter_map(|fd| Some((fd, std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?)))
        .collect()
}

/// Asserts that `pid` (a service) has exactly stdin, stdout and stderr open.
#[track_caller]
fn only_std_fds(pid: i32, what: &str) {
    assert_eq!(
        fds(pid),
        [0, 1, 2],
        "{what} ({pid}) has more than 0, 1, 2: {:?}",
        fd_targets(pid)
    );
}

/// Asserts that no descriptor of any of this test's watchers leads to a file `bad` picks.
#[track_caller]
fn watchers_hold_none(env: &TestEnv, bad: impl Fn(&Path) -> bool) {
    let found = env.watchers();
    assert!(!found.is_empty(), "no watcher runs");
    for watcher in found {
        let held: Vec<(i32, PathBuf)> = fd_targets(watcher)
            .into_iter()
            .filter(|(_, target)| bad(target))
            .collect();
        assert!(
            held.is_empty(),
            "the watcher ({watcher}) holds the caller's descriptors {held:?}"
        );
    }
}

/// Waits until the python service `pid` has printed its `up PID` line into `log`: past its
/// start-up, in its loop.
#[track_caller]
fn wait_up(log: &Path, pid: i32) {
    let line = format!("up {pid}\n");
    wait_for(
        &format!("{pid} to say it is up in {}", log.display()),
        || std::fs::read_to_string(log).is_ok_and(|text| text.contains(&line)),
    );
}

/// The environment `pid` was started with.
fn environ(pid: i32) -> HashMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|v| {
            let v = String::from_utf8_lossy(v);
            let (k, v) = v.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The program `python3` on this test's PATH really runs (not a shim such as pyenv's, which
/// changes PATH on its way).
fn real_python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "python3 does not say where it is: {out:?}"
    );
    path
}

/// The service's pid once `start` (or a revival) has recorded it: alive, and the one instance.
#[track_caller]
fn recorded_instance(env: &TestEnv, entry: &Path) -> i32 {
    let mut pid = None;
    wait_for("the recorded instance", || {
        pid = locked_pid(entry).filter(|p| alive(*p) && env.instances(entry) == [*p]);
        pid.is_some()
    });
    pid.unwrap()
}

// ---------------------------------------------------------------------------------------------
// A. Descriptors.

// Old code: service and watcher inherit flock's fd on deploy.lock: then `flock -n` exits 1.
#[test]
fn a_deploy_lock_is_not_held_by_the_service_or_its_watcher() {
    require!("python3", "python3");
    require!("flock", "util-linux");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    let lock = env.path("deploy.lock");
    let log = env.path("svc.py.log");
    let check = |how: &str| {
        let free = env
            .command(Path::new("flock"))
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        assert_eq!(
            free.code(),
            Some(0),
            "{how}: deploy.lock is still locked after keepup returned"
        );
        let pid = recorded_instance(&env, &entry);
        wait_up(&log, pid);
        only_std_fds(pid, &format!("{how}: the service"));
        watchers_hold_none(&env, |target| target == lock);
    };

    // `flock FILE COMMAND`: flock holds FILE open in the command it runs.
    let run = env
        .command(Path::new("flock"))
        .arg(&lock)
        .arg(keepup_bin())
        .args(["--config", "cfg.toml", "restart", "--force"])
        .output()
        .unwrap();
    Run::from_output(&run).expect(0);
    check("flock deploy.lock keepup restart --force");

    env.keepup(&["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());

    // The shell's way: descriptor 9 locked in a subshell that becomes keepup.
    let run = env
        .command(Path::new("bash"))
        .arg("-c")
        .arg("( flock 9 && exec \"$0\" --config cfg.toml start ) 9>deploy.lock")
        .arg(keepup_bin())
        .output()
        .unwrap();
    Run::from_output(&run).expect(0);
    check("( flock 9 && exec keepup start ) 9>deploy.lock");

    env.keepup(&["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

// Old code: the caller's fds 3..=53, 10 and 251 are all open in the service (and the watcher).
#[test]
fn fifty_stray_descriptors_of_the_caller_reach_neither_service_nor_watcher() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    let stray = env.path("stray");
    std::fs::create_dir(&stray).unwrap();
    let log = env.path("svc.py.log");
    // Opens fds 10 and 251 and 50 more, all inheritable, then becomes `keepup ... start`.
    let caller = "import os, sys\n\
                  d = sys.argv[1]\n\
                  def opened(name):\n    \
                      fd = os.open(os.path.join(d, name), os.O_RDWR | os.O_CREAT, 0o644)\n    \
                      os.set_inheritable(fd, True)\n    \
                      return fd\n\
                  for target, name in ((10, 'ten'), (251, 'two-fifty-one')):\n    \
                      fd = opened(name)\n    \
                      os.dup2(fd, target)\n    \
                      os.close(fd)\n\
                  for i in range(50):\n    \
                      opened('extra-%d' % i)\n\
                  os.execv(sys.argv[2], sys.argv[2:])\n";
    let output = env
        .command(Path::new("python3"))
        .arg("-c")
        .arg(caller)
        .arg(&stray)
        .arg(keepup_bin())
        .args(["--config", "cfg.toml", "start"])
        .output()
        .unwrap();
    Run::from_output(&output).expect(0).stdout_has("started");
    let is_stray = |target: &Path| target.starts_with(&stray);

    let pid = recorded_instance(&env, &entry);
    wait_up(&log, pid);
    only_std_fds(pid, "the service");
    watchers_hold_none(&env, is_stray);

    // A revival by the watcher starts from the same clean slate.
    sigkill(pid);
    wait_for("the watcher's revival", || {
        locked_pid(&entry).is_some_and(|p| p != pid && alive(p))
    });
    let revived = recorded_instance(&env, &entry);
    assert_ne!(revived, pid);
    wait_up(&log, revived);
    only_std_fds(revived, "the revived service");
    watchers_hold_none(&env, is_stray);

    env.keepup(&["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

// ---------------------------------------------------------------------------------------------
// B. Environment.

// Old code: `start` exits 78, "unknown field `env_file`" (the key does not exist there).
#[test]
fn every_launch_gets_the_environment_of_the_last_manual_start() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.script(
        "svc.py",
        &format!(
            "#!{}\nimport time\nwhile True:\n    time.sleep(1)\n",
            real_python()
        ),
    );
    let config = env.config(
        "entry = \"svc.py\"\nenv_file = \"bot.env\"\nwatch = false\n[restart_limit]\nbackoff = \"0s\"\n",
    );
    let dotenv = |token: &str| {
        env.write(
            "bot.env",
            &format!(
                "# a comment\nexport FILE_TOKEN=\"{token}\"\nPLAIN=plain\n\
                 QUOTED='single # not a comment'\n"
            ),
        );
    };
    dotenv("x y");
    let custom_bin = env.path("mybin");
    std::fs::create_dir(&custom_bin).unwrap();
    let path = format!(
        "{}:{}",
        custom_bin.display(),
        std::env::var("PATH").unwrap()
    );
    let var = |pid: i32, key: &str| environ(pid).get(key).cloned();

    let started = env
        .command(keepup_bin())
        .env("MY_TOKEN", "abc")
        .env("PATH", &path)
        .arg("--config")
        .arg(&config)
        .arg("start")
        .output()
        .unwrap();
    Run::from_output(&started).expect(0);
    let pid = recorded_instance(&env, &entry);
    assert_eq!(var(pid, "MY_TOKEN").as_deref(), Some("abc"));
    assert_eq!(var(pid, "FILE_TOKEN").as_deref(), Some("x y"));
    assert_eq!(var(pid, "PLAIN").as_deref(), Some("plain"));
    assert_eq!(
        var(pid, "QUOTED").as_deref(),
        Some("single # not a comment")
    );
    assert_eq!(var(pid, "PATH").as_deref(), Some(path.as_str()));

    let recorded = std::fs::metadata(env.path("svc.py.env"))
        .unwrap_or_else(|e| panic!("no {}: {e}", env.path("svc.py.env").display()));
    assert_eq!(recorded.mode() & 0o777, 0o600, "svc.py.env's mode");

    let status = env.keepup(&["status"]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("  environment:")),
        "no environment line: {status:#?}"
    );
    // (The temp dir's random name could hold "abc" by chance.)
    let root = env.root.display().to_string();
    assert!(
        !status.stdout.replace(&root, "").contains("abc"),
        "status shows a value: {status:#?}"
    );

    // Revived the way cron runs the timer: its own bare environment, nothing of the start's,
    // but the user's HOME, which is the test's (keepup's record of what it keeps is there: the
    // user's real one is not this test's to write).
    let home = env.home.path().to_path_buf();
    let crontab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-crontab");
    let tick = || {
        let output = Command::new(keepup_bin())
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .env(MARK, &env.root)
            .env("KEEPUP_CRONTAB", &crontab)
            .env("FAKE_CRONTAB_FILE", env.crontab_file())
            .current_dir(&home)
            .stdin(Stdio::null())
            .args(["restart", "--timer", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        Run::from_output(&output).expect(0);
    };
    sigkill(pid);
    tick();
    let revived = recorded_instance(&env, &entry);
    assert_ne!(revived, pid);
    assert_eq!(var(revived, "MY_TOKEN").as_deref(), Some("abc"));
    assert_eq!(var(revived, "PATH").as_deref(), Some(path.as_str()));
    assert_eq!(var(revived, "FILE_TOKEN").as_deref(), Some("x y"));

    // env_file is read afresh at every launch.
    dotenv("z");
    sigkill(revived);
    tick();
    let again = recorded_instance(&env, &entry);
    assert_ne!(again, revived);
    assert_eq!(var(again, "FILE_TOKEN").as_deref(), Some("z"));
    assert_eq!(var(again, "MY_TOKEN").as_deref(), Some("abc"));

    env.keepup(&["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

// ---------------------------------------------------------------------------------------------
// C. An interrupted start.

#[derive(Clone, Copy, Debug)]
enum Interruption {
    /// SIGINT to keepup's whole process group (Ctrl-C).
    SigintToGroup,
    /// SIGKILL of the keepup process.
    Sigkill,
}

/// A service that is ready (the file `ready-flag`) 1.5 s after it starts; on SIGTERM it takes
/// the flag away, so that `restart --force` finds no ready check passing before its launch.
fn slow_ready_service(env: &TestEnv, watch: bool) -> PathBuf {
    let entry = env.script(
        "svc.py",
        &format!(
            "#!{}\nimport os, signal, sys, time\n\
             def leave(*_):\n    \
                 if os.path.exists('ready-flag'):\n        \
                     os.remove('ready-flag')\n    \
                 sys.exit(0)\n\
             signal.signal(signal.SIGTERM, leave)\n\
             time.sleep(1.5)\n\
             open('ready-flag', 'w').close()\n\
             while True:\n    time.sleep(1)\n",
            real_python()
        ),
    );
    env.config(&format!(
        "entry = \"svc.py\"\nready = \"cmd:test -e ready-flag\"\nstart_timeout = \"20s\"\n{}",
        if watch { "" } else { "watch = false\n" }
    ));
    entry
}

/// Runs `keepup ARGS` in a process group of its own, interrupts it `offset` after launch, reaps
/// it, and waits until the interrupted verb's `start` event (outcome ok) is in the history:
/// then exactly one instance runs, the pid lock's and the event's, with one watcher (none with
/// `watch = false`). The one other outcome accepted: keepup was killed before it did anything
/// at all (no new event, the same processes and pid lock as before, for 2 s). Returns whether
/// the round completed (rather than leaving everything untouched).
fn interrupted_round(
    env: &TestEnv,
    entry: &Path,
    args: &[&str],
    how: Interruption,
    offset: Duration,
    watch: bool,
) -> bool {
    let config = env.path("cfg.toml");
    let label = format!("`{}`, {how:?} at {} ms", args.join(" "), offset.as_millis());
    let seen = events_of(env, &config).len();
    let lock_before = locked_pid(entry);
    let mut before = env.own_processes();
    before.sort_unstable();

    let mut child = env
        .command(keepup_bin())
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let keepup = NixPid::from_raw(i32::try_from(child.id()).unwrap());
    // The deliberate fault timing.
    std::thread::sleep(offset);
    let sent = match how {
        Interruption::SigintToGroup => killpg(keepup, Signal::SIGINT),
        Interruption::Sigkill => kill(keepup, Signal::SIGKILL),
    };
    let status: ExitStatus = child.wait().unwrap();
    assert!(
        sent.is_ok(),
        "{label}: keepup was gone before the signal ({status})"
    );
    let killed = status.signal().is_some();

    let deadline = Instant::now() + PATIENCE;
    let mut untouched_since: Option<Instant> = None;
    loop {
        let history = events_of(env, &config);
        let new = &history[seen.min(history.len())..];
        if let Some(start) = new
            .iter()
            .find(|e| e["event"] == "start" && e["outcome"] == "ok")
        {
            let pid = pid_of(&start["pid"]).unwrap_or_else(|| panic!("{label}: {start}"));
            assert_eq!(
                env.instances(entry),
                [pid],
                "{label}: the instances are not the start event's: {new:#?}"
            );
            assert_eq!(locked_pid(entry), Some(pid), "{label}: the pid lock");
            assert_eq!(
                env.watchers().len(),
                usize::from(watch),
                "{label}: watchers {:?}",
                env.watchers()
            );
            return true;
        }
        let mut now = env.own_processes();
        now.sort_unstable();
        if killed && new.is_empty() && now == before && locked_pid(entry) == lock_before {
            let since = *untouched_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(2) {
                return false;
            }
        } else {
            untouched_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: no `start` event (outcome ok) within {PATIENCE:?} after keepup ended \
             ({status}); the round's events: {new:#?}; instances {:?}, pid lock {:?}, \
             watchers {:?}, ready-flag {}",
            env.instances(entry),
            locked_pid(entry),
            env.watchers(),
            if env.path("ready-flag").exists() {
                "present"
            } else {
                "absent"
            }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stop`: nothing left; and the flag goes, for the next round's ready check.
#[track_caller]
fn stop_and_clean(env: &TestEnv, label: &str) {
    env.keepup(&["stop"]).expect(0);
    assert!(
        env.own_processes().is_empty(),
        "{label}: stop left {:?}",
        env.own_processes()
    );
    let _ = std::fs::remove_file(env.path("ready-flag"));
}

const OFFSETS_MS: [u64; 6] = [0, 10, 20, 30, 40, 50];

fn interrupted_starts(how: Interruption) {
    let env = TestEnv::new();
    let entry = slow_ready_service(&env, true);
    let mut untouched = Vec::new();
    for ms in OFFSETS_MS {
        let offset = Duration::from_millis(ms);
        if !interrupted_round(&env, &entry, &["start"], how, offset, true) {
            untouched.push(ms);
        }
        stop_and_clean(&env, &format!("{how:?} at {ms} ms"));
    }
    eprintln!("{how:?}: keepup was gone before it acted at offsets {untouched:?} ms");
}

// Old code: from 10 ms on, the watcher launches and keeps the service; no `start` event, ever.
#[test]
fn an_interrupted_start_completes_and_is_recorded() {
    require!("python3", "python3");
    interrupted_starts(Interruption::SigintToGroup);
}

// Old code: from 10 ms on, the service runs, kept by watcher and pid lock, with no `start` event.
#[test]
fn a_killed_start_completes_and_is_recorded() {
    require!("python3", "python3");
    interrupted_starts(Interruption::Sigkill);
}

// Old code: restart --force at 20 ms: no `start` event; only `stop` (then nothing) or a revive.
#[test]
fn an_interrupted_restart_and_unwatched_start_complete_and_are_recorded() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = slow_ready_service(&env, true);
    env.keepup(&["start"]).expect(0);
    recorded_instance(&env, &entry);
    let offset = Duration::from_millis(20);
    interrupted_round(
        &env,
        &entry,
        &["restart", "--force"],
        Interruption::SigintToGroup,
        offset,
        true,
    );
    stop_and_clean(&env, "restart --force");

    slow_ready_service(&env, false);
    interrupted_round(
        &env,
        &entry,
        &["start"],
        Interruption::Sigkill,
        offset,
        false,
    );
    stop_and_clean(&env, "watch = false");
}

// ---------------------------------------------------------------------------------------------
// D. A keepup she cannot reach.

/// Alice's service in `<tmp>/app`, given to her, and a copy of keepup in `<tmp>/private/bin`,
/// where only root can reach it. Returns the config and the private keepup.
fn private_keepup_setup(env: &TestEnv, alice: &TestUser) -> (PathBuf, PathBuf) {
    env.script(
        "app/svc.py",
        "#!/usr/bin/python3\nimport time\nprint('up', flush=True)\nwhile True:\n    time.sleep(1)\n",
    );
    let config = env.write("app/cfg.toml", "entry = \"svc.py\"\n");
    // Her folder (and the fake crontab's, the temp dir); the private folder stays root's.
    alice.give(&env.root);
    let private = env.path("private");
    std::fs::create_dir_all(private.join("bin")).unwrap();
    let keepup = private.join("bin/keepup");
    // Copied by another process: a copy written here could be open for writing in a child
    // another test forks meanwhile, and running it would fail with ETXTBSY.
    let copied = Command::new("install")
        .args(["-m", "755"])
        .arg(keepup_bin())
        .arg(&keepup)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(std::fs::metadata(&private).unwrap().uid(), 0);
    (config, keepup)
}

// Old code: `start` exits 1, "cannot run the watcher <tmp>/private/bin/keepup: Permission denied".
#[test]
fn root_starts_her_watcher_with_a_keepup_she_cannot_reach() {
    require!("python3", "python3");
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    let (config, keepup) = private_keepup_setup(&env, &alice);
    let entry = env.path("app/svc.py");

    env.keepup_as(&keepup, &config, &["start"]).expect(0);
    let pid = recorded_instance(&env, &entry);
    assert_eq!(
        process_uid(pid),
        Some(alice.uid),
        "her service runs as root"
    );
    let value = status_of(&env, &config);
    assert_ne!(value["watcher"], Value::Null, "no watcher: {value}");
    let watcher = pid_of(&value["watcher"]["pid"]).unwrap_or_else(|| panic!("{value}"));
    assert!(alive(watcher), "the watcher {watcher} is not running");
    assert_eq!(process_uid(watcher), Some(alice.uid));

    sigkill(pid);
    let mut by_watcher = None;
    wait_for("the watcher's revival", || {
        by_watcher = events_of(&env, &config).iter().find_map(|e| {
            (e["event"] == "revive" && e["by"] == "watcher" && e["outcome"] == "ok")
                .then(|| pid_of(&e["pid"]))
                .flatten()
        });
        by_watcher.is_some()
    });
    let revived = recorded_instance(&env, &entry);
    assert_eq!(Some(revived), by_watcher);
    assert_ne!(revived, pid);
    assert_eq!(process_uid(revived), Some(alice.uid));

    env.keepup_as(&keepup, &config, &["stop"]).expect(0);
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
}

// Old code: exits 1 (nothing written) but says only "finding keepup's own path: Permission denied".
#[test]
fn install_timer_refuses_a_keepup_she_cannot_run() {
    require!("python3", "python3");
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    let (config, keepup) = private_keepup_setup(&env, &alice);

    env.keepup_as(&keepup, &config, &["install-timer"])
        .expect(1)
        .stderr_has(&keepup.display().to_string())
        .stderr_has("install -m 755");
    assert!(
        !env.crontab_file().exists(),
        "a crontab was written: {:?}",
        std::fs::read_to_string(env.crontab_file())
    );
}

// ---------------------------------------------------------------------------------------------
// E. The log through a symlink.

/// `svc.log` a symlink to `real.log` (an empty file), the config's log.
fn linked_log(env: &TestEnv) -> (PathBuf, PathBuf) {
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nlog = \"svc.log\"\n");
    let real = env.write("real.log", "");
    let link = env.path("svc.log");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    (link, real)
}

// Old code: (a) passes (guards that one's own link is followed); (b) starts, writes via her link.
#[test]
fn a_log_symlink_is_followed_unless_another_user_controls_it() {
    require!("python3", "python3");
    {
        let env = TestEnv::new();
        let (_, real) = linked_log(&env);
        let pid = env.keepup(&["start"]).expect(0).pid();
        wait_up(&real, pid);
        env.keepup(&["stop"]).expect(0);
        assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
    }

    if !nix::unistd::geteuid().is_root() {
        crate::testenv::skip("its part (b) needs root");
        return;
    }
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    let (link, real) = linked_log(&env);
    std::os::unix::fs::lchown(&link, Some(alice.uid), Some(alice.gid)).unwrap();
    // Everything else is root's and not writable by others.
    for path in [env.root.clone(), env.path("cfg.toml"), env.path("svc.py")] {
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.uid() == 0 && meta.mode() & 0o022 == 0, "{path:?}");
    }
    let run = env.keepup(&["start"]);
    assert_ne!(run.code, 0, "started through her link: {run:#?}");
    run.stderr_has("svc.log").stderr_has("symlink");
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(
            env.own_processes().is_empty(),
            "something runs: {:?}",
            env.own_processes()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "",
        "written through her link"
    );
}

// Old code: `env_file` was an unknown key (exit 78). A broken env_file must fail a start with
// its file and line, leave nothing kept (nor the recorded environment), and at a revival be
// said and tried again later, never counted as the service's crashes.
#[test]
fn a_broken_env_file_fails_a_start_and_never_trips_the_guard() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nenv_file = \"bot.env\"\n[restart_limit]\nburst = 2\n");
    env.write("bot.env", "TOKEN=1\nthis is not valid\n");
    env.keepup(&["start"]).expect(1).stderr_has("bot.env:2:");
    assert!(env.instances(&entry).is_empty());
    assert_eq!(locked_pid(&entry), None);
    assert!(
        !env.path("svc.py.env").exists(),
        "a failed start kept the environment"
    );

    env.write("bot.env", "TOKEN=1\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    env.write("bot.env", "TOKEN=1\nthis is not valid\n");
    sigkill(pid);
    // The watcher says why and waits; the guard (2 revivals) is never tripped by it.
    wait_for("the watcher to say why", || {
        std::fs::read_to_string(env.path("svc.py.timer.log"))
            .is_ok_and(|log| log.contains("bot.env:2:"))
    });
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let status = env.keepup(&["status"]);
        assert!(!status.stdout.contains("tripped"), "{status:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.write("bot.env", "TOKEN=2\n");
    wait_for("the revival once the env_file reads", || {
        env.instances(&entry).len() == 1
    });
    let events = env.keepup(&["events"]);
    assert!(!events.stdout.contains("guard trip"), "{events:#?}");
    env.keepup(&["stop"]).expect(0);
}
