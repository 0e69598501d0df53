//! [`LogDb`]: a node's single sled database, with its group-commit [`Flusher`].
//!
//! Every group's log lives in the one `sled::Db` of the node, so one flush makes the writes of
//! every group durable; the flusher (`flusher.rs`) turns the durability requests of all groups
//! into as few fsyncs as the disk allows.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::codec;
use super::error::LogStoreError;
use super::flusher::{Flusher, LogWrite};
use super::group_log_store::GroupLogStore;
use super::reserve::{self, LogReserve, ReserveStatus};
use crate::GroupId;

/// Counters of the log db since it was opened, as [`LogDb::stats`] reads them from the flusher.
///
/// Invariant: `fsyncs <= flush_requests`, and every request is counted as completed by exactly
/// one fsync (or failed by a close).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogDbStats {
    /// `append` calls made on any group's store.
    pub append_calls: u64,
    /// Entries written by those calls.
    pub entries_appended: u64,
    /// Writes that asked to be made durable: appends, votes, truncations, purges, syncs.
    pub flush_requests: u64,
    /// Durability barriers performed by the flusher (one `sled::Db::flush` plus one
    /// `fdatasync` of sled's data file each).
    pub fsyncs: u64,
    /// The largest number of requests one fsync completed.
    pub largest_batch: u64,
}

/// A node's Raft log database: one `sled::Db` holding every group's log, plus the group-commit
/// flusher. Cheap to clone.
///
/// Open it once per node with [`LogDb::open`], then get each group's store with
/// [`LogDb::group`]. To reopen the same directory in-process, drop every store and call
/// [`LogDb::close`] first: sled holds an exclusive lock on its files until the last handle goes.
#[derive(Clone)]
pub struct LogDb {
    inner: Arc<LogDbInner>,
}

struct LogDbInner {
    path: PathBuf,
    db: sled::Db,
    flusher: Arc<Flusher>,
    flusher_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    reserve: Arc<LogReserve>,
    reserve_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// One store per group, so every handle to a group shares its write lock.
    groups: Mutex<HashMap<GroupId, GroupLogStore>>,
}

impl fmt::Debug for LogDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogDb")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// How long [`open_sled`] waits for sled's file lock to be released.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How a log db is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDbOptions {
    /// sled's segment size for a new db (an existing one keeps its own):
    /// [`reserve::SEGMENT_BYTES`] by default.
    pub segment_bytes: usize,
    /// What the log keeps written ahead of its segments in use ([`reserve`]): by default
    /// [`reserve::DEFAULT_RESERVE_BYTES`].
    pub reserve_bytes: u64,
}

impl Default for LogDbOptions {
    fn default() -> Self {
        LogDbOptions {
            segment_bytes: reserve::SEGMENT_BYTES,
            reserve_bytes: reserve::DEFAULT_RESERVE_BYTES,
        }
    }
}

/// Opens the sled database at `path`, waiting up to [`LOCK_WAIT`] for its file lock.
///
/// sled 0.34 releases the lock only when the last of its background threads (flusher, IO-buffer
/// writers) lets go of the file, which can be shortly after the `Db` handle was dropped; a
/// close-then-reopen in one process would otherwise fail at random. A lock that stays held
/// (another live process on the same directory) still fails, after the wait, with sled's
/// "could not acquire lock" error.
fn open_sled(path: &Path, segment_bytes: usize) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    let segment_bytes = reserve::existing_segment_bytes(path).unwrap_or(segment_bytes);
    loop {
        // sled's own background flush stays on (every 500 ms): it bounds how long writes that
        // do not wait for durability (the committed log id) stay volatile.
        let config = sled::Config::new()
            .path(path)
            .segment_size(segment_bytes)
            .flush_every_ms(Some(500));
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl LogDb {
    /// Opens (creating if needed) the log db in directory `path` and starts its flusher.
    ///
    /// Must be called inside a tokio runtime. Blocks while sled recovers its log.
    pub fn open(path: impl AsRef<Path>) -> Result<LogDb, LogStoreError> {
        LogDb::open_with(path, LogDbOptions::default())
    }

    /// [`LogDb::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: LogDbOptions) -> Result<LogDb, LogStoreError> {
        let path = path.as_ref().to_path_buf();
        // `close` waits for the flusher thread on the blocking pool.
        tokio::runtime::Handle::try_current().map_err(|_| LogStoreError::NoRuntime { path: path.clone() })?;
        let open_error = |source| LogStoreError::Open {
            path: path.clone(),
            source,
        };

        let db = open_sled(&path, options.segment_bytes).map_err(open_error)?;
        match db.get(codec::FORMAT_KEY).map_err(open_error)? {
            Some(found) if found.as_ref() == codec::FORMAT => {}
            Some(found) => {
                return Err(LogStoreError::Format {
                    path,
                    found: found.to_vec(),
                    expected: codec::FORMAT,
                });
            }
            None => {
                db.insert(codec::FORMAT_KEY, codec::FORMAT).map_err(open_error)?;
            }
        }

        // sled 0.34 ends a flush with `sync_file_range`, which neither flushes the disk's write
        // cache nor persists the file size; an `fdatasync` of its data file after each flush
        // does both. Any handle to the inode will do.
        let data_file = File::open(path.join("db")).map_err(|e| open_error(sled::Error::Io(e)))?;

        let (flusher, thread) = Flusher::start(path.clone(), db.clone(), data_file)
            .map_err(|e| open_error(sled::Error::Io(e)))?;
        let (reserve, reserve_thread) = LogReserve::start(db.clone(), options.reserve_bytes)
            .map_err(|e| open_error(sled::Error::Io(e)))?;

        Ok(LogDb {
            inner: Arc::new(LogDbInner {
                path,
                db,
                flusher,
                flusher_thread: Mutex::new(Some(thread)),
                reserve,
                reserve_thread: Mutex::new(Some(reserve_thread)),
                groups: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The directory this db lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The log store of group `group_id`, created empty if the group has no log yet. Every call
    /// for the same group returns a handle to the same store.
    pub fn group(&self, group_id: GroupId) -> Result<GroupLogStore, LogStoreError> {
        let mut groups = self.inner.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = groups.get(&group_id) {
            return Ok(store.clone());
        }
        let open_tree = |name: String| {
            self.inner
                .db
                .open_tree(&name)
                .map_err(|source| LogStoreError::Sled {
                    group_id,
                    action: format!("open tree {name}"),
                    source,
                })
        };
        let entries = open_tree(codec::entries_tree_name(group_id))?;
        let meta = open_tree(codec::meta_tree_name(group_id))?;
        let store = GroupLogStore::new(group_id, entries, meta, self.inner.flusher.clone());
        groups.insert(group_id, store.clone());
        Ok(store)
    }

    /// Counters since the db was opened.
    pub fn stats(&self) -> LogDbStats {
        let counters = &self.inner.flusher.counters;
        LogDbStats {
            append_calls: counters.append_calls.load(Ordering::Relaxed),
            entries_appended: counters.entries_appended.load(Ordering::Relaxed),
            flush_requests: counters.flush_requests.load(Ordering::Relaxed),
            fsyncs: counters.fsyncs.load(Ordering::Relaxed),
            largest_batch: counters.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// The log's reserve of written-ahead space as of its last top-up ([`reserve`]): short when
    /// the disk is full.
    pub fn reserve(&self) -> ReserveStatus {
        self.inner.reserve.status()
    }

    /// Makes every write made so far durable, including the ones that do not wait for it
    /// (`save_committed`). For orderly shutdown. Errors name the pseudo group `GroupId::MAX`.
    pub async fn sync(&self) -> Result<(), LogStoreError> {
        self.inner.flusher.flush(GroupId::MAX, LogWrite::Sync).await
    }

    /// Flushes what is queued, stops the flusher and waits for it to let go of the database.
    /// Writes attempted afterwards fail with [`LogStoreError::Closed`]. The files are released
    /// once every [`GroupLogStore`] handle is dropped too.
    pub async fn close(self) {
        let thread = self
            .inner
            .flusher_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.inner.flusher.close();
        self.inner.reserve.stop();
        let reserve_thread = self
            .inner
            .reserve_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reserve_thread) = reserve_thread {
            let _ = tokio::task::spawn_blocking(move || reserve_thread.join()).await;
        }
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!(path = %self.inner.path.display(), "log db flusher thread failed");
            }
        }
    }
}
