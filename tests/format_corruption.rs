//! Corrupt input is refused with a named error — never a panic, never silently repaired.
//!
//! Property: every damaged index file, manifest or snapshot stream is turned into the error that
//! names the damage (`IndexError::Truncated { what }`, `Foreign`, `UnsupportedVersion`,
//! `ChecksumMismatch { region }`, `Corrupt { offset }`, `SmError::CorruptManifest`,
//! `SmError::CorruptSnapshot`), and the damaged file is left as it was.
//!
//! How it is provoked: a realistic group (two mailboxes, keywords, flags, expunge tombstones,
//! unused record and tombstone space) is built by applying transactions to
//! `GroupState::in_memory()`. Its index image, manifest and snapshot stream are then cut at every
//! length, have every byte flipped (several masks), get trailing garbage, and get header fields
//! set out of range with the checksums recomputed so that the deeper checks are what fail. On
//! disk, a clean `live/` directory gets a damaged `.idx` or manifest before
//! `GroupStateMachine::open`. Finally proptest throws random bytes and random mutations at
//! `MailboxIndex::open` + `verify`, `Manifest::decode` and `GroupState::import_snapshot`.
//!
//! What is checked: the exact error variant, and its `what`/`region`/`offset` where the damage
//! determines it; that an O(1) open accepts damage inside records and tombstones but `verify`
//! names it; that files on disk are byte-identical after a failed open.
//!
//! Every header field of every structure, bit by bit: the index header (its CRC; and, with the
//! CRC recomputed, the cross-checks with the manifest that catch a changed mailbox GUID,
//! UIDVALIDITY or applied position), the manifest frame (each field named in the error), the
//! snapshot stream's headers (refused alike by import, `dovetail dump`, install and restore),
//! and on the peer protocol the handshake (through a relay that flips one bit), a frame's
//! length prefix and a snapshot transfer's chunk headers and end marker.
//!
//! The proptests print their seed (`tests/support/rng.rs`); replay one with
//! `DOVETAIL_SEED=<seed> cargo test --test format_corruption <test>`.
//!
//! Two bugs this file found are pinned by regression tests: a snapshot stream whose file length
//! field claims tens of GiB made the reader allocate that much before reading, and a manifest
//! payload with a valid CRC but a huge string length made bincode allocate it; both aborted the
//! process instead of returning a named error.

#[path = "support/rng.rs"]
mod rng;

use std::fs;
use std::path::{Path, PathBuf};

use dovetail::index::format::offsets::{self, FIELDS};
use dovetail::index::format::{
    record_size, Header, FIXED_HEADER_SIZE, HEADER_SIZE, KEYWORD_SLOT_SIZE, RECORD_SIZE, TOMBSTONE_SIZE,
};
use dovetail::index::{IndexError, LogPosition, MailboxIndex, MmapStorage, VecStorage};
use dovetail::state_machine::snapshot::index_file_name;
use dovetail::state_machine::{GroupState, GroupStateMachine, Manifest, MemoryFiles, SmError};
use dovetail::txn::{NewMessage, Op, Outcome, StoreMode, Txn, UidSet};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rng::seed;

const INBOX_GUID: [u8; 16] = [0x11; 16];
const ARCHIVE_GUID: [u8; 16] = [0x22; 16];
const USER: &str = "alice@example.org";
const IDX_PATH: &str = "sample.idx";

// ---------------------------------------------------------------------------------------------
// The sample group.

fn txn(request_seq: u64, op: Op) -> Txn {
    Txn {
        client_id: "corruption-test".into(),
        request_seq,
        op,
    }
}

fn message(i: u32) -> NewMessage {
    let mut guid = [0u8; 16];
    guid[..4].copy_from_slice(&(0xC0DE_0000 + i).to_be_bytes());
    guid[15] = 1;
    let mut flags = Vec::new();
    for (every, flag) in [(3, "\\Seen"), (5, "$Junk"), (7, "Work"), (11, "\\Deleted")] {
        if i.is_multiple_of(every) {
            flags.push(flag.to_string());
        }
    }
    NewMessage {
        guid,
        size: 1000 + u64::from(i) * 37,
        internal_date: 1_700_000_000 + i64::from(i) * 60,
        flags,
    }
}

fn uids(ranges: &[(u32, u32)]) -> UidSet {
    UidSet::from_ranges(ranges.iter().copied()).unwrap()
}

fn sample_txns() -> Vec<Txn> {
    let create = |mailbox: &str, mailbox_guid, uid_validity| Op::CreateMailbox {
        user: USER.into(),
        mailbox: mailbox.into(),
        mailbox_guid,
        uid_validity,
    };
    let append = |mailbox: &str, range: std::ops::RangeInclusive<u32>| Op::Append {
        user: USER.into(),
        mailbox: mailbox.into(),
        messages: range.map(message).collect(),
    };
    let store = |set, mode, flags: &[&str]| Op::Store {
        user: USER.into(),
        mailbox: "INBOX".into(),
        uids: set,
        mode,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        unchanged_since: None,
    };
    let ops = vec![
        create("INBOX", INBOX_GUID, 1_700_000_000),
        create("Archive", ARCHIVE_GUID, 1_700_000_001),
        append("INBOX", 1..=40),
        store(uids(&[(5, 9)]), StoreMode::Add, &["\\Answered", "$Important"]),
        Op::Expunge {
            user: USER.into(),
            mailbox: "INBOX".into(),
            uids: uids(&[(2, 3), (17, 17), (30, 30), (33, 33)]),
            expected_guids: Vec::new(),
        },
        store(uids(&[(20, 25)]), StoreMode::Remove, &["\\Seen"]),
        append("INBOX", 41..=41),
        append("Archive", 100..=102),
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| txn(i as u64 + 1, op))
        .collect()
}

fn apply_sample(mut apply: impl FnMut(LogPosition, &Txn) -> Option<Outcome>) {
    for (i, t) in sample_txns().iter().enumerate() {
        let outcome = apply(LogPosition::new(1, i as u64 + 1), t).expect("new entry");
        assert!(!outcome.is_rejected(), "sample txn {i} rejected: {outcome:?}");
    }
}

fn sample_group() -> GroupState<MemoryFiles> {
    let mut group = GroupState::in_memory();
    apply_sample(|p, t| group.apply(p, t).unwrap());
    group
}

/// The INBOX image: 36 records in 48 slots, 5 tombstones in 32 slots, 4 keywords.
fn sample_image() -> Vec<u8> {
    let image = sample_group().mailboxes()[&INBOX_GUID].bytes().to_vec();
    let ix = open_image(&image).unwrap();
    ix.verify().unwrap();
    let h = ix.header();
    assert!(
        h.message_count < h.record_capacity,
        "premise: unused record slots"
    );
    assert!(h.tombstone_count > 0 && h.tombstone_count < h.tombstone_capacity);
    assert!(h.keyword_count >= 2 && h.seen_count > 0 && h.deleted_count > 0);
    image
}

fn sample_snapshot() -> Vec<u8> {
    let mut stream = Vec::new();
    sample_group().export_snapshot(&mut stream).unwrap();
    stream
}

fn open_image(bytes: &[u8]) -> Result<MailboxIndex<VecStorage>, IndexError> {
    MailboxIndex::open(VecStorage::with_path(bytes.to_vec(), PathBuf::from(IDX_PATH)))
}

fn header_of(image: &[u8]) -> Header {
    Header::decode(Path::new(IDX_PATH), image).unwrap()
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Recomputes the header CRC, so that the header checks past it are what a test exercises.
fn reseal(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[..offsets::HEADER_CRC]);
    put_u32(bytes, offsets::HEADER_CRC, crc);
}

/// Recomputes the keyword table CRC stored in the header, then the header CRC.
fn reseal_keywords(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[FIXED_HEADER_SIZE..HEADER_SIZE]);
    put_u32(bytes, offsets::KEYWORD_TABLE_CRC, crc);
    reseal(bytes);
}

/// The fixed-header field holding byte `offset`, and where that field ends.
fn field_at(offset: usize) -> (&'static str, usize) {
    let i = FIELDS.iter().rposition(|&(start, _)| start <= offset).unwrap();
    let end = FIELDS.get(i + 1).map_or(FIXED_HEADER_SIZE, |f| f.0);
    (FIELDS[i].1, end)
}

/// What a truncation to `len` bytes must be reported as: the region cut, and the length needed.
fn expected_truncation(h: &Header, len: usize) -> (&'static str, usize) {
    if len < FIXED_HEADER_SIZE {
        field_at(len)
    } else if len < HEADER_SIZE {
        ("keyword_table", HEADER_SIZE)
    } else if len < h.tombstones_offset() {
        ("records", h.tombstones_offset())
    } else {
        ("tombstones", h.file_len())
    }
}

fn assert_truncated(result: Result<impl std::fmt::Debug, IndexError>, len: usize, h: &Header, file: &Path) {
    let (name, needed_end) = expected_truncation(h, len);
    match result {
        Err(IndexError::Truncated {
            file: f,
            what,
            needed,
            actual,
        }) => {
            assert_eq!(what, name, "truncated to {len} bytes");
            assert_eq!(needed, needed_end as u64, "truncated to {len} bytes");
            assert_eq!(actual, len as u64);
            assert_eq!(f, file);
        }
        other => panic!("truncated to {len} bytes ({name}): expected Truncated, got {other:?}"),
    }
}

/// Masks every byte is flipped with: single low and high bits, and all bits.
const MASKS: [u8; 3] = [0x01, 0x80, 0xFF];

// ---------------------------------------------------------------------------------------------
// Index files: truncation.

#[test]
fn truncation_at_every_length_names_the_region_cut() {
    let image = sample_image();
    let h = header_of(&image);
    // The header field boundaries, stated explicitly: a cut at a field's start names that field.
    for &(start, name) in FIELDS {
        assert_eq!(expected_truncation(&h, start).0, name);
    }
    assert_eq!(expected_truncation(&h, 0), ("magic", 8));
    for len in 0..image.len() {
        assert_truncated(open_image(&image[..len]), len, &h, Path::new(IDX_PATH));
    }
}

#[test]
fn truncated_files_on_disk_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.idx");
    fs::write(&empty, b"").unwrap();
    match MmapStorage::open(&empty) {
        Err(IndexError::Truncated {
            what: "magic",
            needed: 8,
            actual: 0,
            file,
        }) => assert_eq!(file, empty),
        other => panic!("empty file: expected Truncated magic, got {other:?}"),
    }

    let image = sample_image();
    let h = header_of(&image);
    let mut cuts: Vec<usize> = FIELDS.iter().map(|f| f.0).filter(|&o| o > 0).collect();
    cuts.extend([
        FIXED_HEADER_SIZE,
        FIXED_HEADER_SIZE + KEYWORD_SLOT_SIZE + 3,
        HEADER_SIZE - 1,
        HEADER_SIZE,
        HEADER_SIZE + RECORD_SIZE * 5 + 17,
        h.tombstones_offset() - 1,
        h.tombstones_offset(),
        h.tombstones_offset() + TOMBSTONE_SIZE + 3,
        h.file_len() - 1,
    ]);
    for len in cuts {
        let path = dir.path().join(format!("cut-{len}.idx"));
        fs::write(&path, &image[..len]).unwrap();
        let result = MmapStorage::open(&path).and_then(MailboxIndex::open);
        assert_truncated(result, len, &h, &path);
        assert_eq!(
            fs::read(&path).unwrap(),
            &image[..len],
            "file changed by a failed open"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Index files: magic, version, flipped bytes, trailing bytes.

#[test]
fn wrong_magic_is_foreign() {
    let image = sample_image();
    for magic in [*b"NOTDVTL\0", *b"DVTLSNAP", *b"DVTLMFST", [0; 8], *b"dvtlidx\0"] {
        let mut bytes = image.clone();
        bytes[..8].copy_from_slice(&magic);
        reseal(&mut bytes);
        match open_image(&bytes) {
            Err(IndexError::Foreign { found, file }) => {
                assert_eq!(found, magic);
                assert_eq!(file, Path::new(IDX_PATH));
            }
            other => panic!("magic {magic:?}: expected Foreign, got {other:?}"),
        }
        // Eight bytes are enough to tell a foreign file.
        assert!(matches!(open_image(&magic), Err(IndexError::Foreign { .. })));
    }
    // Other Dovetail files handed to the index reader are foreign too.
    assert!(matches!(
        open_image(&sample_snapshot()),
        Err(IndexError::Foreign { .. })
    ));
    assert!(matches!(
        open_image(&sample_group().manifest().encode()),
        Err(IndexError::Foreign { .. })
    ));
}

#[test]
fn future_version_is_unsupported() {
    let image = sample_image();
    for version in [0, 3, u32::MAX] {
        let mut bytes = image.clone();
        put_u32(&mut bytes, offsets::FORMAT_VERSION, version);
        reseal(&mut bytes);
        match open_image(&bytes) {
            Err(IndexError::UnsupportedVersion { found, supported, .. }) => {
                assert_eq!((found, supported), (version, 2))
            }
            other => panic!("version {version}: expected UnsupportedVersion, got {other:?}"),
        }
    }
    // A v1 file relabelled v2 (or the reverse) disagrees with its record size.
    let mut relabelled = image.clone();
    put_u32(&mut relabelled, offsets::FORMAT_VERSION, 2);
    reseal(&mut relabelled);
    match open_image(&relabelled) {
        Err(IndexError::Corrupt { reason, .. }) => assert!(
            reason.contains("record_size is 64, format v2 requires 80"),
            "{reason}"
        ),
        other => panic!("expected a record size mismatch, got {other:?}"),
    }
}

#[test]
fn every_fixed_header_byte_flip_is_named() {
    let image = sample_image();
    for pos in 0..FIXED_HEADER_SIZE {
        for bit in 0..8 {
            for mask in [1u8 << bit, 0xFF] {
                let mut bytes = image.clone();
                bytes[pos] ^= mask;
                let result = open_image(&bytes);
                let ok = match &result {
                    Err(IndexError::Foreign { .. }) => pos < offsets::FORMAT_VERSION,
                    Err(IndexError::UnsupportedVersion { .. }) => {
                        (offsets::FORMAT_VERSION..offsets::HEADER_SIZE).contains(&pos)
                    }
                    Err(IndexError::ChecksumMismatch { region, .. }) => {
                        *region == "header" && pos >= offsets::HEADER_SIZE
                    }
                    _ => false,
                };
                assert!(
                    ok,
                    "byte {pos} ({}) ^ {mask:#04x}: got {result:?}",
                    field_at(pos).0
                );
            }
        }
    }
}

#[test]
fn keyword_table_flips_fail_its_checksum() {
    let image = sample_image();
    for pos in FIXED_HEADER_SIZE..HEADER_SIZE {
        for mask in MASKS {
            let mut bytes = image.clone();
            bytes[pos] ^= mask;
            match open_image(&bytes) {
                Err(IndexError::ChecksumMismatch {
                    region: "keyword_table",
                    ..
                }) => {}
                other => panic!("keyword table byte {pos} ^ {mask:#04x}: got {other:?}"),
            }
        }
    }
}

/// The INBOX image of the sample delivered with body ids (log encoding 3, index format v2).
fn delivered_image() -> Vec<u8> {
    let mut group = GroupState::in_memory();
    let gate = Txn {
        client_id: "gate".into(),
        request_seq: 1,
        op: Op::SetEncoding { version: 3 },
    };
    group.apply(LogPosition::new(1, 1), &gate).unwrap().unwrap();
    apply_sample(|p, t| {
        let mut t = t.clone();
        if let Op::Append {
            user,
            mailbox,
            messages,
        } = t.op
        {
            t.op = Op::Deliver {
                user,
                mailbox,
                bodies: messages.iter().map(|m| [m.guid[3] | 0x80; 16]).collect(),
                messages,
            };
        }
        group.apply(LogPosition::new(1, p.index + 1), &t).unwrap()
    });
    let image = group.mailboxes()[&INBOX_GUID].bytes().to_vec();
    assert_eq!(header_of(&image).version, 2);
    open_image(&image).unwrap().verify().unwrap();
    image
}

#[test]
fn record_and_tombstone_flips_open_in_o1_but_fail_verify() {
    // Format v1, and v2 whose records carry body ids: a flip anywhere in a record, body id
    // included, is named.
    for image in [sample_image(), delivered_image()] {
        record_and_tombstone_flips_are_named(&image);
    }
}

fn record_and_tombstone_flips_are_named(image: &[u8]) {
    let h = header_of(image);
    let live_records_end = HEADER_SIZE + h.message_count as usize * record_size(h.version);
    let live_tombstones_end = h.tombstones_offset() + h.tombstone_count as usize * TOMBSTONE_SIZE;
    for pos in HEADER_SIZE..image.len() {
        for mask in MASKS {
            let mut bytes = image.to_vec();
            bytes[pos] ^= mask;
            let ix = open_image(&bytes)
                .unwrap_or_else(|e| panic!("byte {pos}: open must not scan records, got {e}"));
            assert_eq!(ix.header(), &h);
            let result = ix.verify();
            let ok = match &result {
                Err(IndexError::ChecksumMismatch {
                    region: "records", ..
                }) => pos < live_records_end,
                Err(IndexError::ChecksumMismatch {
                    region: "tombstones", ..
                }) => (h.tombstones_offset()..live_tombstones_end).contains(&pos),
                Err(IndexError::Corrupt { offset, .. }) => {
                    let offset = *offset as usize;
                    if pos < live_records_end {
                        (HEADER_SIZE..live_records_end).contains(&offset)
                    } else if (h.tombstones_offset()..live_tombstones_end).contains(&pos) {
                        (h.tombstones_offset()..live_tombstones_end).contains(&offset)
                    } else {
                        // Unused space: the first non-zero byte is named exactly.
                        offset == pos
                    }
                }
                _ => false,
            };
            assert!(ok, "byte {pos} ^ {mask:#04x}: verify gave {result:?}");
        }
    }
}

#[test]
fn trailing_bytes_are_corrupt() {
    let image = sample_image();
    for extra in [vec![0u8], vec![0u8; RECORD_SIZE], vec![0xAB; 4096]] {
        let mut bytes = image.clone();
        bytes.extend_from_slice(&extra);
        match open_image(&bytes) {
            Err(IndexError::Corrupt { offset, .. }) => assert_eq!(offset, image.len() as u64),
            other => panic!("{} trailing bytes: got {other:?}", extra.len()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Index files: header fields out of range, with valid checksums.

enum Expect {
    /// `open` fails with `Corrupt` at this offset.
    CorruptAt(usize),
    /// `open` fails with `Truncated { what }`.
    Truncated(&'static str),
    /// `open` succeeds; `verify` names the damage.
    VerifyFails,
}

#[test]
fn header_fields_out_of_range_are_corrupt_even_with_a_valid_crc() {
    let image = sample_image();
    let h = header_of(&image);
    use offsets as o;
    use Expect::*;
    let cases: Vec<(&str, usize, u64, usize, Expect)> = vec![
        // (what, field offset, value, field width, expectation)
        ("header_size", o::HEADER_SIZE, 4096, 4, CorruptAt(o::HEADER_SIZE)),
        ("record_size", o::RECORD_SIZE, 32, 4, CorruptAt(o::RECORD_SIZE)),
        (
            "tombstone_size",
            o::TOMBSTONE_SIZE,
            8,
            4,
            CorruptAt(o::TOMBSTONE_SIZE),
        ),
        (
            "uid_validity zero",
            o::UID_VALIDITY,
            0,
            4,
            CorruptAt(o::UID_VALIDITY),
        ),
        ("uid_next zero", o::UID_NEXT, 0, 4, CorruptAt(o::UID_NEXT)),
        (
            "message_count > record_capacity",
            o::MESSAGE_COUNT,
            u64::from(h.record_capacity) + 1,
            4,
            CorruptAt(o::MESSAGE_COUNT),
        ),
        (
            "tombstone_count > tombstone_capacity",
            o::TOMBSTONE_COUNT,
            u64::from(h.tombstone_capacity) + 1,
            4,
            CorruptAt(o::TOMBSTONE_COUNT),
        ),
        (
            "seen_count > message_count",
            o::SEEN_COUNT,
            u64::from(h.message_count) + 1,
            4,
            CorruptAt(o::SEEN_COUNT),
        ),
        (
            "deleted_count > message_count",
            o::DELETED_COUNT,
            u64::from(h.message_count) + 1,
            4,
            CorruptAt(o::DELETED_COUNT),
        ),
        (
            "keyword_count > 128",
            o::KEYWORD_COUNT,
            129,
            4,
            CorruptAt(o::KEYWORD_COUNT),
        ),
        ("compat flags", o::COMPAT_FLAGS, 1, 4, CorruptAt(o::COMPAT_FLAGS)),
        ("reserved start", o::RESERVED, 1, 1, CorruptAt(o::RESERVED)),
        ("reserved end", o::HEADER_CRC - 1, 0x80, 1, CorruptAt(o::RESERVED)),
        (
            "keyword_count one short: a used slot is past the count",
            o::KEYWORD_COUNT,
            u64::from(h.keyword_count) - 1,
            4,
            CorruptAt(FIXED_HEADER_SIZE + (h.keyword_count as usize - 1) * KEYWORD_SLOT_SIZE),
        ),
        (
            "keyword_count one long: an empty slot is counted",
            o::KEYWORD_COUNT,
            u64::from(h.keyword_count) + 1,
            4,
            CorruptAt(FIXED_HEADER_SIZE + h.keyword_count as usize * KEYWORD_SLOT_SIZE),
        ),
        (
            "record_capacity beyond the file",
            o::RECORD_CAPACITY,
            u64::from(u32::MAX),
            4,
            Truncated("records"),
        ),
        (
            "tombstone_capacity beyond the file",
            o::TOMBSTONE_CAPACITY,
            u64::from(h.tombstone_capacity) + 1,
            4,
            Truncated("tombstones"),
        ),
        (
            "record_capacity short of the file: trailing bytes",
            o::RECORD_CAPACITY,
            u64::from(h.record_capacity) - 1,
            4,
            CorruptAt(h.file_len() - RECORD_SIZE),
        ),
        // Values an O(1) open cannot judge; verify must.
        (
            "uid_next at the last UID",
            o::UID_NEXT,
            u64::from(h.uid_next) - 1,
            4,
            VerifyFails,
        ),
        (
            "highest_modseq below records",
            o::HIGHEST_MODSEQ,
            1,
            8,
            VerifyFails,
        ),
        (
            "seen_count off by one",
            o::SEEN_COUNT,
            u64::from(h.seen_count) - 1,
            4,
            VerifyFails,
        ),
        (
            "deleted_count off by one",
            o::DELETED_COUNT,
            u64::from(h.deleted_count) - 1,
            4,
            VerifyFails,
        ),
        (
            "record_digest",
            o::RECORD_DIGEST,
            h.record_digest ^ 1,
            8,
            VerifyFails,
        ),
        (
            "tombstone_digest",
            o::TOMBSTONE_DIGEST,
            h.tombstone_digest ^ 1,
            8,
            VerifyFails,
        ),
        (
            "message_count one short",
            o::MESSAGE_COUNT,
            u64::from(h.message_count) - 1,
            4,
            VerifyFails,
        ),
        (
            "tombstone_count one short",
            o::TOMBSTONE_COUNT,
            u64::from(h.tombstone_count) - 1,
            4,
            VerifyFails,
        ),
    ];
    for (what, offset, value, width, expect) in cases {
        let mut bytes = image.clone();
        match width {
            1 => bytes[offset] = value as u8,
            4 => put_u32(&mut bytes, offset, value as u32),
            _ => put_u64(&mut bytes, offset, value),
        }
        reseal(&mut bytes);
        let result = open_image(&bytes);
        match (expect, result) {
            (CorruptAt(expected), Err(IndexError::Corrupt { offset, .. })) => {
                assert_eq!(offset, expected as u64, "{what}")
            }
            (Truncated(expected), Err(IndexError::Truncated { what: found, .. })) => {
                assert_eq!(found, expected, "{what}")
            }
            (VerifyFails, Ok(ix)) => match ix.verify() {
                Err(IndexError::Corrupt { .. } | IndexError::ChecksumMismatch { .. }) => {}
                other => panic!("{what}: verify gave {other:?}"),
            },
            (_, other) => panic!("{what}: got {other:?}"),
        }
    }
}

#[test]
fn keyword_slots_are_checked_even_with_a_valid_crc() {
    let image = sample_image();
    let h = header_of(&image);
    let last = FIXED_HEADER_SIZE + (h.keyword_count as usize - 1) * KEYWORD_SLOT_SIZE;
    let unused = FIXED_HEADER_SIZE + h.keyword_count as usize * KEYWORD_SLOT_SIZE;
    // (what, slot reported, byte written, value)
    let cases = [
        ("used slot with length 0", last, last, 0),
        ("length beyond the slot", last, last, KEYWORD_SLOT_SIZE as u8),
        ("name not UTF-8", last, last + 1, 0xFF),
        ("bytes after the name", last, last + KEYWORD_SLOT_SIZE - 1, b'x'),
        ("unused slot not zero", unused, unused + 5, 1),
        (
            "last unused slot not zero",
            HEADER_SIZE - KEYWORD_SLOT_SIZE,
            HEADER_SIZE - 1,
            1,
        ),
    ];
    for (what, slot, at, value) in cases {
        let mut bytes = image.clone();
        bytes[at] = value;
        reseal_keywords(&mut bytes);
        match open_image(&bytes) {
            Err(IndexError::Corrupt { offset, .. }) => assert_eq!(offset, slot as u64, "{what}"),
            other => panic!("{what}: got {other:?}"),
        }
    }

    // Dropping the last keyword from a valid table leaves records using a bit beyond it.
    let mut bytes = image.clone();
    bytes[last..last + KEYWORD_SLOT_SIZE].fill(0);
    put_u32(&mut bytes, offsets::KEYWORD_COUNT, h.keyword_count - 1);
    reseal_keywords(&mut bytes);
    let ix = open_image(&bytes).expect("a consistent, shorter keyword table opens");
    match ix.verify() {
        Err(IndexError::Corrupt { offset, reason, .. }) => {
            assert!(reason.contains("keyword"), "{reason}");
            assert_eq!((offset as usize - HEADER_SIZE) % RECORD_SIZE, 16);
        }
        other => panic!("keyword bit beyond the table: verify gave {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest.

fn assert_corrupt_manifest(result: Result<Manifest, SmError>, case: &str) {
    match result {
        Err(SmError::CorruptManifest { file, .. }) => assert_eq!(file, Path::new("manifest")),
        other => panic!("{case}: expected CorruptManifest, got {other:?}"),
    }
}

/// Frames `payload` as a manifest with a correct length and CRC.
fn manifest_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = b"DVTLMFST".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

const MANIFEST_FRAME_HEADER: usize = 24;

#[test]
fn manifest_damage_is_corrupt_manifest() {
    let group = sample_group();
    let bytes = group.manifest().encode();
    let path = Path::new("manifest");
    assert_eq!(&Manifest::decode(path, &bytes).unwrap(), group.manifest());
    assert_eq!(manifest_frame(&bytes[MANIFEST_FRAME_HEADER..]), bytes);
    for len in 0..bytes.len() {
        assert_corrupt_manifest(Manifest::decode(path, &bytes[..len]), &format!("cut at {len}"));
    }
    for pos in 0..bytes.len() {
        for mask in MASKS {
            let mut damaged = bytes.clone();
            damaged[pos] ^= mask;
            assert_corrupt_manifest(
                Manifest::decode(path, &damaged),
                &format!("byte {pos} ^ {mask:#04x}"),
            );
        }
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_corrupt_manifest(Manifest::decode(path, &trailing), "trailing byte");

    // A valid frame around a bad payload: the CRC passes, decoding must not.
    let payload = &bytes[MANIFEST_FRAME_HEADER..];
    let mut longer = payload.to_vec();
    longer.push(0);
    assert_corrupt_manifest(
        Manifest::decode(path, &manifest_frame(&longer)),
        "byte after the payload",
    );
    for len in 0..payload.len() {
        assert_corrupt_manifest(
            Manifest::decode(path, &manifest_frame(&payload[..len])),
            &format!("payload cut at {len}, frame resealed"),
        );
    }
    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_corrupt_manifest(Manifest::decode(path, &future), "version 2");
}

/// The sample group carried on in log encoding 4: subscriptions (one to a mailbox that does not
/// exist), a copy and a move. Its manifest is layout 4, the subscriptions after the sessions.
fn subscribed_txns() -> Vec<Txn> {
    let subscribe = |mailbox: &str| Op::Subscribe {
        user: USER.into(),
        mailbox: mailbox.into(),
    };
    let ops = vec![
        Op::SetEncoding { version: 4 },
        subscribe("INBOX"),
        subscribe("Archive"),
        subscribe("Lists/Not yet created"),
        Op::Copy {
            user: USER.into(),
            from: "INBOX".into(),
            to: "Archive".into(),
            uids: uids(&[(1, 10)]),
        },
        Op::Move {
            user: USER.into(),
            from: "INBOX".into(),
            to: "Archive".into(),
            uids: uids(&[(11, 12)]),
        },
    ];
    let first = sample_txns().len() as u64;
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| txn(first + i as u64 + 1, op))
        .collect()
}

fn apply_subscribed(mut apply: impl FnMut(LogPosition, &Txn) -> Option<Outcome>) {
    apply_sample(&mut apply);
    let first = sample_txns().len() as u64;
    for (i, t) in subscribed_txns().iter().enumerate() {
        let outcome = apply(LogPosition::new(1, first + i as u64 + 1), t).expect("new entry");
        assert!(!outcome.is_rejected(), "encoding-4 txn {i} rejected: {outcome:?}");
    }
}

/// Frames `payload` as a manifest of `version` with a correct length and CRC.
fn manifest_frame_of(version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = manifest_frame(payload);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    out
}

/// Layout 4 (log encoding 4, the subscriptions) is refused by name under every damage the
/// older layouts are: every cut, every byte flipped (three masks), a trailing byte, a payload
/// cut anywhere — inside the subscriptions too — and resealed, another version claimed; and a
/// group directory whose manifest has damage in its subscriptions does not open (the files are
/// left as they were), nor does a snapshot carrying it import. Never a panic, never a group
/// opened with its subscriptions silently dropped.
#[test]
fn layout_4_manifest_damage_is_corrupt_manifest() {
    let mut group = GroupState::in_memory();
    apply_subscribed(|p, t| group.apply(p, t).unwrap());
    let bytes = group.manifest().encode();
    let path = Path::new("manifest");
    assert_eq!(&bytes[8..12], &4u32.to_le_bytes(), "layout 4");
    let decoded = Manifest::decode(path, &bytes).unwrap();
    assert_eq!(&decoded, group.manifest());
    assert_eq!(decoded.subscriptions[USER].len(), 3);
    for len in 0..bytes.len() {
        assert_corrupt_manifest(Manifest::decode(path, &bytes[..len]), &format!("cut at {len}"));
    }
    for pos in 0..bytes.len() {
        for mask in MASKS {
            let mut damaged = bytes.clone();
            damaged[pos] ^= mask;
            assert_corrupt_manifest(
                Manifest::decode(path, &damaged),
                &format!("byte {pos} ^ {mask:#04x}"),
            );
        }
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_corrupt_manifest(Manifest::decode(path, &trailing), "trailing byte");
    let payload = &bytes[MANIFEST_FRAME_HEADER..];
    for len in 0..payload.len() {
        assert_corrupt_manifest(
            Manifest::decode(path, &manifest_frame_of(4, &payload[..len])),
            &format!("payload cut at {len}, frame resealed"),
        );
    }
    for version in [1, 2, 3, 5] {
        assert_corrupt_manifest(
            Manifest::decode(path, &manifest_frame_of(version, payload)),
            &format!("layout 4 payload framed as version {version}"),
        );
    }

    // On disk: the subscriptions' bytes (the payload's last ones) damaged, with the frame's CRC
    // left as it was and resealed.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut machine = GroupStateMachine::open(dir.path()).unwrap();
        apply_subscribed(|p, t| machine.apply(p, t).unwrap());
        machine.flush().unwrap();
        machine.checkpoint().unwrap();
    }
    let manifest_path = dir.path().join("live/manifest");
    let clean = fs::read(&manifest_path).unwrap();
    assert_eq!(clean, bytes, "on disk as in memory");
    let reopened = GroupStateMachine::open(dir.path()).unwrap();
    assert_eq!(
        reopened.subscriptions(USER),
        ["Archive", "INBOX", "Lists/Not yet created"]
    );
    drop(reopened);
    let subscriptions_at = clean.len() - 3;
    let mut resealed_payload = payload.to_vec();
    let at = resealed_payload.len() - 3;
    resealed_payload[at] = 0xFF;
    for (what, damaged) in [
        ("subscription byte flipped", {
            let mut b = clean.clone();
            b[subscriptions_at] ^= 0x01;
            b
        }),
        ("subscriptions cut off", clean[..clean.len() - 10].to_vec()),
        (
            "subscription byte changed, frame resealed",
            manifest_frame_of(4, &resealed_payload),
        ),
    ] {
        fs::write(&manifest_path, &damaged).unwrap();
        let before = snapshot_dir(dir.path());
        match GroupStateMachine::open(dir.path()) {
            Err(SmError::CorruptManifest { .. }) => {}
            Err(e) => panic!("{what}: wrong error {e:?}"),
            Ok(_) => panic!("{what}: a group opened with a damaged manifest"),
        }
        assert!(snapshot_dir(dir.path()) == before, "{what}: files changed");
    }
    fs::write(&manifest_path, &clean).unwrap();

    // A snapshot stream carrying a damaged layout-4 manifest does not import.
    let mut stream = Vec::new();
    group.export_snapshot(&mut stream).unwrap();
    let manifest_at = stream
        .windows(bytes.len())
        .position(|w| w == &bytes[..])
        .expect("the manifest is in the stream");
    stream[manifest_at + bytes.len() - 3] ^= 0x01;
    assert!(GroupState::import_snapshot(&stream[..]).is_err());
}

/// Regression: a payload whose CRC is valid but which claims a string of 2^40 bytes used to make
/// `Manifest::decode` allocate 1 TiB and abort the process (bincode's standard configuration has
/// no limit). Only a producer that computes the CRC over garbage (a hostile or buggy leader's
/// snapshot) gets here. Fixed by decoding with a size limit.
#[test]
fn manifest_payload_with_huge_string_length_is_refused() {
    // applied: None; uid_validity_max: 0; users: 1 entry; its key: a string of 2^40 bytes.
    let mut payload = vec![0u8, 0, 1, 253];
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert_corrupt_manifest(
        Manifest::decode(Path::new("manifest"), &manifest_frame(&payload)),
        "huge string length",
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshot streams.

const SNAPSHOT_FIXED: usize = 8 + 4 + 1 + 8 + 8 + 4;

/// A snapshot stream with correct per-file CRCs around arbitrary files.
fn snapshot_stream(applied: Option<LogPosition>, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"DVTLSNAP".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.push(u8::from(applied.is_some()));
    let position = applied.unwrap_or_default();
    out.extend_from_slice(&position.term.to_le_bytes());
    out.extend_from_slice(&position.index.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (name, bytes) in files {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(b"DVTLEND\0");
    out
}

/// True if the reader, walking `stream` as `SnapshotReader` does, would meet a file length
/// field above 1 GiB that it accepts (<= 2^36): the shape of input that used to make the reader
/// allocate the claimed length up front.
fn claims_huge_file(stream: &[u8]) -> bool {
    let Some(count) = stream.get(29..33) else {
        return false;
    };
    let count = u32::from_le_bytes(count.try_into().unwrap());
    let mut at = SNAPSHOT_FIXED;
    for _ in 0..count {
        let Some(name_len) = stream.get(at..at + 2) else {
            return false;
        };
        at += 2 + u16::from_le_bytes(name_len.try_into().unwrap()) as usize;
        let Some(len) = stream.get(at..at + 8) else {
            return false;
        };
        let len = u64::from_le_bytes(len.try_into().unwrap());
        if len > 1 << 30 && len <= 1 << 36 {
            return true;
        }
        at = at.saturating_add(12).saturating_add(len as usize);
    }
    false
}

fn assert_corrupt_snapshot<T: std::fmt::Debug>(result: Result<T, SmError>, case: &str) {
    match result {
        Err(SmError::CorruptSnapshot { .. }) => {}
        other => panic!("{case}: expected CorruptSnapshot, got {other:?}"),
    }
}

#[test]
fn snapshot_truncated_anywhere_is_corrupt_snapshot() {
    let stream = sample_snapshot();
    let whole = GroupState::import_snapshot(&stream[..]).unwrap();
    assert_eq!(whole.digest(), sample_group().digest());
    for len in 0..stream.len() {
        assert_corrupt_snapshot(
            GroupState::import_snapshot(&stream[..len]),
            &format!("cut at {len}"),
        );
    }
}

#[test]
fn snapshot_flipped_bytes_are_refused() {
    let stream = sample_snapshot();
    for pos in 0..stream.len() {
        for mask in MASKS {
            let mut damaged = stream.clone();
            damaged[pos] ^= mask;
            let case = format!("byte {pos} ^ {mask:#04x}");
            // The stream header's applied position, which no checksum covers, used to be
            // accepted here when it disagreed with the manifest (only install compared them);
            // every reader now makes the same cross-checks (`StreamCheck`).
            match GroupState::import_snapshot(&damaged[..]) {
                Err(SmError::CorruptSnapshot { .. }) => {}
                other => panic!("{case}: expected CorruptSnapshot, got {other:?}"),
            }
        }
    }
}

#[test]
fn snapshot_with_valid_crcs_but_bad_contents_is_refused() {
    let group = sample_group();
    let manifest = group.manifest().encode();
    let inbox = group.mailboxes()[&INBOX_GUID].bytes().to_vec();
    let archive = group.mailboxes()[&ARCHIVE_GUID].bytes().to_vec();
    let inbox_name = index_file_name(&INBOX_GUID);
    let archive_name = index_file_name(&ARCHIVE_GUID);
    let applied = group.applied();
    let good = snapshot_stream(
        applied,
        &[
            ("manifest", &manifest),
            (&inbox_name, &inbox),
            (&archive_name, &archive),
        ],
    );
    assert_eq!(
        good,
        sample_snapshot(),
        "the test's stream writer matches export_snapshot"
    );

    for name in [
        "../x",
        "../../etc/passwd",
        "/tmp/x",
        "live/../x",
        "a.idx",
        "",
        "MANIFEST",
        "manifest/../x",
        "1111111111111111111111111111111.idx",
        "11111111111111111111111111111111.IDX",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.idx",
        "../11111111111111111111111111111111.idx",
    ] {
        let stream = snapshot_stream(applied, &[("manifest", &manifest), (name, &inbox)]);
        assert_corrupt_snapshot(
            GroupState::import_snapshot(&stream[..]),
            &format!("file name {name:?}"),
        );
    }

    let truncated_index = snapshot_stream(
        applied,
        &[
            ("manifest", &manifest),
            (&inbox_name, &inbox[..100]),
            (&archive_name, &archive),
        ],
    );
    match GroupState::import_snapshot(&truncated_index[..]) {
        Err(SmError::Index(IndexError::Truncated { what, .. })) => assert_eq!(what, field_at(100).0),
        other => panic!("truncated index inside a valid stream: got {other:?}"),
    }
    let bad_manifest = snapshot_stream(applied, &[("manifest", b"DVTLMFST")]);
    assert!(matches!(
        GroupState::import_snapshot(&bad_manifest[..]),
        Err(SmError::CorruptManifest { .. })
    ));
    let missing = snapshot_stream(applied, &[("manifest", &manifest), (&inbox_name, &inbox)]);
    assert_corrupt_snapshot(GroupState::import_snapshot(&missing[..]), "missing index");
    let extra_name = index_file_name(&[0x33; 16]);
    let extra = snapshot_stream(
        applied,
        &[
            ("manifest", &manifest),
            (&inbox_name, &inbox),
            (&archive_name, &archive),
            (&extra_name, &archive),
        ],
    );
    assert_corrupt_snapshot(GroupState::import_snapshot(&extra[..]), "extra index");
    let no_manifest = snapshot_stream(applied, &[(&inbox_name, &inbox)]);
    assert_corrupt_snapshot(GroupState::import_snapshot(&no_manifest[..]), "no manifest");
}

/// Regression: `SnapshotReader::next_file` used to allocate the claimed file length before
/// reading, so a stream claiming a 60 GiB file — one flipped bit in a length field is enough —
/// aborted the process. Fixed by reading through `take`, so memory follows the bytes present.
#[test]
fn snapshot_with_huge_file_length_is_refused_without_allocating_it() {
    let mut stream = snapshot_stream(None, &[("manifest", b"")]);
    let len_at = SNAPSHOT_FIXED + 2 + "manifest".len();
    stream[len_at..len_at + 8].copy_from_slice(&(60u64 << 30).to_le_bytes());
    assert!(claims_huge_file(&stream));
    assert_corrupt_snapshot(GroupState::import_snapshot(&stream[..]), "60 GiB file claimed");
}

// ---------------------------------------------------------------------------------------------
// A group directory on disk.

fn live_index_path(dir: &Path) -> PathBuf {
    dir.join("live").join(index_file_name(&INBOX_GUID))
}

/// Writes the sample group to `dir`: clean `live/` and a checkpoint at the same position.
fn build_group_dir(dir: &Path) {
    let mut machine = GroupStateMachine::open(dir).unwrap();
    apply_sample(|p, t| machine.apply(p, t).unwrap());
    machine.flush().unwrap();
    machine.checkpoint().unwrap();
}

/// Every file under `dir` (relative path -> bytes), to check nothing was changed.
fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().unwrap() != "LOCK" {
                let bytes = fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    files
}

fn damage_file(path: &Path, damage: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    damage(&mut bytes);
    fs::write(path, bytes).unwrap();
}

#[test]
fn group_open_refuses_a_damaged_clean_live_dir_and_leaves_it_untouched() {
    type Damage = Box<dyn Fn(&Path)>;
    type Check = fn(&SmError) -> bool;
    let cases: Vec<(&str, Damage, Check)> = vec![
        (
            "index header byte flipped",
            Box::new(|d| damage_file(&live_index_path(d), |b| b[offsets::UID_NEXT] ^= 1)),
            |e| {
                matches!(
                    e,
                    SmError::Index(IndexError::ChecksumMismatch { region: "header", .. })
                )
            },
        ),
        (
            "index truncated",
            Box::new(|d| damage_file(&live_index_path(d), |b| b.truncate(4000))),
            |e| {
                matches!(
                    e,
                    SmError::Index(IndexError::Truncated {
                        what: "keyword_table",
                        ..
                    })
                )
            },
        ),
        (
            "index emptied",
            Box::new(|d| damage_file(&live_index_path(d), |b| b.clear())),
            |e| matches!(e, SmError::Index(IndexError::Truncated { what: "magic", .. })),
        ),
        (
            "keyword table byte flipped",
            Box::new(|d| damage_file(&live_index_path(d), |b| b[FIXED_HEADER_SIZE + 1] ^= 0x20)),
            |e| {
                matches!(
                    e,
                    SmError::Index(IndexError::ChecksumMismatch {
                        region: "keyword_table",
                        ..
                    })
                )
            },
        ),
        (
            "index with trailing bytes",
            Box::new(|d| damage_file(&live_index_path(d), |b| b.extend_from_slice(&[0; 16]))),
            |e| matches!(e, SmError::Index(IndexError::Corrupt { .. })),
        ),
        (
            "manifest byte flipped",
            Box::new(|d| damage_file(&d.join("live/manifest"), |b| *b.last_mut().unwrap() ^= 1)),
            |e| matches!(e, SmError::CorruptManifest { .. }),
        ),
        (
            "dirty live/ and a damaged checkpoint: no silent empty group",
            Box::new(|d| {
                fs::write(d.join("live/DIRTY"), b"").unwrap();
                damage_file(&d.join("checkpoint.snap"), |b| {
                    let middle = b.len() / 2;
                    b[middle] ^= 1;
                });
            }),
            |e| matches!(e, SmError::CorruptSnapshot { .. }),
        ),
    ];
    for (what, damage, check) in cases {
        let dir = tempfile::tempdir().unwrap();
        build_group_dir(dir.path());
        damage(dir.path());
        let before = snapshot_dir(dir.path());
        match GroupStateMachine::open(dir.path()) {
            Err(e) => assert!(check(&e), "{what}: wrong error {e:?}"),
            Ok(m) => panic!("{what}: open succeeded with recovery {:?}", m.recovery()),
        }
        let after = snapshot_dir(dir.path());
        let live = |files: &[(PathBuf, Vec<u8>)]| -> Vec<(PathBuf, Vec<u8>)> {
            files
                .iter()
                .filter(|(p, _)| p.starts_with("live") || p == Path::new("checkpoint.snap"))
                .cloned()
                .collect()
        };
        assert!(
            live(&after) == live(&before),
            "{what}: live/ or the checkpoint changed"
        );
    }
}

#[test]
fn group_open_accepts_record_damage_in_o1_and_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    build_group_dir(dir.path());
    let path = live_index_path(dir.path());
    damage_file(&path, |b| b[HEADER_SIZE + 3 * RECORD_SIZE + 40] ^= 0x10);
    let before = fs::read(&path).unwrap();
    {
        let machine = GroupStateMachine::open(dir.path()).unwrap();
        let index = &machine.state().mailboxes()[&INBOX_GUID];
        match index.verify() {
            Err(IndexError::ChecksumMismatch {
                region: "records",
                file,
                ..
            }) => assert_eq!(file, path),
            other => panic!("record damage: verify gave {other:?}"),
        }
        machine.state().mailboxes()[&ARCHIVE_GUID].verify().unwrap();
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "opening must not repair the file"
    );
}

#[test]
fn install_of_a_hostile_snapshot_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("group");
    build_group_dir(&dir);
    let group = sample_group();
    let manifest = group.manifest().encode();
    let inbox = group.mailboxes()[&INBOX_GUID].bytes().to_vec();
    let mut machine = GroupStateMachine::open(&dir).unwrap();
    let digest = machine.state().digest();
    let before = snapshot_dir(&dir);
    let mut flipped = sample_snapshot();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let streams = [
        snapshot_stream(group.applied(), &[("manifest", &manifest), ("../x", &inbox)]),
        snapshot_stream(group.applied(), &[("manifest", &manifest), ("../../x", b"x")]),
        flipped,
        sample_snapshot()[..5000].to_vec(),
    ];
    for (i, stream) in streams.iter().enumerate() {
        match machine.install_snapshot(&stream[..]) {
            Err(SmError::CorruptSnapshot { .. }) => {}
            other => panic!("hostile stream {i}: got {other:?}"),
        }
        assert_eq!(machine.state().digest(), digest, "stream {i}");
        assert!(!root.path().join("x").exists() && !dir.join("x").exists());
        assert!(!dir.join("incoming").exists(), "stream {i} left incoming/");
    }
    drop(machine);
    assert!(
        snapshot_dir(&dir) == before,
        "a refused install changed the group directory"
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzz-style properties: nothing panics.

/// 256 cases per property, drawn from the printed seed (`DOVETAIL_SEED` replays them).
fn fuzz_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(seed("format_corruption proptests")),
        ..ProptestConfig::default()
    }
}

/// Byte-level damage: XOR at positions (taken modulo the length), then a cut or an extension.
#[derive(Debug, Clone)]
struct Mutation {
    flips: Vec<(usize, u8)>,
    cut: Option<usize>,
    extend: Vec<u8>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<usize>(), 1..=255u8), 0..8),
        prop::option::weighted(0.2, any::<usize>()),
        prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 1..64)),
    )
        .prop_map(|(flips, cut, extend)| Mutation {
            flips,
            cut,
            extend: extend.unwrap_or_default(),
        })
}

fn mutate(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(pos, xor) in &m.flips {
        let len = out.len();
        out[pos % len] ^= xor;
    }
    if let Some(cut) = m.cut {
        out.truncate(cut % (bytes.len() + 1));
    }
    out.extend_from_slice(&m.extend);
    out
}

/// Opens, and if the header passes, verifies; if that passes too, every read must work.
fn open_verify_read(bytes: &[u8]) {
    let Ok(ix) = open_image(bytes) else { return };
    if ix.verify().is_err() {
        return;
    }
    let _ = ix.changed_since(0);
    let _ = ix.vanished_since(0);
    for p in 0..ix.len() {
        let r = ix.record_at(p);
        assert_eq!(ix.get(r.uid), Some(r));
        let _ = ix.keyword_names(r.keywords);
    }
    let _ = ix.positions_in(1, u32::MAX);
}

const NUMERIC_FIELDS: [(usize, usize); 16] = {
    use offsets as o;
    [
        (o::UID_VALIDITY, 4),
        (o::UID_NEXT, 4),
        (o::MESSAGE_COUNT, 4),
        (o::RECORD_CAPACITY, 4),
        (o::TOMBSTONE_COUNT, 4),
        (o::TOMBSTONE_CAPACITY, 4),
        (o::HIGHEST_MODSEQ, 8),
        (o::APPLIED_TERM, 8),
        (o::APPLIED_INDEX, 8),
        (o::SEEN_COUNT, 4),
        (o::DELETED_COUNT, 4),
        (o::KEYWORD_COUNT, 4),
        (o::RECORD_DIGEST, 8),
        (o::TOMBSTONE_DIGEST, 8),
        (o::KEYWORD_TABLE_CRC, 4),
        (o::HEADER_SIZE, 4),
    ]
};

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn index_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..10_000)) {
        open_verify_read(&bytes);
        // The same bytes behind a valid magic and version.
        let mut framed = b"DVTLIDX\0\x01\0\0\0".to_vec();
        framed.extend_from_slice(&bytes);
        open_verify_read(&framed);
    }

    #[test]
    fn index_mutations_never_panic(m in mutation(), reseal_header in any::<bool>()) {
        let mut bytes = mutate(&SAMPLE_IMAGE, &m);
        if reseal_header && bytes.len() >= HEADER_SIZE {
            reseal_keywords(&mut bytes);
        }
        open_verify_read(&bytes);
    }

    /// Header fields set to small or edge values with valid checksums reach every later check.
    #[test]
    fn index_resealed_header_fields_never_panic(
        sets in prop::collection::vec(
            (0..NUMERIC_FIELDS.len(), prop_oneof![0..64u64, Just(u64::MAX), any::<u64>()]),
            1..6,
        ),
    ) {
        let mut bytes = SAMPLE_IMAGE.clone();
        for (field, value) in sets {
            let (at, width) = NUMERIC_FIELDS[field];
            if width == 4 {
                put_u32(&mut bytes, at, value as u32);
            } else {
                put_u64(&mut bytes, at, value);
            }
        }
        reseal(&mut bytes);
        open_verify_read(&bytes);
    }

    #[test]
    fn manifest_mutations_never_panic(m in mutation()) {
        let bytes = mutate(&SAMPLE_MANIFEST, &m);
        let _ = Manifest::decode(Path::new("manifest"), &bytes);
    }

    #[test]
    fn snapshot_mutations_never_panic(m in mutation()) {
        let stream = mutate(&SAMPLE_SNAPSHOT, &m);
        if let Ok(state) = GroupState::import_snapshot(&stream[..]) {
            let _ = state.digest();
        }
    }
}

static SAMPLE_IMAGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(sample_image);
static SAMPLE_MANIFEST: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| sample_group().manifest().encode());
static SAMPLE_SNAPSHOT: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(sample_snapshot);

/// The helpers above agree with the library: field ends, and `get_u32` over the image.
#[test]
fn helpers_agree_with_the_format() {
    let image = sample_image();
    let h = header_of(&image);
    assert_eq!(get_u32(&image, offsets::MESSAGE_COUNT), h.message_count);
    assert_eq!(field_at(offsets::HEADER_CRC), ("header_crc", FIXED_HEADER_SIZE));
    assert_eq!(field_at(offsets::RESERVED + 5), ("reserved", offsets::HEADER_CRC));
    assert_eq!(image.len(), h.file_len());
}

// ---------------------------------------------------------------------------------------------
// Every header field of every structure: flipped, it is a named error in every reader, never a
// panic and never silently accepted. (Index header bytes: `every_fixed_header_byte_flip_is_named`
// above; the cross-checks that catch a changed field whose checksum was recomputed: below.)

/// A directory on a memory file system when there is one: the install and restore cases below
/// sync every file they unpack.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("dovetail-test-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// The fields of a snapshot stream, in order: (name, start, length). File contents are left
/// out (each file's CRC32C covers its bytes; the flip tests above show it).
fn snapshot_fields(stream: &[u8]) -> Vec<(String, usize, usize)> {
    let mut fields: Vec<(String, usize, usize)> = [
        ("magic", 0, 8),
        ("version", 8, 4),
        ("applied flag", 12, 1),
        ("applied term", 13, 8),
        ("applied index", 21, 8),
        ("file count", 29, 4),
    ]
    .iter()
    .map(|&(n, s, l)| (n.to_string(), s, l))
    .collect();
    let count = u32::from_le_bytes(stream[29..33].try_into().unwrap());
    let mut at = SNAPSHOT_FIXED;
    for i in 0..count {
        let name_len = u16::from_le_bytes(stream[at..at + 2].try_into().unwrap()) as usize;
        fields.push((format!("file {i} name length"), at, 2));
        fields.push((format!("file {i} name"), at + 2, name_len));
        at += 2 + name_len;
        let len = u64::from_le_bytes(stream[at..at + 8].try_into().unwrap()) as usize;
        fields.push((format!("file {i} length"), at, 8));
        fields.push((format!("file {i} crc32c"), at + 8, 4));
        at += 12 + len;
    }
    fields.push(("trailer".to_string(), at, 8));
    assert_eq!(at + 8, stream.len(), "the fields cover the stream");
    fields
}

/// Every bit of every field of the snapshot stream's headers (the stream header, each file's
/// name, length and checksum, the trailer) flipped: import (what `dovetail dump` reads), dump
/// itself, install and a dirty group's restore from it as a checkpoint all refuse it with a
/// named error, and a refused install leaves the group as it was. Before `StreamCheck`, import
/// and dump accepted a stream whose header disagreed with its manifest.
#[test]
fn every_snapshot_stream_field_flipped_is_refused_by_every_reader() {
    let stream = sample_snapshot();
    let fields = snapshot_fields(&stream);
    let scratch = scratch_dir();
    let mut machine = GroupStateMachine::open(&scratch.path().join("installing")).unwrap();
    let before = machine.state().digest();
    let file = scratch.path().join("checkpoint.snap");
    let restoring = scratch.path().join("restoring");
    let mut cases = 0;
    for (field, start, len) in &fields {
        for byte in *start..start + len {
            for bit in 0..8 {
                let mut damaged = stream.clone();
                damaged[byte] ^= 1 << bit;
                let case = format!("{field}: byte {byte} bit {bit}");
                cases += 1;
                assert_corrupt_snapshot(GroupState::import_snapshot(&damaged[..]), &case);
                fs::write(&file, &damaged).unwrap();
                match dovetail::dump::dump_path(&file, 10) {
                    Err(_) => {}
                    Ok(dump) => panic!("{case}: dump accepted it: {:?}", dump.healthy()),
                }
                assert_corrupt_snapshot(
                    machine.install_snapshot(&damaged[..]),
                    &format!("install, {case}"),
                );
                assert_eq!(
                    machine.state().digest(),
                    before,
                    "{case}: a refused install changed the group"
                );
                // Restore (every fourth bit: each one syncs a directory's worth of files).
                if bit % 4 == 0 {
                    let _ = fs::remove_dir_all(&restoring);
                    fs::create_dir_all(restoring.join("live")).unwrap();
                    fs::write(restoring.join("live/DIRTY"), b"").unwrap();
                    fs::write(restoring.join("checkpoint.snap"), &damaged).unwrap();
                    match GroupStateMachine::open(&restoring) {
                        Err(SmError::CorruptSnapshot { .. }) => {}
                        other => panic!(
                            "restore, {case}: expected CorruptSnapshot, got {:?}",
                            other.map(|_| "a group")
                        ),
                    }
                }
            }
        }
    }
    assert!(cases > 1000, "{cases} cases");
}

/// Each field of the manifest's frame (magic, layout version, payload length, payload CRC32C)
/// flipped, bit by bit: `CorruptManifest`, and the reason names the field.
#[test]
fn every_manifest_frame_field_flipped_is_named() {
    let bytes = sample_group().manifest().encode();
    let path = Path::new("manifest");
    for (field, start, len, reason) in [
        ("magic", 0, 8, "bad magic"),
        ("version", 8, 4, "is not supported"),
        ("payload length", 12, 8, "frame says"),
        ("payload crc32c", 20, 4, "checksum mismatch"),
    ] {
        for byte in start..start + len {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let case = format!("{field}: byte {byte} bit {bit}");
                match Manifest::decode(path, &damaged) {
                    // A version flipped to the other layout this build reads: the payload is
                    // not of that layout, which its decode names.
                    Err(SmError::CorruptManifest { reason: found, .. })
                        if found.contains(reason) || (field == "version" && found.contains("payload")) => {}
                    // A length flipped above the decode limit is named as such.
                    Err(SmError::CorruptManifest { reason: found, .. })
                        if field == "payload length" && found.contains("exceeds the limit") => {}
                    other => panic!("{case}: expected a CorruptManifest naming the {field}, got {other:?}"),
                }
            }
        }
    }
}

/// Header fields an index's own checks cannot judge once its header checksum is recomputed —
/// the mailbox GUID, UIDVALIDITY and the applied position — are caught by the cross-checks with
/// the manifest wherever a group's files are read together: a snapshot stream (import, install,
/// dump) and a group's `live/` at open.
#[test]
fn index_header_fields_are_cross_checked_with_the_manifest() {
    let group = sample_group();
    let manifest = group.manifest().encode();
    let inbox = group.mailboxes()[&INBOX_GUID].bytes().to_vec();
    let archive = group.mailboxes()[&ARCHIVE_GUID].bytes().to_vec();
    let applied = group.applied().unwrap();
    let uid_validity_max = group.manifest().uid_validity_max;
    type Change = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "mailbox_guid",
            Box::new(|b| b[offsets::MAILBOX_GUID] ^= 1),
            "holds the index of another mailbox",
        ),
        (
            "uid_validity above the high-water mark",
            Box::new(move |b| put_u32(b, offsets::UID_VALIDITY, uid_validity_max + 1)),
            "above the group's high-water mark",
        ),
        (
            "applied index after the manifest's",
            Box::new(move |b| put_u64(b, offsets::APPLIED_INDEX, applied.index + 1)),
            "after the group's applied position",
        ),
        (
            "applied term after the manifest's at its index",
            Box::new(move |b| {
                put_u64(b, offsets::APPLIED_INDEX, applied.index);
                put_u64(b, offsets::APPLIED_TERM, applied.term + 1);
            }),
            "after the group's applied position",
        ),
    ];
    let root = scratch_dir();
    for (field, change, reason) in cases {
        let mut damaged = inbox.clone();
        change(&mut damaged);
        reseal(&mut damaged);
        open_image(&damaged).unwrap_or_else(|e| panic!("{field}: the index alone opens, got {e}"));
        let stream = snapshot_stream(
            Some(applied),
            &[
                ("manifest", &manifest),
                (&index_file_name(&INBOX_GUID), &damaged),
                (&index_file_name(&ARCHIVE_GUID), &archive),
            ],
        );
        match GroupState::import_snapshot(&stream[..]) {
            Err(SmError::CorruptSnapshot { reason: found }) => {
                assert!(found.contains(reason), "{field}: {found}")
            }
            other => panic!("{field}: import gave {:?}", other.map(|g| g.digest())),
        }
        let dir = root.path().join(field.replace(' ', "-"));
        build_group_dir(&dir);
        fs::write(live_index_path(&dir), &damaged).unwrap();
        match GroupStateMachine::open(&dir) {
            Err(SmError::Inconsistent { reason: found, .. }) => {
                assert!(found.contains(reason), "{field}: {found}")
            }
            other => panic!("{field}: open gave {:?}", other.map(|m| m.applied())),
        }
        let error = dovetail::dump::dump_path(&dir, 10).unwrap_err().to_string();
        assert!(error.contains(reason), "{field}: dump: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// The peer protocol's headers: the handshake, a frame's length prefix, a snapshot chunk's
// length and checksum.

mod peer {
    use std::collections::BTreeMap;
    use std::io;
    use std::path::Path;

    use dovetail_raft::transport::auth::{client_handshake, server_handshake, ConnectionKind};
    use dovetail_raft::transport::handler::Handler;
    use dovetail_raft::transport::wire::{self, RequestBody, RequestFrame, ResponseBody, SnapshotHeader};
    use dovetail_raft::transport::{ClusterSecret, RemoteError};
    use dovetail_raft::{
        GroupId, LeaderId, LogId, Membership, Node, Request, Snapshot, SnapshotMeta, StoredMembership,
        TypeConfig, Vote,
    };
    use openraft::raft::SnapshotResponse;
    use openraft::vote::RaftLeaderIdExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A handshake through a relay that flips one bit, server to client or client to server.
    async fn handshake(
        to_client: Option<(usize, u8)>,
        to_server: Option<(usize, u8)>,
    ) -> (io::Result<()>, io::Result<(u64, ConnectionKind)>) {
        let secret = ClusterSecret::new("field-test-secret");
        let (mut client, relay_client) = tokio::io::duplex(1024);
        let (mut server, relay_server) = tokio::io::duplex(1024);
        let (rc_read, rc_write) = tokio::io::split(relay_client);
        let (rs_read, rs_write) = tokio::io::split(relay_server);
        let up = tokio::spawn(relay_half(rc_read, rs_write, to_server));
        let down = tokio::spawn(relay_half(rs_read, rc_write, to_client));
        let server_secret = secret.clone();
        let server_task = tokio::spawn(async move {
            let result = server_handshake(&mut server, &server_secret).await;
            drop(server);
            result
        });
        let client_result = client_handshake(&mut client, &secret, 42, ConnectionKind::Rpc).await;
        drop(client);
        let server_result = server_task.await.unwrap();
        up.abort();
        down.abort();
        (client_result, server_result)
    }

    /// Relays one direction of a connection, flipping bit `bit` of byte `at` as it passes.
    async fn relay_half(
        mut from: tokio::io::ReadHalf<tokio::io::DuplexStream>,
        mut to: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        flip: Option<(usize, u8)>,
    ) {
        let mut passed = 0usize;
        let mut buf = [0u8; 256];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some((at, bit)) = flip {
                if (passed..passed + n).contains(&at) {
                    buf[at - passed] ^= 1 << bit;
                }
            }
            passed += n;
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    /// Every bit of every field of the handshake flipped on the way — the server's magic,
    /// version, nonce and proof; the client's connection kind, node id, nonce and proof — and
    /// the handshake fails on at least one side: no flipped field is accepted, and the server
    /// never accepts a node id or kind the client did not send.
    #[tokio::test]
    async fn every_handshake_field_flipped_is_refused() {
        let (client, server) = handshake(None, None).await;
        client.unwrap();
        assert_eq!(server.unwrap(), (42, ConnectionKind::Rpc));
        let to_client = [
            ("magic", 0, 4),
            ("version", 4, 1),
            ("server nonce", 5, 32),
            ("server proof", 37, 32),
        ];
        let to_server = [
            ("kind", 0, 1),
            ("node id", 1, 8),
            ("client nonce", 9, 32),
            ("client proof", 41, 32),
        ];
        for (towards_client, fields) in [(true, &to_client), (false, &to_server)] {
            for &(field, start, len) in fields.iter() {
                for byte in start..start + len {
                    for bit in 0..8u8 {
                        let flip = Some((byte, bit));
                        let (client, server) = if towards_client {
                            handshake(flip, None).await
                        } else {
                            handshake(None, flip).await
                        };
                        assert!(
                            client.is_err() || server.is_err(),
                            "{field}: byte {byte} bit {bit}: both sides accepted"
                        );
                        if let Ok(accepted) = server {
                            assert_eq!(
                                accepted,
                                (42, ConnectionKind::Rpc),
                                "{field}: byte {byte} bit {bit}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A frame's length prefix with any bit flipped: the frame is refused (too large, the
    /// stream ends inside it, or its payload does not decode whole), never read as another
    /// frame. (The payload itself has no checksum of its own: see ARCHITECTURE.md §9.)
    #[tokio::test]
    async fn every_frame_length_bit_flipped_is_refused() {
        let frames = [
            RequestFrame {
                id: 7,
                group_id: 3,
                body: RequestBody::Forward(Request(b"some request bytes".to_vec())),
            },
            RequestFrame {
                id: 8,
                group_id: 3,
                body: RequestBody::ReadIndex,
            },
        ];
        for frame in &frames {
            let bytes = wire::encode(frame).unwrap();
            for byte in 0..4 {
                for bit in 0..8 {
                    let mut damaged = bytes.clone();
                    damaged[byte] ^= 1 << bit;
                    // What follows the frame on the connection: more frames.
                    damaged.extend_from_slice(&bytes);
                    let result = match wire::read_frame(&mut &damaged[..]).await {
                        Ok(Some(payload)) => wire::decode::<RequestFrame>(&payload).map(|_| ()),
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    assert!(
                        result.is_err(),
                        "{:?}: prefix byte {byte} bit {bit} accepted",
                        frame.body.name()
                    );
                }
            }
        }
    }

    struct Accept {
        dir: tempfile::TempDir,
    }

    impl Handler for Accept {
        async fn handle(&self, group_id: GroupId, _: RequestBody) -> Result<ResponseBody, RemoteError> {
            Err(RemoteError::UnknownGroup { group_id })
        }
        async fn install_snapshot(
            &self,
            _: GroupId,
            vote: Vote,
            _: Snapshot,
        ) -> Result<SnapshotResponse<TypeConfig>, RemoteError> {
            Ok(SnapshotResponse::new(vote))
        }
        fn staging_dir(&self) -> &Path {
            self.dir.path()
        }
    }

    /// A snapshot transfer's framing — each chunk's length and CRC32C, and the end marker —
    /// with any bit flipped: the receiver refuses the transfer (a checksum mismatch, a chunk out
    /// of bounds, a short stream, a wrong total, a non-zero end marker) and installs nothing.
    #[tokio::test]
    async fn every_snapshot_chunk_field_flipped_is_refused() {
        let data = super::sample_snapshot();
        let log_id = LogId::new(LeaderId::new_committed(3, 1), 6);
        let nodes: BTreeMap<u64, Node> = [(1, Node::default())].into_iter().collect();
        let header = SnapshotHeader {
            group_id: 0,
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: StoredMembership::new(
                    Some(log_id),
                    Membership::new(vec![[1].into()], nodes).unwrap(),
                ),
            },
            len: data.len() as u64,
        };
        let mut transfer = wire::encode(&header).unwrap();
        let mut fields = Vec::new();
        for (i, chunk) in data.chunks(4096).enumerate() {
            fields.push((format!("chunk {i} length"), transfer.len(), 4));
            fields.push((format!("chunk {i} crc32c"), transfer.len() + 4, 4));
            transfer.extend((chunk.len() as u32).to_le_bytes());
            transfer.extend(crc32c::crc32c(chunk).to_le_bytes());
            transfer.extend(chunk);
        }
        fields.push(("end marker length".into(), transfer.len(), 4));
        fields.push(("end marker crc32c".into(), transfer.len() + 4, 4));
        transfer.extend([0u8; 8]);
        let handler = Accept {
            dir: super::scratch_dir(),
        };
        let receive = |bytes: Vec<u8>| {
            let handler = &handler;
            async move {
                let mut stream = ReplayStream(std::io::Cursor::new(bytes));
                dovetail_raft::transport::snapshot::receive(&mut stream, handler, 2).await
            }
        };
        receive(transfer.clone()).await.expect("the transfer as sent");
        for (field, start, len) in &fields {
            for byte in *start..start + len {
                for bit in 0..8 {
                    let mut damaged = transfer.clone();
                    damaged[byte] ^= 1 << bit;
                    assert!(
                        receive(damaged).await.is_err(),
                        "{field}: byte {byte} bit {bit} accepted"
                    );
                }
            }
        }
    }

    /// A connection that delivers `bytes` and then ends; writes vanish.
    struct ReplayStream(std::io::Cursor<Vec<u8>>);

    impl tokio::io::AsyncRead for ReplayStream {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for ReplayStream {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
}
