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

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use super::error::SmError;
use super::group_state::{GroupState, MailboxFiles};
use super::manifest::Manifest;
use crate::index::{LogPosition, MailboxIndex, VecStorage};
use crate::state_machine::apply::hex;
use crate::state_machine::MemoryFiles;

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
    pub fn export_snapshot<W: Write>(&self, mut out: W) -> io::Result<u64> {
        let manifest = self.manifest.encode();
        let mut written = 0u64;
        let mut put = |out: &mut W, bytes: &[u8]| -> io::Result<()> {
            written += bytes.len() as u64;
            out.write_all(bytes)
        };
        put(&mut out, &MAGIC)?;
        put(&mut out, &VERSION.to_le_bytes())?;
        let applied = self.manifest.applied;
        put(&mut out, &[u8::from(applied.is_some())])?;
        let position = applied.unwrap_or_default();
        put(&mut out, &position.term.to_le_bytes())?;
        put(&mut out, &position.index.to_le_bytes())?;
        put(&mut out, &(1 + self.mailboxes.len() as u32).to_le_bytes())?;
        let files = std::iter::once((MANIFEST_FILE.to_string(), manifest.as_slice())).chain(
            self.mailboxes
                .iter()
                .map(|(guid, ix)| (index_file_name(guid), ix.bytes())),
        );
        for (name, bytes) in files {
            put(&mut out, &(name.len() as u16).to_le_bytes())?;
            put(&mut out, name.as_bytes())?;
            put(&mut out, &(bytes.len() as u64).to_le_bytes())?;
            put(&mut out, &crc32c::crc32c(bytes).to_le_bytes())?;
            put(&mut out, bytes)?;
        }
        put(&mut out, &TRAILER)?;
        out.flush()?;
        Ok(written)
    }
}

impl GroupState<MemoryFiles> {
    /// Builds an in-memory group from a snapshot stream, checking every file.
    pub fn import_snapshot<R: Read>(input: R) -> Result<GroupState<MemoryFiles>, SmError> {
        let mut reader = SnapshotReader::new(input)?;
        let mut manifest = None;
        let mut mailboxes = std::collections::BTreeMap::new();
        while let Some((name, bytes)) = reader.next_file()? {
            if name == MANIFEST_FILE {
                manifest = Some(Manifest::decode(name.as_ref(), &bytes)?);
            } else {
                let guid = parse_index_file_name(&name).expect("reader checked names");
                let index = MailboxIndex::open(VecStorage::from_bytes(bytes))?;
                if index.header().mailbox_guid != guid {
                    return Err(corrupt(&format!("{name} holds the index of another mailbox")));
                }
                mailboxes.insert(guid, index);
            }
        }
        let manifest = manifest.ok_or_else(|| corrupt("no manifest"))?;
        check_files_match(&manifest, mailboxes.keys().copied().collect())?;
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
