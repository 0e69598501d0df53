//! [`Application`]: what a replicated application provides for one Raft group. The raft crate
//! wraps it into openraft's `RaftStateMachine`; the application never sees openraft types.
//!
//! Contract:
//! - Entries arrive in log order, each exactly once per process lifetime; after a restart the
//!   application reports what it has (`applied_state`) and receives the entries after that.
//!   Re-delivery of an already applied position must be a no-op.
//! - `consensus_meta` is an opaque blob (the raft crate's encoding of the last applied log id and
//!   membership). The application must store it atomically with the state it accompanies, give
//!   back the latest one from `applied_state`, and carry it inside snapshots, so that a state
//!   restored from disk or from a snapshot knows its consensus position without the log.
//! - Errors are fatal for the group: openraft stops it. Expected, deterministic refusals of a
//!   request belong in the response bytes. One exception: an error of kind
//!   [`io::ErrorKind::StorageFull`] (see [`is_out_of_space`]) from `apply`, a snapshot or a flush
//!   means the disk is full and a retry may succeed; the raft crate waits and retries the same
//!   call (the same entry, in the same state: a failed `apply` must leave what it applied so far
//!   such that applying the entry again finishes it exactly once) instead of stopping the group.
//! - Snapshots are files in the application's own stream format; the raft crate only moves them.

use std::io;

use crate::{LogPosition, Request, SnapshotFile};

/// Whether an error means the disk (or a quota) is full: the call may be retried later.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122)) // ENOSPC, EDQUOT on Linux
}

/// How long the raft crate waits before retrying a call that failed for want of space.
pub const OUT_OF_SPACE_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// A snapshot the application has built or installed.
#[derive(Debug)]
pub struct SnapshotInfo {
    pub file: SnapshotFile,
    /// The last position the snapshot covers.
    pub position: LogPosition,
    /// The `consensus_meta` stored with that position.
    pub consensus_meta: Vec<u8>,
}

/// What [`Application::begin_snapshot`] hands back.
pub enum SnapshotJob {
    /// Built entirely with the application locked.
    Done(SnapshotInfo),
    /// The state is captured; the rest (writing out, syncing) runs on the blocking pool
    /// without the application's lock, so the group goes on applying entries meanwhile. It
    /// returns the current snapshot once done: its own, or a newer one that got there first.
    Pending(Box<dyn FnOnce() -> io::Result<SnapshotInfo> + Send>),
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotJob::Done(info) => f.debug_tuple("Done").field(info).finish(),
            SnapshotJob::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// The last part of a [`FlushJob::Pending`]: runs with the application locked again.
pub type FlushFinish<A> = Box<dyn FnOnce(&mut A) -> io::Result<()> + Send>;

/// What [`Application::begin_periodic_flush`] hands back.
pub enum FlushJob<A> {
    /// Nothing left to do (done with the application locked, or not due).
    Done,
    /// The slow part (the syncs): runs on the blocking pool without the application's lock, so
    /// the group goes on applying meanwhile. It returns the last part, which the raft crate
    /// runs with the application locked again (deciding whether what was synced is still the
    /// whole state).
    Pending(Box<dyn FnOnce() -> io::Result<FlushFinish<A>> + Send>),
}

impl<A> std::fmt::Debug for FlushJob<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushJob::Done => f.write_str("Done"),
            FlushJob::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// One group's replicated application state.
pub trait Application: Send + 'static {
    /// The last applied position and the consensus metadata stored with it; `None` if nothing
    /// has been applied.
    fn applied_state(&self) -> Option<(LogPosition, Vec<u8>)>;

    /// Applies the requests of the committed entry at `position`, in order, storing
    /// `consensus_meta` with the result, and returns one response per request (same order) to
    /// hand to their proposers. An entry carries one request or, when its leader coalesced the
    /// requests waiting for the group, several; they share the position. `requests` is never
    /// empty. Re-delivery of an applied position returns any responses (nobody waits for them).
    fn apply(
        &mut self,
        position: LogPosition,
        consensus_meta: &[u8],
        requests: &[Request],
    ) -> io::Result<Vec<Vec<u8>>>;

    /// Advances over a committed entry that carries no request (blank or membership).
    fn apply_blank(&mut self, position: LogPosition, consensus_meta: &[u8]) -> io::Result<()>;

    /// Makes everything applied so far durable. Called at shutdown (and by the default
    /// [`periodic_flush`](Self::periodic_flush)).
    fn flush(&mut self) -> io::Result<()>;

    /// Called for every group every `app_flush_interval`: flushes when the application judges
    /// it due. The default flushes every time.
    fn periodic_flush(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// How the raft crate runs the periodic flush: called with the application locked;
    /// whatever [`FlushJob::Pending`] leaves runs without the lock, and its last part with the
    /// lock again. The default does it all here ([`periodic_flush`](Self::periodic_flush)).
    fn begin_periodic_flush(&mut self) -> io::Result<FlushJob<Self>>
    where
        Self: Sized,
    {
        self.periodic_flush().map(|()| FlushJob::Done)
    }

    /// Writes a snapshot of the current state and makes it the current snapshot.
    fn build_snapshot(&mut self) -> io::Result<SnapshotInfo>;

    /// How the raft crate builds a snapshot: called with the application locked; whatever
    /// [`SnapshotJob::Pending`] leaves runs without the lock. The default builds it all here
    /// ([`build_snapshot`](Self::build_snapshot)). A pending job must never replace the
    /// current snapshot with an older state: one installed or begun after it wins.
    fn begin_snapshot(&mut self) -> io::Result<SnapshotJob> {
        self.build_snapshot().map(SnapshotJob::Done)
    }

    /// The current snapshot (the last one built or installed), if any.
    fn current_snapshot(&self) -> io::Result<Option<SnapshotInfo>>;

    /// Replaces the whole state with `snapshot` (which the application checks), and makes it
    /// the current snapshot. Returns the position it covers.
    fn install_snapshot(&mut self, snapshot: &SnapshotFile) -> io::Result<LogPosition>;
}
