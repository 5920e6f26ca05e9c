//! The config file: read with serde, every value checked at once by [`RawConfig::validate`],
//! and turned into a [`Config`] whose paths are absolute and whose values are typed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ready::Ready;
use crate::signal::Signal;
use crate::startup::{self, Pattern, clean};

/// How the running process is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// `proc_exe` or `proc_cwd` where `/proc` exists; the OS process API, then `lsof`, on macOS.
    Auto,
    /// One argv word, resolved against the process's cwd from `/proc`, is the entry.
    ProcCwd,
    /// The process's executable (`/proc/<pid>/exe`) is the entry.
    ProcExe,
    /// As `proc_cwd`, with the working directory read from `lsof`.
    LsofCwd,
}

impl Search {
    const NAMES: [(Search, &'static str); 4] = [
        (Search::Auto, "auto"),
        (Search::ProcCwd, "proc_cwd"),
        (Search::ProcExe, "proc_exe"),
        (Search::LsofCwd, "lsof_cwd"),
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("?", |(_, n)| n)
    }

    fn parse(text: &str) -> Option<Search> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == text)
            .map(|(s, _)| *s)
    }
}

/// The config file as written. Every field is optional here so that `validate` can report all
/// missing and bad values in one go.
#[derive(Debug, Default, Deserialize)]
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
    /// The first signal `stop` sends.
    pub stop_signal: Option<String>,
    /// How long `stop` waits before SIGKILL.
    pub stop_timeout: Option<String>,
    /// How long `start` waits for the process to be recognised (and ready).
    pub start_timeout: Option<String>,
    /// The crash-loop guard.
    pub restart_limit: Option<RawRestartLimit>,
    /// A check that says the service is up: `tcp:HOST:PORT`, `http://HOST:PORT/PATH`, `cmd:COMMAND`.
    pub ready: Option<String>,
    /// The log is rotated past this size, e.g. "10MB".
    pub log_max_size: Option<String>,
    /// How many rotated logs are kept.
    pub log_keep: Option<u32>,
    /// Where keepup's state files go (default: the entry's folder).
    pub state_dir: Option<String>,
    /// Whether a watcher revives the service the moment it dies (default: true).
    pub watch: Option<bool>,
}

/// `[restart_limit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestartLimit {
    /// Revivals allowed within `interval` before the guard trips.
    pub burst: Option<u32>,
    pub interval: Option<String>,
    /// After a trip, how long until one more revival is tried (default: `interval`).
    pub cooldown: Option<String>,
    /// The least wait between revivals, doubled for each one in a row.
    pub backoff: Option<String>,
}

/// The crash-loop guard's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub burst: u32,
    pub interval: Duration,
    pub cooldown: Duration,
    pub backoff: Duration,
}

/// A checked config: absolute paths, typed values, defaults filled in.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file, absolute.
    pub file: PathBuf,
    /// The entry's absolute path as written (symlinks not resolved): what `{entry}` becomes,
    /// so a service in a `current -> releases/vN` folder sees the path it was configured with.
    pub entry: PathBuf,
    /// Where the entry resolves now (symlinks followed); `None` when it does not exist, which
    /// only the verbs that launch it mind.
    pub resolved: Option<PathBuf>,
    /// The entry's metadata as loaded (its owner and mode, for root's safety check).
    pub entry_meta: Option<std::fs::Metadata>,
    /// The metadata of the folder the entry resolves into, likewise.
    pub entry_dir_meta: Option<std::fs::Metadata>,
    /// The service's name in messages: the entry's file name.
    pub name: String,
    /// Where keepup's state files go: the pid lock, the instance record, the operation lock,
    /// the history, the timer's log.
    pub state_dir: PathBuf,
    /// The startup words, `{entry}` and `{dir}` substituted.
    pub startup: Vec<String>,
    /// What the started process looks like, when `startup` names the entry.
    pub pattern: Option<Pattern>,
    pub search: Search,
    pub log: PathBuf,
    pub env: BTreeMap<String, String>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
    pub restart_limit: RestartLimit,
    pub ready: Option<Ready>,
    pub log_max_size: u64,
    pub log_keep: u32,
    /// A watcher waits for the service's exit and revives it at once; the timer alone
    /// revives it otherwise.
    pub watch: bool,
}

impl Config {
    /// The folder that holds the entry, as written: the service's working directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        dir_of(&self.entry)
    }

    /// A state file named `<entry's name><suffix>` in the state folder.
    #[must_use]
    pub fn state_file(&self, suffix: &str) -> PathBuf {
        self.state_dir.join(format!("{}{suffix}", self.name))
    }

    /// The entry's resolved path, or the config error the verbs that launch it report.
    pub fn launchable_entry(&self) -> Result<&Path> {
        self.resolved.as_deref().ok_or_else(|| Error::Config {
            file: self.file.clone(),
            message: format!(
                "key `entry`: {} does not exist (status, stop and kill still work on a running instance)",
                self.entry.display()
            ),
        })
    }
}

/// Reads and checks the config at `path`.
pub fn load(path: &Path) -> Result<Config> {
    load_with_text(path).map(|(config, _)| config)
}

/// Reads and checks the config at `path`, and gives the text it was read from (the watcher
/// keeps it, to revive with if the file is later broken).
pub fn load_with_text(path: &Path) -> Result<(Config, String)> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&file).map_err(|e| {
        config_error(&file)(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such config file (pass --config PATH or set KEEPUP_CONFIG)".to_owned()
            }
            _ => format!("cannot read: {e}"),
        })
    })?;
    let config = parse(&file, &text)?;
    Ok((config, text))
}

/// Checks `text` as the config at `path` (already read).
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| config_error(&file)(toml_message(text, &e)))?;
    // Canonical, so `-c cfg.toml` and `-c ./cfg.toml` name the same service (and timer line).
    let file = file.canonicalize().unwrap_or(file);
    let dir = file.parent().unwrap_or(Path::new("/"));
    raw.validate(&file, dir)
        .map_err(|problems| config_error(&file)(problems.join("; ")))
}

/// One line for a TOML error: `line:column: key `k`: what is wrong`.
fn config_error(file: &Path) -> impl Fn(String) -> Error {
    let file = file.to_path_buf();
    move |message| Error::Config {
        file: file.clone(),
        message,
    }
}

fn toml_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    match key_at(text, span.start) {
        Some(key) if !message.contains(&format!("`{key}`")) => {
            format!("{line}:{column}: key `{key}`: {message}")
        }
        _ => format!("{line}:{column}: {message}"),
    }
}

/// The dotted key assigned on the line holding `offset`, for errors that name only a value.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

impl RawConfig {
    /// Checks every value, resolving paths against `dir`; reports every problem found.
    // One place that checks every key, in the order of the reference table.
    #[allow(clippy::too_many_lines)]
    pub fn validate(self, file: &Path, dir: &Path) -> Result<Config, Vec<String>> {
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
        let search = check(
            problems,
            match self.search.as_deref() {
                None => Ok(Search::Auto),
                Some(text) => Search::parse(text).ok_or_else(|| {
                    let names: Vec<&str> = Search::NAMES.iter().map(|(_, n)| *n).collect();
                    format!(
                        "key `search`: unknown value \"{text}\" (expected one of {})",
                        names.join(", ")
                    )
                }),
            },
        )
        .and_then(|search| check(problems, platform_supports(search).map(|()| search)));
        let stop_signal = check(
            problems,
            self.stop_signal
                .as_deref()
                .unwrap_or("TERM")
                .parse::<Signal>()
                .map_err(|e| format!("key `stop_signal`: {e}")),
        );
        let stop_timeout = check(
            problems,
            duration("stop_timeout", self.stop_timeout.as_deref(), "10s"),
        );
        let start_timeout = check(
            problems,
            duration("start_timeout", self.start_timeout.as_deref(), "5s"),
        )
        .and_then(|d| {
            check(
                problems,
                if d.is_zero() {
                    Err("key `start_timeout`: must be more than 0s".to_owned())
                } else {
                    Ok(d)
                },
            )
        });
        let env = self.env.unwrap_or_default();
        for name in env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                check(
                    problems,
                    Err::<(), _>(format!("key `env`: \"{name}\" is not a variable name")),
                );
            }
        }
        let startup_and_pattern = entry.as_ref().and_then(|entry| {
            let startup = check(
                problems,
                startup::split(
                    self.startup.as_deref().unwrap_or("{entry}"),
                    entry,
                    dir_of(entry),
                )
                .map_err(|e| format!("key `startup`: {e}")),
            )?;
            let pattern = Pattern::derive(
                &startup,
                entry,
                resolved.as_deref(),
                dir_of(entry),
                read_shebang,
            );
            if let (Some(Search::ProcExe), Some(interpreter)) =
                (search, pattern.as_ref().and_then(|p| p.interpreter.as_deref()))
            {
                check(
                    problems,
                    Err::<(), _>(format!(
                        "key `search`: \"proc_exe\" recognises native binaries by their executable, \
                         and {} runs under {interpreter}, whose executable is the interpreter's: \
                         use search = \"auto\" or \"proc_cwd\"",
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
                        "key `search`: \"proc_exe\" recognises the entry's own executable, and \
                         startup runs {}, not {}: no process could ever be recognised; use \
                         search = \"auto\" (the startup command line, run in the entry's folder)",
                        command.program.display(),
                        entry.display()
                    )),
                );
            }
            Some((startup, pattern))
        });

        let restart_limit = restart_limit(problems, &self.restart_limit.unwrap_or_default());
        let ready = match (&self.ready, &entry) {
            (Some(text), Some(entry)) => check(
                problems,
                Ready::parse(text, entry, dir_of(entry)).map_err(|e| format!("key `ready`: {e}")),
            ),
            _ => None,
        };
        let log_max_size = check(
            problems,
            parse_size(self.log_max_size.as_deref().unwrap_or("10MB"))
                .map_err(|e| format!("key `log_max_size`: {e}")),
        );

        match (
            entry,
            search,
            stop_signal,
            stop_timeout,
            start_timeout,
            startup_and_pattern,
        ) {
            (
                Some(entry),
                Some(search),
                Some(stop_signal),
                Some(stop_timeout),
                Some(start_timeout),
                Some((startup, pattern)),
            ) if problems.is_empty() => {
                let name = entry
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let state_dir = self
                    .state_dir
                    .as_deref()
                    .map_or_else(|| dir_of(&entry).to_path_buf(), |d| clean(&dir.join(d)));
                // keepup's files beside a system binary (nginx.lock in /usr/sbin), or in a
                // folder the acting user does not own, would be litter or a failure.
                let beside = resolved.as_deref().and_then(Path::parent);
                // Looked at once: root's safety check reuses it.
                let entry_dir_meta = beside.and_then(|b| std::fs::metadata(b).ok());
                if self.state_dir.is_none()
                    && beside.is_some_and(|b| startup::shared_folder(b, entry_dir_meta.as_ref()))
                {
                    return Err(vec![format!(
                        "key `state_dir`: the entry {} is a shared program in {}, where keepup's \
                         files do not belong; set state_dir = \"…\" to a folder of yours (e.g. \
                         state_dir = \"state\", beside this config)",
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
                    resolved,
                    entry_meta,
                    entry_dir_meta,
                    name,
                    state_dir,
                    entry,
                    startup,
                    pattern,
                    search,
                    log,
                    env,
                    stop_signal,
                    stop_timeout,
                    start_timeout,
                    restart_limit: restart_limit.unwrap_or(DEFAULT_RESTART_LIMIT),
                    ready,
                    log_max_size: log_max_size.unwrap_or(0),
                    log_keep: self.log_keep.unwrap_or(3),
                    watch: self.watch.unwrap_or(true),
                })
            }
            _ => Err(std::mem::take(problems)),
        }
    }
}

const DEFAULT_RESTART_LIMIT: RestartLimit = RestartLimit {
    burst: 5,
    interval: Duration::from_secs(600),
    cooldown: Duration::from_secs(600),
    backoff: Duration::ZERO,
};

fn restart_limit(problems: &mut Vec<String>, raw: &RawRestartLimit) -> Option<RestartLimit> {
    let key = |k: &str| format!("restart_limit.{k}");
    let burst = match raw.burst.unwrap_or(DEFAULT_RESTART_LIMIT.burst) {
        0 => check(
            problems,
            Err::<u32, _>("key `restart_limit.burst`: must be at least 1".to_owned()),
        ),
        burst => Some(burst),
    };
    let interval = check(
        problems,
        duration(&key("interval"), raw.interval.as_deref(), "10m"),
    );
    let interval = match interval {
        Some(d) if d.is_zero() => check(
            problems,
            Err::<Duration, _>("key `restart_limit.interval`: must be more than 0s".to_owned()),
        ),
        other => other,
    };
    let cooldown = match raw.cooldown.as_deref() {
        Some(text) => check(problems, duration(&key("cooldown"), Some(text), "")),
        None => interval,
    };
    let backoff = check(
        problems,
        duration(&key("backoff"), raw.backoff.as_deref(), "0s"),
    );
    Some(RestartLimit {
        burst: burst?,
        interval: interval?,
        cooldown: cooldown?,
        backoff: backoff?,
    })
}

/// Parses a size like "512KB", "10MB", "1GB" or "4096" (bytes). K, M and G are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("\"{text}\" is not a size (write e.g. \"512KB\", \"10MB\")");
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(bad()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(bad)
}

/// Keeps a problem for the report and goes on with the next value.
fn check<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|p| problems.push(p)).ok()
}

fn dir_of(entry: &Path) -> &Path {
    entry.parent().unwrap_or(Path::new("/"))
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

fn duration(key: &str, text: Option<&str>, default: &str) -> Result<Duration, String> {
    let text = text.unwrap_or(default);
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "key `{key}`: \"{text}\" is not a duration ({e}; write e.g. \"500ms\", \"10s\", \"2m\")"
        )
    })
}

fn read_shebang(entry: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut head = [0u8; 256];
    // Never block on a FIFO put in the entry's place.
    let n = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(entry)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    startup::parse_shebang(&head[..n])
}

// Same signature as on macOS, where some modes are refused.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_wraps)]
fn platform_supports(_: Search) -> Result<(), String> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn platform_supports(search: Search) -> Result<(), String> {
    match search {
        Search::ProcCwd | Search::ProcExe => Err(format!(
            "key `search`: \"{}\" needs /proc, which this system lacks; use \"auto\" or \"lsof_cwd\"",
            search.name()
        )),
        Search::Auto | Search::LsofCwd => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> (tempfile::TempDir, Result<Config>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bot.py"), "#!/usr/bin/env python3\n").unwrap();
        let file = dir.path().join("cfg.toml");
        std::fs::write(&file, text).unwrap();
        let config = load(&file);
        (dir, config)
    }

    fn error(text: &str) -> String {
        match load_text(text).1 {
            Err(Error::Config { message, .. }) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let (dir, config) = load_text("entry = \"bot.py\"\n");
        let config = config.unwrap();
        let entry = dir.path().canonicalize().unwrap().join("bot.py");
        assert_eq!(config.entry, entry);
        assert_eq!(config.name, "bot.py");
        assert_eq!(config.startup, [entry.to_str().unwrap()]);
        assert_eq!(config.search, Search::Auto);
        assert_eq!(
            config.log,
            dir.path().canonicalize().unwrap().join("bot.py.log")
        );
        assert_eq!(config.stop_signal, Signal::Term);
        assert_eq!(config.stop_timeout, Duration::from_secs(10));
        assert_eq!(config.start_timeout, Duration::from_secs(5));
        assert_eq!(
            config.pattern.as_ref().unwrap().interpreter.as_deref(),
            Some("python3")
        );
        assert_eq!(config.state_file(".pid"), entry.with_extension("py.pid"));
        assert_eq!(config.resolved.as_deref(), Some(entry.as_path()));
        assert_eq!(config.restart_limit, DEFAULT_RESTART_LIMIT);
        assert_eq!(config.ready, None);
        assert_eq!((config.log_max_size, config.log_keep), (10 << 20, 3));
    }

    #[test]
    fn restart_limit_and_ready() {
        let (_dir, config) = load_text(
            "entry = \"bot.py\"\nready = \"tcp:127.0.0.1:9\"\nlog_max_size = \"512KB\"\nlog_keep = 0\n\
             [restart_limit]\nburst = 2\ninterval = \"1m\"\nbackoff = \"5s\"\n",
        );
        let config = config.unwrap();
        let limit = config.restart_limit;
        assert_eq!(
            (limit.burst, limit.interval, limit.cooldown),
            (2, Duration::from_secs(60), Duration::from_secs(60))
        );
        assert_eq!(limit.backoff, Duration::from_secs(5));
        assert_eq!(
            config.ready,
            Some(Ready::Tcp {
                host: "127.0.0.1".into(),
                port: 9
            })
        );
        assert_eq!((config.log_max_size, config.log_keep), (512 << 10, 0));
    }

    #[test]
    fn bad_limits_are_named() {
        let message = error(
            "entry = \"bot.py\"\nready = \"ping\"\nlog_max_size = \"big\"\n[restart_limit]\nburst = 0\ncooldown = \"soon\"\n",
        );
        for key in [
            "`ready`",
            "`log_max_size`",
            "`restart_limit.burst`",
            "`restart_limit.cooldown`",
        ] {
            assert!(message.contains(key), "{key} missing from {message}");
        }
        let message = error("entry = \"bot.py\"\n[restart_limit]\nbrust = 1\n");
        assert!(message.contains("`brust`"), "{message}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        for bad in [
            "",
            "MB",
            "0",
            "-1MB",
            "10TB",
            "1.5MB",
            "99999999999999999999GB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let message = error("entry = \"bot.py\"\nsearch = \n");
        assert!(message.starts_with("2:"), "{message}");
    }

    #[test]
    fn unknown_key_is_named() {
        let message = error("entry = \"bot.py\"\nentyr = 1\n");
        assert!(message.contains("`entyr`"), "{message}");
        assert!(message.starts_with("2:1:"), "{message}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let message = error("entry = \"bot.py\"\nstop_timeout = 5\n");
        assert!(message.contains("key `stop_timeout`"), "{message}");
        assert!(message.starts_with("2:"), "{message}");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let message = error(
            "entry = \".\"\nsearch = \"ps\"\nstop_signal = \"TERMINATE\"\nstop_timeout = \"ten\"\n",
        );
        for key in ["`entry`", "`search`", "`stop_signal`", "`stop_timeout`"] {
            assert!(message.contains(key), "{key} missing from {message}");
        }
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_missing_entry_loads_but_cannot_launch() {
        let (dir, config) = load_text("entry = \"gone.py\"\n");
        let config = config.unwrap();
        assert_eq!(
            config.entry,
            dir.path().canonicalize().unwrap().join("gone.py")
        );
        assert_eq!(config.resolved, None);
        let message = config.launchable_entry().unwrap_err().to_string();
        assert!(message.contains("gone.py does not exist"), "{message}");
    }

    #[test]
    fn entry_is_kept_as_written_and_state_dir_is_relative_to_the_config() {
        let (dir, _) = load_text("entry = \"bot.py\"\n");
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("v1")).unwrap();
        std::fs::write(root.join("v1/app.py"), "#!/usr/bin/env python3\n").unwrap();
        std::os::unix::fs::symlink("v1", root.join("current")).unwrap();
        let file = root.join("cfg.toml");
        std::fs::write(
            &file,
            "entry = \"./current/app.py\"\nstartup = \"python3 {entry}\"\nstate_dir = \"state\"\n",
        )
        .unwrap();
        let config = load(&file).unwrap();
        assert_eq!(config.entry, root.join("current/app.py"));
        assert_eq!(config.resolved, Some(root.join("v1/app.py")));
        assert_eq!(
            config.startup,
            ["python3", root.join("current/app.py").to_str().unwrap()]
        );
        assert_eq!(config.state_file(".pid"), root.join("state/app.py.pid"));
        assert_eq!(config.log, root.join("state/app.py.log"));
        assert_eq!(config.dir(), root.join("current"));
    }

    #[test]
    fn missing_entry() {
        assert!(error("search = \"auto\"\n").contains("missing key `entry`"));
    }

    #[test]
    fn a_config_that_can_never_be_recognised_is_refused() {
        // By argv, a startup that never names the entry is its command line, in its folder.
        let (_dir, config) = load_text(
            "entry = \"bot.py\"\nstartup = \"python3 other.py\"\nsearch = \"proc_cwd\"\n",
        );
        assert!(config.unwrap().pattern.unwrap().command.is_some());
        // By executable, it can never be the entry's.
        let message =
            error("entry = \"bot.py\"\nstartup = \"python3 other.py\"\nsearch = \"proc_exe\"\n");
        assert!(
            message.contains("no process could ever be recognised"),
            "{message}"
        );
        assert!(message.contains("search = \"auto\""), "{message}");
    }

    #[test]
    fn shell_syntax_in_startup() {
        let message = error("entry = \"bot.py\"\nstartup = \"python3 bot.py &\"\n");
        assert!(
            message.contains("key `startup`") && message.contains("without a shell"),
            "{message}"
        );
    }

    #[test]
    fn paths_are_relative_to_the_config() {
        let (dir, config) = load_text("entry = \"./bot.py\"\nlog = \"logs/out.log\"\n");
        assert_eq!(config.unwrap().log, dir.path().join("logs/out.log"));
    }

    #[test]
    fn table_key_is_dotted() {
        assert_eq!(key_at("[a]\nb = 1\n", 4).as_deref(), Some("a.b"));
        assert_eq!(key_at("b = 1\n", 0).as_deref(), Some("b"));
    }

    #[test]
    fn shipped_config_parses() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg.toml");
        let config = load(&shipped).unwrap();
        assert_eq!(config.name, "runserver.py");
    }
}
