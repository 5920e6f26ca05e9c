//! `export systemd` and `export launchd`: the unit passes `systemd-analyze verify` with nothing
//! to say, its `ExecStart=` and `Environment=` read back (by systemd.syntax(7)) as exactly the
//! argv and environment keepup runs, and the plist parses with the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::testenv::{Run, TestEnv, which};

/// A folder name that needs every kind of care: spaces, quotes, `%`, `$`, a backslash, unicode.
const AWKWARD: &str = "my bot \"q\" 100% $HOME \\ ünï ☃";

struct Case {
    startup: &'static str,
    /// Whether startup runs the script through python3 (found on PATH), or the entry itself.
    through_python: bool,
    stop_signal: &'static str,
    /// `stop_mode`, and the `KillMode=` it becomes.
    stop_mode: (&'static str, &'static str),
    durations: (&'static str, &'static str),
}

fn env_table() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("TOKEN".to_owned(), "a b \"c\" 50% $HOME \\n ü".to_owned()),
        ("EMPTY".to_owned(), String::new()),
        ("LINES".to_owned(), "one\ntwo\ttab".to_owned()),
    ])
}

/// Writes the case's config (every key) with its entry in the awkward folder.
fn write_case(env: &TestEnv, case: &Case) -> (PathBuf, PathBuf) {
    let entry = env.script(
        &format!("{AWKWARD}/bot.py"),
        "#!/usr/bin/env python3\nimport time\nwhile True:\n    time.sleep(1)\n",
    );
    let mut toml_env = String::new();
    for (name, value) in env_table() {
        let value = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\t', "\\t");
        let _ = writeln!(toml_env, "{name} = \"{value}\"");
    }
    let config = env.write(
        "cfg.toml",
        &format!(
            "entry = '{AWKWARD}/bot.py'\nstartup = '''{}'''\nsearch = \"auto\"\nlog = \
             'logs ü/bot 100%.log'\nstop_signal = \"{}\"\nstop_mode = \"{}\"\n{}\nready = \"tcp:127.0.0.1:9\"\n\
             log_max_size = \"1MB\"\nlog_keep = 2\nstate_dir = 'state ü'\nwatch = true\n\n[env]\n\
             {toml_env}\n[restart_limit]\n{}\n",
            case.startup,
            case.stop_signal,
            case.stop_mode.0,
            case.durations.0,
            case.durations.1
        ),
    );
    (config, entry)
}

fn cases() -> Vec<Case> {
    let signals = [
        "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "KILL", "WINCH",
    ];
    // Top-level durations, then the guard's (a table, so written last).
    let durations = [
        (
            "stop_timeout = \"1500ms\"\nstart_timeout = \"2s\"",
            "burst = 4\ninterval = \"1h\"\ncooldown = \"2m\"\nbackoff = \"250ms\"",
        ),
        (
            "stop_timeout = \"3m\"\nstart_timeout = \"500ms\"",
            "burst = 1\ninterval = \"30s\"\nbackoff = \"2s\"",
        ),
        ("stop_timeout = \"1h\"", "interval = \"10m\""),
    ];
    signals
        .iter()
        .enumerate()
        .map(|(i, signal)| {
            let durations = durations[i % durations.len()];
            let stop_mode = if i % 3 == 0 {
                ("group", "control-group")
            } else {
                ("leader", "mixed")
            };
            if i % 2 == 0 {
                Case {
                    startup: r#"python3 {entry} --name "a b" "it's" 100% $HOME \x ü {dir}"#,
                    through_python: true,
                    stop_signal: signal,
                    stop_mode,
                    durations,
                }
            } else {
                Case {
                    startup: "{entry} --flag=\"quoted value\" '%n' '$$' '\\\\'",
                    through_python: false,
                    stop_signal: signal,
                    stop_mode,
                    durations,
                }
            }
        })
        .collect()
}

/// What keepup runs for the case: its program made absolute, then the words.
fn expected_argv(case: &Case, entry: &Path) -> Vec<String> {
    let dir = entry.parent().unwrap().display().to_string();
    let entry = entry.display().to_string();
    if case.through_python {
        let python = which("python3").display().to_string();
        vec![
            python,
            entry,
            "--name".into(),
            "a b".into(),
            "it's".into(),
            "100%".into(),
            "$HOME".into(),
            "x".into(),
            "ü".into(),
            dir,
        ]
    } else {
        vec![
            entry,
            "--flag=quoted value".into(),
            "%n".into(),
            "$$".into(),
            "\\\\".into(),
        ]
    }
}

/// systemd.syntax(7), undone: specifiers (`%%`), then words (quotes and C escapes), then `$$`.
fn systemd_words(value: &str) -> Vec<String> {
    let mut unspecified = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            assert_eq!(
                chars.next(),
                Some('%'),
                "a specifier left unescaped in {value}"
            );
        }
        unspecified.push(c);
    }
    let mut words = Vec::new();
    let mut chars = unspecified.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        let quoted = first == '"';
        if quoted {
            chars.next();
        }
        loop {
            let Some(c) = chars.next() else {
                assert!(!quoted, "unterminated quote in {value}");
                break;
            };
            match c {
                '"' if quoted => break,
                c if !quoted && c.is_whitespace() => break,
                '\\' => match chars.next().unwrap() {
                    'n' => word.push('\n'),
                    't' => word.push('\t'),
                    'r' => word.push('\r'),
                    'x' => {
                        let hex: String = [chars.next().unwrap(), chars.next().unwrap()]
                            .iter()
                            .collect();
                        word.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                    }
                    other => word.push(other),
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// `$$` → `$`; a lone `$` would be a variable, which keepup's words never are.
fn undollar(word: &str) -> String {
    assert!(
        !word.replace("$$", "").contains('$'),
        "a variable in {word:?}"
    );
    word.replace("$$", "$")
}

fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .collect()
}

fn verify(env: &TestEnv, unit: &str, name: &str, user: bool) {
    let dir = env.path(&format!("units-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.service"));
    std::fs::write(&file, unit).unwrap();
    let run = analyze(env, &[file], user);
    assert!(
        run.code == 0 && run.stderr.is_empty() && run.stdout.is_empty(),
        "systemd-analyze verify had something to say:\n{run:#?}\n{unit}"
    );
}

/// `systemd-analyze verify FILES`, for the user's manager (`user`) or the system's.
fn analyze(env: &TestEnv, files: &[PathBuf], user: bool) -> Run {
    let runtime = env.path("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut command = Command::new("systemd-analyze");
    if user {
        command.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    Run::from_output(&command.arg("verify").args(files).output().unwrap())
}

#[test]
fn systemd_units_verify_and_read_back_as_what_keepup_runs() {
    require!("systemd-analyze", "systemd");
    require!("python3", "python3");
    for (i, case) in cases().iter().enumerate() {
        let env = TestEnv::new();
        let (_, entry) = write_case(&env, case);
        let user = env.keepup(&["export", "systemd"]);
        user.expect(0)
            .stderr_has("systemctl --user daemon-reload")
            .stderr_has("loginctl enable-linger");
        let system = env.keepup(&["export", "systemd", "--system", "--name", "my-bot"]);
        system
            .expect(0)
            .stderr_has("/etc/systemd/system/my-bot.service");
        for (unit, user) in [(&user.stdout, true), (&system.stdout, false)] {
            verify(&env, unit, &format!("case{i}"), user);
            let exec = settings(unit, "ExecStart");
            assert_eq!(exec.len(), 1, "{unit}");
            let mut argv: Vec<String> =
                systemd_words(exec[0]).iter().map(|w| undollar(w)).collect();
            // systemd takes no quote or backslash in the program's own path: env runs it,
            // and then exactly keepup's argv runs.
            if !case.through_python {
                assert_eq!(argv.remove(0), which("env").display().to_string(), "{unit}");
            }
            assert_eq!(argv, expected_argv(case, &entry), "{unit}");
            let mut environment: BTreeMap<String, String> = settings(unit, "Environment")
                .iter()
                .flat_map(|v| systemd_words(v))
                .map(|a| {
                    let (k, v) = a.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            // Nothing recorded (never started): the PATH of the shell that exports it.
            assert_eq!(
                environment.remove("PATH"),
                std::env::var("PATH").ok(),
                "{unit}"
            );
            assert_eq!(environment, env_table(), "{unit}");
            let signal = format!("KillSignal=SIG{}", case.stop_signal);
            assert!(unit.contains(&signal), "{signal} missing:\n{unit}");
            let kill_mode = format!("KillMode={}\n", case.stop_mode.1);
            assert!(
                unit.contains("Restart=always\n") && unit.contains(&kill_mode),
                "{unit}"
            );
        }
        assert!(
            system.stdout.contains("User=root\nGroup=root\n"),
            "{}",
            system.stdout
        );
        assert!(system.stdout.contains("WantedBy=multi-user.target"));
        assert!(user.stdout.contains("WantedBy=default.target"));
        assert!(!user.stdout.contains("User="));
    }
}

#[test]
fn the_plist_parses_to_what_keepup_runs() {
    require!("python3", "python3");
    for case in cases().iter().take(2) {
        let env = TestEnv::new();
        let (_, entry) = write_case(&env, case);
        let run = env.keepup(&["export", "launchd", "--label", "com.example.bot"]);
        run.expect(0).stderr_has("launchctl bootstrap");
        let plist = env.write("bot.plist", &run.stdout);
        let parsed = Command::new("python3")
            .arg("-c")
            .arg(
                "import json, plistlib, sys\nd = plistlib.load(open(sys.argv[1], 'rb'))\n\
                 print(json.dumps(d))",
            )
            .arg(&plist)
            .output()
            .unwrap();
        let parsed = Run::from_output(&parsed);
        parsed.expect(0);
        let value: serde_json::Value = serde_json::from_str(&parsed.stdout).unwrap();
        let argv: Vec<String> = serde_json::from_value(value["ProgramArguments"].clone()).unwrap();
        assert_eq!(argv, expected_argv(case, &entry));
        let vars: BTreeMap<String, String> =
            serde_json::from_value(value["EnvironmentVariables"].clone()).unwrap();
        assert_eq!(vars, env_table());
        assert_eq!(value["Label"], "com.example.bot");
        assert_eq!(value["KeepAlive"], true);
        assert_eq!(value["RunAtLoad"], true);
        assert_eq!(
            value["WorkingDirectory"].as_str(),
            Some(entry.parent().unwrap().to_str().unwrap())
        );
    }
}

#[test]
fn export_writes_nothing_and_says_to_stop_keeping_it_first() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nstart_timeout = \"300ms\"\n");
    let before: Vec<_> = std::fs::read_dir(&env.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let quiet = env.keepup(&["export", "systemd"]);
    quiet.expect(0);
    assert!(!quiet.stderr.contains("keepup stop"), "{quiet:#?}");
    let after: Vec<_> = std::fs::read_dir(&env.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "export wrote a file");

    env.keepup(&["start"]).expect(0);
    env.keepup(&["export", "launchd"])
        .expect(0)
        .stderr_has("stop")
        .stderr_has("uninstall-timer");
    env.keepup(&["stop"]).expect(0);

    env.config("entry = \"svc.py\"\nstop_signal = \"LOUD\"\n");
    env.keepup(&["export", "systemd"])
        .expect(78)
        .stderr_has("stop_signal");
    env.config("entry = \"svc.py\"\n");
    env.keepup(&["export", "systemd", "--name", ""])
        .expect(1)
        .stderr_has("--name");
}

// Old export: "first run `keepup -c /my app/cfg.toml stop`", which a shell reads as two words.
#[test]
fn export_advice_pastes_into_a_shell() {
    let env = TestEnv::new();
    env.script("my app/svc.sh", "#!/bin/sh\nexec sleep 1000\n");
    let config = env.write("my app/cfg.toml", "entry = \"svc.sh\"\n");
    // Kept (its timer is installed): export says to stop keeping it first.
    env.keepup_with(&config, &["install-timer"]).expect(0);
    let quoted = format!("'{}'", config.display());
    env.keepup_with(&config, &["export", "systemd"])
        .expect(0)
        .stderr_has(&format!("`keepup -c {quoted} stop`"))
        .stderr_has(&format!("`keepup -c {quoted} uninstall-timer`"));
    env.keepup_with(&config, &["export", "launchd", "--label", "my bot"])
        .expect(0)
        .stderr_has("launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/'my bot.plist'");
}

// Old export systemd: the entry `srv ü.py` made the unit `srv--` while `--name wéb` was refused
// (two rules); and the unit carried no PATH, so a `#!/usr/bin/env` script ran under systemd's
// own PATH, not the one keepup launched it with.
#[test]
fn systemd_units_are_named_as_systemd_escape_and_run_with_keepups_path() {
    require!("systemd-escape", "systemd");
    require!("systemd-analyze", "systemd");
    let env = TestEnv::new();
    // Its interpreter is found only through a folder on the PATH of the shell that starts it.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.join("kup-sh")).unwrap();
    env.script(
        "srv ü.sh",
        "#!/usr/bin/env kup-sh\nwhile :; do sleep 1; done\n",
    );
    env.config("entry = \"srv ü.sh\"\n");
    let with_path = |path: &str, args: &[&str]| {
        let out = env
            .command(Path::new(env!("CARGO_BIN_EXE_keepup")))
            .env("PATH", path)
            .arg("-c")
            .arg(env.path("cfg.toml"))
            .args(args)
            .output()
            .unwrap();
        Run::from_output(&out)
    };
    let start_path = format!("{}:/usr/bin:/bin", bin.display());
    with_path(&start_path, &["start"]).expect(0);
    // Exported from a shell whose PATH lacks that folder: the unit has the start's.
    let exported = with_path("/usr/bin:/bin", &["export", "systemd", "--system"]);
    exported.expect(0);
    let paths: Vec<String> = settings(&exported.stdout, "Environment")
        .iter()
        .flat_map(|v| systemd_words(v))
        .filter_map(|a| a.strip_prefix("PATH=").map(str::to_owned))
        .collect();
    assert_eq!(paths, [start_path], "{}", exported.stdout);

    // The entry's name and --name, by one rule: systemd-escape's (a dash stays a dash).
    let escape = |name: &str| {
        let out = Command::new("systemd-escape").arg(name).output().unwrap();
        Run::from_output(&out).expect(0).stdout.trim().to_owned()
    };
    for (name, unit) in [
        (None, escape("srv ü")),
        (Some("wéb"), escape("wéb")),
        (Some(".my bot"), escape(".my bot")),
        (Some("my-bot"), "my-bot".to_owned()),
    ] {
        let mut args = vec!["export", "systemd", "--system"];
        args.extend(name.iter().flat_map(|n| ["--name", n]));
        let run = with_path("/usr/bin:/bin", &args);
        run.expect(0).stderr_has(&format!(
            "as /etc/systemd/system/{}, then",
            shell_words::quote(&format!("{unit}.service"))
        ));
        verify(&env, &run.stdout, &unit, false);
    }
    env.keepup(&["stop"]).expect(0);
}

/// `notify`, `watchdog` and `max_memory` become `Type=notify`, `WatchdogSec=` and `MemoryMax=`;
/// what systemd lacks (a graceful memory restart, a health probe) is said in a comment; the unit
/// still verifies.
#[test]
fn systemd_units_map_notify_watchdog_and_max_memory() {
    require!("systemd-analyze", "systemd");
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\nready = \"notify\"\nwatchdog = \"30s\"\nmax_memory = \"500MB\"\n\
         health = \"cmd:true\"\nhealth_interval = \"10s\"\n",
    );
    let export = env.keepup(&["export", "systemd"]);
    export.expect(0);
    let unit = &export.stdout;
    assert_eq!(settings(unit, "Type"), ["notify"], "{unit}");
    assert_eq!(settings(unit, "WatchdogSec"), ["30s"], "{unit}");
    assert_eq!(settings(unit, "MemoryMax"), ["524288000"], "{unit}");
    assert!(
        unit.contains("systemd has no graceful memory restart"),
        "{unit}"
    );
    assert!(unit.contains("systemd has no health probe"), "{unit}");
    verify(&env, unit, "notify", true);
}

#[test]
fn listen_exports_as_a_socket_unit_and_a_sockets_dictionary() {
    require!("systemd-analyze", "systemd");
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\nstartup = \"python3 {entry} --fd {fd}\"\n\
         listen = [\"tcp:127.0.0.1:8000\", \"ctl=unix:run/ctl.sock\"]\n",
    );
    let sock = env.path("run/ctl.sock");
    let service = env.keepup(&["export", "systemd"]);
    service.expect(0).stderr_has("export systemd --socket");
    assert_eq!(
        systemd_words(settings(&service.stdout, "ExecStart")[0])[2..],
        ["--fd", "3"]
    );
    let socket = env.keepup(&["export", "systemd", "--socket"]);
    socket.expect(0).stderr_has("svc.socket");
    assert_eq!(
        settings(&socket.stdout, "ListenStream"),
        ["127.0.0.1:8000", sock.to_str().unwrap()]
    );
    // Both units, side by side as the advice says, verify as one service.
    let dir = env.path("units");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("svc.service"), &service.stdout).unwrap();
    std::fs::write(dir.join("svc.socket"), &socket.stdout).unwrap();
    let verified = analyze(
        &env,
        &[dir.join("svc.socket"), dir.join("svc.service")],
        true,
    );
    assert!(
        verified.code == 0 && verified.stderr.is_empty(),
        "systemd-analyze verify had something to say:\n{verified:#?}\n{}",
        socket.stdout
    );

    let plist = env.keepup(&["export", "launchd"]);
    plist.expect(0);
    let file = env.write("svc.plist", &plist.stdout);
    let parsed = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, plistlib, sys\n\
             print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))['Sockets']))",
        )
        .arg(&file)
        .output()
        .unwrap();
    let parsed = Run::from_output(&parsed);
    parsed.expect(0);
    let sockets: serde_json::Value = serde_json::from_str(&parsed.stdout).unwrap();
    assert_eq!(
        sockets,
        serde_json::json!({
            "8000": {"SockType": "stream", "SockFamily": "IPv4",
                     "SockNodeName": "127.0.0.1", "SockServiceName": "8000"},
            "ctl": {"SockType": "stream", "SockPathName": sock},
        })
    );

    env.config("entry = \"svc.py\"\n");
    env.keepup(&["export", "systemd", "--socket"])
        .expect(1)
        .stderr_has("has no `listen`");
}
