//! Benchmarks of one mailbox index holding 1,000,000 messages, against the targets:
//!
//! - `open/mmap_1m`: `MmapStorage::open` + `MailboxIndex::open` of the file, page cache warm,
//!   without scanning it (target < 1 ms). Includes the `munmap` when the index is dropped.
//! - `uid_lookup/get`, `uid_lookup/position_of`: a UID drawn from 4096 pre-generated random
//!   present UIDs, looked up in the mmap'd file (target < 200 ns); `uid_lookup/get_in_memory`:
//!   the same on a heap copy of the file, to tell the mapping's cost from the search's.
//! - `changed_since/100_changed`: "changes since MODSEQ" when 100 random messages have a newer
//!   MODSEQ, steady state (the lazy per-block MODSEQ summary already built; target < 2 ms);
//!   `changed_since/100_changed_cold`: the first call after opening, which builds the summary
//!   (one pass over the mapping, page faults included).
//! - `append_index/batch_{1,100}`: `MailboxIndex::append` of 1 or 100 records, one MODSEQ and one
//!   `commit_header` per batch, in memory (no fsync), onto a 1,000,000-record mailbox;
//!   `append_txn/batch_{1,100}`: the same through `GroupState::apply` of `Append` transactions
//!   (validation, flag parsing, session table included). Throughput is in records, so criterion
//!   prints records/s (target >= 1,000,000 records/s). Appending grows the mailbox; every
//!   500,000 appended records it is reset to the 1,000,000-record base outside the timed region.
//! - `checkpoint/group_1m`: `GroupStateMachine::checkpoint` of a group on disk holding that
//!   mailbox: the whole group written to one snapshot file, `fsync`ed and renamed into place.
//!   `checkpoint/group_1m_locked_part`: its first half, `begin_checkpoint` (the file written, not
//!   synced), the part a node runs with the group's state locked, i.e. how long that group's
//!   applies wait at each snapshot (every `--snapshot-interval` entries); the `fsync` and rename
//!   follow without the lock. `checkpoint/group_1m_export_to_memory`: the same serialization
//!   into a reused buffer in memory (no file).
//!
//! Run: `cargo bench --bench index`; a quick run of each once: `cargo bench --bench index -- --test`.
//! The random UIDs and positions come from a fixed seed, printed at start; override it with
//! `DOVETAIL_SEED=<u64>` (`tests/support/rng.rs`).

#[path = "../support/rng.rs"]
mod rng;

use std::cell::{OnceCell, RefCell};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use dovetail::index::{flag_bits, LogPosition, MailboxIndex, MmapStorage, Record, VecStorage};
use dovetail::state_machine::{GroupState, GroupStateMachine, MemoryFiles};
use dovetail::txn::{NewMessage, Op, Outcome, Txn};
use rng::{seed_or, Rng};

const MESSAGES: u32 = 1_000_000;
/// Records appended to the base mailbox before it is reset.
const APPEND_WINDOW: u64 = 500_000;
const LOOKUP_UIDS: usize = 4096;
const CHANGED: usize = 100;
const MAILBOX_GUID: [u8; 16] = [0xbe; 16];
const USER: &str = "bench@example.org";

/// UID of the `i`-th message: one in eleven UIDs is missing, as after expunges.
fn uid_of(i: u32) -> u32 {
    i + 1 + i / 10
}

fn record(uid: u32, modseq: u64) -> Record {
    Record {
        uid,
        flags: if uid.is_multiple_of(3) { flag_bits::SEEN } else { 0 },
        modseq,
        keywords: 0,
        guid: message_guid(uid),
        size: 1_000 + u64::from(uid % 50_000),
        internal_date: 1_700_000_000 + i64::from(uid),
        body: [0; 16],
    }
}

fn message_guid(n: u32) -> [u8; 16] {
    (0xb0d1_0000_0000_0000_0000_0000_0000_0000u128 | u128::from(n) | 1 << 64).to_be_bytes()
}

/// The shared 1,000,000-record mailbox: in memory, and as a file in a temporary directory.
struct IndexFixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// The file image (also the base of `append_index`).
    image: Vec<u8>,
    /// MODSEQ of every record but the `CHANGED` updated ones.
    base_modseq: u64,
    lookup_uids: Vec<u32>,
}

fn build_index_fixture(seed: u64) -> IndexFixture {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let image = MailboxIndex::<VecStorage>::empty_image(MAILBOX_GUID, 1);
    let mut index = MailboxIndex::open(VecStorage::from_bytes(image)).unwrap();
    let base_modseq = index.next_modseq();
    for i in 0..MESSAGES {
        index.append(&record(uid_of(i), base_modseq)).unwrap();
    }
    index.commit_header(LogPosition::new(1, 1));
    let new_modseq = index.next_modseq();
    let mut positions: Vec<usize> = Vec::new();
    while positions.len() < CHANGED {
        let p = rng.below(u64::from(MESSAGES)) as usize;
        if !positions.contains(&p) {
            positions.push(p);
        }
    }
    for &p in &positions {
        index.update(p, flag_bits::SEEN | flag_bits::FLAGGED, 0, new_modseq);
    }
    index.commit_header(LogPosition::new(1, 2));
    index.verify().unwrap();
    let image = index.into_storage().into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.idx");
    std::fs::write(&path, &image).unwrap();
    let lookup_uids = (0..LOOKUP_UIDS)
        .map(|_| uid_of(rng.below(u64::from(MESSAGES)) as u32))
        .collect();
    eprintln!(
        "fixture: {MESSAGES} records, {} MB file, built in {:?}",
        image.len() >> 20,
        started.elapsed()
    );
    IndexFixture {
        _dir: dir,
        path,
        image,
        base_modseq,
        lookup_uids,
    }
}

fn open_mmap(path: &std::path::Path) -> MailboxIndex<MmapStorage> {
    MailboxIndex::open(MmapStorage::open(path).unwrap()).unwrap()
}

fn append_txn(request_seq: u64, first: u32, batch: usize) -> Txn {
    Txn {
        client_id: "bench".into(),
        request_seq,
        op: Op::Append {
            user: USER.into(),
            mailbox: "INBOX".into(),
            messages: (0..batch as u32)
                .map(|i| {
                    let n = first + i;
                    NewMessage {
                        guid: message_guid(n),
                        size: 1_000 + u64::from(n % 50_000),
                        internal_date: 1_700_000_000 + i64::from(n),
                        flags: if n.is_multiple_of(3) {
                            vec!["\\Seen".to_string()]
                        } else {
                            Vec::new()
                        },
                    }
                })
                .collect(),
        },
    }
}

/// A group whose INBOX holds 1,000,000 messages, as a snapshot stream to restore from.
struct GroupFixture {
    snapshot: Vec<u8>,
    /// The last applied log index and request_seq of the base group.
    applied_index: u64,
    request_seq: u64,
}

fn build_group_fixture() -> GroupFixture {
    let started = Instant::now();
    let mut group = GroupState::in_memory();
    let create = Txn {
        client_id: "bench".into(),
        request_seq: 1,
        op: Op::CreateMailbox {
            user: USER.into(),
            mailbox: "INBOX".into(),
            mailbox_guid: MAILBOX_GUID,
            uid_validity: 1,
        },
    };
    group.apply(LogPosition::new(1, 1), &create).unwrap();
    let (mut index, mut seq) = (1, 1);
    for chunk in 0..MESSAGES / 10_000 {
        index += 1;
        seq += 1;
        let txn = append_txn(seq, chunk * 10_000 + 1, 10_000);
        let outcome = group.apply(LogPosition::new(1, index), &txn).unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Appended { .. }), "{outcome:?}");
    }
    let mut snapshot = Vec::new();
    group.export_snapshot(&mut snapshot).unwrap();
    eprintln!(
        "group fixture: {MESSAGES} messages, built in {:?}",
        started.elapsed()
    );
    GroupFixture {
        snapshot,
        applied_index: index,
        request_seq: seq,
    }
}

fn restore(fixture: &GroupFixture) -> GroupState<MemoryFiles> {
    GroupState::import_snapshot(&fixture.snapshot[..]).unwrap()
}

fn bench_index(c: &mut Criterion) {
    // Fixed unless DOVETAIL_SEED: every run measures the same lookups.
    let seed = seed_or("index bench", 0x05ee_dd0e_7a11);
    // Built on first use, so a filtered run pays only for what it runs; dropped (and the
    // temporary file removed) at the end of this function.
    let index_fixture: OnceCell<IndexFixture> = OnceCell::new();
    let fixture = || index_fixture.get_or_init(|| build_index_fixture(seed));
    let group_fixture: OnceCell<GroupFixture> = OnceCell::new();

    c.bench_function("open/mmap_1m", |b| {
        let f = fixture();
        b.iter(|| {
            let index = open_mmap(black_box(&f.path));
            black_box(index.len())
        })
    });

    let mut lookups = c.benchmark_group("uid_lookup");
    lookups.bench_function("get", |b| {
        let f = fixture();
        let index = open_mmap(&f.path);
        index.verify().unwrap(); // also faults every page of the mapping in
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (LOOKUP_UIDS - 1);
            black_box(index.get(black_box(f.lookup_uids[i])))
        })
    });
    lookups.bench_function("position_of", |b| {
        let f = fixture();
        let index = open_mmap(&f.path);
        index.verify().unwrap();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (LOOKUP_UIDS - 1);
            black_box(index.position_of(black_box(f.lookup_uids[i])))
        })
    });
    // The same lookups in a heap copy of the file: separates the cost of the file mapping (4 KiB
    // pages, so a TLB miss on most of the ~20 probes) from the search itself.
    lookups.bench_function("get_in_memory", |b| {
        let f = fixture();
        let index = MailboxIndex::open(VecStorage::from_bytes(f.image.clone())).unwrap();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (LOOKUP_UIDS - 1);
            black_box(index.get(black_box(f.lookup_uids[i])))
        })
    });
    lookups.finish();

    let mut changes = c.benchmark_group("changed_since");
    changes.bench_function("100_changed", |b| {
        let f = fixture();
        let index = open_mmap(&f.path);
        assert_eq!(index.changed_since(f.base_modseq).len(), CHANGED);
        b.iter(|| black_box(index.changed_since(black_box(f.base_modseq))))
    });
    changes.sample_size(30);
    changes.bench_function("100_changed_cold", |b| {
        let f = fixture();
        b.iter_batched(
            || open_mmap(&f.path),
            // The index is returned so that its munmap is not timed.
            |index| {
                let changed = index.changed_since(f.base_modseq);
                (index, changed)
            },
            BatchSize::PerIteration,
        )
    });
    changes.finish();

    let mut appends = c.benchmark_group("append_index");
    for batch in [1u64, 100] {
        appends.throughput(Throughput::Elements(batch));
        appends.bench_function(format!("batch_{batch}"), |b| {
            let f = fixture();
            let fresh = || MailboxIndex::open(VecStorage::from_bytes(f.image.clone())).unwrap();
            // Kept across samples; reset outside the timed region when the window is full.
            let mut index = fresh();
            let mut appended = 0u64;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    if appended + batch > APPEND_WINDOW {
                        index = fresh();
                        appended = 0;
                    }
                    let chunk = (iters - done).min((APPEND_WINDOW - appended) / batch);
                    let started = Instant::now();
                    for _ in 0..chunk {
                        let modseq = index.next_modseq();
                        let first = index.header().uid_next;
                        for uid in first..first + batch as u32 {
                            index.append(&record(uid, modseq)).unwrap();
                        }
                        let applied = index.header().applied;
                        index.commit_header(LogPosition::new(1, applied.index + 1));
                    }
                    elapsed += started.elapsed();
                    appended += chunk * batch;
                    done += chunk;
                }
                black_box(index.len());
                elapsed
            })
        });
    }
    appends.finish();

    let mut txns = c.benchmark_group("append_txn");
    for batch in [1u64, 100] {
        txns.throughput(Throughput::Elements(batch));
        txns.bench_function(format!("batch_{batch}"), |b| {
            let g = group_fixture.get_or_init(build_group_fixture);
            // Kept across samples; reset outside the timed region when the window is full.
            let mut group = restore(g);
            let (mut log_index, mut seq) = (g.applied_index, g.request_seq);
            let mut appended = 0u64;
            // Transactions are built outside the timed region, a chunk at a time.
            let chunk_max = 10_000 / batch;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    if appended + batch > APPEND_WINDOW {
                        group = restore(g);
                        (log_index, seq) = (g.applied_index, g.request_seq);
                        appended = 0;
                    }
                    let chunk = (iters - done)
                        .min((APPEND_WINDOW - appended) / batch)
                        .min(chunk_max);
                    let first_message = MESSAGES + appended as u32 + 1;
                    let pending: Vec<Txn> = (0..chunk)
                        .map(|k| {
                            let first = first_message + (k * batch) as u32;
                            append_txn(seq + 1 + k, first, batch as usize)
                        })
                        .collect();
                    let started = Instant::now();
                    for txn in &pending {
                        log_index += 1;
                        let outcome = group.apply(LogPosition::new(1, log_index), txn).unwrap();
                        assert!(matches!(outcome, Some(Outcome::Appended { .. })), "{outcome:?}");
                        black_box(outcome);
                    }
                    elapsed += started.elapsed();
                    seq += chunk;
                    appended += chunk * batch;
                    done += chunk;
                }
                elapsed
            })
        });
    }
    txns.finish();

    let mut checkpoints = c.benchmark_group("checkpoint");
    checkpoints.sample_size(10);
    // On disk (under $TMPDIR, as a node's data directory would be), holding the fixture; built
    // on first use and shared by both functions (criterion calls a routine once per sample).
    let on_disk: OnceCell<(tempfile::TempDir, RefCell<GroupStateMachine>)> = OnceCell::new();
    let machine = || {
        &on_disk
            .get_or_init(|| {
                let g = group_fixture.get_or_init(build_group_fixture);
                let dir = tempfile::tempdir().unwrap();
                let mut machine = GroupStateMachine::open(dir.path()).unwrap();
                machine.install_snapshot(&g.snapshot[..]).unwrap();
                let bytes = machine.checkpoint().unwrap().bytes;
                eprintln!("checkpoint fixture: {bytes} bytes per snapshot file");
                (dir, RefCell::new(machine))
            })
            .1
    };
    checkpoints.bench_function("group_1m", |b| {
        let mut machine = machine().borrow_mut();
        b.iter(|| black_box(machine.checkpoint().unwrap()));
    });
    checkpoints.bench_function("group_1m_locked_part", |b| {
        let mut machine = machine().borrow_mut();
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let pending = machine.begin_checkpoint().unwrap();
                elapsed += started.elapsed();
                drop(pending); // removes its file, untimed
            }
            elapsed
        });
    });
    checkpoints.bench_function("group_1m_export_to_memory", |b| {
        let machine = machine().borrow();
        let mut buffer = Vec::new();
        b.iter(|| {
            buffer.clear();
            black_box(machine.state().export_snapshot(&mut buffer).unwrap())
        });
    });
    checkpoints.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_index(&mut criterion);
    criterion.final_summary();
}
