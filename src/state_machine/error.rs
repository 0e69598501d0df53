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

/// Whether an I/O error means the file system is out of space (or quota).
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

impl SmError {
    /// Whether the failure is a full disk: the operation changed nothing and may be retried
    /// once there is space again.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            SmError::Io { source, .. } | SmError::Index(IndexError::Io { source, .. }) => {
                is_out_of_space(source)
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> SmError {
        SmError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
