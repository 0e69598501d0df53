//! The body journal's tests: what a crash leaves (lost, empty, damaged files; a record cut
//! short) is put back from the journal at open, and concurrent puts rotate and checkpoint
//! segments without losing a body.

use std::fs;
use std::io::Read;
use std::sync::Arc;

use super::journal::{segments, HEADER, MAGIC};
use super::{BodyId, BodyStore};

/// Body `i`: distinct for every `i`.
fn body(i: u32, len: usize) -> Vec<u8> {
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.extend((4..len).map(|j| (i as usize * 31 + j * 7) as u8));
    bytes
}

#[test]
fn a_body_whose_file_was_lost_is_restored_from_the_journal_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let ids: Vec<_> = {
        let store = BodyStore::open(&blobs).unwrap();
        (0..5)
            .map(|i| store.put_small(&body(i, 3000), 1 << 20, None).unwrap().id)
            .collect()
    };
    // As if the crash came before the page cache reached the disk: one file gone, one empty,
    // one with a flipped byte.
    let path = |id: &BodyId| blobs.join(&id.hex()[..2]).join(id.hex());
    fs::remove_file(path(&ids[0])).unwrap();
    fs::write(path(&ids[1]), b"").unwrap();
    let mut flipped = fs::read(path(&ids[2])).unwrap();
    flipped[100] ^= 1;
    fs::write(path(&ids[2]), flipped).unwrap();
    let store = BodyStore::open(&blobs).unwrap();
    assert_eq!(store.replayed().restored, 3);
    assert_eq!(store.replayed().records, 5);
    for (i, id) in ids.iter().enumerate() {
        let mut bytes = Vec::new();
        store.read(id).unwrap().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, body(i as u32, 3000));
    }
    // The replayed segments went; the new active one (numbered from 0 again) holds no record.
    let (seq, active) = segments(&blobs.join("journal")).unwrap().remove(0);
    assert_eq!(seq, 0);
    assert!(fs::read(active).unwrap()[..HEADER].iter().all(|&b| b == 0));
}

#[test]
fn a_record_cut_short_ends_the_replay_of_its_segment_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let ids: Vec<_> = {
        let store = BodyStore::open(&blobs).unwrap();
        (0..3)
            .map(|i| store.put_small(&body(i, 2000), 1 << 20, None).unwrap().id)
            .collect()
    };
    let (_, segment) = segments(&blobs.join("journal")).unwrap().remove(0);
    let mut bytes = fs::read(&segment).unwrap();
    // A fourth append the crash cut short (in the zeros after the three records), and every
    // file lost.
    let end = 3 * (HEADER + 2000);
    assert!(bytes[end..].iter().all(|&b| b == 0));
    let mut torn = MAGIC.to_vec();
    torn.extend_from_slice(&5000u32.to_le_bytes());
    torn.extend_from_slice(&[7u8; 16]);
    torn.extend_from_slice(&[1u8; 100]);
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    fs::write(&segment, &bytes).unwrap();
    for id in &ids {
        fs::remove_file(blobs.join(&id.hex()[..2]).join(id.hex())).unwrap();
    }
    let store = BodyStore::open(&blobs).unwrap();
    let replayed = store.replayed();
    assert_eq!((replayed.records, replayed.restored), (3, 3));
    // From the torn record to the segment's end (its zeros included).
    assert_eq!(replayed.skipped_bytes, (bytes.len() - end) as u64);
    for id in &ids {
        assert!(store.read(id).unwrap().is_some());
    }
}

#[test]
fn concurrent_puts_rotate_and_checkpoint_segments_and_lose_no_body() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let store = Arc::new(BodyStore::open(&blobs).unwrap());
    // 8 threads of 25 bodies of 100 KiB: 19.5 MiB of records, so four rotations.
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..25u32)
                    .map(|i| {
                        store
                            .put_small(&body(t * 1000 + i, 100 << 10), 1 << 20, None)
                            .unwrap()
                            .id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<BodyId> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(ids.len(), 200);
    // The checkpoints run on threads of their own: wait until only the active segment is left.
    let journal = blobs.join("journal");
    let start = std::time::Instant::now();
    // The active segment and the next one, zeroed in advance, stay.
    while segments(&journal).unwrap().len() > 2 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "checkpoints never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (seq, _) = segments(&journal).unwrap().remove(0);
    assert!(
        seq >= 4,
        "19.5 MiB of records rotated the 4 MiB segments at least four times (at {seq})"
    );
    for id in &ids {
        assert!(store.read(id).unwrap().is_some());
    }
}
