//! The values a config holds besides paths: durations, sizes and the crash-loop guard's limits,
//! parsed with the key named in every complaint.

use std::time::Duration;

/// The crash-loop guard's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub burst: u32,
    pub interval: Duration,
    pub cooldown: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
}

/// `[restart_limit]` as written.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestartLimit {
    /// Revivals allowed within `interval` before the guard trips.
    pub burst: Option<u32>,
    pub interval: Option<String>,
    /// After a trip, how long until one more revival is tried.
    pub cooldown: Option<String>,
    /// The wait before a revival after a short run, doubled for each short run in a row.
    pub backoff: Option<String>,
    /// The longest such wait; a run at least this long was healthy.
    pub backoff_max: Option<String>,
}

/// At these, a crash after a healthy run is revived at once; a cause that blocks revivals
/// for 30 s is outlived (tries at 1, 3, 7, 15, 25, 35 s); a permanent crash loop costs 9
/// launches in its first minute, trips at the tenth (about 65 s), then costs one every 5 min.
/// The timer alone (`watch = false`) revives once a minute: it trips after 10 minutes.
pub(super) const DEFAULT_RESTART_LIMIT: RestartLimit = RestartLimit {
    burst: 10,
    interval: Duration::from_secs(900),
    cooldown: Duration::from_secs(300),
    backoff: Duration::from_secs(1),
    backoff_max: Duration::from_secs(10),
};

pub(super) fn restart_limit(
    problems: &mut Vec<String>,
    raw: &RawRestartLimit,
) -> Option<RestartLimit> {
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
        duration(&key("interval"), raw.interval.as_deref(), "15m"),
    );
    let interval = match interval {
        Some(d) if d.is_zero() => check(
            problems,
            Err::<Duration, _>("key `restart_limit.interval`: must be more than 0s".to_owned()),
        ),
        other => other,
    };
    let cooldown = check(
        problems,
        duration(&key("cooldown"), raw.cooldown.as_deref(), "5m"),
    );
    let backoff = check(
        problems,
        duration(&key("backoff"), raw.backoff.as_deref(), "1s"),
    );
    let backoff_max = check(
        problems,
        duration(&key("backoff_max"), raw.backoff_max.as_deref(), "10s"),
    );
    Some(RestartLimit {
        burst: burst?,
        interval: interval?,
        cooldown: cooldown?,
        backoff: backoff?,
        backoff_max: backoff_max?,
    })
}

/// To whom `stop` sends `stop_signal` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// The main process first, what is left of the service once it has exited: a master
    /// (celery's, gunicorn's) lets its workers finish what they are doing before they end.
    Leader,
    /// The whole process group at once.
    Group,
}

impl StopMode {
    /// The `stop_mode` key's value (`leader` when it is not set).
    pub(super) fn from_key(text: Option<&str>) -> Result<StopMode, String> {
        match text {
            None | Some("leader") => Ok(StopMode::Leader),
            Some("group") => Ok(StopMode::Group),
            Some(other) => Err(format!(
                "key `stop_mode`: unknown value \"{other}\" (expected \"leader\" or \"group\")"
            )),
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StopMode::Leader => "leader",
            StopMode::Group => "group",
        }
    }
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
pub(super) fn check<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|p| problems.push(p)).ok()
}

pub(super) fn duration(key: &str, text: Option<&str>, default: &str) -> Result<Duration, String> {
    let text = text.unwrap_or(default);
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "key `{key}`: \"{text}\" is not a duration ({e}; write e.g. \"500ms\", \"10s\", \"2m\")"
        )
    })
}
