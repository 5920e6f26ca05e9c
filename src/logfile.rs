//! The service's log: rotated once it grows past `log_max_size`, and read back for `logs` and
//! for a failed start.
//!
//! The running service keeps its descriptor, so the log cannot be renamed away: keepup copies
//! it to `<log>.1` (shifting older copies up to `log_keep`) and then removes from the live log
//! exactly the bytes it copied. On Linux filesystems that can (ext4, xfs) that removal is one
//! `fallocate(COLLAPSE_RANGE)`, so whatever the service writes meanwhile stays; elsewhere the
//! log is copied to its end and truncated, which can lose a line written in that instant.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates `log` if it is a regular file larger than `max`; true if it did.
///
/// All or nothing: the bytes to rotate are first copied to a temporary file beside the log;
/// only once that copy is whole are the older copies shifted and the copy put in place as
/// `<log>.1`, and only then are the bytes removed from the live log. A failure on the way (a
/// full disk) removes the temporary file and leaves the log and every rotated copy as they were.
pub fn rotate_if_needed(log: &Path, max: u64, keep: u32) -> Result<bool> {
    let Ok(meta) = std::fs::metadata(log) else {
        return Ok(false);
    };
    if !meta.is_file() || meta.len() <= max {
        return Ok(false);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(log)
        .map_err(Error::io("opening log", log))?;
    let block = block_size(&meta).max(1);
    let whole_blocks = meta.len() / block * block;
    let collapsible = whole_blocks > 0 && can_collapse(&file);
    if keep == 0 {
        if !(collapsible && collapse(&file, whole_blocks)) {
            file.set_len(0).map_err(Error::io("truncating", log))?;
        }
        return Ok(true);
    }
    let temp = sibling(log, ".rotating");
    let _ = std::fs::remove_file(&temp);
    let copied = copy_out(&file, log, &temp, collapsible.then_some(whole_blocks));
    let copied = match copied {
        Ok(copied) => copied,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    for n in (1..keep).rev() {
        match std::fs::rename(numbered(log, n), numbered(log, n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(&temp);
                return Err(Error::io("rotating", numbered(log, n))(e));
            }
            _ => {}
        }
    }
    let first = numbered(log, 1);
    std::fs::rename(&temp, &first).map_err(Error::io("rotating", &first))?;
    // The copy is in place: removing what it holds from the live log loses nothing.
    if collapsible && collapse(&file, copied) {
        return Ok(true);
    }
    if collapsible {
        // The filesystem said it could collapse and did not (ext2 and ext3 share ext4's
        // magic): the copy must reach the end before the log can be emptied; if it cannot,
        // the log stays whole, its start now also in `.1`.
        let mut out = OpenOptions::new()
            .append(true)
            .open(&first)
            .map_err(Error::io("writing", &first))?;
        copy_to_end(&file, &mut out, copied, log, &first)?;
    }
    file.set_len(0).map_err(Error::io("truncating", log))?;
    Ok(true)
}

/// Copies the log's first `upto` bytes (or, when it cannot be collapsed, all of it, again
/// while it grows) to a new file at `temp`, synced; returns how many bytes it copied.
fn copy_out(file: &File, log: &Path, temp: &Path, upto: Option<u64>) -> Result<u64> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(temp)
        .map_err(Error::io("creating", temp))?;
    let done = match upto {
        Some(upto) => {
            copy_range(file, &mut out, 0, upto, log, temp)?;
            upto
        }
        None => copy_to_end(file, &mut out, 0, log, temp)?,
    };
    out.sync_all().map_err(Error::io("writing", temp))?;
    Ok(done)
}

/// Copies from byte `from` to the log's end, again while it grows; returns where it ended.
fn copy_to_end(file: &File, out: &mut File, from: u64, log: &Path, path: &Path) -> Result<u64> {
    let mut done = from;
    loop {
        let end = file.metadata().map_err(Error::io("reading", log))?.len();
        if end <= done {
            return Ok(done);
        }
        copy_range(file, out, done, end, log, path)?;
        done = end;
    }
}

fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(log.file_name().unwrap_or_default());
    name.push(suffix);
    log.with_file_name(name)
}

fn copy_range(
    mut file: &File,
    out: &mut File,
    from: u64,
    end: u64,
    log: &Path,
    path: &Path,
) -> Result<()> {
    file.seek(SeekFrom::Start(from))
        .map_err(Error::io("reading", log))?;
    let copied =
        std::io::copy(&mut file.take(end - from), out).map_err(Error::io("writing", path))?;
    if copied < end - from {
        return Err(Error::Failed(format!(
            "{} shrank while it was being rotated",
            log.display()
        )));
    }
    out.flush().map_err(Error::io("writing", path))
}

#[cfg(target_os = "linux")]
fn block_size(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blksize()
}

#[cfg(not(target_os = "linux"))]
fn block_size(_: &std::fs::Metadata) -> u64 {
    u64::MAX
}

/// Whether the filesystem can remove a file's first blocks in place (ext4 and xfs can), known
/// before anything is moved, so the copy can be made to fit the way the bytes will go.
#[cfg(target_os = "linux")]
fn can_collapse(file: &File) -> bool {
    use nix::sys::statfs::{EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, fstatfs};
    fstatfs(file).is_ok_and(|fs| {
        let kind = fs.filesystem_type();
        kind == EXT4_SUPER_MAGIC || kind == XFS_SUPER_MAGIC
    })
}

#[cfg(not(target_os = "linux"))]
fn can_collapse(_: &File) -> bool {
    false
}

/// Removes the first `len` bytes of `file` in place, if the filesystem can.
#[cfg(target_os = "linux")]
fn collapse(file: &File, len: u64) -> bool {
    use nix::fcntl::{FallocateFlags, fallocate};
    let Ok(len) = i64::try_from(len) else {
        return false;
    };
    fallocate(file, FallocateFlags::FALLOC_FL_COLLAPSE_RANGE, 0, len).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn collapse(_: &File, _: u64) -> bool {
    false
}

/// Follows a log across rotations, giving every byte it gains exactly once and in order.
///
/// A rotation moves the log's first bytes into a new `<log>.1` (shifting older copies up), then
/// removes them from the live log (collapsed, or the whole log truncated). The follower knows
/// the `.1` it last saw by its inode; copies newer than that one are cuts it has not accounted
/// for: each shifts its position back by the cut's length, after giving any of the cut's bytes
/// it had not reached yet.
pub struct Follower {
    log: PathBuf,
    keep: u32,
    position: u64,
    /// The `.1` last seen (device, inode), if there was one.
    newest_copy: Option<(u64, u64)>,
}

impl Follower {
    /// Where it follows from: bytes before it are the caller's to show.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Starts at the start of the log's last line, if the service is still writing it, else
    /// at its end: a line is never split between the caller's tail and what follows.
    pub fn new(log: &Path, keep: u32) -> Result<Follower> {
        let position = line_start_before_end(log).map_err(Error::io("reading log", log))?;
        Ok(Follower {
            log: log.to_path_buf(),
            keep,
            position,
            newest_copy: identity(&numbered(log, 1)),
        })
    }

    /// Writes to `out` what the log gained since the last call. Must not run while a rotation
    /// runs (the caller holds the operation lock, under which every rotation happens).
    pub fn poll(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let copies: Vec<PathBuf> = (1..=self.keep).map(|n| numbered(&self.log, n)).collect();
        let seen_at = copies
            .iter()
            .position(|c| identity(c).is_some_and(|id| Some(id) == self.newest_copy));
        let unaccounted = match (seen_at, self.newest_copy) {
            (Some(at), _) => at,
            // Never saw a copy, or the one seen was rotated out: every copy there is newer.
            _ => copies.iter().take_while(|c| c.is_file()).count(),
        };
        for copy in copies[..unaccounted].iter().rev() {
            let cut = std::fs::metadata(copy)?.len();
            if self.position < cut {
                copy_bytes(copy, self.position, cut, out)?;
            }
            self.position = self.position.saturating_sub(cut);
        }
        self.newest_copy = copies.first().and_then(|c| identity(c));
        let len = std::fs::metadata(&self.log)?.len();
        // Cut with no copy kept (`log_keep = 0`): start again from the top.
        if len < self.position {
            self.position = 0;
        }
        copy_bytes(&self.log, self.position, len, out)?;
        self.position = len;
        Ok(())
    }
}

/// Where the log's last line starts when it has no newline yet, else the log's end. The length
/// alone may fall in the middle of a line: the service may be between two writes of one line,
/// and even one write grows the file a page at a time, each step visible to a reader.
fn line_start_before_end(log: &Path) -> std::io::Result<u64> {
    // A line longer than this is followed from where it is.
    const LOOK_BACK: u64 = 64 * 1024;
    let mut file = File::open(log)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(LOOK_BACK);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    // Between rotations the file only grows: what the length counted is there to read.
    file.take(len - from).read_to_end(&mut bytes)?;
    Ok(match bytes.iter().rposition(|b| *b == b'\n') {
        Some(newline) => from + newline as u64 + 1,
        None if from == 0 => 0,
        None => len,
    })
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    // Rotated copies are made by rename, never links: their own inode is what is followed.
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

fn copy_bytes(path: &Path, from: u64, to: u64, out: &mut dyn Write) -> std::io::Result<()> {
    if to <= from {
        return Ok(());
    }
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    std::io::copy(&mut file.take(to - from), out)?;
    Ok(())
}

/// The last `lines` lines of `log` written at or after byte `since` (reading at most its last
/// MiB).
pub fn tail(log: &Path, lines: usize, since: u64) -> Result<Vec<String>> {
    tail_before(log, lines, since, u64::MAX)
}

/// The last `lines` lines of `log` between bytes `since` and `end` (`logs -f` shows those
/// before the point it then follows from, so nothing written in between is missed).
pub fn tail_before(log: &Path, lines: usize, since: u64, end: u64) -> Result<Vec<String>> {
    const WINDOW: u64 = 1 << 20;
    let mut file = File::open(log).map_err(Error::io("reading log", log))?;
    let len = file
        .metadata()
        .map_err(Error::io("reading log", log))?
        .len()
        .min(end);
    let from = len.saturating_sub(WINDOW).max(since);
    file.seek(SeekFrom::Start(from))
        .map_err(Error::io("reading log", log))?;
    let mut bytes = Vec::new();
    file.take(len.saturating_sub(from))
        .read_to_end(&mut bytes)
        .map_err(Error::io("reading log", log))?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_keeping_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("svc.log");
        let content = "line\n".repeat(1000) + &"other line\n".repeat(1000);
        std::fs::write(&log, &content).unwrap();
        assert!(
            !rotate_if_needed(&log, 1 << 20, 2).unwrap(),
            "small logs stay"
        );
        assert!(rotate_if_needed(&log, 1000, 2).unwrap());
        let rotated = std::fs::read_to_string(numbered(&log, 1)).unwrap();
        let live = std::fs::read_to_string(&log).unwrap();
        assert_eq!(format!("{rotated}{live}"), content, "bytes lost or doubled");
        assert!(live.len() < 8192);
    }

    #[test]
    fn keeps_at_most_log_keep_copies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("svc.log");
        for round in 0..4 {
            std::fs::write(&log, format!("round {round}\n").repeat(2000)).unwrap();
            assert!(rotate_if_needed(&log, 100, 2).unwrap());
        }
        assert!(
            std::fs::read_to_string(numbered(&log, 1))
                .unwrap()
                .starts_with("round 3")
        );
        assert!(
            std::fs::read_to_string(numbered(&log, 2))
                .unwrap()
                .starts_with("round 2")
        );
        assert!(!numbered(&log, 3).exists());
    }

    #[test]
    fn keep_zero_discards() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("svc.log");
        std::fs::write(&log, "x\n".repeat(5000)).unwrap();
        assert!(rotate_if_needed(&log, 100, 0).unwrap());
        assert!(!numbered(&log, 1).exists());
        assert!(std::fs::metadata(&log).unwrap().len() < 8192);
        assert!(!rotate_if_needed(Path::new("/dev/null"), 0, 3).unwrap());
    }

    #[test]
    fn tail_gives_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("svc.log");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&log, 2, 0).unwrap(), ["b", "c"]);
        assert_eq!(tail(&log, 10, 0).unwrap(), ["a", "b", "c"]);
        assert_eq!(tail(&log, 10, 2).unwrap(), ["b", "c"]);
        assert!(tail(&log, 10, 6).unwrap().is_empty());
    }
}
