//! The config file as written, and the check that turns it into a [`Config`]: every key is
//! looked at, and every problem reported at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::search::{Search, platform_supports};
use super::values::{
    DEFAULT_RESTART_LIMIT, RawRestartLimit, RestartLimit, StopMode, check, duration, parse_size,
    restart_limit,
};
use super::{Config, dir_of};
use crate::health::{self, Health, MemoryLimit};
use crate::listen::Listen;
use crate::ready::Ready;
use crate::signal::Signal;
use crate::startup::{self, Pattern, clean};

/// The config file as written. Every field is optional here so that `validate` can report all
/// missing and bad values in one go.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The service's entry program (script or binary), relative to the config's folder.
    pub entry: Option<String>,
    /// The command line that starts the service, split like a shell and run without one.
    pub startup: Option<String>,
    /// How the running process is recognised: `auto`, `proc_cwd`, `proc_exe`, `lsof_cwd`.
    pub search: Option<String>,
    /// Where the service's stdout and stderr are appended.
    pub log: Option<String>,
    /// Added to the service's environment.
    pub env: Option<BTreeMap<String, String>>,
    /// A dotenv file (`KEY=VALUE` lines) read at every launch; `env` wins over it.
    pub env_file: Option<String>,
    /// The first signal `stop` sends.
    pub stop_signal: Option<String>,
    /// `leader`: `stop_signal` to the main process first, to the rest once it has exited;
    /// `group`: to the whole process group at once.
    pub stop_mode: Option<String>,
    /// How long `stop` waits before SIGKILL.
    pub stop_timeout: Option<String>,
    /// How long `start` waits for the process to be recognised (and ready).
    pub start_timeout: Option<String>,
    /// The crash-loop guard.
    pub restart_limit: Option<RawRestartLimit>,
    /// A check that says the service is up: `tcp:HOST:PORT`, `http://HOST:PORT/PATH`, `cmd:COMMAND`.
    pub ready: Option<String>,
    /// The log (and the timer's log) is rotated past this size, e.g. "10MB".
    pub log_max_size: Option<String>,
    /// How many rotated logs are kept.
    pub log_keep: Option<u32>,
    /// Where keepup's state files go (default: the entry's folder).
    pub state_dir: Option<String>,
    /// Whether a watcher revives the service the moment it dies (default: true).
    pub watch: Option<bool>,
    /// A check the watcher runs while the service runs, as for `ready`: after
    /// `health_failures` failures in a row it ends and revives the service.
    pub health: Option<String>,
    /// How often the health check (and `max_memory`) runs, and the most one probe may take
    /// (default "30s").
    pub health_interval: Option<String>,
    /// Failed health checks in a row that make the service unhealthy (default 3).
    pub health_failures: Option<u32>,
    /// With `ready = "notify"`: a service that sends no `WATCHDOG=1` for this long is ended
    /// (SIGABRT, then as `stop`) and revived.
    pub watchdog: Option<String>,
    /// The whole service (its processes' PSS, as `status` counts it) above this size at two
    /// checks in a row (every `health_interval`): restarted gracefully, e.g. "500MB".
    pub max_memory: Option<String>,
    /// Sockets the watcher binds once and hands to every launch (`LISTEN_FDS`, fds 3…):
    /// `"tcp:HOST:PORT"` or `"unix:PATH"`, each optionally `NAME=` first.
    pub listen: Option<Vec<String>>,
}

/// The values that passed, before the paths that depend on them are settled.
struct Checked {
    entry: PathBuf,
    entry_meta: Option<std::fs::Metadata>,
    resolved: Option<PathBuf>,
    search: Search,
    stop_signal: Signal,
    stop_mode: StopMode,
    stop_timeout: Duration,
    start_timeout: Duration,
    startup: Vec<String>,
    pattern: Option<Pattern>,
    env: BTreeMap<String, String>,
    restart_limit: Option<RestartLimit>,
    ready: Option<Ready>,
    health: Option<Health>,
    watchdog: Option<Duration>,
    memory: Option<MemoryLimit>,
    log_max_size: Option<u64>,
    listen: Vec<Listen>,
}

impl RawConfig {
    /// Checks every value, resolving paths against `dir`; reports every problem found, in the
    /// order of the reference table.
    pub fn validate(mut self, file: &Path, dir: &Path) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let problems = &mut problems;

        let entry = check(
            problems,
            match self.entry.as_deref() {
                None => Err("missing key `entry` (the service's entry program)".to_owned()),
                Some(entry) => resolve_entry(entry, dir),
            },
        );
        let (entry, entry_meta) = entry.map_or((None, None), |(e, m)| (Some(e), m));
        // Once, here: where the entry resolves decides both recognition and launching.
        let resolved = entry.as_ref().and_then(|e| e.canonicalize().ok());
        let search = check(problems, Search::from_key(self.search.as_deref()))
            .and_then(|search| check(problems, platform_supports(search).map(|()| search)));
        let (stop_signal, stop_mode) = self.stopping(problems);
        let (stop_timeout, start_timeout) = self.timeouts(problems);
        let env = self.env.take().unwrap_or_default();
        check_env_names(problems, &env);
        let listen = self.listening(problems, dir);
        let startup_and_pattern = entry.as_ref().and_then(|entry| {
            startup_and_pattern(
                problems,
                self.startup.as_deref(),
                entry,
                resolved.as_deref(),
                search,
                &listen,
            )
        });
        let restart_limit = restart_limit(problems, &self.restart_limit.take().unwrap_or_default());
        let ready = match (&self.ready, &entry) {
            (Some(text), Some(entry)) => check(
                problems,
                Ready::parse(text, entry, dir_of(entry)).map_err(|e| format!("key `ready`: {e}")),
            ),
            _ => None,
        };
        let health = self.health(problems, entry.as_deref());
        let watchdog = self.watchdog(problems, ready.as_ref());
        let memory = self.memory(problems);
        refuse_tcp_checks_on_held_sockets(
            problems,
            &[
                ("ready", ready.as_ref()),
                ("health", health.as_ref().map(|h| &h.check)),
            ],
            &listen,
        );
        let log_max_size = check(
            problems,
            parse_size(self.log_max_size.as_deref().unwrap_or("10MB"))
                .map_err(|e| format!("key `log_max_size`: {e}")),
        );

        let (
            Some(entry),
            Some(search),
            Some(stop_signal),
            Some(stop_mode),
            Some(stop_timeout),
            Some(start_timeout),
            Some((startup, pattern)),
        ) = (
            entry,
            search,
            stop_signal,
            stop_mode,
            stop_timeout,
            start_timeout,
            startup_and_pattern,
        )
        else {
            return Err(std::mem::take(problems));
        };
        if !problems.is_empty() {
            return Err(std::mem::take(problems));
        }
        self.settle(
            file,
            dir,
            Checked {
                entry,
                entry_meta,
                resolved,
                search,
                stop_signal,
                stop_mode,
                stop_timeout,
                start_timeout,
                startup,
                pattern,
                env,
                restart_limit,
                ready,
                health,
                watchdog,
                memory,
                log_max_size,
                listen,
            },
        )
    }

    /// `watchdog`: only for a service that notifies, and only with a watcher to keep time.
    fn watchdog(&self, problems: &mut Vec<String>, ready: Option<&Ready>) -> Option<Duration> {
        let text = self.watchdog.as_deref()?;
        let watchdog = check(
            problems,
            duration("watchdog", Some(text), "0s").and_then(|d| {
                if d.is_zero() {
                    Err("key `watchdog`: must be more than 0s".to_owned())
                } else {
                    Ok(d)
                }
            }),
        )?;
        if ready != Some(&Ready::Notify) {
            problems.push(
                "key `watchdog`: needs ready = \"notify\" (the pings come on NOTIFY_SOCKET)"
                    .to_owned(),
            );
        }
        if self.watch == Some(false) {
            problems.push(
                "key `watchdog`: the watcher keeps the watchdog's time, and watch = false has \
                 none: remove `watchdog` or set watch = true"
                    .to_owned(),
            );
        }
        Some(watchdog)
    }

    /// `max_memory`, checked every `health_interval`, by the watcher.
    fn memory(&self, problems: &mut Vec<String>) -> Option<MemoryLimit> {
        let text = self.max_memory.as_deref()?;
        let max = check(
            problems,
            parse_size(text).map_err(|e| format!("key `max_memory`: {e}")),
        )?;
        if self.watch == Some(false) {
            problems.push(
                "key `max_memory`: the watcher checks it, and watch = false has none: remove \
                 `max_memory` or set watch = true"
                    .to_owned(),
            );
        }
        // Its problems were said with `health`'s.
        let interval = duration("health_interval", self.health_interval.as_deref(), "30s")
            .ok()
            .filter(|d| !d.is_zero())?;
        Some(MemoryLimit { max, interval })
    }

    /// `health`, `health_interval` and `health_failures`.
    fn health(&self, problems: &mut Vec<String>, entry: Option<&Path>) -> Option<Health> {
        let interval = check(
            problems,
            duration("health_interval", self.health_interval.as_deref(), "30s").and_then(|d| {
                if d.is_zero() {
                    Err("key `health_interval`: must be more than 0s".to_owned())
                } else {
                    Ok(d)
                }
            }),
        );
        let failures = match self.health_failures {
            Some(0) => check(
                problems,
                Err::<u32, _>("key `health_failures`: must be at least 1".to_owned()),
            ),
            other => Some(other.unwrap_or(health::DEFAULT_FAILURES)),
        };
        let Some(text) = &self.health else {
            for (key, set) in [
                (
                    "health_interval",
                    self.health_interval.is_some() && self.max_memory.is_none(),
                ),
                ("health_failures", self.health_failures.is_some()),
            ] {
                if set {
                    problems.push(format!(
                        "key `{key}`: has no effect without `health` (the check to run)"
                    ));
                }
            }
            return None;
        };
        if self.watch == Some(false) {
            problems.push(
                "key `health`: the watcher runs the health check, and watch = false has none: \
                 remove `health` or set watch = true"
                    .to_owned(),
            );
        }
        let probe = check(
            problems,
            Ready::parse(text, entry?, dir_of(entry?)).map_err(|e| format!("key `health`: {e}")),
        )?;
        if probe == Ready::Notify {
            problems.push(
                "key `health`: \"notify\" is for `ready` (and `watchdog` for a service that \
                 pings); health needs a check keepup can run: tcp:, http:// or cmd:"
                    .to_owned(),
            );
            return None;
        }
        Some(Health {
            check: probe,
            interval: interval?,
            failures: failures?,
        })
    }

    /// `stop_signal` and `stop_mode`.
    fn stopping(&self, problems: &mut Vec<String>) -> (Option<Signal>, Option<StopMode>) {
        let stop_signal = check(
            problems,
            self.stop_signal
                .as_deref()
                .unwrap_or("TERM")
                .parse::<Signal>()
                .and_then(|signal| {
                    if signal == Signal::STOP {
                        Err(format!(
                            "\"{}\" only pauses the service (and keepup resumes it with SIGCONT \
                             right after stop_signal, so that it can act on it): name the signal \
                             it stops on, e.g. \"TERM\"",
                            self.stop_signal.as_deref().unwrap_or_default()
                        ))
                    } else {
                        Ok(signal)
                    }
                })
                .map_err(|e| format!("key `stop_signal`: {e}")),
        );
        let stop_mode = check(problems, StopMode::from_key(self.stop_mode.as_deref()));
        (stop_signal, stop_mode)
    }

    fn timeouts(&self, problems: &mut Vec<String>) -> (Option<Duration>, Option<Duration>) {
        let stop_timeout = check(
            problems,
            duration("stop_timeout", self.stop_timeout.as_deref(), "10s"),
        );
        let start_timeout = check(
            problems,
            duration("start_timeout", self.start_timeout.as_deref(), "5s").and_then(|d| {
                if d.is_zero() {
                    Err("key `start_timeout`: must be more than 0s".to_owned())
                } else {
                    Ok(d)
                }
            }),
        );
        (stop_timeout, start_timeout)
    }

    /// `listen`, checked; the watcher that holds the sockets must be there to hold them.
    fn listening(&self, problems: &mut Vec<String>, dir: &Path) -> Vec<Listen> {
        let listen = check(
            problems,
            crate::listen::parse_all(self.listen.as_deref().unwrap_or_default(), dir)
                .map_err(|e| format!("key `listen`: {e}")),
        )
        .unwrap_or_default();
        if !listen.is_empty() && self.watch == Some(false) {
            check(
                problems,
                Err::<(), _>(
                    "key `listen`: the watcher holds the sockets between launches, and watch = \
                     false has none: remove watch = false, or listen"
                        .to_owned(),
                ),
            );
        }
        listen
    }

    /// Where keepup's files and the log go, once every value has passed.
    fn settle(self, file: &Path, dir: &Path, checked: Checked) -> Result<Config, Vec<String>> {
        let Checked {
            entry, resolved, ..
        } = &checked;
        let name = entry
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let state_dir = self
            .state_dir
            .as_deref()
            .map_or_else(|| dir_of(entry).to_path_buf(), |d| clean(&dir.join(d)));
        // keepup's files beside a system binary (nginx.lock in /usr/sbin), or in a folder the
        // acting user does not own, would be litter or a failure.
        let beside = resolved.as_deref().and_then(Path::parent);
        // Looked at once: root's safety check reuses it.
        let entry_dir_meta = beside.and_then(|b| std::fs::metadata(b).ok());
        if self.state_dir.is_none()
            && beside.is_some_and(|b| startup::shared_folder(b, entry_dir_meta.as_ref()))
        {
            return Err(vec![format!(
                "key `state_dir`: the entry {} is a shared program in {}, where keepup's files do \
                 not belong; set state_dir = \"…\" to a folder of yours (e.g. state_dir = \
                 \"state\", beside this config)",
                entry.display(),
                beside.map_or_else(String::new, |b| b.display().to_string())
            )]);
        }
        let log = match self.log.as_deref() {
            Some(log) => dir.join(log),
            None => state_dir.join(format!("{name}.log")),
        };
        Ok(Config {
            file: file.to_path_buf(),
            resolved: checked.resolved,
            entry_meta: checked.entry_meta,
            entry_dir_meta,
            name,
            state_dir,
            entry: checked.entry,
            startup: checked.startup,
            pattern: checked.pattern,
            search: checked.search,
            log,
            env: checked.env,
            stop_signal: checked.stop_signal,
            stop_mode: checked.stop_mode,
            stop_timeout: checked.stop_timeout,
            start_timeout: checked.start_timeout,
            restart_limit: checked.restart_limit.unwrap_or(DEFAULT_RESTART_LIMIT),
            ready: checked.ready,
            health: checked.health,
            watchdog: checked.watchdog,
            memory: checked.memory,
            log_max_size: checked.log_max_size.unwrap_or(0),
            log_keep: self.log_keep.unwrap_or(3),
            env_file: self.env_file.as_deref().map(|f| clean(&dir.join(f))),
            watch: self.watch.unwrap_or(true),
            listen: checked.listen,
        })
    }
}

/// With a held socket (`listen`) the kernel accepts into its queue whether the service runs
/// or not: a `tcp:` check (`ready`, `health`) on its port would pass at once, and prove nothing.
fn refuse_tcp_checks_on_held_sockets(
    problems: &mut Vec<String>,
    checks: &[(&str, Option<&Ready>)],
    listen: &[Listen],
) {
    let held = |port: u16| {
        listen
            .iter()
            .any(|l| matches!(&l.address, crate::listen::Address::Tcp(addr) if addr.port() == port))
    };
    for (key, check_of) in checks {
        if let Some(tcp @ Ready::Tcp { port, .. }) = check_of
            && held(*port)
        {
            check(
                problems,
                Err::<(), _>(format!(
                    "key `{key}`: \"{tcp}\" passes at once on a socket keepup holds (`listen`), \
                     whether the service is up or not: use an http:// or cmd: check"
                )),
            );
        }
    }
}

fn check_env_names(problems: &mut Vec<String>, env: &BTreeMap<String, String>) {
    for name in env.keys() {
        if name.is_empty() || name.contains(['=', '\0']) {
            check(
                problems,
                Err::<(), _>(format!("key `env`: \"{name}\" is not a variable name")),
            );
        }
    }
}

/// The startup words and what the started process looks like; refuses a search rule that
/// could never recognise it.
fn startup_and_pattern(
    problems: &mut Vec<String>,
    startup: Option<&str>,
    entry: &Path,
    resolved: Option<&Path>,
    search: Option<Search>,
    listen: &[Listen],
) -> Option<(Vec<String>, Option<Pattern>)> {
    let startup = check(
        problems,
        startup::split(startup.unwrap_or("{entry}"), entry, dir_of(entry))
            .and_then(|mut words| crate::listen::substitute(&mut words, listen).map(|()| words))
            .map_err(|e| format!("key `startup`: {e}")),
    )?;
    let pattern = Pattern::derive(&startup, entry, resolved, dir_of(entry), read_shebang);
    if let (Some(Search::ProcExe), Some(interpreter)) = (
        search,
        pattern.as_ref().and_then(|p| p.interpreter.as_deref()),
    ) {
        check(
            problems,
            Err::<(), _>(format!(
                "key `search`: \"proc_exe\" recognises native binaries by their executable, and \
                 {} runs under {interpreter}, whose executable is the interpreter's: use search = \
                 \"auto\" or \"proc_cwd\"",
                entry.display()
            )),
        );
    }
    if let (Some(Search::ProcExe), Some(command)) =
        (search, pattern.as_ref().and_then(|p| p.command.as_ref()))
    {
        check(
            problems,
            Err::<(), _>(format!(
                "key `search`: \"proc_exe\" recognises the entry's own executable, and startup \
                 runs {}, not {}: no process could ever be recognised; use search = \"auto\" \
                 (the startup command line, run in the entry's folder)",
                command.program.display(),
                entry.display()
            )),
        );
    }
    Some((startup, pattern))
}

/// The entry's absolute path as written. A missing entry is no error here: a running instance
/// must stay reachable by `status`, `stop` and `kill` after its entry was deleted or moved.
fn resolve_entry(entry: &str, dir: &Path) -> Result<(PathBuf, Option<std::fs::Metadata>), String> {
    if entry.is_empty() {
        return Err("key `entry`: is empty".to_owned());
    }
    let path = clean(&dir.join(entry));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "key `entry`: {} is a directory, not a program",
            path.display()
        )),
        Ok(meta) => Ok((path, Some(meta))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("key `entry`: {}: {e}", path.display()))
        }
        Err(_) => Ok((path, None)),
    }
}

fn read_shebang(entry: &Path) -> Option<String> {
    startup::parse_shebang(&crate::files::read_head(entry, 256)?)
}
