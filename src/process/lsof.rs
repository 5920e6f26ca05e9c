//! Working directories from `lsof`, for `search = "lsof_cwd"` and macOS's fallback.
//!
//! `lsof` is called by absolute path when it can be found there: cron's PATH lacks
//! `/usr/sbin`, where macOS keeps it. One call answers for a whole batch of pids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

const PLACES: [&str; 3] = ["/usr/sbin/lsof", "/usr/bin/lsof", "/sbin/lsof"];

fn program() -> PathBuf {
    PLACES
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map_or_else(|| PathBuf::from("lsof"), Path::to_path_buf)
}

/// The working directory of each of `pids` that lsof could see.
pub fn cwds(pids: &[i32]) -> Result<HashMap<i32, PathBuf>> {
    if pids.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let program = program();
    // -a: all conditions at once; -w: no warnings; -F pn: machine-readable pid and name.
    let output = Command::new(&program)
        .args(["-a", "-w", "-d", "cwd", "-F", "pn", "-p", &list.join(",")])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(Error::io("running", &program))?;
    // lsof exits 1 when some pid has gone away; what it printed is still right.
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `lsof -F pn` output: a `p<pid>` line starts a process, `n<path>` names its file.
#[must_use]
pub fn parse(output: &str) -> HashMap<i32, PathBuf> {
    let mut cwds = HashMap::new();
    let mut pid = None;
    for line in output.lines() {
        match line.split_at_checked(1) {
            Some(("p", rest)) => pid = rest.parse().ok(),
            Some(("n", rest)) => {
                if let Some(pid) = pid {
                    cwds.insert(pid, PathBuf::from(rest));
                }
            }
            _ => {}
        }
    }
    cwds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_output() {
        let out = "p12\nfcwd\nn/srv/my bot\np34\nfcwd\nn/\np56\n";
        let cwds = parse(out);
        assert_eq!(cwds[&12], PathBuf::from("/srv/my bot"));
        assert_eq!(cwds[&34], PathBuf::from("/"));
        assert!(!cwds.contains_key(&56));
        assert!(parse("").is_empty());
        assert!(parse("nstray\npx\nn/y\n").is_empty());
    }
}
