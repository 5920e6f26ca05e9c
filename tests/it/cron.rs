//! End to end with the real `crontab` and the real cron daemon: a killed service is revived
//! by the timer within 75 s, and the user's crontab is exactly as before afterwards.
//!
//! It needs a cron daemon in this test's pid namespace (`.ci/run` starts one there). Without
//! one it is skipped, except in CI (`CI` set), where it fails.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::testenv::{MARK, TestEnv, locked_pid, wait_for};

/// With the user's own HOME (as cron runs the timer line), keepup records what it keeps in the
/// user's real registry: this test's record and lock go when it ends, however it ends.
struct ForgetRecords(Option<std::path::PathBuf>);

impl Drop for ForgetRecords {
    fn drop(&mut self) {
        let Some(root) = &self.0 else {
            return;
        };
        let registry = keepup::registry::Registry::of_this_user();
        for keeping in registry.all() {
            if keeping.config.starts_with(root) {
                let _ = registry.remove(&keeping);
                let _ = std::fs::remove_file(registry.lock_path(&keeping.id));
            }
        }
    }
}

/// The user's real crontab, put back as it was however the test ends.
struct SavedCrontab(Option<String>);

impl SavedCrontab {
    fn current() -> Option<String> {
        let output = Command::new("crontab").arg("-l").output().unwrap();
        if output.status.success() {
            return Some(String::from_utf8(output.stdout).unwrap());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no crontab for"),
            "crontab -l failed: {stderr}"
        );
        None
    }
}

impl Drop for SavedCrontab {
    fn drop(&mut self) {
        if SavedCrontab::current() == self.0 {
            return;
        }
        let restored = match &self.0 {
            None => Command::new("crontab")
                .arg("-r")
                .status()
                .unwrap()
                .success(),
            Some(text) => {
                use std::io::Write;
                let mut child = Command::new("crontab")
                    .arg("-")
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait().unwrap().success()
            }
        };
        assert!(restored, "could not restore the user's crontab");
    }
}

/// Why cron cannot be used here, if it cannot.
fn cron_missing() -> Option<&'static str> {
    if Command::new("crontab").arg("-l").output().is_err() {
        return Some("no crontab program");
    }
    let daemon = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| matches!(c.trim(), "cron" | "crond"))
        });
    (!daemon).then_some("no cron daemon in this pid namespace")
}

// Ignored by a plain `cargo test`, so its absence shows in the output ("ignored, needs …")
// instead of passing silently; .ci/run includes it.
#[test]
#[ignore = "needs the real crontab and a cron daemon in the test's pid namespace: .ci/run runs it (cargo test -- --include-ignored)"]
fn cron_revives_a_killed_service_within_75_seconds() {
    require!("python3", "python3");
    if let Some(why) = cron_missing() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test, but: {why}"
        );
        crate::testenv::skip(&format!("{why} (.ci/run installs and starts cron)"));
        return;
    }
    let saved = SavedCrontab(SavedCrontab::current());
    // Declared before the test's processes, so it runs after they have been ended.
    let mut forget = ForgetRecords(None);
    let env = TestEnv::with_real_crontab();
    forget.0 = Some(env.root.clone());
    let entry = env.python_service("svc.py", "");
    // Marked by config too: cron's keepup does not run with this test's environment.
    env.config(&format!(
        "entry = \"svc.py\"\nwatch = false\n\n[env]\n{MARK} = \"{}\"\n",
        env.root.display()
    ));

    env.keepup(&["install-timer"])
        .expect(0)
        .stdout_has("installed");
    let installed = SavedCrontab::current().unwrap_or_default();
    assert!(
        installed.contains(&format!(
            "# keepup-timer {}",
            env.path("cfg.toml").display()
        )),
        "{installed}"
    );

    let first = env.keepup(&["start"]).expect(0).pid();
    env.keepup(&["kill"]).expect(0).stdout_has("killed");
    assert!(env.instances(&entry).is_empty());
    let killed = Instant::now();
    let revived = loop {
        if let [pid] = env.instances(&entry)[..]
            && locked_pid(&entry) == Some(pid)
        {
            break pid;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(75),
            "cron did not revive the service within 75 s; timer log: {:?}",
            std::fs::read_to_string(env.path("svc.py.timer.log"))
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(revived, first);
    eprintln!(
        "revived by cron after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    // The pid lock names the new process from its spawn on; the timer's line is written once
    // the revival is confirmed (1 s up).
    wait_for("the timer's line", || {
        std::fs::read_to_string(env.path("svc.py.timer.log"))
            .is_ok_and(|log| log.contains(&format!("svc.py ({revived}) revived")))
    });
    env.keepup(&["status"])
        .expect(0)
        .stdout_has("timer:    installed");

    env.keepup(&["uninstall-timer"])
        .expect(0)
        .stdout_has("removed");
    assert_eq!(
        SavedCrontab::current(),
        saved.0,
        "the user's crontab is not as it was"
    );
    env.keepup(&["stop"]).expect(0);
}
