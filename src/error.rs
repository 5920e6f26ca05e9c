//! keepup's one error type. Each variant carries what a user needs to act on it: the file, the
//! action that failed, and the OS's reason. Every variant maps to one exit code.

use std::io;
use std::path::PathBuf;

use crate::exit_code;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config cannot be used; nothing was started, stopped, written or removed.
    #[error("{}: {message}", file.display())]
    Config { file: PathBuf, message: String },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An action was tried and did not succeed; the message says what happened.
    #[error("{0}")]
    Failed(String),

    /// keepup could not launch the service for a reason of its own (no space for its files,
    /// no process slot for a fork): the service did not fail, so the crash-loop guard does not
    /// count it, and a revival is tried again soon.
    #[error("{0}")]
    NotLaunched(String),
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } => exit_code::CONFIG,
            Error::Io { .. } | Error::Failed(_) | Error::NotLaunched(_) => exit_code::FAILED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
