//! Checking a backup before anything is restored from it ([`verify_backup`]): the manifest
//! against its checksum file, every file's size and SHA-256 against the manifest, and every
//! group's snapshot stream read through with every check an install makes and each index's own
//! full check (`state_machine::snapshot::check_snapshot`), agreeing with what the manifest says
//! of the group, and every body the groups' records reference present (its file's size and
//! SHA-256 checked like every file's, its name being the first 128 bits of that SHA-256, see
//! `BackupManifest::check`). [`check_copy`] is the same check of one group's stream, which
//! `ctl backup` also makes of each copy it receives before it records it (and learns from it
//! which bodies to copy).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use dovetail_raft::restore::{read_cut, GroupMembers};
use sha2::{Digest, Sha256};

use super::error::BackupError;
use super::manifest::{
    sha256_hex, BackupManifest, FileDigest, GroupCopy, MANIFEST_CHECKSUM_FILE, MANIFEST_FILE,
};
use crate::bodies::BodyId;
use crate::index::LogPosition;
use crate::state_machine::snapshot::check_snapshot;

/// What one group's snapshot stream holds, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFacts {
    pub cut: LogPosition,
    pub log_encoding: u8,
    pub membership: GroupMembers,
    pub users: u64,
    pub mailboxes: u64,
    /// The consensus metadata the group's state stores at the cut.
    pub consensus_meta: Vec<u8>,
    /// The message bodies the group's records reference at the cut.
    pub bodies: BTreeSet<BodyId>,
}

/// A backup whose every file checked out.
#[derive(Debug)]
pub struct VerifiedBackup {
    pub dir: PathBuf,
    pub manifest: BackupManifest,
    /// One per group, in group order.
    pub groups: Vec<CopyFacts>,
    /// The bytes of all files checked.
    pub bytes: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, BackupError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BackupError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => BackupError::io(path, "reading", e),
    })
}

/// Reads and checks the manifest of the backup in `dir` (see [`BackupManifest::decode`]).
pub fn read_manifest(dir: &Path) -> Result<BackupManifest, BackupError> {
    let bytes = read(&dir.join(MANIFEST_FILE))?;
    let checksum_path = dir.join(MANIFEST_CHECKSUM_FILE);
    let checksum = String::from_utf8(read(&checksum_path)?).map_err(|_| BackupError::Malformed {
        path: checksum_path,
        reason: "not text".into(),
    })?;
    BackupManifest::decode(dir, &bytes, &checksum)
}

/// Checks one listed file's size, then its SHA-256, reading it in 1 MiB pieces.
fn check_file(dir: &Path, file: &FileDigest) -> Result<(), BackupError> {
    let path = dir.join(&file.path);
    let mut opened = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BackupError::MissingFile { path: path.clone() },
        _ => BackupError::io(&path, "opening", e),
    })?;
    let found = opened
        .metadata()
        .map_err(|e| BackupError::io(&path, "reading the size of", e))?
        .len();
    if found < file.bytes {
        return Err(BackupError::Truncated {
            path,
            expected: file.bytes,
            found,
        });
    }
    if found > file.bytes {
        return Err(BackupError::WrongSize {
            path,
            expected: file.bytes,
            found,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = opened
            .read(&mut buf)
            .map_err(|e| BackupError::io(&path, "reading", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let found = sha256_hex(hasher.finalize());
    if found != file.sha256 {
        return Err(BackupError::ChecksumMismatch {
            path,
            expected: file.sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// Reads group `group`'s snapshot stream at `path` through, checking everything
/// (`check_snapshot`), and returns what the manifest records of it.
pub fn check_copy(path: &Path, group: u32) -> Result<CopyFacts, BackupError> {
    let corrupt = |reason: String| BackupError::CorruptGroup {
        path: path.to_path_buf(),
        group,
        reason,
    };
    let file = File::open(path).map_err(|e| BackupError::io(path, "opening", e))?;
    let checked =
        check_snapshot(BufReader::with_capacity(1 << 20, file)).map_err(|e| corrupt(e.to_string()))?;
    let Some(cut) = checked.header.applied else {
        return Err(corrupt(
            "the group has applied nothing: not a copy of a running group".into(),
        ));
    };
    let manifest = &checked.manifest;
    let consensus = read_cut(&manifest.consensus_meta).map_err(|e| corrupt(e.to_string()))?;
    if consensus.last_applied != cut {
        return Err(corrupt(format!(
            "the state is at {cut} but its consensus metadata at {}",
            consensus.last_applied
        )));
    }
    Ok(CopyFacts {
        cut,
        log_encoding: manifest.encoding,
        membership: consensus.members,
        users: manifest.users.len() as u64,
        mailboxes: checked.mailboxes as u64,
        consensus_meta: manifest.consensus_meta.clone(),
        bodies: checked.bodies,
    })
}

/// Whether the manifest's entry says what the group's stream holds.
fn check_agrees(path: &Path, copy: &GroupCopy, facts: &CopyFacts) -> Result<(), BackupError> {
    let recorded = (
        copy.cut,
        copy.log_encoding,
        &copy.membership,
        copy.users,
        copy.mailboxes,
    );
    let found = (
        facts.cut,
        facts.log_encoding,
        &facts.membership,
        facts.users,
        facts.mailboxes,
    );
    if recorded != found {
        return Err(BackupError::CorruptGroup {
            path: path.to_path_buf(),
            group: copy.group,
            reason: format!("the manifest records {recorded:?}, the copy holds {found:?}"),
        });
    }
    Ok(())
}

/// Checks the whole backup in `dir` for a release that applies log encodings up to
/// `max_encoding`; reads every byte, writes nothing.
pub fn verify_backup(dir: &Path, max_encoding: u8) -> Result<VerifiedBackup, BackupError> {
    let manifest = read_manifest(dir)?;
    for copy in &manifest.groups {
        if copy.log_encoding > max_encoding {
            return Err(BackupError::EncodingTooNew {
                group: copy.group,
                encoding: copy.log_encoding,
                max: max_encoding,
            });
        }
    }
    for file in &manifest.files {
        check_file(dir, file)?;
    }
    let mut groups = Vec::with_capacity(manifest.groups.len());
    for copy in &manifest.groups {
        let path = dir.join(&copy.file);
        let facts = check_copy(&path, copy.group)?;
        check_agrees(&path, copy, &facts)?;
        groups.push(facts);
    }
    // A backup of this release holds every body its records reference (one of an earlier
    // release, `bodies: null`, held none: its indexes are restored alone, as that release did).
    if manifest.bodies.is_some() {
        let held: BTreeSet<BodyId> = manifest.body_files().into_iter().map(|(id, _)| id).collect();
        for (copy, facts) in manifest.groups.iter().zip(&groups) {
            if let Some(id) = facts.bodies.difference(&held).next() {
                return Err(BackupError::BodyNotInBackup {
                    group: copy.group,
                    id: *id,
                });
            }
        }
    }
    Ok(VerifiedBackup {
        dir: dir.to_path_buf(),
        bytes: manifest.files.iter().map(|f| f.bytes).sum(),
        manifest,
        groups,
    })
}
