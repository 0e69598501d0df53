//! [`LogReserve`]: keeps the log file written ahead of the segments sled uses, so the log never
//! meets a full disk on its write path.
//!
//! sled treats a failed write of its log buffers as fatal: it records a global error and every
//! later operation of that database fails until it is reopened (the failed group stores would
//! then stop their Raft groups). The vendored sled grows its file one segment at a time and,
//! with [`sled::Db::reserve_log_space`], lets a caller write the zeros of the next segments ahead
//! of time (raft/vendor/README.md). A thread of the log db calls it every
//! [`RESERVE_INTERVAL`]: while it succeeds, sled's writes land in blocks that already exist and
//! cannot fail for want of space; when the disk fills, this call fails first, while sled still
//! has the reserve for the writes in flight, and [`LogReserve::status`] says so. The node raises
//! its storage alarm on it (stops taking new entries) and clears it when a later call succeeds.
//!
//! New log dbs use [`SEGMENT_BYTES`] segments, large enough that sled keeps every node of its
//! trees inline in the log file: with sled's default 512 KiB segments, a value over 128 KiB —
//! and a leaf node holding a few entries of 16 KiB — goes to a file of its own under `blobs/`,
//! a new allocation on every such write, which no reserve could cover.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Segment size of a new log db: sled writes a node to a blob file when it is larger than a
/// quarter of a segment; leaf nodes split past 16 entries and an entry is at most
/// [`crate::type_config::MAX_BATCH_BYTES`] plus its header, so leaves stay far below 2 MiB.
pub const SEGMENT_BYTES: usize = 8 << 20;

/// What the log keeps written ahead of its segments in use, by default: two segments.
pub const DEFAULT_RESERVE_BYTES: u64 = 16 << 20;

/// How often the reserve is topped up.
pub const RESERVE_INTERVAL: Duration = Duration::from_millis(100);

const _: () = assert!((crate::type_config::MAX_BATCH_BYTES + 4096) * 17 < SEGMENT_BYTES / 4);

/// The reserve as of the last top-up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReserveStatus {
    /// Bytes written ahead of the segments in use.
    pub ahead_bytes: u64,
    /// What the keeper aims for.
    pub target_bytes: u64,
    /// Why the last top-up fell short (e.g. "No space left on device"), if it did.
    pub error: Option<String>,
}

impl ReserveStatus {
    /// True when the log no longer has its full reserve: new entries should wait.
    pub fn is_short(&self) -> bool {
        self.error.is_some() || self.ahead_bytes < self.target_bytes
    }
}

/// The keeper's shared state: the last status, and the stop flag its thread waits on.
#[derive(Debug)]
pub(crate) struct LogReserve {
    status: Mutex<ReserveStatus>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl LogReserve {
    /// Starts a thread that keeps `target_bytes` written ahead in `db` until [`LogReserve::stop`].
    /// The first top-up runs before this returns, so a db opened on a full disk says so at once.
    pub(crate) fn start(
        db: sled::Db,
        target_bytes: u64,
    ) -> std::io::Result<(Arc<LogReserve>, std::thread::JoinHandle<()>)> {
        let reserve = Arc::new(LogReserve {
            status: Mutex::new(ReserveStatus {
                target_bytes,
                ..ReserveStatus::default()
            }),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        reserve.top_up(&db);
        let keeper = reserve.clone();
        let thread = std::thread::Builder::new()
            .name("dovetail-log-reserve".into())
            .spawn(move || {
                let mut stop = keeper.stop.lock().unwrap_or_else(PoisonError::into_inner);
                while !*stop {
                    stop = keeper
                        .wake
                        .wait_timeout(stop, RESERVE_INTERVAL)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    if !*stop {
                        drop(stop);
                        keeper.top_up(&db);
                        stop = keeper.stop.lock().unwrap_or_else(PoisonError::into_inner);
                    }
                }
            })?;
        Ok((reserve, thread))
    }

    fn top_up(&self, db: &sled::Db) {
        let target_bytes = self.status().target_bytes;
        let result = db.reserve_log_space(target_bytes);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let was_short = status.is_short();
        match result {
            Ok(ahead_bytes) => {
                status.ahead_bytes = ahead_bytes;
                status.error = None;
                if was_short && !status.is_short() {
                    tracing::info!(ahead_bytes, "log reserve restored");
                }
            }
            Err(e) => {
                if !was_short {
                    tracing::warn!(error = %e, target_bytes, "log reserve fell short: the disk is full");
                }
                status.error = Some(e.to_string());
            }
        }
    }

    pub(crate) fn status(&self) -> ReserveStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn stop(&self) {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// The segment size of the sled db at `path`, read from its `conf` file (sled refuses to open a
/// db with another one), or `None` for a new db.
pub(crate) fn existing_segment_bytes(path: &Path) -> Option<usize> {
    // Text lines followed by a CRC32 of them (not UTF-8).
    std::fs::read(path.join("conf")).ok().and_then(|conf| {
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|line| line.strip_prefix("segment_size:"))
            .and_then(|size| size.trim().parse().ok())
    })
}
