//! Bad input: each config mistake exits 78 with one line naming the file and the key, and
//! nothing is started, written or removed, whatever the command.

use std::collections::BTreeMap;
use std::path::Path;

use crate::testenv::TestEnv;

/// Every file under `dir` with its content (symlinks and folders by name).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(folder) = todo.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                todo.push(path);
                files.insert(name, Vec::new());
            } else {
                files.insert(name, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

const VERBS: [&[&str]; 6] = [
    &["start"],
    &["stop"],
    &["kill"],
    &["restart"],
    &["restart", "--force"],
    &["status"],
];

/// Runs every verb on `config` and checks the contract for a config error.
fn refused(env: &TestEnv, config: &Path, expected: &[&str]) {
    refused_by(env, config, &VERBS, expected);
}

fn refused_by(env: &TestEnv, config: &Path, verbs: &[&[&str]], expected: &[&str]) {
    let before = snapshot(&env.root);
    for verb in verbs {
        let run = env.keepup_with(config, verb);
        run.expect(78);
        assert_eq!(run.stderr.lines().count(), 1, "not one line: {run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(
            run.stderr.contains(&config.display().to_string()),
            "file not named: {run:#?}"
        );
        for text in expected {
            assert!(run.stderr.contains(text), "{text:?} not named: {run:#?}");
        }
    }
    assert_eq!(snapshot(&env.root), before, "a config error changed files");
    assert!(
        env.own_processes().is_empty(),
        "a config error started something"
    );
}

fn case(body: &str, expected: &[&str]) {
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    // A pid lock that stop must not remove, and a log nothing may touch.
    env.write("svc.py.pid", "4242\n");
    env.write("svc.py.log", "old line\n");
    let config = env.config(body);
    refused(&env, &config, expected);
}

#[test]
fn missing_config_file() {
    let env = TestEnv::new();
    refused(
        &env,
        &env.path("nowhere/cfg.toml"),
        &["no such config file"],
    );
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    case(
        "entry = \"svc.py\"\nstop_timeout = \"10s\n",
        &["cfg.toml: 2:"],
    );
}

#[test]
fn unknown_key() {
    case(
        "entry = \"svc.py\"\nstop_timout = \"10s\"\n",
        &["`stop_timout`", "2:1"],
    );
}

#[test]
fn missing_entry_key() {
    case("startup = \"{entry}\"\n", &["missing key `entry`"]);
}

/// Only the verbs that launch need the entry: `status`, `stop` and `kill` still reach an
/// instance whose entry was deleted (see field.rs).
#[test]
fn entry_that_does_not_exist() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.write("nope.py.log", "old line\n");
    let config = env.config("entry = \"nope.py\"\n");
    refused_by(
        &env,
        &config,
        &[&["start"], &["restart", "--force"]],
        &["key `entry`", "nope.py", "does not exist"],
    );
}

#[test]
fn shell_syntax_in_startup() {
    require!("python3", "python3");
    case(
        "entry = \"svc.py\"\nstartup = \"nohup python3 svc.py > out.log 2>&1 &\"\n",
        &["key `startup`", "without a shell", "sh -c"],
    );
}

#[test]
fn bad_duration() {
    case(
        "entry = \"svc.py\"\nstop_timeout = \"ten seconds\"\n",
        &["key `stop_timeout`", "ten seconds"],
    );
}

#[test]
fn bad_signal_name() {
    case(
        "entry = \"svc.py\"\nstop_signal = \"SIGTERMINATE\"\n",
        &["key `stop_signal`", "SIGTERMINATE"],
    );
}

#[test]
fn bad_search_value() {
    case(
        "entry = \"svc.py\"\nsearch = \"ps_grep\"\n",
        &["key `search`", "ps_grep", "proc_cwd"],
    );
}

#[test]
fn wrong_type_names_the_key() {
    case(
        "entry = \"svc.py\"\nstart_timeout = 5\n",
        &["key `start_timeout`", "2:"],
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    assert_eq!(env.keepup(&["frobnicate"]).code, 2);
    assert_eq!(env.keepup(&["status", "--jsn"]).code, 2);
}

#[test]
fn status_with_a_broken_config_says_what_runs_then_the_config_error() {
    // A broken deploy's `status` exited 78 and showed no state: whether the service still runs
    // was the one thing its user needed to know.
    let env = TestEnv::new();
    env.script("svc.sh", "#!/bin/sh\nexec sleep 600\n");
    env.config("entry = \"svc.sh\"\n");
    let pid = env.keepup(&["start"]).expect(0).pid();
    env.config("entry = \"svc.sh\"\nstop_signal = \"NOPE\"\n");
    env.keepup(&["status"])
        .expect(78)
        .stdout_has(&format!("svc.sh: running (pid {pid})"))
        .stderr_has("key `stop_signal`");
    let json = env.keepup(&["status", "--json"]);
    json.expect(78).stderr_has("key `stop_signal`");
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(value["state"], "running", "{json:#?}");
    assert_eq!(value["pid"], pid, "{json:#?}");
    assert!(
        value["config_error"]
            .as_str()
            .unwrap()
            .contains("stop_signal")
    );
    env.config("entry = \"svc.sh\"\n");
    env.keepup(&["stop"]).expect(0);
    // Stopped, keepup keeps no record of it: the error alone.
    env.config("entry = \"svc.sh\"\nstop_signal = \"NOPE\"\n");
    let stopped = env.keepup(&["status"]);
    stopped.expect(78).stderr_has("key `stop_signal`");
    assert_eq!(stopped.stdout, "", "{stopped:#?}");
}

#[test]
fn health_that_is_not_a_check() {
    case(
        "entry = \"svc.py\"\nhealth = \"ping\"\n",
        &["key `health`", "\"ping\" is not a check"],
    );
}

#[test]
fn health_failures_of_zero() {
    case(
        "entry = \"svc.py\"\nhealth = \"tcp:127.0.0.1:1\"\nhealth_failures = 0\n",
        &["key `health_failures`", "at least 1"],
    );
}

#[test]
fn health_interval_without_a_check() {
    case(
        "entry = \"svc.py\"\nhealth_interval = \"5s\"\n",
        &["key `health_interval`", "without `health`"],
    );
}

#[test]
fn health_without_a_watcher() {
    case(
        "entry = \"svc.py\"\nhealth = \"tcp:127.0.0.1:1\"\nwatch = false\n",
        &["key `health`", "watch = false"],
    );
}

#[test]
fn watchdog_without_notify() {
    case(
        "entry = \"svc.py\"\nwatchdog = \"30s\"\n",
        &["key `watchdog`", "ready = \"notify\""],
    );
}

#[test]
fn health_notify_is_not_a_probe() {
    case(
        "entry = \"svc.py\"\nhealth = \"notify\"\n",
        &["key `health`", "\"notify\" is for `ready`"],
    );
}

#[test]
fn max_memory_that_is_not_a_size() {
    case(
        "entry = \"svc.py\"\nmax_memory = \"lots\"\n",
        &["key `max_memory`", "\"lots\" is not a size"],
    );
}
