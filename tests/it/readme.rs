//! README.md keeps its word: its tables render as tables (as GitHub renders them: a paragraph
//! inside the Commands table once turned every row after it into plain text), and every exit
//! code the Commands table lists is one a real run of that command gives.

use std::collections::BTreeSet;
use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::testenv::{Run, TestEnv};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// Each rendered table, as its rows of cells (plain text), the header row first.
fn rendered_tables(markdown: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut row: Option<Vec<String>> = None;
    let mut cell: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => tables.push(Vec::new()),
            Event::Start(Tag::TableHead | Tag::TableRow) => row = Some(Vec::new()),
            Event::End(TagEnd::TableHead | TagEnd::TableRow) => {
                tables.last_mut().unwrap().push(row.take().unwrap());
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => row.as_mut().unwrap().push(cell.take().unwrap()),
            Event::Text(text) | Event::Code(text) => {
                if let Some(cell) = cell.as_mut() {
                    cell.push_str(&text);
                }
            }
            _ => {}
        }
    }
    tables
}

/// Each run of lines outside code blocks that starts with `|`: what the writer meant as a
/// table, header and delimiter row included.
fn written_tables(markdown: &str) -> Vec<Vec<&str>> {
    let mut tables: Vec<Vec<&str>> = Vec::new();
    let mut fenced = false;
    let mut in_table = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let row = !fenced && line.starts_with('|');
        if row && !in_table {
            tables.push(Vec::new());
        }
        if row {
            tables.last_mut().unwrap().push(line);
        }
        in_table = row;
    }
    tables
}

#[test]
fn every_table_in_the_readme_renders_with_every_row() {
    let text = readme();
    let written = written_tables(&text);
    let rendered = rendered_tables(&text);
    assert_eq!(
        written.len(),
        rendered.len(),
        "a run of |-lines renders as no table: {:#?}",
        written.iter().map(|t| t[0]).collect::<Vec<_>>()
    );
    for (lines, rows) in written.iter().zip(&rendered) {
        // The delimiter row is no row.
        assert_eq!(
            lines.len() - 1,
            rows.len(),
            "rows of the table that begins {:?} render as plain text",
            lines[0]
        );
    }
    // The Commands table: every command a row of its own, with its exit codes.
    let commands = commands_table(&text);
    let names: Vec<&str> = commands.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "start",
            "stop",
            "kill",
            "restart",
            "reload",
            "status",
            "install-timer",
            "uninstall-timer",
            "events",
            "logs",
            "list",
            "doctor",
            "completions",
            "export"
        ]
    );
}

/// The Commands table's rows: the command (the first word of the first cell) and the exit
/// codes its last cell lists.
fn commands_table(text: &str) -> Vec<(String, BTreeSet<i32>)> {
    let table = rendered_tables(text)
        .into_iter()
        .find(|t| t[0] == ["command", "does", "exit"])
        .expect("no Commands table");
    table[1..]
        .iter()
        .map(|row| {
            let name = row[0].split_whitespace().next().unwrap().to_owned();
            let codes = row[2]
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            (name, codes)
        })
        .collect()
}

/// A case that gives a command's exit code.
enum Case {
    /// Run here, in a fresh test folder.
    Here(fn(&TestEnv) -> Run),
    /// Needs what this test cannot set up cheaply (a second user, a cron daemon): the test
    /// that does, `MODULE::NAME`, which must run the command and expect the code.
    Elsewhere(&'static str),
}

/// Every exit code of the Commands table, and how a real run gives it.
fn cases() -> Vec<(&'static str, i32, Case)> {
    use Case::{Elsewhere, Here};
    vec![
        ("start", 0, Here(|env| running(env, "start"))),
        ("start", 1, Here(|env| exits_at_once(env, &["start"]))),
        ("stop", 0, Here(|env| running(env, "stop"))),
        ("stop", 1, Here(|env| fifo_lock(env, "stop"))),
        ("kill", 0, Here(|env| sleeper(env, &["kill"]))),
        ("kill", 1, Here(|env| fifo_lock(env, "kill"))),
        ("kill", 78, Here(|env| broken(env, &["kill"]))),
        ("restart", 0, Here(|env| sleeper(env, &["restart"]))),
        ("restart", 1, Here(dead_and_failing_restart)),
        ("reload", 0, Here(reloaded)),
        (
            "reload",
            1,
            Elsewhere(
                "reload::a_new_generation_that_fails_its_check_is_ended_and_the_old_one_serves_on",
            ),
        ),
        ("reload", 78, Here(|env| sleeper(env, &["reload"]))),
        ("status", 0, Here(|env| running(env, "status"))),
        ("status", 1, Here(dead_status)),
        ("status", 3, Here(|env| sleeper(env, &["status"]))),
        (
            "status",
            4,
            Elsewhere("ownership::a_state_file_she_cannot_read_names_its_owner_and_the_fix"),
        ),
        ("status", 78, Here(|env| broken(env, &["status"]))),
        (
            "install-timer",
            0,
            Here(|env| sleeper(env, &["install-timer"])),
        ),
        (
            "install-timer",
            1,
            Here(|env| crontab_fails(env, "install-timer")),
        ),
        (
            "uninstall-timer",
            0,
            Here(|env| sleeper(env, &["uninstall-timer"])),
        ),
        (
            "uninstall-timer",
            1,
            Here(|env| crontab_fails(env, "uninstall-timer")),
        ),
        ("events", 0, Here(|env| sleeper(env, &["events"]))),
        ("logs", 0, Here(|env| running(env, "logs"))),
        ("logs", 1, Here(|env| sleeper(env, &["logs"]))),
        ("list", 0, Here(|env| sleeper(env, &["list"]))),
        ("list", 1, Here(|env| broken(env, &["list", "cfg.toml"]))),
        (
            "doctor",
            0,
            Elsewhere(
                "comfort::doctor_is_all_ok_on_a_healthy_setup_and_names_a_missing_cron_daemon",
            ),
        ),
        ("doctor", 1, Here(|env| crontab_fails(env, "doctor"))),
        (
            "completions",
            0,
            Here(|env| sleeper(env, &["completions", "bash"])),
        ),
        (
            "export",
            0,
            Here(|env| sleeper(env, &["export", "systemd"])),
        ),
        (
            "export",
            1,
            Here(|env| sleeper(env, &["export", "launchd", "--label", "a/b"])),
        ),
        (
            "export",
            78,
            Here(|env| broken(env, &["export", "systemd"])),
        ),
    ]
}

#[test]
fn every_exit_code_in_the_commands_table_is_what_a_real_run_gives() {
    let listed: BTreeSet<(String, i32)> = commands_table(&readme())
        .into_iter()
        .flat_map(|(name, codes)| codes.into_iter().map(move |c| (name.clone(), c)))
        .collect();
    let cases = cases();
    let covered: BTreeSet<(String, i32)> = cases
        .iter()
        .map(|(name, code, _)| ((*name).to_owned(), *code))
        .collect();
    assert_eq!(
        listed, covered,
        "the README's exit codes (left) and the cases here (right) differ"
    );
    for (name, code, case) in &cases {
        match case {
            Case::Here(run) => {
                let env = TestEnv::new();
                let run = run(&env);
                assert_eq!(run.code, *code, "`{name}` should exit {code}: {run:#?}");
            }
            Case::Elsewhere(test) => {
                let (module, function) = test.split_once("::").unwrap();
                let source = std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/{module}.rs")),
                )
                .unwrap();
                let Some((_, after)) = source.split_once(&format!("fn {function}(")) else {
                    panic!("no test {test}");
                };
                let body = after.split("\n#[test]").next().unwrap();
                assert!(
                    body.contains(name) && body.contains(&format!(".expect({code})")),
                    "{test} does not run `{name}` expecting {code}"
                );
            }
        }
    }
}

/// The example server on a held socket, started, then reloaded.
fn reloaded(env: &TestEnv) -> Run {
    crate::listen::example_server(env);
    let port = crate::testenv::free_port();
    env.config(&format!(
        "entry = \"server/runserver.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n\
         ready = \"http://127.0.0.1:{port}/\"\n"
    ));
    env.keepup(&["start"]).expect(0);
    env.keepup(&["reload"])
}

/// A service that sleeps, not started: `keepup ARGS` on it.
fn sleeper(env: &TestEnv, args: &[&str]) -> Run {
    env.script("svc.sh", "#!/bin/sh\nexec sleep 600\n");
    env.config("entry = \"svc.sh\"\n");
    env.keepup(args)
}

/// `keepup VERB` on the sleeper, running.
fn running(env: &TestEnv, verb: &str) -> Run {
    sleeper(env, &["start"]).expect(0);
    env.keepup(&[verb])
}

/// A service that exits at once.
fn exits_at_once(env: &TestEnv, args: &[&str]) -> Run {
    env.script("svc.sh", "#!/bin/sh\nexit 3\n");
    env.config("entry = \"svc.sh\"\n");
    env.keepup(args)
}

/// A pid lock whose process has ended: the service is dead.
fn dead(env: &TestEnv) {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    env.write("svc.sh.pid", &format!("{}\n", gone.id()));
}

fn dead_status(env: &TestEnv) -> Run {
    dead(env);
    sleeper(env, &["status"])
}

/// Dead, and its revival dies at once.
fn dead_and_failing_restart(env: &TestEnv) -> Run {
    dead(env);
    exits_at_once(env, &["restart"])
}

/// A config with a bad value.
fn broken(env: &TestEnv, args: &[&str]) -> Run {
    env.script("svc.sh", "#!/bin/sh\nexec sleep 600\n");
    env.config("entry = \"svc.sh\"\nstop_signal = \"NOPE\"\n");
    env.keepup(args)
}

/// The operation lock is a FIFO: no verb that acts can take it.
fn fifo_lock(env: &TestEnv, verb: &str) -> Run {
    sleeper(env, &["kill"]).expect(0);
    let locks = env.home.path().join(".local/state/keepup/locks");
    let lock = std::fs::read_dir(&locks)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&lock).unwrap();
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    env.keepup(&[verb])
}

/// Every call of the crontab fails.
fn crontab_fails(env: &TestEnv, verb: &str) -> Run {
    env.write(
        &format!("{}.fail", env.crontab_file().display()),
        "crontab: cannot open\n",
    );
    sleeper(env, &[verb])
}
