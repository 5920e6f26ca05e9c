//! The config as a launchd agent: a property list, where arguments are an array (nothing to
//! quote) and text is XML-escaped.

use std::fmt::Write as _;

use super::argv;
use crate::config::Config;
use crate::error::{Error, Result};

/// The agent's property list.
pub fn plist(config: &Config, label: &str, path_env: &std::ffi::OsStr) -> Result<String> {
    let words = argv(config, path_env)?;
    let limit = &config.restart_limit;
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD \
         PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist \
         version=\"1.0\">\n<dict>\n",
    );
    let _ = writeln!(
        out,
        "  <!-- Made by `keepup export launchd` from {}. -->",
        comment(&config.file.to_string_lossy())
    );
    key_string(&mut out, "Label", label)?;
    out.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    for word in &words {
        let _ = writeln!(out, "    <string>{}</string>", text(word)?);
    }
    out.push_str("  </array>\n");
    key_string(
        &mut out,
        "WorkingDirectory",
        &config.dir().to_string_lossy(),
    )?;
    // launchd reads no dotenv file: the env_file's variables as they are now, then env's.
    let mut env: Vec<(String, String)> = match &config.env_file {
        Some(file) => crate::environment::env_file(file)?,
        None => Vec::new(),
    };
    env.retain(|(name, _)| !config.env.contains_key(name));
    env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if config.env_file.is_some() {
        out.push_str("  <!-- env_file as read at export: launchd does not read it again. -->\n");
    }
    if !env.is_empty() {
        out.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (name, value) in &env {
            let _ = writeln!(
                out,
                "    <key>{}</key>\n    <string>{}</string>",
                text(name)?,
                text(value)?
            );
        }
        out.push_str("  </dict>\n");
    }
    sockets(&mut out, config)?;
    out.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    out.push_str("  <!-- keepup revives the service whatever its exit code. -->\n");
    out.push_str("  <key>KeepAlive</key>\n  <true/>\n");
    let seconds = limit.backoff.as_secs() + u64::from(limit.backoff.subsec_nanos() > 0);
    let _ = writeln!(
        out,
        "  <!-- From backoff ({}): launchd spawns a job at most once per ThrottleInterval, by \
         default (and on some macOS versions at least) every 10 s; keepup's crash-loop guard \
         ({} revivals within {}) has no launchd equivalent. -->",
        super::duration_text(limit.backoff),
        limit.burst,
        super::duration_text(limit.interval)
    );
    let _ = writeln!(
        out,
        "  <key>ThrottleInterval</key>\n  <integer>{}</integer>",
        seconds.max(1)
    );
    let log = config.log.to_string_lossy();
    key_string(&mut out, "StandardOutPath", &log)?;
    key_string(&mut out, "StandardErrorPath", &log)?;
    let _ = writeln!(
        out,
        "  <!-- keepup stopped the service with {} and SIGKILL after {}; launchd sends SIGTERM, \
         then SIGKILL after ExitTimeOut. -->",
        config.stop_signal,
        super::duration_text(config.stop_timeout)
    );
    let _ = writeln!(
        out,
        "  <key>ExitTimeOut</key>\n  <integer>{}</integer>",
        config.stop_timeout.as_secs().max(1)
    );
    out.push_str("</dict>\n</plist>\n");
    Ok(out)
}

/// `listen` as launchd's `Sockets` dictionary, one entry by each socket's name.
fn sockets(out: &mut String, config: &Config) -> Result<()> {
    if config.listen.is_empty() {
        return Ok(());
    }
    out.push_str(
        "  <!-- keepup's listen. launchd hands these over through launch_activate_socket(NAME), \
         not LISTEN_FDS: the server must ask for them by name. -->\n  <key>Sockets</key>\n  \
         <dict>\n",
    );
    for listen in &config.listen {
        let _ = writeln!(out, "    <key>{}</key>\n    <dict>", text(&listen.name)?);
        let mut entry = |key: &str, value: &str| -> Result<()> {
            let _ = writeln!(
                out,
                "      <key>{key}</key>\n      <string>{}</string>",
                text(value)?
            );
            Ok(())
        };
        entry("SockType", "stream")?;
        match &listen.address {
            crate::listen::Address::Tcp(addr) => {
                entry("SockFamily", if addr.is_ipv4() { "IPv4" } else { "IPv6" })?;
                entry("SockNodeName", &addr.ip().to_string())?;
                entry("SockServiceName", &addr.port().to_string())?;
            }
            crate::listen::Address::Unix(path) => {
                entry("SockPathName", &path.to_string_lossy())?;
            }
        }
        out.push_str("    </dict>\n");
    }
    out.push_str("  </dict>\n");
    Ok(())
}

fn key_string(out: &mut String, key: &str, value: &str) -> Result<()> {
    let _ = writeln!(
        out,
        "  <key>{key}</key>\n  <string>{}</string>",
        text(value)?
    );
    Ok(())
}

/// `value` as XML text. XML 1.0 cannot hold most control characters at all.
fn text(value: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' => out.push(c),
            // A parser would read a bare CR as a line end.
            '\r' => out.push_str("&#13;"),
            c if c.is_control() => {
                return Err(Error::Failed(format!(
                    "{value:?} holds a control character, which a property list cannot hold"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Text for an XML comment, which must not hold `--`.
fn comment(value: &str) -> String {
    value.replace("--", "- -")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(text("a<b>&c").unwrap(), "a&lt;b&gt;&amp;c");
        assert_eq!(text("naïve \"q\"").unwrap(), "naïve \"q\"");
        assert!(text("bell\x07").is_err());
        assert_eq!(comment("a--b"), "a- -b");
    }
}
