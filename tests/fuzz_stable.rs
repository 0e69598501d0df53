//! Fuzz targets on stable Rust: every target of `tests/fuzz/targets/` over its checked-in corpus
//! (`tests/fuzz/corpus/<target>/`), then over mutations of it for a bounded time.
//!
//! Property: no hostile input — an index file, a manifest, a snapshot stream or checkpoint, a log
//! entry, peer frames before and after the handshake, a snapshot transfer, the Raft log's values,
//! a request to the client or admin API, what an IMAP client or an MTA (LMTP) sends to a
//! session — makes a node panic, hang, or allocate by a length it did not check; and what
//! decodes is used as the node would use it (round trips, reads, apply); the IMAP and LMTP
//! sessions answer only with well-formed response lines, BAD (IMAP) or 5xx (LMTP) to a command
//! that does not parse, and go on answering.
//! How it is provoked: the driver (`tests/fuzz/driver.rs`) mutates real encodings (the seeds of
//! `tests/fuzz/targets/seeds.rs`) with bit flips, range edits, splices, interesting integers and
//! huge length fields. What is checked: each target's assertions, plus the driver's panic,
//! allocation and hang detection; a failing input is written to `target/fuzz-failures/<target>/`
//! and named in the failure.
//!
//! CI runs each target for 3 s (`DOVETAIL_FUZZ_SECONDS` for longer runs by hand, e.g.
//! `DOVETAIL_FUZZ_SECONDS=600 cargo test --release --test fuzz_stable -- --exact index`); the
//! seed is printed and `DOVETAIL_SEED=<seed>` replays a run; `DOVETAIL_FUZZ_INPUT=<file>` runs one
//! input.

#[path = "support/rng.rs"]
mod rng;

#[path = "fuzz/driver.rs"]
mod driver;

#[path = "fuzz/targets/mod.rs"]
mod targets;

#[global_allocator]
static ALLOCATOR: driver::TrackingAllocator = driver::TrackingAllocator;

macro_rules! fuzz_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                driver::run(stringify!($target), targets::find(stringify!($target)));
            }
        )*

        /// Every target has a test above and a corpus.
        #[test]
        fn every_target_runs() {
            let tested = [$(stringify!($target)),*];
            let listed: Vec<&str> = targets::TARGETS.iter().map(|(name, _)| *name).collect();
            assert_eq!(listed, tested);
        }
    };
}

fuzz_tests!(
    index,
    manifest,
    snapshot,
    checkpoint,
    log_entry,
    peer_frames,
    peer_handshake,
    snapshot_chunks,
    raft_log_values,
    client_api,
    admin_api,
    imap_session,
    lmtp_session,
);

/// The checked-in seeds are what the code writes today (`DOVETAIL_BLESS=1` rewrites them);
/// other files in a corpus (inputs that once failed) are kept and replayed as they are.
#[test]
fn corpus_is_current() {
    let bless = std::env::var("DOVETAIL_BLESS").is_ok_and(|v| v == "1");
    let seeds = targets::seeds::seeds();
    let mut stale = Vec::new();
    for (target, _) in targets::TARGETS {
        let dir = driver::corpus_dir(target);
        let wanted: Vec<&(&str, String, Vec<u8>)> = seeds.iter().filter(|(t, _, _)| t == target).collect();
        assert!(!wanted.is_empty(), "no seeds for {target}");
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                    std::fs::remove_file(path).unwrap();
                }
            }
            for (_, name, bytes) in &wanted {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            continue;
        }
        let present: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("seed-"))
            .collect();
        for (_, name, bytes) in &wanted {
            if std::fs::read(dir.join(name)).ok().as_ref() != Some(bytes) {
                stale.push(format!("{target}/{name}"));
            }
        }
        for name in present {
            if !wanted.iter().any(|(_, n, _)| *n == name) {
                stale.push(format!("{target}/{name} (no longer written)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the fuzz corpus differs from what the code writes now: {stale:?}; rewrite it with \
         DOVETAIL_BLESS=1 cargo test --test fuzz_stable corpus_is_current"
    );
}
