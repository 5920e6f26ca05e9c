//! How keepup writes durations, counts, moments, sizes and paths in its messages: one way, shared
//! by every module that speaks to a person (so none of them needs `output`, which knows the
//! whole status).

use std::time::{Duration, SystemTime};

/// A duration as a person reads it: "350ms", "1.7s", "10s", "2m 5s", "1h".
#[must_use]
pub fn duration_text(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        return format!("{}ms", duration.as_millis());
    }
    if duration < Duration::from_secs(60) {
        let tenths = (duration.as_millis() + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// A path as one shell word, for a command a person pastes: quoted when it needs to be.
#[must_use]
pub fn shell_path(path: &std::path::Path) -> String {
    shell_word(&path.to_string_lossy())
}

/// `text` as one shell word, quoted when it needs to be.
#[must_use]
pub fn shell_word(text: &str) -> String {
    shell_words::quote(text).into_owned()
}

/// `count` and `noun`, plural when it is not one: "1 revival", "3 revivals", "2 processes".
#[must_use]
pub fn count_text(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else if noun.ends_with('s') {
        format!("{count} {noun}es")
    } else {
        format!("{count} {noun}s")
    }
}

/// A moment as keepup shows it: RFC 3339, UTC, to the second.
#[must_use]
pub fn time_text(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[allow(clippy::cast_precision_loss)]
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MiB", bytes as f64 / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_counts_read_as_a_person_writes_them() {
        let ms = Duration::from_millis;
        assert_eq!(duration_text(ms(350)), "350ms");
        assert_eq!(duration_text(ms(1_718)), "1.7s");
        assert_eq!(duration_text(ms(10_000)), "10s");
        assert_eq!(duration_text(ms(59_990)), "60s");
        assert_eq!(duration_text(ms(125_400)), "2m 5s");
        assert_eq!(count_text(1, "revival"), "1 revival");
        assert_eq!(count_text(0, "revival"), "0 revivals");
        assert_eq!(count_text(5, "process"), "5 processes");
    }
}
