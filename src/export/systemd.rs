//! The config as a systemd service unit, quoted by systemd.syntax(7) rules.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::time::Duration;

use super::{argv, duration_text};
use crate::config::{Config, StopMode};
use crate::error::{Error, Result};
use crate::ready::Ready;

/// Whose manager runs the unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `systemctl --user`: runs as the user, while they are logged in (or lingering).
    User,
    /// The system manager: needs root to install; runs as the config's owner.
    System,
}

/// How many doublings take `from` to `to` (systemd's `RestartSteps`).
fn doublings(from: Duration, to: Duration) -> u32 {
    let mut steps = 0;
    let mut wait = from;
    while !wait.is_zero() && wait < to && steps < 64 {
        wait = wait.saturating_mul(2);
        steps += 1;
    }
    steps
}

/// The longest unit name before `.service` (systemd's `UNIT_NAME_MAX` is 256 with it).
const NAME_MAX: usize = 256 - ".service".len();

/// The unit's name (without `.service`) for `name`: escaped as systemd-escape(1) escapes a
/// string, so any name becomes a valid one that says what was meant (`srv ü` →
/// `srv\x20\xc3\xbc`): a byte outside `[A-Za-z0-9:_.]` (or a leading `.`) becomes `\xNN`, `/`
/// becomes `-`; but a `-` stays a `-` (systemd-escape writes `\x2d`), since in a name it was
/// meant as a dash.
pub fn unit_name(name: &str) -> Result<String> {
    let name = name.strip_suffix(".service").unwrap_or(name);
    let mut out = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        match byte {
            b'/' | b'-' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b":_.".contains(&b) => out.push(char::from(b)),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if out.is_empty() || out.len() > NAME_MAX {
        return Err(Error::Failed(format!(
            "--name {name:?}: a unit name is 1 to {NAME_MAX} bytes once escaped for systemd \
             (this one: {})",
            out.len()
        )));
    }
    Ok(out)
}

/// The unit file's text, for a service launched with `path_env` as its PATH.
pub fn unit(config: &Config, scope: Scope, path_env: &OsStr) -> Result<String> {
    let words = argv(config, path_env)?;
    let limit = &config.restart_limit;
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(&format!(
        "# Made by `keepup export systemd` from {}.",
        config.file.display()
    ));
    line("[Unit]");
    line(&format!(
        "Description={}",
        specifiers(&format!(
            "{} (kept by keepup's {})",
            config.name,
            config.file.display()
        ))
    ));
    line("# keepup's crash-loop guard: at most `burst` revivals within `interval`.");
    line(&format!("StartLimitBurst={}", limit.burst));
    line(&format!(
        "StartLimitIntervalSec={}",
        duration_text(limit.interval)
    ));
    line(&format!(
        "# keepup tries once more after a cooldown of {}; systemd stays failed until \
         `systemctl reset-failed` (or a timer that runs it).",
        duration_text(limit.cooldown)
    ));
    line("");
    line("[Service]");
    line(if config.ready == Some(Ready::Notify) {
        "Type=notify"
    } else {
        "Type=simple"
    });
    line(&format!(
        "WorkingDirectory={}",
        specifiers(&config.dir().to_string_lossy())
    ));
    line(&exec_start(config, &words, path_env)?);
    for text in environment(config, path_env)? {
        line(&text);
    }
    line("# keepup revives the service whatever its exit code.");
    line("Restart=always");
    line(&format!(
        "RestartSec={}",
        duration_text(limit.backoff.max(Duration::from_secs(1)))
    ));
    line(&format!(
        "# keepup waits backoff ({}) doubled for each short run in a row, up to backoff_max \
         ({}); on systemd >= 254 the nearest is RestartSteps={} and RestartMaxDelaySec={}",
        duration_text(limit.backoff),
        duration_text(limit.backoff_max),
        doublings(limit.backoff, limit.backoff_max),
        duration_text(limit.backoff_max)
    ));
    for text in stopping(config) {
        line(text.as_str());
    }
    let log = specifiers(&config.log.to_string_lossy());
    line(&format!("StandardOutput=append:{log}"));
    line(&format!("StandardError=append:{log}"));
    line(&format!(
        "# keepup rotates this log past {} bytes, keeping {}; systemd does not: use \
         logrotate (copytruncate), or StandardOutput=journal.",
        config.log_max_size, config.log_keep
    ));
    for text in keeping_healthy(config) {
        line(&text);
    }
    if let Some(ready) = config.ready.as_ref().filter(|r| **r != Ready::Notify) {
        line(&format!(
            "# keepup's start waited for ready = \"{}\"; systemd's nearest: Type=notify if the \
             service calls sd_notify(READY=1), or an ExecStartPost= that polls the same check.",
            ready.to_string().replace('\n', " ")
        ));
    }
    if !config.listen.is_empty() {
        line(
            "# keepup's listen: the sockets come from the socket unit of the same name (keepup \
             export systemd --socket), at fds 3… with LISTEN_FDS and LISTEN_PID, as keepup hands \
             them over; enable the socket unit.",
        );
    }
    if scope == Scope::System {
        let (user, group) = owner(config)?;
        line(&format!("User={user}"));
        line(&format!("Group={group}"));
    }
    line("");
    line("[Install]");
    line(match scope {
        Scope::User => "WantedBy=default.target",
        Scope::System => "WantedBy=multi-user.target",
    });
    Ok(out)
}

/// `watchdog`, `max_memory` and `health` as systemd has them, and what it has not.
fn keeping_healthy(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(watchdog) = config.watchdog {
        lines.push(
            "# keepup's watchdog: SIGABRT to a service silent this long, then its stop, then a \
             revival; systemd's sends WatchdogSignal= (SIGABRT) and restarts (Restart=always)."
                .to_owned(),
        );
        lines.push(format!("WatchdogSec={}", duration_text(watchdog)));
    }
    if let Some(memory) = config.memory {
        lines.push(format!(
            "# keepup restarts the service gracefully (KillSignal= first) once its processes' \
             PSS is above max_memory at two checks in a row, every {}; systemd has no graceful \
             memory restart: MemoryMax= is the cgroup's hard limit, where the kernel's OOM \
             killer ends a process at once (for a --user unit, only where the memory \
             controller is delegated).",
            duration_text(memory.interval)
        ));
        lines.push(format!("MemoryMax={}", memory.max));
    }
    if let Some(health) = &config.health {
        lines.push(format!(
            "# keepup probed health = \"{}\" every {} and ended and revived the service after {} \
             failures in a row; systemd has no health probe: the nearest is a timer unit whose \
             service runs the check and `systemctl restart`s this one when it fails.",
            health.check.to_string().replace('\n', " "),
            duration_text(health.interval),
            health.failures
        ));
    }
    lines
}

/// The socket unit for `listen`: systemd holds the sockets as keepup's watcher does, with the
/// same backlog (`SOMAXCONN`) and no `SO_REUSEPORT`.
pub fn socket_unit(config: &Config) -> Result<String> {
    if config.listen.is_empty() {
        return Err(Error::Failed(format!(
            "{} has no `listen`: there are no sockets for a socket unit",
            config.file.display()
        )));
    }
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(&format!(
        "# Made by `keepup export systemd --socket` from {}.",
        config.file.display()
    ));
    line("[Unit]");
    line(&format!(
        "Description={}",
        specifiers(&format!(
            "{}'s sockets (kept by keepup's listen)",
            config.name
        ))
    ));
    line("");
    line("[Socket]");
    for listen in &config.listen {
        let address = match &listen.address {
            crate::listen::Address::Tcp(addr) => addr.to_string(),
            crate::listen::Address::Unix(path) => path.to_string_lossy().into_owned(),
        };
        line(&format!("ListenStream={}", specifiers(&address)));
    }
    // systemd names every socket of a unit alike: one name only says one socket's.
    match config.listen.as_slice() {
        [one] => line(&format!("FileDescriptorName={}", one.name)),
        _ => line(&format!(
            "# keepup names them {} in LISTEN_FDNAMES; systemd gives every socket of one unit \
             the same FileDescriptorName=, so a server that asks by name needs a unit each.",
            crate::listen::names(&config.listen)
        )),
    }
    line("");
    line("[Install]");
    line("WantedBy=sockets.target");
    Ok(out)
}

/// How systemd is to stop it, as keepup's `stop` does.
fn stopping(config: &Config) -> Vec<String> {
    let mut lines = vec![
        format!("KillSignal={}", config.stop_signal),
        format!("TimeoutStopSec={}", duration_text(config.stop_timeout)),
    ];
    lines.extend(
        match config.stop_mode {
            StopMode::Leader => [
                "# keepup's stop sends the signal to the main process first, and to the rest once \
                 it has exited; systemd's nearest sends SIGKILL to the rest at TimeoutStopSec=.",
                "KillMode=mixed",
            ],
            StopMode::Group => [
                "# The whole service, workers included, as keepup's stop ends its process group.",
                "KillMode=control-group",
            ],
        }
        .map(str::to_owned),
    );
    lines
}

/// The environment lines: the PATH keepup would launch with, `EnvironmentFile=` for
/// `env_file`, `Environment=` for `env`, and what differs from keepup's rule.
fn environment(config: &Config, path_env: &OsStr) -> Result<Vec<String>> {
    let mut lines = vec![
        "# keepup starts every launch from the environment of the last manual start; systemd \
         from a clean one: a variable the service needs goes in Environment= or the env_file."
            .to_owned(),
    ];
    if !config.env.contains_key("PATH") {
        lines.push(
            "# The PATH keepup would launch it with (the last manual start's, or the exporting \
             shell's), so a #!/usr/bin/env program finds the same interpreter."
                .to_owned(),
        );
        lines.push(format!(
            "Environment={}",
            quoted(&specifiers(&format!("PATH={}", path_env.to_string_lossy())))?
        ));
    }
    if let Some(file) = &config.env_file {
        lines.push(
            "# systemd lets EnvironmentFile= win over Environment=; keepup lets env win over \
             env_file."
                .to_owned(),
        );
        lines.push(format!(
            "EnvironmentFile={}",
            quoted(&specifiers(&file.to_string_lossy()))?
        ));
    }
    for (name, value) in &config.env {
        lines.push(format!(
            "Environment={}",
            quoted(&specifiers(&format!("{name}={value}")))?
        ));
    }
    Ok(lines)
}

/// The `ExecStart=` line (after a comment, when env must run the program).
fn exec_start(config: &Config, words: &[String], path_env: &OsStr) -> Result<String> {
    let mut out = String::new();
    let mut exec: Vec<String> = Vec::with_capacity(words.len() + 1);
    if !executable_is_plain(&words[0]) {
        out.push_str(
            "# systemd takes no quote, backslash or `$` in the program's own path: env runs it, \
             with the same words.\n",
        );
        let env = super::absolute_program("env", config.dir(), path_env)?;
        exec.push(exec_word(&env.to_string_lossy())?);
    }
    for word in words {
        exec.push(exec_word(word)?);
    }
    let _ = write!(out, "ExecStart={}", exec.join(" "));
    Ok(out)
}

/// The config file's owner and their primary group, by name: whom keepup acts as.
fn owner(config: &Config) -> Result<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(&config.file).map_err(Error::io("reading the owner of", &config.file))?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .ok_or_else(|| {
            Error::Failed(format!(
                "{} is owned by uid {}, which has no name: User= needs one",
                config.file.display(),
                meta.uid()
            ))
        })?;
    let group = nix::unistd::Group::from_gid(user.gid)
        .ok()
        .flatten()
        .map_or_else(|| user.gid.to_string(), |g| g.name);
    Ok((user.name, group))
}

/// Whether systemd takes `path` as the program to run: it refuses quotes, backslashes and
/// control characters there, and expands no `$` in it (though it would in argv[0]).
fn executable_is_plain(path: &str) -> bool {
    !path.chars().any(|c| "\"'\\$".contains(c) || c.is_control())
}

/// `%` doubled: systemd expands specifiers (`%h`, `%n`) in almost every setting.
fn specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// One `ExecStart=` word: specifiers and `$` variables escaped, then quoted.
fn exec_word(word: &str) -> Result<String> {
    quoted(&specifiers(word).replace('$', "$$"))
}

/// `text` in double quotes, with the C escapes systemd undoes when it unquotes a word.
fn quoted(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => {
                return Err(Error::Failed(
                    "a NUL byte cannot be passed to a program".to_owned(),
                ));
            }
            c if c.is_control() && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_escaped_as_systemd_escape_does_but_a_dash_stays() {
        for (name, unit) in [
            ("runserver", "runserver"),
            ("srv ü", "srv\\x20\\xc3\\xbc"),
            ("wéb.service", "w\\xc3\\xa9b"),
            (".hidden.v2", "\\x2ehidden.v2"),
            ("a/b", "a-b"),
            ("my-bot", "my-bot"),
            ("x@y:z_1", "x\\x40y:z_1"),
        ] {
            assert_eq!(unit_name(name).unwrap(), unit, "{name:?}");
        }
        assert!(unit_name("").is_err());
        assert!(unit_name(".service").is_err());
        assert!(unit_name(&"ü".repeat(NAME_MAX / 4)).is_err());
        assert!(unit_name(&"u".repeat(NAME_MAX)).is_ok());
    }

    #[test]
    fn words_are_quoted_for_systemd() {
        assert_eq!(exec_word("plain").unwrap(), "\"plain\"");
        assert_eq!(exec_word("100%").unwrap(), "\"100%%\"");
        assert_eq!(exec_word("$HOME").unwrap(), "\"$$HOME\"");
        assert_eq!(exec_word(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert_eq!(exec_word("two\nlines").unwrap(), "\"two\\nlines\"");
        assert_eq!(exec_word("bell\x07").unwrap(), "\"bell\\x07\"");
        assert_eq!(exec_word("naïve ☃").unwrap(), "\"naïve ☃\"");
        assert!(exec_word("nul\0").is_err());
    }
}
