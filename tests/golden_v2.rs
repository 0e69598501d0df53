//! Golden files of index format v2: the committed v1 fixtures (`tests/fixtures/golden-v1/`),
//! carried on by a fixed log through the encoding gate to log encoding 3 and then deliveries
//! with body ids, must keep producing the bytes committed in `tests/fixtures/golden-v2/`.
//!
//! Property: the upgrade from v1 is deterministic and format v2 is a contract. Every replica
//! rewrites a v1 mailbox file in v2 on that mailbox's first write after the gate, at the same
//! entry, so replicas stay byte-identical through the upgrade (ARCHITECTURE.md §7); a mailbox
//! not written since the gate stays in v1, and both versions are read alike.
//!
//! How it is provoked: `continuation()` — the gate to encoding 3, a delivery of two messages with
//! body ids into INBOX (a v1 file: upgraded first), a store in Archive/2024 (upgraded by a write
//! that is not a delivery), an expunge in INBOX, a delivery into a mailbox created after the gate
//! (born v2) and an old-style append beside it (a record with no body) — is applied on disk to
//! a group opened from the v1 fixtures, and in memory to the v1 checkpoint imported.
//!
//! What is checked: (1) the files equal `tests/fixtures/golden-v2/` byte for byte, on disk and
//! in memory; (2) their lengths and CRC32C are pinned; (3) decoded by this build they hold the
//! literal expected versions, records and body ids; (4) the committed checkpoint opens as a
//! group that takes further deliveries.
//!
//! Blessing: `DOVETAIL_BLESS=1 cargo test --test golden_v2` rewrites the fixtures; then update
//! `FIXTURE_FILES` and the expected values by hand.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dovetail::index::{LogPosition, MailboxIndex, Record, VecStorage};
use dovetail::state_machine::{GroupState, GroupStateMachine, Manifest, MemoryFiles, Recovery};
use dovetail::txn::{NewMessage, Op, Outcome, StoreMode, Txn, UidSet};

const USER: &str = "alice@example.org";
const INBOX: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0001u128.to_be_bytes();
const WORK: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0002u128.to_be_bytes();
const SENT: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0004u128.to_be_bytes();
const INBOX_FILE: &str = "d07e7a11000000000000000000000001.idx";
const WORK_FILE: &str = "d07e7a11000000000000000000000002.idx";
const SENT_FILE: &str = "d07e7a11000000000000000000000004.idx";
const CHECKPOINT: &str = "checkpoint.snap";
/// The v1 fixtures end at this entry.
const V1_APPLIED: LogPosition = LogPosition::new(2, 14);

/// Every fixture file with its length and CRC32C: pinned so that blessing alone cannot change v2.
const FIXTURE_FILES: &[(&str, usize, u32)] = &[
    (CHECKPOINT, 33208, 0xc1a3_3919),
    (INBOX_FILE, 11264, 0x076f_7cd4),
    (WORK_FILE, 10752, 0xc335_e68b),
    (SENT_FILE, 10752, 0xd352_27ce),
    ("manifest", 227, 0xca47_7300),
];

fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/golden-v{version}"))
}

fn blessing() -> bool {
    std::env::var("DOVETAIL_BLESS").is_ok_and(|v| v == "1")
}

fn body(n: u8) -> [u8; 16] {
    [0xb0 | n; 16]
}

fn message(n: u32, flags: &[&str]) -> NewMessage {
    NewMessage {
        guid: (0x6d65_7373_6167_6500_0000_0000_0000_0000u128 + u128::from(n)).to_be_bytes(),
        size: 3_000 + u64::from(n),
        internal_date: 1_735_689_600 + i64::from(n) * 60,
        flags: flags.iter().map(|f| f.to_string()).collect(),
    }
}

fn uids(list: &[u32]) -> UidSet {
    UidSet::from_ascending(list.to_vec())
}

/// The entries after the v1 fixtures' last one.
fn continuation() -> Vec<(LogPosition, Txn)> {
    let ops = vec![
        Op::SetEncoding { version: 3 },
        Op::Deliver {
            user: USER.into(),
            mailbox: "INBOX".into(),
            messages: vec![message(20, &[]), message(21, &["$Work"])],
            bodies: vec![body(1), body(2)],
        },
        Op::Store {
            user: USER.into(),
            mailbox: "Archive/2024".into(),
            uids: uids(&[1]),
            mode: StoreMode::Add,
            flags: vec!["\\Seen".into()],
            unchanged_since: None,
        },
        Op::Expunge {
            user: USER.into(),
            mailbox: "INBOX".into(),
            uids: uids(&[2]),
            expected_guids: Vec::new(),
        },
        Op::CreateMailbox {
            user: USER.into(),
            mailbox: "Sent".into(),
            mailbox_guid: SENT,
            uid_validity: 1_735_689_600,
        },
        Op::Deliver {
            user: USER.into(),
            mailbox: "Sent".into(),
            messages: vec![message(22, &["\\Seen"])],
            bodies: vec![body(3)],
        },
        Op::Append {
            user: USER.into(),
            mailbox: "Sent".into(),
            messages: vec![message(23, &[])],
        },
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            let txn = Txn {
                client_id: "golden-v2".into(),
                request_seq: i as u64 + 1,
                op,
            };
            (LogPosition::new(3, 15 + i as u64), txn)
        })
        .collect()
}

fn check_outcome(position: LogPosition, outcome: &Outcome) {
    assert!(!outcome.is_rejected(), "entry {position:?} rejected: {outcome:?}");
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

/// A group directory holding the v1 fixtures.
fn v1_group(dir: &Path) -> GroupStateMachine {
    let live = dir.join("live");
    fs::create_dir_all(&live).unwrap();
    let v1 = fixture_dir(1);
    for name in ["manifest", INBOX_FILE, WORK_FILE] {
        fs::copy(v1.join(name), live.join(name)).unwrap();
    }
    fs::copy(v1.join(CHECKPOINT), dir.join(CHECKPOINT)).unwrap();
    let machine = GroupStateMachine::open(dir).unwrap();
    assert_eq!(machine.recovery(), &Recovery::Clean);
    assert_eq!(machine.applied(), Some(V1_APPLIED));
    machine
}

fn regenerate_on_disk(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut machine = v1_group(dir);
    for (position, txn) in continuation() {
        check_outcome(position, &machine.apply(position, &txn).unwrap().unwrap());
    }
    machine.flush().unwrap();
    machine.checkpoint().unwrap();
    drop(machine);
    let mut files = read_dir_files(&dir.join("live"));
    files.insert(CHECKPOINT.into(), fs::read(dir.join(CHECKPOINT)).unwrap());
    files
}

fn regenerate_in_memory() -> GroupState<MemoryFiles> {
    let v1 = fs::read(fixture_dir(1).join(CHECKPOINT)).unwrap();
    let mut group = GroupState::import_snapshot(&v1[..]).unwrap();
    for (position, txn) in continuation() {
        check_outcome(position, &group.apply(position, &txn).unwrap().unwrap());
    }
    group
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
    assert_eq!(names, [CHECKPOINT, INBOX_FILE, WORK_FILE, SENT_FILE, "manifest"]);

    if blessing() {
        let target = fixture_dir(2);
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

    let committed = read_dir_files(&fixture_dir(2));
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        regenerated.keys().collect::<Vec<_>>(),
        "fixture file set"
    );
    for (name, bytes) in &regenerated {
        let expected = &committed[name];
        assert!(
            bytes == expected,
            "{name}: regenerated bytes differ from tests/fixtures/golden-v2/{name} (lengths {} vs {}, \
             first difference at byte {}). The v1 → v2 upgrade or format v2 changed: if that is \
             deliberate, bless with DOVETAIL_BLESS=1 and update the pinned values.",
            bytes.len(),
            expected.len(),
            first_difference(bytes, expected)
        );
    }

    // In memory, from the imported v1 checkpoint: the same bytes.
    let group = regenerate_in_memory();
    assert_eq!(group.manifest().encode(), committed["manifest"]);
    for (guid, file) in [(INBOX, INBOX_FILE), (WORK, WORK_FILE), (SENT, SENT_FILE)] {
        assert_eq!(group.mailboxes()[&guid].bytes(), &committed[file][..], "{file}");
    }
    let mut stream = Vec::new();
    group.export_snapshot(&mut stream).unwrap();
    assert!(
        stream == committed[CHECKPOINT],
        "in-memory snapshot stream differs"
    );
}

#[test]
fn committed_fixture_files_are_pinned() {
    let committed = read_dir_files(&fixture_dir(2));
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
    let bytes = fs::read(fixture_dir(2).join(name)).unwrap();
    let index = MailboxIndex::open(VecStorage::with_path(bytes, PathBuf::from(name))).unwrap();
    index.verify().unwrap();
    index
}

fn records(index: &MailboxIndex<VecStorage>) -> Vec<(u32, [u8; 16])> {
    (0..index.len())
        .map(|p| index.record_at(p))
        .map(|r: Record| (r.uid, r.body))
        .collect()
}

#[test]
fn committed_files_decode_to_the_expected_state() {
    // INBOX was v1; the first delivery rewrote it in v2, at that entry.
    let inbox = open_fixture_index(INBOX_FILE);
    assert_eq!(inbox.header().version, 2);
    assert_eq!(inbox.header().applied, LogPosition::new(3, 18));
    assert_eq!(
        records(&inbox),
        [
            (4, [0; 16]),
            (5, [0; 16]),
            (6, [0; 16]),
            (7, body(1)),
            (8, body(2))
        ]
    );
    // Archive/2024 was v1; a store upgraded it: its records keep no body.
    let work = open_fixture_index(WORK_FILE);
    assert_eq!(work.header().version, 2);
    assert_eq!(work.header().applied, LogPosition::new(3, 17));
    assert!(records(&work).iter().all(|(_, b)| *b == [0; 16]));
    // Sent was born after the gate: v2 from its first byte, a delivered and an appended message.
    let sent = open_fixture_index(SENT_FILE);
    assert_eq!(sent.header().version, 2);
    assert_eq!(records(&sent), [(1, body(3)), (2, [0; 16])]);

    let manifest = Manifest::decode(
        Path::new("manifest"),
        &fs::read(fixture_dir(2).join("manifest")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest.encoding, 3);
    assert_eq!(manifest.applied, Some(LogPosition::new(3, 21)));
}

#[test]
fn committed_checkpoint_opens_and_takes_further_deliveries() {
    let stream = fs::read(fixture_dir(2).join(CHECKPOINT)).unwrap();
    let mut group = GroupState::import_snapshot(&stream[..]).unwrap();
    assert_eq!(group.applied(), Some(LogPosition::new(3, 21)));
    let fetched = group.fetch(USER, "INBOX", 7, 8, 10).unwrap();
    let bodies: Vec<_> = fetched.iter().map(|m| m.body).collect();
    assert_eq!(bodies, [Some(body(1)), Some(body(2))]);
    let deliver = Txn {
        client_id: "lmtp".into(),
        request_seq: 1,
        op: Op::Deliver {
            user: USER.into(),
            mailbox: "Archive/2024".into(),
            messages: vec![message(30, &[])],
            bodies: vec![body(4)],
        },
    };
    let outcome = group.apply(LogPosition::new(3, 22), &deliver).unwrap().unwrap();
    assert!(
        matches!(outcome, Outcome::Appended { first_uid: 3, .. }),
        "{outcome:?}"
    );
    group.mailboxes()[&WORK].verify().unwrap();
}
