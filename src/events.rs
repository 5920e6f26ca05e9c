//! The event history `<entry>.events`: one JSON object a line, for every start, stop, kill,
//! revival, guard trip and stale lock, with time, pid, who acted and the outcome.
//!
//! Lines are appended with one `write` on a file opened with `O_APPEND`, by commands that hold
//! the operation lock, so concurrent invocations neither lose nor interleave lines. The file
//! is bounded: past [`MAX_BYTES`] it is cut to its newest half, atomically.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{self, Trusted};
use crate::pid::Pid;

/// Enough for thousands of events; the crash-loop guard needs far fewer.
pub const MAX_BYTES: u64 = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A manual start (also adopting a running instance); clears the crash-loop guard.
    Start,
    Stop,
    Kill,
    /// The timer's (or a user's `restart`) revival of a dead service.
    Revive,
    /// The crash-loop guard stopped reviving.
    GuardTrip,
    /// The pid lock did not lead to the service.
    StaleLock,
    /// What was left of a dead instance's process group was ended (its pid: the group).
    Leftovers,
    /// The service's log (or the timer's) was rotated, or could not be (a full disk).
    Rotate,
    /// The service was found at another pid than the pid lock's, or named another process its
    /// main one (`MAINPID=`) (its pid: the new one).
    PidChange,
    /// The service ended while its watcher watched it: how (exit code or signal), read by the
    /// watcher, its parent; "ended" alone for an adopted instance, whose parent is another.
    Exit,
    /// A watcher was started for a running service that had none (killed, or never started
    /// for an adopted instance).
    Watcher,
    /// The watcher ended the service because its health check failed `health_failures`
    /// times in a row; the detail holds the last probe's answer.
    Unhealthy,
    /// The watcher restarted the service because its processes used more than `max_memory`
    /// at two checks in a row; the detail names the figure.
    Memory,
    /// `keepup reload`: a new generation started on the held sockets (its pid), then the old
    /// one stopped; or the new one failed and the old one serves on.
    Reload,
}

impl Kind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Stop => "stop",
            Kind::Kill => "kill",
            Kind::Revive => "revive",
            Kind::GuardTrip => "guard trip",
            Kind::StaleLock => "stale lock",
            Kind::Leftovers => "leftovers",
            Kind::Rotate => "rotate",
            Kind::PidChange => "pid change",
            Kind::Exit => "exit",
            Kind::Watcher => "watcher",
            Kind::Unhealthy => "unhealthy",
            Kind::Memory => "memory",
            Kind::Reload => "reload",
        }
    }
}

/// Who acted: a person (or their script), the crontab line, or the service's watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    User,
    Timer,
    Watcher,
}

impl Who {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Who::User => "user",
            Who::Timer => "timer",
            Who::Watcher => "watcher",
        }
    }

    /// Whether a person waits for the answer: the timer and the watcher write to a log, and
    /// say only what they did.
    #[must_use]
    pub fn is_person(self) -> bool {
        self == Who::User
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    AlreadyRunning,
    NotRunning,
    /// keepup could not launch the service, for a reason of its own (no space for its files,
    /// no process slot): not the service's crash, so the crash-loop guard does not count it.
    NotLaunched,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub event: Kind,
    pub pid: Option<Pid>,
    pub by: Who,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    #[must_use]
    pub fn now(event: Kind, by: Who, outcome: Outcome, pid: Option<Pid>) -> Event {
        Event {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
            pid,
            by,
            outcome,
            detail: None,
        }
    }

    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        let detail: String = detail.into();
        // One line: the first of a multi-line message says what happened.
        self.detail = Some(detail.lines().next().unwrap_or_default().to_owned());
        self
    }

    #[must_use]
    pub fn at(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.time).ok()
    }

    /// One line for people: time, what, pid, who, outcome, detail.
    #[must_use]
    pub fn render(&self) -> String {
        let pid = self.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::AlreadyRunning => "already running",
            Outcome::NotRunning => "not running",
            Outcome::NotLaunched => "not launched",
        };
        let by = match self.by {
            Who::User => "user",
            Who::Timer => "timer",
            Who::Watcher => "watcher",
        };
        let mut line = format!(
            "{}  {:<10} {:>7}  {:<7}  {outcome}",
            self.time,
            self.event.name(),
            pid,
            by
        );
        if let Some(detail) = &self.detail {
            line.push_str(": ");
            line.push_str(detail);
        }
        line
    }
}

/// Appends `event` as one line; trims the file when it has grown past [`MAX_BYTES`].
pub fn append(path: &Path, event: &Event) -> Result<()> {
    let line =
        serde_json::to_vec(event).map_err(|e| Error::Failed(format!("encoding an event: {e}")))?;
    append_lines(path, line)
}

/// Appends whole lines (another history's, when a service's state files move) to the history.
pub fn append_lines(path: &Path, mut line: Vec<u8>) -> Result<()> {
    if line.last().is_some_and(|b| *b != b'\n') {
        line.push(b'\n');
    }
    let mut file = files::open_append_readable(path, "opening event history")?;
    // A write cut short (a full disk) leaves a last line without its newline: this event
    // starts a line of its own, or both would be one line that does not parse. Every writer
    // holds the operation lock, so the end cannot move between this look and the write.
    if !ends_a_line(&file, path)? {
        line.insert(0, b'\n');
    }
    // One write, so a reader never sees half a line.
    file.write_all(&line)
        .map_err(Error::io("appending to", path))?;
    let size = file.metadata().map_err(Error::io("reading", path))?.len();
    if size > MAX_BYTES {
        let all = read_bytes(path)?;
        files::write_atomic(path, newest(&all, MAX_BYTES / 2))?;
    }
    Ok(())
}

/// Whether `file` is empty or ends with a newline.
fn ends_a_line(file: &std::fs::File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(Error::io("reading", path))?.len();
    let Some(last) = len.checked_sub(1) else {
        return Ok(true);
    };
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, last)
        .map_err(Error::io("reading", path))?;
    Ok(byte[0] == b'\n')
}

/// The last whole lines of `text` that fit in `budget` bytes.
fn newest(text: &[u8], budget: u64) -> &[u8] {
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    if text.len() <= budget {
        return text;
    }
    let from = text.len() - budget;
    match text[from..].iter().position(|b| *b == b'\n') {
        Some(i) => &text[from + i + 1..],
        None => &[],
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    Ok(match files::read_trusted(path, 2 * MAX_BYTES)? {
        Trusted::Content(bytes) => bytes,
        Trusted::Absent | Trusted::Refused(_) => Vec::new(),
    })
}

/// Every event in the history, oldest first; lines that do not parse are passed over.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    Ok(read_counting(path)?.events)
}

/// The history as `keepup events` shows it: the events, and how many lines were not one.
#[derive(Debug, Default)]
pub struct History {
    /// Oldest first.
    pub events: Vec<Event>,
    /// Lines that are not an event (cut short by a full disk, or edited by hand); blank lines
    /// are not counted.
    pub unreadable: usize,
}

/// Every event in the history, oldest first, and how many lines did not parse.
pub fn read_counting(path: &Path) -> Result<History> {
    let bytes = read_bytes(path)?;
    let mut history = History::default();
    for line in bytes.split(|b| *b == b'\n') {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(event) => history.events.push(event),
            Err(_) => history.unreadable += 1,
        }
    }
    Ok(history)
}

/// The events the crash-loop guard looks at, launches (`start`, `revive`) and trips, from the
/// last `start` on (it clears the guard), or from the first if there is none. Only those lines
/// are parsed: a history near its size limit holds thousands of lines, half of them `exit`s,
/// and a revival should not wait for them.
/// A history that is there but cannot be read (a directory in its place, a symlink) is an
/// error here, not an empty history: the guard must not judge a loop it cannot see as none.
pub fn read_since_start(path: &Path) -> Result<Vec<Event>> {
    let bytes = match files::read_trusted(path, 2 * MAX_BYTES)? {
        Trusted::Content(bytes) => bytes,
        Trusted::Absent => Vec::new(),
        Trusted::Refused(why) => {
            return Err(Error::Failed(format!(
                "event history {}: {why}",
                path.display()
            )));
        }
    };
    // As serde_json writes it, the kind is the first field after the time, so its first match
    // in a line is the field itself (a detail that quotes it is escaped, so never matches).
    // One pass forward: memchr's searches backwards have no fast path, and were most of it.
    let kind = memchr::memmem::Finder::new(br#""event":""#);
    let kind_of = |line: &[u8]| {
        let at = kind.find(line)? + kind.needle().len();
        [&b"start\""[..], b"revive\"", b"guard_trip\""]
            .into_iter()
            .position(|k| line[at..].starts_with(k))
    };
    let mut judged = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', &bytes).chain(std::iter::once(bytes.len())) {
        let line = start..end;
        start = end + 1;
        match kind_of(&bytes[line.clone()]) {
            // A start clears the guard: nothing before it counts.
            Some(0) => judged = vec![line],
            Some(_) => judged.push(line),
            None => {}
        }
    }
    Ok(judged
        .into_iter()
        .filter_map(|line| serde_json::from_slice::<Judged<'_>>(&bytes[line]).ok())
        .map(Event::from)
        .collect())
}

/// What the guard reads of an event: its detail (most of a line) is passed over unread.
#[derive(Deserialize)]
struct Judged<'a> {
    time: &'a str,
    event: Kind,
    pid: Option<Pid>,
    by: Who,
    outcome: Outcome,
}

impl From<Judged<'_>> for Event {
    fn from(judged: Judged<'_>) -> Event {
        Event {
            time: judged.time.to_owned(),
            event: judged.event,
            pid: judged.pid,
            by: judged.by,
            outcome: judged.outcome,
            detail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_render() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.events");
        let event = Event::now(Kind::Revive, Who::Timer, Outcome::Failed, Pid::new(42))
            .detail("exited\nmore");
        append(&path, &event).unwrap();
        append(
            &path,
            &Event::now(Kind::Stop, Who::User, Outcome::NotRunning, None),
        )
        .unwrap();
        let events = read(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], event);
        assert_eq!(events[0].detail.as_deref(), Some("exited"));
        let text = events[0].render();
        assert!(
            text.contains("revive")
                && text.contains("42")
                && text.contains("timer")
                && text.ends_with("failed: exited"),
            "{text}"
        );
        let json = std::fs::read_to_string(&path).unwrap();
        assert!(json.starts_with("{\"time\":"), "{json}");
        assert!(
            json.contains(
                "\"event\":\"revive\",\"pid\":42,\"by\":\"timer\",\"outcome\":\"failed\""
            ),
            "{json}"
        );
    }

    #[test]
    fn stays_bounded_keeping_the_newest_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.events");
        let mut last = None;
        for i in 0..3000 {
            let event = Event::now(Kind::Kill, Who::User, Outcome::Ok, Pid::new(i + 2));
            append(&path, &event).unwrap();
            last = Some(event);
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_BYTES);
        let events = read(&path).unwrap();
        assert_eq!(events.last(), last.as_ref());
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(events.len(), lines, "a line was cut in half");
    }

    #[test]
    fn garbage_lines_are_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.events");
        std::fs::write(&path, "not json\n{\"time\":1}\n").unwrap();
        append(
            &path,
            &Event::now(Kind::Start, Who::User, Outcome::Ok, Pid::new(7)),
        )
        .unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        assert_eq!(read_counting(&path).unwrap().unreadable, 2);
    }

    #[test]
    fn an_append_after_a_torn_last_line_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.events");
        let first = Event::now(Kind::Start, Who::User, Outcome::Ok, Pid::new(7));
        append(&path, &first).unwrap();
        // What a full disk leaves: the start of a line, without its newline.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"time").unwrap();
        let next = Event::now(Kind::Kill, Who::User, Outcome::Ok, Pid::new(8));
        append(&path, &next).unwrap();
        let history = read_counting(&path).unwrap();
        assert_eq!(history.events, [first, next]);
        assert_eq!(history.unreadable, 1);
        // A whole last line gets no blank line after it.
        append(
            &path,
            &Event::now(Kind::Stop, Who::User, Outcome::Ok, Pid::new(8)),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.contains("\n\n"), "{text}");
        assert_eq!(read_counting(&path).unwrap().unreadable, 1);
    }

    #[test]
    fn the_guard_reads_from_the_last_start_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.events");
        let tricky = Event::now(Kind::Revive, Who::Watcher, Outcome::Failed, Pid::new(9))
            .detail(r#"it said "event":"start" in its log"#);
        for event in [
            Event::now(Kind::Revive, Who::Timer, Outcome::Ok, Pid::new(5)),
            Event::now(Kind::Start, Who::User, Outcome::Ok, Pid::new(6)),
            Event::now(Kind::Revive, Who::Watcher, Outcome::Ok, Pid::new(7)),
            tricky,
        ] {
            append(&path, &event).unwrap();
        }
        // As the guard reads them: whole but for their details.
        let all: Vec<Event> = read(&path)
            .unwrap()
            .into_iter()
            .map(|e| Event { detail: None, ..e })
            .collect();
        assert_eq!(read_since_start(&path).unwrap(), all[1..]);
        let missing = dir.path().join("none");
        assert!(read_since_start(&missing).unwrap().is_empty());
    }

    /// Only launches and trips are the guard's: the rest (an `exit` per revival) is not parsed.
    #[test]
    fn the_guard_reads_launches_and_trips_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.events");
        let said = Event::now(Kind::Exit, Who::Watcher, Outcome::Failed, Pid::new(8))
            .detail(r#"it printed "event":"revive" and died"#);
        let events = [
            Event::now(Kind::Start, Who::User, Outcome::Ok, Pid::new(6)),
            Event::now(Kind::Exit, Who::Watcher, Outcome::Failed, Pid::new(6)),
            Event::now(Kind::Revive, Who::Watcher, Outcome::Ok, Pid::new(7)),
            said,
            Event::now(Kind::GuardTrip, Who::Watcher, Outcome::Ok, None),
            Event::now(Kind::Stop, Who::User, Outcome::Ok, Pid::new(7)),
        ];
        for event in &events {
            append(&path, event).unwrap();
        }
        let kinds: Vec<Kind> = read_since_start(&path)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(kinds, [Kind::Start, Kind::Revive, Kind::GuardTrip]);
    }
}
