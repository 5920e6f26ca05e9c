//! The instance record `<name>.instance`: what keepup knows of the instance it started or
//! adopted, beyond the pid lock's bare pid. Its identity (pid and start) tells a reused pid
//! from the service; whether it led its process group says what is left of it when it dies;
//! what it was launched with tells `status` when the config on disk has changed since, and
//! which config keeps it when two configs name one entry.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::pid::Pid;
use crate::process::{Identity, Instance, Kin};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pid: Pid,
    pub start: String,
    /// Records from before keepup kept this say nothing: no leftovers are inferred from them.
    #[serde(default)]
    pub leads_group: bool,
    /// What the instance was launched (or adopted) with; absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    /// For an instance keepup found running (adopted): what its runaways will share with it.
    /// One keepup started needs none: what leaves its session comes back to the watcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kin: Option<Kin>,
}

/// The parts of a config that make an instance what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub config: PathBuf,
    /// The entry as written, and where it resolved then.
    pub entry: PathBuf,
    pub resolved: Option<PathBuf>,
    pub argv: Vec<String>,
    /// A fingerprint of the `env` table, not the table: its values may be secrets (a bot's
    /// token), and this file is readable by anyone who can read the folder.
    pub env: String,
}

impl Record {
    #[must_use]
    pub fn new(instance: &Instance, config: &Config) -> Record {
        Record {
            pid: instance.pid(),
            start: instance.identity.start.clone(),
            leads_group: instance.leads_group(),
            launch: Some(Launch::of(config)),
            kin: None,
        }
    }

    #[must_use]
    pub fn identity(&self) -> Identity {
        Identity {
            pid: self.pid,
            start: self.start.clone(),
        }
    }
}

impl Launch {
    #[must_use]
    pub fn of(config: &Config) -> Launch {
        let mut env = crate::fingerprint::Fnv::default();
        for (name, value) in &config.env {
            env.write(name.as_bytes());
            env.write(b"=");
            env.write(value.as_bytes());
            env.write(b"\0");
        }
        Launch {
            config: config.file.clone(),
            entry: config.entry.clone(),
            resolved: config.resolved.clone(),
            argv: config.startup.clone(),
            env: format!("{:016x}", env.finish()),
        }
    }

    /// Which of the config's keys now launch something else than what runs.
    #[must_use]
    pub fn changed_keys(&self, now: &Launch) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.entry != now.entry {
            keys.push("entry");
        }
        if self.argv != now.argv {
            keys.push("startup");
        }
        if self.env != now.env {
            keys.push("env");
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_records_still_parse() {
        let record: Record = serde_json::from_str(r#"{"pid":4242,"start":"b:1"}"#).unwrap();
        assert_eq!(record.pid.get(), 4242);
        assert!(!record.leads_group);
        assert_eq!(record.launch, None);
    }

    #[test]
    fn changed_keys_are_named() {
        let launch = Launch {
            config: "/c.toml".into(),
            entry: "/e".into(),
            resolved: None,
            argv: vec!["/e".into()],
            env: "0".into(),
        };
        assert!(launch.changed_keys(&launch).is_empty());
        let now = Launch {
            argv: vec!["/e".into(), "-v".into()],
            env: "1".into(),
            ..launch.clone()
        };
        assert_eq!(launch.changed_keys(&now), ["startup", "env"]);
    }
}
