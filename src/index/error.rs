//! `IndexError`: everything that can go wrong reading or writing one mailbox index file.

use std::io;
use std::path::PathBuf;

/// An error of the index layer. Every variant names the file and, where it applies, the offset or
/// field, so an operator can find the damage with `dovetail dump`.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{file}: I/O error while {action}: {source}")]
    Io {
        file: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{file}: truncated: {what} needs {needed} bytes but the file has {actual}")]
    Truncated {
        file: PathBuf,
        what: &'static str,
        needed: u64,
        actual: u64,
    },
    #[error("{file}: not a Dovetail index file (magic {found:02x?})")]
    Foreign { file: PathBuf, found: Vec<u8> },
    #[error("{file}: index format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{file}: checksum mismatch in {region}: stored {stored:#x}, computed {computed:#x}")]
    ChecksumMismatch {
        file: PathBuf,
        region: &'static str,
        stored: u64,
        computed: u64,
    },
    #[error("{file}: corrupt at offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl IndexError {
    pub(crate) fn io(file: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        IndexError::Io {
            file: file.into(),
            action,
            source,
        }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        IndexError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
