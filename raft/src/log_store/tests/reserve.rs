//! The log's reserve (`log_store/reserve.rs`): new logs use segments large enough to keep every
//! tree node in the log file, the reserve is written ahead of the segments in use, and when the
//! file cannot grow any more the reserve falls short while the writes go on in it.

use std::process::Command;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogReader;

use super::{append_durable, normal};
use crate::log_store::reserve::{existing_segment_bytes, SEGMENT_BYTES};
use crate::log_store::{LogDb, LogDbOptions};
use crate::type_config::Entry;

fn entry(index: u64) -> Entry {
    let mut payload = format!("entry {index} ").into_bytes();
    payload.resize(1024, b'a' + (index % 26) as u8);
    normal(1, index, &payload)
}

fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_new_log_uses_large_segments_and_an_existing_one_keeps_its_own() {
    let fresh = tempfile::tempdir().unwrap();
    let db = LogDb::open(fresh.path()).unwrap();
    db.close().await;
    assert_eq!(existing_segment_bytes(fresh.path()), Some(SEGMENT_BYTES));

    // A log created by an earlier release, with sled's default segments.
    let old = tempfile::tempdir().unwrap();
    drop(sled::open(old.path()).unwrap());
    let db = LogDb::open(old.path()).expect("an existing log opens with its own segment size");
    db.close().await;
    assert_eq!(existing_segment_bytes(old.path()), Some(512 * 1024));
}

/// Once written to, the file extends at least the reserve beyond the segments in use, and the
/// status says the reserve is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserve_is_written_ahead_of_the_segments_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogDbOptions {
        segment_bytes: 1 << 20,
        reserve_bytes: 3 << 20,
    };
    let db = LogDb::open_with(dir.path(), options).unwrap();
    let mut store = db.group(1).unwrap();
    for first in (1..=2000).step_by(100) {
        append_durable(&mut store, (first..first + 100).map(entry).collect()).await;
    }
    wait_for("a whole reserve", Duration::from_secs(5), || {
        let status = db.reserve();
        !status.is_short() && status.ahead_bytes >= 3 << 20
    });
    let file_len = std::fs::metadata(dir.path().join("db")).unwrap().len();
    // About 2 MiB of entries, in at least two 1 MiB segments, plus 3 MiB ahead.
    assert!(file_len >= 5 << 20, "file {file_len} bytes");
    db.close().await;
}

const CHILD_DIR_ENV: &str = "DOVETAIL_RAFT_RESERVE_CHILD_DIR";
const ENTRIES_BEFORE: u64 = 500;
const ENTRIES_AFTER: u64 = 6000;

/// A file that may not grow (as on a full disk) shortens the reserve, not the writes: a child
/// process writes, then forbids itself to grow any file (`RLIMIT_FSIZE` at the log file's length:
/// every write past it fails with EFBIG, as one past a full disk fails with ENOSPC) and writes
/// about 6 MiB more. Every one of those appends must be acknowledged (they land in the 16 MiB
/// reserve), the reserve must be reported short within a second, and the reopened log must hold
/// every entry. Without the reserve the first write into a new segment would fail, and sled
/// would refuse every later write until reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_grow_shortens_the_reserve_but_not_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "log_store::tests::reserve::cannot_grow_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .output()
        .expect("run child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("every append acknowledged, reserve short"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let db = LogDb::open(dir.path()).expect("reopen");
    let mut store = db.group(1).unwrap();
    let read = store.try_get_log_entries(1..).await.unwrap();
    let expected: Vec<Entry> = (1..=ENTRIES_BEFORE + ENTRIES_AFTER).map(entry).collect();
    assert!(
        read == expected,
        "read back {} of {} entries",
        read.len(),
        expected.len()
    );
    db.close().await;
}

/// Child side of [`a_file_that_cannot_grow_shortens_the_reserve_but_not_the_writes`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_file_that_cannot_grow_shortens_the_reserve_but_not_the_writes in a child process"]
async fn cannot_grow_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let db = LogDb::open(&dir).unwrap();
    let mut store = db.group(1).unwrap();
    for first in (1..=ENTRIES_BEFORE).step_by(100) {
        append_durable(&mut store, (first..first + 100).map(entry).collect()).await;
    }
    wait_for("a whole reserve", Duration::from_secs(5), || {
        !db.reserve().is_short()
    });
    let file_len = std::fs::metadata(std::path::Path::new(&dir).join("db"))
        .unwrap()
        .len();
    // SAFETY: plain libc calls on this process; SIGXFSZ would otherwise kill it at the limit.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: file_len,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let mut short_after = None;
    let started = Instant::now();
    for first in (ENTRIES_BEFORE + 1..=ENTRIES_BEFORE + ENTRIES_AFTER).step_by(100) {
        append_durable(&mut store, (first..first + 100).map(entry).collect()).await;
        if short_after.is_none() && db.reserve().is_short() {
            short_after = Some(started.elapsed());
        }
    }
    wait_for("a short reserve", Duration::from_secs(1), || {
        db.reserve().is_short()
    });
    let status = db.reserve();
    assert!(status.error.is_some(), "{status:?}");
    assert_eq!(
        std::fs::metadata(std::path::Path::new(&dir).join("db"))
            .unwrap()
            .len(),
        file_len
    );
    db.close().await;
    println!("every append acknowledged, reserve short ({status:?}, first seen after {short_after:?})");
}
