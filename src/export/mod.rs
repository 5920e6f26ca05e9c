//! Graduating: the same config as a systemd unit (`systemd.rs`) or a launchd agent
//! (`launchd.rs`), so the service moves to the init system unchanged. Nothing is written or
//! started; what systemd or launchd cannot say is said in comments beside the nearest
//! equivalent.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};

mod launchd;
mod systemd;

pub use launchd::plist;
pub use systemd::{Scope, socket_unit, unit, unit_name};

/// The argv keepup would run for this config: the startup words, the program made absolute
/// (found on `path_env`, the PATH keepup would launch it with, as its launch would find it).
pub fn argv(config: &Config, path_env: &OsStr) -> Result<Vec<String>> {
    let (program, args) = config
        .startup
        .split_first()
        .ok_or_else(|| Error::Failed("startup is empty".to_owned()))?;
    let program = absolute_program(program, config.dir(), path_env)?;
    let mut words = vec![program.to_string_lossy().into_owned()];
    words.extend(args.iter().cloned());
    Ok(words)
}

/// `program` as an absolute path: as written when it has a slash (relative to the entry's
/// folder, where keepup runs it), else the first executable of that name on `path_env`.
pub(super) fn absolute_program(program: &str, dir: &Path, path_env: &OsStr) -> Result<PathBuf> {
    if program.contains('/') {
        return Ok(crate::startup::clean(&dir.join(program)));
    }
    crate::files::find_on_path(program, path_env).ok_or_else(|| {
        Error::Failed(format!(
            "{program} (startup's program) is not on the PATH keepup would launch it with \
             ({}): an init system needs its absolute path; write it in startup",
            path_env.to_string_lossy()
        ))
    })
}

/// The entry's name without its extension (`runserver.py` → `runserver`): what the unit or
/// agent is called unless told otherwise.
#[must_use]
pub fn entry_stem(config: &Config) -> String {
    config
        .entry
        .file_stem()
        .map_or_else(|| config.name.clone(), |s| s.to_string_lossy().into_owned())
}

/// A launchd label's last part, from the entry's name: `runserver.py` → `runserver`.
#[must_use]
pub fn default_label(config: &Config) -> String {
    let name: String = entry_stem(config)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "service".to_owned()
    } else {
        name
    }
}

/// A duration as both init systems read it: whole seconds, else milliseconds, else µs.
fn duration_text(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}us", duration.as_micros().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_init_systems_read_them() {
        assert_eq!(duration_text(Duration::from_secs(600)), "600s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text(Duration::from_micros(2500)), "2500us");
    }
}
