//! One test environment: a temp dir, configs and scripts in it, the real `keepup` binary, a
//! deadline on every wait, and a `Drop` that kills exactly the processes this test caused.
//!
//! Every process a test causes carries `KEEPUP_TEST_ROOT=<its temp dir>` in its environment
//! (keepup's services inherit it from the keepup the test runs), so a test can count its own
//! instances by scanning `/proc`, and clean up by pid without touching anyone else's.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid as NixPid;

pub const MARK: &str = "KEEPUP_TEST_ROOT";
/// Generous: the tests run in parallel on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestEnv {
    _dir: tempfile::TempDir,
    /// The test's HOME, outside its folder (tests look at what keepup leaves in there).
    pub home: tempfile::TempDir,
    pub root: PathBuf,
    children: Vec<Child>,
    /// Whether keepup uses the real `crontab`; otherwise `tests/fake-crontab` on `crontab`
    /// in the temp dir, so no test touches the user's crontab by accident.
    real_crontab: bool,
}

/// What one keepup invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: &Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }

    /// The pid in a `NAME (PID) verb` line.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let open = self.stdout.find('(').expect("no pid in output");
        let close = self.stdout[open..].find(')').expect("no pid in output") + open;
        self.stdout[open + 1..close]
            .parse()
            .expect("pid is not a number")
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("keepup-test")
            .tempdir()
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let home = tempfile::Builder::new()
            .prefix("keepup-home")
            .tempdir()
            .unwrap();
        TestEnv {
            _dir: dir,
            home,
            root,
            children: Vec::new(),
            real_crontab: false,
        }
    }

    /// For the one test that must use the real `crontab` and cron daemon.
    pub fn with_real_crontab() -> TestEnv {
        let mut env = TestEnv::new();
        env.real_crontab = true;
        env
    }

    /// The fake crontab's file (absent: "no crontab").
    pub fn crontab_file(&self) -> PathBuf {
        self.path("crontab")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn script(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.write(relative, content);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A Python service that prints a line and sleeps; `prelude` runs first.
    pub fn python_service(&self, relative: &str, prelude: &str) -> PathBuf {
        self.script(
            relative,
            &format!(
                "#!/usr/bin/env python3\nimport os, signal, sys, time\n{prelude}\n\
                 print('up', os.getpid(), flush=True)\nwhile True:\n    time.sleep(1)\n"
            ),
        )
    }

    /// Writes `cfg.toml` (or another config file) in the temp dir.
    pub fn config(&self, body: &str) -> PathBuf {
        self.write("cfg.toml", body)
    }

    /// A command marked as this test's, run in the temp dir, with the fake crontab.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.root)
            .env(MARK, &self.root)
            .env_remove("KEEPUP_CONFIG")
            .stdin(Stdio::null());
        if self.real_crontab {
            // cron runs the timer line with the user's own HOME: so must the test's keepup,
            // for both to find one record of what keepup keeps.
            command.env_remove("KEEPUP_CRONTAB");
        } else {
            // A home of its own: keepup's record of what it keeps (under HOME) is this test's.
            command.env("HOME", self.home.path());
            let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-crontab");
            command
                .env("KEEPUP_CRONTAB", fake)
                .env("FAKE_CRONTAB_FILE", self.crontab_file());
        }
        command
    }

    /// `keepup -c cfg.toml ARGS`.
    pub fn keepup(&self, args: &[&str]) -> Run {
        self.keepup_with(&self.path("cfg.toml"), args)
    }

    pub fn keepup_with(&self, config: &Path, args: &[&str]) -> Run {
        self.keepup_as(Path::new(env!("CARGO_BIN_EXE_keepup")), config, args)
    }

    /// `PROGRAM --config CONFIG ARGS`, where `program` is keepup or a copy of it.
    pub fn keepup_as(&self, program: &Path, config: &Path, args: &[&str]) -> Run {
        let output = self
            .keepup_command(program, config)
            .args(args)
            .output()
            .unwrap();
        Run::from_output(&output)
    }

    /// `PROGRAM --config CONFIG`, as [`TestEnv::command`] makes it, for a caller that adds its
    /// arguments, environment or pipes before it runs it.
    pub fn keepup_command(&self, program: &Path, config: &Path) -> Command {
        let mut command = self.command(program);
        command.arg("--config").arg(config);
        command
    }

    /// `status --json` of `cfg.toml`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let run = self.keepup(&["status", "--json"]);
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
    }

    /// Every event of `cfg.toml`'s history, parsed.
    pub fn events_json(&self) -> Vec<serde_json::Value> {
        let run = self.keepup(&["events", "--json", "-n", "10000"]);
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
    }

    /// How the instance `pid` ended, as its `exit` event says.
    #[track_caller]
    pub fn exit_of(&self, pid: i32) -> String {
        let history = self.events_json();
        history
            .iter()
            .find(|e| e["event"] == "exit" && e["pid"].as_i64() == Some(i64::from(pid)))
            .and_then(|e| e["detail"].as_str())
            .unwrap_or_else(|| panic!("no exit event of {pid}: {history:#?}"))
            .to_owned()
    }

    /// Whether `status` says the service runs, under another pid than `old` (revived).
    pub fn runs_other_than(&self, old: i32) -> bool {
        let value = self.status_json();
        value["state"] == "running" && value["pid"].as_i64().is_some_and(|p| p != i64::from(old))
    }

    /// `keepup -c cfg.toml ARGS` in the background, for races.
    pub fn keepup_spawn(&self, args: &[&str]) -> Child {
        self.keepup_command(
            Path::new(env!("CARGO_BIN_EXE_keepup")),
            &self.path("cfg.toml"),
        )
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    }

    /// This test's watcher processes, by the process table.
    pub fn watchers(&self) -> Vec<i32> {
        self.own_processes()
            .into_iter()
            .filter(|p| {
                let argv = cmdline(*p);
                argv.first().is_some_and(|a| a.ends_with("keepup"))
                    && argv.iter().any(|w| w == "watch")
            })
            .collect()
    }

    /// Runs any program marked as this test's, in `cwd`; killed on drop.
    pub fn spawn(&mut self, cwd: &Path, program: &str, args: &[&str]) -> i32 {
        let child = self
            .command(Path::new(program))
            .current_dir(cwd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        self.children.push(child);
        pid
    }

    /// Live processes of this test whose argv names `entry`'s file name (the services, by
    /// the process table, not by what keepup says).
    pub fn instances(&self, entry: &Path) -> Vec<i32> {
        let name = entry.file_name().unwrap().to_str().unwrap();
        let named: Vec<i32> = self
            .own_processes()
            .into_iter()
            .filter(|p| {
                let argv = cmdline(*p);
                !argv.is_empty()
                    && !argv[0].ends_with("keepup")
                    && !["tail", "less", "sleep"]
                        .iter()
                        .any(|t| argv[0].ends_with(t))
                    && argv.iter().any(|w| w.ends_with(name))
            })
            .collect();
        // A child of an instance is part of it, as keepup counts it: a shell script's fork,
        // before it execs `sleep`, still has the script's command line.
        named
            .iter()
            .copied()
            .filter(|p| parent_of(*p).is_none_or(|parent| !named.contains(&parent)))
            .collect()
    }

    /// Every live, non-zombie process carrying this test's mark.
    pub fn own_processes(&self) -> Vec<i32> {
        let me = std::process::id();
        let mark = format!("{MARK}={}", self.root.display());
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| u32::try_from(*p).ok() != Some(me) && alive(*p))
            .filter(|p| marked(*p, mark.as_bytes()))
            .collect()
    }
}

/// Whether `pid`'s environment holds `mark`. A keepup in the middle of an exec (the watcher
/// becomes its waiting state that way) shows an empty environment for an instant: it is read
/// again, so it is not missed. It is told by its executable, not its name: a watcher runs
/// keepup through `/proc/self/exe`, so its name is `exe`.
fn marked(pid: i32, mark: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_millis(200);
    let runs_keepup = || {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            exe.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("keepup"))
        })
    };
    loop {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if !env.is_empty() {
            return env.split(|b| *b == 0).any(|v| v == mark);
        }
        if !runs_keepup() || !alive(pid) || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // By pid, each one found carrying this test's mark: nothing else is touched. keepup's
        // own (a watcher) go first, and the table is looked at again until none is left: a
        // watcher may have started a service between the look and its end.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut left = self.own_processes();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            left.sort_by_key(|p| !cmdline(*p).first().is_some_and(|a| a.ends_with("keepup")));
            for pid in left {
                if pid > 1 {
                    let _ = kill(NixPid::from_raw(pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

pub fn lock_path(entry: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pid", entry.display()))
}

/// `pid`'s command line. A live process in the middle of an exec (the watcher becomes its
/// waiting state that way) shows none for an instant: it is read again until it shows one.
pub fn cmdline(pid: i32) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let words: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if !words.is_empty() || !alive(pid) || Instant::now() > deadline {
            return words;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    !matches!(state(pid), Some('Z' | 'X') | None)
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`T`: stopped, `Z`: a zombie).
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Copies the program `from` to `to` (folders made), executable, by another process: a copy
/// written by this one could be open for writing in a child another test forks meanwhile, and
/// running it would then fail with ETXTBSY ("Text file busy").
pub fn install_program(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let copied = Command::new("install")
        .args(["-m", "755"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        copied.success(),
        "install {} {}",
        from.display(),
        to.display()
    );
}

/// The parent of `pid`, from `/proc/<pid>/stat`.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The process group of `pid`.
pub fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Where `program` is on this test's PATH (it must be there).
#[track_caller]
pub fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

pub fn cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET /` on `port`, if it answers.
pub fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// The pid in a pid lock, if it holds one.
pub fn locked_pid(entry: &Path) -> Option<i32> {
    let content = std::fs::read_to_string(lock_path(entry)).ok()?;
    content.trim_end().parse().ok()
}

/// Waits until `condition` holds, or panics with `what` after [`PATIENCE`].
#[track_caller]
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A real second user account, made for one test and removed after it, also when it fails.
/// Declare it before the `TestEnv`, so the env (and the user's processes) goes first.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// `None`, saying why on stderr, when the tests do not run as root.
    pub fn new() -> Option<TestUser> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        if !nix::unistd::geteuid().is_root() {
            skip("needs root to create a second user account (useradd)");
            return None;
        }
        let name = format!(
            "kup{}x{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        // Parallel tests may hold /etc/passwd's lock for a moment: try again until a deadline.
        // A uid of its own, far from the last one deleted: useradd would give that one again,
        // and processes of the same uid still ending elsewhere (another test run, in another
        // pid namespace) would count against this user's limits (RLIMIT_NPROC).
        let deadline = Instant::now() + PATIENCE;
        // The clock, not the pid: each test run's namespace numbers its pids from 1.
        let spread = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos() as usize / 1000);
        for attempt in 0.. {
            let uid = 20_000 + (spread + attempt * 131) % 40_000;
            let made = Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    "--uid",
                ])
                .arg(uid.to_string())
                .arg(&name)
                .output()
                .unwrap();
            if made.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "useradd {name}: {made:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        Some(TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// Gives `path` and everything below it to this user.
    pub fn give(&self, path: &Path) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Whether this user may run `program` (executable, every folder on the way open to them).
    pub fn can_run(&self, env: &TestEnv, program: &Path) -> bool {
        env.command(Path::new("setpriv"))
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .args(["test", "-x"])
            .arg(program)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `keepup -c cfg.toml ARGS` as this user (the user's own command), with the test's marks.
    pub fn keepup(&self, env: &TestEnv, args: &[&str]) -> Run {
        let output = env
            .command(Path::new("setpriv"))
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg(env!("CARGO_BIN_EXE_keepup"))
            .arg("--config")
            .arg(env.path("cfg.toml"))
            .args(args)
            .output()
            .unwrap();
        Run::from_output(&output)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !Command::new("userdel")
            .args(["-f", &self.name])
            .output()
            .is_ok_and(|o| o.status.success())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The uid a process runs as.
pub fn process_uid(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// Whether `program` is on PATH. When it is not: under CI (`CI` set) the test fails, since CI
/// must prove it; elsewhere it says `skipped: …` with the package to install, and the test
/// passes without running.
pub fn have(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.is_file() && m.mode() & 0o111 != 0
            })
        })
    });
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test, but {program} is not installed (apt-get install {package})"
        );
        skip(&format!(
            "{program} not installed (apt-get install {package})"
        ));
    }
    found
}

/// Says that the running test passes without doing its work, and why, where a plain `cargo
/// test` shows it: on fd 2 itself, since libtest captures what `eprintln!` writes from a test
/// and shows it only for a failure. Each skip is also a line in the file `tests/pidns-runner`
/// names in `KEEPUP_TEST_SKIPS`, which it counts after the test binary's run.
pub fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("{test}: {why}\n");
    let _ = nix::unistd::write(std::io::stderr(), format!("skipped: {line}").as_bytes());
    if let Some(file) = std::env::var_os("KEEPUP_TEST_SKIPS") {
        // One write each, appended: parallel tests neither lose nor interleave lines.
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// Ends the test early (as passed, saying why) when a program it needs is missing.
#[macro_export]
macro_rules! require {
    ($program:literal, $package:literal) => {
        if !$crate::testenv::have($program, $package) {
            return;
        }
    };
}

/// SIGKILLs `pid` (a process the test started or found by its mark) and waits until it is gone.
#[track_caller]
pub fn sigkill(pid: i32) {
    assert!(pid > 1);
    kill(NixPid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for("the killed process to go", || !alive(pid));
}
