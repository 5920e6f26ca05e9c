//! The README's walk-through, end to end: the real `sbin/` wrappers, the shipped `cfg.toml`
//! and the example server, in a copy of the checkout (so the test owns its port and files).

use std::path::Path;

use crate::testenv::{TestEnv, free_port, http_get, locked_pid};

/// Copies what a user's checkout has: `sbin/`, `cfg.toml`, `server/runserver.py`, and the
/// built binary where the wrappers look for it.
fn checkout(env: &TestEnv, port: u16) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(repo.join("sbin")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        env.script(
            &format!("sbin/{name}"),
            &std::fs::read_to_string(entry.path()).unwrap(),
        );
    }
    env.script(
        "server/runserver.py",
        &std::fs::read_to_string(repo.join("server/runserver.py")).unwrap(),
    );
    let config = std::fs::read_to_string(repo.join("cfg.toml")).unwrap();
    for setting in ["PORT = \"8000\"", "ready = \"http://127.0.0.1:8000/\""] {
        assert!(config.contains(setting), "cfg.toml no longer has {setting}");
    }
    // The test's own port, for the server and its readiness check alike.
    env.write("cfg.toml", &config.replace("8000", &port.to_string()));
    let bin = env.path("target/release/keepup");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keepup"), &bin).unwrap();
}

fn sbin(env: &TestEnv, verb: &str) -> crate::testenv::Run {
    // From another folder: the wrappers must not depend on the caller's cwd.
    let output = env
        .command(&env.path(&format!("sbin/{verb}")))
        .current_dir("/")
        .output()
        .unwrap();
    crate::testenv::Run::from_output(&output)
}

#[test]
fn readme_walkthrough_on_the_example_server() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let port = free_port();
    checkout(&env, port);
    let entry = env.path("server/runserver.py");
    let running = r#"{"msg":"running"}"#;

    let first = sbin(&env, "start")
        .expect(0)
        .stdout_has("runserver.py (")
        .stdout_has("started")
        .pid();
    // cfg.toml's ready check: "started" means it answers, no waiting.
    assert_eq!(http_get(port).as_deref(), Some(running));
    assert_eq!(locked_pid(&entry), Some(first));

    let status = sbin(&env, "status");
    status
        .expect(0)
        .stdout_has("runserver.py: running")
        .stdout_has(&first.to_string());

    sbin(&env, "kill").expect(0).stdout_has("killed");
    // Its watcher starts it again at once; the pid lock follows the new instance.
    let mut revived = first;
    crate::testenv::wait_for("the watcher to revive it", || {
        revived = locked_pid(&entry).unwrap_or(first);
        revived != first && http_get(port).as_deref() == Some(running)
    });
    // The revival's event is written once the new server passed its ready check.
    crate::testenv::wait_for("the revive event", || {
        let events = sbin(&env, "events");
        events.expect(0);
        let last = events.stdout.lines().rev().find(|l| l.contains("revive"));
        last.is_some_and(|l| l.contains(&revived.to_string()) && l.contains("watcher"))
    });
    sbin(&env, "restart").expect(0).stdout_has("is running");
    assert_eq!(env.instances(&entry), [revived]);

    sbin(&env, "stop").expect(0).stdout_has("stopped");
    assert!(
        env.instances(&entry).is_empty(),
        "stop left the server running"
    );
    assert!(http_get(port).is_none());
    assert_eq!(locked_pid(&entry), None);
    sbin(&env, "status")
        .expect(3)
        .stdout_has("runserver.py: stopped");
    sbin(&env, "restart").expect(0).stdout_has("not reviving");
    assert!(
        env.instances(&entry).is_empty(),
        "restart revived a stopped service"
    );
}

#[test]
fn sbin_scripts_work_through_a_symlink_and_keepup_alone_prints_usage() {
    require!("python3", "python3");
    let env = TestEnv::new();
    checkout(&env, free_port());
    std::fs::create_dir(env.path("bin")).unwrap();
    let link = env.path("bin/app-status");
    std::os::unix::fs::symlink(env.path("sbin/status"), &link).unwrap();
    let output = env.command(&link).current_dir("/").output().unwrap();
    let status = crate::testenv::Run::from_output(&output);
    status.expect(3).stdout_has("runserver.py: stopped");

    let usage = sbin(&env, "keepup");
    usage.expect(0).stdout_has("Usage:").stdout_has("start");
    assert!(!usage.stderr.contains("parameter not set"), "{usage:#?}");
}

/// A PATH with only what the sbin scripts use from the system: no python3, no cargo.
fn bare_path(env: &TestEnv) -> std::path::PathBuf {
    let bin = env.path("bare-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "sh", "dirname", "readlink", "find", "head", "grep", "cat", "env", "printf",
    ] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    bin
}

#[test]
fn sbin_start_says_what_a_fresh_machine_lacks() {
    let env = TestEnv::new();
    checkout(&env, free_port());
    let bin = bare_path(&env);
    let run = |verb: &str| {
        let output = env
            .command(&env.path(&format!("sbin/{verb}")))
            .current_dir("/")
            .env("PATH", &bin)
            .output()
            .unwrap();
        crate::testenv::Run::from_output(&output)
    };
    let start = run("start");
    start.expect(1).stderr_has("needs python3");
    assert_eq!(start.stderr.lines().count(), 1, "{start:#?}");

    std::fs::remove_file(env.path("target/release/keepup")).unwrap();
    let status = run("status");
    status
        .expect(1)
        .stderr_has("no build at")
        .stderr_has("install Rust");
}

#[test]
fn a_first_build_by_the_wrappers_says_what_it_waits_for() {
    // `./sbin/start`'s first build was two minutes of silence after "building".
    let env = TestEnv::new();
    checkout(&env, free_port());
    std::fs::remove_file(env.path("target/release/keepup")).unwrap();
    std::fs::create_dir(env.path("src")).unwrap();
    // A stand-in cargo: it notes how it was asked, and "builds" by linking the real keepup.
    env.script(
        "bin/cargo",
        &format!(
            "#!/bin/sh\necho \"$@\" > \"{}\"\nln -s \"{}\" \"{}\"\n",
            env.path("cargo.args").display(),
            env!("CARGO_BIN_EXE_keepup"),
            env.path("target/release/keepup").display()
        ),
    );
    let path = format!(
        "{}:{}",
        env.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let output = env
        .command(&env.path("sbin/status"))
        .env("PATH", path)
        .output()
        .unwrap();
    let run = crate::testenv::Run::from_output(&output);
    run.expect(3);
    assert_eq!(
        run.stderr,
        format!(
            "keepup: building {} (cargo build --release; the first build takes about 2 \
             minutes)\n",
            env.path("target/release/keepup").display()
        ),
        "{run:#?}"
    );
    // In a pipe, cargo's progress would be lines upon lines: it is kept quiet.
    let args = std::fs::read_to_string(env.path("cargo.args")).unwrap();
    assert!(args.contains("build --release --locked --quiet"), "{args}");
}
