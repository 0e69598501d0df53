//! `snapshot` and `checkpoint`: a group's snapshot stream, as a follower receives it from a
//! leader and as `checkpoint.snap` lies on disk.

use std::cell::RefCell;
use std::fs;
use std::path::PathBuf;

use dovetail::dump::dump_path;
use dovetail::state_machine::snapshot::read_snapshot_manifest;
use dovetail::state_machine::{GroupState, GroupStateMachine};

/// Imports a stream into memory (every check an install makes), reads its manifest alone as
/// the node does before an install, and uses a group that imported: its digests and reads.
pub fn snapshot(data: &[u8]) {
    let _ = read_snapshot_manifest(data);
    let Ok(group) = GroupState::import_snapshot(data) else {
        return;
    };
    let _ = group.digest();
    for (user, mailboxes) in &group.manifest().users {
        let _ = group.list_mailboxes(user);
        for name in mailboxes.keys() {
            let _ = group.status(user, name);
            let _ = group.changes_since(user, name, 0);
        }
    }
    let mut again = Vec::new();
    group.export_snapshot(&mut again).expect("export into memory");
    assert!(
        GroupState::import_snapshot(again.as_slice()).is_ok(),
        "an imported group exports a stream that imports"
    );
}

thread_local! {
    /// A scratch directory per thread, kept across executions (creating one costs more than
    /// most executions).
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

fn scratch() -> PathBuf {
    SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| super::setup(super::temp_dir))
            .path()
            .to_path_buf()
    })
}

/// Writes the bytes as `checkpoint.snap`, dumps it (`dovetail dump`), and opens a group
/// directory whose `live/` is dirty, so the open restores from this checkpoint (the restore path
/// of a node after a crash). A group that opened must be consistent with what dump said.
pub fn checkpoint(data: &[u8]) {
    let dir = scratch();
    let file = dir.join("checkpoint.snap");
    fs::write(&file, data).expect("write the checkpoint");
    let dumped = dump_path(&file, 10);

    let group_dir = dir.join("group");
    let _ = fs::remove_dir_all(&group_dir);
    fs::create_dir_all(group_dir.join("live")).expect("create live/");
    fs::write(group_dir.join("live/DIRTY"), b"").expect("mark live/ dirty");
    fs::write(group_dir.join("checkpoint.snap"), data).expect("write the checkpoint");
    let opened = GroupStateMachine::open(&group_dir);
    if !data.starts_with(b"DVTLSNAP") {
        // Dump reads other kinds of file too (an index, a manifest); restore only streams.
        assert!(
            opened.is_err(),
            "restored from a checkpoint that is not a snapshot stream"
        );
        return;
    }
    match (&dumped, &opened) {
        (Ok(_), Ok(group)) => {
            let _ = group.mailbox_digests();
        }
        (Err(_), Err(_)) => {}
        (dumped, opened) => panic!(
            "dump and restore disagree about a checkpoint: dump {:?}, restore {:?}",
            dumped.as_ref().map(|_| "ok"),
            opened.as_ref().map(|_| "ok")
        ),
    }
}
