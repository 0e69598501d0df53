//! `dovetail dump` on real files: builds a group directory through the library, then runs the
//! `dovetail` binary on the directory, on one index file, on the manifest and on a checkpoint, in
//! text and JSON. Checks that the decoded values are the ones written, that the exit code is 0
//! for healthy files, 1 when `verify` finds a damaged record area, and 2 with a named error for
//! a file that is not an index at all.

use std::path::Path;
use std::process::Command;

use dovetail::index::LogPosition;
use dovetail::state_machine::GroupStateMachine;
use dovetail::txn::{NewMessage, Op, StoreMode, Txn, UidSet};

fn txn(seq: u64, op: Op) -> Txn {
    Txn {
        client_id: "dump-test".into(),
        request_seq: seq,
        op,
    }
}

fn build_group(dir: &Path) {
    let mut sm = GroupStateMachine::open(dir).unwrap();
    let ops = vec![
        Op::CreateMailbox {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            mailbox_guid: [0xaa; 16],
            uid_validity: 1_700_000_000,
        },
        Op::Append {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            messages: (1..=3u8)
                .map(|i| NewMessage {
                    guid: [i; 16],
                    size: 1000 * u64::from(i),
                    internal_date: 1_700_000_000 + i64::from(i),
                    flags: if i == 2 {
                        vec!["\\Seen".into(), "$Work".into()]
                    } else {
                        vec![]
                    },
                })
                .collect(),
        },
        Op::Store {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids: UidSet::parse("1").unwrap(),
            mode: StoreMode::Add,
            flags: vec!["\\Flagged".into()],
            unchanged_since: None,
        },
        Op::Expunge {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids: UidSet::parse("3").unwrap(),
            expected_guids: vec![],
        },
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let outcome = sm
            .apply(LogPosition::new(1, i as u64 + 1), &txn(i as u64 + 1, op))
            .unwrap();
        assert!(!outcome.unwrap().is_rejected());
    }
    sm.flush().unwrap();
    sm.checkpoint().unwrap();
}

fn dump(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("dump")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn dumps_group_directories_files_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    build_group(dir.path());
    let group = dir.path().to_str().unwrap();

    let (code, text, _) = dump(&[group]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("applied        1-4"), "{text}");
    assert!(text.contains("== alice / INBOX"), "{text}");
    assert!(text.contains("uid_next       4"), "{text}");
    assert!(text.contains("\\Seen $Work"), "{text}");
    assert!(text.contains("expunged uid          3 at modseq 4"), "{text}");

    let (code, json, _) = dump(&[group, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "group");
    let index = &v["mailboxes"][0]["index"];
    assert_eq!(index["header"]["uid_validity"], 1_700_000_000u32);
    assert_eq!(index["header"]["highest_modseq"], 4);
    assert_eq!(index["records"][0]["flags"], serde_json::json!(["\\Flagged"]));
    assert_eq!(index["records"].as_array().unwrap().len(), 2);
    assert_eq!(index["verify"], "ok");

    let idx = dir.path().join("live").join(format!("{}.idx", "aa".repeat(16)));
    let (code, json, _) = dump(&[idx.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "index");
    assert_eq!(v["tombstones"][0]["uid"], 3);

    let manifest = dir.path().join("live/manifest");
    let (code, text, _) = dump(&[manifest.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains("sessions       1"), "{text}");

    let checkpoint = dir.path().join("checkpoint.snap");
    let (code, text, _) = dump(&[checkpoint.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains("== alice / INBOX"), "{text}");

    // A damaged record area: the header still opens, verify reports it, exit code 1.
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[8192 + 50] ^= 0xff;
    let damaged = dir.path().join("damaged.idx");
    std::fs::write(&damaged, &bytes).unwrap();
    let (code, text, _) = dump(&[damaged.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("checksum mismatch in records"), "{text}");

    // Not an index file at all: a named error, exit code 2, no panic.
    let foreign = dir.path().join("foreign.idx");
    std::fs::write(&foreign, b"hello, this is not an index file").unwrap();
    let (code, _, err) = dump(&[foreign.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not a Dovetail index file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A checkpoint whose stream header disagrees with its manifest (byte 24 is inside the header's
/// applied index, which no checksum covers) is refused by dump as by install: exit 2 and the
/// named disagreement, not a dump of the manifest's view with exit 0. And a group directory
/// whose index file records a change after the manifest's applied position is refused as a
/// node's open refuses it.
#[test]
fn dump_refuses_what_install_and_open_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1/checkpoint.snap");
    let (code, _, err) = dump(&[golden.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut bytes = std::fs::read(&golden).unwrap();
    bytes[24] ^= 1;
    let flipped = dir.path().join("checkpoint.snap");
    std::fs::write(&flipped, &bytes).unwrap();
    let (code, _, err) = dump(&[flipped.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the stream header says applied"), "{err}");
    // Install refuses the same stream with the same reason (one check, `StreamCheck`).
    let mut group = GroupStateMachine::open(&dir.path().join("group")).unwrap();
    let install = group.install_snapshot(bytes.as_slice()).unwrap_err();
    assert!(
        install.to_string().contains("the stream header says applied"),
        "{install}"
    );

    // An index file ahead of its manifest, header checksum intact.
    let group_dir = dir.path().join("built");
    build_group(&group_dir);
    let idx = group_dir.join("live").join(format!("{}.idx", "aa".repeat(16)));
    let mut image = std::fs::read(&idx).unwrap();
    image[80..88].copy_from_slice(&99u64.to_le_bytes()); // applied index: 99 > 4
    let crc = crc32c::crc32c(&image[..252]);
    image[252..256].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&idx, &image).unwrap();
    let (code, _, err) = dump(&[group_dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("after the group's applied position"), "{err}");
    let open = GroupStateMachine::open(&group_dir).unwrap_err();
    assert!(
        open.to_string().contains("after the group's applied position"),
        "{open}"
    );
}

/// A manifest of log encoding 4 (layout 4): the dump counts its subscriptions.
#[test]
fn dumps_the_subscriptions_of_a_layout_4_manifest() {
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-encoding4/manifest");
    let (code, text, _) = dump(&[manifest.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("subscriptions  3"), "{text}");
    let (code, json, _) = dump(&[manifest.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["subscriptions"], 3);
}
