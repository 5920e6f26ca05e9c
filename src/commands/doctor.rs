//! `doctor`: the checks that make a silent failure loud — above all a timer that never runs
//! (no cron daemon, a PATH without the interpreter, a moved binary) — each with its fix.

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::exit_code;
use crate::files::{self, Unappendable};
use crate::pidfile::PidLock;
use crate::process::exit::Waits;
use crate::service::Service;
use crate::startup::{self, Shebang};
use crate::text::shell_path;
use crate::timer::{self, Crontab, TimerLine};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Check {
    level: Level,
    what: String,
    fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Check {
    Check {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn warn(what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        level: Level::Warn,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        level: Level::Fail,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

pub fn run(config_path: &Path) -> u8 {
    let mut checks = Vec::new();
    match config::load(config_path) {
        Err(e) => checks.push(fail(
            format!("config: {e}"),
            "correct the key it names (keepup's README lists every key)",
        )),
        Ok(config) => {
            checks.push(ok(format!("config: {} loads", config.file.display())));
            let service = Service::open(config);
            diagnose(&service, &mut checks);
        }
    }
    for check in &checks {
        let level = match check.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        println!("{level}  {}", check.what);
        if let Some(fix) = &check.fix {
            println!("      fix: {fix}");
        }
    }
    if checks.iter().any(|c| c.level == Level::Fail) {
        exit_code::FAILED
    } else {
        exit_code::OK
    }
}

fn diagnose(service: &Service, checks: &mut Vec<Check>) {
    let config = &service.config;
    let crontab = Crontab::from_env().read();
    let line = crontab
        .as_ref()
        .ok()
        .and_then(|c| timer::find(c, &config.file))
        .map(str::to_owned);
    let timer_line = line.as_deref().and_then(timer::parse);
    checks.push(runnable(config, timer_line.as_ref()));
    checks.push(match (&crontab, &line, &timer_line) {
        (Err(e), _, _) => fail(
            format!("timer: the crontab cannot be read: {e}"),
            "make `crontab -l` work for this user (is cron installed?)",
        ),
        (Ok(_), None, _) => warn(
            "timer: not installed: after a reboot, or if the watcher is killed, nothing brings \
             the service back",
            format!("keepup -c {} install-timer", shell_path(&config.file)),
        ),
        (Ok(_), Some(_), None) => fail(
            "timer: this config's line is not one keepup wrote",
            format!("keepup -c {} install-timer", shell_path(&config.file)),
        ),
        (Ok(_), Some(_), Some(timer)) => timer_binary(config, timer),
    });
    checks.push(cron_daemon(line.is_some()));
    checks.push(writable(config));
    if config.watch {
        checks.push(match Waits::here() {
            Waits::Pidfd => ok("watcher: pidfd available: it wakes the moment the service exits"),
            Waits::Polling => warn(
                "watcher: no pidfd here (Linux before 5.3, a seccomp filter, macOS, or \
                 KEEPUP_WATCH_POLL=1): it looks every 100 ms",
                "nothing to do; on Linux, a kernel of 5.3 or later",
            ),
        });
    }
    checks.push(pid_lock(service));
    checks.push(one_keeper(service, crontab.as_deref().unwrap_or("")));
}

/// Whether the timer's `restart` could start the program: with the PATH its line carries.
fn runnable(config: &Config, timer: Option<&TimerLine>) -> Check {
    let (path_env, whose) = match timer {
        Some(t) => (t.path_env.clone(), "the timer's PATH"),
        None => (
            std::env::var("PATH").unwrap_or_default(),
            "this shell's PATH (no timer line)",
        ),
    };
    // With no timer line there is nothing to install again.
    let install = format!(
        "run install-timer{} from a shell whose PATH finds it",
        if timer.is_some() { " again" } else { "" }
    );
    let Some(program) = config.startup.first() else {
        return fail("startup: empty", "write the command in startup");
    };
    let resolved = if program.contains('/') {
        let path = config.dir().join(program);
        if !files::is_executable(&path) {
            return fail(
                format!("startup: {} is missing or not executable", path.display()),
                format!("chmod +x {}, or correct startup", shell_path(&path)),
            );
        }
        path
    } else {
        match on_path(program, &path_env) {
            Some(path) => path,
            None => {
                return fail(
                    format!("startup: {program} is not on {whose} ({path_env})"),
                    format!("{install}, or write its absolute path in startup"),
                );
            }
        }
    };
    // A script run directly: its #! line names what runs it.
    let head = files::read_head(&resolved, 256).unwrap_or_default();
    if let Some(interpreter) = startup::shebang(&head) {
        let found = match &interpreter {
            Shebang::Env(name) => on_path(name, &path_env).is_some(),
            Shebang::Program(path) => files::is_executable(Path::new(path)),
        };
        if !found {
            return fail(
                format!(
                    "startup: {} runs under `#!{interpreter}`, which {whose} ({path_env}) does \
                     not find",
                    resolved.display()
                ),
                format!(
                    "{install}, or name the interpreter by its absolute path in the #! line or \
                     in startup"
                ),
            );
        }
    }
    ok(format!("startup: {} runs with {whose}", resolved.display()))
}

fn on_path(program: &str, path_env: &str) -> Option<PathBuf> {
    files::find_on_path(program, std::ffi::OsStr::new(path_env))
}

fn timer_binary(config: &Config, timer: &TimerLine) -> Check {
    let reinstall = format!("keepup -c {} install-timer", shell_path(&config.file));
    if !files::is_executable(&timer.keepup) {
        return fail(
            format!(
                "timer: it runs {}, which does not exist (moved or deleted): it fails every \
                 minute",
                timer.keepup.display()
            ),
            reinstall,
        );
    }
    let me = crate::process::watcher::own_path()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    if me.as_deref() != Some(timer.keepup.as_path()) {
        return warn(
            format!(
                "timer: it runs {}, not this keepup ({})",
                timer.keepup.display(),
                me.map_or_else(|| "?".to_owned(), |m| m.display().to_string())
            ),
            format!("if this one is the keepup to use: {reinstall}"),
        );
    }
    ok(format!("timer: installed, runs {}", timer.keepup.display()))
}

/// A cron daemon must run for the timer's line to fire.
fn cron_daemon(timer_installed: bool) -> Check {
    if let Some(who) = timer::cron_daemon() {
        return ok(format!("cron: {who}"));
    }
    let what = format!("cron: {}", timer::NO_CRON_DAEMON);
    let fix = format!(
        "{}; if cron is not installed: {}",
        timer::START_CRON,
        timer::INSTALL_CRON
    );
    if timer_installed {
        fail(format!("{what}: the timer never fires"), fix)
    } else {
        warn(what, fix)
    }
}

/// The state folder must be writable, and the log open as `start` opens it, with room for a
/// rotation.
fn writable(config: &Config) -> Check {
    let state = nearest_existing(&config.state_dir);
    if nix::unistd::access(&state, nix::unistd::AccessFlags::W_OK).is_err() {
        return fail(
            format!(
                "state folder: {} is not writable by this user: no pid lock, history or log \
                 can be written",
                config.state_dir.display()
            ),
            format!(
                "make it writable (chmod u+w {}), or set state_dir to a folder of yours",
                shell_path(&state)
            ),
        );
    }
    if let Some(problem) = log_problem(config) {
        return problem;
    }
    let folder = nearest_existing(config.log.parent().unwrap_or(Path::new("/")));
    if let Ok(stat) = nix::sys::statvfs::statvfs(&folder) {
        let free = stat.blocks_available() * stat.fragment_size();
        if free < config.log_max_size {
            return warn(
                format!(
                    "log: {} free in {}, less than log_max_size ({}): a rotation may not fit",
                    crate::text::format_bytes(free),
                    folder.display(),
                    crate::text::format_bytes(config.log_max_size)
                ),
                "free some space, or lower log_max_size",
            );
        }
    }
    ok(format!(
        "files: {} and {} are writable",
        config.state_dir.display(),
        config.log.display()
    ))
}

/// What would make `start` fail to open the log, as it opens it (following a symlink; a
/// device such as /dev/null will do). The state folder is made before, so a log in it (or in
/// a folder on its way) needs no folder yet.
fn log_problem(config: &Config) -> Option<Check> {
    let log = config.log.display();
    match files::unappendable(&config.log, true, true)? {
        Unappendable::NoFolder(folder) if config.state_dir.starts_with(&folder) => None,
        Unappendable::NoFolder(folder) => Some(fail(
            format!(
                "log: {log}: its folder {} does not exist, and start makes only the state \
                 folder: start fails",
                folder.display()
            ),
            format!(
                "mkdir -p {}, or set log to a file in a folder that exists",
                shell_path(&folder)
            ),
        )),
        Unappendable::NotAFile(kind) => Some(fail(
            format!(
                "log: {log} is {kind}: start fails (it appends the service's output to a \
                 regular file, or to a device such as /dev/null)"
            ),
            format!(
                "remove it ({} {}), or set log to a file's path",
                if kind == "a directory" { "rmdir" } else { "rm" },
                shell_path(&config.log)
            ),
        )),
        Unappendable::Denied(path) => Some(fail(
            format!("log: {log} is not writable by this user: start fails"),
            format!("make {} writable, or set log", shell_path(&path)),
        )),
    }
}

fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

fn pid_lock(service: &Service) -> Check {
    let file = service.pid_file();
    let file = file.display();
    match service.pid_lock() {
        Err(e) => fail(
            format!("pid lock: {e}"),
            "see that the state folder is readable",
        ),
        Ok(PidLock::Absent) => ok(format!("pid lock: none at {file}: not kept up")),
        Ok(PidLock::Stale(why)) => fail(
            format!("pid lock: {file} {why}"),
            format!(
                "keepup -c {} stop, then start (it is never trusted as it is)",
                shell_path(&service.config.file)
            ),
        ),
        Ok(PidLock::Held(pid)) => {
            let finder = service.finder();
            match service.locate(&finder, &PidLock::Held(pid)) {
                Ok(lookup) if lookup.instance.is_some() => {
                    ok(format!("pid lock: {file} holds the running service"))
                }
                _ => warn(
                    format!("pid lock: {file} holds {pid}, and the service does not run"),
                    format!(
                        "keepup -c {} restart revives it (the watcher or timer should have)",
                        shell_path(&service.config.file)
                    ),
                ),
            }
        }
    }
}

/// Two configs that name one service would keep it twice: the record's keeper refuses the
/// other; a second timer line would be refused every minute.
fn one_keeper(service: &Service, crontab: &str) -> Check {
    let config = &service.config;
    let entry = config.entry.display();
    if let Some(keeper) = service.other_keeper() {
        let quoted = shell_path(&keeper);
        return fail(
            format!(
                "keeper: {} keeps {entry}: start, stop, kill and restart with this config are \
                 refused",
                keeper.display()
            ),
            format!(
                "act on it with keepup -c {quoted}, or stop it there (keepup -c {quoted} stop) \
                 before keeping it with this config"
            ),
        );
    }
    let other = timer::configs(crontab)
        .into_iter()
        .filter(|c| c.canonicalize().ok().as_deref() != Some(config.file.as_path()))
        .find(|c| config::load(c).is_ok_and(|o| config.names_same_service(&o)));
    match other {
        None => ok(format!("keeper: no other config keeps {entry}")),
        Some(other) => fail(
            format!(
                "keeper: {} also keeps {entry}: two keepers would start it twice",
                other.display()
            ),
            format!(
                "keep it with one config: keepup -c {} stop and uninstall-timer",
                shell_path(&other)
            ),
        ),
    }
}
