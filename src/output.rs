//! What `status` shows, as text for people and as one JSON object for scripts. The facts are
//! gathered once into [`Status`], so both forms always say the same.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::events::Event;
use crate::exit_code;
use crate::text::{count_text, format_bytes, time_text};

/// The service's state, as LSB init scripts name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    /// The pid lock exists but nothing runs: the timer will revive it.
    Dead,
    /// No pid lock and nothing runs.
    Stopped,
}

impl State {
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            State::Running => exit_code::status::RUNNING,
            State::Dead => exit_code::status::DEAD,
            State::Stopped => exit_code::status::STOPPED,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Dead => "dead",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub name: String,
    pub state: State,
    pub pid: Option<i32>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub uptime_seconds: Option<u64>,
    /// `stopped (SIGSTOP)` (or `stopped (traced)`) when the running service is stopped: it
    /// does nothing until SIGCONT; else `null`.
    pub suspended: Option<&'static str>,
    /// The whole service's RSS: the sum over its processes (see `processes`) of their
    /// resident memory, shared pages counted in each.
    pub memory_bytes: Option<u64>,
    /// The whole service's PSS: the sum of their proportional set sizes (shared pages split
    /// among their sharers), what it really costs; `None` where it cannot be told (macOS).
    pub memory_pss_bytes: Option<u64>,
    /// The RSS of its main process alone.
    pub leader_memory_bytes: Option<u64>,
    /// Its live processes: every descendant of its main process, whatever their session or
    /// group, and what the watcher was left with (with their descendants).
    pub processes: Option<usize>,
    /// Whether the pid lock exists (the service is to be kept up).
    pub kept_up: bool,
    pub pid_lock: PathBuf,
    /// What was wrong with the pid lock, if anything.
    pub pid_lock_problem: Option<String>,
    /// What is left of a dead instance's process group: the next revival, `stop` or `kill`
    /// ends them.
    pub leftovers: Vec<i32>,
    /// What a person should know: the entry is missing or resolves elsewhere now, the config
    /// changed since the instance started, another config keeps it.
    pub warnings: Vec<String>,
    pub log: PathBuf,
    pub config: PathBuf,
    /// Which environment a launch gives the service (counts and sources, never values).
    pub environment: EnvSummary,
    /// Whether this config's timer line is in the crontab; `None` when it cannot be read.
    pub timer_installed: Option<bool>,
    /// Why the crontab could not be read.
    pub timer_problem: Option<String>,
    /// Whether the config asks for a watcher (`watch`).
    pub watch: bool,
    /// The running watcher, if one runs.
    pub watcher: Option<Watcher>,
    /// A reload under way: two generations at once.
    pub reloading: Option<Reloading>,
    pub guard: Guard,
    pub revivals_24h: usize,
    /// The running instance's health, as the watcher (and a notify launch) last recorded it:
    /// the last probe, what the service said (`STATUS=`, `MAINPID=`, `STOPPING=1`), its last
    /// `WATCHDOG=1`; `null` when nothing is recorded for it.
    pub health: Option<crate::health::HealthRecord>,
    /// The `watchdog` in force, in seconds (`null` without one).
    pub watchdog_seconds: Option<f64>,
    /// The newest few events, oldest first.
    pub recent_events: Vec<Event>,
}

/// Which environment a launch gives the service: where its variables come from, and how many;
/// never their values (they may be secrets).
#[derive(Debug, Default, Serialize)]
pub struct EnvSummary {
    /// Variables recorded at the last manual start; `None` when nothing is recorded (a launch
    /// then starts from the launching keepup's own environment).
    pub recorded: Option<usize>,
    /// When they were recorded, RFC 3339, UTC.
    pub recorded_at: Option<String>,
    /// The config's `env_file`, its variables, or why it cannot be read.
    pub env_file: Option<PathBuf>,
    pub env_file_variables: Option<usize>,
    pub env_file_problem: Option<String>,
    /// Variables of the config's `env` table.
    pub env: usize,
}

impl EnvSummary {
    fn render(&self) -> String {
        let mut text = match (self.recorded, &self.recorded_at) {
            (Some(n), Some(at)) => format!(
                "{} recorded at the last start ({at})",
                count_text(n, "variable")
            ),
            (Some(n), None) => format!("{} recorded at the last start", count_text(n, "variable")),
            (None, _) => "the launching keepup's own (start records one)".to_owned(),
        };
        if let Some(file) = &self.env_file {
            match (self.env_file_variables, &self.env_file_problem) {
                (Some(n), _) => {
                    let _ = write!(
                        text,
                        ", {} from env_file {}",
                        count_text(n, "variable"),
                        file.display()
                    );
                }
                (None, Some(problem)) => {
                    let _ = write!(text, ", env_file: {problem}");
                }
                (None, None) => {}
            }
        }
        if self.env > 0 {
            let _ = write!(text, ", {} from env", count_text(self.env, "variable"));
        }
        text
    }
}

/// The watcher, as `status` tells it.
#[derive(Debug, Serialize)]
pub struct Watcher {
    pub pid: i32,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// `pidfd` (woken the moment the service exits) or `polling` (looks every 100 ms).
    pub waits: crate::process::exit::Waits,
    /// `stopped (SIGSTOP)` when it is stopped: it revives nothing until SIGCONT; else `null`.
    pub suspended: Option<&'static str>,
}

/// A reload under way, as `status` tells it: the new generation is `pid`.
#[derive(Debug, Serialize)]
pub struct Reloading {
    /// `starting` (the old generation serves until the new one is ready) or `stopping` (the
    /// old one got `stop_signal` and finishes its requests).
    pub phase: crate::reloading::Phase,
    pub old_pid: Option<i32>,
}

impl Reloading {
    fn text(&self) -> String {
        let old = self.old_pid.map_or_else(
            || "the old generation".to_owned(),
            |p| format!("the old generation ({p})"),
        );
        if self.phase == crate::reloading::Phase::Starting {
            format!("the new generation is starting; {old} serves until it is ready")
        } else {
            format!("{old} got its stop signal and finishes its requests")
        }
    }
}

/// The crash-loop guard, as `status` tells it.
#[derive(Debug, Serialize)]
pub struct Guard {
    /// `ok`, `backoff` (next revival waits), `tripped` (no revival until `until`) or `armed`
    /// (running, and a crash now would trip it).
    pub state: &'static str,
    /// RFC 3339, UTC.
    pub until: Option<String>,
    /// With `armed`: the revivals counted within `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revivals: Option<usize>,
    #[serde(skip)]
    pub interval: String,
}

impl Guard {
    fn text(&self) -> String {
        match (self.state, &self.until) {
            ("tripped", Some(until)) => {
                format!("tripped: no revival before {until} (start clears it)")
            }
            ("backoff", Some(until)) => format!("backing off: next revival at {until}"),
            ("armed", _) => format!(
                "armed: a crash now would trip it ({} within {})",
                count_text(self.revivals.unwrap_or_default(), "revival"),
                self.interval
            ),
            _ => "ok".to_owned(),
        }
    }
}

impl Status {
    #[must_use]
    pub fn new_started(started: Option<SystemTime>) -> (Option<String>, Option<u64>) {
        let Some(started) = started else {
            return (None, None);
        };
        let uptime = SystemTime::now()
            .duration_since(started)
            .unwrap_or(Duration::ZERO);
        (Some(time_text(started)), Some(uptime.as_secs()))
    }

    /// The watcher's line: who it is and how it waits, or that it cannot act (stopped), or why
    /// none runs.
    fn watcher_text(&self) -> Option<String> {
        match (&self.watcher, self.watch, self.kept_up) {
            (Some(w), _, _) if w.suspended.is_some() => Some(format!(
                "pid {}, since {}, {}: it revives nothing until SIGCONT (kill -CONT {})",
                w.pid,
                w.started_at,
                w.suspended.unwrap_or_default(),
                w.pid
            )),
            (Some(w), _, _) => Some(format!(
                "pid {}, since {}{}",
                w.pid,
                w.started_at,
                match w.waits {
                    crate::process::exit::Waits::Pidfd => "",
                    crate::process::exit::Waits::Polling => " (looks every 100 ms: no pidfd here)",
                }
            )),
            (None, true, true) if self.timer_installed == Some(true) => {
                Some("not running — the timer restarts it".to_owned())
            }
            (None, true, true) => Some(
                "not running, and no timer line to start one: `keepup start` starts one".to_owned(),
            ),
            (None, false, _) => Some("off (watch = false): the timer alone revives".to_owned()),
            (None, true, false) => None,
        }
    }

    /// The text form: a headline, then one fact a line.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = format!("{}: {}", self.name, self.state.name());
        if let (Some(stopped), Some(pid)) = (self.suspended, self.pid) {
            let _ = write!(
                out,
                ", but {stopped}: it does nothing until SIGCONT (kill -CONT {pid})"
            );
        }
        out.push('\n');
        let mut line = |label: &str, value: &str| {
            let _ = writeln!(out, "  {label:<9} {value}");
        };
        if let Some(pid) = self.pid {
            let mut value = pid.to_string();
            if let (Some(up), Some(since)) = (self.uptime_seconds, &self.started_at) {
                let up = humantime::format_duration(Duration::from_secs(up));
                let _ = write!(value, ", up {up} (since {since})");
            }
            line("pid:", &value);
        }
        if let Some(rss) = self.memory_bytes {
            let mut value = match self.memory_pss_bytes {
                Some(pss) => format!("{} PSS, {} RSS", format_bytes(pss), format_bytes(rss)),
                None => format!("{} RSS", format_bytes(rss)),
            };
            if let (Some(n), Some(leader)) = (self.processes, self.leader_memory_bytes)
                && n > 1
            {
                let _ = write!(
                    value,
                    " in {} (leader {} RSS)",
                    count_text(n, "process"),
                    format_bytes(leader)
                );
            }
            line("memory:", &value);
        }
        let lock = if self.kept_up {
            self.pid_lock.display().to_string()
        } else {
            format!("{} (absent: not kept up)", self.pid_lock.display())
        };
        line("pid lock:", &lock);
        if let Some(problem) = &self.pid_lock_problem {
            line("problem:", problem);
        }
        if !self.leftovers.is_empty() {
            let pids: Vec<String> = self.leftovers.iter().map(ToString::to_string).collect();
            line(
                "leftovers:",
                &format!(
                    "{} (the dead instance's workers: the next revival, stop or kill ends them)",
                    pids.join(", ")
                ),
            );
        }
        for warning in &self.warnings {
            line("note:", warning);
        }
        line("log:", &self.log.display().to_string());
        line("config:", &self.config.display().to_string());
        line("environment:", &self.environment.render());
        let timer = match (self.timer_installed, &self.timer_problem) {
            (Some(true), _) => "installed: restart runs every minute".to_owned(),
            (Some(false), _) => "not installed (install-timer adds it)".to_owned(),
            (None, Some(problem)) => format!("unknown: {problem}"),
            (None, None) => "unknown".to_owned(),
        };
        line("timer:", &timer);
        let watcher = self.watcher_text();
        if let Some(watcher) = watcher {
            line("watcher:", &watcher);
        }
        if let Some(reloading) = &self.reloading {
            line("reloading:", &reloading.text());
        }
        line(
            "guard:",
            &format!(
                "{}; {} in the last 24 h",
                self.guard.text(),
                count_text(self.revivals_24h, "revival")
            ),
        );
        for (label, value) in self.health_lines() {
            line(label, &value);
        }
        if !self.recent_events.is_empty() {
            out.push_str("  events:\n");
            for event in &self.recent_events {
                let _ = writeln!(out, "    {}", event.render());
            }
        }
        out
    }
}

impl Status {
    /// The health lines: the last probe, what the service says, its watchdog.
    fn health_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        let record = self.health.as_ref();
        if let Some(probe) = record.and_then(|r| r.probe.as_ref()) {
            lines.push(("health:", probe.text()));
        }
        if let Some(said) = record.and_then(|r| r.status.as_ref()) {
            lines.push(("says:", said.clone()));
        }
        if let Some(main) = record.and_then(|r| r.main_pid) {
            lines.push(("main pid:", format!("{main} (MAINPID=)")));
        }
        if record.is_some_and(|r| r.stopping) {
            lines.push(("stopping:", "it said STOPPING=1".to_owned()));
        }
        if let Some(seconds) = self.watchdog_seconds {
            let limit = humantime::format_duration(Duration::from_secs_f64(seconds));
            let value = match record.and_then(|r| r.watchdog_at.as_ref()) {
                Some(at) => format!(
                    "{}: last WATCHDOG=1 at {at} (ends it after {limit} without)",
                    self.watchdog_state()
                ),
                None => format!("no WATCHDOG=1 yet (ends it after {limit} without)"),
            };
            lines.push(("watchdog:", value));
        }
        lines
    }

    /// The watchdog's state: `ok` while the last `WATCHDOG=1` is recent enough, `late` once
    /// it is older than the watchdog (the watcher is ending it), `waiting` before the first.
    fn watchdog_state(&self) -> &'static str {
        let Some(seconds) = self.watchdog_seconds else {
            return "-";
        };
        let last = self
            .health
            .as_ref()
            .and_then(|r| r.watchdog_at.as_deref())
            .and_then(|at| humantime::parse_rfc3339_weak(at).ok());
        match last.map(|at| SystemTime::now().duration_since(at).unwrap_or_default()) {
            None => "waiting",
            Some(age) if age.as_secs_f64() > seconds => "late",
            Some(_) => "ok",
        }
    }

    /// One word for `list`'s HEALTH column: the last probe's result, else the watchdog's
    /// state, else `-`.
    #[must_use]
    pub fn health_word(&self) -> String {
        if self.pid.is_none() {
            return "-".to_owned();
        }
        match self.health.as_ref().and_then(|r| r.probe.as_ref()) {
            Some(probe) if probe.ok => "ok".to_owned(),
            Some(probe) => format!("failing ({})", probe.failures),
            None if self.watchdog_seconds.is_some() => {
                format!("watchdog {}", self.watchdog_state())
            }
            None => "-".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: State, pid: Option<i32>) -> Status {
        Status {
            name: "bot.py".into(),
            state,
            pid,
            started_at: pid.map(|_| "2026-11-24T09:00:00Z".into()),
            uptime_seconds: pid.map(|_| 65),
            suspended: None,
            memory_bytes: pid.map(|_| 3 * 1024 * 1024),
            memory_pss_bytes: pid.map(|_| 2 * 1024 * 1024),
            leader_memory_bytes: pid.map(|_| 3 * 1024 * 1024),
            processes: pid.map(|_| 1),
            kept_up: pid.is_some(),
            pid_lock: "/srv/bot.py.pid".into(),
            pid_lock_problem: None,
            leftovers: Vec::new(),
            warnings: Vec::new(),
            log: "/srv/bot.py.log".into(),
            environment: EnvSummary::default(),
            config: "/srv/cfg.toml".into(),
            timer_installed: pid.map(|_| true),
            timer_problem: None,
            watch: true,
            watcher: pid.map(|_| Watcher {
                pid: 43,
                started_at: "2026-11-24T09:00:01Z".into(),
                waits: crate::process::exit::Waits::Pidfd,
                suspended: None,
            }),
            reloading: None,
            guard: Guard {
                state: "ok",
                until: None,
                revivals: None,
                interval: "5m".into(),
            },
            revivals_24h: 2,
            health: None,
            watchdog_seconds: None,
            recent_events: Vec::new(),
        }
    }

    #[test]
    fn health_shows_the_last_probe_and_the_watchdog() {
        let mut running = status(State::Running, Some(42));
        assert_eq!(running.health_word(), "-");
        let mut record = crate::health::HealthRecord::new(crate::pid::Pid::new(42).unwrap());
        let mut tally = crate::health::Tally::default();
        tally.count(Err("GET /: no answer within 1s".into()), 3);
        record.probed(&tally);
        record.status = Some("serving".into());
        running.health = Some(record.clone());
        assert_eq!(running.health_word(), "failing (1)");
        let text = running.render();
        assert!(
            text.contains("health:   failing (1 in a row) at "),
            "{text}"
        );
        assert!(text.contains(": GET /: no answer within 1s\n"), "{text}");
        assert!(text.contains("says:     serving\n"), "{text}");
        // A watchdog, no probe: its state.
        record.probe = None;
        running.watchdog_seconds = Some(30.0);
        running.health = Some(record.clone());
        assert_eq!(running.health_word(), "watchdog waiting");
        record.watchdog_at = Some(time_text(SystemTime::now()));
        running.health = Some(record.clone());
        assert_eq!(running.health_word(), "watchdog ok");
        record.watchdog_at = Some(time_text(SystemTime::now() - Duration::from_secs(60)));
        running.health = Some(record);
        assert_eq!(running.health_word(), "watchdog late");
        assert!(
            running
                .render()
                .contains("watchdog: late: last WATCHDOG=1 at ")
        );
    }

    #[test]
    fn renders_running() {
        let text = status(State::Running, Some(42)).render();
        assert!(text.starts_with("bot.py: running\n"), "{text}");
        assert!(
            text.contains("pid:      42, up 1m 5s (since 2026-11-24T09:00:00Z)"),
            "{text}"
        );
        assert!(
            text.contains("memory:   2.0 MiB PSS, 3.0 MiB RSS\n"),
            "{text}"
        );
        assert!(text.contains("timer:    installed"), "{text}");
        assert!(
            text.contains("watcher:  pid 43, since 2026-11-24T09:00:01Z\n"),
            "{text}"
        );
        assert!(
            text.contains("guard:    ok; 2 revivals in the last 24 h"),
            "{text}"
        );
    }

    #[test]
    fn a_stopped_service_or_watcher_is_not_healthy() {
        let mut stopped = status(State::Running, Some(42));
        stopped.suspended = Some("stopped (SIGSTOP)");
        stopped.watcher.as_mut().unwrap().suspended = Some("stopped (SIGSTOP)");
        let text = stopped.render();
        assert!(
            text.starts_with("bot.py: running, but stopped (SIGSTOP): it does nothing until SIGCONT (kill -CONT 42)\n"),
            "{text}"
        );
        assert!(
            text.contains("watcher:  pid 43, since 2026-11-24T09:00:01Z, stopped (SIGSTOP): it revives nothing until SIGCONT (kill -CONT 43)\n"),
            "{text}"
        );
        let json = serde_json::to_value(&stopped).unwrap();
        assert_eq!(json["suspended"], "stopped (SIGSTOP)");
        assert_eq!(json["watcher"]["suspended"], "stopped (SIGSTOP)");
    }

    #[test]
    fn renders_stopped_without_pid() {
        let text = status(State::Stopped, None).render();
        assert!(text.starts_with("bot.py: stopped\n"));
        assert!(!text.contains("pid:  "));
        assert!(text.contains("absent: not kept up"));
    }

    #[test]
    fn json_has_the_same_facts() {
        let json = serde_json::to_value(status(State::Dead, None)).unwrap();
        assert_eq!(json["state"], "dead");
        assert_eq!(json["pid"], serde_json::Value::Null);
        assert_eq!(json["pid_lock"], "/srv/bot.py.pid");
    }
}
