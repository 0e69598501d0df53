//! [`Flusher`]: the group-commit flusher of a node's log db.
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
//! **Bound.** At most [`MAX_QUEUED_REQUESTS`] durability requests are queued or being served at
//! once. The flusher must never refuse one (every log write must eventually be made durable, or
//! openraft stops the group), so the bound is backpressure instead: a producer that finds no
//! room waits for it in [`Flusher::request`] before queuing, and with it that group's log IO
//! (openraft awaits `append`), hence its replication and proposals. The wait ends as soon as the
//! running flush completes its batch.
//!
//! A thread rather than a tokio task that hands each flush to the blocking pool: two thread
//! hand-offs less per flush. Measured with `scripts/bench-vs-etcd.sh --skip-etcd --connections
//! "1 64"`, two alternating runs each: one connection 697-701 appends/s, p50 1.29-1.33 ms and a
//! mean flush of 0.41-0.42 ms, against 635-637 appends/s, p50 1.44-1.47 ms, 0.57-0.60 ms.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::error::LogStoreError;
use crate::metrics::{LOG_APPEND_SECONDS, LOG_FSYNC_BATCH_REQUESTS, LOG_FSYNC_SECONDS};
use crate::type_config::TypeConfig;
use crate::GroupId;

/// Durability requests queued or in the batch being flushed, at most. Far above what a node
/// needs (each group's openraft has a few log writes outstanding at a time; a batch is usually
/// tens of requests), so the wait is for a disk that stopped keeping up, not for load.
pub const MAX_QUEUED_REQUESTS: usize = 4096;

/// The flusher's counters since the log db was opened; a snapshot of them is
/// [`LogDbStats`](super::LogDbStats), which documents each.
///
/// Invariant: `fsyncs <= flush_requests`, and every request is counted as completed by exactly
/// one fsync (or failed by a close).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) append_calls: AtomicU64,
    pub(super) entries_appended: AtomicU64,
    pub(super) flush_requests: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) largest_batch: AtomicU64,
}

/// The write a flush request makes durable; named in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogWrite {
    Append { first: u64, last: u64 },
    Vote,
    Truncate { after: Option<u64> },
    Purge { upto: u64 },
    Seed { upto: u64 },
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
            // A new node's log seeded from a backup (`crate::restore`).
            LogWrite::Seed { upto } => write!(f, "seed from a backup up to {upto}"),
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
struct FlushRequest {
    group_id: GroupId,
    write: LogWrite,
    /// When the caller began the write (before it went to sled): the start of its latency.
    started: Instant,
    waiter: Option<Waiter>,
    /// Its room in the queue, given back when the request is completed (or dropped).
    _slot: OwnedSemaphorePermit,
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

impl fmt::Debug for FlusherMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlusherMessage::Flush(request) => write!(f, "Flush({}, {})", request.group_id, request.write),
            FlusherMessage::Close => write!(f, "Close"),
        }
    }
}

/// The enqueue side of the flusher, shared by the [`LogDb`](super::LogDb) and every group store.
#[derive(Debug)]
pub(crate) struct Flusher {
    /// Unbounded as a channel; [`Flusher::room`] bounds the requests in it (a close is never
    /// held up by it).
    queue: mpsc::UnboundedSender<FlusherMessage>,
    /// [`MAX_QUEUED_REQUESTS`] permits; a request holds one from before it is queued until it
    /// is completed.
    room: Arc<Semaphore>,
    pub(super) counters: Counters,
}

impl Flusher {
    /// Starts the flusher thread of the sled database `db` at `path`; `data_file` is a handle
    /// on sled's data file, synced after each flush. Returns the enqueue side and the thread.
    pub(super) fn start(
        path: PathBuf,
        db: sled::Db,
        data_file: File,
    ) -> io::Result<(Arc<Flusher>, JoinHandle<()>)> {
        let (queue, requests) = mpsc::unbounded_channel();
        let flusher = Arc::new(Flusher::new(queue, MAX_QUEUED_REQUESTS));
        // Weak: the flusher holds the queue's sender, and the thread must see the queue close
        // (and let go of the database) once every handle is gone, close or not.
        let weak = Arc::downgrade(&flusher);
        let thread = std::thread::Builder::new()
            .name("dovetail-log-flush".to_string())
            .spawn(move || run_flusher(path, db, data_file, requests, weak))?;
        Ok((flusher, thread))
    }

    fn new(queue: mpsc::UnboundedSender<FlusherMessage>, limit: usize) -> Flusher {
        Flusher {
            queue,
            room: Arc::new(Semaphore::new(limit)),
            counters: Counters::default(),
        }
    }

    /// Queues a durability request for a write that has already been applied to sled, once
    /// there is room (see the module docs: the caller waits, it is never refused).
    pub(crate) async fn request(&self, group_id: GroupId, write: LogWrite, waiter: Waiter) {
        self.request_since(Instant::now(), group_id, write, waiter).await;
    }

    /// [`Flusher::request`] for a write the caller began at `started`.
    pub(crate) async fn request_since(
        &self,
        started: Instant,
        group_id: GroupId,
        write: LogWrite,
        waiter: Waiter,
    ) {
        // The semaphore is never closed: `acquire_owned` only waits.
        let slot = self
            .room
            .clone()
            .acquire_owned()
            .await
            .expect("the flusher's room is never closed");
        self.counters.flush_requests.fetch_add(1, Ordering::Relaxed);
        let request = FlushRequest {
            group_id,
            write,
            started,
            waiter: Some(waiter),
            _slot: slot,
        };
        // If the flusher is gone, the returned message is dropped here and its Drop tells the
        // waiter the write was not made durable.
        let _ = self.queue.send(FlusherMessage::Flush(request));
    }

    /// Queues a durability request and waits until it is served.
    pub(crate) async fn flush(&self, group_id: GroupId, write: LogWrite) -> Result<(), LogStoreError> {
        let (reply, done) = oneshot::channel();
        self.request(group_id, write, Waiter::Reply(reply)).await;
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

    /// Asks the flusher thread to flush what is queued, refuse everything after, and stop.
    pub(super) fn close(&self) {
        let _ = self.queue.send(FlusherMessage::Close);
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
    flusher: Weak<Flusher>,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(flusher: &Flusher, group_id: GroupId) -> impl std::future::Future<Output = ()> + '_ {
        let (reply, _done) = oneshot::channel();
        flusher.request(group_id, LogWrite::Sync, Waiter::Reply(reply))
    }

    /// With room for two requests, a third producer waits (it is not refused, and nothing is
    /// queued for it) until the flusher completes one of the queued two.
    #[tokio::test]
    async fn a_producer_waits_for_room_instead_of_being_refused() {
        let (queue, mut requests) = mpsc::unbounded_channel();
        let flusher = Flusher::new(queue, 2);
        request(&flusher, 1).await;
        request(&flusher, 2).await;
        let mut third = std::pin::pin!(request(&flusher, 3));
        let waited = tokio::time::timeout(Duration::from_millis(100), third.as_mut()).await;
        assert!(waited.is_err(), "a third request was queued beyond the bound");
        assert_eq!(flusher.counters.flush_requests.load(Ordering::Relaxed), 2);

        // The flusher thread's part: take the first request and complete it.
        let Ok(FlusherMessage::Flush(first)) = requests.try_recv() else {
            panic!("the first request is queued");
        };
        assert_eq!(first.group_id, 1);
        first.complete(Ok(()));
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the waiting producer was let in once room was made");
        let queued: Vec<GroupId> = std::iter::from_fn(|| match requests.try_recv() {
            Ok(FlusherMessage::Flush(request)) => Some(request.group_id),
            _ => None,
        })
        .collect();
        assert_eq!(queued, [2, 3]);
    }
}
