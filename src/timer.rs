//! The timer: one line in the user's crontab that runs `keepup restart --timer` for a config
//! every minute.
//!
//! The crontab text is the user's: keepup adds or removes its one line and leaves every other
//! byte as it was. The text work is pure ([`install`], [`uninstall`], [`find`]); running the
//! `crontab` program is [`Crontab`]'s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// What ends keepup's line: names the config, so each config has its own line.
const MARKER: &str = "# keepup-timer ";

/// Everything the timer line needs, absolute.
#[derive(Debug, Clone)]
pub struct TimerSpec<'a> {
    pub keepup: &'a Path,
    pub config: &'a Path,
    pub log: &'a Path,
    /// The `PATH` of the shell that installs the line: cron's own is only `/usr/bin:/bin`.
    pub path_env: &'a str,
}

/// The crontab line for `spec`.
pub fn line(spec: &TimerSpec<'_>) -> Result<String, String> {
    for (what, text) in [
        ("keepup's path", spec.keepup.to_string_lossy()),
        ("the config's path", spec.config.to_string_lossy()),
        ("the log's path", spec.log.to_string_lossy()),
        ("PATH", spec.path_env.into()),
    ] {
        if text.contains(['\n', '\r']) {
            return Err(format!(
                "{what} holds a line break, which a crontab line cannot"
            ));
        }
    }
    let quote = |p: &Path| shell_words::quote(&p.to_string_lossy()).into_owned();
    // `env` sets PATH whatever shell the crontab's SHELL= names; cron turns a bare % into a
    // line break, so every % is escaped.
    let command = format!(
        "* * * * * /usr/bin/env PATH={} {} restart --timer --config {} >> {} 2>&1 {MARKER}{}",
        shell_words::quote(spec.path_env),
        quote(spec.keepup),
        quote(spec.config),
        quote(spec.log),
        spec.config.display()
    );
    Ok(escape_percent(&command))
}

/// The comment that ends this config's line.
fn marker(config: &Path) -> String {
    escape_percent(&format!("{MARKER}{}", config.display()))
}

fn escape_percent(text: &str) -> String {
    text.replace('%', "\\%")
}

/// Whether `line` is keepup's timer line for `config`: an entry (not a comment) ending with
/// its marker. A comment that only mentions the config is the user's.
fn is_timer_line(line: &str, config: &Path) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    !line.trim_start().starts_with('#') && line.ends_with(&format!(" {}", marker(config)))
}

/// This config's timer line in `crontab`, if there is one.
#[must_use]
pub fn find<'t>(crontab: &'t str, config: &Path) -> Option<&'t str> {
    crontab
        .split_inclusive('\n')
        .find(|l| is_timer_line(l, config))
        .map(|l| l.trim_end_matches(['\n', '\r']))
}

/// The configs that keepup timer lines name, in the crontab's order.
#[must_use]
pub fn configs(crontab: &str) -> Vec<PathBuf> {
    crontab
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.rsplit_once(MARKER))
        .map(|(_, config)| PathBuf::from(config.trim_end_matches('\r').replace("\\%", "%")))
        .collect()
}

/// What a timer line runs: keepup's path and the PATH it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerLine {
    pub keepup: PathBuf,
    pub path_env: String,
}

/// Reads back a line that [`line`] wrote; `None` for anything else.
#[must_use]
pub fn parse(line: &str) -> Option<TimerLine> {
    let (command, _) = line.rsplit_once(MARKER)?;
    let words = shell_words::split(&command.replace("\\%", "%")).ok()?;
    let [_, _, _, _, _, env, path, keepup, ..] = words.as_slice() else {
        return None;
    };
    Some(TimerLine {
        keepup: PathBuf::from(keepup),
        path_env: path.strip_prefix("PATH=")?.to_owned(),
    })
    .filter(|_| env == "/usr/bin/env")
}

/// What installing did to the crontab text.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// The same line was there: nothing to write.
    Already,
    /// The line was added (or replaced an older one for this config): the new text.
    Added(String),
    Replaced(String),
}

/// Adds `line` (for `config`) to `crontab`, or replaces this config's older line in place.
#[must_use]
pub fn install(crontab: &str, line: &str, config: &Path) -> Installed {
    if find(crontab, config) == Some(line) {
        return Installed::Already;
    }
    let mut lines: Vec<&str> = crontab.split_inclusive('\n').collect();
    let ours = format!("{line}\n");
    if let Some(i) = lines.iter().position(|l| is_timer_line(l, config)) {
        let ending = &lines[i][lines[i].trim_end_matches(['\n', '\r']).len()..];
        let replaced = format!("{line}{ending}");
        lines[i] = &replaced;
        return Installed::Replaced(lines.concat());
    }
    // Before an unterminated last line rather than after it, so that line keeps its bytes
    // (and uninstalling gives back exactly the text that was there).
    match lines.last() {
        Some(last) if !last.ends_with('\n') => {
            let at = lines.len() - 1;
            lines.insert(at, &ours);
        }
        _ => lines.push(&ours),
    }
    Installed::Added(lines.concat())
}

/// `crontab` without this config's line, or `None` when it has none.
#[must_use]
pub fn uninstall(crontab: &str, config: &Path) -> Option<String> {
    let mut found = false;
    let kept: String = crontab
        .split_inclusive('\n')
        .filter(|l| {
            let ours = is_timer_line(l, config);
            found |= ours;
            !ours
        })
        .collect();
    found.then_some(kept)
}

/// What a missing cron daemon is, and what to do: said by `doctor` and `install-timer`.
pub const NO_CRON_DAEMON: &str =
    "no cron daemon runs (no cron, crond or cronie process, no active cron.service)";
pub const START_CRON: &str = "start it: sudo systemctl enable --now cron (crond on Fedora), or \
                              sudo service cron start";
pub const INSTALL_CRON: &str = "sudo apt-get install cron (sudo dnf install cronie on Fedora)";

/// Who runs the crontab's lines, if anyone does: a `cron`, `crond` or `cronie` process, or a
/// cron service systemd says is active (a daemon this user cannot see in the process table).
#[must_use]
pub fn cron_daemon() -> Option<&'static str> {
    if crate::process::any_named(&["cron", "crond", "cronie"]) {
        return Some("a cron daemon runs");
    }
    let active = ["cron.service", "crond.service", "cronie.service"]
        .iter()
        .any(|unit| {
            Command::new("systemctl")
                .args(["is-active", "--quiet", unit])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    active.then_some("systemd says the cron service is active")
}

/// The `crontab` program: `KEEPUP_CRONTAB` if set, else `crontab` on PATH.
pub struct Crontab {
    program: PathBuf,
}

impl Crontab {
    #[must_use]
    pub fn from_env() -> Crontab {
        Crontab {
            program: std::env::var_os("KEEPUP_CRONTAB")
                .filter(|p| !p.is_empty())
                .map_or_else(|| PathBuf::from("crontab"), PathBuf::from),
        }
    }

    /// The user's crontab; "no crontab for USER" is an empty one.
    pub fn read(&self) -> Result<String> {
        let output = Command::new(&self.program)
            .arg("-l")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.not_run(e))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            return String::from_utf8(output.stdout).map_err(|_| {
                Error::Failed(format!(
                    "{} -l printed text that is not UTF-8",
                    self.program.display()
                ))
            });
        }
        if stderr.contains("no crontab for") {
            return Ok(String::new());
        }
        Err(self.failure("-l", &stderr))
    }

    /// Installs `text` as the user's whole crontab; empty text removes the crontab, so a
    /// user who had none before the timer has none after it.
    pub fn write(&self, text: &str) -> Result<()> {
        use std::io::Write;
        if text.is_empty() {
            let output = Command::new(&self.program)
                .arg("-r")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| self.not_run(e))?;
            return if output.status.success() {
                Ok(())
            } else {
                Err(self.failure("-r", &String::from_utf8_lossy(&output.stderr)))
            };
        }
        let mut child = Command::new(&self.program)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.not_run(e))?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(text.as_bytes()));
        let output = child.wait_with_output().map_err(|e| self.not_run(e))?;
        if output.status.success() && matches!(written, Some(Ok(()))) {
            Ok(())
        } else {
            Err(self.failure("-", &String::from_utf8_lossy(&output.stderr)))
        }
    }

    /// The program could not be run: when it is not there, what brings it.
    fn not_run(&self, e: std::io::Error) -> Error {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Error::io("running", &self.program)(e);
        }
        let named = std::env::var_os("KEEPUP_CRONTAB").filter(|p| !p.is_empty());
        Error::Failed(if named.is_some() {
            format!(
                "{} (named by KEEPUP_CRONTAB) does not exist: correct KEEPUP_CRONTAB, or unset \
                 it to use crontab from PATH",
                self.program.display()
            )
        } else {
            format!(
                "no crontab program on PATH: the timer needs cron, which brings it and the \
                 daemon that runs the timer's line: {INSTALL_CRON}; then {START_CRON}; \
                 `keepup doctor` checks both"
            )
        })
    }

    fn failure(&self, args: &str, stderr: &str) -> Error {
        let said = stderr.trim().replace('\n', " ");
        Error::Failed(format!(
            "{} {args} failed: {}",
            self.program.display(),
            if said.is_empty() {
                "it said nothing"
            } else {
                &said
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "/srv/my bot/cfg.toml";

    fn spec_line(config: &str) -> String {
        line(&TimerSpec {
            keepup: Path::new("/opt/keepup/bin/keepup"),
            config: Path::new(config),
            log: Path::new("/srv/my bot/bot.py.timer.log"),
            path_env: "/usr/local/bin:/usr/bin:/bin",
        })
        .unwrap()
    }

    fn added(result: Installed) -> String {
        match result {
            Installed::Added(text) => text,
            other => panic!("expected Added, got {other:?}"),
        }
    }

    #[test]
    fn line_is_absolute_quoted_and_marked() {
        assert_eq!(
            spec_line(CONFIG),
            "* * * * * /usr/bin/env PATH=/usr/local/bin:/usr/bin:/bin /opt/keepup/bin/keepup \
             restart --timer --config '/srv/my bot/cfg.toml' >> '/srv/my bot/bot.py.timer.log' \
             2>&1 # keepup-timer /srv/my bot/cfg.toml"
        );
    }

    #[test]
    fn percent_is_escaped_for_cron() {
        let line = spec_line("/srv/100%/cfg.toml");
        assert!(line.contains("/srv/100\\%/cfg.toml"), "{line}");
        assert!(!line.replace("\\%", "").contains('%'), "{line}");
        let text = added(install("", &line, Path::new("/srv/100%/cfg.toml")));
        assert_eq!(
            find(&text, Path::new("/srv/100%/cfg.toml")),
            Some(line.as_str())
        );
    }

    #[test]
    fn line_breaks_are_refused() {
        let result = line(&TimerSpec {
            keepup: Path::new("/k"),
            config: Path::new("/a\nb/cfg.toml"),
            log: Path::new("/l"),
            path_env: "/bin",
        });
        assert!(result.unwrap_err().contains("config"));
    }

    #[test]
    fn install_into_empty_and_again() {
        let line = spec_line(CONFIG);
        let text = added(install("", &line, Path::new(CONFIG)));
        assert_eq!(text, format!("{line}\n"));
        assert_eq!(install(&text, &line, Path::new(CONFIG)), Installed::Already);
    }

    #[test]
    fn keeps_every_other_byte() {
        let user = "# my jobs\nMAILTO=me@example.org\nPATH=/usr/bin:/bin\n\n\
                    */5 * * * * /usr/bin/backup # keepup-timer /srv/my bot/cfg.toml is mentioned here\n\
                    # * * * * * old keepup-timer /srv/my bot/cfg.toml\n\
                    0 3 * * * other-program --flag\r\n\n";
        let line = spec_line(CONFIG);
        let text = added(install(user, &line, Path::new(CONFIG)));
        assert!(text.starts_with(user), "{text}");
        assert_eq!(find(&text, Path::new(CONFIG)), Some(line.as_str()));
        assert_eq!(uninstall(&text, Path::new(CONFIG)).as_deref(), Some(user));
        // The user's lines that mention the config are never taken for ours.
        assert_eq!(find(user, Path::new(CONFIG)), None);
        assert_eq!(uninstall(user, Path::new(CONFIG)), None);
    }

    #[test]
    fn unterminated_last_line_keeps_its_bytes() {
        let user = "0 * * * * a\n0 1 * * * b-without-newline";
        let line = spec_line(CONFIG);
        let text = added(install(user, &line, Path::new(CONFIG)));
        assert!(text.ends_with("\n0 1 * * * b-without-newline"), "{text}");
        assert_eq!(uninstall(&text, Path::new(CONFIG)).as_deref(), Some(user));
    }

    #[test]
    fn two_configs_two_lines() {
        let first = spec_line(CONFIG);
        let second = spec_line("/srv/other/cfg.toml");
        let text = added(install("", &first, Path::new(CONFIG)));
        let text = added(install(&text, &second, Path::new("/srv/other/cfg.toml")));
        assert_eq!(text, format!("{first}\n{second}\n"));
        assert_eq!(
            uninstall(&text, Path::new(CONFIG)),
            Some(format!("{second}\n"))
        );
        // A config whose path ends like another's is still another config.
        assert_eq!(find(&text, Path::new("/other/cfg.toml")), None);
    }

    #[test]
    fn changed_line_is_replaced_in_place() {
        let old = spec_line(CONFIG).replace("/opt/keepup/bin", "/old/place");
        let user = format!("# top\n{old}\n# bottom\n");
        let line = spec_line(CONFIG);
        match install(&user, &line, Path::new(CONFIG)) {
            Installed::Replaced(text) => assert_eq!(text, format!("# top\n{line}\n# bottom\n")),
            other => panic!("expected Replaced, got {other:?}"),
        }
    }

    #[test]
    fn timer_lines_read_back() {
        let spec = TimerSpec {
            keepup: Path::new("/opt/my tools/keepup"),
            config: Path::new("/srv/bot 100%/cfg.toml"),
            log: Path::new("/srv/bot 100%/bot.py.timer.log"),
            path_env: "/usr/local/bin:/usr/bin:/bin",
        };
        let line = line(&spec).unwrap();
        let crontab = format!("MAILTO=me\n# {line}\n{line}\n5 * * * * other\n");
        assert_eq!(configs(&crontab), [PathBuf::from("/srv/bot 100%/cfg.toml")]);
        assert_eq!(
            parse(&line),
            Some(TimerLine {
                keepup: PathBuf::from("/opt/my tools/keepup"),
                path_env: "/usr/local/bin:/usr/bin:/bin".to_owned(),
            })
        );
        assert_eq!(parse("5 * * * * other"), None);
    }
}
