//! The harness itself: what a plain `cargo test` shows of the tests that did not run.

use std::path::Path;
use std::process::Command;

#[test]
fn a_skipped_test_says_so_in_a_plain_cargo_test_run_and_is_counted() {
    // The recipe tests said `ok` without their virtualenv: their `skipped:` line went to
    // libtest's capture, shown only with --nocapture, and nothing counted them.
    const AS_CHILD: &str = "KEEPUP_TEST_SKIP_DEMO";
    let name = "harness::a_skipped_test_says_so_in_a_plain_cargo_test_run_and_is_counted";
    if std::env::var_os(AS_CHILD).is_some() {
        crate::testenv::skip("the demonstration of a skip");
        return;
    }
    // This very test, run again as cargo runs a test binary (captured, through its runner).
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pidns-runner");
    let output = Command::new(runner)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name])
        .env(AS_CHILD, "1")
        .env_remove("RUST_TEST_NOCAPTURE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        stderr.contains(&format!("skipped: {name}: the demonstration of a skip\n")),
        "the skip is not shown: {stderr:?}"
    );
    assert!(
        stderr.contains(&format!(
            "1 test skipped (passed without running; CI=true makes a missing program fail):\n    \
             {name}: the demonstration of a skip\n"
        )),
        "the skips are not counted: {stderr:?}"
    );
}
