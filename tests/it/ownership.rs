//! Ownership: root acting on another user's config does exactly what her own command would;
//! root refuses what another user could write; an unreadable state file says whose it is.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::testenv::{TestEnv, TestUser, alive, locked_pid, process_uid, wait_for};

/// A service alice can run: the machine's python3 (the test's PATH leads to root's pyenv,
/// which she cannot read).
fn her_service(env: &TestEnv) -> std::path::PathBuf {
    let entry = env.script(
        "app/svc.py",
        "#!/usr/bin/python3\nimport time\nprint('up', flush=True)\nwhile True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"app/svc.py\"\nstop_timeout = \"5s\"\nwatch = false\n");
    entry
}

/// Every file under `dir` that `uid` does not own.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.uid() != uid {
            wrong.push(path.display().to_string());
        }
        if meta.is_dir() {
            wrong.extend(not_owned_by(&path, uid));
        }
    }
    wrong
}

#[test]
fn root_acts_as_the_owner_of_the_config() {
    require!("python3", "python3");
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    let entry = her_service(&env);
    alice.give(&env.root);

    let pid = alice.keepup(&env, &["start"]).expect(0).pid();
    assert_eq!(process_uid(pid), Some(alice.uid));
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("running")
        .stdout_has(&pid.to_string());

    env.keepup(&["stop"]).expect(0).stdout_has("stopped");
    assert!(!alive(pid), "root's stop left her service running");
    assert_eq!(locked_pid(&entry), None);

    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(process_uid(pid), Some(alice.uid), "started as root");
    env.keepup(&["start"]).expect(0).stdout_has("is running");
    assert_eq!(env.instances(&entry), [pid], "a second instance");

    env.keepup(&["kill"]).expect(0).stdout_has("killed");
    let revived = env
        .keepup(&["restart"])
        .expect(0)
        .stdout_has("revived")
        .pid();
    assert_eq!(process_uid(revived), Some(alice.uid));
    alice
        .keepup(&env, &["status"])
        .expect(0)
        .stdout_has(&revived.to_string());

    // cron runs her line as her: it must name a keepup she can run (this checkout may be in a
    // folder closed to her, as a `mktemp -d` is).
    let keepup = Path::new(env!("CARGO_BIN_EXE_keepup"));
    if alice.can_run(&env, keepup) {
        env.keepup(&["install-timer"]).expect(0);
        let crontab = std::fs::metadata(env.crontab_file()).unwrap();
        assert_eq!(
            crontab.uid(),
            alice.uid,
            "the timer went into root's crontab"
        );
    } else {
        env.keepup(&["install-timer"])
            .expect(1)
            .stderr_has("install -m 755");
        assert!(!env.crontab_file().exists(), "a line she cannot run");
    }

    assert_eq!(not_owned_by(&env.root, alice.uid), Vec::<String>::new());
    alice.keepup(&env, &["stop"]).expect(0);
    assert!(env.instances(&entry).is_empty());
}

#[test]
fn a_state_file_she_cannot_read_names_its_owner_and_the_fix() {
    require!("python3", "python3");
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    her_service(&env);
    alice.give(&env.root);
    // Left by an older keepup run as root.
    let lock = env.write("app/svc.py.pid", "4242\n");
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let lock = lock.display().to_string();

    let status = alice.keepup(&env, &["status"]);
    status
        .expect(4)
        .stderr_has(&lock)
        .stderr_has("owned by root")
        .stderr_has(&format!("sudo rm {lock}"));
    let json = alice.keepup(&env, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(value["state"], "unknown");
    assert!(value["reason"].as_str().unwrap().contains(&lock));

    alice
        .keepup(&env, &["stop"])
        .expect(1)
        .stderr_has("owned by root");
}

#[test]
fn root_refuses_what_another_user_can_write() {
    require!("python3", "python3");
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    let entry = her_service(&env);
    let folder = env.path("app");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    env.keepup(&["start"])
        .expect(78)
        .stderr_has(&folder.display().to_string())
        .stderr_has("writable by group or others")
        .stderr_has(&format!("chmod go-w {}", folder.display()));
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();

    alice.give(&entry);
    env.keepup(&["start"])
        .expect(78)
        .stderr_has(&format!("owned by {}", alice.name));
    assert!(env.instances(&entry).is_empty());
    wait_for("nothing started", || env.own_processes().is_empty());
}

#[test]
fn sudo_start_gives_the_service_her_environment_and_groups() {
    let Some(alice) = TestUser::new() else { return };
    let env = TestEnv::new();
    env.script(
        "app/svc.py",
        "#!/usr/bin/python3\nimport os, time\n\
         print('env', os.environ.get('USER'), os.environ.get('LOGNAME'), \
         os.environ.get('HOME'), os.getgid(), flush=True)\nwhile True:\n    time.sleep(1)\n",
    );
    env.config("entry = \"app/svc.py\"\nstop_timeout = \"5s\"\n");
    alice.give(&env.root);
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(process_uid(pid), Some(alice.uid));
    // Her groups only (useradd gave her her own group and no other), none of root's.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(
        groups.split_whitespace().collect::<Vec<_>>(),
        ["Groups:", &alice.gid.to_string()]
    );
    let home = nix::unistd::User::from_name(&alice.name)
        .unwrap()
        .unwrap()
        .dir;
    let expected = format!(
        "env {0} {0} {1} {2}\n",
        alice.name,
        home.display(),
        alice.gid
    );
    wait_for("the service to print its environment", || {
        std::fs::read_to_string(env.path("app/svc.py.log")).is_ok_and(|log| log == expected)
    });
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(pid));
}
