//! Durable appends to the Raft log store: [`LogDb`] (the node's one sled db and its
//! group-commit flusher) and a group's [`GroupLogStore`].
//!
//! - `log_append/one_group`: one group appends one entry of about 300 bytes (one encoded
//!   request of a mail append) and waits until openraft's `IOFlushed` callback reports it
//!   durable, one at a time: the latency of one log barrier (sled flush + `fdatasync`) on this
//!   disk, which a replicated write pays on the leader and, in parallel, on a follower.
//! - `log_append/16_groups`: sixteen groups each append one such entry at once and all wait:
//!   one group commit (ideally one barrier for all sixteen). Throughput is in entries.
//!
//! The db lives in a temporary directory under `$TMPDIR` (default `/tmp`): put it on the disk
//! that matters. Run: `cargo bench -p dovetail-raft --bench log_append`; a quick run of each
//! once: `cargo bench -p dovetail-raft --bench log_append -- --test`. The log db opens with the
//! defaults (`LogDbOptions`) unless `DOVETAIL_BENCH_SEGMENT_BYTES` / `DOVETAIL_BENCH_RESERVE_BYTES`
//! say otherwise (to compare with sled's 512 KiB segments and no reserve, as before the reserve
//! existed: `DOVETAIL_BENCH_SEGMENT_BYTES=524288 DOVETAIL_BENCH_RESERVE_BYTES=0`).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use dovetail_raft::type_config::{Batch, Entry, LeaderId, LogId, Request, TypeConfig};
use dovetail_raft::{GroupLogStore, LogDb, LogDbOptions};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;

const PAYLOAD_BYTES: usize = 300;
const GROUPS: u32 = 16;

fn entry(index: u64) -> Entry {
    let log_id = LogId::new(LeaderId::new_committed(1, 1), index);
    Entry::new_normal(log_id, Batch(vec![Request(vec![0x5a; PAYLOAD_BYTES])]))
}

/// Appends one entry and returns once it is durable.
async fn append_durable(store: &mut GroupLogStore, index: u64) {
    let (flushed, done) = TypeConfig::oneshot();
    store
        .append([entry(index)], IOFlushed::signal(flushed))
        .await
        .expect("append");
    done.await.expect("callback dropped").expect("flush failed");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let env = |name: &str| std::env::var(name).ok().map(|v| v.parse().expect("a number"));
    let defaults = LogDbOptions::default();
    let options = LogDbOptions {
        segment_bytes: env("DOVETAIL_BENCH_SEGMENT_BYTES")
            .map_or(defaults.segment_bytes, |v: u64| v as usize),
        reserve_bytes: env("DOVETAIL_BENCH_RESERVE_BYTES").unwrap_or(defaults.reserve_bytes),
    };
    eprintln!("log db options: {options:?}");
    let db = runtime
        .block_on(async { LogDb::open_with(dir.path(), options) })
        .expect("open log db");
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(8));
    let mut group = criterion.benchmark_group("log_append");
    group.throughput(Throughput::Elements(1));

    let mut one = db.group(1).expect("group 1");
    let mut next_index = 1_u64;
    group.bench_function("one_group", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    append_durable(&mut one, next_index).await;
                    next_index += 1;
                }
                started.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(u64::from(GROUPS)));
    let mut stores: Vec<(GroupLogStore, u64)> = (0..GROUPS)
        .map(|g| (db.group(100 + g).expect("group"), 1))
        .collect();
    group.bench_function("16_groups", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let appends = stores.iter_mut().map(|(store, index)| {
                        let this = *index;
                        *index += 1;
                        append_durable(store, this)
                    });
                    futures_util::future::join_all(appends).await;
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    drop(stores);
    drop(one);
    runtime.block_on(db.close());
    criterion.final_summary();
}
