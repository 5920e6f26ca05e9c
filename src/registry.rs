//! The per-user record of what keepup keeps, `~/.local/state/keepup`: one small file per kept
//! service (`services/*.json`), saying which config keeps which entry and where the service's
//! state files are, and the locks that go with it (`locks/<id>.lock`, one operation lock per
//! service; `registry.lock` for claiming; `crontab.lock` for editing the crontab).
//!
//! It is each service's anchor. The config, the entry and the state folder are paths, and paths
//! change under a running service: a renamed entry, a switched `current ->` release, a moved
//! folder, a second config for the same entry. A record is found whatever changed, and its id,
//! fixed when the service is first kept, names its operation lock for the service's whole life.
//!
//! This file is the storage (where it is, reading, writing, locks). Which record is a config's,
//! and when one config may take over another's, is `keeper.rs`'s.
//!
//! The folder is the acting user's (the config owner's, when root acts for her): under her
//! home when it is hers, else `/var/tmp/keepup-<uid>`. Not `$XDG_STATE_HOME`: cron and the
//! watcher do not see a shell's variables, and every keepup of one user must find one record.

use std::cell::RefCell;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{self, FileId, Trusted};
use crate::oplock::{self, OpLock};

/// One kept service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keeping {
    /// Fixed when the service is first kept: names its operation lock.
    pub id: String,
    /// The config that keeps it, and that file's identity (which a moved folder keeps).
    pub config: PathBuf,
    pub config_file: Option<FileId>,
    /// The entry as written, where it resolved, and that file's identity, as last launched.
    pub entry: PathBuf,
    pub resolved: Option<PathBuf>,
    pub entry_file: Option<FileId>,
    /// The entry's folder, as last launched: where its instance runs, which a scan finds by
    /// this identity once the folder was renamed or swapped for another (a deploy by `mv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_dir: Option<FileId>,
    /// Which runs of the entry are this service, beyond the entry itself (a shared program's
    /// arguments): two configs with the same entry and the same `runs` keep one service.
    pub runs: String,
    /// Where its state files are (resolved, so a switched release does not move them), and
    /// their name: `<state_dir>/<name>.pid` and the rest.
    pub state_dir: PathBuf,
    pub name: String,
    /// What the watcher could not do last, for `status`; cleared by the next launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trouble: Option<Trouble>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trouble {
    /// RFC 3339, UTC.
    pub at: String,
    pub what: String,
}

/// The record folder of the user keepup acts as.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
    /// Only a folder under the user's own home is trusted as it is; one in a shared folder
    /// (`/var/tmp`) must be hers and closed to others.
    shared: bool,
    /// The record file last read by [`Registry::for_config`], as it was then.
    last_read: RefCell<Option<(PathBuf, Stamp)>>,
}

/// What a record file is: every write replaces it (a rename), so any change changes this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    len: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        std::fs::symlink_metadata(path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            len: m.len(),
        })
    }
}

impl Registry {
    /// The acting user's; nothing is made until something is written.
    #[must_use]
    pub fn of_this_user() -> Registry {
        let uid = crate::ownership::euid();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .filter(|h| std::fs::metadata(h).is_ok_and(|m| m.is_dir() && m.uid() == uid));
        match home {
            Some(home) => Registry::at(home.join(".local/state/keepup"), false),
            None => Registry::at(PathBuf::from(format!("/var/tmp/keepup-{uid}")), true),
        }
    }

    #[must_use]
    pub fn at(dir: PathBuf, shared: bool) -> Registry {
        Registry {
            dir,
            shared,
            last_read: RefCell::new(None),
        }
    }

    /// Whether the folder may be trusted (readers look no further when not): one under the
    /// user's own home is, as it is; a shared one must be there, hers and private.
    fn usable(&self) -> bool {
        !self.shared || self.private()
    }

    /// Whether the folder is there and, when shared, the user's alone.
    fn private(&self) -> bool {
        std::fs::symlink_metadata(&self.dir).is_ok_and(|m| {
            m.is_dir()
                && (!self.shared
                    || (m.uid() == crate::ownership::euid() && m.mode().trailing_zeros() >= 6))
        })
    }

    /// Makes the folder and its subfolders, private to the user.
    fn make(&self) -> Result<()> {
        for dir in [
            self.dir.clone(),
            self.dir.join("services"),
            self.dir.join("locks"),
        ] {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
            {
                Ok(()) => {}
                Err(e) => {
                    return Err(Error::Failed(format!(
                        "keepup keeps its record of the services you keep in {}, which cannot be \
                         made: {e}; give this user a home it owns (HOME)",
                        self.dir.display()
                    )));
                }
            }
        }
        if !self.private() {
            return Err(Error::Failed(format!(
                "{} is not a private folder of this user's: refused as unsafe; remove it",
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn file_of(&self, config: &Path) -> PathBuf {
        self.dir
            .join("services")
            .join(format!("{}.json", id_of(config)))
    }

    /// The record written for `config`, if there is one for exactly that config.
    #[must_use]
    pub fn for_config(&self, config: &Path) -> Option<Keeping> {
        if !self.usable() {
            return None;
        }
        let path = self.file_of(config);
        // Looked at before it is read: a change in between shows as a change afterwards.
        let stamp = Stamp::of(&path);
        let found = read(&path).filter(|k| k.config == config);
        self.last_read.replace(
            stamp
                .filter(|_| found.is_some())
                .map(|s| (config.to_path_buf(), s)),
        );
        found
    }

    /// Whether `config`'s record is as [`Registry::for_config`] last read it (not rewritten,
    /// not removed since): the check after waiting for its lock, without reading it again.
    #[must_use]
    pub fn unchanged(&self, config: &Path) -> bool {
        self.last_read
            .borrow()
            .as_ref()
            .is_some_and(|(read, stamp)| {
                read == config && Stamp::of(&self.file_of(config)) == Some(*stamp)
            })
    }

    /// Every record, in no particular order.
    #[must_use]
    pub fn all(&self) -> Vec<Keeping> {
        if !self.usable() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(self.dir.join("services")) else {
            return Vec::new();
        };
        entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| read(&p))
            .collect()
    }

    /// Writes `keeping`, under its config's name; a record of the same service under another
    /// config's name (before its folder moved) goes.
    pub fn write(&self, keeping: &Keeping) -> Result<()> {
        self.make()?;
        let json = serde_json::to_vec(keeping)
            .map_err(|e| Error::Failed(format!("encoding the service's record: {e}")))?;
        let path = self.file_of(&keeping.config);
        files::write_atomic(&path, &json)?;
        for old in self.all() {
            if old.id == keeping.id && old.config != keeping.config {
                files::remove(&self.file_of(&old.config))?;
            }
        }
        Ok(())
    }

    /// Removes `keeping`'s record: the service is no longer kept.
    pub fn remove(&self, keeping: &Keeping) -> Result<()> {
        files::remove(&self.file_of(&keeping.config)).map(drop)
    }

    /// Held while a config claims a service: short, and never while waiting for anything else.
    pub fn claim_lock(&self) -> Result<OpLock> {
        self.make()?;
        oplock::acquire(&self.dir.join("registry.lock"))
    }

    /// Held while the crontab is edited: one edit at a time for the user, whatever the config.
    pub fn crontab_lock(&self) -> Result<OpLock> {
        self.make()?;
        oplock::acquire(&self.dir.join("crontab.lock"))
    }

    /// The operation lock of the service `id`.
    #[must_use]
    pub fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join("locks").join(format!("{id}.lock"))
    }

    /// Waits for the operation lock of the service `id`.
    pub fn lock(&self, id: &str) -> Result<OpLock> {
        // The folders are made once; the every-minute check finds them there.
        match oplock::acquire(&self.lock_path(id)) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.make()?;
                oplock::acquire(&self.lock_path(id))
            }
            other => other,
        }
    }

    /// The operation lock of the service `id`, if nobody holds it.
    pub fn try_lock(&self, id: &str) -> Result<Option<OpLock>> {
        self.make()?;
        oplock::try_acquire(&self.lock_path(id))
    }
}

/// The id a service first kept by `config` gets, and the name of that config's record: the
/// same every time, so a verb that finds no record still knows which lock is the service's.
#[must_use]
pub fn id_of(config: &Path) -> String {
    format!(
        "{:016x}",
        crate::fingerprint::of(config.as_os_str().as_encoded_bytes())
    )
}

fn read(path: &Path) -> Option<Keeping> {
    match files::read_trusted(path, 64 * 1024) {
        Ok(Trusted::Content(json)) => serde_json::from_slice(&json).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeping(config: &str, id: &str) -> Keeping {
        Keeping {
            id: id.into(),
            config: config.into(),
            config_file: None,
            entry: "/app/bot.py".into(),
            resolved: Some("/app/bot.py".into()),
            entry_file: None,
            entry_dir: None,
            runs: String::new(),
            state_dir: "/app".into(),
            name: "bot.py".into(),
            trouble: None,
        }
    }

    #[test]
    fn records_are_found_by_their_config_and_follow_it_when_it_moves() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::at(dir.path().join("keepup"), false);
        assert_eq!(registry.for_config(Path::new("/app/cfg.toml")), None);
        assert!(registry.all().is_empty());
        let first = keeping("/app/cfg.toml", &id_of(Path::new("/app/cfg.toml")));
        registry.write(&first).unwrap();
        assert_eq!(
            registry.for_config(Path::new("/app/cfg.toml")),
            Some(first.clone())
        );
        // The folder moved: the same service (same id), now under its new config's name.
        let moved = Keeping {
            config: "/app2/cfg.toml".into(),
            ..first.clone()
        };
        registry.write(&moved).unwrap();
        assert_eq!(registry.for_config(Path::new("/app/cfg.toml")), None);
        assert_eq!(registry.all(), std::slice::from_ref(&moved));
        registry.remove(&moved).unwrap();
        assert!(registry.all().is_empty());
    }

    #[test]
    fn a_garbled_record_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::at(dir.path().join("keepup"), false);
        registry.make().unwrap();
        let config = Path::new("/app/cfg.toml");
        for bad in ["", "{", "{\"id\":1}", "[]"] {
            std::fs::write(registry.file_of(config), bad).unwrap();
            assert_eq!(registry.for_config(config), None, "{bad:?}");
            assert!(registry.all().is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn a_shared_folder_that_others_may_enter_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let registry = Registry::at(open, true);
        let message = registry.claim_lock().unwrap_err().to_string();
        assert!(message.contains("refused as unsafe"), "{message}");
        assert!(registry.all().is_empty());
    }

    #[test]
    fn ids_are_stable_and_differ_by_config() {
        assert_eq!(
            id_of(Path::new("/a/cfg.toml")),
            id_of(Path::new("/a/cfg.toml"))
        );
        assert_ne!(
            id_of(Path::new("/a/cfg.toml")),
            id_of(Path::new("/b/cfg.toml"))
        );
        assert_eq!(id_of(Path::new("/a/cfg.toml")).len(), 16);
    }
}
