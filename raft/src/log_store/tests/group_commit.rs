//! Group commit: the flusher serves many groups' durability requests with one fsync, completes
//! every waiter, and never leaves one hanging when the db closes.

use openraft::storage::{RaftLogReader, RaftLogStorage};

use super::{append_durable, append_nowait, log_id, normal};
use crate::log_store::LogDb;
use crate::type_config::Vote;

/// A burst of appends from 16 groups, issued without waiting, is made durable by a few fsyncs:
/// the flusher thread starts on the first request and takes everything that queued meanwhile
/// (each append is an in-memory sled write of microseconds, each flush a disk round trip).
/// Every callback reports success.
#[tokio::test]
async fn one_fsync_serves_a_burst_from_many_groups() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let mut callbacks = Vec::new();
    for group_id in 0..16 {
        let mut store = db.group(group_id).unwrap();
        for index in 1..=8 {
            callbacks.push(append_nowait(&mut store, vec![normal(1, index, b"x")]).await);
        }
    }
    for done in callbacks {
        done.await.expect("callback dropped").expect("flush failed");
    }

    let stats = db.stats();
    assert_eq!(stats.append_calls, 128);
    assert_eq!(stats.entries_appended, 128);
    assert_eq!(stats.flush_requests, 128);
    assert!(
        stats.fsyncs >= 1 && stats.fsyncs <= 32,
        "at least 4 requests per fsync expected: {stats:?}"
    );
    assert!(stats.largest_batch >= 8, "{stats:?}");
}

/// 16 groups append concurrently on a multi-threaded runtime, each waiting for durability
/// before its next append as a follower would. Fewer fsyncs than appends must result, every
/// callback must succeed, and every entry must be readable in its own group afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_groups_share_fsyncs() {
    const GROUPS: u32 = 16;
    const APPENDS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();

    let mut tasks = Vec::new();
    for group_id in 0..GROUPS {
        let mut store = db.group(group_id).unwrap();
        tasks.push(tokio::spawn(async move {
            for index in 1..=APPENDS {
                let payload = format!("group {group_id} entry {index}");
                append_durable(&mut store, vec![normal(1, index, payload.as_bytes())]).await;
            }
            store.save_vote(&Vote::new(2, u64::from(group_id))).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let stats = db.stats();
    println!("{stats:?}");
    assert_eq!(stats.append_calls, u64::from(GROUPS) * APPENDS);
    assert_eq!(stats.flush_requests, u64::from(GROUPS) * (APPENDS + 1));
    assert!(
        stats.fsyncs < stats.append_calls,
        "no group commit happened: {stats:?}"
    );
    assert!(stats.largest_batch > 1, "{stats:?}");

    for group_id in 0..GROUPS {
        let mut store = db.group(group_id).unwrap();
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(entries.len() as u64, APPENDS);
        let expected = normal(1, APPENDS, format!("group {group_id} entry {APPENDS}").as_bytes());
        assert_eq!(entries.last(), Some(&expected));
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new(2, u64::from(group_id)))
        );
    }
}

/// Writes after `close` fail promptly with an error rather than waiting for an fsync that will
/// never come; the callback of an append is completed with the error too.
#[tokio::test]
async fn writes_after_close_fail_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let mut store = db.group(1).unwrap();
    append_durable(&mut store, vec![normal(1, 1, b"before")]).await;
    store.save_committed(Some(log_id(1, 1, 1))).await.unwrap();
    db.sync().await.expect("sync before close");
    db.clone().close().await;

    let done = append_nowait(&mut store, vec![normal(1, 2, b"after")]).await;
    let error = done
        .await
        .expect("callback dropped")
        .expect_err("append after close must fail");
    assert!(error.to_string().contains("closed"), "{error}");
    let error = store
        .save_vote(&Vote::new(3, 1))
        .await
        .expect_err("vote after close must fail");
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    assert!(db.sync().await.is_err(), "sync after close must fail");
}
