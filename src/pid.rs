//! The pid type keepup signals, and the parser for the pid lock's content.
//!
//! A pid read from a file is the most dangerous value keepup handles: `kill(0)` signals our
//! own process group, `kill(-1)` every process we may signal, and pid 1 is init. [`Pid`]
//! cannot hold any of them, so no code path can pass one to the OS, whatever a file says.

use std::fmt;
use std::num::NonZeroI32;

use serde::{Deserialize, Serialize};

/// A process id that is safe to signal: always in `2..=i32::MAX`, also when read from a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i32")]
pub struct Pid(NonZeroI32);

impl TryFrom<i64> for Pid {
    type Error = String;

    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Pid::new(raw).ok_or_else(|| format!("{raw} is not a pid keepup may signal"))
    }
}

impl From<Pid> for i32 {
    fn from(pid: Pid) -> i32 {
        pid.get()
    }
}

impl Pid {
    /// The pid, or `None` for 0, 1, negative numbers and anything past `pid_t`.
    #[must_use]
    pub fn new(raw: i64) -> Option<Pid> {
        let value = i32::try_from(raw).ok().filter(|v| *v > 1)?;
        NonZeroI32::new(value).map(Pid)
    }

    #[must_use]
    pub fn get(self) -> i32 {
        self.0.get()
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a pid lock's content is not a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPid {
    /// The content as read, escaped and shortened for a message.
    pub content: String,
    pub why: &'static str,
}

impl fmt::Display for BadPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "holds \"{}\": {}", self.content, self.why)
    }
}

/// Parses the content of a pid lock: decimal digits, optionally one trailing newline.
///
/// Strict on purpose: anything else (signs, spaces, two numbers, leading zeros) means the file
/// was not written by keepup and is reported as stale rather than guessed at.
pub fn parse_pid_file(content: &[u8]) -> Result<Pid, BadPid> {
    let bad = |why| BadPid {
        content: shown(content),
        why,
    };
    let digits = content.strip_suffix(b"\n").unwrap_or(content);
    if digits.is_empty() {
        return Err(bad("empty"));
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad(if digits.first() == Some(&b'-') {
            "a negative number is not a pid"
        } else {
            "not a single decimal pid"
        }));
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return Err(bad("leading zeros"));
    }
    // Ten digits or fewer fit in u64 without overflow; longer is out of range anyway.
    let value = if digits.len() > 10 {
        None
    } else {
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    };
    match value {
        Some(0 | 1) => Err(bad("pids 0 and 1 are never a service")),
        Some(v) => Pid::new(v).ok_or_else(|| bad("too large for a pid")),
        None => Err(bad("too large for a pid")),
    }
}

fn shown(content: &[u8]) -> String {
    const MAX: usize = 24;
    let text: String = String::from_utf8_lossy(&content[..content.len().min(MAX)])
        .escape_debug()
        .collect();
    if content.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(content: &[u8]) -> &'static str {
        parse_pid_file(content).unwrap_err().why
    }

    #[test]
    fn accepts_a_pid_with_or_without_newline() {
        assert_eq!(parse_pid_file(b"1234\n").unwrap().get(), 1234);
        assert_eq!(parse_pid_file(b"2").unwrap().get(), 2);
        assert_eq!(parse_pid_file(b"2147483647\n").unwrap().get(), i32::MAX);
    }

    #[test]
    fn refuses_every_bad_content() {
        for content in [
            &b""[..],
            b"\n",
            b"0\n",
            b"1\n",
            b"-1\n",
            b"-0",
            b"abc\n",
            b"12a\n",
            b"2147483648\n",
            b"99999999999999999999999\n",
            b"12 34\n",
            b"12\n34\n",
            b" 12\n",
            b"12 \n",
            b"+12\n",
            b"012\n",
            b"12\n\n",
            b"12\r\n",
            b"\xff\xfe",
        ] {
            assert!(parse_pid_file(content).is_err(), "{content:?} was accepted");
        }
    }

    #[test]
    fn names_the_reason() {
        assert_eq!(reason(b""), "empty");
        assert_eq!(reason(b"-1\n"), "a negative number is not a pid");
        assert_eq!(reason(b"1\n"), "pids 0 and 1 are never a service");
        assert_eq!(reason(b"0"), "pids 0 and 1 are never a service");
        assert_eq!(reason(b"4294967297"), "too large for a pid");
        assert_eq!(reason(b"12 34"), "not a single decimal pid");
    }

    #[test]
    fn new_never_yields_a_dangerous_pid() {
        for raw in [i64::MIN, -1, 0, 1, i64::from(i32::MAX) + 1, i64::MAX] {
            assert_eq!(Pid::new(raw), None, "{raw}");
        }
        assert_eq!(Pid::new(2).map(Pid::get), Some(2));
    }

    #[test]
    fn deserializing_checks_the_range_too() {
        assert!(serde_json::from_str::<Pid>("-1").is_err());
        assert!(serde_json::from_str::<Pid>("1").is_err());
        assert_eq!(serde_json::from_str::<Pid>("42").unwrap().get(), 42);
    }

    #[test]
    fn message_shows_content_escaped() {
        let err = parse_pid_file(b"x\ny").unwrap_err();
        assert_eq!(err.to_string(), "holds \"x\\ny\": not a single decimal pid");
    }
}
