//! `logs`: the service log's tail, and with `--follow` whatever it writes next.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exit_code;
use crate::logfile;
use crate::service::Service;

/// How often `--follow` looks for new lines.
const FOLLOW_PAUSE: Duration = Duration::from_millis(200);

pub fn run(service: &Service, lines: usize, follow: bool) -> Result<u8> {
    let log = &service.config.log;
    if !log.is_file() {
        return Err(Error::Failed(format!(
            "{} has no log at {}",
            service.config.name,
            log.display()
        )));
    }
    let mut out = std::io::stdout().lock();
    for line in logfile::tail(log, lines, 0)? {
        // A closed pipe (`keepup logs | head`) ends the command quietly.
        if writeln!(out, "{line}").is_err() {
            return Ok(exit_code::OK);
        }
    }
    if !follow {
        return Ok(exit_code::OK);
    }
    let mut position = std::fs::metadata(log)
        .map_err(Error::io("reading log", log))?
        .len();
    loop {
        let _ = out.flush();
        std::thread::sleep(FOLLOW_PAUSE);
        let Ok(mut file) = std::fs::File::open(log) else {
            continue;
        };
        let len = file
            .metadata()
            .map_err(Error::io("reading log", log))?
            .len();
        // Rotated (cut shorter): the new lines start at the top.
        if len < position {
            position = 0;
        }
        if len == position {
            continue;
        }
        file.seek(SeekFrom::Start(position))
            .map_err(Error::io("reading log", log))?;
        let mut chunk = Vec::new();
        file.take(len - position)
            .read_to_end(&mut chunk)
            .map_err(Error::io("reading log", log))?;
        position += chunk.len() as u64;
        if out.write_all(&chunk).is_err() {
            return Ok(exit_code::OK);
        }
    }
}
