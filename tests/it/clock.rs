//! Wall clocks and reboots: a history stamped "in the future" (the clock was stepped back)
//! delays a revival by at most the cooldown; a pid lock and record from another boot never
//! lead to the process that now holds that pid.

use std::time::{Duration, Instant, SystemTime};

use crate::testenv::{TestEnv, alive, locked_pid, wait_for};

fn stamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[test]
fn a_history_from_the_future_delays_a_revival_by_at_most_the_cooldown() {
    require!("python3", "python3");
    let env = TestEnv::new();
    let entry = env.python_service("svc.py", "");
    env.config(
        "entry = \"svc.py\"\n[restart_limit]\nburst = 2\ninterval = \"1h\"\ncooldown = \"2s\"\n",
    );
    // Kept up, not running; the clock was an hour ahead when the guard tripped.
    env.write("svc.py.pid", "4194000\n");
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let line = |time: SystemTime, event: &str| {
        format!(
            "{{\"time\":\"{}\",\"event\":\"{event}\",\"pid\":null,\"by\":\"timer\",\"outcome\":\"failed\"}}\n",
            stamp(time)
        )
    };
    env.write(
        "svc.py.events",
        &[
            line(now - hour, "start"),
            line(now + hour, "revive"),
            line(now + hour, "revive"),
            line(now + hour, "guard_trip"),
        ]
        .concat(),
    );
    env.keepup(&["status"]).stdout_has("events from the future");
    let began = Instant::now();
    env.keepup(&["restart", "--timer"]).expect(1);
    let mut revived = None;
    wait_for("the revival after the cooldown", || {
        let run = env.keepup(&["restart", "--timer"]);
        revived = (run.code == 0).then(|| run.pid());
        revived.is_some()
    });
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "revived within the cooldown"
    );
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    assert_eq!(env.instances(&entry), [revived.unwrap()]);
    env.keepup(&["stop"]).expect(0);
}

#[test]
fn a_pid_lock_from_another_boot_never_leads_to_its_pids_new_holder() {
    require!("python3", "python3");
    let mut env = TestEnv::new();
    let entry = env.python_service("app/svc.py", "");
    env.config("entry = \"app/svc.py\"\n");
    // After the reboot, the old pid belongs to an unrelated process that leads its own group.
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let stranger = env.spawn(&elsewhere, "setsid", &["sleep", "1000"]);
    wait_for("the stranger", || {
        crate::testenv::cmdline(stranger)
            .first()
            .is_some_and(|a| a == "sleep")
    });
    env.write("app/svc.py.pid", &format!("{stranger}\n"));
    env.write(
        "app/svc.py.instance",
        &format!(
            "{{\"pid\":{stranger},\"start\":\"00000000-0000-4000-8000-000000000000:12345\",\"leads_group\":true}}"
        ),
    );
    env.keepup(&["status"]).expect(1).stdout_has("dead");
    let revived = env.keepup(&["restart", "--timer"]).expect(0).pid();
    assert_ne!(revived, stranger);
    assert!(alive(stranger), "the stranger was signalled");
    assert_eq!(locked_pid(&entry), Some(revived));
    env.keepup(&["stop"]).expect(0);
    assert!(alive(stranger), "the stranger was signalled by stop");
}
