//! Purging runs in steps of `PURGE_STEP` entries (each its own sled transaction, so other
//! groups' appends get in between). Whatever the number of entries, the result must be the
//! same as one purge: everything up to the purged id gone, the rest intact, the last purged id
//! recorded, also across a reopen.

use openraft::storage::{LogState, RaftLogReader, RaftLogStorage};

use super::{append_durable, log_id, normal};
use crate::log_store::group_log_store::PURGE_STEP;
use crate::log_store::log_db::LogDb;
use crate::type_config::TypeConfig;

async fn purge_case(entries: u64, upto: u64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = LogDb::open(dir.path()).unwrap();
        let mut store = db.group(5).unwrap();
        // Written in appends of 100, so the multi-entry path fills the log.
        let mut index = 1;
        while index <= entries {
            let last = (index + 99).min(entries);
            let batch = (index..=last)
                .map(|i| normal(3, i, format!("e{i}").as_bytes()))
                .collect();
            append_durable(&mut store, batch).await;
            index = last + 1;
        }
        store.purge(log_id(3, 1, upto)).await.unwrap();
        drop(store);
        db.close().await;
    }
    let db = LogDb::open(dir.path()).unwrap();
    let mut store = db.group(5).unwrap();
    assert_eq!(
        store.get_log_state().await.unwrap(),
        LogState::<TypeConfig> {
            last_purged_log_id: Some(log_id(3, 1, upto)),
            last_log_id: Some(log_id(3, 1, entries.max(upto))),
        },
        "{entries} entries purged up to {upto}"
    );
    let left = store.try_get_log_entries(..).await.unwrap();
    let expected: Vec<_> = (upto + 1..=entries)
        .map(|i| normal(3, i, format!("e{i}").as_bytes()))
        .collect();
    assert_eq!(left, expected, "{entries} entries purged up to {upto}");
}

#[tokio::test]
async fn a_purge_of_many_steps_leaves_exactly_the_tail() {
    let step = PURGE_STEP as u64;
    // Fewer than a step, exactly one and two steps, several steps and a remainder, and a purge
    // up to the last entry.
    for (entries, upto) in [
        (50, 10),
        (step + 5, step),
        (3 * step, 2 * step),
        (4 * step + 40, 3 * step + 17),
        (2 * step + 3, 2 * step + 3),
    ] {
        purge_case(entries, upto).await;
    }
}
