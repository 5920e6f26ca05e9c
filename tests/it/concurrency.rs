//! Concurrent invocations for one config never start two instances: they are serialised by the
//! operation lock. Instances are counted by scanning the process table, not by asking keepup.

use std::path::Path;

use crate::testenv::{Run, TestEnv, locked_pid};

const ROUNDS: usize = 20;
const AT_ONCE: usize = 8;

/// Runs `verbs` all at once and returns what each said.
fn race(env: &TestEnv, verbs: &[&str]) -> Vec<Run> {
    let children: Vec<_> = verbs.iter().map(|v| env.keepup_spawn(&[v])).collect();
    children
        .into_iter()
        .map(|c| Run::from_output(&c.wait_with_output().unwrap()))
        .collect()
}

fn exactly_one_instance(env: &TestEnv, entry: &Path, runs: &[Run], round: usize) {
    for run in runs {
        run.expect(0);
    }
    let instances = env.instances(entry);
    assert_eq!(instances.len(), 1, "round {round}: {instances:?} {runs:#?}");
    let pids: Vec<i32> = runs.iter().map(Run::pid).collect();
    assert!(
        pids.iter().all(|p| *p == instances[0]),
        "round {round}: {pids:?} vs {instances:?}"
    );
    assert_eq!(locked_pid(entry), Some(instances[0]));
    let launched = runs
        .iter()
        .filter(|r| r.stdout.contains("started") || r.stdout.contains("revived"))
        .count();
    assert_eq!(launched, 1, "round {round}: {runs:#?}");
}

#[test]
fn eight_concurrent_starts_leave_exactly_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    for round in 0..ROUNDS {
        let runs = race(&env, &["start"; AT_ONCE]);
        exactly_one_instance(&env, &entry, &runs, round);
        env.keepup(&["stop"]).expect(0);
        assert!(
            env.instances(&entry).is_empty(),
            "round {round}: stop left it running"
        );
    }
}

#[test]
fn starts_racing_restarts_leave_exactly_one_instance() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\nwatch = false\n");
    env.keepup(&["start"]).expect(0);
    let verbs: Vec<&str> = (0..AT_ONCE)
        .map(|i| if i % 2 == 0 { "start" } else { "restart" })
        .collect();
    for round in 0..ROUNDS {
        // Dead with the lock kept: both verbs would launch it.
        env.keepup(&["kill"]).expect(0);
        assert!(env.instances(&entry).is_empty());
        let runs = race(&env, &verbs);
        exactly_one_instance(&env, &entry, &runs, round);
    }
    env.keepup(&["stop"]).expect(0);
}
