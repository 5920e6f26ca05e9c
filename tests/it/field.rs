//! Trust in the field: the shapes real deployments have. Never the wrong process, never a second
//! instance: orphaned workers, developer tools, symlinked releases, a port someone else holds, a
//! deleted entry, a changed config, two configs for one entry, a service that daemonizes.

use std::net::TcpListener;
use std::path::Path;

use std::process::Stdio;

use crate::testenv::{
    TestEnv, alive, cmdline, cwd, free_port, group_of, locked_pid, sigkill, wait_for,
};

/// A Python service that forks `workers` children (same process group) which sleep forever.
fn forking_service(env: &TestEnv, relative: &str, workers: usize) -> std::path::PathBuf {
    env.python_service(
        relative,
        &format!(
            "for _ in range({workers}):\n    if os.fork() == 0:\n        \
             while True:\n            time.sleep(1)\n"
        ),
    )
}

/// Live children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| alive(*p) && crate::testenv::parent_of(*p) == Some(pid))
        .collect()
}

#[test]
fn orphaned_workers_are_leftovers_never_the_service() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = forking_service(&env, "svc.py", 2);
    env.config(
        "entry = \"svc.py\"\nstop_timeout = \"2s\"\nwatch = false\n[restart_limit]\nbackoff = \"0s\"\n",
    );
    let leader = env.keepup(&["start"]).expect(0).pid();
    wait_for("two workers", || children(leader).len() == 2);
    let workers = children(leader);
    // The OOM killer's way: the leader alone.
    sigkill(leader);

    let status = env.keepup(&["status"]);
    status.expect(1).stdout_has("dead").stdout_has("leftovers:");
    for worker in &workers {
        status.stdout_has(&worker.to_string());
    }
    assert!(!status.stdout.contains("running"), "{status:#?}");

    // The timer's revival ends the leftovers first, then starts the program afresh.
    let revived = env.keepup(&["restart", "--timer"]);
    let pid = revived.expect(0).stdout_has("revived").pid();
    assert!(
        !workers.contains(&pid),
        "a worker was taken for the service"
    );
    for worker in &workers {
        assert!(!alive(*worker), "leftover {worker} survived the revival");
    }
    assert_eq!(locked_pid(&entry), Some(pid));
    wait_for("the new generation's workers", || children(pid).len() == 2);
    let events = env.keepup(&["events"]);
    events
        .stdout_has("leftovers")
        .stdout_has(&leader.to_string());

    // `stop` ends the leftovers too, when the leader alone died again.
    let workers = children(pid);
    sigkill(pid);
    env.keepup(&["stop"])
        .expect(0)
        .stdout_has("not running")
        .stderr_has("ended");
    for worker in &workers {
        assert!(!alive(*worker), "stop left worker {worker}");
    }
    assert!(env.instances(&entry).is_empty());
    assert_eq!(locked_pid(&entry), None);

    // And `kill` (SIGKILL), keeping the lock.
    let pid = env.keepup(&["start"]).expect(0).pid();
    wait_for("workers", || children(pid).len() == 2);
    let workers = children(pid);
    sigkill(pid);
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    for worker in &workers {
        assert!(!alive(*worker), "kill left worker {worker}");
    }
    assert_eq!(locked_pid(&entry), Some(pid), "kill keeps the lock");
}

#[test]
fn developer_tools_naming_the_entry_are_never_the_service() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = env.python_service("app/bot.py", "");
    env.script(
        "tools/pylint",
        "#!/usr/bin/env python3\nimport time\nwhile True:\n    time.sleep(1)\n",
    );
    env.write(
        "app/bot.js",
        "#!/usr/bin/env node\nsetInterval(() => {}, 1000);\n",
    );
    env.write("tools/eslint.js", "setInterval(() => {}, 1000);\n");
    env.config("entry = \"app/bot.py\"\n");
    let app = env.path("app");
    let tools = [
        env.spawn(
            &app,
            "python3",
            &["-c", "import time; time.sleep(1000)", "bot.py"],
        ),
        env.spawn(
            &app,
            "python3",
            &[env.path("tools/pylint").to_str().unwrap(), "bot.py"],
        ),
        env.spawn(
            &env.root.clone(),
            "python3",
            &[
                "-c",
                "import time; time.sleep(1000)",
                entry.to_str().unwrap(),
            ],
        ),
    ];
    wait_for("the tools to run", || {
        tools.iter().all(|p| running_python(*p))
    });
    env.keepup(&["status"]).expect(3).stdout_has("stopped");
    let pid = env.keepup(&["start"]).expect(0).stdout_has("started").pid();
    assert!(!tools.contains(&pid));
    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
    for tool in tools {
        assert!(alive(tool), "a tool ({tool}) was signalled");
    }

    // node running eslint.js on the entry is not the service either.
    let eslint = crate::testenv::have("node", "nodejs").then(|| {
        let node_cfg = env.write("node.toml", "entry = \"app/bot.js\"\n");
        let eslint = env.spawn(&app, "node", &["../tools/eslint.js", "bot.js"]);
        wait_for("eslint", || alive(eslint));
        env.keepup_with(&node_cfg, &["status"])
            .expect(3)
            .stdout_has("stopped");
        eslint
    });

    // Still recognised: the entry as the program the interpreter runs.
    let by_hand = env.spawn(&app, "python3", &["-u", "./bot.py"]);
    wait_for("the hand-started bot", || running_python(by_hand));
    adopted_then_stopped(&env, by_hand);
    assert!(eslint.is_none_or(alive), "eslint was signalled");
}

/// `startup` names its program through a version manager's shim (a script that execs the
/// real program, whose `argv[0]` carries the same name, as pyenv's `python3` does): a copy
/// started by hand the same way, in the entry's folder, is adopted, not doubled.
#[test]
fn a_copy_started_through_a_shim_is_adopted_not_doubled() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap();
    let shim = env.script(
        "bin/python3",
        &format!("#!/bin/sh\nexec '{}' \"$@\"\n", python.trim()),
    );
    env.write("index.html", "hello\n");
    let port = free_port().to_string();
    let args = ["-m", "http.server", &port, "--bind", "127.0.0.1"];
    env.config(&format!(
        "entry = \"index.html\"\nstartup = \"./bin/python3 {}\"\n",
        args.join(" ")
    ));
    let root = env.path("");
    let by_hand = env.spawn(&root, shim.to_str().unwrap(), &args);
    wait_for("the hand-started server", || {
        running_python(by_hand)
            && std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok()
    });
    adopted_then_stopped(&env, by_hand);
}

/// `start` adopts `by_hand`, a copy started by hand, and `stop` ends it.
fn adopted_then_stopped(env: &TestEnv, by_hand: i32) {
    let adopted = env
        .keepup(&["start"])
        .expect(0)
        .stdout_has("is running")
        .pid();
    assert_eq!(adopted, by_hand);
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(by_hand));
}

/// Whether `pid` runs python itself, past any launcher (pyenv's shim is a bash script).
fn running_python(pid: i32) -> bool {
    cmdline(pid)
        .first()
        .is_some_and(|program| program.contains("python"))
        && std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.to_string_lossy().contains("python"))
}

/// `current -> releases/vN`, switched atomically as deploy tools do.
fn switch(env: &TestEnv, release: &str) {
    let temp = env.path("current.new");
    std::os::unix::fs::symlink(format!("releases/{release}"), &temp).unwrap();
    std::fs::rename(&temp, env.path("current")).unwrap();
}

fn releases(env: &TestEnv) -> std::path::PathBuf {
    for release in ["v1", "v2"] {
        env.python_service(&format!("releases/{release}/svc.py"), "");
    }
    switch(env, "v1");
    env.path("current/svc.py")
}

/// The service started from release v1 (state files beside the entry), then `current`
/// switched to v2: the entry, and v1's pid.
fn switched_release(env: &TestEnv) -> (std::path::PathBuf, i32) {
    let entry = releases(env);
    env.config("entry = \"current/svc.py\"\nstop_timeout = \"5s\"\n");
    let v1 = env.keepup(&["start"]).expect(0).pid();
    // The log it writes is the config's, through `current/`: named as written.
    let status = env.keepup(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        json["log"],
        env.path("current/svc.py.log").to_str().unwrap()
    );
    switch(env, "v2");
    (entry, v1)
}

#[test]
fn symlinked_releases_with_a_state_dir() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = releases(&env);
    env.config("entry = \"current/svc.py\"\nstate_dir = \"state\"\nstop_timeout = \"5s\"\n");
    let v1 = env.keepup(&["start"]).expect(0).pid();
    // `{entry}` is the path as written: the service sees the path it was configured with.
    assert!(
        cmdline(v1).iter().any(|w| Path::new(w) == entry),
        "{:?}",
        cmdline(v1)
    );
    assert_eq!(cwd(v1), Some(env.path("releases/v1")));
    assert!(env.path("state/svc.py.pid").is_file());
    assert!(!env.path("releases/v1/svc.py.pid").exists());

    switch(&env, "v2");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("running")
        .stdout_has(&v1.to_string())
        .stdout_has("now resolves to");
    env.keepup(&["start"]).expect(0).stdout_has("is running");
    assert_eq!(env.instances(&entry), [v1]);

    let v2 = env.keepup(&["restart", "--force"]).expect(0).pid();
    assert_ne!(v2, v1);
    assert_eq!(env.instances(&entry), [v2]);
    assert_eq!(cwd(v2), Some(env.path("releases/v2")));
    env.keepup(&["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());
}

/// After a release switch, the old release's instance still writes to the log of its own
/// folder: `status` names that log and `logs` shows it, not the new release's (empty) one.
#[test]
fn a_switched_release_shows_the_log_its_instance_writes() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, v1) = switched_release(&env);
    let written = env.path("releases/v1/svc.py.log");
    wait_for("the service's first line in its log", || {
        std::fs::read_to_string(&written).is_ok_and(|log| log.contains(&format!("up {v1}")))
    });
    let status = env.keepup(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["pid"], v1);
    assert_eq!(json["log"], written.to_str().unwrap(), "{}", status.stdout);
    env.keepup(&["logs"])
        .expect(0)
        .stdout_has(&format!("up {v1}"));
    env.keepup(&["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn symlinked_releases_without_a_state_dir_never_run_twice() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, v1) = switched_release(&env);
    env.keepup(&["status"]).expect(0).stdout_has("running");
    env.keepup(&["start"]).expect(0).stdout_has("is running");
    env.keepup(&["restart"]).expect(0);
    assert_eq!(env.instances(&entry), [v1], "a second instance ran");
    env.keepup(&["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());
}

/// Whatever says where the running instance is, once its state files are out of reach, the
/// record of what keepup keeps still knows where it was last launched: `status` finds it and
/// `start` adopts it rather than start a second one, then `stop` ends it.
fn found_where_it_was_last_launched(env: &TestEnv, entry: &Path, pid: i32) {
    let status = env.keepup(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["pid"], pid, "{}", status.stdout);
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({pid}) is running"));
    assert_eq!(env.instances(entry), [pid], "a second instance ran");
    env.keepup(&["stop"])
        .expect(0)
        .stdout_has(&format!("({pid}) stopped"));
    assert!(env.instances(entry).is_empty());
}

/// A deploy that swaps the app's folder for a new one (`mv app app.old && mv app.new app`)
/// takes the pid lock and the instance record along with the old folder: the instance still
/// running there is the service, not a reason to start a second one.
#[test]
fn a_folder_swapped_by_a_deploy_keeps_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.python_service("app.new/svc.py", "");
    env.config("entry = \"app/svc.py\"\nstop_timeout = \"5s\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    std::fs::rename(env.path("app"), env.path("app.old")).unwrap();
    std::fs::rename(env.path("app.new"), env.path("app")).unwrap();
    found_where_it_was_last_launched(&env, &entry, pid);
}

/// A switched release whose old folder lost its state files (removed by hand, a cleanup
/// script): the instance of the old release is still the service.
#[test]
fn a_switched_release_that_lost_its_state_files_keeps_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let (entry, v1) = switched_release(&env);
    for file in ["svc.py.pid", "svc.py.instance"] {
        std::fs::remove_file(env.path(&format!("releases/v1/{file}"))).unwrap();
    }
    found_where_it_was_last_launched(&env, &entry, v1);
}

#[test]
fn a_ready_check_that_passes_for_someone_else_fails_the_start() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    // The service would bind the port after a moment, and die: "Address already in use".
    let entry = env.python_service(
        "svc.py",
        &format!(
            "import socket\ntime.sleep(0.5)\ns = socket.socket()\n\
             s.bind(('127.0.0.1', {port}))\ns.listen()"
        ),
    );
    env.config(&format!(
        "entry = \"svc.py\"\nready = \"tcp:127.0.0.1:{port}\"\n"
    ));
    let start = env.keepup(&["start"]);
    start
        .expect(1)
        .stderr_has("already passes")
        .stderr_has(&std::process::id().to_string());
    assert!(env.instances(&entry).is_empty(), "{start:#?}");
    assert_eq!(locked_pid(&entry), None);
    drop(holder);

    // A service that dies during its check is a failed start, whatever the check said: this
    // one's check passes half a second after the service has written its flag and died.
    let dies = env.python_service(
        "dies.py",
        "open('flag', 'w').close()\ntime.sleep(0.1)\nsys.exit(4)",
    );
    env.write(
        "dies.toml",
        "entry = \"dies.py\"\nready = \"cmd:sh -c 'test -f flag && sleep 0.5'\"\nstart_timeout = \"5s\"\n",
    );
    env.keepup_with(&env.path("dies.toml"), &["start"])
        .expect(1)
        .stderr_has("code 4");
    assert!(env.instances(&dies).is_empty());
}

#[test]
fn a_deleted_or_moved_entry_can_still_be_stopped() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nstop_timeout = \"5s\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    std::fs::rename(&entry, env.path("moved.py")).unwrap();
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("running")
        .stdout_has("does not exist");
    env.keepup(&["restart"]).expect(0).stdout_has("is running");
    env.keepup(&["kill"]).expect(0).stdout_has("killed");
    assert!(!alive(pid));
    // Reviving needs the entry: a config error, nothing started.
    env.keepup(&["restart"])
        .expect(78)
        .stderr_has("does not exist");
    env.keepup(&["start"]).expect(78);

    std::fs::rename(env.path("moved.py"), &entry).unwrap();
    let pid = env.keepup(&["restart"]).expect(0).pid();
    std::fs::remove_file(&entry).unwrap();
    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
    assert!(!alive(pid));
}

#[test]
fn a_changed_config_and_a_second_config_are_told() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nstop_timeout = \"5s\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    env.keepup(&["status"]).expect(0);
    assert!(!env.keepup(&["status"]).stdout.contains("older config"));

    env.config("entry = \"svc.py\"\nstop_timeout = \"5s\"\nstartup = \"python3 -u {entry}\"\n");
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("older config")
        .stdout_has("startup")
        .stdout_has("restart --force");
    let new = env.keepup(&["restart", "--force"]).expect(0).pid();
    assert_ne!(new, pid);
    let status = env.keepup(&["status"]);
    assert!(!status.stdout.contains("older config"), "{status:#?}");

    // A second config for the same entry says who keeps it, and leaves it alone.
    let other = env.write("other.toml", "entry = \"svc.py\"\n");
    let cfg = env.path("cfg.toml").display().to_string();
    for verb in [
        &["stop"][..],
        &["kill"],
        &["start"],
        &["restart", "--force"],
    ] {
        env.keepup_with(&other, verb)
            .expect(1)
            .stderr_has("kept by another config")
            .stderr_has(&cfg);
        assert_eq!(env.instances(&entry), [new], "{verb:?} acted");
    }
    env.keepup_with(&other, &["status"])
        .expect(0)
        .stdout_has(&cfg);
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn a_service_that_daemonizes_is_adopted_or_named() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // The classic double fork: the first process exits 0, the daemon goes on.
    let daemon = "if os.fork():\n    sys.exit(0)\nos.setsid()\nif os.fork():\n    sys.exit(0)\n";
    let entry = env.python_service("svc.py", daemon);
    env.config("entry = \"svc.py\"\nstop_timeout = \"5s\"\n");
    let start = env.keepup(&["start"]);
    let pid = start
        .expect(0)
        .stderr_has("forked into the background")
        .stderr_has("foreground")
        .pid();
    assert_eq!(env.instances(&entry), [pid]);
    env.keepup(&["status"])
        .expect(0)
        .stdout_has(&pid.to_string());
    env.keepup(&["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());

    // A daemon that is not recognisable (it execs another program): named, with how to stop it.
    env.python_service(
        "other.py",
        &format!("{daemon}os.execvp('sleep', ['sleep', '1000'])\n"),
    );
    let config = env.write(
        "other.toml",
        "entry = \"other.py\"\nstart_timeout = \"2s\"\n",
    );
    let failed = env.keepup_with(&config, &["start"]);
    failed
        .expect(1)
        .stderr_has("forked into the background")
        .stderr_has("kill ");
    let sleeper = env
        .own_processes()
        .into_iter()
        .find(|p| cmdline(*p).first().is_some_and(|a| a == "sleep"))
        .expect("the daemon runs");
    failed.stderr_has(&format!("kill {sleeper}"));
}

#[test]
fn status_counts_the_whole_group_and_a_pid_change_is_recorded() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = forking_service(&env, "svc.py", 2);
    env.config("entry = \"svc.py\"\nstop_timeout = \"5s\"\n");
    let leader = env.keepup(&["start"]).expect(0).pid();
    wait_for("two workers", || children(leader).len() == 2);
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("in 3 processes (leader ");
    let json = env.keepup(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(value["processes"], 3);
    assert!(value["memory_bytes"].as_u64() > value["leader_memory_bytes"].as_u64());

    // The pid lock names a pid that has ended; the record still leads to the service.
    let gone = env.spawn(&env.root.clone(), "true", &[]);
    wait_for("true to end", || !alive(gone));
    env.write("svc.py.pid", &format!("{gone}\n"));
    env.keepup(&["restart"]).expect(0).stdout_has("is running");
    assert_eq!(locked_pid(&entry), Some(leader));
    env.keepup(&["events"])
        .expect(0)
        .stdout_has("pid change")
        .stdout_has(&format!("not as {gone}"));
    env.keepup(&["stop"]).expect(0);
}

/// A server like `postgres`: its workers ("backends") leave its session, run the same program
/// under another command line, and hold what a new instance needs (here the listening socket).
const BACKENDS: &str = "#!/usr/bin/env python3
import os, socket, sys, time
listener = socket.socket()
listener.bind(('127.0.0.1', int(os.environ['PORT'])))
listener.listen()
listener.set_inheritable(True)
worker = os.fork()
if worker == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)'])
with open('worker-%d' % os.getpid(), 'w') as f:
    f.write(str(worker))
print('serving', flush=True)
while True:
    time.sleep(1)
";

/// `postgres` started by hand and adopted by `start`: once its main process was killed, a
/// backend in its own session held the port, `status` said `dead` with no leftovers, and every
/// revival failed at once. Its runaways are leftovers: listed, and ended before the revival.
#[test]
fn the_runaways_of_an_adopted_instance_are_ended_before_its_revival() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = free_port();
    let entry = env.script("server.py", BACKENDS);
    env.config(&format!(
        "entry = \"server.py\"\nwatch = false\nstop_timeout = \"5s\"\n[env]\nPORT = \"{port}\"\n\
         [restart_limit]\nbackoff = \"0s\"\n"
    ));
    let mut by_hand = env
        .command(&entry)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leader = i32::try_from(by_hand.id()).unwrap();
    let worker_of = |leader: i32| {
        let mut worker = None;
        wait_for("the worker", || {
            worker = std::fs::read_to_string(env.path(&format!("worker-{leader}")))
                .ok()
                .and_then(|w| w.parse::<i32>().ok());
            worker.is_some()
        });
        worker.unwrap()
    };
    let worker = worker_of(leader);
    // The server writes the worker's pid as soon as it has forked, maybe before the worker's
    // setsid: a moment later, it has left.
    wait_for("the worker to leave its group", || {
        group_of(worker) != group_of(leader)
    });
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({leader}) is running"));

    sigkill(leader);
    let _ = by_hand.wait();
    assert!(alive(worker), "the worker did not outlive its leader");
    let status = env.keepup(&["status"]);
    status
        .expect(1)
        .stdout_has("dead")
        .stdout_has("leftovers:")
        .stdout_has(&worker.to_string());
    let json: serde_json::Value =
        serde_json::from_str(&env.keepup(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["leftovers"], serde_json::json!([worker]), "{json}");

    let revived = env.keepup(&["restart", "--timer"]);
    let pid = revived.expect(0).stdout_has("revived").pid();
    assert!(!alive(worker), "the runaway outlived the revival");
    assert_ne!(pid, worker);
    assert_eq!(locked_pid(&entry), Some(pid));
    worker_of(pid);
    assert!(alive(pid), "the new instance could not serve");
    env.keepup(&["events"])
        .stdout_has("leftovers")
        .stdout_has(&worker.to_string());
}
