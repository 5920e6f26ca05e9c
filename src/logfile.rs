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
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates `log` if it is a regular file larger than `max`; true if it did.
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
    let mut copy = if keep == 0 {
        None
    } else {
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(log, n), numbered(log, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("rotating", numbered(log, n))(e));
                }
                _ => {}
            }
        }
        let first = numbered(log, 1);
        Some((
            File::create(&first).map_err(Error::io("creating", &first))?,
            first,
        ))
    };
    let block = block_size(&meta).max(1);
    let whole_blocks = meta.len() / block * block;
    copy_range(&file, &mut copy, 0, whole_blocks, log)?;
    if whole_blocks > 0 && collapse(&file, whole_blocks) {
        return Ok(true);
    }
    // No collapse here: copy up to the end (again, while it grows), then truncate.
    let mut done = whole_blocks;
    loop {
        let end = file.metadata().map_err(Error::io("reading", log))?.len();
        if end <= done {
            break;
        }
        copy_range(&file, &mut copy, done, end, log)?;
        done = end;
    }
    file.set_len(0).map_err(Error::io("truncating", log))?;
    Ok(true)
}

fn copy_range(
    mut file: &File,
    to: &mut Option<(File, PathBuf)>,
    from: u64,
    end: u64,
    log: &Path,
) -> Result<()> {
    let Some((out, path)) = to else {
        return Ok(());
    };
    file.seek(SeekFrom::Start(from))
        .map_err(Error::io("reading", log))?;
    let copied = std::io::copy(&mut file.take(end - from), out)
        .map_err(Error::io("writing", path.clone()))?;
    if copied < end - from {
        return Err(Error::Failed(format!(
            "{} shrank while it was being rotated",
            log.display()
        )));
    }
    out.flush().map_err(Error::io("writing", path.clone()))
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

/// The last `lines` lines of `log` written at or after byte `since` (reading at most its last
/// MiB).
pub fn tail(log: &Path, lines: usize, since: u64) -> Result<Vec<String>> {
    const WINDOW: u64 = 1 << 20;
    let mut file = File::open(log).map_err(Error::io("reading log", log))?;
    let len = file
        .metadata()
        .map_err(Error::io("reading log", log))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(WINDOW).max(since)))
        .map_err(Error::io("reading log", log))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
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
