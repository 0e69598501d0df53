//! [`LogDb`]: a node's single sled database and its group-commit flusher.
//!
//! Every group's log lives in the one `sled::Db` of the node. sled keeps all trees in one log,
//! so one `flush()` makes every write made before it durable, whichever group made it. The
//! flusher exploits that: groups enqueue a flush request after writing to sled, and the
//! flusher, a thread of its own, takes *everything* queued, performs one flush for all of it,
//! then completes every waiter. While one flush runs, the next batch accumulates, so the batch
//! size adapts to the disk's latency: N busy groups cost far fewer than N fsyncs.
//!
//! Ordering argument: a request is enqueued only after its sled write returned, and a flush
//! covers every write that happened before it started; the flusher starts a flush only after it
//! received the requests it completes. Requests are completed in the order they were queued.
//!
//! A thread rather than a tokio task that hands each flush to the blocking pool: two thread
//! hand-offs less per flush. Measured with `scripts/bench-vs-etcd.sh --skip-etcd --connections
//! "1 64"`, two alternating runs each: one connection 697-701 appends/s, p50 1.29-1.33 ms and a
//! mean flush of 0.41-0.42 ms, against 635-637 appends/s, p50 1.44-1.47 ms, 0.57-0.60 ms.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};

use super::codec;
use super::error::LogStoreError;
use super::group_log_store::GroupLogStore;
use crate::metrics::{LOG_APPEND_SECONDS, LOG_FSYNC_BATCH_REQUESTS, LOG_FSYNC_SECONDS};
use crate::type_config::TypeConfig;
use crate::GroupId;

/// Counters of the log db since it was opened; a snapshot of them is [`LogDbStats`].
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

#[derive(Debug, Default)]
struct Counters {
    append_calls: AtomicU64,
    entries_appended: AtomicU64,
    flush_requests: AtomicU64,
    fsyncs: AtomicU64,
    largest_batch: AtomicU64,
}

/// The write a flush request makes durable; named in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogWrite {
    Append { first: u64, last: u64 },
    Vote,
    Truncate { after: Option<u64> },
    Purge { upto: u64 },
    Sync,
}

impl fmt::Display for LogWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogWrite::Append { first, last } => write!(f, "append of entries {first}..={last}"),
            LogWrite::Vote => write!(f, "save vote"),
            LogWrite::Truncate { after: Some(index) } => write!(f, "truncate after {index}"),
            LogWrite::Truncate { after: None } => write!(f, "truncate of the whole log"),
            LogWrite::Purge { upto } => write!(f, "purge up to {upto}"),
            LogWrite::Sync => write!(f, "sync"),
        }
    }
}

/// Who waits for a flush: openraft's append callback, or an async caller.
pub(crate) enum Waiter {
    Callback(IOFlushed<TypeConfig>),
    Reply(oneshot::Sender<Result<(), LogStoreError>>),
}

/// One write waiting to be made durable. If it is dropped uncompleted (the flusher stopped),
/// the waiter is told the write was not made durable, so openraft never waits forever.
pub(crate) struct FlushRequest {
    group_id: GroupId,
    write: LogWrite,
    /// When the caller began the write (before it went to sled): the start of its latency.
    started: Instant,
    waiter: Option<Waiter>,
}

impl FlushRequest {
    fn complete(mut self, result: Result<(), Arc<io::Error>>) {
        if let (LogWrite::Append { .. }, Ok(())) = (self.write, &result) {
            metrics::histogram!(LOG_APPEND_SECONDS).record(self.started.elapsed());
        }
        let result = result.map_err(|source| LogStoreError::Flush {
            group_id: self.group_id,
            action: self.write.to_string(),
            source,
        });
        if let Some(waiter) = self.waiter.take() {
            deliver(waiter, result);
        }
    }
}

impl Drop for FlushRequest {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            let closed = LogStoreError::Closed {
                group_id: self.group_id,
                action: self.write.to_string(),
            };
            deliver(waiter, Err(closed));
        }
    }
}

fn deliver(waiter: Waiter, result: Result<(), LogStoreError>) {
    match waiter {
        Waiter::Callback(callback) => callback.io_completed(result.map_err(io::Error::from)),
        // The caller may have given up waiting (its future was dropped); nothing to tell then.
        Waiter::Reply(reply) => reply.send(result).unwrap_or(()),
    }
}

enum FlusherMessage {
    Flush(FlushRequest),
    /// Flush what is queued, refuse everything after, and stop.
    Close,
}

/// The enqueue side of the flusher, shared by the [`LogDb`] and every group store.
#[derive(Debug)]
pub(crate) struct Flusher {
    queue: mpsc::UnboundedSender<FlusherMessage>,
    counters: Counters,
}

impl fmt::Debug for FlusherMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlusherMessage::Flush(request) => write!(f, "Flush({}, {})", request.group_id, request.write),
            FlusherMessage::Close => write!(f, "Close"),
        }
    }
}

impl Flusher {
    /// Queues a durability request for a write that has already been applied to sled.
    pub(crate) fn request(&self, group_id: GroupId, write: LogWrite, waiter: Waiter) {
        self.request_since(Instant::now(), group_id, write, waiter);
    }

    /// [`Flusher::request`] for a write the caller began at `started`.
    pub(crate) fn request_since(&self, started: Instant, group_id: GroupId, write: LogWrite, waiter: Waiter) {
        self.counters.flush_requests.fetch_add(1, Ordering::Relaxed);
        let request = FlushRequest {
            group_id,
            write,
            started,
            waiter: Some(waiter),
        };
        // If the flusher is gone, the returned message is dropped here and its Drop tells the
        // waiter the write was not made durable.
        let _ = self.queue.send(FlusherMessage::Flush(request));
    }

    /// Queues a durability request and waits until it is served.
    pub(crate) async fn flush(&self, group_id: GroupId, write: LogWrite) -> Result<(), LogStoreError> {
        let (reply, done) = oneshot::channel();
        self.request(group_id, write, Waiter::Reply(reply));
        match done.await {
            Ok(result) => result,
            Err(_) => Err(LogStoreError::Closed {
                group_id,
                action: write.to_string(),
            }),
        }
    }

    pub(crate) fn count_append(&self, entries: u64) {
        self.counters.append_calls.fetch_add(1, Ordering::Relaxed);
        self.counters
            .entries_appended
            .fetch_add(entries, Ordering::Relaxed);
    }
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

/// Opens the sled database at `path`, waiting up to [`LOCK_WAIT`] for its file lock.
///
/// sled 0.34 releases the lock only when the last of its background threads (flusher, IO-buffer
/// writers) lets go of the file, which can be shortly after the `Db` handle was dropped; a
/// close-then-reopen in one process would otherwise fail at random. A lock that stays held
/// (another live process on the same directory) still fails, after the wait, with sled's
/// "could not acquire lock" error.
fn open_sled(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // sled's own background flush stays on (every 500 ms): it bounds how long writes that
        // do not wait for durability (the committed log id) stay volatile.
        match sled::Config::new().path(path).flush_every_ms(Some(500)).open() {
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
        let path = path.as_ref().to_path_buf();
        // `close` waits for the flusher thread on the blocking pool.
        tokio::runtime::Handle::try_current().map_err(|_| LogStoreError::NoRuntime { path: path.clone() })?;
        let open_error = |source| LogStoreError::Open {
            path: path.clone(),
            source,
        };

        let db = open_sled(&path).map_err(open_error)?;
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

        let (queue, requests) = mpsc::unbounded_channel();
        let flusher = Arc::new(Flusher {
            queue,
            counters: Counters::default(),
        });
        let thread = {
            // Weak: the flusher holds the queue's sender, and the thread must see the queue
            // close (and let go of the database) once every handle is gone, close or not.
            let (path, db, flusher) = (path.clone(), db.clone(), Arc::downgrade(&flusher));
            std::thread::Builder::new()
                .name("dovetail-log-flush".to_string())
                .spawn(move || run_flusher(path, db, data_file, requests, flusher))
                .map_err(|e| open_error(sled::Error::Io(e)))?
        };

        Ok(LogDb {
            inner: Arc::new(LogDbInner {
                path,
                db,
                flusher,
                flusher_thread: Mutex::new(Some(thread)),
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
        let _ = self.inner.flusher.queue.send(FlusherMessage::Close);
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!(path = %self.inner.path.display(), "log db flusher thread failed");
            }
        }
    }
}

/// The flusher, on a thread of its own: take everything queued, make it durable with one flush,
/// complete it all. A dedicated thread rather than a task that hands each flush to the blocking
/// pool: one thread hand-off less on both sides of every flush.
fn run_flusher(
    path: PathBuf,
    db: sled::Db,
    data_file: File,
    mut requests: mpsc::UnboundedReceiver<FlusherMessage>,
    flusher: std::sync::Weak<Flusher>,
) {
    let mut batch: Vec<FlushRequest> = Vec::new();
    let mut closing = false;
    while !closing {
        // Wait for work, then take whatever else is already queued.
        match requests.blocking_recv() {
            None => break,
            Some(FlusherMessage::Close) => closing = true,
            Some(FlusherMessage::Flush(request)) => batch.push(request),
        }
        if closing {
            // Refuse new work, but serve what was queued before the close.
            requests.close();
        }
        while let Ok(message) = requests.try_recv() {
            match message {
                FlusherMessage::Flush(request) => batch.push(request),
                FlusherMessage::Close => {
                    closing = true;
                    requests.close();
                }
            }
        }
        if batch.is_empty() {
            continue;
        }

        let flush_started = Instant::now();
        let result = db
            .flush()
            .map_err(io::Error::from)
            .and_then(|_| data_file.sync_data())
            .map_err(Arc::new);
        metrics::histogram!(LOG_FSYNC_SECONDS).record(flush_started.elapsed());
        metrics::histogram!(LOG_FSYNC_BATCH_REQUESTS).record(batch.len() as f64);
        if let Err(error) = &result {
            tracing::error!(path = %path.display(), %error, "log db fsync failed");
        }

        if let Some(flusher) = flusher.upgrade() {
            let counters = &flusher.counters;
            counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            counters
                .largest_batch
                .fetch_max(batch.len() as u64, Ordering::Relaxed);
        }
        for request in batch.drain(..) {
            request.complete(result.clone());
        }
    }
}
