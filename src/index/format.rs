//! Index file formats v1 and v2: layout, explicit little-endian encoding, checksums.
//!
//! ```text
//! offset 0      header page (HEADER_SIZE = 8192 bytes)
//!               [0, 256)     fixed header, see `Header` (CRC32C over bytes [0, 252) at 252)
//!               [256, 8192)  keyword table: MAX_KEYWORDS slots of KEYWORD_SLOT_SIZE bytes,
//!                            each `len: u8` then `len` bytes of the name, rest zero
//! 8192          records: `record_capacity` slots of `record_size` bytes (v1: 64, v2: 80),
//!               sorted by UID; the first `message_count` are live, the rest zero
//! 8192 + rs*rc  tombstones: `tombstone_capacity` slots of TOMBSTONE_SIZE (16) bytes,
//!               (uid, modseq) of expunged messages in expunge (= MODSEQ) order; unused slots zero
//! ```
//!
//! v2 adds one field to a record: the message body's id (`bodies::BodyId`, 16 bytes at 64..80;
//! zero for a message delivered without a body). Which version a file is written in follows the
//! group's log encoding (encoding 3 and later: v2), so replicas at one position write the same
//! bytes; a v1 file is rewritten as v2 by the first change to it after that (see
//! `MailboxIndex::upgraded_image`). Both are read.
//!
//! Every integer is little-endian and of fixed width; nothing depends on pointer size or struct
//! layout, so a file written on one machine reads the same on any other. Unused bytes are always
//! zero, which makes the file a pure function of the mailbox state: two replicas at the same
//! applied index hold byte-identical files.
//!
//! Checksums: the fixed header carries a CRC32C of itself, a CRC32C of the keyword table, and two
//! order-independent digests of the records and tombstones (`record_digest`). The header checks run
//! on every open (O(1)); the body digests are checked by `MailboxIndex::verify` (O(n)), because an
//! open must not scan a million-message file.

use std::path::Path;

use super::error::IndexError;

/// File magic: "DVTLIDX" and a NUL.
pub const MAGIC: [u8; 8] = *b"DVTLIDX\0";
/// The newest format version, which this build writes from log encoding 3 on. Both versions are
/// read; a file with a larger version is refused.
pub const FORMAT_VERSION: u32 = 2;
/// The first format version: records without a body id.
pub const FORMAT_VERSION_V1: u32 = 1;
/// Size of the header page: the fixed header plus the keyword table.
pub const HEADER_SIZE: usize = 8192;
/// Size of the fixed part of the header.
pub const FIXED_HEADER_SIZE: usize = 256;
/// Size of one message record in format v1.
pub const RECORD_SIZE: usize = 64;
/// Size of one message record in format v2 (v1's fields, then the body id).
pub const RECORD_SIZE_V2: usize = 80;

/// The record size of format `version` (1 or 2).
pub const fn record_size(version: u32) -> usize {
    if version >= 2 {
        RECORD_SIZE_V2
    } else {
        RECORD_SIZE
    }
}
/// Size of one expunge tombstone.
pub const TOMBSTONE_SIZE: usize = 16;
/// Keywords a mailbox can name; a record's keyword bitmap is a `u128`.
pub const MAX_KEYWORDS: usize = 128;
/// Bytes per keyword slot: a length byte and up to `MAX_KEYWORD_LEN` bytes of name.
pub const KEYWORD_SLOT_SIZE: usize = 62;
/// Longest keyword name, in bytes.
pub const MAX_KEYWORD_LEN: usize = KEYWORD_SLOT_SIZE - 1;

const _: () = assert!(FIXED_HEADER_SIZE + MAX_KEYWORDS * KEYWORD_SLOT_SIZE == HEADER_SIZE);
const _: () = assert!(MAX_KEYWORDS == u128::BITS as usize);
const _: () = assert!(HEADER_SIZE.is_multiple_of(RECORD_SIZE));

/// System flag bits as stored in a record.
pub mod flag_bits {
    pub const SEEN: u8 = 1 << 0;
    pub const ANSWERED: u8 = 1 << 1;
    pub const FLAGGED: u8 = 1 << 2;
    pub const DELETED: u8 = 1 << 3;
    pub const DRAFT: u8 = 1 << 4;
    /// Every bit a valid record may have set.
    pub const ALL: u8 = SEEN | ANSWERED | FLAGGED | DELETED | DRAFT;
}

/// A position in the Raft log, as recorded in headers: the last entry that changed this file.
pub use dovetail_raft::LogPosition;

/// Field offsets of the fixed header. Truncation tests walk these boundaries.
pub mod offsets {
    pub const MAGIC: usize = 0;
    pub const FORMAT_VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const RECORD_SIZE: usize = 16;
    pub const TOMBSTONE_SIZE: usize = 20;
    pub const MAILBOX_GUID: usize = 24;
    pub const UID_VALIDITY: usize = 40;
    pub const UID_NEXT: usize = 44;
    pub const MESSAGE_COUNT: usize = 48;
    pub const RECORD_CAPACITY: usize = 52;
    pub const TOMBSTONE_COUNT: usize = 56;
    pub const TOMBSTONE_CAPACITY: usize = 60;
    pub const HIGHEST_MODSEQ: usize = 64;
    pub const APPLIED_TERM: usize = 72;
    pub const APPLIED_INDEX: usize = 80;
    pub const SEEN_COUNT: usize = 88;
    pub const DELETED_COUNT: usize = 92;
    pub const KEYWORD_COUNT: usize = 96;
    pub const KEYWORD_TABLE_CRC: usize = 100;
    pub const RECORD_DIGEST: usize = 104;
    pub const TOMBSTONE_DIGEST: usize = 112;
    pub const COMPAT_FLAGS: usize = 120;
    pub const RESERVED: usize = 124;
    pub const HEADER_CRC: usize = 252;
    /// Every field boundary in order, with its name, ending at the fixed header size.
    pub const FIELDS: &[(usize, &str)] = &[
        (MAGIC, "magic"),
        (FORMAT_VERSION, "format_version"),
        (HEADER_SIZE, "header_size"),
        (RECORD_SIZE, "record_size"),
        (TOMBSTONE_SIZE, "tombstone_size"),
        (MAILBOX_GUID, "mailbox_guid"),
        (UID_VALIDITY, "uid_validity"),
        (UID_NEXT, "uid_next"),
        (MESSAGE_COUNT, "message_count"),
        (RECORD_CAPACITY, "record_capacity"),
        (TOMBSTONE_COUNT, "tombstone_count"),
        (TOMBSTONE_CAPACITY, "tombstone_capacity"),
        (HIGHEST_MODSEQ, "highest_modseq"),
        (APPLIED_TERM, "applied_term"),
        (APPLIED_INDEX, "applied_index"),
        (SEEN_COUNT, "seen_count"),
        (DELETED_COUNT, "deleted_count"),
        (KEYWORD_COUNT, "keyword_count"),
        (KEYWORD_TABLE_CRC, "keyword_table_crc"),
        (RECORD_DIGEST, "record_digest"),
        (TOMBSTONE_DIGEST, "tombstone_digest"),
        (COMPAT_FLAGS, "compat_flags"),
        (RESERVED, "reserved"),
        (HEADER_CRC, "header_crc"),
    ];
}

/// The fixed header of an index file, decoded. Invariant (checked by `decode`):
/// `message_count <= record_capacity`, `tombstone_count <= tombstone_capacity`,
/// `seen_count, deleted_count <= message_count`, `keyword_count <= MAX_KEYWORDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// The file's format version (1 or 2); it fixes the record size.
    pub version: u32,
    pub mailbox_guid: [u8; 16],
    pub uid_validity: u32,
    /// Invariant: every UID ever assigned in this mailbox is below `uid_next`.
    pub uid_next: u32,
    pub message_count: u32,
    pub record_capacity: u32,
    pub tombstone_count: u32,
    pub tombstone_capacity: u32,
    /// Invariant: >= every record's and tombstone's modseq.
    pub highest_modseq: u64,
    /// The last log entry that changed this file.
    pub applied: LogPosition,
    pub seen_count: u32,
    pub deleted_count: u32,
    pub keyword_count: u32,
    pub keyword_table_crc: u32,
    pub record_digest: u64,
    pub tombstone_digest: u64,
}

impl Header {
    /// A header for an empty mailbox in format `version`.
    pub fn new(mailbox_guid: [u8; 16], uid_validity: u32, version: u32) -> Header {
        debug_assert!((FORMAT_VERSION_V1..=FORMAT_VERSION).contains(&version));
        Header {
            version,
            mailbox_guid,
            uid_validity,
            uid_next: 1,
            message_count: 0,
            record_capacity: 0,
            tombstone_count: 0,
            tombstone_capacity: 0,
            highest_modseq: 1,
            applied: LogPosition::default(),
            seen_count: 0,
            deleted_count: 0,
            keyword_count: 0,
            keyword_table_crc: crc32c::crc32c(&[0u8; MAX_KEYWORDS * KEYWORD_SLOT_SIZE]),
            record_digest: 0,
            tombstone_digest: 0,
        }
    }

    /// Byte offset of the first record.
    pub const fn records_offset() -> usize {
        HEADER_SIZE
    }

    /// The size of one record of this file.
    pub const fn record_size(&self) -> usize {
        record_size(self.version)
    }

    /// Byte offset of the first tombstone.
    pub fn tombstones_offset(&self) -> usize {
        HEADER_SIZE + self.record_capacity as usize * self.record_size()
    }

    /// Length of a file holding this header's capacities.
    pub fn file_len(&self) -> usize {
        self.tombstones_offset() + self.tombstone_capacity as usize * TOMBSTONE_SIZE
    }

    /// Encodes the fixed header, checksum included.
    pub fn encode(&self) -> [u8; FIXED_HEADER_SIZE] {
        use offsets as o;
        let mut b = [0u8; FIXED_HEADER_SIZE];
        b[o::MAGIC..o::MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, o::FORMAT_VERSION, self.version);
        put_u32(&mut b, o::HEADER_SIZE, HEADER_SIZE as u32);
        put_u32(&mut b, o::RECORD_SIZE, self.record_size() as u32);
        put_u32(&mut b, o::TOMBSTONE_SIZE, TOMBSTONE_SIZE as u32);
        b[o::MAILBOX_GUID..o::MAILBOX_GUID + 16].copy_from_slice(&self.mailbox_guid);
        put_u32(&mut b, o::UID_VALIDITY, self.uid_validity);
        put_u32(&mut b, o::UID_NEXT, self.uid_next);
        put_u32(&mut b, o::MESSAGE_COUNT, self.message_count);
        put_u32(&mut b, o::RECORD_CAPACITY, self.record_capacity);
        put_u32(&mut b, o::TOMBSTONE_COUNT, self.tombstone_count);
        put_u32(&mut b, o::TOMBSTONE_CAPACITY, self.tombstone_capacity);
        put_u64(&mut b, o::HIGHEST_MODSEQ, self.highest_modseq);
        put_u64(&mut b, o::APPLIED_TERM, self.applied.term);
        put_u64(&mut b, o::APPLIED_INDEX, self.applied.index);
        put_u32(&mut b, o::SEEN_COUNT, self.seen_count);
        put_u32(&mut b, o::DELETED_COUNT, self.deleted_count);
        put_u32(&mut b, o::KEYWORD_COUNT, self.keyword_count);
        put_u32(&mut b, o::KEYWORD_TABLE_CRC, self.keyword_table_crc);
        put_u64(&mut b, o::RECORD_DIGEST, self.record_digest);
        put_u64(&mut b, o::TOMBSTONE_DIGEST, self.tombstone_digest);
        put_u32(&mut b, o::COMPAT_FLAGS, 0);
        let crc = crc32c::crc32c(&b[..o::HEADER_CRC]);
        put_u32(&mut b, o::HEADER_CRC, crc);
        b
    }

    /// Decodes and checks a whole file image's header page: magic, version, sizes, checksums, and
    /// that the file is long enough for the capacities it claims. O(1): records are not read.
    pub fn decode(file: &Path, bytes: &[u8]) -> Result<Header, IndexError> {
        use offsets as o;
        let actual = bytes.len() as u64;
        let need = |what: &'static str, end: usize| -> Result<(), IndexError> {
            if bytes.len() < end {
                Err(IndexError::Truncated {
                    file: file.to_path_buf(),
                    what,
                    needed: end as u64,
                    actual,
                })
            } else {
                Ok(())
            }
        };
        need("magic", o::MAGIC + 8)?;
        if bytes[..8] != MAGIC {
            return Err(IndexError::Foreign {
                file: file.to_path_buf(),
                found: bytes[..8].to_vec(),
            });
        }
        need("format_version", o::FORMAT_VERSION + 4)?;
        let version = get_u32(bytes, o::FORMAT_VERSION);
        if !(FORMAT_VERSION_V1..=FORMAT_VERSION).contains(&version) {
            return Err(IndexError::UnsupportedVersion {
                file: file.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        // Every further field is checked for presence in order, so a truncation names the first
        // field that is cut off.
        for window in o::FIELDS.windows(2) {
            let (start, name) = window[0];
            let end = window[1].0;
            if start >= o::HEADER_SIZE {
                need(name, end)?;
            }
        }
        need("header_crc", FIXED_HEADER_SIZE)?;
        let stored = get_u32(bytes, o::HEADER_CRC);
        let computed = crc32c::crc32c(&bytes[..o::HEADER_CRC]);
        if stored != computed {
            return Err(IndexError::ChecksumMismatch {
                file: file.to_path_buf(),
                region: "header",
                stored: stored.into(),
                computed: computed.into(),
            });
        }
        let corrupt = |offset: usize, reason: String| IndexError::corrupt(file, offset as u64, reason);
        for (offset, expected, name) in [
            (o::HEADER_SIZE, HEADER_SIZE, "header_size"),
            (o::RECORD_SIZE, record_size(version), "record_size"),
            (o::TOMBSTONE_SIZE, TOMBSTONE_SIZE, "tombstone_size"),
        ] {
            let found = get_u32(bytes, offset);
            if found as usize != expected {
                return Err(corrupt(
                    offset,
                    format!("{name} is {found}, format v{version} requires {expected}"),
                ));
            }
        }
        let compat_flags = get_u32(bytes, o::COMPAT_FLAGS);
        if compat_flags != 0 {
            return Err(corrupt(
                o::COMPAT_FLAGS,
                format!("unknown compat flags {compat_flags:#x}"),
            ));
        }
        if bytes[o::RESERVED..o::HEADER_CRC].iter().any(|&b| b != 0) {
            return Err(corrupt(o::RESERVED, "reserved header bytes are not zero".into()));
        }
        let mut mailbox_guid = [0u8; 16];
        mailbox_guid.copy_from_slice(&bytes[o::MAILBOX_GUID..o::MAILBOX_GUID + 16]);
        let header = Header {
            version,
            mailbox_guid,
            uid_validity: get_u32(bytes, o::UID_VALIDITY),
            uid_next: get_u32(bytes, o::UID_NEXT),
            message_count: get_u32(bytes, o::MESSAGE_COUNT),
            record_capacity: get_u32(bytes, o::RECORD_CAPACITY),
            tombstone_count: get_u32(bytes, o::TOMBSTONE_COUNT),
            tombstone_capacity: get_u32(bytes, o::TOMBSTONE_CAPACITY),
            highest_modseq: get_u64(bytes, o::HIGHEST_MODSEQ),
            applied: LogPosition {
                term: get_u64(bytes, o::APPLIED_TERM),
                index: get_u64(bytes, o::APPLIED_INDEX),
            },
            seen_count: get_u32(bytes, o::SEEN_COUNT),
            deleted_count: get_u32(bytes, o::DELETED_COUNT),
            keyword_count: get_u32(bytes, o::KEYWORD_COUNT),
            keyword_table_crc: get_u32(bytes, o::KEYWORD_TABLE_CRC),
            record_digest: get_u64(bytes, o::RECORD_DIGEST),
            tombstone_digest: get_u64(bytes, o::TOMBSTONE_DIGEST),
        };
        let checks: [(bool, usize, &str); 7] = [
            (header.uid_validity != 0, o::UID_VALIDITY, "uid_validity is zero"),
            (header.uid_next != 0, o::UID_NEXT, "uid_next is zero"),
            (
                header.message_count <= header.record_capacity,
                o::MESSAGE_COUNT,
                "message_count exceeds record_capacity",
            ),
            (
                header.tombstone_count <= header.tombstone_capacity,
                o::TOMBSTONE_COUNT,
                "tombstone_count exceeds tombstone_capacity",
            ),
            (
                header.seen_count <= header.message_count,
                o::SEEN_COUNT,
                "seen_count exceeds message_count",
            ),
            (
                header.deleted_count <= header.message_count,
                o::DELETED_COUNT,
                "deleted_count exceeds message_count",
            ),
            (
                header.keyword_count as usize <= MAX_KEYWORDS,
                o::KEYWORD_COUNT,
                "keyword_count exceeds 128",
            ),
        ];
        for (ok, offset, reason) in checks {
            if !ok {
                return Err(corrupt(offset, reason.into()));
            }
        }
        need("keyword_table", HEADER_SIZE)?;
        let computed = crc32c::crc32c(&bytes[FIXED_HEADER_SIZE..HEADER_SIZE]);
        if computed != header.keyword_table_crc {
            return Err(IndexError::ChecksumMismatch {
                file: file.to_path_buf(),
                region: "keyword_table",
                stored: header.keyword_table_crc.into(),
                computed: computed.into(),
            });
        }
        need("records", header.tombstones_offset())?;
        need("tombstones", header.file_len())?;
        if bytes.len() > header.file_len() {
            return Err(corrupt(
                header.file_len(),
                format!(
                    "{} trailing bytes after the tombstone area",
                    bytes.len() - header.file_len()
                ),
            ));
        }
        Ok(header)
    }
}

/// One message's index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Record {
    pub uid: u32,
    /// System flags, `flag_bits`.
    pub flags: u8,
    pub modseq: u64,
    /// Bit i set: the message has the mailbox's keyword i.
    pub keywords: u128,
    /// The message's own id (unique per message; Dovecot's GUID).
    pub guid: [u8; 16],
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub internal_date: i64,
    /// The id of the message's body in the body store (format v2; zero: no body stored, as in
    /// every v1 record).
    pub body: [u8; 16],
}

impl Record {
    /// Encodes into a slot of format `version`. A v1 slot has no room for a body id: a record
    /// with one is never written to a v1 file (the state machine upgrades the file first).
    pub fn encode(&self, out: &mut [u8], version: u32) {
        assert!(
            version >= 2 || self.body == [0; 16],
            "invariant: a record with a body id is written only to a format v2 file"
        );
        if version >= 2 {
            out[RECORD_SIZE..RECORD_SIZE_V2].copy_from_slice(&self.body);
        }
        let out = &mut out[..RECORD_SIZE];
        out[0..4].copy_from_slice(&self.uid.to_le_bytes());
        out[4] = self.flags;
        out[5..8].fill(0);
        out[8..16].copy_from_slice(&self.modseq.to_le_bytes());
        out[16..32].copy_from_slice(&self.keywords.to_le_bytes());
        out[32..48].copy_from_slice(&self.guid);
        out[48..56].copy_from_slice(&self.size.to_le_bytes());
        out[56..64].copy_from_slice(&self.internal_date.to_le_bytes());
    }

    /// Decodes a slot of format `version`.
    pub fn decode(b: &[u8], version: u32) -> Record {
        let mut body = [0u8; 16];
        if version >= 2 {
            body.copy_from_slice(&b[RECORD_SIZE..RECORD_SIZE_V2]);
        }
        let b = &b[..RECORD_SIZE];
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&b[32..48]);
        Record {
            uid: get_u32(b, 0),
            flags: b[4],
            modseq: get_u64(b, 8),
            keywords: u128::from_le_bytes(b[16..32].try_into().expect("16 bytes")),
            guid,
            size: get_u64(b, 48),
            internal_date: get_u64(b, 56) as i64,
            body,
        }
    }

    /// Reads only the UID of an encoded record (the binary-search key).
    #[inline]
    pub fn uid_of(b: &[u8]) -> u32 {
        get_u32(b, 0)
    }

    /// Reads only the MODSEQ of an encoded record.
    #[inline]
    pub fn modseq_of(b: &[u8]) -> u64 {
        get_u64(b, 8)
    }

    /// Reads only the body id of an encoded record of format `version` (zero: none; always so in
    /// v1, whose records have no room for one).
    #[inline]
    pub fn body_of(b: &[u8], version: u32) -> [u8; 16] {
        if version >= 2 {
            b[RECORD_SIZE..RECORD_SIZE_V2].try_into().expect("16 bytes")
        } else {
            [0; 16]
        }
    }
}

/// An expunged UID and the MODSEQ of the expunge, kept for QRESYNC `VANISHED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tombstone {
    pub uid: u32,
    pub modseq: u64,
}

impl Tombstone {
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..TOMBSTONE_SIZE];
        out[0..4].copy_from_slice(&self.uid.to_le_bytes());
        out[4..8].fill(0);
        out[8..16].copy_from_slice(&self.modseq.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Tombstone {
        Tombstone {
            uid: get_u32(b, 0),
            modseq: get_u64(b, 8),
        }
    }
}

/// The contribution of one encoded record or tombstone to its area's digest. Digests are wrapping
/// sums of these, so a change to one record updates the digest in O(1).
#[inline]
pub fn slot_digest(encoded: &[u8]) -> u64 {
    let crc = crc32c::crc32c(encoded) as u64;
    let uid = get_u32(encoded, 0) as u64;
    splitmix64(crc | (uid << 32))
}

#[inline]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The capacity to grow to when `needed` slots do not fit in `current`: 1.5x, at least 32.
/// A pure function of the counts, so every replica grows its files identically.
pub fn grown_capacity(current: u32, needed: u32) -> u32 {
    let grown = (current as u64 + current as u64 / 2).max(32).max(needed as u64);
    grown.min(u32::MAX as u64) as u32
}

#[inline]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        for version in [FORMAT_VERSION_V1, FORMAT_VERSION] {
            let mut h = Header::new([7; 16], 1234, version);
            h.uid_next = 99;
            h.message_count = 3;
            h.record_capacity = 32;
            h.applied = LogPosition { term: 2, index: 77 };
            let mut file = vec![0u8; h.file_len()];
            file[..FIXED_HEADER_SIZE].copy_from_slice(&h.encode());
            assert_eq!(Header::decode(Path::new("t"), &file).unwrap(), h);
            assert_eq!(h.tombstones_offset(), HEADER_SIZE + 32 * record_size(version));
        }
        assert_eq!((record_size(1), record_size(2)), (64, 80));
    }

    #[test]
    fn record_round_trips_and_is_little_endian() {
        let r = Record {
            uid: 0x0102_0304,
            flags: flag_bits::SEEN | flag_bits::DRAFT,
            modseq: 5,
            keywords: 1 << 100,
            guid: [9; 16],
            size: 1 << 40,
            internal_date: -5,
            body: [0; 16],
        };
        let mut b = [0u8; RECORD_SIZE];
        r.encode(&mut b, FORMAT_VERSION_V1);
        assert_eq!(&b[0..4], &[4, 3, 2, 1]);
        assert_eq!(Record::decode(&b, FORMAT_VERSION_V1), r);
        assert_eq!(Record::uid_of(&b), r.uid);
        assert_eq!(Record::modseq_of(&b), 5);
        // v2: the same 64 bytes, then the body id.
        let with_body = Record {
            body: [0xb0; 16],
            ..r
        };
        let mut b2 = [0u8; RECORD_SIZE_V2];
        with_body.encode(&mut b2, FORMAT_VERSION);
        assert_eq!(&b2[..RECORD_SIZE], &b[..]);
        assert_eq!(&b2[RECORD_SIZE..], &[0xb0; 16]);
        assert_eq!(Record::decode(&b2, FORMAT_VERSION), with_body);
    }

    #[test]
    #[should_panic(expected = "only to a format v2 file")]
    fn a_body_id_is_never_written_to_a_v1_slot() {
        let r = Record {
            uid: 1,
            body: [1; 16],
            ..Record::default()
        };
        r.encode(&mut [0u8; RECORD_SIZE], FORMAT_VERSION_V1);
    }

    #[test]
    fn field_table_is_ordered_and_complete() {
        let f = offsets::FIELDS;
        assert!(f.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(f.last().unwrap().0 + 4, FIXED_HEADER_SIZE);
    }

    #[test]
    fn growth_is_geometric_and_covers_need() {
        assert_eq!(grown_capacity(0, 1), 32);
        assert_eq!(grown_capacity(32, 33), 48);
        assert_eq!(grown_capacity(32, 1000), 1000);
        assert_eq!(grown_capacity(u32::MAX - 1, u32::MAX), u32::MAX);
    }
}
