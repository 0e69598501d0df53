//! Golden files of format v1: a fixed transaction log must keep producing the committed bytes,
//! and the committed bytes must keep decoding to the same mailbox state.
//!
//! Property: format v1 is a contract. The files a replica writes are a pure function of the log
//! (ARCHITECTURE.md §7), so a fixed log gives fixed bytes; and a build that reads v1 reads these files.
//!
//! How it is provoked: `golden_log()` — fixed mailbox and message GUIDs, internal dates, proposed
//! UIDVALIDITYs, client sessions and log positions; creates, appends with flags and keywords,
//! stores (one with an UNCHANGEDSINCE conflict), expunges (one with a GUID guard that refuses),
//! a rename, a retried request, a blank entry, a created-then-deleted mailbox — is applied to a
//! `GroupStateMachine` in a temporary directory, flushed and checkpointed.
//!
//! What is checked: (1) the regenerated `live/manifest`, `live/<guid>.idx` files and
//! `checkpoint.snap` equal the files in `tests/fixtures/golden-v1/` byte for byte, and an
//! in-memory `GroupState` writes the same bytes; (2) the committed files, decoded by this build,
//! hold literal expected values (UIDVALIDITY, UIDNEXT, records, flags, keywords, MODSEQs,
//! tombstones, sessions) and their CRC32C and lengths are pinned; (3) the committed checkpoint
//! carries exactly the committed live files; (4) the committed files open as a group directory
//! and accept further transactions.
//!
//! Blessing: the fixtures are rewritten only when `DOVETAIL_BLESS=1` is set:
//! `DOVETAIL_BLESS=1 cargo test --test golden_v1`. Without it this test never writes under
//! `tests/fixtures`. A change that needs blessing changes format v1: it must be deliberate (and
//! normally comes with a new format version); after blessing, update `FIXTURE_FILES` and the
//! expected values below by hand, which is the point.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dovetail::index::{flag_bits, Header, LogPosition, MailboxIndex, Record, Storage, Tombstone, VecStorage};
use dovetail::state_machine::snapshot::index_file_name;
use dovetail::state_machine::{GroupState, GroupStateMachine, Manifest, Recovery, SnapshotReader};
use dovetail::txn::{NewMessage, Op, Outcome, StoreMode, Txn, UidSet};

const USER: &str = "alice@example.org";
const INBOX: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0001u128.to_be_bytes();
const WORK: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0002u128.to_be_bytes();
const TRASH: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0003u128.to_be_bytes();
const INBOX_FILE: &str = "d07e7a11000000000000000000000001.idx";
const WORK_FILE: &str = "d07e7a11000000000000000000000002.idx";
const CHECKPOINT: &str = "checkpoint.snap";

/// Every fixture file with its length and CRC32C: pinned so that blessing alone cannot change v1.
const FIXTURE_FILES: &[(&str, usize, u32)] = &[
    (CHECKPOINT, 21312, 0xe037_b82e),
    (INBOX_FILE, 10752, 0x52ba_41b3),
    (WORK_FILE, 10240, 0x15ad_903b),
    ("manifest", 157, 0x7994_bd0a),
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1")
}

fn blessing() -> bool {
    std::env::var("DOVETAIL_BLESS").is_ok_and(|v| v == "1")
}

/// Message GUID `n` of the log.
fn message_guid(n: u32) -> [u8; 16] {
    (0x6d65_7373_6167_6500_0000_0000_0000_0000u128 + u128::from(n)).to_be_bytes()
}

/// 2024-01-01T00:00:00Z plus `n` hours.
fn date(n: u32) -> i64 {
    1_704_067_200 + i64::from(n) * 3600
}

fn size(n: u32) -> u64 {
    2_000 + u64::from(n) * 111
}

fn message(n: u32, flags: &[&str]) -> NewMessage {
    NewMessage {
        guid: message_guid(n),
        size: size(n),
        internal_date: date(n),
        flags: flags.iter().map(|f| f.to_string()).collect(),
    }
}

fn uids(list: &[u32]) -> UidSet {
    UidSet::from_ranges(list.iter().map(|&u| (u, u))).unwrap()
}

/// The golden log: (position, transaction or `None` for a blank entry).
fn golden_log() -> Vec<(LogPosition, Option<Txn>)> {
    let t = |client: &str, request_seq: u64, op: Op| {
        Some(Txn {
            client_id: client.into(),
            request_seq,
            op,
        })
    };
    let user = || USER.to_string();
    let store = |set: &[u32], mode, flags: &[&str], unchanged_since| Op::Store {
        user: user(),
        mailbox: "INBOX".into(),
        uids: uids(set),
        mode,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        unchanged_since,
    };
    let rename = Op::RenameMailbox {
        user: user(),
        from: "Work".into(),
        to: "Archive/2024".into(),
    };
    let entries = vec![
        t(
            "imap-1",
            1,
            Op::CreateMailbox {
                user: user(),
                mailbox: "INBOX".into(),
                mailbox_guid: INBOX,
                uid_validity: 1_700_000_000,
            },
        ),
        // Proposed equal to INBOX's: raised to 1_700_000_001.
        t(
            "imap-1",
            2,
            Op::CreateMailbox {
                user: user(),
                mailbox: "Work".into(),
                mailbox_guid: WORK,
                uid_validity: 1_700_000_000,
            },
        ),
        t(
            "lda",
            1,
            Op::Append {
                user: user(),
                mailbox: "inbox".into(),
                messages: vec![
                    message(1, &["\\Seen"]),
                    message(2, &[]),
                    message(3, &["\\Flagged", "$Important"]),
                    message(4, &["\\Seen", "$Junk"]),
                    message(5, &["\\Draft", "\\Deleted"]),
                ],
            },
        ),
        None,
        t(
            "imap-1",
            3,
            store(&[1, 2, 3], StoreMode::Add, &["\\Answered", "$Label1"], None),
        ),
        // UID 2 was changed at MODSEQ 3 > 2: reported as modified, left alone.
        t(
            "imap-1",
            4,
            store(&[2, 4], StoreMode::Replace, &["\\Seen"], Some(2)),
        ),
        // UID 5's GUID guard does not match: kept.
        t(
            "imap-1",
            5,
            Op::Expunge {
                user: user(),
                mailbox: "INBOX".into(),
                uids: uids(&[3, 5]),
                expected_guids: vec![(3, message_guid(3)), (5, message_guid(99))],
            },
        ),
        t(
            "lda",
            2,
            Op::Append {
                user: user(),
                mailbox: "Work".into(),
                messages: vec![message(6, &["\\Seen"]), message(7, &["$Work"])],
            },
        ),
        t("imap-2", 1, rename.clone()),
        // A retry of the rename: answered from the session table, not applied again.
        t("imap-2", 1, rename),
        t(
            "lda",
            3,
            Op::Append {
                user: user(),
                mailbox: "INBOX".into(),
                messages: vec![message(8, &["$Junk", "\\Flagged"])],
            },
        ),
        t(
            "imap-1",
            6,
            Op::Expunge {
                user: user(),
                mailbox: "INBOX".into(),
                uids: uids(&[1]),
                expected_guids: Vec::new(),
            },
        ),
        t(
            "imap-1",
            7,
            Op::CreateMailbox {
                user: user(),
                mailbox: "Trash".into(),
                mailbox_guid: TRASH,
                uid_validity: 5,
            },
        ),
        t(
            "imap-1",
            8,
            Op::DeleteMailbox {
                user: user(),
                mailbox: "Trash".into(),
            },
        ),
    ];
    entries
        .into_iter()
        .enumerate()
        .map(|(i, txn)| {
            let index = i as u64 + 1;
            let term = if index < 5 { 1 } else { 2 };
            (LogPosition::new(term, index), txn)
        })
        .collect()
}

fn check_outcome(position: LogPosition, outcome: &Outcome) {
    assert!(!outcome.is_rejected(), "entry {position:?} rejected: {outcome:?}");
}

/// Applies the golden log to a group directory and returns the files it leaves, by name.
fn regenerate_on_disk(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut machine = GroupStateMachine::open(dir).unwrap();
    assert_eq!(machine.recovery(), &Recovery::Fresh);
    for (position, txn) in golden_log() {
        match txn {
            Some(txn) => check_outcome(position, &machine.apply(position, &txn).unwrap().unwrap()),
            None => assert!(machine.apply_blank(position).unwrap()),
        }
    }
    machine.flush().unwrap();
    machine.checkpoint().unwrap();
    drop(machine);
    let mut files = read_dir_files(&dir.join("live"));
    files.insert(CHECKPOINT.into(), fs::read(dir.join(CHECKPOINT)).unwrap());
    files
}

fn regenerate_in_memory() -> GroupState<dovetail::state_machine::MemoryFiles> {
    let mut group = GroupState::in_memory();
    for (position, txn) in golden_log() {
        match txn {
            Some(txn) => check_outcome(position, &group.apply(position, &txn).unwrap().unwrap()),
            None => assert!(group.apply_blank(position).unwrap()),
        }
    }
    group
}

fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate the fixtures with DOVETAIL_BLESS=1 cargo test --test golden_v1",
            path.display()
        )
    })
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

#[test]
fn regenerated_files_equal_the_committed_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let regenerated = regenerate_on_disk(dir.path());
    let names: Vec<&str> = regenerated.keys().map(String::as_str).collect();
    assert_eq!(names, [CHECKPOINT, INBOX_FILE, WORK_FILE, "manifest"]);

    if blessing() {
        let target = fixture_dir();
        let _ = fs::remove_dir_all(&target);
        fs::create_dir_all(&target).unwrap();
        for (name, bytes) in &regenerated {
            fs::write(target.join(name), bytes).unwrap();
            eprintln!(
                "blessed {name}: {} bytes, crc32c {:#010x}",
                bytes.len(),
                crc32c::crc32c(bytes)
            );
        }
        return;
    }

    let committed = read_dir_files(&fixture_dir());
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        regenerated.keys().collect::<Vec<_>>(),
        "fixture file set"
    );
    for (name, bytes) in &regenerated {
        let expected = &committed[name];
        assert!(
            bytes == expected,
            "{name}: regenerated bytes differ from tests/fixtures/golden-v1/{name} (lengths {} vs {}, \
             first difference at byte {}). Format v1 changed: if that is deliberate, bless with \
             DOVETAIL_BLESS=1 and update the pinned values.",
            bytes.len(),
            expected.len(),
            first_difference(bytes, expected)
        );
    }

    // The same log applied in memory writes the same bytes: storage does not leak into files.
    let group = regenerate_in_memory();
    assert_eq!(group.manifest().encode(), committed["manifest"]);
    assert_eq!(group.mailboxes()[&INBOX].bytes(), &committed[INBOX_FILE][..]);
    assert_eq!(group.mailboxes()[&WORK].bytes(), &committed[WORK_FILE][..]);
    let mut stream = Vec::new();
    group.export_snapshot(&mut stream).unwrap();
    assert!(
        stream == committed[CHECKPOINT],
        "in-memory snapshot stream differs"
    );
}

#[test]
fn committed_fixture_files_are_pinned() {
    let committed = read_dir_files(&fixture_dir());
    let names: Vec<&str> = committed.keys().map(String::as_str).collect();
    let pinned: Vec<&str> = FIXTURE_FILES.iter().map(|f| f.0).collect();
    assert_eq!(names, pinned);
    for &(name, len, crc) in FIXTURE_FILES {
        let bytes = &committed[name];
        assert_eq!(
            (bytes.len(), crc32c::crc32c(bytes)),
            (len, crc),
            "{name}: length and crc32c"
        );
    }
}

fn open_fixture_index(name: &str) -> MailboxIndex<VecStorage> {
    let index = MailboxIndex::open(VecStorage::with_path(fixture(name), PathBuf::from(name))).unwrap();
    index.verify().unwrap();
    index
}

fn records(index: &MailboxIndex<impl Storage>) -> Vec<Record> {
    (0..index.len()).map(|p| index.record_at(p)).collect()
}

fn tombstones(index: &MailboxIndex<impl Storage>) -> Vec<Tombstone> {
    (0..index.header().tombstone_count as usize)
        .map(|p| index.tombstone_at(p))
        .collect()
}

fn record(uid: u32, n: u32, flags: u8, keywords: u128, modseq: u64) -> Record {
    Record {
        uid,
        flags,
        modseq,
        keywords,
        guid: message_guid(n),
        size: size(n),
        internal_date: date(n),
        body: [0; 16],
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn committed_inbox_decodes_to_the_expected_state() {
    use flag_bits::*;
    let index = open_fixture_index(INBOX_FILE);
    let h = *index.header();
    let expected_header = Header {
        version: 1,
        mailbox_guid: INBOX,
        uid_validity: 1_700_000_000,
        uid_next: 7,
        message_count: 4,
        record_capacity: 32,
        tombstone_count: 2,
        tombstone_capacity: 32,
        highest_modseq: 7,
        applied: LogPosition::new(2, 12),
        seen_count: 1,
        deleted_count: 1,
        keyword_count: 3,
        // Checked by `verify` above; the literal values are pinned by the file CRC.
        keyword_table_crc: h.keyword_table_crc,
        record_digest: h.record_digest,
        tombstone_digest: h.tombstone_digest,
    };
    assert_eq!(h, expected_header);
    assert_eq!(index.keywords(), strings(&["$Important", "$Junk", "$Label1"]));
    // Keyword bits: $Important = 1, $Junk = 2, $Label1 = 4.
    assert_eq!(
        records(&index),
        vec![
            record(2, 2, ANSWERED, 0b100, 3),
            record(4, 4, SEEN, 0, 4),
            record(5, 5, DRAFT | DELETED, 0, 2),
            record(6, 8, FLAGGED, 0b010, 6),
        ]
    );
    assert_eq!(
        tombstones(&index),
        vec![Tombstone { uid: 3, modseq: 5 }, Tombstone { uid: 1, modseq: 7 }]
    );
    let changed = |m| index.changed_since(m).iter().map(|r| r.uid).collect::<Vec<_>>();
    assert_eq!(changed(1), [2, 4, 5, 6]);
    assert_eq!(changed(2), [2, 4, 6]);
    assert_eq!(changed(4), [6]);
    assert!(changed(7).is_empty());
    assert_eq!(index.vanished_since(0), [1, 3]);
    assert_eq!(index.vanished_since(5), [1]);
    assert!(index.vanished_since(7).is_empty());
}

#[test]
fn committed_archive_decodes_to_the_expected_state() {
    let index = open_fixture_index(WORK_FILE);
    let h = *index.header();
    assert_eq!(
        h,
        Header {
            version: 1,
            mailbox_guid: WORK,
            uid_validity: 1_700_000_001,
            uid_next: 3,
            message_count: 2,
            record_capacity: 32,
            tombstone_count: 0,
            tombstone_capacity: 0,
            highest_modseq: 2,
            applied: LogPosition::new(2, 8),
            seen_count: 1,
            deleted_count: 0,
            keyword_count: 1,
            keyword_table_crc: h.keyword_table_crc,
            record_digest: h.record_digest,
            tombstone_digest: 0,
        }
    );
    assert_eq!(index.keywords(), strings(&["$Work"]));
    assert_eq!(
        records(&index),
        vec![record(1, 6, flag_bits::SEEN, 0, 2), record(2, 7, 0, 1, 2)]
    );
    assert!(tombstones(&index).is_empty());
}

#[test]
fn committed_manifest_decodes_to_the_expected_state() {
    let manifest = Manifest::decode(Path::new("manifest"), &fixture("manifest")).unwrap();
    assert_eq!(manifest.applied, Some(LogPosition::new(2, 14)));
    assert_eq!(manifest.uid_validity_max, 1_700_000_002);
    let boxes = BTreeMap::from([("Archive/2024".to_string(), WORK), ("INBOX".to_string(), INBOX)]);
    assert_eq!(manifest.users, BTreeMap::from([(USER.to_string(), boxes)]));
    let sessions: Vec<(&str, u64, u64, &Outcome)> = manifest
        .sessions
        .iter()
        .map(|(client, s)| (client.as_str(), s.request_seq, s.log_index, &s.outcome))
        .collect();
    assert_eq!(
        sessions,
        [
            ("imap-1", 8, 14, &Outcome::Deleted { mailbox_guid: TRASH }),
            ("imap-2", 1, 9, &Outcome::Renamed { mailboxes: 1 }),
            (
                "lda",
                3,
                11,
                &Outcome::Appended {
                    uid_validity: 1_700_000_000,
                    first_uid: 6,
                    last_uid: 6,
                    modseq: 6,
                }
            ),
        ]
    );
}

#[test]
fn committed_checkpoint_carries_the_committed_live_files() {
    let stream = fixture(CHECKPOINT);
    let mut reader = SnapshotReader::new(&stream[..]).unwrap();
    assert_eq!(reader.header().applied, Some(LogPosition::new(2, 14)));
    assert_eq!(reader.header().file_count, 3);
    let mut names = Vec::new();
    while let Some((name, bytes)) = reader.next_file().unwrap() {
        assert!(
            bytes == fixture(&name),
            "{name} in the checkpoint differs from the live fixture"
        );
        names.push(name);
    }
    assert_eq!(names, ["manifest", INBOX_FILE, WORK_FILE]);
    let group = GroupState::import_snapshot(&stream[..]).unwrap();
    assert_eq!(group.applied(), Some(LogPosition::new(2, 14)));
    assert_eq!(index_file_name(&INBOX), INBOX_FILE);
    assert_eq!(index_file_name(&WORK), WORK_FILE);
}

#[test]
fn committed_files_open_as_a_group_directory_and_accept_new_entries() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    fs::create_dir_all(&live).unwrap();
    for name in ["manifest", INBOX_FILE, WORK_FILE] {
        fs::write(live.join(name), fixture(name)).unwrap();
    }
    fs::write(dir.path().join(CHECKPOINT), fixture(CHECKPOINT)).unwrap();

    let mut machine = GroupStateMachine::open(dir.path()).unwrap();
    assert_eq!(machine.recovery(), &Recovery::Clean);
    assert_eq!(machine.applied(), Some(LogPosition::new(2, 14)));
    let status = machine.state().status(USER, "INBOX").unwrap();
    assert_eq!(
        (
            status.uid_validity,
            status.uid_next,
            status.exists,
            status.unseen,
            status.deleted
        ),
        (1_700_000_000, 7, 4, 3, 1)
    );
    assert_eq!(status.highest_modseq, 7);
    let changes = machine.state().changes_since(USER, "INBOX", 5).unwrap();
    assert_eq!(changes.changed.len(), 1);
    assert_eq!(changes.changed[0].flags, strings(&["\\Flagged", "$Junk"]));
    assert_eq!(changes.vanished, uids(&[1]));

    let append = Txn {
        client_id: "lda".into(),
        request_seq: 4,
        op: Op::Append {
            user: USER.into(),
            mailbox: "Archive/2024".into(),
            messages: vec![message(9, &["$Work"])],
        },
    };
    let outcome = machine.apply(LogPosition::new(2, 15), &append).unwrap().unwrap();
    assert_eq!(
        outcome,
        Outcome::Appended {
            uid_validity: 1_700_000_001,
            first_uid: 3,
            last_uid: 3,
            modseq: 3,
        }
    );
    // A retry from before the fixtures were written is still answered from the session table.
    let retry = golden_log()[8].1.clone().unwrap();
    let outcome = machine.apply(LogPosition::new(2, 16), &retry).unwrap().unwrap();
    assert_eq!(outcome, Outcome::Renamed { mailboxes: 1 });
    machine.flush().unwrap();
    machine.state().mailboxes()[&WORK].verify().unwrap();
}
