//! Golden files of log encoding 4: the committed encoding-3 fixtures (`tests/fixtures/golden-v2/`),
//! carried on by a fixed log through the encoding gate to 4, subscriptions, a copy and a move,
//! must keep producing the bytes committed in `tests/fixtures/golden-encoding4/`.
//!
//! Property: manifest layout 4 (the subscriptions) and what copies and moves write are a
//! contract. A group in encoding 3 writes manifest layout 3, byte for byte what the previous
//! release wrote (the golden-v2 manifest, re-encoded, is unchanged), and this build still reads
//! it; from the gate entry to 4 on every replica writes layout 4 at the same entry.
//!
//! How it is provoked: `continuation()` — the gate to encoding 4; subscriptions to INBOX (spelt
//! `inbox`), to Archive/2024, to a mailbox that does not exist and to Sent, then an unsubscribe
//! of Sent; a copy of INBOX's delivered messages (body ids) and one missing UID into
//! Archive/2024; a move of one of them into Sent; a rename of the subscribed Archive/2024 (its
//! subscription is not renamed, RFC 3501) and the deletion of Sent — is applied on disk to a
//! group opened from the golden-v2 fixtures, and in memory to the golden-v2 checkpoint imported.
//!
//! What is checked: (1) the files equal `tests/fixtures/golden-encoding4/` byte for byte, on disk
//! and in memory; (2) their lengths and CRC32C are pinned; (3) decoded by this build they hold the
//! literal expected subscriptions, layout, records and body ids; (4) the golden-v2 manifest
//! (layout 3) still decodes and re-encodes to its own bytes.
//!
//! Blessing: `DOVETAIL_BLESS=1 cargo test --test golden_encoding4` rewrites the fixtures; then
//! update `FIXTURE_FILES` and the expected values by hand.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dovetail::index::{LogPosition, MailboxIndex, Record, VecStorage};
use dovetail::state_machine::{GroupState, GroupStateMachine, Manifest, MemoryFiles, Recovery};
use dovetail::txn::{Op, Outcome, Txn, UidMap, UidSet};

const USER: &str = "alice@example.org";
const INBOX: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0001u128.to_be_bytes();
const WORK: [u8; 16] = 0xd07e_7a11_0000_0000_0000_0000_0000_0002u128.to_be_bytes();
const INBOX_FILE: &str = "d07e7a11000000000000000000000001.idx";
const WORK_FILE: &str = "d07e7a11000000000000000000000002.idx";
const SENT_FILE: &str = "d07e7a11000000000000000000000004.idx";
const CHECKPOINT: &str = "checkpoint.snap";
/// The golden-v2 fixtures end at this entry.
const V2_APPLIED: LogPosition = LogPosition::new(3, 21);

/// Every fixture file with its length and CRC32C: pinned so that blessing alone cannot change
/// layout 4.
const FIXTURE_FILES: &[(&str, usize, u32)] = &[
    (CHECKPOINT, 22508, 0x15a1_8be1),
    (INBOX_FILE, 11264, 0x05f7_1ef4),
    (WORK_FILE, 10752, 0xa90d_7b7b),
    ("manifest", 329, 0x34fb_94d7),
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}"))
}

fn blessing() -> bool {
    std::env::var("DOVETAIL_BLESS").is_ok_and(|v| v == "1")
}

fn body(n: u8) -> [u8; 16] {
    [0xb0 | n; 16]
}

fn uids(list: &[u32]) -> UidSet {
    UidSet::from_ascending(list.to_vec())
}

/// The entries after the golden-v2 fixtures' last one.
fn continuation() -> Vec<(LogPosition, Txn)> {
    let subscribe = |mailbox: &str| Op::Subscribe {
        user: USER.into(),
        mailbox: mailbox.into(),
    };
    let ops = vec![
        Op::SetEncoding { version: 4 },
        subscribe("inbox"),
        subscribe("Archive/2024"),
        subscribe("Lists/dovetail"),
        subscribe("Sent"),
        Op::Unsubscribe {
            user: USER.into(),
            mailbox: "Sent".into(),
        },
        // INBOX holds 4:6 (appended, no body) and 7:8 (delivered); 9 does not exist.
        Op::Copy {
            user: USER.into(),
            from: "INBOX".into(),
            to: "Archive/2024".into(),
            uids: uids(&[6, 7, 8, 9]),
        },
        Op::Move {
            user: USER.into(),
            from: "INBOX".into(),
            to: "Sent".into(),
            uids: uids(&[8]),
        },
        Op::RenameMailbox {
            user: USER.into(),
            from: "Archive/2024".into(),
            to: "Archive/2025".into(),
        },
        Op::DeleteMailbox {
            user: USER.into(),
            mailbox: "Sent".into(),
        },
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            let txn = Txn {
                client_id: "golden-encoding4".into(),
                request_seq: i as u64 + 1,
                op,
            };
            (LogPosition::new(4, 22 + i as u64), txn)
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

/// A group directory holding the golden-v2 fixtures.
fn v2_group(dir: &Path) -> GroupStateMachine {
    let live = dir.join("live");
    fs::create_dir_all(&live).unwrap();
    let v2 = fixture_dir("golden-v2");
    for name in ["manifest", INBOX_FILE, WORK_FILE, SENT_FILE] {
        fs::copy(v2.join(name), live.join(name)).unwrap();
    }
    fs::copy(v2.join(CHECKPOINT), dir.join(CHECKPOINT)).unwrap();
    let machine = GroupStateMachine::open(dir).unwrap();
    assert_eq!(machine.recovery(), &Recovery::Clean);
    assert_eq!(machine.applied(), Some(V2_APPLIED));
    machine
}

fn regenerate_on_disk(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut machine = v2_group(dir);
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

fn regenerate_in_memory() -> (GroupState<MemoryFiles>, Vec<Outcome>) {
    let v2 = fs::read(fixture_dir("golden-v2").join(CHECKPOINT)).unwrap();
    let mut group = GroupState::import_snapshot(&v2[..]).unwrap();
    let mut outcomes = Vec::new();
    for (position, txn) in continuation() {
        let outcome = group.apply(position, &txn).unwrap().unwrap();
        check_outcome(position, &outcome);
        outcomes.push(outcome);
    }
    (group, outcomes)
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
        let target = fixture_dir("golden-encoding4");
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

    let committed = read_dir_files(&fixture_dir("golden-encoding4"));
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        regenerated.keys().collect::<Vec<_>>(),
        "fixture file set"
    );
    for (name, bytes) in &regenerated {
        let expected = &committed[name];
        assert!(
            bytes == expected,
            "{name}: regenerated bytes differ from tests/fixtures/golden-encoding4/{name} (lengths \
             {} vs {}, first difference at byte {}). Manifest layout 4, or what copies and moves \
             write, changed: if that is deliberate, bless with DOVETAIL_BLESS=1 and update the \
             pinned values.",
            bytes.len(),
            expected.len(),
            first_difference(bytes, expected)
        );
    }

    // In memory, from the imported golden-v2 checkpoint: the same bytes.
    let (group, _) = regenerate_in_memory();
    assert_eq!(group.manifest().encode(), committed["manifest"]);
    for (guid, file) in [(INBOX, INBOX_FILE), (WORK, WORK_FILE)] {
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
    let committed = read_dir_files(&fixture_dir("golden-encoding4"));
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
    let bytes = fs::read(fixture_dir("golden-encoding4").join(name)).unwrap();
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
    let manifest = Manifest::decode(
        Path::new("manifest"),
        &fs::read(fixture_dir("golden-encoding4").join("manifest")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest.encoding, 4);
    assert_eq!(manifest.applied, Some(LogPosition::new(4, 31)));
    // `inbox` is stored as INBOX; Sent was unsubscribed; the renamed mailbox keeps its old
    // subscription and has none under its new name; a name that is no mailbox stays.
    let subscribed: Vec<&str> = manifest.subscriptions[USER].iter().map(String::as_str).collect();
    assert_eq!(subscribed, ["Archive/2024", "INBOX", "Lists/dovetail"]);
    let boxes: Vec<&str> = manifest.users[USER].keys().map(String::as_str).collect();
    assert_eq!(boxes, ["Archive/2025", "INBOX"]);

    // The copies in Archive (UIDs 3 and up: 1 and 2 are its own) name the bodies their
    // sources named; the move took UID 8 out of INBOX.
    let inbox = open_fixture_index(INBOX_FILE);
    assert_eq!(
        records(&inbox),
        [(4, [0; 16]), (5, [0; 16]), (6, [0; 16]), (7, body(1))]
    );
    let work = open_fixture_index(WORK_FILE);
    let copies: Vec<(u32, [u8; 16])> = records(&work).into_iter().filter(|r| r.0 >= 3).collect();
    assert_eq!(copies, [(3, [0; 16]), (4, body(1)), (5, body(2))]);
}

#[test]
fn outcomes_are_what_uidplus_needs() {
    let (_, outcomes) = regenerate_in_memory();
    let Outcome::Copied { uids, modseq, .. } = &outcomes[6] else {
        panic!("{:?}", outcomes[6])
    };
    assert_eq!(
        uids,
        &UidMap {
            source: UidSet::parse("6:8").unwrap(),
            first_target: 3
        }
    );
    assert!(modseq.is_some());
    let Outcome::Moved { uids, expunged, .. } = &outcomes[7] else {
        panic!("{:?}", outcomes[7])
    };
    assert_eq!(uids.pairs().collect::<Vec<_>>(), [(8, 3)]);
    assert_eq!(expunged.to_string(), "8");
}

/// The previous release's manifest (layout 3, log encoding 3) is still read, and a group in
/// encoding 3 writes exactly those bytes again.
#[test]
fn the_encoding_3_manifest_is_read_and_written_unchanged() {
    let bytes = fs::read(fixture_dir("golden-v2").join("manifest")).unwrap();
    assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
    let manifest = Manifest::decode(Path::new("manifest"), &bytes).unwrap();
    assert_eq!(manifest.encoding, 3);
    assert!(manifest.subscriptions.is_empty());
    assert_eq!(manifest.encode(), bytes);
}
