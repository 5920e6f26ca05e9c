//! The config file: read with serde (`raw.rs`), every value checked at once by
//! [`RawConfig::validate`], and turned into a [`Config`] whose paths are absolute and whose
//! values are typed (`values.rs`: durations, sizes, the guard's limits; `search.rs`: how the
//! service is recognised).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::health::{Health, MemoryLimit};
use crate::ownership::TrustedPath;
use crate::ready::Ready;
use crate::signal::Signal;
use crate::startup::Pattern;

mod raw;
mod search;
mod values;

pub use raw::RawConfig;
pub use search::Search;
pub use values::{RawRestartLimit, RestartLimit, StopMode, parse_size};

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
    /// A dotenv file read at every launch, absolute; `env` wins over it.
    pub env_file: Option<PathBuf>,
    pub stop_signal: Signal,
    /// Whether `stop_signal` goes to the main process first or to the whole group at once.
    pub stop_mode: StopMode,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
    pub restart_limit: RestartLimit,
    pub ready: Option<Ready>,
    /// What the watcher checks while the service runs.
    pub health: Option<Health>,
    /// With `ready = "notify"`: silent (no `WATCHDOG=1`) this long, the service is ended.
    pub watchdog: Option<Duration>,
    /// `max_memory`, and how often the watcher checks it.
    pub memory: Option<MemoryLimit>,
    pub log_max_size: u64,
    pub log_keep: u32,
    /// A watcher waits for the service's exit and revives it at once; the timer alone
    /// revives it otherwise.
    pub watch: bool,
    /// The sockets the watcher holds and hands to every launch, in descriptor order (3…).
    pub listen: Vec<crate::listen::Listen>,
}

impl Config {
    /// The folder that holds the entry, as written: the service's working directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        dir_of(&self.entry)
    }

    /// Whether `other` names the same service: the same entry (as written, or where both
    /// resolve now; two missing entries are not the same one), run the same way.
    #[must_use]
    pub fn names_same_service(&self, other: &Config) -> bool {
        let same_entry = self.entry == other.entry
            || (self.resolved.is_some() && self.resolved == other.resolved);
        same_entry && self.runs() == other.runs()
    }

    /// Which runs of the entry are this service, beyond the entry itself: for a shared program
    /// (`/usr/bin/python3`) its arguments, for a startup that never names the entry its command
    /// line; empty otherwise (every run of a script or binary entry is the service).
    #[must_use]
    pub fn runs(&self) -> String {
        let Some(pattern) = &self.pattern else {
            return String::new();
        };
        match (&pattern.args, &pattern.command) {
            (Some(args), _) => args.join("\0"),
            (None, Some(command)) => format!(
                "{}\0{}\0{}",
                command.program.display(),
                command.dir.display(),
                command.args.join("\0")
            ),
            (None, None) => String::new(),
        }
    }

    /// What root must trust to act on this config: the config file (`config_meta`, as
    /// [`crate::ownership::act_as_config_owner`] found it), the entry, the folder it runs in
    /// and the state folder.
    #[must_use]
    pub fn trusted_by_root(&self, config_meta: &std::fs::Metadata) -> Vec<TrustedPath<'_>> {
        let mut paths = vec![TrustedPath {
            what: "config file",
            path: &self.file,
            meta: Some(config_meta.clone()),
        }];
        if let Some(meta) = &self.entry_meta {
            paths.push(TrustedPath {
                what: "entry",
                path: &self.entry,
                meta: Some(meta.clone()),
            });
        }
        // The folder as written leads where the entry resolves; its metadata was taken at load.
        paths.push(TrustedPath {
            what: "entry's folder",
            path: self.dir(),
            meta: self.entry_dir_meta.clone(),
        });
        // By default the state folder is the entry's: one look is enough.
        if self.state_dir != self.dir() {
            paths.push(TrustedPath {
                what: "state folder",
                path: &self.state_dir,
                meta: None,
            });
        }
        // The log is followed through a symlink (to /var/log, say), but as root only one that
        // root made, in a folder where nobody else can swap one in (a sticky folder, as /tmp,
        // lets nobody replace root's file, and the kernel's protected_symlinks guards the rest).
        if let Some(folder) = self.log.parent()
            && folder != self.state_dir
            && folder != self.dir()
        {
            let meta = std::fs::metadata(folder).ok();
            let sticky =
                |m: &std::fs::Metadata| std::os::unix::fs::MetadataExt::mode(m) & 0o1000 != 0;
            if meta.as_ref().is_none_or(|m| !sticky(m)) {
                paths.push(TrustedPath {
                    what: "log's folder",
                    path: folder,
                    meta,
                });
            }
        }
        if let Ok(link) = std::fs::symlink_metadata(&self.log)
            && link.file_type().is_symlink()
        {
            paths.push(TrustedPath {
                what: "log (a symlink)",
                path: &self.log,
                meta: Some(link),
            });
        }
        paths
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

/// The folder that holds `entry`.
fn dir_of(entry: &Path) -> &Path {
    entry.parent().unwrap_or(Path::new("/"))
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
    let raw = parse_toml(text).map_err(|e| config_error(&file)(toml_message(text, &e)))?;
    // Canonical, so `-c cfg.toml` and `-c ./cfg.toml` name the same service (and timer line).
    let file = file.canonicalize().unwrap_or(file);
    let dir = file.parent().unwrap_or(Path::new("/"));
    raw.validate(&file, dir)
        .map_err(|problems| config_error(&file)(problems.join("; ")))
}

thread_local! {
    /// The text last parsed, and what it says.
    static PARSED: std::cell::RefCell<Option<(String, RawConfig)>> =
        const { std::cell::RefCell::new(None) };
}

/// What `text` says as TOML. The watcher parses its config before it waits and again when
/// the service dies, most often the same text: comparing it is free where parsing it again
/// cost 35 µs of a revival's way here. What the text names on disk is looked at each time,
/// by the check that follows.
fn parse_toml(text: &str) -> std::result::Result<RawConfig, toml::de::Error> {
    let known = PARSED.with_borrow(|parsed| {
        parsed
            .as_ref()
            .filter(|(parsed, _)| parsed == text)
            .map(|(_, raw)| raw.clone())
    });
    if let Some(raw) = known {
        return Ok(raw);
    }
    let raw: RawConfig = toml::from_str(text)?;
    PARSED.set(Some((text.to_owned(), raw.clone())));
    Ok(raw)
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

#[cfg(test)]
mod tests {
    use super::values::DEFAULT_RESTART_LIMIT;
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
    fn the_same_text_again_is_checked_against_the_disk_again() {
        let (dir, first) = load_text("entry = \"bot.py\"\n");
        let interpreter = |config: &Config| config.pattern.as_ref().unwrap().interpreter.clone();
        assert_eq!(interpreter(&first.unwrap()).as_deref(), Some("python3"));
        // Its text unchanged, what it names is not.
        std::fs::write(dir.path().join("bot.py"), "#!/usr/bin/env node\n").unwrap();
        let file = dir.path().join("cfg.toml");
        assert_eq!(interpreter(&load(&file).unwrap()).as_deref(), Some("node"));
        // Another text is read as itself, and the first again as itself.
        std::fs::write(&file, "entry = \"bot.py\"\nstop_signal = \"KILL\"\n").unwrap();
        assert_eq!(load(&file).unwrap().stop_signal, Signal::KILL);
        std::fs::write(&file, "entry = \"bot.py\"\n").unwrap();
        assert_eq!(load(&file).unwrap().stop_signal, Signal::TERM);
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
        assert_eq!(config.stop_signal, Signal::TERM);
        assert_eq!(config.stop_timeout, Duration::from_secs(10));
        assert_eq!(config.stop_mode, StopMode::Leader);
        assert_eq!(config.start_timeout, Duration::from_secs(5));
        assert_eq!(
            config.pattern.as_ref().unwrap().interpreter.as_deref(),
            Some("python3")
        );
        assert_eq!(config.state_dir, entry.parent().unwrap());
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
            (2, Duration::from_secs(60), Duration::from_secs(300))
        );
        assert_eq!(limit.backoff, Duration::from_secs(5));
        assert_eq!(limit.backoff_max, Duration::from_secs(10));
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
    fn any_signal_the_platform_defines_stops_the_service_but_stop() {
        let (_dir, config) = load_text("entry = \"bot.py\"\nstop_signal = \"SIGWINCH\"\n");
        assert_eq!(config.unwrap().stop_signal.name(), "WINCH");
        for bad in ["WINCHES", "0", "999", "-9"] {
            let message = error(&format!("entry = \"bot.py\"\nstop_signal = \"{bad}\"\n"));
            assert!(
                message.starts_with(&format!("key `stop_signal`: \"{bad}\" is not a signal")),
                "{message}"
            );
        }
        let (_dir, config) = load_text("entry = \"bot.py\"\nstop_mode = \"group\"\n");
        assert_eq!(config.unwrap().stop_mode, StopMode::Group);
        let message = error("entry = \"bot.py\"\nstop_mode = \"main\"\n");
        assert_eq!(
            message,
            "key `stop_mode`: unknown value \"main\" (expected \"leader\" or \"group\")"
        );
        let message = error("entry = \"bot.py\"\nstop_signal = \"stop\"\n");
        assert!(
            message.starts_with("key `stop_signal`: \"stop\" only pauses the service"),
            "{message}"
        );
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
        assert_eq!(config.state_dir, root.join("state"));
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
    fn listen_fills_fd_placeholders_and_refuses_what_it_cannot_keep() {
        let (dir, config) = load_text(
            "entry = \"bot.py\"\nstartup = \"python3 {entry} --fd {fd:ctl}\"\n\
             listen = [\"tcp:127.0.0.1:8000\", \"ctl=unix:run/ctl.sock\"]\n",
        );
        let config = config.unwrap();
        assert_eq!(config.startup[2..], ["--fd", "4"]);
        // A tcp: check of a port keepup does not hold still tells.
        let (_, other) = load_text(
            "entry = \"bot.py\"\nlisten = [\"tcp:127.0.0.1:8000\"]\nready = \"tcp:127.0.0.1:9000\"\n",
        );
        assert!(other.is_ok(), "{other:?}");
        assert_eq!(
            config.listen[1].address,
            crate::listen::Address::Unix(dir.path().join("run/ctl.sock"))
        );
        for (text, says) in [
            ("startup = \"python3 bot.py {fd}\"\n", "there is none"),
            (
                "listen = [\"tcp:127.0.0.1:8000\"]\nready = \"tcp:127.0.0.1:8000\"\n",
                "key `ready`: \"tcp:127.0.0.1:8000\" passes at once",
            ),
            (
                "listen = [\"tcp:127.0.0.1:8000\"]\nhealth = \"tcp:localhost:8000\"\n",
                "key `health`: \"tcp:localhost:8000\" passes at once",
            ),
            (
                "listen = [\"tcp:127.0.0.1:8000\"]\nwatch = false\n",
                "remove watch = false",
            ),
            ("listen = [\"8000\"]\n", "key `listen`: \"8000\" is neither"),
        ] {
            let message = error(&format!("entry = \"bot.py\"\n{text}"));
            assert!(message.contains(says), "{text}: {message}");
        }
    }

    #[test]
    fn shipped_config_parses() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg.toml");
        let config = load(&shipped).unwrap();
        assert_eq!(config.name, "runserver.py");
    }
}
