//! The tail (the last entries written, kept decoded) must answer every read exactly as sled
//! would: a model-free differential test drives one store through appends, truncations,
//! overwrites and purges and compares its reads with those of a handle on the same trees whose
//! reads all go to sled. Plus: the tail really serves reads, and stays within its bounds.

use std::ops::Bound;

use openraft::storage::{RaftLogReader, RaftLogStorage};

use super::{append_durable, log_id, normal};
use crate::log_store::tail::{TAIL_MAX_BYTES, TAIL_MAX_ENTRIES};
use crate::log_store::LogDb;
use crate::test_rng::{seed, Rng};
use crate::type_config::Entry;

fn entry(rng: &mut Rng, term: u64, index: u64) -> Entry {
    // Mostly small, sometimes large enough that the byte bound evicts.
    let len = if rng.below(20) == 0 {
        60 << 10
    } else {
        rng.below(300) as usize
    };
    normal(term, index, &vec![(index % 251) as u8; len])
}

fn render(result: Result<Vec<Entry>, std::io::Error>) -> Result<Vec<Entry>, String> {
    result.map_err(|e| e.to_string())
}

#[tokio::test]
async fn reads_through_the_tail_equal_reads_from_sled() {
    let first = seed("reads_through_the_tail_equal_reads_from_sled");
    for seed in first..first.wrapping_add(4) {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        let mut hot = db.group(1).unwrap();
        let mut cold = hot.without_tail();
        let mut rng = Rng::new(seed);
        let (mut purged, mut last, mut term) = (0u64, 0u64, 1u64);
        let mut near_the_end = 0;
        for step in 0..400 {
            match rng.below(10) {
                0 if last > purged => {
                    // Truncate, then (like a follower after a conflict) overwrite with a new term.
                    let after = purged + rng.below(last - purged + 1);
                    let keep = (after > 0).then(|| log_id(term, 1, after));
                    hot.truncate_after(keep).await.unwrap();
                    last = after;
                    term += 1;
                }
                1 if last > purged + 1 => {
                    let upto = purged + 1 + rng.below(last - purged - 1);
                    hot.purge(log_id(term, 1, upto)).await.unwrap();
                    purged = upto;
                }
                _ => {
                    let most = if rng.below(4) == 0 { 40 } else { 3 };
                    let count = 1 + rng.below(most);
                    let entries = (last + 1..=last + count)
                        .map(|i| entry(&mut rng, term, i))
                        .collect();
                    append_durable(&mut hot, entries).await;
                    last += count;
                }
            }
            for _ in 0..6 {
                let start = rng.below(last + 3);
                let end = start + rng.below(last + 4 - start);
                let ranges = [
                    (Bound::Included(start), Bound::Excluded(end)),
                    (Bound::Included(start), Bound::Included(end)),
                    (Bound::Excluded(start), Bound::Unbounded),
                    (Bound::Included(start), Bound::Unbounded),
                ];
                for range in ranges {
                    let from_hot = render(hot.try_get_log_entries(range).await);
                    let from_sled = render(cold.try_get_log_entries(range).await);
                    assert_eq!(from_hot, from_sled, "seed {seed} step {step} range {range:?}");
                    if from_hot.is_ok_and(|e| !e.is_empty()) && start > last.saturating_sub(10) {
                        near_the_end += 1;
                    }
                }
                let limited_hot = render(hot.limited_get_log_entries(start, end).await);
                let limited_sled = render(cold.limited_get_log_entries(start, end).await);
                assert_eq!(
                    limited_hot, limited_sled,
                    "seed {seed} step {step} limited {start}..{end}"
                );
            }
            let (entries, bytes) = hot.tail_size();
            assert!(
                entries <= TAIL_MAX_ENTRIES && bytes <= TAIL_MAX_BYTES,
                "{entries} / {bytes}"
            );
        }
        assert!(
            near_the_end > 100,
            "seed {seed}: reads near the end: {near_the_end}"
        );
    }
}

#[tokio::test]
async fn the_tail_serves_recent_reads_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let mut hot = db.group(1).unwrap();
    let entries: Vec<Entry> = (1..=300).map(|i| normal(1, i, b"small")).collect();
    append_durable(&mut hot, entries.clone()).await;
    let (held, bytes) = hot.tail_size();
    assert_eq!(
        held, TAIL_MAX_ENTRIES,
        "the tail keeps the newest entries, up to its bound"
    );
    assert!(bytes > 0);

    // Remove entries 290.. from sled behind the hot handle's back: its reads of them still
    // answer (from the tail), which shows where they come from; the cold handle sees sled.
    let mut cold = hot.without_tail();
    cold.truncate_after(Some(log_id(1, 1, 289))).await.unwrap();
    assert_eq!(
        cold.try_get_log_entries(290..).await.unwrap(),
        Vec::<Entry>::new()
    );
    assert_eq!(
        hot.try_get_log_entries(290..).await.unwrap(),
        entries[289..].to_vec()
    );
    // A read starting before the tail goes to sled.
    assert_eq!(
        hot.try_get_log_entries(1..3).await.unwrap(),
        entries[..2].to_vec()
    );

    // One entry larger than the byte bound: the tail lets it go rather than grow.
    append_durable(&mut hot, vec![normal(1, 301, &vec![1u8; TAIL_MAX_BYTES + 1])]).await;
    assert_eq!(hot.tail_size(), (0, 0));
}
