//! The service's environment: one rule for every launch, whoever launches (a person's
//! `start`, the watcher, the timer's `restart` from cron, after a reboot).
//!
//! The environment of the last manual `start` (or `restart --force`) is recorded in
//! `<name>.env` (mode 0600: its values may be secrets, and keepup never prints them), less the
//! shell's own bookkeeping; every launch starts from it. `env_file` goes on top, read afresh
//! at every launch (a changed token applies at the next revival); the config's `env` goes on
//! top of both. A service kept before anything was recorded starts from the launching keepup's
//! own environment.
//!
//! Like pm2's saved environment, unlike systemd's clean one: a bot whose token is exported in
//! `~/.bashrc` works the same after the first reboot as after `start`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::files::{self, Trusted};

/// Variables a shell keeps for itself, which would be false in the service (it runs in the
/// entry's folder, not the caller's).
const NOT_RECORDED: [&str; 4] = ["PWD", "OLDPWD", "SHLVL", "_"];

/// The largest recorded environment read back.
const MOST: u64 = 4 << 20;

/// A service's environment, as a launch builds it.
pub type Environment = BTreeMap<OsString, OsString>;

/// Records this process's environment as the last manual start's.
pub fn record(path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    for (name, value) in std::env::vars_os() {
        if NOT_RECORDED.iter().any(|n| name == OsStr::new(n)) {
            continue;
        }
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(b'=');
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    files::write_private(path, &bytes)
}

/// The recorded environment, and when it was recorded; `None` when there is none.
pub fn recorded(path: &Path) -> Result<Option<(Environment, Option<SystemTime>)>> {
    let bytes = match files::read_trusted(path, MOST)? {
        Trusted::Absent => return Ok(None),
        Trusted::Refused(why) => {
            return Err(Error::Failed(format!(
                "the recorded environment {} {why}",
                path.display()
            )));
        }
        Trusted::Content(bytes) => bytes,
    };
    let at = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok();
    let vars = bytes
        .split(|b| *b == 0)
        .filter_map(|pair| {
            let at = pair.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(pair[..at].to_vec()),
                OsString::from_vec(pair[at + 1..].to_vec()),
            ))
        })
        .collect();
    Ok(Some((vars, at)))
}

/// The variables of the dotenv file at `path`.
pub fn env_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Failed(format!("env_file {}: cannot read: {e}", path.display())))?;
    parse_dotenv(&text).map_err(|(line, what)| {
        Error::Failed(format!("env_file {}:{line}: {what}", path.display()))
    })
}

/// What a launch gives the service: the recorded environment (or, with none, this process's),
/// then `env_file`'s, then `env`.
pub fn for_launch(
    recorded_at: &Path,
    env_file_path: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<Environment> {
    let mut vars = match recorded(recorded_at)? {
        Some((vars, _)) => vars,
        None => std::env::vars_os().collect(),
    };
    if let Some(path) = env_file_path {
        vars.extend(
            env_file(path)?
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
    }
    vars.extend(
        env.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    Ok(vars)
}

/// The `PATH` a launch with `env` runs with, and finds its program on: its own, else the one
/// `execvp` falls back to.
#[must_use]
pub fn path_of(env: &Environment) -> OsString {
    env.get(OsStr::new("PATH"))
        .cloned()
        .unwrap_or_else(|| OsString::from("/usr/bin:/bin"))
}

/// Parses dotenv text: `KEY=VALUE` lines, `#` comment lines and blank lines, an optional
/// `export ` before the key; a value in double quotes (with `\n`, `\t`, `\"`, `\\`), in single
/// quotes (as written), or bare (trimmed; a ` #` starts a comment). The error: line and what.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            return Err((number, format!("{line:?} is not KEY=VALUE")));
        };
        let name = name.trim();
        if !is_name(name) {
            return Err((number, format!("{name:?} is not a variable name")));
        }
        let value = parse_value(value.trim_start()).map_err(|what| (number, what))?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(value: &str) -> Result<String, String> {
    let after = |rest: &str| {
        let rest = rest.trim();
        if rest.is_empty() || rest.starts_with('#') {
            Ok(())
        } else {
            Err(format!("{rest:?} after the closing quote"))
        }
    };
    if let Some(rest) = value.strip_prefix('\'') {
        let Some((inside, rest)) = rest.split_once('\'') else {
            return Err("a single quote is not closed".to_owned());
        };
        after(rest)?;
        return Ok(inside.to_owned());
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    after(&rest[at + 1..])?;
                    return Ok(out);
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("a double quote is not closed".to_owned());
    }
    let bare = value.find(" #").map_or(value, |at| &value[..at]);
    Ok(bare.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_comments_quotes_and_export() {
        let text = "# a comment\n\nexport FILE_TOKEN=\"x y\"\nPLAIN = plain # says why\n\
                    QUOTED='single # not a comment'\nESCAPED=\"a\\\"b\\nc\"\nEMPTY=\n\
                    URL=http://h/#frag\n";
        let vars = parse_dotenv(text).unwrap();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("FILE_TOKEN"), Some("x y"));
        assert_eq!(get("PLAIN"), Some("plain"));
        assert_eq!(get("QUOTED"), Some("single # not a comment"));
        assert_eq!(get("ESCAPED"), Some("a\"b\nc"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("URL"), Some("http://h/#frag"));
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn bad_dotenv_lines_are_named_by_number() {
        for (text, line, what) in [
            ("A=1\nnot a pair\n", 2, "KEY=VALUE"),
            ("1A=x\n", 1, "variable name"),
            ("A='open\n", 1, "not closed"),
            ("A=\"open\n", 1, "not closed"),
            ("A=\"x\" y\n", 1, "after the closing quote"),
        ] {
            let (at, message) = parse_dotenv(text).unwrap_err();
            assert_eq!(at, line, "{text:?}");
            assert!(message.contains(what), "{text:?}: {message}");
        }
    }

    #[test]
    fn the_record_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.env");
        assert_eq!(recorded(&path).unwrap(), None);
        record(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (vars, at) = recorded(&path).unwrap().unwrap();
        assert!(at.is_some());
        assert_eq!(
            vars.get(OsStr::new("PATH")),
            std::env::var_os("PATH").as_ref()
        );
        assert!(!vars.contains_key(OsStr::new("PWD")));
    }

    #[test]
    fn env_wins_over_env_file_which_wins_over_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let recorded_at = dir.path().join("svc.env");
        std::fs::write(&recorded_at, b"A=recorded\0B=recorded\0C=recorded\0").unwrap();
        let file = dir.path().join("bot.env");
        std::fs::write(&file, "B=file\nC=file\n").unwrap();
        let env = BTreeMap::from([("C".to_owned(), "env".to_owned())]);
        let vars = for_launch(&recorded_at, Some(&file), &env).unwrap();
        let get = |k: &str| vars.get(OsStr::new(k)).and_then(|v| v.to_str());
        assert_eq!(
            (get("A"), get("B"), get("C")),
            (Some("recorded"), Some("file"), Some("env"))
        );
        assert_eq!(vars.len(), 3, "nothing but the record's: {vars:?}");
    }
}
