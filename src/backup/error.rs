//! `BackupError`: why a backup could not be taken, checked or restored. Each variant names the
//! file (or flag, or request) and what is wrong with it.

use std::io;
use std::path::PathBuf;

use crate::bodies::{BodyError, BodyId};
use crate::index::LogPosition;
use crate::state_machine::SmError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file the manifest lists (or the manifest itself) is not there.
    #[error("{}: missing from the backup", path.display())]
    MissingFile { path: PathBuf },
    /// A file is shorter than the manifest says.
    #[error("{}: truncated: {found} of {expected} bytes", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// A file is longer than the manifest says.
    #[error("{}: {found} bytes, the manifest says {expected}", path.display())]
    WrongSize {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// A file's SHA-256 is not the one recorded for it.
    #[error("{}: SHA-256 mismatch: recorded {expected}, the file has {found}", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The manifest (or its checksum file) is not what this release writes.
    #[error("{}: not a valid backup manifest: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: backup format version {found}, and this release reads version {supported}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The manifest describes its message bodies in a form this release does not read (a later
    /// release's): restoring the indexes without them is refused.
    #[error("{}: the backup's message bodies are described as {found}, which this release cannot restore: restore with a newer release", path.display())]
    BodiesUnsupported { path: PathBuf, found: String },
    /// A body file is named for another body than its recorded SHA-256 says it holds.
    #[error("{}: mislabelled body file: its SHA-256 is {sha256}, so it does not hold the body its name says", path.display())]
    BodyMislabelled { path: PathBuf, sha256: String },
    /// A group's records reference a body the backup does not hold.
    #[error("group {group}: its records reference body {id}, which the backup does not hold")]
    BodyNotInBackup { group: u32, id: BodyId },
    /// A member sent other bytes for a body than the body's id says.
    #[error("{url}: body {expected}: the bytes received hash to {actual}")]
    BodyMismatch {
        url: String,
        expected: BodyId,
        actual: BodyId,
    },
    /// No member could serve a body the groups' records reference: the backup is not written.
    #[error("body {id}: no member could serve it ({reasons}); the backup is not written")]
    BodyUnavailable { id: BodyId, reasons: String },
    /// Storing a restored body in the new node's body store failed.
    #[error("{what}: {source}")]
    BodyStore {
        what: String,
        #[source]
        source: BodyError,
    },
    /// A group's copy passed its SHA-256 but is not a sound snapshot stream of the group the
    /// manifest describes (written damaged, or by a broken release).
    #[error("{}: group {group}: {reason}", path.display())]
    CorruptGroup {
        path: PathBuf,
        group: u32,
        reason: String,
    },
    /// A group is in a log encoding this release cannot apply.
    #[error("group {group}: log encoding {encoding}, and this release applies encodings up to {max}: restore with a newer release")]
    EncodingTooNew { group: u32, encoding: u8, max: u8 },
    #[error("{}: I/O error while {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// `ctl backup --out` names a directory that holds files already.
    #[error("--out {}: exists and is not empty; a backup goes into a new directory", path.display())]
    OutNotEmpty { path: PathBuf },
    /// A request to the node could not be sent or its answer not read.
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    /// The node answered with an error: its status and JSON error.
    #[error("GET {url}: HTTP {status}: {code}: {message}")]
    Refused {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The node answered, but not as a backup expects.
    #[error("{url}: unexpected answer: {reason}")]
    UnexpectedAnswer { url: String, reason: String },
    /// The node's copy of a group stands below the read index it obtained: not a linearizable
    /// cut (a bug of the node; the backup is not written).
    #[error("group {group}: the copy is at {cut:?}, below the read index {read_index}")]
    CutBelowReadIndex {
        group: u32,
        cut: Option<LogPosition>,
        read_index: u64,
    },
    /// `restore --data-dir` names a directory that holds files already.
    #[error("--data-dir {}: exists and is not empty; a restore seeds the data directory of a new node", path.display())]
    DataDirNotEmpty { path: PathBuf },
    /// The new cluster's members, as the flags give them, are not a membership.
    #[error("{reason}")]
    Members { reason: String },
    /// Seeding the new node's Raft logs failed.
    #[error(transparent)]
    Seed(#[from] dovetail_raft::restore::RestoreError),
    /// Writing a group's restored state failed.
    #[error(transparent)]
    State(#[from] SmError),
}

impl BackupError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> BackupError {
        BackupError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
