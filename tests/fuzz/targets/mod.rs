//! The fuzz targets: each a plain `fn(&[u8])` that feeds hostile bytes to one decoder the way a
//! node meets them, and uses what decodes. A target must never panic, hang, or allocate by a
//! length it took from the input without checking it (`tests/fuzz/driver.rs` says how each is
//! detected). The stable driver (`tests/fuzz_stable.rs`, one test per target, what CI runs)
//! calls them; they take nothing from it, so another harness can call them alike.
//!
//! | target | what the bytes are | entry point |
//! | --- | --- | --- |
//! | `index` | an index file | `Header::decode`, `MailboxIndex::open` + `verify` over `VecStorage`, then reads |
//! | `manifest` | a manifest file | `Manifest::decode`, then its sessions |
//! | `snapshot` | a snapshot stream from a leader | `GroupState::import_snapshot`, `read_snapshot_manifest` |
//! | `checkpoint` | `checkpoint.snap` on disk | `dovetail dump`'s decoder, and a dirty group's open (restore) |
//! | `log_entry` | a committed log entry's request | `decode_entry`, then apply as a replica does |
//! | `peer_frames` | a peer connection after the handshake | `wire::read_frame` + `decode` of each message type |
//! | `peer_handshake` | a peer connection before it | `server_handshake`, `client_handshake` |
//! | `snapshot_chunks` | a snapshot connection after the handshake | `transport::snapshot::receive` |
//! | `raft_log_values` | values of the sled Raft log, consensus metadata | `log_store::codec::decode`, `ConsensusMeta::decode` |
//! | `client_api` | an HTTP request to the client API | the axum router over a local `MailService` |
//! | `admin_api` | an HTTP request to the admin API | the axum router over a one-node `RaftNode` |
//! | `imap_session` | what an IMAP client sends | one `imap::session::Session` over an in-memory stream, one-node cluster |
//! | `lmtp_session` | what an MTA sends over LMTP | `lmtp::session::run` over an in-memory stream, one-node cluster |
//!
//! Seeds (`tests/fuzz/corpus/<target>/`) are real encodings, written by `seeds.rs`
//! (`DOVETAIL_BLESS=1 cargo test --test fuzz_stable corpus_is_current`).

// Each harness uses a part of this tree.
#![allow(dead_code)]

pub mod api;
pub mod entry;
pub mod frontend;
pub mod imap;
pub mod index;
pub mod lmtp;
pub mod manifest;
pub mod peer;
pub mod seeds;
pub mod snapshot;

/// A fuzz target: hostile bytes in, nothing out; it fails by panicking.
pub type Target = fn(&[u8]);

/// Every target by name (the corpus directory's name).
pub const TARGETS: &[(&str, Target)] = &[
    ("index", index::index),
    ("manifest", manifest::manifest),
    ("snapshot", snapshot::snapshot),
    ("checkpoint", snapshot::checkpoint),
    ("log_entry", entry::log_entry),
    ("peer_frames", peer::peer_frames),
    ("peer_handshake", peer::peer_handshake),
    ("snapshot_chunks", peer::snapshot_chunks),
    ("raft_log_values", peer::raft_log_values),
    ("client_api", api::client_api),
    ("admin_api", api::admin_api),
    ("imap_session", imap::imap_session),
    ("lmtp_session", lmtp::lmtp_session),
];

thread_local! {
    static SETTING_UP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as set-up of a target rather than as part of an input's execution: starting a node,
/// building a runtime. The stable driver does not count its allocations against the input.
pub fn setup<T>(f: impl FnOnce() -> T) -> T {
    SETTING_UP.with(|s| s.set(true));
    let value = f();
    SETTING_UP.with(|s| s.set(false));
    value
}

/// Whether this thread is inside [`setup`].
pub fn setting_up() -> bool {
    SETTING_UP.try_with(|s| s.get()).unwrap_or(false)
}

/// A temporary directory for a target's files, on a memory file system when the machine has
/// one (`/dev/shm`): the targets that write files (a checkpoint's restore, a node's log) sync
/// them, which costs nothing there.
pub fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("dovetail-fuzz-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// The target named `name`.
pub fn find(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
        .1
}
