//! Which config keeps a service: the decisions over the registry's records (`registry.rs`).
//!
//! Exactly one config keeps a service, that is an entry run one way (a shared program like
//! `/usr/bin/python3` with its arguments). Another config that names it is refused while the
//! keeper keeps it. A config whose folder moved takes its record along (the config file is the
//! same file); a record whose config is gone, or no longer names the service, is taken over by
//! the config that names it now; so is one whose config keeps nothing (no pid lock, nobody
//! acting), but only by a verb that starts keeping it.
//!
//! Claims are made under the registry's claim lock, and the claimant takes the service's
//! operation lock before letting go of it (or, when someone holds that, waits for it and
//! decides again): so two configs starting one entry at the same instant never both go on.

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::files::FileId;
use crate::oplock::OpLock;
use crate::registry::{Keeping, Registry, id_of};

/// What a config finds in the registry, for reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Its own record, or one it takes over (a moved config's, an orphan's).
    Own(Keeping),
    /// The record of another config, which keeps the same service.
    Other(Keeping),
    /// No record: the service is not kept, or was kept before there was a record.
    None,
}

/// A claimed service: its record (written, or not yet when nothing is kept) and its operation
/// lock, held.
pub struct Claimed {
    pub keeping: Keeping,
    pub recorded: bool,
    pub lock: OpLock,
}

/// What a record is to a config that names the same service.
enum Standing {
    /// Its config keeps it: hands off.
    Kept,
    /// Its config names the service but keeps nothing now: a verb that starts keeping it may
    /// take it over.
    Idle,
    /// Its config is gone or names something else: whoever names the service now takes it.
    Orphan,
}

/// Where `config` puts its state files: its state folder, resolved (a `current ->` release
/// switch must not move them under a running service).
#[must_use]
pub fn state_dir_of(config: &Config) -> PathBuf {
    config
        .state_dir
        .canonicalize()
        .unwrap_or_else(|_| config.state_dir.clone())
}

/// A record of `config`'s service at the config's own place.
#[must_use]
pub fn fresh(config: &Config, id: String) -> Keeping {
    Keeping {
        id,
        config: config.file.clone(),
        config_file: FileId::of(&config.file),
        entry: config.entry.clone(),
        resolved: config.resolved.clone(),
        entry_file: FileId::of(&config.entry),
        entry_dir: config.entry.parent().and_then(FileId::of),
        runs: config.runs(),
        state_dir: state_dir_of(config),
        name: config.name.clone(),
        trouble: None,
    }
}

/// The record `config` reads by: no lock taken, nothing written.
#[must_use]
pub fn find(registry: &Registry, config: &Config) -> Found {
    if let Some(own) = registry.for_config(&config.file) {
        return Found::Own(own);
    }
    match decide(registry, config) {
        Decision::Other(other) => Found::Other(other),
        Decision::Take(record, _) => Found::Own(record),
        Decision::Idle(_) | Decision::Fresh => Found::None,
    }
}

/// Claims the service for `config` and takes its operation lock. `keep`: the verb starts
/// keeping it (`start`, `restart --force`): a record is written now, and an idle claim of
/// another config's is taken over. Refused, naming the keeper, when another config keeps it.
/// `found`: what [`find`] read before, if anything.
pub fn claim(registry: &Registry, config: &Config, keep: bool, found: &Found) -> Result<Claimed> {
    // The every-minute case: its own record, unchanged; no claim lock needed.
    let own = match found {
        Found::Own(own) if own.config == config.file => Some(own.clone()),
        _ => registry.for_config(&config.file),
    };
    if let Some(own) = own {
        let lock = registry.lock(&own.id)?;
        // Unchanged while this waited for the lock, or rewritten for the same service.
        let now = if registry.unchanged(&config.file) {
            Some(own)
        } else {
            registry.for_config(&config.file).filter(|k| k.id == own.id)
        };
        if let Some(keeping) = now {
            return Ok(Claimed {
                keeping,
                recorded: true,
                lock,
            });
        }
    }
    let mut held: Option<(String, OpLock)> = None;
    loop {
        let guard = registry.claim_lock()?;
        let (keeping, write) = match decide(registry, config) {
            Decision::Other(other) => return Err(kept_by_other(config, &other)),
            Decision::Take(record, moved) => (taken(record, config, moved), true),
            Decision::Idle(record) if keep => (taken(record, config, false), true),
            Decision::Idle(_) | Decision::Fresh => (fresh(config, id_of(&config.file)), keep),
        };
        let lock = match held.take() {
            Some((id, lock)) if id == keeping.id => Some(lock),
            _ => registry.try_lock(&keeping.id)?,
        };
        let Some(lock) = lock else {
            // Someone acts on it: wait for them without holding up every other claim, then
            // look again.
            drop(guard);
            let lock = registry.lock(&keeping.id)?;
            held = Some((keeping.id.clone(), lock));
            continue;
        };
        if write {
            registry.write(&keeping)?;
        }
        drop(guard);
        return Ok(Claimed {
            keeping,
            recorded: write,
            lock,
        });
    }
}

/// The error for a verb run with a config that does not keep the service.
#[must_use]
pub fn kept_by_other(config: &Config, other: &Keeping) -> Error {
    let keeper = shell_words::quote(&other.config.to_string_lossy()).into_owned();
    Error::Failed(format!(
        "{} is kept by another config, {}: act on it with --config {keeper} (or stop it there \
         before keeping it with {})",
        config.name,
        other.config.display(),
        config.file.display()
    ))
}

/// What the registry holds for a config that has no record of its own.
enum Decision {
    /// Another config keeps the service.
    Other(Keeping),
    /// A record to take: this config's own before its folder moved (`true`), or an orphan's.
    Take(Keeping, bool),
    /// Another config's, which keeps nothing now.
    Idle(Keeping),
    Fresh,
}

fn decide(registry: &Registry, config: &Config) -> Decision {
    let me = FileId::of(&config.file);
    let records = registry.all();
    if let Some(own) = records.iter().find(|r| r.config == config.file) {
        return Decision::Take(own.clone(), false);
    }
    // The same config file, no longer where it was: its folder moved (or it was renamed).
    if let Some(moved) = records
        .iter()
        .find(|r| me.is_some() && r.config_file == me && FileId::of(&r.config) != me)
    {
        return Decision::Take(moved.clone(), true);
    }
    let mut idle = None;
    for record in records.iter().filter(|r| names_same(r, config)) {
        match standing(registry, record, config) {
            Standing::Kept => return Decision::Other(record.clone()),
            Standing::Orphan => return Decision::Take(record.clone(), false),
            Standing::Idle => idle = Some(record.clone()),
        }
    }
    idle.map_or(Decision::Fresh, Decision::Idle)
}

/// `record`, now kept by `config`. A record whose state folder is gone (moved along with the
/// config) points at the config's own.
fn taken(mut record: Keeping, config: &Config, moved: bool) -> Keeping {
    record.config.clone_from(&config.file);
    record.config_file = FileId::of(&config.file);
    if moved || !record.state_dir.is_dir() {
        record.state_dir = state_dir_of(config);
        if !moved {
            record.name.clone_from(&config.name);
        }
    }
    record.trouble = None;
    record
}

/// Whether `record` is of the service `config` names: the same entry (as written, where it
/// resolves, or the same file), run the same way.
fn names_same(record: &Keeping, config: &Config) -> bool {
    let same_entry = record.entry == config.entry
        || (record.resolved.is_some() && record.resolved == config.resolved)
        || (record.entry_file.is_some() && record.entry_file == FileId::of(&config.entry));
    same_entry && record.runs == config.runs()
}

fn standing(registry: &Registry, record: &Keeping, config: &Config) -> Standing {
    if !record.config.exists() {
        return Standing::Orphan;
    }
    // A config that no longer loads still keeps what it kept (it may be mid-edit).
    if let Ok(other) = config::load(&record.config)
        && !other.names_same_service(config)
    {
        return Standing::Orphan;
    }
    if keeps(registry, record) {
        Standing::Kept
    } else {
        Standing::Idle
    }
}

/// Whether the service of `record` is kept: its pid lock exists, or someone acts on it now.
fn keeps(registry: &Registry, record: &Keeping) -> bool {
    let pid_lock = state_file(&record.state_dir, &record.name, ".pid");
    std::fs::symlink_metadata(pid_lock).is_ok() || matches!(registry.try_lock(&record.id), Ok(None))
}

/// A service's state file: `<state_dir>/<name><suffix>` (`.pid`, `.events`, …).
#[must_use]
pub fn state_file(state_dir: &Path, name: &str, suffix: &str) -> PathBuf {
    state_dir.join(format!("{name}{suffix}"))
}
