//! A backup written by `BackupWriter` from groups on disk, checked and restored into a new node's
//! data directory: the restored groups hold the same mailboxes byte for byte at the same cut,
//! with the new members in their consensus metadata, and every body the records reference is in
//! the new node's body store, once; a damaged, truncated, missing or mislabelled file (a group's
//! copy or a body), a body the records reference and the backup lacks, a changed manifest, or a
//! data directory in use is refused by name with nothing written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dovetail_raft::restore::{consensus_meta_at, read_cut, GroupMembers};
use dovetail_raft::Node;
use sha2::Digest;

use super::error::BackupError;
use super::manifest::{
    body_file, sha256_hex, BackupManifest, SourceCluster, MANIFEST_CHECKSUM_FILE, MANIFEST_FILE,
};
use super::restore::{new_members, restore, RestoreArgs};
use super::take::BackupWriter;
use crate::bodies::{BodyId, BodyStore};
use crate::index::LogPosition;
use crate::node::config::PeerSpec;
use crate::node::server::group_dir_in;
use crate::state_machine::{GroupStateMachine, Recovery};
use crate::txn::test_txns::{append, create_inbox};
use crate::txn::{NewMessage, Op, Txn};

fn old_members() -> GroupMembers {
    GroupMembers {
        voters: [1, 2, 3].into_iter().collect(),
        learners: Default::default(),
        nodes: (1..=3)
            .map(|id| {
                let node = Node {
                    peer_addr: format!("10.0.0.{id}:7101"),
                    api_addr: format!("10.0.0.{id}:7001"),
                };
                (id, node)
            })
            .collect(),
    }
}

fn peers() -> Vec<PeerSpec> {
    (11..=13)
        .map(|id| {
            format!("{id}=127.0.0.{id}:7101/127.0.0.{id}:7001")
                .parse()
                .unwrap()
        })
        .collect()
}

/// The message bodies of the old cluster: group 0 delivers the first and the last, group 1 the
/// second and the last (one body referenced by both groups, stored once in a backup).
fn bodies() -> Vec<Vec<u8>> {
    [
        "Subject: zero\r\n\r\nfor group 0",
        "Subject: one\r\n\r\nfor group 1",
        "Subject: both\r\n\r\nshared",
    ]
    .into_iter()
    .map(|text| text.as_bytes().repeat(40))
    .collect()
}

/// Group `group` of an old cluster at log encoding 3 with INBOX, `appends` index-only messages
/// and one delivery of two messages with bodies (`bodies()[group]` and the shared one), at term
/// 4, in `dir`.
fn old_group(dir: &Path, group: u32, appends: u64) -> GroupStateMachine {
    let mut machine = GroupStateMachine::open(dir).unwrap();
    let txn = |seq: u64, op: Op| Txn {
        client_id: "setup".into(),
        request_seq: seq,
        op,
    };
    machine
        .apply(LogPosition::new(4, 1), &txn(1, Op::SetEncoding { version: 3 }))
        .unwrap();
    machine.apply(LogPosition::new(4, 2), &create_inbox()).unwrap();
    for i in 0..appends {
        let position = LogPosition::new(4, 3 + i);
        machine
            .apply(position, &append("c", 2 + i, group as u8 + i as u8))
            .unwrap();
    }
    let bodies = bodies();
    let delivered = [&bodies[group as usize], &bodies[2]];
    let deliver = Op::Deliver {
        user: "u".into(),
        mailbox: "INBOX".into(),
        messages: delivered
            .iter()
            .enumerate()
            .map(|(i, bytes)| NewMessage {
                guid: [0xb0 + 2 * group as u8 + i as u8; 16],
                size: bytes.len() as u64,
                internal_date: 1_700_000_000,
                flags: Vec::new(),
            })
            .collect(),
        bodies: delivered.iter().map(|bytes| BodyId::of(bytes).0).collect(),
    };
    machine
        .apply(LogPosition::new(4, 3 + appends), &txn(2, deliver))
        .unwrap();
    let applied = machine.applied().unwrap();
    machine
        .set_consensus_meta(&consensus_meta_at(applied, 2, &old_members()).unwrap())
        .unwrap();
    machine.flush().unwrap();
    machine
}

/// A backup of two groups (3 and 5 appends, and their deliveries) with their bodies in
/// `<root>/backup`; returns its path and the groups.
fn backup(root: &Path) -> (PathBuf, Vec<GroupStateMachine>) {
    let groups: Vec<GroupStateMachine> = (0..2)
        .map(|g| old_group(&root.join(format!("old/g{g}")), g, 3 + 2 * u64::from(g)))
        .collect();
    let dir = root.join("backup");
    let mut writer = BackupWriter::create(&dir).unwrap();
    for machine in &groups {
        let mut stream = Vec::new();
        machine.state().export_snapshot(&mut stream).unwrap();
        let mut copy = writer.begin_copy().unwrap();
        for piece in stream.chunks(100) {
            copy.write(piece).unwrap();
        }
        let read_index = machine.applied().unwrap().index - 1;
        writer.finish_copy(copy, read_index).unwrap();
    }
    // What `take_backup` fetches from the members, here from the bodies themselves.
    let by_id: BTreeMap<BodyId, Vec<u8>> = bodies().into_iter().map(|b| (BodyId::of(&b), b)).collect();
    let referenced: Vec<BodyId> = writer.referenced_bodies().iter().copied().collect();
    assert_eq!(referenced, by_id.keys().copied().collect::<Vec<_>>());
    for id in referenced {
        let mut body = writer.begin_body(id).unwrap();
        for piece in by_id[&id].chunks(100) {
            body.write(piece).unwrap();
        }
        writer.finish_body(body, "test").unwrap();
    }
    let cluster = SourceCluster {
        via: "http://10.0.0.1:7001".into(),
        served_by: 1,
        served_by_release: "0.1.0".into(),
        nodes: Vec::new(),
    };
    writer.finish(1_700_000_000_000, cluster).unwrap();
    (dir, groups)
}

fn args(from: &Path, data_dir: &Path) -> RestoreArgs {
    RestoreArgs {
        from: from.to_path_buf(),
        data_dir: Some(data_dir.to_path_buf()),
        node_id: Some(12),
        peers: peers(),
        bootstrap_membership: Vec::new(),
        check_only: false,
    }
}

/// Everything under `dir`, for "nothing was written" checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            found.extend(tree(&path));
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn a_backup_restores_into_a_new_nodes_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let (from, old) = backup(root.path());
    let manifest = super::verify::read_manifest(&from).unwrap();
    assert_eq!(manifest.group_count, 2);
    assert_eq!(manifest.groups[1].cut, LogPosition::new(4, 8));
    assert_eq!(manifest.groups[1].read_index, 7);
    let bytes: u64 = bodies().iter().map(|b| b.len() as u64).sum();
    assert_eq!(
        manifest.bodies,
        Some(serde_json::json!({"count": 3, "bytes": bytes}))
    );
    assert_eq!(manifest.body_files().len(), 3);
    assert_eq!(manifest.groups[1].membership, old_members());
    assert_eq!((manifest.groups[0].users, manifest.groups[0].mailboxes), (1, 1));

    let data_dir = root.path().join("new/node12");
    let report = restore(&args(&from, &data_dir)).unwrap();
    assert!(report.describe().contains("--groups 2"), "{}", report.describe());
    assert!(
        report.describe().contains("3 message bodies"),
        "{}",
        report.describe()
    );
    // Every body is in the new node's store, where the store keeps it, byte for byte.
    let store = BodyStore::open(data_dir.join("blobs")).unwrap();
    for bytes in bodies() {
        let id = BodyId::of(&bytes);
        let hex = id.hex();
        assert!(data_dir.join("blobs").join(&hex[..2]).join(&hex).is_file());
        let mut stored = Vec::new();
        std::io::Read::read_to_end(&mut store.read(&id).unwrap().unwrap(), &mut stored).unwrap();
        assert_eq!(stored, bytes);
    }
    let members = new_members(12, &peers(), &[]).unwrap();
    assert!(data_dir.join("raft-log").is_dir());
    assert!(!root.path().join("new/.node12.restoring").exists());
    for (g, source) in old.iter().enumerate() {
        let dir = group_dir_in(&data_dir, g as u32);
        assert!(dir.join("checkpoint.snap").is_file());
        let restored = GroupStateMachine::open(&dir).unwrap();
        assert_eq!(restored.recovery(), &Recovery::Clean);
        assert_eq!(restored.applied(), source.applied());
        let cut = read_cut(&restored.state().manifest().consensus_meta).unwrap();
        assert_eq!((cut.last_applied, cut.leader), (source.applied().unwrap(), 2));
        assert_eq!(cut.members, members);
        let images = |machine: &GroupStateMachine| -> Vec<Vec<u8>> {
            machine
                .state()
                .mailboxes()
                .values()
                .map(|index| index.bytes().to_vec())
                .collect()
        };
        assert_eq!(
            images(&restored),
            images(source),
            "group {g}: mailboxes byte for byte"
        );
        let (old_manifest, new_manifest) = (source.state().manifest(), restored.state().manifest());
        assert_eq!(new_manifest.users, old_manifest.users);
        assert_eq!(new_manifest.uid_validity_max, old_manifest.uid_validity_max);
        assert_eq!(new_manifest.sessions, old_manifest.sessions);
        assert_eq!(restored.referenced_bodies().len(), 2);
        assert!(restored.referenced_bodies().iter().all(|id| store.has(id)));
    }

    // The store's journal prepares its next segment on a thread of its own (`.zeroing`), which
    // the comparison below would catch in the act: closing the store joins it.
    drop(store);
    // The same directory is never restored over, and a check alone writes nothing.
    let again = restore(&args(&from, &data_dir)).unwrap_err();
    assert!(matches!(again, BackupError::DataDirNotEmpty { .. }), "{again}");
    let check = RestoreArgs {
        data_dir: None,
        node_id: None,
        peers: Vec::new(),
        check_only: true,
        ..args(&from, &data_dir)
    };
    let before = tree(root.path());
    assert!(restore(&check).unwrap().data_dir.is_none());
    assert_eq!(tree(root.path()), before);
}

/// Damage of every kind to a backup is refused by name, before anything is written.
#[test]
fn a_damaged_backup_is_refused_by_name_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let (from, _old) = backup(root.path());
    let pristine = root.path().join("pristine");
    std::fs::rename(&from, &pristine).unwrap();
    let group_file = |dir: &Path| dir.join("groups/g0001.snap");
    let length = std::fs::metadata(group_file(&pristine)).unwrap().len();
    let all = bodies();
    let (one, other) = (BodyId::of(&all[1]), BodyId::of(&all[0]));
    let body_path = move |dir: &Path| dir.join(body_file(&one));
    let body_length = all[1].len() as u64;
    let names_body = move |path: &Path| path.ends_with(body_file(&one));
    /// Rewrites the manifest with `edit` (and its checksum to match).
    fn rewrite(dir: &Path, edit: impl FnOnce(&mut BackupManifest)) {
        let mut manifest = super::verify::read_manifest(dir).unwrap();
        edit(&mut manifest);
        let (bytes, checksum) = manifest.encode();
        std::fs::write(dir.join(MANIFEST_FILE), bytes).unwrap();
        std::fs::write(dir.join(MANIFEST_CHECKSUM_FILE), checksum).unwrap();
    }
    /// What is done to a copy of the backup, and whether the refusal names it.
    type Case = (&'static str, Box<dyn Fn(&Path)>, fn(&BackupError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "a flipped byte in a group's copy",
            Box::new(move |dir: &Path| {
                let mut bytes = std::fs::read(group_file(dir)).unwrap();
                bytes[length as usize / 2] ^= 0x04;
                std::fs::write(group_file(dir), bytes).unwrap();
            }),
            |e| matches!(e, BackupError::ChecksumMismatch { path, .. } if path.ends_with("groups/g0001.snap")),
        ),
        (
            "a truncated group copy",
            Box::new(move |dir: &Path| {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(group_file(dir))
                    .unwrap();
                file.set_len(length - 9).unwrap();
            }),
            |e| matches!(e, BackupError::Truncated { found, expected, .. } if found + 9 == *expected),
        ),
        (
            "a missing group copy",
            Box::new(move |dir: &Path| std::fs::remove_file(group_file(dir)).unwrap()),
            |e| matches!(e, BackupError::MissingFile { .. }),
        ),
        (
            "a changed manifest",
            Box::new(|dir: &Path| {
                let path = dir.join(MANIFEST_FILE);
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, text.replacen("\"mailboxes\": 1", "\"mailboxes\": 2", 1)).unwrap();
            }),
            |e| matches!(e, BackupError::ChecksumMismatch { path, .. } if path.ends_with(MANIFEST_FILE)),
        ),
        (
            "a missing manifest checksum",
            Box::new(|dir: &Path| std::fs::remove_file(dir.join(MANIFEST_CHECKSUM_FILE)).unwrap()),
            |e| matches!(e, BackupError::MissingFile { .. }),
        ),
        (
            "a flipped byte in a body",
            Box::new(move |dir: &Path| {
                let mut bytes = std::fs::read(body_path(dir)).unwrap();
                bytes[body_length as usize / 2] ^= 0x04;
                std::fs::write(body_path(dir), bytes).unwrap();
            }),
            |e| matches!(e, BackupError::ChecksumMismatch { path, .. } if path.ends_with(body_file(&BodyId::of(&bodies()[1])))),
        ),
        (
            "a truncated body",
            Box::new(move |dir: &Path| {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(body_path(dir))
                    .unwrap();
                file.set_len(body_length - 3).unwrap();
            }),
            |e| matches!(e, BackupError::Truncated { found, expected, path } if found + 3 == *expected && path.ends_with(body_file(&BodyId::of(&bodies()[1])))),
        ),
        (
            "a missing body",
            Box::new(move |dir: &Path| std::fs::remove_file(body_path(dir)).unwrap()),
            |e| matches!(e, BackupError::MissingFile { path } if path.ends_with(body_file(&BodyId::of(&bodies()[1])))),
        ),
        (
            "a body file holding another body, its manifest entry made to match",
            Box::new(move |dir: &Path| {
                let bytes = bodies()[0].clone();
                std::fs::write(body_path(dir), &bytes).unwrap();
                rewrite(dir, |m| {
                    let entry = m
                        .files
                        .iter_mut()
                        .find(|f| names_body(Path::new(&f.path)))
                        .unwrap();
                    entry.bytes = bytes.len() as u64;
                    entry.sha256 = sha256_hex(sha2::Sha256::digest(&bytes));
                    m.bodies = Some(serde_json::json!({
                        "count": 3,
                        "bytes": bodies().iter().map(|b| b.len() as u64).sum::<u64>() - body_length + bytes.len() as u64,
                    }));
                });
            }),
            |e| matches!(e, BackupError::BodyMislabelled { path, .. } if path.ends_with(body_file(&BodyId::of(&bodies()[1])))),
        ),
        (
            "a referenced body left out of the backup",
            Box::new(move |dir: &Path| {
                std::fs::remove_file(dir.join(body_file(&other))).unwrap();
                rewrite(dir, |m| {
                    m.files.retain(|f| f.path != body_file(&other));
                    let bodies = bodies();
                    m.bodies = Some(serde_json::json!({
                        "count": 2,
                        "bytes": (bodies[1].len() + bodies[2].len()) as u64,
                    }));
                });
            }),
            |e| matches!(e, BackupError::BodyNotInBackup { group: 0, id } if *id == BodyId::of(&bodies()[0])),
        ),
        (
            "bodies described in a shape this release does not know",
            Box::new(|dir: &Path| {
                rewrite(dir, |m| {
                    m.bodies = Some(serde_json::json!({"count": 3, "bytes": 1, "chunked": true}))
                })
            }),
            |e| matches!(e, BackupError::BodiesUnsupported { .. }),
        ),
    ];
    for (what, damage, expected) in cases {
        let from = root.path().join("damaged");
        let _ = std::fs::remove_dir_all(&from);
        std::fs::create_dir_all(from.join("groups")).unwrap();
        std::fs::create_dir_all(from.join("bodies")).unwrap();
        for file in tree(&pristine).iter().filter(|p| p.is_file()) {
            std::fs::copy(file, from.join(file.strip_prefix(&pristine).unwrap())).unwrap();
        }
        damage(&from);
        let target = root.path().join("targets");
        std::fs::create_dir_all(&target).unwrap();
        let refused = restore(&args(&from, &target.join("node12"))).unwrap_err();
        assert!(expected(&refused), "{what}: refused with {refused:?}");
        assert!(tree(&target).is_empty(), "{what}: wrote {:?}", tree(&target));
        // `--check-only` refuses it the same way.
        let check = RestoreArgs {
            data_dir: None,
            node_id: None,
            check_only: true,
            ..args(&from, &target.join("node12"))
        };
        let refused = restore(&check).unwrap_err();
        assert!(
            expected(&refused),
            "{what}: --check-only refused with {refused:?}"
        );
    }
}

/// Bytes received for a body that hash to another id are refused by name, and nothing of them
/// stays; a failed backup leaves the directory as it was found.
#[test]
fn a_body_received_with_other_bytes_is_refused_and_nothing_stays() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backup");
    let mut writer = BackupWriter::create(&dir).unwrap();
    let all = bodies();
    let expected = BodyId::of(&all[0]);
    let mut body = writer.begin_body(expected).unwrap();
    body.write(&all[1]).unwrap();
    let refused = writer
        .finish_body(body, "http://10.0.0.2:7001/admin/bodies/x")
        .unwrap_err();
    assert!(
        matches!(&refused, BackupError::BodyMismatch { url, expected: e, actual }
            if url.contains("10.0.0.2") && *e == expected && *actual == BodyId::of(&all[1])),
        "{refused}"
    );
    assert!(tree(&dir.join("bodies")).is_empty(), "{:?}", tree(&dir));
    writer.abandon();
    assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
}

#[test]
fn the_new_members_come_from_the_flags() {
    let members = new_members(12, &peers(), &[11, 12]).unwrap();
    assert_eq!(members.voters, [11, 12].into_iter().collect());
    assert_eq!(members.learners, [13].into_iter().collect());
    assert_eq!(members.nodes[&13].api_addr, "127.0.0.13:7001");
    assert_eq!(new_members(13, &peers(), &[]).unwrap().voters.len(), 3);
    for (node_id, voters) in [(14, vec![]), (12, vec![11, 14])] {
        assert!(matches!(
            new_members(node_id, &peers(), &voters),
            Err(BackupError::Members { .. })
        ));
    }
    let mut twice = peers();
    twice.push(twice[0].clone());
    assert!(matches!(
        new_members(12, &twice, &[]),
        Err(BackupError::Members { .. })
    ));
}
