//! The snapshot stream: a whole group (manifest and every mailbox file) as one byte stream with a
//! CRC32C per file. The same bytes are the local checkpoint (`checkpoint.snap`) and what a leader
//! ships to a follower that is too far behind (the seeds' "full resync").
//!
//! ```text
//! magic "DVTLSNAP" | version u32 | has_applied u8 | term u64 | index u64 | file_count u32
//! file_count times: name_len u16 | name | len u64 | crc32c u32 | bytes
//! trailer "DVTLEND\0"
//! ```
//! Integers little-endian. File names are `manifest` or `<32 hex digits>.idx`; anything else
//! (a path, `..`) is refused, so a hostile stream cannot write outside the target directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use super::error::SmError;
use super::group_state::{GroupState, MailboxFiles};
use super::manifest::Manifest;
use crate::bodies::BodyId;
use crate::index::{Header, LogPosition, MailboxIndex, VecStorage};
use crate::state_machine::apply::hex;
use crate::state_machine::MemoryFiles;
use crate::txn::Guid;

const MAGIC: [u8; 8] = *b"DVTLSNAP";
const TRAILER: [u8; 8] = *b"DVTLEND\0";
const VERSION: u32 = 1;
/// Name of the manifest inside a snapshot and a live directory.
pub const MANIFEST_FILE: &str = "manifest";
/// Largest file a snapshot may carry (bounds memory when reading a hostile stream).
const MAX_FILE_LEN: u64 = 1 << 36;

/// The fixed start of a snapshot stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub applied: Option<LogPosition>,
    pub file_count: u32,
}

/// The file name of a mailbox's index.
pub fn index_file_name(guid: &[u8; 16]) -> String {
    format!("{}.idx", hex(guid))
}

/// Parses `<32 hex>.idx` back to a GUID.
pub fn parse_index_file_name(name: &str) -> Option<[u8; 16]> {
    let stem = name.strip_suffix(".idx")?;
    if stem.len() != 32
        || !stem
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut guid = [0u8; 16];
    for (i, byte) in guid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&stem[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(guid)
}

impl<F: MailboxFiles> GroupState<F> {
    /// Writes the group as a snapshot stream; returns the bytes written.
    pub fn export_snapshot<W: Write>(&self, out: W) -> io::Result<u64> {
        let manifest = self.manifest.encode();
        let mut stream = StreamWriter::new(out, self.manifest.applied, 1 + self.mailboxes.len() as u32)?;
        stream.file(MANIFEST_FILE, &manifest)?;
        for (guid, index) in &self.mailboxes {
            stream.file(&index_file_name(guid), index.bytes())?;
        }
        stream.finish()
    }
}

/// Writes a snapshot stream: the header, then each file (name, length, CRC32C, bytes), then the
/// trailer. The caller writes as many files as the header announced.
struct StreamWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> StreamWriter<W> {
    fn new(out: W, applied: Option<LogPosition>, file_count: u32) -> io::Result<StreamWriter<W>> {
        let mut stream = StreamWriter { out, written: 0 };
        stream.put(&MAGIC)?;
        stream.put(&VERSION.to_le_bytes())?;
        stream.put(&[u8::from(applied.is_some())])?;
        let position = applied.unwrap_or_default();
        stream.put(&position.term.to_le_bytes())?;
        stream.put(&position.index.to_le_bytes())?;
        stream.put(&file_count.to_le_bytes())?;
        Ok(stream)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.written += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(&(name.len() as u16).to_le_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&(bytes.len() as u64).to_le_bytes())?;
        self.put(&crc32c::crc32c(bytes).to_le_bytes())?;
        self.put(bytes)
    }

    /// Writes the trailer and flushes; returns the bytes written in all.
    fn finish(mut self) -> io::Result<u64> {
        self.put(&TRAILER)?;
        self.out.flush()?;
        Ok(self.written)
    }
}

/// What a whole snapshot stream holds, as [`check_snapshot`] found it.
#[derive(Debug)]
pub struct CheckedSnapshot {
    pub header: SnapshotHeader,
    pub manifest: Manifest,
    /// How many mailbox index files the stream carries.
    pub mailboxes: usize,
    /// The message bodies the indexes' records reference (`MailboxIndex::body_ids`), each once.
    pub bodies: BTreeSet<BodyId>,
}

/// Reads a snapshot stream through and checks everything an install checks, and more: every
/// file's name, length and CRC32C, the trailer, the manifest (once, agreeing with the stream's
/// header on the applied position), each index file's own full check (`MailboxIndex::verify`:
/// digests, order, counters), that it is the index its name says and records a position at or
/// below the manifest's, and that the manifest names exactly the mailbox files present. Holds one
/// file in memory at a time; collects the body ids the records reference on the way (16 bytes of
/// each checked record). For a backup, whose files are checked before anything is restored.
pub fn check_snapshot<R: Read>(input: R) -> Result<CheckedSnapshot, SmError> {
    let mut reader = SnapshotReader::new(input)?;
    let header = reader.header();
    let mut manifest = None;
    let mut guids = BTreeSet::new();
    let mut bodies = BTreeSet::new();
    while let Some((name, bytes)) = reader.next_file()? {
        if name == MANIFEST_FILE {
            if manifest.is_some() {
                return Err(corrupt("two manifests"));
            }
            manifest = Some(Manifest::decode(name.as_ref(), &bytes)?);
            continue;
        }
        let guid = parse_index_file_name(&name).expect("reader checked names");
        let index = MailboxIndex::open(VecStorage::with_path(bytes, name.clone().into()))?;
        index.verify()?;
        if index.header().mailbox_guid != guid {
            return Err(corrupt(&format!("{name} holds the index of another mailbox")));
        }
        if Some(index.header().applied) > header.applied {
            return Err(corrupt(&format!(
                "{name} records position {} beyond the snapshot's {:?}",
                index.header().applied,
                header.applied
            )));
        }
        if !guids.insert(guid) {
            return Err(corrupt(&format!("{name} appears twice")));
        }
        bodies.extend(index.body_ids().map(BodyId));
    }
    let manifest = manifest.ok_or_else(|| corrupt("no manifest"))?;
    if manifest.applied != header.applied {
        return Err(corrupt(
            "manifest and stream header disagree on the applied position",
        ));
    }
    check_files_match(&manifest, guids.clone())?;
    Ok(CheckedSnapshot {
        header,
        manifest,
        mailboxes: guids.len(),
        bodies,
    })
}

/// Copies the snapshot stream `input` to `out` with its manifest (which must be the first file,
/// as [`GroupState::export_snapshot`] writes it) changed by `edit`, every other file as it is;
/// returns the edited manifest. Every file is checked as it is read (names, lengths, CRC32C) and
/// written with its new CRC32C. `edit` may change what travels beside the state (such as the
/// consensus metadata), never the applied position.
pub fn repack_snapshot<R: Read, W: Write>(
    input: R,
    out: W,
    edit: impl FnOnce(&mut Manifest),
) -> Result<Manifest, SmError> {
    let writing = |e| SmError::io("<snapshot stream>", "writing", e);
    let mut reader = SnapshotReader::new(input)?;
    let header = reader.header();
    let mut manifest = match reader.next_file()? {
        Some((name, bytes)) if name == MANIFEST_FILE => Manifest::decode(name.as_ref(), &bytes)?,
        _ => return Err(corrupt("the first file is not the manifest")),
    };
    if manifest.applied != header.applied {
        return Err(corrupt(
            "manifest and stream header disagree on the applied position",
        ));
    }
    let applied = manifest.applied;
    edit(&mut manifest);
    assert_eq!(
        manifest.applied, applied,
        "a repack must not move the applied position"
    );
    let mut stream = StreamWriter::new(out, header.applied, header.file_count).map_err(writing)?;
    stream.file(MANIFEST_FILE, &manifest.encode()).map_err(writing)?;
    while let Some((name, bytes)) = reader.next_file()? {
        stream.file(&name, &bytes).map_err(writing)?;
    }
    stream.finish().map_err(writing)?;
    Ok(manifest)
}

impl GroupState<MemoryFiles> {
    /// Builds an in-memory group from a snapshot stream, checking every file ([`StreamCheck`]).
    pub fn import_snapshot<R: Read>(input: R) -> Result<GroupState<MemoryFiles>, SmError> {
        let mut reader = SnapshotReader::new(input)?;
        let mut check = StreamCheck::new(reader.header());
        let mut mailboxes = std::collections::BTreeMap::new();
        while let Some((name, bytes)) = reader.next_file()? {
            if let CheckedFile::Index { guid, index } = check.file(&name, bytes)? {
                mailboxes.insert(guid, *index);
            }
        }
        let manifest = check.finish()?;
        Ok(GroupState::new(MemoryFiles, manifest, mailboxes))
    }
}

/// Reads only the manifest of a snapshot stream (it is always the first file).
pub fn read_snapshot_manifest<R: Read>(input: R) -> Result<Manifest, SmError> {
    let mut reader = SnapshotReader::new(input)?;
    match reader.next_file()? {
        Some((name, bytes)) if name == MANIFEST_FILE => Manifest::decode(name.as_ref(), &bytes),
        _ => Err(corrupt("the first file is not the manifest")),
    }
}

/// A file of a snapshot stream that passed [`StreamCheck::file`].
#[derive(Debug)]
pub enum CheckedFile {
    /// The manifest, as it was in the stream (the check keeps it decoded).
    Manifest { bytes: Vec<u8> },
    /// A mailbox index whose header opened and names the mailbox its file name does.
    Index {
        guid: Guid,
        index: Box<MailboxIndex<VecStorage>>,
    },
}

impl CheckedFile {
    /// The file's bytes, as the stream carried them.
    pub fn bytes(&self) -> &[u8] {
        match self {
            CheckedFile::Manifest { bytes } => bytes,
            CheckedFile::Index { index, .. } => index.bytes(),
        }
    }
}

/// The checks of a whole snapshot stream beyond each file's own checksum, made by every reader
/// of one — install and restore (`group_machine::unpack_into`), import
/// ([`GroupState::import_snapshot`]) and `dovetail dump` — so that none of them accepts a stream
/// another refuses. File by file: the manifest comes first and once, no index file comes twice,
/// and an index file's header opens (O(1)) and names the mailbox of its file name. At the end:
/// the stream header and the manifest agree on the applied position, the manifest names exactly
/// the index files present, and each of them agrees with the manifest
/// ([`check_index_against_manifest`]). The stream header carries no checksum of its own: these
/// cross-checks are what cover it.
#[derive(Debug)]
pub struct StreamCheck {
    header: SnapshotHeader,
    manifest: Option<Manifest>,
    /// The header of every index file so far.
    indexes: BTreeMap<Guid, Header>,
}

impl StreamCheck {
    pub fn new(header: SnapshotHeader) -> StreamCheck {
        StreamCheck {
            header,
            manifest: None,
            indexes: BTreeMap::new(),
        }
    }

    /// Checks the next file of the stream (its name and checksum already checked by
    /// [`SnapshotReader::next_file`]).
    pub fn file(&mut self, name: &str, bytes: Vec<u8>) -> Result<CheckedFile, SmError> {
        if name == MANIFEST_FILE {
            if self.manifest.is_some() || !self.indexes.is_empty() {
                return Err(corrupt("the manifest is not the first file, or comes twice"));
            }
            self.manifest = Some(Manifest::decode(name.as_ref(), &bytes)?);
            return Ok(CheckedFile::Manifest { bytes });
        }
        if self.manifest.is_none() {
            return Err(corrupt("the first file is not the manifest"));
        }
        let guid =
            parse_index_file_name(name).ok_or_else(|| corrupt(&format!("unexpected file name {name:?}")))?;
        let index = MailboxIndex::open(VecStorage::with_path(bytes, PathBuf::from(name)))?;
        if index.header().mailbox_guid != guid {
            return Err(corrupt(&format!("{name} holds the index of another mailbox")));
        }
        if self.indexes.insert(guid, *index.header()).is_some() {
            return Err(corrupt(&format!("{name} comes twice")));
        }
        Ok(CheckedFile::Index {
            guid,
            index: Box::new(index),
        })
    }

    /// The cross-checks of the whole stream, once its last file was read (and the trailer
    /// checked); returns the manifest.
    pub fn finish(self) -> Result<Manifest, SmError> {
        let manifest = self.manifest.ok_or_else(|| corrupt("no manifest"))?;
        if manifest.applied != self.header.applied {
            return Err(corrupt(&format!(
                "the stream header says applied {}, the manifest {}",
                describe(self.header.applied),
                describe(manifest.applied)
            )));
        }
        check_files_match(&manifest, self.indexes.keys().copied().collect())?;
        for (guid, header) in &self.indexes {
            check_index_against_manifest(header, &manifest)
                .map_err(|reason| corrupt(&format!("{}: {reason}", index_file_name(guid))))?;
        }
        Ok(manifest)
    }
}

fn describe(applied: Option<LogPosition>) -> String {
    applied.map_or_else(|| "nothing".to_string(), |a| a.to_string())
}

/// What an index file's header must agree with in its group's manifest: it records a change
/// at or before the manifest's applied position (a file changes only by an entry the group
/// applied), and its UIDVALIDITY is at most the group's high-water mark (every UIDVALIDITY
/// handed out raised it). Checked wherever a group's files are read together: a snapshot
/// stream ([`StreamCheck`]), a group's `live/` at open, `dovetail dump` of a group directory.
pub fn check_index_against_manifest(header: &Header, manifest: &Manifest) -> Result<(), String> {
    let applied = manifest.applied.unwrap_or_default();
    if header.applied > applied {
        return Err(format!(
            "records a change at {}, after the group's applied position {}",
            header.applied,
            describe(manifest.applied)
        ));
    }
    if header.uid_validity > manifest.uid_validity_max {
        return Err(format!(
            "UIDVALIDITY {} is above the group's high-water mark {}",
            header.uid_validity, manifest.uid_validity_max
        ));
    }
    Ok(())
}

/// Checks that the manifest names exactly the mailbox files present.
pub(super) fn check_files_match(manifest: &Manifest, files: BTreeSet<[u8; 16]>) -> Result<(), SmError> {
    let named: BTreeSet<[u8; 16]> = manifest
        .users
        .values()
        .flat_map(|b| b.values().copied())
        .collect();
    if let Some(missing) = named.difference(&files).next() {
        return Err(corrupt(&format!(
            "mailbox file {} is missing",
            index_file_name(missing)
        )));
    }
    if let Some(extra) = files.difference(&named).next() {
        return Err(corrupt(&format!(
            "mailbox file {} is not in the manifest",
            index_file_name(extra)
        )));
    }
    Ok(())
}

fn corrupt(reason: &str) -> SmError {
    SmError::CorruptSnapshot {
        reason: reason.to_string(),
    }
}

/// Reads a snapshot stream file by file, checking names, lengths and checksums.
pub struct SnapshotReader<R: Read> {
    input: R,
    header: SnapshotHeader,
    remaining: u32,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(mut input: R) -> Result<SnapshotReader<R>, SmError> {
        let mut fixed = [0u8; 8 + 4 + 1 + 8 + 8 + 4];
        read_exact(&mut input, &mut fixed, "header")?;
        if fixed[..8] != MAGIC {
            return Err(corrupt("not a Dovetail snapshot (bad magic)"));
        }
        let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4"));
        if version != VERSION {
            return Err(corrupt(&format!("snapshot version {version} is not supported")));
        }
        let applied = match fixed[12] {
            0 => None,
            1 => Some(LogPosition {
                term: u64::from_le_bytes(fixed[13..21].try_into().expect("8")),
                index: u64::from_le_bytes(fixed[21..29].try_into().expect("8")),
            }),
            other => return Err(corrupt(&format!("bad applied flag {other}"))),
        };
        let file_count = u32::from_le_bytes(fixed[29..33].try_into().expect("4"));
        let header = SnapshotHeader { applied, file_count };
        Ok(SnapshotReader {
            input,
            header,
            remaining: file_count,
        })
    }

    pub fn header(&self) -> SnapshotHeader {
        self.header
    }

    /// The next file's name and verified bytes, or `None` after the last (trailer checked).
    pub fn next_file(&mut self) -> Result<Option<(String, Vec<u8>)>, SmError> {
        if self.remaining == 0 {
            let mut trailer = [0u8; 8];
            read_exact(&mut self.input, &mut trailer, "trailer")?;
            if trailer != TRAILER {
                return Err(corrupt("bad trailer"));
            }
            return Ok(None);
        }
        self.remaining -= 1;
        let mut len = [0u8; 2];
        read_exact(&mut self.input, &mut len, "file name length")?;
        let mut name = vec![0u8; u16::from_le_bytes(len) as usize];
        read_exact(&mut self.input, &mut name, "file name")?;
        let name = String::from_utf8(name).map_err(|_| corrupt("file name is not UTF-8"))?;
        if name != MANIFEST_FILE && parse_index_file_name(&name).is_none() {
            return Err(corrupt(&format!("unexpected file name {name:?}")));
        }
        let mut meta = [0u8; 12];
        read_exact(&mut self.input, &mut meta, "file length and checksum")?;
        let file_len = u64::from_le_bytes(meta[..8].try_into().expect("8"));
        let stored = u32::from_le_bytes(meta[8..].try_into().expect("4"));
        if file_len > MAX_FILE_LEN {
            return Err(corrupt(&format!("{name}: length {file_len} is implausible")));
        }
        // Read through `take` rather than into a buffer of the claimed size: a damaged or hostile
        // length must end the stream with an error, not allocate gigabytes.
        let mut bytes = Vec::new();
        let read = (&mut self.input)
            .take(file_len)
            .read_to_end(&mut bytes)
            .map_err(|e| SmError::io("<snapshot stream>", "reading", e))?;
        if read as u64 != file_len {
            return Err(corrupt(&format!(
                "{name}: stream ends after {read} of {file_len} bytes"
            )));
        }
        let computed = crc32c::crc32c(&bytes);
        if computed != stored {
            return Err(corrupt(&format!(
                "{name}: checksum mismatch (stored {stored:#x}, computed {computed:#x})"
            )));
        }
        Ok(Some((name, bytes)))
    }
}

fn read_exact<R: Read>(input: &mut R, buf: &mut [u8], what: &str) -> Result<(), SmError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt(&format!("stream ends inside the {what}")),
        _ => SmError::io("<snapshot stream>", "reading", e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::test_txns::{append, create_inbox};

    /// A group with INBOX and three messages, at (1, 4), as a snapshot stream.
    fn stream() -> Vec<u8> {
        let mut group = GroupState::in_memory();
        group.apply(LogPosition::new(1, 1), &create_inbox()).unwrap();
        for i in 2..=4 {
            group
                .apply(LogPosition::new(1, i), &append("c", i, i as u8))
                .unwrap();
        }
        let mut bytes = Vec::new();
        group.export_snapshot(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_whole_stream_checks_and_any_damage_is_named() {
        let bytes = stream();
        let checked = check_snapshot(&bytes[..]).unwrap();
        assert_eq!(checked.header.applied, Some(LogPosition::new(1, 4)));
        assert_eq!(checked.manifest.applied, checked.header.applied);
        assert_eq!((checked.mailboxes, checked.header.file_count), (1, 2));
        // Every truncation, and a flipped byte anywhere past the header's position fields, is
        // refused (a flip in the header's position is caught by the manifest's disagreement).
        for len in 0..bytes.len() {
            assert!(check_snapshot(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for offset in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[offset] ^= 0x10;
            assert!(check_snapshot(&damaged[..]).is_err(), "byte {offset} flipped");
        }
    }

    /// The files of a small group's snapshot: the manifest, then INBOX's index.
    fn files() -> (SnapshotHeader, Vec<(String, Vec<u8>)>) {
        let mut group = GroupState::in_memory();
        group.apply(LogPosition::new(1, 1), &create_inbox()).unwrap();
        group.apply(LogPosition::new(1, 2), &append("c", 2, 2)).unwrap();
        let mut stream = Vec::new();
        group.export_snapshot(&mut stream).unwrap();
        let mut reader = SnapshotReader::new(stream.as_slice()).unwrap();
        let mut files = Vec::new();
        while let Some(file) = reader.next_file().unwrap() {
            files.push(file);
        }
        (reader.header(), files)
    }

    fn check(header: SnapshotHeader, files: &[(String, Vec<u8>)]) -> Result<Manifest, SmError> {
        let mut check = StreamCheck::new(header);
        for (name, bytes) in files {
            check.file(name, bytes.clone())?;
        }
        check.finish()
    }

    fn refused(result: Result<Manifest, SmError>, reason: &str) {
        match result {
            Err(SmError::CorruptSnapshot { reason: found }) => assert!(found.contains(reason), "{found}"),
            other => panic!("expected CorruptSnapshot ({reason}), got {other:?}"),
        }
    }

    #[test]
    fn a_repacked_stream_carries_the_edited_manifest_and_the_same_files() {
        let bytes = stream();
        let mut repacked = Vec::new();
        let manifest = repack_snapshot(&bytes[..], &mut repacked, |m| {
            m.consensus_meta = b"new members".to_vec()
        })
        .unwrap();
        assert_eq!(manifest.consensus_meta, b"new members");
        let checked = check_snapshot(&repacked[..]).unwrap();
        assert_eq!(checked.manifest, manifest);
        let (original, copy) = (
            GroupState::import_snapshot(&bytes[..]).unwrap(),
            GroupState::import_snapshot(&repacked[..]).unwrap(),
        );
        let images = |group: &GroupState<MemoryFiles>| -> Vec<([u8; 16], Vec<u8>)> {
            group
                .mailboxes()
                .iter()
                .map(|(guid, index)| (*guid, index.bytes().to_vec()))
                .collect()
        };
        assert_eq!(images(&copy), images(&original), "the mailboxes are the same");
        assert_eq!(copy.applied(), original.applied());
        // Unchanged but for the manifest: the same stream again.
        let mut again = Vec::new();
        repack_snapshot(&bytes[..], &mut again, |_| {}).unwrap();
        assert_eq!(again, bytes);
    }

    #[test]
    fn a_stream_is_checked_as_a_whole() {
        let (header, files) = files();
        assert_eq!(check(header, &files).unwrap().applied, header.applied);
        let (manifest, inbox) = (files[0].clone(), files[1].clone());
        refused(
            check(header, &[inbox.clone(), manifest.clone()]),
            "the first file is not the manifest",
        );
        refused(
            check(header, &[manifest.clone(), manifest.clone(), inbox.clone()]),
            "comes twice",
        );
        refused(
            check(header, &[manifest.clone(), inbox.clone(), inbox.clone()]),
            "comes twice",
        );
        refused(check(header, std::slice::from_ref(&manifest)), "is missing");
        refused(
            check(header, std::slice::from_ref(&inbox)),
            "the first file is not the manifest",
        );
        let other = SnapshotHeader {
            applied: Some(LogPosition::new(1, 3)),
            ..header
        };
        refused(
            check(other, &files),
            "the stream header says applied 1-3, the manifest 1-2",
        );
        let none = SnapshotHeader {
            applied: None,
            ..header
        };
        refused(check(none, &files), "applied nothing, the manifest 1-2");
        // An index file under the name of another mailbox.
        let renamed = (index_file_name(&[0xee; 16]), inbox.1.clone());
        match check(header, &[manifest.clone(), renamed]) {
            Err(SmError::CorruptSnapshot { reason }) => {
                assert!(reason.contains("another mailbox"), "{reason}")
            }
            other => panic!("renamed index: got {other:?}"),
        }
    }

    #[test]
    fn an_index_must_agree_with_its_manifest() {
        let (_, files) = files();
        let manifest = Manifest::decode("m".as_ref(), &files[0].1).unwrap();
        let index = MailboxIndex::open(VecStorage::from_bytes(files[1].1.clone())).unwrap();
        let mut header = *index.header();
        check_index_against_manifest(&header, &manifest).unwrap();
        header.applied = LogPosition::new(1, 3);
        let reason = check_index_against_manifest(&header, &manifest).unwrap_err();
        assert!(
            reason.contains("after the group's applied position 1-2"),
            "{reason}"
        );
        header.applied = LogPosition::new(1, 2);
        header.uid_validity = manifest.uid_validity_max + 1;
        let reason = check_index_against_manifest(&header, &manifest).unwrap_err();
        assert!(reason.contains("above the group's high-water mark"), "{reason}");
    }

    #[test]
    fn index_file_names_round_trip_and_refuse_paths() {
        let guid = [0xab; 16];
        assert_eq!(parse_index_file_name(&index_file_name(&guid)), Some(guid));
        for bad in [
            "../x.idx",
            "ABABABABABABABABABABABABABABABAB.idx",
            "manifest.idx",
            "a/b",
        ] {
            assert_eq!(parse_index_file_name(bad), None);
        }
    }
}
