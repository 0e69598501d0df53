//! [`LogStoreError`]: what can go wrong in the log store, naming the group and the operation.
//!
//! openraft's storage traits speak `std::io::Error`; every error leaves this layer as an
//! `io::Error` whose source is a `LogStoreError`, so the context survives into openraft's
//! `StorageError` and the logs.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::GroupId;

/// An error of the sled-backed Raft log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The sled database could not be opened (missing permissions, locked by another process,
    /// corrupt beyond sled's recovery).
    #[error("open log db at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// The database was written by an incompatible version of this crate.
    #[error("log db at {path} has format {found:?}; this build reads format {expected:?}")]
    Format {
        path: PathBuf,
        found: Vec<u8>,
        expected: &'static [u8],
    },

    /// `LogDb::open` was called outside a tokio runtime, so the flusher cannot be started.
    #[error("log db at {path} must be opened inside a tokio runtime")]
    NoRuntime { path: PathBuf },

    /// A sled read or write failed.
    #[error("group {group_id}: {action}: {source}")]
    Sled {
        group_id: GroupId,
        action: String,
        #[source]
        source: sled::Error,
    },

    /// A value could not be encoded (bincode 2, standard configuration).
    #[error("group {group_id}: encode {what}: {source}")]
    Encode {
        group_id: GroupId,
        what: String,
        #[source]
        source: bincode::error::EncodeError,
    },

    /// A stored value could not be decoded: corruption, or a format change.
    #[error("group {group_id}: decode {what}: {source}")]
    Decode {
        group_id: GroupId,
        what: String,
        #[source]
        source: bincode::error::DecodeError,
    },

    /// The stored log breaks an invariant of the log itself (a key that is not its entry's
    /// index, a hole in a range).
    #[error("group {group_id}: corrupt log: {reason}")]
    Corrupt { group_id: GroupId, reason: String },

    /// The fsync that was to make a write durable failed; the write must be considered lost.
    #[error("group {group_id}: fsync after {action} failed: {source}")]
    Flush {
        group_id: GroupId,
        action: String,
        #[source]
        source: Arc<io::Error>,
    },

    /// A restore was asked to seed a group whose log already holds entries, a vote or a
    /// purge: only a new node's empty log is seeded (`crate::restore`).
    #[error("group {group_id}: the log is not empty; a restore seeds only the log of a new node")]
    NotEmpty { group_id: GroupId },

    /// The log db was closed (or its flusher stopped) before the write could be made durable.
    #[error("group {group_id}: log db closed before {action} was durable")]
    Closed { group_id: GroupId, action: String },
}

impl From<LogStoreError> for io::Error {
    fn from(error: LogStoreError) -> io::Error {
        let kind = match &error {
            LogStoreError::Decode { .. } | LogStoreError::Corrupt { .. } | LogStoreError::Format { .. } => {
                io::ErrorKind::InvalidData
            }
            LogStoreError::Flush { source, .. } => source.kind(),
            LogStoreError::Sled {
                source: sled::Error::Io(source),
                ..
            }
            | LogStoreError::Open {
                source: sled::Error::Io(source),
                ..
            } => source.kind(),
            LogStoreError::Closed { .. } => io::ErrorKind::BrokenPipe,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}
