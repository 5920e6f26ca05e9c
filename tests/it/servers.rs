//! Real servers as people run them: startup lines that never name the entry (`gunicorn
//! app:app`), shared programs as entries (`/usr/bin/python3 -m http.server`), system folders.

use std::path::Path;

use crate::testenv::{TestEnv, alive, cmdline, free_port, locked_pid, wait_for};

/// A stand-in for gunicorn: a Python launcher script in its own bin folder, run as
/// `fakeserve app:app`, that serves nothing and sleeps.
fn launcher(env: &TestEnv) -> std::path::PathBuf {
    env.script(
        "venv/bin/fakeserve",
        "#!/usr/bin/env python3\nimport time\nwhile True:\n    time.sleep(1)\n",
    )
}

#[test]
fn a_startup_that_never_names_the_entry_is_known_by_its_command_line() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let serve = launcher(&env);
    env.write("app/app.py", "app = None\n");
    env.config(&format!(
        "entry = \"app/app.py\"\nstartup = \"{} -w 2 app:app\"\nstop_timeout = \"5s\"\n",
        serve.display()
    ));
    // Old main: "not recognised within 5s … does startup run the entry?".
    let pid = env.keepup(&["start"]).expect(0).stdout_has("started").pid();
    assert!(
        cmdline(pid).iter().any(|w| w == "app:app"),
        "{:?}",
        cmdline(pid)
    );

    // The record lost: the process running the startup command line in the entry's folder
    // is the service, and nothing else running it elsewhere is.
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let other = env.spawn(&elsewhere, serve.to_str().unwrap(), &["-w", "2", "app:app"]);
    wait_for("the other copy", || {
        cmdline(other).iter().any(|w| w == "app:app")
    });
    std::fs::remove_file(env.path("app/app.py.instance")).unwrap();
    std::fs::remove_file(env.path("app/app.py.pid")).unwrap();
    env.keepup(&["status"])
        .expect(0)
        .stdout_has(&format!("pid:      {pid}"));
    env.keepup(&["start"]).expect(0).stdout_has("is running");
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(pid));
    assert!(alive(other), "the copy in another folder was signalled");
}

#[test]
fn a_shared_program_as_the_entry_is_matched_with_its_arguments() {
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        crate::testenv::skip("no /usr/bin/python3 to use as a shared entry");
        return;
    }
    let mut env = TestEnv::new();
    // An unrelated job of the same user, running the same program.
    let job = env.spawn(
        &env.root.clone(),
        "/usr/bin/python3",
        &["-c", "import time; time.sleep(1000)"],
    );
    wait_for("the job", || cmdline(job).iter().any(|w| w == "-c"));
    let (a, b) = (free_port(), free_port());
    for (name, port) in [("a", a), ("b", b)] {
        env.write(
            &format!("{name}.toml"),
            &format!(
                "entry = \"/usr/bin/python3\"\nstartup = \"{{entry}} -m http.server {port} \
                 --bind 127.0.0.1\"\nstate_dir = \"state-{name}\"\nready = \
                 \"tcp:127.0.0.1:{port}\"\nstop_timeout = \"5s\"\n"
            ),
        );
    }
    let (config_a, config_b) = (env.path("a.toml"), env.path("b.toml"));
    // Old main: start adopted the unrelated job ("is running").
    let pid_a = env
        .keepup_with(&config_a, &["start"])
        .expect(0)
        .stdout_has("started")
        .pid();
    let pid_b = env
        .keepup_with(&config_b, &["start"])
        .expect(0)
        .stdout_has("started")
        .pid();
    assert!(![job, pid_b].contains(&pid_a));
    for state in ["state-a", "state-b"] {
        std::fs::remove_file(env.path(&format!("{state}/python3.instance"))).unwrap();
        std::fs::remove_file(env.path(&format!("{state}/python3.pid"))).unwrap();
    }
    env.keepup_with(&config_a, &["status"])
        .expect(0)
        .stdout_has(&format!("pid:      {pid_a}"));
    env.keepup_with(&config_b, &["status"])
        .expect(0)
        .stdout_has(&format!("pid:      {pid_b}"));
    env.keepup_with(&config_a, &["stop"]).expect(0);
    assert!(!alive(pid_a));
    assert!(alive(pid_b), "config a stopped config b's server");
    assert!(alive(job), "the unrelated job was signalled");
    env.keepup_with(&config_b, &["stop"]).expect(0);
    assert!(!alive(pid_b));
}

#[test]
fn a_system_program_needs_a_state_dir() {
    let env = TestEnv::new();
    env.config("entry = \"/bin/sleep\"\nstartup = \"{entry} 1000\"\n");
    for verb in [&["start"][..], &["status"]] {
        env.keepup(verb)
            .expect(78)
            .stderr_has("shared program")
            .stderr_has("set state_dir");
    }
    assert!(!Path::new("/bin/sleep.lock").exists() && !Path::new("/usr/bin/sleep.lock").exists());

    env.config("entry = \"/bin/sleep\"\nstartup = \"{entry} 1000\"\nstate_dir = \"state\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    assert_eq!(locked_pid(&env.path("state/sleep")), Some(pid));
    // `{entry}` is the path as written, so a program that picks its mode by its name keeps it.
    assert_eq!(cmdline(pid)[0], "/bin/sleep");
    env.keepup(&["stop"]).expect(0);
    assert!(!alive(pid));
}
