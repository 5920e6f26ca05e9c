//! `reload`: a new generation on the sockets the watcher holds, ready before the old one gets
//! its stop signal; with the real servers, under a stream of requests: none refused or failed,
//! and the new code answers afterwards.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::listen::{Server, example_server, get, keepup, serving, stream};
use crate::testenv::{TestEnv, alive, free_port, locked_pid, sigkill, wait_for};

/// While a client asks without pause, reloads twice, changing the app's answer between the
/// generations with `edit(from, to)`: no request refused or failed, and once each reload
/// returns, only the new code answers. A server that closes unread what it accepted when told
/// to stop (`closes_unread_at_stop`) may leave one request a reload unanswered, no more.
fn reload_through_stream(
    env: &TestEnv,
    entry: &Path,
    port: u16,
    edit: &dyn Fn(&str, &str),
    closes_unread_at_stop: bool,
) {
    keepup(env, &["start"]).expect(0).stdout_has("started");
    let mut pid = serving(entry, port, None);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, client) = stream(port, Arc::clone(&stop));
    for (from, to) in [("running", "second"), ("second", "third")] {
        let before = tally.answered.load(Ordering::SeqCst);
        wait_for("requests answered before the reload", || {
            tally.answered.load(Ordering::SeqCst) >= before + 5
        });
        edit(from, to);
        let reloaded = keepup(env, &["reload"]);
        reloaded.expect(0).stdout_has("reloaded");
        let answer = get(port).unwrap_or_default();
        assert!(answer.contains(to), "the old code answered: {answer}");
        assert!(!alive(pid), "the old generation {pid} outlived the reload");
        let new = locked_pid(entry).unwrap_or(pid);
        assert_ne!(new, pid, "{reloaded:#?}");
        pid = new;
    }
    let before = tally.answered.load(Ordering::SeqCst);
    wait_for("requests answered after the reloads", || {
        tally.answered.load(Ordering::SeqCst) >= before + 5
    });
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(
        (
            tally.refused.load(Ordering::SeqCst),
            tally.failed.load(Ordering::SeqCst)
        ),
        (0, 0),
        "requests refused or failed during the reloads: {tally:?}"
    );
    let unanswered = tally.unanswered.load(Ordering::SeqCst);
    let allowed = if closes_unread_at_stop { 2 } else { 0 };
    assert!(
        unanswered <= allowed,
        "requests closed unanswered during the reloads: {tally:?}"
    );
    keepup(env, &["stop"]).expect(0);
}

fn reloaded_without_failure(server: &Server) {
    let env = TestEnv::new();
    let port = free_port();
    if let Some(entry) = server.set_up(&env, port) {
        let edit = |from: &str, to: &str| server.answer(&entry, from, to);
        reload_through_stream(&env, &entry, port, &edit, server.closes_unread_at_stop());
    }
}

#[test]
fn reload_of_the_example_server_fails_no_request_and_the_new_code_answers() {
    reloaded_without_failure(&Server::Example);
}

#[test]
fn reload_of_gunicorn_fails_no_request_and_the_new_code_answers() {
    reloaded_without_failure(&Server::Gunicorn);
}

#[test]
fn reload_of_uvicorn_fails_no_request_and_the_new_code_answers() {
    reloaded_without_failure(&Server::Uvicorn);
}

#[test]
fn reload_of_node_fails_no_request_and_the_new_code_answers() {
    reloaded_without_failure(&Server::Node);
}

/// The new generation never answers (it sleeps before serving): its ready check must not take
/// the old generation's answer on the shared socket for its own.
#[test]
fn a_new_generation_that_fails_its_check_is_ended_and_the_old_one_serves_on() {
    let env = TestEnv::new();
    let entry = example_server(&env);
    let good = std::fs::read_to_string(&entry).unwrap();
    let port = free_port();
    env.config(&format!(
        "entry = \"server/runserver.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n\
         ready = \"http://127.0.0.1:{port}/\"\nstart_timeout = \"2s\"\n"
    ));
    env.keepup(&["start"]).expect(0);
    let old = serving(&entry, port, None);
    std::fs::write(
        &entry,
        good.replace(
            "def main():\n",
            "def main():\n    import time\n    time.sleep(600)\n",
        ),
    )
    .unwrap();
    env.keepup(&["reload"])
        .expect(1)
        .stderr_has("reload failed")
        .stderr_has("the old generation answered")
        .stderr_has(&format!("({old}) serves on"));
    assert_eq!(locked_pid(&entry), Some(old));
    assert!(get(port).is_some_and(|a| a.contains("running")));
    // Only the old generation is left, and its watcher still watches it.
    let services: Vec<i32> = env
        .own_processes()
        .into_iter()
        .filter(|p| {
            crate::testenv::cmdline(*p)
                .iter()
                .any(|w| w.ends_with("runserver.py"))
        })
        .collect();
    assert_eq!(services, [old]);
    std::fs::write(&entry, good).unwrap();
    sigkill(old);
    serving(&entry, port, Some(old));
    env.keepup(&["events"])
        .stdout_has("reload")
        .stdout_has("failed");
    env.keepup(&["stop"]).expect(0);
}

/// `slow.py`, a server on fd 3 (`listen`) that, on a first TERM, keeps serving `drain` seconds
/// more (the requests it still has), then leaves; a second TERM ends it at once.
fn draining_server(env: &TestEnv, drain: u32) -> std::path::PathBuf {
    env.script(
        "slow.py",
        &format!(
            "#!/usr/bin/env python3\nimport os, signal, socket, threading\n\
             from http.server import BaseHTTPRequestHandler, HTTPServer\n\
             class H(BaseHTTPRequestHandler):\n    def do_GET(self):\n        \
             self.send_response(200)\n        self.end_headers()\n        \
             self.wfile.write(b'ok')\n\
             server = HTTPServer(('127.0.0.1', 0), H, bind_and_activate=False)\n\
             server.socket = socket.socket(fileno=3)\n\
             terms = []\n\
             def on_term(*_):\n    terms.append(1)\n    \
             threading.Timer({drain} if len(terms) == 1 else 0, lambda: os._exit(0)).start()\n\
             signal.signal(signal.SIGTERM, on_term)\n\
             server.serve_forever()\n"
        ),
    )
}

#[test]
fn status_shows_both_generations_while_they_overlap() {
    let env = TestEnv::new();
    let entry = draining_server(&env, 2);
    let port = free_port();
    env.config(&format!(
        "entry = \"slow.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n\
         ready = \"http://127.0.0.1:{port}/\"\n"
    ));
    env.keepup(&["start"]).expect(0);
    let old = serving(&entry, port, None);
    let reload = env.keepup_spawn(&["reload"]);
    let mut json = serde_json::Value::Null;
    wait_for("status to show the old generation finishing", || {
        let status = env.keepup(&["status", "--json"]);
        json = serde_json::from_str(status.stdout.trim()).unwrap_or_default();
        json["reloading"]["phase"] == "stopping"
    });
    assert_eq!(json["reloading"]["old_pid"], old);
    let new = json["pid"].as_i64().unwrap();
    assert_ne!(new, i64::from(old));
    assert!(alive(old));
    env.keepup(&["status"]).stdout_has(&format!(
        "reloading: the old generation ({old}) got its stop signal"
    ));
    let done = reload.wait_with_output().unwrap();
    assert!(done.status.success(), "{done:?}");
    let status = env.keepup(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert!(json["reloading"].is_null(), "{json}");
    assert!(!alive(old));
    env.keepup(&["stop"]).expect(0);
}

/// A watcher killed while both generations run (the old one finishing its requests after its
/// stop signal) leaves the old generation recorded only in the reload record: `stop` ends it
/// with the new one, and nothing of the service is left. Before, `stop` ended the new one and
/// the old one ran on, untracked.
#[test]
fn stop_after_a_reload_whose_watcher_died_ends_both_generations() {
    let env = TestEnv::new();
    // Its old generation drains for a minute: longer than the test, as long requests would.
    let entry = draining_server(&env, 60);
    let port = free_port();
    env.config(&format!(
        "entry = \"slow.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n\
         ready = \"http://127.0.0.1:{port}/\"\nstop_timeout = \"5s\"\n"
    ));
    env.keepup(&["start"]).expect(0);
    let old = serving(&entry, port, None);
    let mut reload = env.keepup_spawn(&["reload"]);
    let mut json = serde_json::Value::Null;
    wait_for("the old generation to be finishing", || {
        let status = env.keepup(&["status", "--json"]);
        json = serde_json::from_str(status.stdout.trim()).unwrap_or_default();
        json["reloading"]["phase"] == "stopping"
    });
    let new = i32::try_from(json["pid"].as_i64().unwrap()).unwrap();
    assert_ne!(new, old);
    // The watcher dies mid-reload; its asker gives up.
    for watcher in env.watchers() {
        sigkill(watcher);
    }
    wait_for("the watcher to be gone", || env.watchers().is_empty());
    let _ = reload.kill();
    let _ = reload.wait();
    assert!(alive(old) && alive(new));
    env.keepup(&["stop"])
        .expect(0)
        .stdout_has(&format!("({new}) stopped"))
        .stdout_has(&format!("({old}) stopped"));
    assert!(!alive(old), "the old generation {old} outlived stop");
    wait_for("nothing of the service left", || {
        env.own_processes().is_empty()
    });
    let status = env.keepup(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert!(json["reloading"].is_null(), "{json}");
}

#[test]
fn reload_without_listen_says_it_needs_it() {
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    env.keepup(&["reload"])
        .expect(78)
        .stderr_has("reload needs `listen`");
}

/// A watcher that probes its service's health waits in another loop (with deadlines): a reload
/// asked of it is served all the same, and the health checks go on with the new generation.
#[test]
fn reload_is_served_by_a_watcher_that_probes_health() {
    let env = TestEnv::new();
    let entry = example_server(&env);
    let port = free_port();
    env.config(&format!(
        "entry = \"server/runserver.py\"\nlisten = [\"tcp:127.0.0.1:{port}\"]\n\
         ready = \"http://127.0.0.1:{port}/\"\nhealth = \"http://127.0.0.1:{port}/\"\n\
         health_interval = \"1s\"\n"
    ));
    env.keepup(&["start"]).expect(0);
    let old = serving(&entry, port, None);
    Server::Example.answer(&entry, "running", "second");
    env.keepup(&["reload"]).expect(0).stdout_has("reloaded");
    assert!(!alive(old));
    assert!(get(port).is_some_and(|a| a.contains("second")));
    let new = locked_pid(&entry).unwrap();
    // Its probes now reach the new generation, which stays healthy: no unhealthy event.
    let history = || env.keepup(&["events"]).stdout;
    wait_for("a health probe of the new generation", || {
        let status = env.keepup(&["status", "--json"]);
        let json: serde_json::Value =
            serde_json::from_str(status.stdout.trim()).unwrap_or_default();
        json["pid"] == new && json["health"]["pid"] == new && !json["health"]["probe"].is_null()
    });
    assert!(!history().contains("unhealthy"), "{}", history());
    env.keepup(&["stop"]).expect(0);
}
