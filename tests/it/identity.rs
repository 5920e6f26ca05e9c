//! Identity safety: keepup never takes, counts or signals a process that is not the service,
//! whatever the pid lock holds and whatever else runs in the entry's folder.

use std::path::Path;

use crate::testenv::{TestEnv, alive, cwd, locked_pid, wait_for};

/// A service and, in another folder, an unrelated process the test owns.
fn service_and_bystander() -> (TestEnv, std::path::PathBuf, i32) {
    let mut env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\nstop_timeout = \"5s\"\n");
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let bystander = env.spawn(&elsewhere, "sleep", &["1000"]);
    (env, entry, bystander)
}

/// `status` never says running; `kill`, `restart` and `stop` leave the bystander alone, and
/// the service is started or stopped only as the lock's existence says.
fn untouched(env: &TestEnv, entry: &Path, bystander: i32, lock_can_be_replaced: bool) {
    let status = env.keepup(&["status"]);
    assert_ne!(status.code, 0, "{status:#?}");
    assert!(!status.stdout.contains(": running"), "{status:#?}");
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    assert!(alive(bystander), "kill signalled the bystander");

    let restart = env.keepup(&["restart"]);
    if lock_can_be_replaced {
        let pid = restart.expect(0).stdout_has("revived").pid();
        assert_ne!(pid, bystander);
        assert_eq!(env.instances(entry), [pid]);
        assert_eq!(locked_pid(entry), Some(pid));
    } else {
        restart.expect(1).stderr_has("is a directory");
        assert!(env.instances(entry).is_empty());
    }
    assert!(alive(bystander), "restart signalled the bystander");

    let stop = env.keepup(&["stop"]);
    assert!(alive(bystander), "stop signalled the bystander");
    assert!(env.instances(entry).is_empty(), "{stop:#?}");
}

#[test]
fn pid_of_an_unrelated_process_in_the_lock_is_never_signalled() {
    require!("python3", "python3");
    let (env, entry, bystander) = service_and_bystander();
    env.write("app/svc.py.pid", &format!("{bystander}\n"));
    let status = env.keepup(&["status"]);
    status.expect(1).stdout_has("dead").stdout_has("not svc.py");
    untouched(&env, &entry, bystander, true);
}

#[test]
fn bad_pid_lock_contents_are_stale_never_signalled() {
    require!("python3", "python3");
    let contents = [
        "",
        "\n",
        "0\n",
        "-1\n",
        "1\n",
        "abc\n",
        "99999999999999999999\n",
        "12 34\n",
        "3\n4\n",
    ];
    for content in contents {
        let (env, entry, bystander) = service_and_bystander();
        env.write("app/svc.py.pid", content);
        let status = env.keepup(&["status"]);
        status.expect(1).stdout_has("problem:");
        untouched(&env, &entry, bystander, true);
    }
}

#[test]
fn symlinked_or_directory_pid_locks_are_refused() {
    require!("python3", "python3");
    // A dangling symlink, and one to a file that holds the bystander's pid.
    for target_holds_bystander in [false, true] {
        let (env, entry, bystander) = service_and_bystander();
        let target = env.write("target", &format!("{bystander}\n"));
        if !target_holds_bystander {
            std::fs::remove_file(&target).unwrap();
        }
        std::os::unix::fs::symlink(&target, env.path("app/svc.py.pid")).unwrap();
        env.keepup(&["status"]).expect(1).stdout_has("symlink");
        untouched(&env, &entry, bystander, true);
    }
    let (env, entry, bystander) = service_and_bystander();
    std::fs::create_dir(env.path("app/svc.py.pid")).unwrap();
    env.keepup(&["status"]).expect(1).stdout_has("directory");
    untouched(&env, &entry, bystander, false);
}

#[test]
fn reused_pid_that_looks_alike_is_not_the_service() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\n");
    // The same interpreter in the entry's folder, as after a reboot reused the pid.
    let lookalike = env.spawn(
        &env.path("app"),
        "python3",
        &["-c", "import time; time.sleep(1000)"],
    );
    env.write("app/svc.py.pid", &format!("{lookalike}\n"));
    env.write(
        "app/svc.py.instance",
        &format!("{{\"pid\":{lookalike},\"start\":\"another-boot:12345\"}}"),
    );
    env.keepup(&["status"]).expect(1).stdout_has("not svc.py");
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    assert!(alive(lookalike));
    let pid = env
        .keepup(&["restart"])
        .expect(0)
        .stdout_has("revived")
        .pid();
    assert_ne!(pid, lookalike);
    env.keepup(&["stop"]).expect(0);
    assert!(alive(lookalike), "stop signalled the look-alike");
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn tail_of_the_entry_in_its_folder_is_never_adopted_or_signalled() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\nsearch = \"proc_cwd\"\nstartup = \"python3 svc.py\"\n");
    let tail = env.spawn(&env.path("app"), "tail", &["-f", "svc.py"]);
    let root = env.root.clone();
    let tail_abs = env.spawn(&root, "tail", &["-f", entry.to_str().unwrap()]);
    env.keepup(&["status"]).expect(3).stdout_has("stopped");
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    let pid = env.keepup(&["start"]).expect(0).stdout_has("started").pid();
    assert!(pid != tail && pid != tail_abs);
    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
    env.keepup(&["stop"]).expect(0).stdout_has("not running");
    assert!(
        alive(tail) && alive(tail_abs),
        "a tail of the entry was signalled"
    );
}

#[test]
fn service_that_changes_directory_stays_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "os.chdir('/')");
    // Relative, so after the chdir its argv no longer leads to the entry.
    env.config("entry = \"app/svc.py\"\nstartup = \"python3 svc.py\"\nsearch = \"proc_cwd\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    wait_for("the service to leave its folder", || {
        cwd(pid).as_deref() == Some(Path::new("/"))
    });
    for _ in 0..3 {
        env.keepup(&["start"])
            .expect(0)
            .stdout_has(&format!("({pid}) is running"));
        env.keepup(&["restart"])
            .expect(0)
            .stdout_has(&format!("({pid}) is running"));
    }
    // With the lock garbled, the recorded instance still finds it.
    env.write("app/svc.py.pid", "garbage\n");
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({pid}) is running"));
    assert_eq!(locked_pid(&entry), Some(pid));
    assert_eq!(env.instances(&entry), [pid]);
    env.keepup(&["stop"])
        .expect(0)
        .stdout_has(&format!("({pid}) stopped"));
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn instance_started_by_hand_is_adopted_not_duplicated() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\n");
    // Exactly as startup ("{entry}") would run it, from the entry's folder.
    let by_hand = env.spawn(&env.path("app"), entry.to_str().unwrap(), &[]);
    // The entry's `#!/usr/bin/env python3` may pass through a version manager's shim first.
    wait_for("the hand-started service to run python", || {
        crate::testenv::cmdline(by_hand)
            .first()
            .is_some_and(|p| p.ends_with("python3"))
    });
    assert_eq!(env.instances(&entry), [by_hand]);
    env.keepup(&["status"]).expect(0).stdout_has("not kept up");
    env.keepup(&["start"])
        .expect(0)
        .stdout_has(&format!("({by_hand}) is running"));
    assert_eq!(locked_pid(&entry), Some(by_hand));
    assert_eq!(env.instances(&entry), [by_hand]);
    env.keepup(&["stop"])
        .expect(0)
        .stdout_has(&format!("({by_hand}) stopped"));
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn keepups_own_ancestor_naming_the_entry_is_not_the_service() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\nstartup = \"python3 svc.py\"\nsearch = \"proc_cwd\"\n");
    // A python3 parent in the entry's folder whose argv names svc.py: the proc_cwd rule alone
    // would take it for the service.
    let output = std::process::Command::new("python3")
        .current_dir(env.path("app"))
        .env(crate::testenv::MARK, &env.root)
        .args([
            "-c",
            "import subprocess, sys; sys.exit(subprocess.call(sys.argv[2:]))",
            "svc.py",
            env!("CARGO_BIN_EXE_keepup"),
            "--config",
            env.path("cfg.toml").to_str().unwrap(),
            "status",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("stopped"), "{stdout}");
}

#[test]
fn forged_instance_record_others_can_write_is_not_trusted_by_root() {
    require!("python3", "python3");
    if !nix::unistd::geteuid().is_root() {
        // The rule is root's: a user's own files are theirs to trust.
        crate::testenv::skip("needs root, whose rule it is");
        return;
    }
    let (env, entry, bystander) = service_and_bystander();
    // The bystander's true identity, as anyone can read it from /proc.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{bystander}/stat")).unwrap();
    let ticks = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    let record = env.write(
        "app/svc.py.instance",
        &format!(
            "{{\"pid\":{bystander},\"start\":\"{}:{ticks}\"}}",
            boot.trim()
        ),
    );
    std::fs::set_permissions(&record, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    env.keepup(&["status"]).expect(3).stdout_has("stopped");
    env.keepup(&["kill"]).expect(0).stdout_has("not running");
    env.keepup(&["stop"]).expect(0).stdout_has("not running");
    assert!(
        alive(bystander),
        "a forged record made root signal the bystander"
    );
    assert!(env.instances(&entry).is_empty());
}
