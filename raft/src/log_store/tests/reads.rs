//! Reads refuse a log with a hole, and `limited_get_log_entries` bounds its answer by size but
//! always makes progress.

use openraft::storage::RaftLogReader;

use super::{append_durable, normal};
use crate::log_store::LogDb;

#[tokio::test]
async fn a_hole_in_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let mut store = db.group(2).unwrap();
    append_durable(&mut store, vec![normal(1, 1, b"1"), normal(1, 2, b"2")]).await;
    append_durable(&mut store, vec![normal(1, 4, b"4")]).await;

    let error = store
        .try_get_log_entries(1..=4)
        .await
        .expect_err("hole must be reported");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        error
            .to_string()
            .contains("group 2: corrupt log: hole between entries 2 and 4"),
        "{error}"
    );
    assert_eq!(store.try_get_log_entries(1..3).await.unwrap().len(), 2);
}

#[tokio::test]
async fn limited_reads_are_bounded_but_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let mut store = db.group(2).unwrap();
    let big = vec![7u8; 3 << 20];
    append_durable(&mut store, (1..=3).map(|index| normal(1, index, &big)).collect()).await;

    let first = store.limited_get_log_entries(1, 4).await.unwrap();
    assert_eq!(
        first.len(),
        2,
        "3 MiB + 3 MiB crosses the 4 MiB budget after the second entry"
    );
    let rest = store.limited_get_log_entries(3, 4).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(store.limited_get_log_entries(4, 4).await.unwrap().is_empty());
    assert_eq!(store.try_get_log_entries(..).await.unwrap().len(), 3);
}
