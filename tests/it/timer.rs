//! `install-timer` and `uninstall-timer` through a stand-in crontab (`tests/fake-crontab`),
//! which stores the crontab in a temp file and answers like crontab(1).

use std::path::Path;

use crate::testenv::{Run, TestEnv};

fn crontab(env: &TestEnv) -> Option<String> {
    std::fs::read_to_string(env.crontab_file()).ok()
}

fn service(env: &TestEnv) {
    env.python_service("svc.py", "");
    // Revived at once by the timer, however short the run the test allows it.
    env.config("entry = \"svc.py\"\nwatch = false\n[restart_limit]\nbackoff = \"0s\"\n");
}

#[test]
fn install_reinstall_uninstall() {
    let env = TestEnv::new();
    service(&env);
    env.keepup(&["status"])
        .expect(3)
        .stdout_has("timer:    not installed");

    env.keepup(&["install-timer"])
        .expect(0)
        .stdout_has("installed");
    let text = crontab(&env).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let config = env.path("cfg.toml");
    for part in [
        "* * * * * ",
        &format!("PATH={}", std::env::var("PATH").unwrap()),
        std::fs::canonicalize(env!("CARGO_BIN_EXE_keepup"))
            .unwrap()
            .to_str()
            .unwrap(),
        "restart --timer --config",
        config.to_str().unwrap(),
        env.path("svc.py.timer.log").to_str().unwrap(),
        &format!("# keepup-timer {}", config.display()),
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    env.keepup(&["status"])
        .expect(3)
        .stdout_has("timer:    installed");
    let json = env.keepup(&["status", "--json"]);
    assert!(
        json.stdout.contains("\"timer_installed\":true"),
        "{json:#?}"
    );

    env.keepup(&["install-timer"])
        .expect(0)
        .stdout_has("already installed");
    assert_eq!(
        crontab(&env).unwrap(),
        text,
        "a second install changed the crontab"
    );

    env.keepup(&["uninstall-timer"])
        .expect(0)
        .stdout_has("removed");
    assert_eq!(crontab(&env), None, "no crontab before, none after");
    env.keepup(&["uninstall-timer"])
        .expect(0)
        .stdout_has("not installed");
}

#[test]
fn same_config_by_another_path_is_the_same_line() {
    let env = TestEnv::new();
    service(&env);
    env.keepup(&["install-timer"]).expect(0);
    let dotted = env.path("./sub/../cfg.toml");
    std::fs::create_dir_all(env.path("sub")).unwrap();
    env.keepup_with(&dotted, &["install-timer"])
        .expect(0)
        .stdout_has("already installed");
}

#[test]
fn two_configs_two_lines_and_uninstall_removes_only_its_own() {
    require!("python3", "python3");
    let env = TestEnv::new();
    service(&env);
    env.python_service("other/svc2.py", "");
    let other = env.write("other/cfg.toml", "entry = \"svc2.py\"\n");
    env.keepup(&["install-timer"]).expect(0);
    env.keepup_with(&other, &["install-timer"]).expect(0);
    let both = crontab(&env).unwrap();
    assert_eq!(both.lines().count(), 2, "{both}");
    env.keepup(&["uninstall-timer"]).expect(0);
    let left = crontab(&env).unwrap();
    assert_eq!(left.lines().count(), 1);
    assert!(left.contains(other.to_str().unwrap()), "{left}");
    env.keepup_with(&other, &["status"])
        .expect(3)
        .stdout_has("timer:    installed");
    env.keepup(&["status"])
        .expect(3)
        .stdout_has("timer:    not installed");
}

#[test]
fn every_other_byte_of_the_crontab_is_preserved() {
    let env = TestEnv::new();
    service(&env);
    let config = env.path("cfg.toml");
    let user = format!(
        "# m h dom mon dow command\nMAILTO=\"me@example.org\"\nPATH=/usr/local/bin:/usr/bin:/bin\n\n\
         \t \n*/5 * * * * /usr/bin/backup --to /mnt # keeps /backup\n\
         # keepup-timer {0} (an old note of mine)\n\
         0 4 * * * echo 'restart --timer --config {0}' >/dev/null # mentions it\n\
         @reboot /usr/local/bin/other-daemon\n0 1 * * * last-line-without-newline",
        config.display()
    );
    std::fs::write(env.crontab_file(), &user).unwrap();
    env.keepup(&["install-timer"])
        .expect(0)
        .stdout_has("installed");
    let installed = crontab(&env).unwrap();
    assert_eq!(installed.lines().count(), user.lines().count() + 1);
    env.keepup(&["install-timer"])
        .expect(0)
        .stdout_has("already installed");
    env.keepup(&["uninstall-timer"])
        .expect(0)
        .stdout_has("removed");
    assert_eq!(crontab(&env).unwrap(), user, "the user's crontab changed");
}

#[test]
fn failing_crontab_is_reported_and_nothing_changes() {
    let env = TestEnv::new();
    service(&env);
    let user = "0 1 * * * mine\n";
    std::fs::write(env.crontab_file(), user).unwrap();

    let fail = env.crontab_file().with_extension("fail");
    std::fs::write(&fail, "cannot open spool: permission denied").unwrap();
    for verb in ["install-timer", "uninstall-timer"] {
        let run = env.keepup(&[verb]);
        run.expect(1)
            .stderr_has("cannot open spool: permission denied");
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    }
    // status still answers for the service, and says why it cannot tell about the timer.
    env.keepup(&["status"])
        .expect(3)
        .stdout_has("timer:    unknown")
        .stdout_has("permission denied");
    std::fs::remove_file(&fail).unwrap();

    std::fs::write(env.crontab_file().with_extension("fail-write"), "disk full").unwrap();
    env.keepup(&["install-timer"])
        .expect(1)
        .stderr_has("disk full");
    assert_eq!(
        crontab(&env).unwrap(),
        user,
        "a failed install changed the crontab"
    );
}

#[test]
fn timer_restart_is_quiet_unless_it_acts() {
    require!("python3", "python3");
    let env = TestEnv::new();
    service(&env);
    let run = env.keepup(&["restart", "--timer"]);
    run.expect(0);
    assert_eq!(run.stdout, "", "nothing to do, nothing said");
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(env.keepup(&["restart", "--timer"]).expect(0).stdout, "");
    env.keepup(&["kill"]).expect(0);
    let revived = env.keepup(&["restart", "--timer"]);
    revived.expect(0).stdout_has("revived");
    assert_ne!(revived.pid(), pid);
    env.keepup(&["stop"]).expect(0);
}

// Old install-timer, with no crontab program: "running crontab: No such file or directory",
// and no word on what was missing.
#[test]
fn install_timer_without_a_crontab_program_says_how_to_get_one() {
    let env = TestEnv::new();
    env.script("svc.sh", "#!/bin/sh\nexec sleep 1000\n");
    env.config("entry = \"svc.sh\"\n");
    let install = |name: &str, value: &Path| {
        let out = env
            .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
            .env_remove("KEEPUP_CRONTAB")
            .env(name, value)
            .arg("-c")
            .arg(env.path("cfg.toml"))
            .arg("install-timer")
            .output()
            .unwrap();
        Run::from_output(&out)
    };
    // A PATH that finds no crontab, and no KEEPUP_CRONTAB: nothing to run, the user's real
    // crontab included.
    let empty = env.path("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let run = install("PATH", &empty);
    run.expect(1)
        .stderr_has("no crontab program on PATH")
        .stderr_has("sudo apt-get install cron")
        .stderr_has("sudo systemctl enable --now cron")
        .stderr_has("`keepup doctor` checks both");
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");

    let missing = env.path("no such/crontab");
    install("KEEPUP_CRONTAB", &missing)
        .expect(1)
        .stderr_has(&format!(
            "{} (named by KEEPUP_CRONTAB) does not exist",
            missing.display()
        ));
}
