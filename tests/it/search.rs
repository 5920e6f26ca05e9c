//! Each `search` mode recognises a real running service by the process table alone: after
//! `start`, the pid lock and the instance record are removed, so only the search rule is left
//! to find it.

use std::path::Path;

use crate::testenv::{TestEnv, locked_pid, wait_for};

/// Starts the service, forgets keepup's files about it, and checks that `status` and `start`
/// still find that very process.
fn recognised_by_scan(env: &TestEnv, entry: &Path) {
    let pid = env.keepup(&["start"]).expect(0).stdout_has("started").pid();
    assert_eq!(env.instances(entry), [pid]);
    for file in [".pid", ".instance"] {
        std::fs::remove_file(format!("{}{file}", entry.display())).unwrap();
    }
    let status = env.keepup(&["status", "--json"]);
    status.expect(0);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["pid"], pid);
    assert_eq!(json["kept_up"], false);
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({pid}) is running"));
    assert_eq!(locked_pid(entry), Some(pid), "start must adopt and lock it");
    assert_eq!(
        env.instances(entry),
        [pid],
        "start must not start a second instance"
    );
    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
    assert!(env.instances(entry).is_empty());
}

fn interpreted(search: &str) {
    let env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    // A relative word, so the process's working directory is really needed.
    env.config(&format!(
        "entry = \"app/svc.py\"\nstartup = \"python3 svc.py\"\nsearch = \"{search}\"\n"
    ));
    recognised_by_scan(&env, &entry);
}

#[test]
fn proc_cwd_recognises_a_python_script() {
    require!("python3", "python3");
    interpreted("proc_cwd");
}

#[test]
fn lsof_cwd_recognises_a_python_script() {
    require!("python3", "python3");
    require!("lsof", "lsof");
    interpreted("lsof_cwd");
}

#[test]
fn auto_recognises_a_python_script() {
    require!("python3", "python3");
    interpreted("auto");
}

#[test]
fn auto_recognises_a_python_script_started_by_its_shebang() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\n");
    recognised_by_scan(&env, &entry);
}

fn native(search: &str) {
    let env = TestEnv::new();
    // A real compiled program under a name of its own.
    let entry = env.path("bin/worker");
    crate::testenv::install_program(Path::new("/bin/sleep"), &entry);
    env.config(&format!(
        "entry = \"bin/worker\"\nstartup = \"{{entry}} 1000\"\nsearch = \"{search}\"\n"
    ));
    recognised_by_scan(&env, &entry);
}

#[test]
fn proc_exe_recognises_a_native_binary() {
    native("proc_exe");
}

#[test]
fn auto_recognises_a_native_binary() {
    native("auto");
}

/// A scan reads a native program's executable when its name is not in the command line: a
/// service that names itself otherwise in its argv (as `exec -a` does, and servers that set
/// their process title) is still the running instance, for `status`, `start` and `list` alike.
#[test]
fn a_native_service_that_renames_itself_is_found_by_its_executable() {
    let mut env = TestEnv::new();
    let entry = env.path("bin/worker");
    crate::testenv::install_program(Path::new("/bin/sleep"), &entry);
    env.config("entry = \"bin/worker\"\nstartup = \"{entry} 1000\"\n");
    // Started by hand under another name: only its executable tells it.
    let pid = env.spawn(
        &env.path("bin"),
        "bash",
        &[
            "-c",
            &format!("exec -a other-name {} 1000", entry.display()),
        ],
    );
    wait_for(
        "the hand-started worker to run under its other name",
        || crate::testenv::cmdline(pid).first().map(String::as_str) == Some("other-name"),
    );
    let status = env.keepup(&["status", "--json"]);
    status.expect(0);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["pid"], pid, "{}", status.stdout);
    let list = env.keepup(&["list", "--json", "cfg.toml"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["pid"], pid, "{}", list.stdout);
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({pid}) is running"));
    assert_eq!(locked_pid(&entry), Some(pid));
    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
}

/// A native entry is told by its executable wherever it runs (the scan looks at each process's
/// executable, not its folder), and still once the binary was replaced on disk (a rebuild, a
/// deploy that copies over it): a deleted executable cannot be told by that look, so such a
/// process is judged by the whole rule, which takes it.
#[test]
fn a_native_service_is_found_from_any_folder_and_once_its_binary_is_replaced() {
    let mut env = TestEnv::new();
    let entry = env.path("bin/worker");
    crate::testenv::install_program(Path::new("/bin/sleep"), &entry);
    env.config("entry = \"bin/worker\"\nstartup = \"{entry} 1000\"\n");
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let pid = env.spawn(&elsewhere, entry.to_str().unwrap(), &["1000"]);
    let exe = |pid: i32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    wait_for("the hand-started worker to run", || exe(pid) == entry);
    let status_pid = |env: &TestEnv| {
        let status = env.keepup(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        json["pid"].clone()
    };
    assert_eq!(status_pid(&env), pid);
    crate::testenv::install_program(Path::new("/bin/sleep"), &entry);
    assert!(
        exe(pid).to_string_lossy().ends_with(" (deleted)"),
        "{}",
        exe(pid).display()
    );
    assert_eq!(status_pid(&env), pid);
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({pid}) is running"));
    assert_eq!(locked_pid(&entry), Some(pid));
    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
    wait_for("the worker to end", || !crate::testenv::alive(pid));
}

/// `list` reads the process table once for all its services: each finds its own instance in
/// it, and none takes another's.
#[test]
fn list_finds_each_service_by_one_look_at_the_table() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let mut pids = Vec::new();
    for name in ["one", "two"] {
        let entry = env.python_service(&format!("{name}/svc.py"), "");
        env.write(
            &format!("{name}.toml"),
            &format!("entry = \"{name}/svc.py\"\n"),
        );
        let pid = env
            .keepup_with(&env.path(&format!("{name}.toml")), &["start"])
            .expect(0)
            .pid();
        // Only the search rule is left to find it.
        for file in [".pid", ".instance"] {
            std::fs::remove_file(format!("{}{file}", entry.display())).unwrap();
        }
        pids.push(pid);
    }
    let list = env.keepup_with(&env.path("one.toml"), &["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let found: Vec<(String, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["config"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                r["pid"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("one.toml".to_owned(), i64::from(pids[0])),
            ("two.toml".to_owned(), i64::from(pids[1]))
        ],
        "{}",
        list.stdout
    );
    for name in ["one", "two"] {
        env.keepup_with(&env.path(&format!("{name}.toml")), &["stop"])
            .expect(0);
    }
}
