//! Who keeps a service: one keeper for one entry, whatever configs name it, wherever its files
//! move to (a renamed entry, a release switch, a moved folder), and however a revival is
//! interrupted; and concurrent timer installs that keep every crontab line. Real processes,
//! counted by the process table; every wait is a poll with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid as NixPid;

use crate::testenv::{
    PATIENCE, Run, TestEnv, alive, cmdline, free_port, http_get, sigkill, wait_for,
};

/// `keepup --config CONFIG ARGS` in the background, for races.
fn spawn_with(env: &TestEnv, config: &Path, args: &[&str]) -> Child {
    env.keepup_command(Path::new(env!("CARGO_BIN_EXE_keepup")), config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What each of `children` said, in order.
fn finish(children: Vec<Child>) -> Vec<Run> {
    children
        .into_iter()
        .map(|c| Run::from_output(&c.wait_with_output().unwrap()))
        .collect()
}

/// The one watcher of this test. Two fail at once; none is looked for again until
/// [`PATIENCE`], since a watcher running itself afresh (exec) can be missing from `/proc` for a
/// moment.
#[track_caller]
fn one_watcher(env: &TestEnv, context: &str) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = env.watchers();
        if let [one] = seen[..] {
            return one;
        }
        assert!(
            seen.is_empty() && Instant::now() < deadline,
            "{context}: not exactly one watcher: {seen:?} {:?}",
            seen.iter().map(|p| cmdline(*p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// For `window`, looks again and again that `what` stays false; panics at the first look
/// that finds it, saying `said`.
#[track_caller]
fn never_for(window: Duration, said: &str, mut what: impl FnMut() -> Option<String>) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        if let Some(found) = what() {
            panic!("{said}: {found}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stop` with `config` succeeds and leaves none of this test's processes.
#[track_caller]
fn stop_leaves_nothing(env: &TestEnv, config: &Path, context: &str) {
    env.keepup_with(config, &["stop"]).expect(0);
    let left = env.own_processes();
    assert!(
        left.is_empty(),
        "{context}: stop left {left:?} ({:?})",
        left.iter().map(|p| cmdline(*p)).collect::<Vec<_>>()
    );
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// stdout and stderr of a run, together.
fn said(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

// --- 1. Two configs for one entry -------------------------------------------------------------

/// `svc.py`, and `a.toml` and `b.toml` that both name it, each with its own state folder.
fn two_configs(env: &TestEnv) -> (PathBuf, PathBuf, PathBuf) {
    let entry = env.python_service("svc.py", "");
    let a = env.write("a.toml", "entry = \"svc.py\"\nstate_dir = \"state-a\"\n");
    let b = env.write("b.toml", "entry = \"svc.py\"\nstate_dir = \"state-b\"\n");
    (entry, a, b)
}

// Old code: each config's state folder had its own lock: both starts started it.
#[test]
fn two_configs_starting_at_once_keep_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, a, b) = two_configs(&env);
    for round in 0..20 {
        let runs = finish(vec![
            spawn_with(&env, &a, &["start"]),
            spawn_with(&env, &b, &["start"]),
        ]);
        let (winner, loser) = match (runs[0].code, runs[1].code) {
            (0, 1) => (&a, &runs[1]),
            (1, 0) => (&b, &runs[0]),
            _ => panic!("round {round}: not one 0 and one 1: {runs:#?}"),
        };
        assert!(
            loser.stderr.contains("kept by another config") && loser.stderr.contains(&text(winner)),
            "round {round}: the refused start does not name the keeper {}: {runs:#?}",
            winner.display()
        );
        let instances = env.instances(&entry);
        assert_eq!(instances.len(), 1, "round {round}: {instances:?} {runs:#?}");
        one_watcher(&env, &format!("round {round}: {runs:#?}"));
        stop_leaves_nothing(&env, winner, &format!("round {round}"));
    }
}

// Old code: b found a's instance by the process table and took it as its own (b's start exited 0).
#[test]
fn a_second_config_for_a_kept_entry_is_refused_and_never_revives_it() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, a, b) = two_configs(&env);
    let pid = env.keepup_with(&a, &["start"]).expect(0).pid();
    for verb in [
        &["start"][..],
        &["stop"],
        &["kill"],
        &["restart"],
        &["install-timer"],
    ] {
        let run = env.keepup_with(&b, verb);
        assert!(
            run.code == 1
                && run.stderr.contains("kept by another config")
                && run.stderr.contains(&text(&a)),
            "{verb:?} with b.toml was not refused naming a.toml: {run:#?}"
        );
        assert!(alive(pid), "{verb:?} with b.toml ended {pid}: {run:#?}");
        assert_eq!(env.instances(&entry), [pid], "after {verb:?} with b.toml");
    }
    let doctor = env.keepup_with(&b, &["doctor"]);
    doctor.expect(1);
    let status = env.keepup_with(&b, &["status"]);
    status.expect(0);
    assert!(said(&status).contains(&text(&a)), "{status:#?}");

    env.keepup_with(&a, &["stop"]).expect(0);
    never_for(
        Duration::from_secs(3),
        "an instance came back after stop",
        || {
            let running = env.instances(&entry);
            (!running.is_empty()).then(|| format!("{running:?}"))
        },
    );
}

// --- 2. A renamed entry ------------------------------------------------------------------------

const LOOP: &str = "#!/bin/sh\nwhile :; do sleep 1; done\n";

/// `bot.sh` and `main.sh`, and `cfg.toml` naming `bot.sh`, started: its pid.
fn started_bot(env: &TestEnv) -> (PathBuf, PathBuf, i32) {
    let bot = env.script("bot.sh", LOOP);
    let main = env.script("main.sh", LOOP);
    env.config("entry = \"bot.sh\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(env.instances(&bot), [pid]);
    env.config("entry = \"main.sh\"\n");
    (bot, main, pid)
}

// Old code: after the rename keepup looked only for main.sh: status said stopped.
#[test]
fn a_renamed_entry_is_still_the_running_service() {
    let env = TestEnv::new();
    let (bot, main, pid) = started_bot(&env);
    let status = env.keepup(&["status"]);
    status
        .expect(0)
        .stdout_has(&pid.to_string())
        .stdout_has("main.sh")
        .stdout_has("restart --force");
    let config = env.path("cfg.toml");
    let list = env.keepup(&["list", &text(&config)]);
    list.expect(0);
    let header = list.stdout.lines().next().unwrap_or("");
    let state_at = header.find("STATE").expect("no STATE column");
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&text(&config)))
        .unwrap_or_else(|| panic!("no row for the config: {list:#?}"));
    assert!(
        row.get(state_at..)
            .is_some_and(|s| s.starts_with("running")),
        "not shown as running: {list:#?}"
    );

    env.keepup(&["restart", "--force"]).expect(0);
    assert!(!alive(pid), "restart --force left {pid}");
    assert_eq!(env.instances(&main).len(), 1, "{:?}", env.instances(&main));
    assert_eq!(env.instances(&bot), Vec::<i32>::new(), "bot.sh still runs");
    one_watcher(&env, "after restart --force");

    env.keepup(&["stop"]).expect(0);
    assert_eq!(env.instances(&main), Vec::<i32>::new(), "stop left main.sh");
    assert_eq!(env.instances(&bot), Vec::<i32>::new(), "stop left bot.sh");
    assert_eq!(env.watchers(), Vec::<i32>::new(), "stop left a watcher");
}

// Old code: stop said "main.sh is not running" and left bot.sh and its watcher running.
#[test]
fn stop_after_a_rename_ends_what_runs() {
    let env = TestEnv::new();
    let (bot, main, pid) = started_bot(&env);
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(pid), "stop left {pid}");
    assert_eq!(env.watchers(), Vec::<i32>::new(), "stop left a watcher");
    never_for(
        Duration::from_secs(3),
        "something came back after stop",
        || {
            let running = [env.instances(&bot), env.instances(&main), env.watchers()];
            running
                .iter()
                .any(|p| !p.is_empty())
                .then(|| format!("bot.sh, main.sh, watchers: {running:?}"))
        },
    );
}

// --- 3. A release switch -----------------------------------------------------------------------

/// `releases/v4` and `releases/v5`, node servers on `port` answering their version, `current`
/// at v4, and `cfg.toml` at the top naming `current/server.js`: the entry.
fn releases(env: &TestEnv, port: u16) -> PathBuf {
    for version in ["v4", "v5"] {
        env.write(
            &format!("releases/{version}/server.js"),
            &format!(
                "require('http').createServer((req, res) => res.end('{version}'))\n\
                 .listen(Number(process.env.PORT), '127.0.0.1');\n"
            ),
        );
    }
    std::os::unix::fs::symlink("releases/v4", env.path("current")).unwrap();
    env.config(&format!(
        "entry = \"current/server.js\"\nstartup = \"node {{entry}}\"\n\
         ready = \"http://127.0.0.1:{port}/\"\nenv = {{ PORT = \"{port}\" }}\n"
    ));
    env.path("current/server.js")
}

/// Points `current` at `release` in one step (a symlink at a temporary name, renamed over it).
fn switch(env: &TestEnv, release: &str) {
    let next = env.path("current.next");
    let _ = std::fs::remove_file(&next);
    std::os::unix::fs::symlink(release, &next).unwrap();
    std::fs::rename(&next, env.path("current")).unwrap();
}

/// This test's node processes.
fn nodes(env: &TestEnv) -> Vec<i32> {
    env.own_processes()
        .into_iter()
        .filter(|p| {
            let argv = cmdline(*p);
            argv.first().is_some_and(|a| a.ends_with("node"))
                || argv.iter().any(|w| w.contains("server.js"))
        })
        .collect()
}

/// The pid locks left in either release (or where `current` points).
fn release_locks(env: &TestEnv) -> Vec<PathBuf> {
    ["releases/v4", "releases/v5", "current"]
        .iter()
        .map(|d| env.path(d).join("server.js.pid"))
        .filter(|p| p.exists())
        .collect()
}

/// After a `restart --timer`, for three seconds: no node process.
fn no_node_for_3s(env: &TestEnv) {
    never_for(Duration::from_secs(3), "node runs again", || {
        let running = nodes(env);
        (!running.is_empty()).then(|| format!("{running:?}"))
    });
}

// Old code: the pid lock stayed in releases/v4, looked for in v5 after the switch: no revival.
#[test]
fn a_crash_after_a_release_switch_revives_the_new_release() {
    require!("node", "nodejs");
    let env = TestEnv::new();
    let port = free_port();
    let entry = releases(&env, port);
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(http_get(port).as_deref(), Some("v4"));

    switch(&env, "releases/v5");
    sigkill(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http_get(port);
        if answer.as_deref() == Some("v5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no v5 within 10 s of the crash (last answer {answer:?}; nodes {:?})",
            nodes(&env)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let instances = env.instances(&entry);
    assert_eq!(instances.len(), 1, "{instances:?}");
    one_watcher(&env, "after the revival");
    wait_for("a revive event", || {
        env.keepup(&["events"]).stdout.contains("revive")
    });

    env.keepup(&["stop"]).expect(0);
    assert_eq!(nodes(&env), Vec::<i32>::new(), "stop left node");
    a_rollback_revives_nothing(&env);
}

/// After `stop`: no pid lock is left in any release, so switching back to v4 and the timer's
/// tick start nothing.
fn a_rollback_revives_nothing(env: &TestEnv) {
    assert_eq!(release_locks(env), Vec::<PathBuf>::new(), "a pid lock left");
    switch(env, "releases/v4");
    env.keepup(&["restart", "--timer"]).expect(0);
    no_node_for_3s(env);
}

// Old code: stop after the switch left v4's pid lock, so the rollback's tick revived v4.
#[test]
fn stop_after_a_release_switch_stops_it_and_a_rollback_never_resurrects_it() {
    require!("node", "nodejs");
    let env = TestEnv::new();
    let port = free_port();
    releases(&env, port);
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(http_get(port).as_deref(), Some("v4"));

    switch(&env, "releases/v5");
    let stop = env.keepup(&["stop"]);
    stop.expect(0);
    assert!(!stop.stdout.contains("not running"), "{stop:#?}");
    assert!(!alive(pid), "stop left v4 ({pid}) running: {stop:#?}");
    a_rollback_revives_nothing(&env);
}

// --- 4. A moved folder -------------------------------------------------------------------------

/// `app/svc.py` and `app/cfg.toml`, started from there: its pid.
fn started_app(env: &TestEnv) -> (PathBuf, i32) {
    let entry = env.python_service("app/svc.py", "");
    env.write("app/cfg.toml", "entry = \"svc.py\"\n");
    let pid = env
        .keepup_with(&env.path("app/cfg.toml"), &["start"])
        .expect(0)
        .pid();
    std::fs::rename(env.path("app"), env.path("app2")).unwrap();
    (entry, pid)
}

// Old code: the watcher took its lock at the old path, making the folder `app` again.
#[test]
fn a_moved_folder_is_never_recreated_and_start_from_the_new_place_takes_over() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, pid) = started_app(&env);
    let moved = env.path("app2/cfg.toml");
    sigkill(pid);
    never_for(Duration::from_secs(3), "the old folder is back", || {
        env.path("app").exists().then(|| text(&env.path("app")))
    });

    let mut status = None;
    wait_for("status to say the revival failed (gone)", || {
        let run = env.keepup_with(&moved, &["status"]);
        assert!(!said(&run).contains("kept by another config"), "{run:#?}");
        let gone = said(&run).contains("gone");
        status = Some(run);
        gone
    });
    status.unwrap().expect(1);

    env.keepup_with(&moved, &["start"]).expect(0);
    let instances = env.instances(&entry);
    assert_eq!(instances.len(), 1, "{instances:?}");
    one_watcher(&env, "after start from app2");
    stop_leaves_nothing(&env, &moved, "after start from app2");
}

// Old code: start from app2 adopted it but left the old watcher running beside its new one.
#[test]
fn start_from_a_moved_folder_takes_over_the_running_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, pid) = started_app(&env);
    let moved = env.path("app2/cfg.toml");
    env.keepup_with(&moved, &["start"])
        .expect(0)
        .stdout_has(&pid.to_string());
    assert_eq!(env.instances(&entry), [pid]);
    one_watcher(&env, "after start from app2");
    let status = env.keepup_with(&moved, &["status"]);
    status.expect(0);
    assert!(
        !said(&status).contains("kept by another config"),
        "{status:#?}"
    );

    sigkill(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.instances(&entry).iter().any(|p| *p != pid) {
        assert!(
            Instant::now() < deadline,
            "not revived within 5 s (app exists: {})",
            env.path("app").exists()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!env.path("app").exists(), "the old folder is back");
    stop_leaves_nothing(&env, &moved, "after the revival from app2");
}

// --- 5. A watcher killed mid-revival ------------------------------------------------------------

/// This test's `sleep 1000` processes: the service, once `run.sh` has exec'd it.
fn sleeps(env: &TestEnv) -> Vec<i32> {
    env.own_processes()
        .into_iter()
        .filter(|p| cmdline(*p) == ["sleep", "1000"])
        .collect()
}

/// One round: the service is killed, and its watcher `round` × 25 ms later (whatever it has done
/// of the revival by then); the timer's tick must leave exactly one instance, and `stop` nothing.
fn kill_the_watcher_mid_revival(env: &TestEnv, round: u32) {
    let pid = env.keepup(&["start"]).expect(0).pid();
    wait_for("the service to exec sleep", || sleeps(env) == [pid]);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("run.sh.watcher")).unwrap())
            .unwrap();
    let watcher = i32::try_from(record["pid"].as_i64().expect("no pid in run.sh.watcher")).unwrap();
    assert_eq!(one_watcher(env, &format!("round {round}")), watcher);

    kill(NixPid::from_raw(pid), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let offset = Duration::from_millis(25) * round;
    // The fault's timing, not a wait for a state: the watcher dies `offset` into the revival.
    std::thread::sleep((killed + offset).saturating_duration_since(Instant::now()));
    let _ = kill(NixPid::from_raw(watcher), Signal::SIGKILL);
    wait_for("the killed watcher to go", || !alive(watcher));

    let tick = env.keepup(&["restart", "--timer"]);
    let running = sleeps(env);
    assert_eq!(
        running.len(),
        1,
        "round {round} (watcher killed {offset:?} after the service): {running:?} {tick:#?}"
    );
    stop_leaves_nothing(env, &env.path("cfg.toml"), &format!("round {round}"));
}

// Old code: the tick missed the instance a killed watcher half-launched, and started a second.
#[test]
fn a_watcher_killed_during_a_revival_never_doubles_the_service() {
    // Each round holds about two seconds of confirmations (start, the tick's revival): forty of
    // them run in four lanes at once, each lane its own temp dir, 10 rounds one after another.
    const LANES: u32 = 4;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                scope.spawn(move || {
                    let env = TestEnv::new();
                    env.script("run.sh", "#!/bin/sh\nexec sleep 1000\n");
                    env.config("entry = \"run.sh\"\n[restart_limit]\nbackoff = \"0s\"\n");
                    for round in (lane..40).step_by(LANES as usize) {
                        kill_the_watcher_mid_revival(&env, round);
                    }
                })
            })
            .collect();
        lanes
            .into_iter()
            .filter_map(|lane| lane.join().err())
            .map(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// --- 6. Concurrent timer installs ----------------------------------------------------------------

/// The user's own crontab, which every install and uninstall must keep byte for byte.
const USER_CRONTAB: &str = "# my jobs\nMAILTO=\"\"\n*/5 * * * * echo hi % there\n\n";

// Old code: each config locked only its own files: concurrent installs lost each other's lines.
#[test]
fn ten_timer_installs_at_once_keep_every_line() {
    let env = TestEnv::new();
    let configs: Vec<PathBuf> = (0..10)
        .map(|i| {
            env.python_service(&format!("s{i}.py"), "");
            env.write(&format!("c{i}.toml"), &format!("entry = \"s{i}.py\"\n"))
        })
        .collect();
    let crontab = env.crontab_file();
    let all = |verb: &str| {
        finish(
            configs
                .iter()
                .map(|c| spawn_with(&env, c, &[verb]))
                .collect(),
        )
    };
    for round in 0..20 {
        std::fs::write(&crontab, USER_CRONTAB).unwrap();
        let runs = all("install-timer");
        assert!(runs.iter().all(|r| r.code == 0), "round {round}: {runs:#?}");
        let installed = std::fs::read_to_string(&crontab).unwrap();
        let ours: Vec<&str> = installed
            .lines()
            .filter(|l| l.contains("# keepup-timer "))
            .collect();
        assert_eq!(ours.len(), 10, "round {round}:\n{installed}");
        for config in &configs {
            let marker = format!("# keepup-timer {}", config.display());
            assert_eq!(
                ours.iter().filter(|l| l.ends_with(&marker)).count(),
                1,
                "round {round}: {marker}:\n{installed}"
            );
        }
        let theirs: String = installed
            .split_inclusive('\n')
            .filter(|l| !l.contains("# keepup-timer "))
            .collect();
        assert_eq!(
            theirs, USER_CRONTAB,
            "round {round}: the user's lines changed"
        );

        let runs = all("uninstall-timer");
        assert!(runs.iter().all(|r| r.code == 0), "round {round}: {runs:#?}");
        let after = std::fs::read_to_string(&crontab).unwrap();
        assert_eq!(
            after, USER_CRONTAB,
            "round {round}: not the user's crontab again"
        );
    }
}

// Old code: `uninstall-timer` with the moved config's old path exited 78 (no such config file),
// so the old line could never be removed and `list` showed it broken for good.
#[test]
fn a_moved_configs_timer_line_can_still_be_removed() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("app/svc.py", "");
    let old = env.write("app/cfg.toml", "entry = \"svc.py\"\n");
    env.keepup_with(&old, &["install-timer"]).expect(0);
    std::fs::rename(env.path("app"), env.path("app2")).unwrap();
    let new = env.path("app2/cfg.toml");
    env.keepup_with(&new, &["install-timer"]).expect(0);
    env.keepup_with(&old, &["uninstall-timer"])
        .expect(0)
        .stdout_has("removed");
    let crontab = std::fs::read_to_string(env.crontab_file()).unwrap();
    let lines: Vec<&str> = crontab
        .lines()
        .filter(|l| l.contains("keepup-timer"))
        .collect();
    assert_eq!(lines.len(), 1, "{crontab}");
    assert!(lines[0].ends_with(&text(&new)), "{crontab}");
    assert!(!env.path("app").exists(), "the old folder is back");
}
