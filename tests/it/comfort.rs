//! Everyday comfort: `list` over every kept service, `doctor`'s checks reached by real
//! conditions, the bash completion in a real bash, and the man page through man(1).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::testenv::{Run, TestEnv, TestUser, have, sigkill, which};

/// A service in its own folder `dir` of the test, with its own config.
fn service(env: &TestEnv, dir: &str, extra: &str) -> PathBuf {
    env.python_service(&format!("{dir}/svc.py"), "");
    env.write(
        &format!("{dir}/cfg.toml"),
        &format!("entry = \"svc.py\"\nstart_timeout = \"300ms\"\n{extra}"),
    )
}

fn json(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

#[test]
fn list_shows_every_kept_service_in_one_table() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let running = service(&env, "a-running", "");
    let stopped = service(&env, "b-stopped", "");
    let dead = service(&env, "c-dead", "watch = false\n");
    let broken = service(&env, "d-broken", "");
    for config in [&running, &stopped, &dead, &broken] {
        env.keepup_with(config, &["install-timer"]).expect(0);
    }
    env.keepup_with(&running, &["start"]).expect(0);
    let victim = env.keepup_with(&dead, &["start"]).expect(0).pid();
    sigkill(victim);
    std::fs::write(&broken, "entry = \"svc.py\"\nstop_signal = \"LOUD\"\n").unwrap();

    // Named by -c, as every test's keepup names a config: listed once, as it is kept anyway.
    let list = env.keepup_with(&running, &["list"]);
    list.expect(1);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{list:#?}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE") && lines[0].contains("CONFIG")
    );
    let states: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        states,
        ["running", "stopped", "dead", "broken"],
        "{list:#?}"
    );
    assert!(
        lines[4].contains("stop_signal"),
        "the broken row says why: {list:#?}"
    );
    // Aligned: every row's CONFIG column starts where the header's does.
    let at = lines[0].find("CONFIG").unwrap();
    for line in &lines[1..] {
        assert_eq!(&line[at..=at], "/", "misaligned: {list:#?}");
    }

    let listed = json(&env.keepup_with(&running, &["ls", "--json"]));
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (row, config) in rows.iter().zip([&running, &stopped, &dead]) {
        let single = json(&env.keepup_with(config, &["status", "--json"]));
        for key in [
            "name",
            "state",
            "pid",
            "kept_up",
            "config",
            "watcher",
            "revivals_24h",
        ] {
            assert_eq!(row[key], single[key], "{key} of {}", config.display());
        }
    }
    assert_eq!(rows[3]["state"], "broken");
    assert!(rows[3]["reason"].as_str().unwrap().contains("stop_signal"));

    // Without a timer line, what keepup keeps is still listed (its record of what it keeps):
    // the running and the dead service, not the stopped or the broken one.
    std::fs::remove_file(env.crontab_file()).unwrap();
    let kept = env.keepup_with(&running, &["list"]);
    kept.expect(1);
    let configs: Vec<&str> = kept
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        configs,
        [running.to_str().unwrap(), dead.to_str().unwrap()],
        "{kept:#?}"
    );

    // A config given that no timer names is listed too; all well is exit 0.
    env.keepup_with(&dead, &["stop"]).expect(0);
    let extra = service(&env, "e-extra", "");
    let fine = env.keepup_with(
        &running,
        &["list", running.to_str().unwrap(), extra.to_str().unwrap()],
    );
    fine.expect(0);
    assert_eq!(fine.stdout.lines().count(), 3, "{fine:#?}");
    env.keepup_with(&running, &["stop"]).expect(0);
}

// Old list: `keepup -c CONFIG ls` left out the config it was given.
#[test]
fn list_includes_the_config_named_by_c_or_keepup_config() {
    let env = TestEnv::new();
    env.script("app/svc.sh", "#!/bin/sh\nexec sleep 1000\n");
    // Neither kept nor named by a timer line: naming it is what lists it.
    let config = env.write("app/cfg.toml", "entry = \"svc.sh\"\n");
    let rows = |run: &Run| -> Vec<String> {
        run.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().last().unwrap_or("").to_owned())
            .collect()
    };
    let by_flag = env.keepup_with(&config, &["list"]);
    by_flag.expect(0).stdout_has("stopped");
    assert_eq!(rows(&by_flag), [config.to_str().unwrap()], "{by_flag:#?}");
    let list = |vars: &[(&str, &Path)]| {
        let mut command = env.command(Path::new(env!("CARGO_BIN_EXE_keepup")));
        for (name, value) in vars {
            command.env(name, value);
        }
        Run::from_output(&command.arg("list").output().unwrap())
    };
    let by_env = list(&[("KEEPUP_CONFIG", &config)]);
    by_env.expect(0);
    assert_eq!(rows(&by_env), [config.to_str().unwrap()], "{by_env:#?}");
    // The default (./cfg.toml, absent here) is not named: nothing to list, nothing broken.
    let unnamed = list(&[]);
    unnamed.expect(0);
    assert_eq!(rows(&unnamed), Vec::<String>::new(), "{unnamed:#?}");
    // A named config that is not there is a broken row, as any config given.
    let missing = env.path("gone/cfg.toml");
    env.keepup_with(&missing, &["list"])
        .expect(1)
        .stdout_has("broken")
        .stdout_has(missing.to_str().unwrap());
}

fn doctor(env: &TestEnv, config: &Path) -> Run {
    env.keepup_with(config, &["doctor"])
}

/// Whether [`in_namespace`] can run here (else it says why the test is skipped).
fn namespaces_here() -> bool {
    if !nix::unistd::geteuid().is_root() {
        crate::testenv::skip("needs root for a pid namespace of its own");
        return false;
    }
    have("cron", "cron") && have("unshare", "util-linux")
}

/// `keepup VERB` in a pid (and mount) namespace of its own, where no cron daemon runs,
/// unless `cron` starts one in it first (it ends with the namespace).
fn in_namespace(env: &TestEnv, config: &Path, verb: &str, cron: bool) -> Run {
    let keepup = env!("CARGO_BIN_EXE_keepup");
    // Its own /run too: the pid file of a cron daemon outside would stop this one.
    let script = if cron {
        "mount -t tmpfs keepup-test /run && cron && exec \"$0\" -c \"$1\" \"$2\""
    } else {
        "exec \"$0\" -c \"$1\" \"$2\""
    };
    let out = env
        .command(Path::new("unshare"))
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            script,
            keepup,
        ])
        .arg(config)
        .arg(verb)
        .output()
        .unwrap();
    Run::from_output(&out)
}

#[test]
fn doctor_is_all_ok_on_a_healthy_setup_and_names_a_missing_cron_daemon() {
    require!("python3", "python3");
    if !namespaces_here() {
        return;
    }
    let env = TestEnv::new();
    let config = service(&env, "app", "");
    env.keepup_with(&config, &["install-timer"]).expect(0);

    let healthy = in_namespace(&env, &config, "doctor", true);
    healthy.expect(0);
    for line in healthy.stdout.lines().filter(|l| !l.starts_with(' ')) {
        assert!(line.starts_with("ok"), "not ok: {line}\n{healthy:#?}");
    }
    for check in [
        "config:",
        "startup:",
        "timer:",
        "cron:",
        "files:",
        "watcher:",
        "pid lock:",
        "keeper:",
    ] {
        healthy.stdout_has(check);
    }

    let no_cron = in_namespace(&env, &config, "doctor", false);
    no_cron
        .expect(1)
        .stdout_has("fail  cron: no cron daemon runs")
        .stdout_has("the timer never fires")
        .stdout_has("fix: start it");
}

// Old install-timer: "restart runs every minute" where no cron daemon ran, so nothing ever did.
#[test]
fn install_timer_says_when_no_cron_daemon_would_run_it() {
    if !namespaces_here() {
        return;
    }
    let env = TestEnv::new();
    env.script("app/svc.sh", "#!/bin/sh\nexec sleep 1000\n");
    let config = env.write("app/cfg.toml", "entry = \"svc.sh\"\n");
    let alone = in_namespace(&env, &config, "install-timer", false);
    alone
        .expect(0)
        .stdout_has("timer for svc.sh installed, but nothing runs it yet")
        .stderr_has("no cron daemon runs")
        .stderr_has("sudo systemctl enable --now cron")
        .stderr_has("apt-get install cron")
        .stderr_has("`keepup doctor` checks it");
    assert!(!alone.stdout.contains("every minute"), "{alone:#?}");
    assert_eq!(alone.stderr.lines().count(), 1, "{alone:#?}");
    let line = std::fs::read_to_string(env.crontab_file()).unwrap();
    assert!(
        line.contains("restart --timer"),
        "the line is written all the same: {line}"
    );
    in_namespace(&env, &config, "install-timer", true)
        .expect(0)
        .stdout_has("timer for svc.sh is already installed: restart runs every minute");
}

#[test]
fn doctor_names_an_interpreter_the_timers_path_lacks() {
    require!("python3", "python3");
    let env = TestEnv::new();
    // The script's interpreter is found only through a folder on this shell's PATH.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(which("python3"), bin.join("kup-python")).unwrap();
    env.script(
        "app/svc.py",
        "#!/usr/bin/env kup-python\nimport time\nwhile True:\n    time.sleep(1)\n",
    );
    let config = env.write("app/cfg.toml", "entry = \"svc.py\"\n");
    let path_with = format!("{}:/usr/bin:/bin", bin.display());
    // keepup VERB, run from a shell whose PATH is `path`.
    let with_path = |path: &str, verb: &str| {
        let out = env
            .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
            .env("PATH", path)
            .args(["-c"])
            .arg(&config)
            .arg(verb)
            .output()
            .unwrap();
        Run::from_output(&out)
    };
    let install = |path: &str| {
        with_path(path, "install-timer").expect(0);
    };
    let doctor_with = |path: &str| with_path(path, "doctor");
    // Installed from a shell that finds it: fine.
    install(&path_with);
    doctor_with(&path_with).stdout_has("ok    startup:");
    // Installed from one that does not: the timer's restart could never start it.
    install("/usr/bin:/bin");
    let run = doctor_with(&path_with);
    run.expect(1)
        .stdout_has("fail  startup:")
        .stdout_has("#!/usr/bin/env kup-python")
        .stdout_has("the timer's PATH (/usr/bin:/bin)")
        .stdout_has("fix: run install-timer again");
}

#[test]
fn doctor_names_a_timer_whose_keepup_was_moved() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let config = service(&env, "app", "");
    let old = env.path("old/keepup");
    crate::testenv::install_program(Path::new(env!("CARGO_BIN_EXE_keepup")), &old);
    let out = env
        .command(&old)
        .args(["-c"])
        .arg(&config)
        .arg("install-timer")
        .output()
        .unwrap();
    Run::from_output(&out).expect(0);
    std::fs::remove_file(&old).unwrap();
    doctor(&env, &config)
        .expect(1)
        .stdout_has(&format!(
            "fail  timer: it runs {}, which does not exist",
            old.display()
        ))
        .stdout_has("fix: keepup -c")
        .stdout_has("install-timer");
}

#[test]
fn doctor_names_a_read_only_state_folder() {
    require!("python3", "python3");
    let Some(alice) = TestUser::new() else {
        return;
    };
    let env = TestEnv::new();
    env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\nstate_dir = \"state\"\n");
    std::fs::create_dir_all(env.path("state")).unwrap();
    alice.give(&env.root);
    std::fs::set_permissions(
        env.path("state"),
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    let run = alice.keepup(&env, &["doctor"]);
    run.expect(1)
        .stdout_has("fail  state folder:")
        .stdout_has("is not writable by this user")
        .stdout_has("fix: make it writable");
}

#[test]
fn doctor_names_a_broken_config_and_a_stale_pid_lock() {
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nlog_keep = \"many\"\n");
    env.keepup(&["doctor"])
        .expect(1)
        .stdout_has("fail  config:")
        .stdout_has("log_keep");
    env.config("entry = \"svc.py\"\n");
    std::fs::write(env.path("svc.py.pid"), "-1\n").unwrap();
    env.keepup(&["doctor"])
        .expect(1)
        .stdout_has("fail  pid lock:")
        .stdout_has("stop, then start");
}

/// `keepup completions bash` sourced in a real bash: how it is registered (`complete -p`),
/// then what it offers for `keepup WORD`, one a line.
fn bash_completion(env: &TestEnv, word: &str) -> Run {
    let script = env.path("keepup.bash");
    let out = env
        .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    std::fs::write(&script, &Run::from_output(&out).expect(0).stdout).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; complete -p keepup; COMP_WORDS=(keepup \"$2\"); COMP_CWORD=1; \
             COMP_LINE=\"keepup $2\"; COMP_POINT=${#COMP_LINE}; _keepup keepup \"$2\" keepup; \
             printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .arg("bash")
        .arg(&script)
        .arg(word)
        .output()
        .unwrap();
    Run::from_output(&out)
}

#[test]
fn bash_completes_the_verbs() {
    require!("bash", "bash");
    let env = TestEnv::new();
    let run = bash_completion(&env, "st");
    run.expect(0).stdout_has("-F _keepup keepup");
    let mut words: Vec<&str> = run.stdout.lines().skip(1).collect();
    words.sort_unstable();
    assert_eq!(words, ["start", "status", "stop"], "{run:#?}");
}

/// `keepup man` through man(1), which must have nothing to say: the page as a person reads it,
/// which has every one of `texts`.
fn man_page_with(env: &TestEnv, texts: &[&str]) -> Run {
    let page = env.path("keepup.1");
    let out = env
        .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
        .arg("man")
        .output()
        .unwrap();
    std::fs::write(&page, &Run::from_output(&out).expect(0).stdout).unwrap();
    let out = Command::new("man")
        // Not justified or hyphenated: the words as written, one space apart.
        .args(["--warnings", "--nj", "--nh", "-l"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let mut run = Run::from_output(&out);
    run.expect(0);
    assert!(run.stderr.is_empty(), "man had something to say: {run:#?}");
    // Bold and underline are overstruck with backspaces: the letters alone.
    let mut plain = String::new();
    for c in run.stdout.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    run.stdout = plain;
    for text in texts {
        run.stdout_has(text);
    }
    run
}

#[test]
fn the_man_page_renders_without_a_warning_and_tells_keys_and_exit_codes() {
    require!("man", "man-db");
    let env = TestEnv::new();
    man_page_with(
        &env,
        &[
            "COMMANDS",
            "restart",
            "export systemd",
            "doctor",
            "CONFIG",
            "stop_signal",
            "restart_limit",
            "watch",
            "EXIT STATUS",
            "78",
            "KEEPUP_WATCH_POLL",
        ],
    );
}

// Old man page: the verbs' own options only, by their long names: nothing of `export systemd`'s
// --user, --system and --name or `export launchd`'s --label, and no `-n` or `-f`.
#[test]
fn the_man_page_lists_every_option_of_every_verb_as_clap_defines_it() {
    use clap::CommandFactory;
    require!("man", "man-db");
    let env = TestEnv::new();
    let run = man_page_with(
        &env,
        &[
            "keepup [-c CONFIG] export systemd",
            "--user:",
            "--system:",
            "--name <NAME>:",
            "--label <LABEL>:",
            "-n, --lines <LINES>:",
            "-f, --follow:",
            "(also: ls)",
        ],
    );
    // Every option of every verb a person may use, at any depth, from the parser itself.
    let mut verbs = vec![keepup::cli::Cli::command()];
    while let Some(verb) = verbs.pop() {
        for sub in verb.get_subcommands().filter(|s| !s.is_hide_set()) {
            verbs.push(sub.clone());
        }
        for arg in verb.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                run.stdout_has(&format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                run.stdout_has(&format!("-{short},"));
            }
        }
    }
}

// Old completions: bash offered `watch`, keepup's internal verb for its watcher.
#[test]
fn completions_never_offer_the_watchers_own_verb() {
    require!("bash", "bash");
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env
            .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
            .args(["completions", shell])
            .output()
            .unwrap();
        let run = Run::from_output(&out);
        run.expect(0);
        assert!(!run.stdout.contains("watch"), "{shell}: {}", run.stdout);
    }
    let run = bash_completion(&env, "w");
    run.expect(0);
    let offered: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(offered.is_empty(), "offered for `keepup w`: {run:#?}");
}

#[test]
fn doctor_names_a_second_config_that_keeps_the_same_entry() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let config = service(&env, "app", "");
    let other = env.write("other/cfg.toml", "entry = \"../app/svc.py\"\n");
    env.keepup_with(&config, &["install-timer"]).expect(0);
    doctor(&env, &config).stdout_has("ok    keeper:");
    env.keepup_with(&other, &["install-timer"]).expect(0);
    doctor(&env, &config)
        .expect(1)
        .stdout_has(&format!("fail  keeper: {} also keeps", other.display()))
        .stdout_has("fix: keep it with one config");
}

// Old doctor: `ok files: … writable` for a log that start cannot open (its folder missing, a
// directory, a FIFO), while every start failed on it.
#[test]
fn doctor_fails_a_log_that_start_cannot_open() {
    let env = TestEnv::new();
    env.script("svc.sh", "#!/bin/sh\nexec sleep 1000\n");
    std::fs::create_dir_all(env.path("a dir")).unwrap();
    nix::unistd::mkfifo(
        &env.path("fifo.log"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let missing = env.path("no folder");
    for (log, says, fix) in [
        (
            "no folder/svc.log",
            format!("its folder {} does not exist", missing.display()),
            format!("fix: mkdir -p '{}'", missing.display()),
        ),
        (
            "a dir",
            "is a directory: start fails".to_owned(),
            format!("fix: remove it (rmdir '{}')", env.path("a dir").display()),
        ),
        (
            "fifo.log",
            "is a FIFO: start fails".to_owned(),
            format!("fix: remove it (rm {})", env.path("fifo.log").display()),
        ),
    ] {
        env.config(&format!(
            "entry = \"svc.sh\"\nlog = \"{log}\"\nwatch = false\n"
        ));
        let run = env.keepup(&["doctor"]);
        run.expect(1)
            .stdout_has("fail  log:")
            .stdout_has(&says)
            .stdout_has(&fix);
        assert!(!run.stdout.contains("ok    files:"), "{run:#?}");
        // What doctor says is what start meets.
        env.keepup(&["start"]).expect(1);
    }
    // A log in a state folder not made yet is fine: start makes that folder first.
    env.config("entry = \"svc.sh\"\nstate_dir = \"state/sub\"\n");
    env.keepup(&["doctor"]).stdout_has("ok    files:");
}

// Old doctor: fix lines with the config's path as it is (`keepup -c /my app/cfg.toml …`, two
// words to a shell), and "run install-timer again" where no timer had ever been installed.
#[test]
fn doctor_fix_lines_paste_into_a_shell() {
    let env = TestEnv::new();
    env.script("my app/svc.sh", "#!/bin/sh\nexec sleep 1000\n");
    let config = env.write(
        "my app/cfg.toml",
        "entry = \"svc.sh\"\nstartup = \"kup-no-such-program {entry}\"\n",
    );
    let quoted = format!("'{}'", config.display());
    let run = doctor(&env, &config);
    run.expect(1)
        .stdout_has(&format!("fix: keepup -c {quoted} install-timer"))
        .stdout_has("fix: run install-timer from a shell whose PATH finds it");
    assert!(
        !run.stdout.contains("again"),
        "no timer to install again: {run:#?}"
    );
    // Pasted, the fix line is one command that names this config.
    let fix = run
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("fix: keepup "))
        .unwrap();
    let words = shell_words::split(fix).unwrap();
    assert_eq!(words[..2], ["-c", config.to_str().unwrap()], "{fix}");
}
