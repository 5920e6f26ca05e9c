//! Who keepup acts as. A service runs as the owner of its config: run as root on a config
//! another user owns (`sudo keepup stop`), keepup first becomes that user (groups, gid, uid,
//! for good) and then does exactly what her own command would, so her service is found, never
//! doubled as root, and no root-owned file appears among her state files. Acting as root on a
//! root-owned config, it refuses files and folders another user could write, as
//! start-stop-daemon refuses an insecure pid file: otherwise that user could make root run
//! their program. And a state file the acting user cannot read is an error that says whose it
//! is and what to do.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};

/// The effective user keepup acts as, asked once (after [`act_as_config_owner`], which may
/// change it): every state file read asks whether it runs as root.
#[must_use]
pub fn euid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| nix::unistd::geteuid().as_raw())
}

/// Becomes the config's owner when root runs keepup on another user's config. Reads nothing
/// but the config's owner first; a config that cannot be looked at is left for the config
/// loader to report. Returns the config file's metadata when keepup stays root, for
/// [`refuse_unsafe_as_root`].
pub fn act_as_config_owner(config: &Path) -> Result<Option<std::fs::Metadata>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let Ok(meta) = std::fs::metadata(config) else {
        return Ok(None);
    };
    if meta.uid() == 0 {
        return Ok(Some(meta));
    }
    let uid = Uid::from_raw(meta.uid());
    let user = User::from_uid(uid).ok().flatten();
    let failed = |what: &str, e: nix::Error| {
        Error::Failed(format!(
            "cannot act as {} (the owner of {}): {what}: {}",
            user.as_ref()
                .map_or_else(|| uid.to_string(), |u| u.name.clone()),
            config.display(),
            e.desc()
        ))
    };
    let gid = user.as_ref().map_or(Gid::from_raw(meta.gid()), |u| u.gid);
    let groups = match &user {
        Some(u) => CString::new(u.name.as_str())
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, gid).ok())
            .unwrap_or_else(|| vec![gid]),
        None => vec![gid],
    };
    // Groups and gid while still root; the uid last, real, effective and saved alike, so there
    // is no way back.
    nix::unistd::setgroups(&groups).map_err(|e| failed("setting groups", e))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| failed("setting the group id", e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| failed("setting the user id", e))?;
    // The switch must be for good: a way back to root would let her service's keepup act as
    // root.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::Failed(format!(
            "acting as the owner of {}: root could be regained after giving it up; refusing to go on",
            config.display()
        )));
    }
    if let Some(user) = user {
        // SAFETY: keepup is single-threaded here (the first thing a command does), so nothing
        // reads the environment while it changes.
        unsafe {
            std::env::set_var("HOME", &user.dir);
            std::env::set_var("USER", &user.name);
            std::env::set_var("LOGNAME", &user.name);
            std::env::set_var("SHELL", &user.shell);
        }
    }
    Ok(None)
}

/// A path that root, acting on a root-owned config, will trust: what it is (for the message),
/// where, and its metadata when the caller already has it.
pub struct TrustedPath<'a> {
    pub what: &'static str,
    pub path: &'a Path,
    pub meta: Option<std::fs::Metadata>,
}

/// Acting as root, refuses any of `paths` that another user can write: a config error on
/// `config_file` naming the path and the fix. A path that does not exist yet is made by root,
/// safely, and passes.
pub fn refuse_unsafe_as_root(config_file: &Path, paths: Vec<TrustedPath<'_>>) -> Result<()> {
    for TrustedPath { what, path, meta } in paths {
        let Some(meta) = meta.or_else(|| std::fs::metadata(path).ok()) else {
            continue;
        };
        let why = if meta.uid() != 0 {
            Some(format!(
                "is owned by {}; chown root {}",
                user_name(meta.uid()),
                path.display()
            ))
        } else if meta.mode() & 0o022 != 0 && !meta.file_type().is_symlink() {
            Some(format!(
                "is writable by group or others (mode {:04o}); chmod go-w {}",
                meta.mode() & 0o7777,
                path.display()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::Config {
                file: config_file.to_path_buf(),
                message: format!(
                    "the {what} {} {why}: keepup runs as root, and another user could make it \
                     run their program",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// The error for `action` on a state file that failed with `err`: when the acting user may not
/// (EACCES, EPERM), it says whose the file (or its folder) is, and the fix.
#[must_use]
pub fn io_error(action: &'static str, path: &Path, err: io::Error) -> Error {
    if err.kind() != io::ErrorKind::PermissionDenied {
        return Error::io(action, path)(err);
    }
    let me = user_name(euid());
    let folder = path.parent().unwrap_or(Path::new("/"));
    let (what, subject, fix) = if let Ok(meta) = std::fs::metadata(path) {
        (
            "it",
            meta,
            format!(
                "remove it as its owner (sudo rm {}) or give it to {me} (sudo chown {me} {})",
                path.display(),
                path.display()
            ),
        )
    } else if let Ok(meta) = std::fs::metadata(folder) {
        (
            "its folder",
            meta,
            format!(
                "give the folder to {me} (sudo chown {me} {}), or set state_dir to a folder \
                 {me} owns",
                folder.display()
            ),
        )
    } else {
        return Error::io(action, path)(err);
    };
    Error::Failed(format!(
        "{action} {}: permission denied: {what} is owned by {} (uid {}), mode {:04o}, and keepup \
         runs as {me}: {fix}",
        path.display(),
        user_name(subject.uid()),
        subject.uid(),
        subject.mode() & 0o7777
    ))
}

#[must_use]
pub fn user_name(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}
