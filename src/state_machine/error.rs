//! `SmError`: failures of the state machine's storage. Rejections of transactions are not errors
//! (they are `Outcome::Rejected` values); these are I/O failures and damaged files.

use std::io;
use std::path::PathBuf;

use crate::index::{IndexError, LogPosition};

#[derive(Debug, thiserror::Error)]
pub enum SmError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{path}: I/O error while {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{file}: corrupt manifest: {reason}")]
    CorruptManifest { file: PathBuf, reason: String },
    #[error("snapshot stream is invalid: {reason}")]
    CorruptSnapshot { reason: String },
    #[error("{dir}: group directory is inconsistent: {reason}")]
    Inconsistent { dir: PathBuf, reason: String },
    #[error("{dir}: locked by another process")]
    Locked { dir: PathBuf },
    #[error("log gap: entry {entry} follows applied position {applied:?}")]
    Gap {
        applied: Option<LogPosition>,
        entry: LogPosition,
    },
}

impl SmError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> SmError {
        SmError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
