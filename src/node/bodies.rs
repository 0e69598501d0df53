//! `NodeBodies`: a node's message bodies beside its groups (ARCHITECTURE.md §3, "A delivery").
//!
//! - **A delivery's body** ([`NodeBodies::deliver`]) is stored here and pushed to as many other
//!   voters of the user's group as a majority needs (a small body: both at once; hedged to
//!   another voter when one fails or is slow); the call returns when a majority of the group's
//!   voters (this node counted when it is one) hold it durably — only then may the index entry
//!   that names it be proposed, so an acknowledged delivery survives the loss of any minority.
//! - **The other members** get it from the background lane: a push that fails, and every member
//!   not pushed to, puts the body in that peer's **backlog**, drained in the background on
//!   connections of its own ([`BodyTransfer`]), so it never delays a delivery, a reader or Raft
//!   traffic. A backlog holds ids, not bytes (the bytes are in the store): in memory, then on
//!   disk, then a mark for a full body resync (`node::body_backlog`).
//! - **A read** ([`NodeBodies::open`]) checks the stored copy; a missing or damaged one (moved
//!   aside by the check) is fetched at once from a member that has it, on the urgent
//!   connections, checked, stored and served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail_raft::{NodeId, ProposeError, RaftNode};
use hyper::body::{Body, Bytes};
use serde::Serialize;

use super::body_backlog::{BacklogStatus, Backlogs, Enqueued, Job};
use super::body_transfer::{BodyTransfer, PushSource};
use super::mail_group::MailGroup;
use crate::bodies::stream::{put_stream, read_head, Head};
use crate::bodies::{BodyError, BodyId, BodyStore, Stored};

/// Bodies up to this size are read whole before they are stored, so this node's store and the
/// peers' take them at the same time (a larger one streams into this node's store first).
pub const SMALL_BODY: usize = 256 << 10;

/// A push unanswered for this many times the member's usual time starts one to another member.
const HEDGE_FACTOR: u32 = 4;
const HEDGE_MIN: Duration = Duration::from_millis(20);
const HEDGE_MAX: Duration = Duration::from_millis(500);
/// The hedge delay for a member never pushed to yet.
const HEDGE_UNKNOWN: Duration = Duration::from_millis(100);
/// A member whose last push failed this recently is tried after the others.
const FAILED_LATELY: Duration = Duration::from_secs(10);

/// How pushes to one member went lately.
#[derive(Debug, Clone, Copy, Default)]
struct PeerScore {
    /// Mean time of a successful push, in microseconds (0: none yet).
    micros: u64,
    failed_at: Option<Instant>,
}

impl PeerScore {
    fn failed_lately(&self, now: Instant) -> bool {
        self.failed_at
            .is_some_and(|at| now.duration_since(at) < FAILED_LATELY)
    }
}

/// How long one background push may take before the backlog tries the next.
const BACKGROUND_PUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the backlog waits before trying a peer again after a failed push.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Histogram: seconds a successful fetch on a miss took (`node::body_metrics` describes it).
pub const BODY_FETCH_SECONDS: &str = "dovetail_body_fetch_seconds";

/// Why a body could not be stored, replicated or read.
#[derive(Debug, thiserror::Error)]
pub enum BodiesError {
    #[error(transparent)]
    Store(#[from] BodyError),
    /// Too few voters of the group took the body before the deadline.
    #[error("group {group}: body {id} is held by {held} of the {needed} voters a delivery needs before the deadline ({reason})")]
    NoQuorum {
        group: u32,
        id: BodyId,
        held: usize,
        needed: usize,
        reason: String,
    },
    #[error(transparent)]
    Raft(#[from] ProposeError),
    /// No member had a good copy of a body this node lacks.
    #[error("body {id}: no member has a good copy ({reason})")]
    Unavailable { id: BodyId, reason: String },
}

/// Counters for `/admin/status` and `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    fetch_micros: AtomicU64,
    background_pushed: AtomicU64,
    backlog_overflows: AtomicU64,
    resyncs_requested: AtomicU64,
    background_fetched: AtomicU64,
    sweeps: AtomicU64,
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    referenced: AtomicU64,
    missing: AtomicU64,
    collected: AtomicU64,
    collected_bytes: AtomicU64,
}

/// A node's bodies: the store and how bodies move between members.
#[derive(Clone)]
pub struct NodeBodies {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<BodyStore>,
    raft: RaftNode<MailGroup>,
    urgent: BodyTransfer,
    background: BodyTransfer,
    max_message_bytes: u64,
    backlogs: Backlogs,
    wake: tokio::sync::Notify,
    /// Asks the body sweep (`node::body_sweep`) for a pass now.
    sweep: tokio::sync::Notify,
    counters: Counters,
    scores: std::sync::Mutex<std::collections::HashMap<NodeId, PeerScore>>,
}

/// The node's bodies as `/admin/status` shows them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct BodiesStatus {
    pub damaged: u64,
    pub fetches: u64,
    pub fetch_failures: u64,
    /// Mean time of a successful fetch on a miss, in microseconds.
    pub fetch_mean_micros: u64,
    pub background_pushed: u64,
    pub backlog_overflows: u64,
    /// Full resyncs this node asked of peers whose backlog overflowed.
    pub resyncs_requested: u64,
    /// Bodies the sweep fetched in the background (missing referenced ones).
    pub background_fetched: u64,
    /// As of the last sweep: passes run, bodies (and bytes) in the store, bodies the applied
    /// index references, referenced bodies missing here (after the sweep's fetches), and the
    /// bodies (bytes) collected in all passes.
    pub sweeps: u64,
    pub stored: u64,
    pub stored_bytes: u64,
    pub referenced: u64,
    pub missing: u64,
    pub collected: u64,
    pub collected_bytes: u64,
    pub backlogs: Vec<BacklogStatus>,
}

impl NodeBodies {
    pub fn new(
        store: Arc<BodyStore>,
        raft: RaftNode<MailGroup>,
        urgent: BodyTransfer,
        background: BodyTransfer,
        max_message_bytes: u64,
        backlogs: Backlogs,
    ) -> NodeBodies {
        NodeBodies {
            inner: Arc::new(Inner {
                store,
                raft,
                urgent,
                background,
                max_message_bytes,
                backlogs,
                wake: tokio::sync::Notify::new(),
                sweep: tokio::sync::Notify::new(),
                counters: Counters::default(),
                scores: Default::default(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<BodyStore> {
        &self.inner.store
    }

    pub fn max_message_bytes(&self) -> u64 {
        self.inner.max_message_bytes
    }

    /// Stores the body `body` yields here and on a majority of `group`'s voters before
    /// `deadline`. A body of at most [`SMALL_BODY`] bytes is read whole first, and this node's
    /// store (through its journal, `BodyStore::put_small`) and the peers' take it at the same
    /// time; a larger one is streamed into this node's
    /// store, then pushed from there ([`NodeBodies::replicate`]).
    pub async fn deliver<B>(&self, group: u32, body: B, deadline: Instant) -> Result<Stored, BodiesError>
    where
        B: Body<Data = Bytes> + Unpin + Send,
        B::Error: std::fmt::Display,
    {
        let max = self.inner.max_message_bytes;
        let limit = SMALL_BODY.min(usize::try_from(max).unwrap_or(usize::MAX));
        let bytes = match read_head(body, limit).await? {
            Head::Whole(bytes) => bytes,
            Head::Longer(body) => {
                let stored = put_stream(self.inner.store.clone(), body, max, None).await?;
                self.replicate(group, stored.id, deadline).await?;
                return Ok(stored);
            }
        };
        let id = BodyId::of(&bytes);
        let (local_done, local_rx) = tokio::sync::watch::channel(None);
        let store = self.inner.store.clone();
        let local = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || store.put_small(&bytes, max, Some(id)))
        };
        let local = async {
            let stored = local.await.map_err(|e| BodyError::Input {
                source: std::io::Error::other(format!("the store's writer failed: {e}")),
            });
            let stored = stored.and_then(|stored| stored);
            let _ = local_done.send(Some(stored.is_ok()));
            stored
        };
        let source = PushSource::Memory(bytes);
        let (stored, replicated) =
            tokio::join!(local, self.push_to_quorum(group, id, source, local_rx, deadline));
        let stored = stored?;
        replicated?;
        Ok(stored)
    }

    /// Returns once a majority of `group`'s voters, this node counted when it is one, hold body
    /// `id` (which this node holds) durably ([`NodeBodies::push_to_quorum`]).
    pub async fn replicate(&self, group: u32, id: BodyId, deadline: Instant) -> Result<(), BodiesError> {
        let (_, stored) = tokio::sync::watch::channel(Some(true));
        let source = PushSource::Store(self.inner.store.clone());
        self.push_to_quorum(group, id, source, stored, deadline).await
    }

    /// Pushes body `id` from `source` to as many of `group`'s other voters as a majority needs
    /// besides this node (when it is a voter), answering once they hold it durably, and gives
    /// every other member the body from the background lane: the third copy of a three-node
    /// group does not compete with the two the answer waits for. The first pushes go to the
    /// members that answered fastest lately; another is started when one fails, and when none
    /// has answered within a few times their usual time (a slow or unreachable member costs a
    /// hedge delay, not the deadline). A push still running after the answer goes on; one that
    /// fails, and every member not pushed to, waits in that peer's backlog once `local` says
    /// this node's own copy is stored (the backlog pushes from the store).
    async fn push_to_quorum(
        &self,
        group: u32,
        id: BodyId,
        source: PushSource,
        local: tokio::sync::watch::Receiver<Option<bool>>,
        deadline: Instant,
    ) -> Result<(), BodiesError> {
        let inner = &self.inner;
        let me = inner.raft.node_id();
        let voters = inner.raft.metrics(group)?.voters;
        let members = inner.raft.member_nodes(group)?;
        let needed = voters.len() / 2 + 1;
        let wanted = needed - usize::from(voters.contains(&me));
        // Voters first, fastest first; members that are not voters only ever get the background.
        let mut candidates: Vec<_> = members.into_iter().filter(|(peer, _)| *peer != me).collect();
        {
            let scores = inner
                .scores
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            candidates.sort_by_key(|(peer, _)| {
                let score = scores.get(peer).copied().unwrap_or_default();
                // Members never pushed to yet come after those with a record.
                let micros = if score.micros == 0 { u64::MAX } else { score.micros };
                (!voters.contains(peer), score.failed_lately(now), micros)
            });
        }
        let mut untried = candidates.into_iter().collect::<std::collections::VecDeque<_>>();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = |peer: NodeId, api_addr: String| {
            let (bodies, tx, source, local) = (self.clone(), tx.clone(), source.clone(), local.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let timeout = deadline.saturating_duration_since(started);
                let result = bodies.inner.urgent.push(&api_addr, &source, id, timeout).await;
                bodies.score(peer, started, result.is_ok());
                let failed = result.is_err();
                if let Err(e) = &result {
                    tracing::debug!(peer, body = %id, error = %e, "push failed; the body waits in the peer's backlog");
                }
                let _ = tx.send((peer, result));
                if failed {
                    bodies.enqueue_once_stored(peer, id, local).await;
                }
            });
        };
        let mut running = 0usize;
        let mut last_started = None;
        let mut hedge_at = Instant::now();
        let mut held = 0usize;
        let mut last_error = String::from("no other voter");
        let mut answered = false;
        loop {
            // Enough pushes running for the copies still wanted; one more when the hedge is due.
            let hedge_due = Instant::now() >= hedge_at && running > 0;
            if let (true, Some(slow)) = (hedge_due, last_started) {
                // Overdue: the next deliveries try the others first until it answers again.
                self.mark_slow(slow);
            }
            while held + running < wanted || (hedge_due && held < wanted) {
                let Some((peer, node)) = untried.pop_front() else {
                    break;
                };
                if !voters.contains(&peer) {
                    untried.push_front((peer, node));
                    break;
                }
                hedge_at = Instant::now() + self.hedge_delay(peer);
                last_started = Some(peer);
                if !answered {
                    last_error = format!("node {peer}: no answer yet");
                }
                start(peer, node.api_addr);
                running += 1;
                if hedge_due {
                    break;
                }
            }
            if held >= wanted || running == 0 {
                break;
            }
            let wake = if untried.front().is_some_and(|(peer, _)| voters.contains(peer)) {
                hedge_at.min(deadline)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wake.into(), rx.recv()).await {
                Ok(Some((_, Ok(true)))) => {
                    running -= 1;
                    held += 1;
                }
                Ok(Some((peer, Ok(false)))) => {
                    running -= 1;
                    answered = true;
                    last_error = format!("node {peer}: this node lost its copy");
                }
                Ok(Some((peer, Err(e)))) => {
                    running -= 1;
                    answered = true;
                    last_error = format!("node {peer}: {e}");
                }
                Ok(None) => break,
                Err(_) if Instant::now() >= deadline => {
                    last_error = format!("deadline reached; last: {last_error}");
                    break;
                }
                Err(_) => {} // the hedge is due
            }
        }
        // Every member not pushed to gets the body from the background lane.
        let rest: Vec<NodeId> = untried.into_iter().map(|(peer, _)| peer).collect();
        if !rest.is_empty() {
            let bodies = self.clone();
            tokio::spawn(async move {
                for peer in rest {
                    bodies.enqueue_once_stored(peer, id, local.clone()).await;
                }
            });
        }
        if held >= wanted {
            return Ok(());
        }
        Err(BodiesError::NoQuorum {
            group,
            id,
            held: held + (needed - wanted),
            needed,
            reason: last_error,
        })
    }

    /// Puts body `id` in `peer`'s backlog once this node's own copy is stored (`local` says
    /// whether it was: a copy that failed to store is not owed to anyone).
    async fn enqueue_once_stored(
        &self,
        peer: NodeId,
        id: BodyId,
        mut local: tokio::sync::watch::Receiver<Option<bool>>,
    ) {
        if let Ok(stored) = local.wait_for(Option::is_some).await {
            if *stored == Some(true) {
                self.enqueue(peer, id);
            }
        }
    }

    /// Records how a push to `peer` that started at `started` went.
    fn score(&self, peer: NodeId, started: Instant, ok: bool) {
        let mut scores = self
            .inner
            .scores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let score = scores.entry(peer).or_default();
        if ok {
            let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u64;
            // An exponentially weighted mean (weight 1/8 for the newest).
            score.micros = if score.micros == 0 {
                micros
            } else {
                (score.micros * 7 + micros) / 8
            };
            score.failed_at = None;
        } else {
            score.failed_at = Some(Instant::now());
        }
    }

    /// Ranks `peer` after the others for the next pushes (until a push to it succeeds).
    fn mark_slow(&self, peer: NodeId) {
        let mut scores = self
            .inner
            .scores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scores.entry(peer).or_default().failed_at = Some(Instant::now());
    }

    /// How long a push to `peer` may go unanswered before another member is pushed to as well.
    fn hedge_delay(&self, peer: NodeId) -> Duration {
        let scores = self
            .inner
            .scores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match scores.get(&peer).map(|s| s.micros) {
            Some(micros) if micros > 0 => {
                (Duration::from_micros(micros) * HEDGE_FACTOR).clamp(HEDGE_MIN, HEDGE_MAX)
            }
            _ => HEDGE_UNKNOWN,
        }
    }

    /// Opens body `id` of `group` for reading, checked; a copy this node lacks (or that fails
    /// its check) is fetched at once from a member. `Ok(None)`: no member has one either.
    pub async fn open(
        &self,
        group: u32,
        id: BodyId,
        deadline: Instant,
    ) -> Result<Option<std::fs::File>, BodiesError> {
        let inner = &self.inner;
        match self.read_checked(id).await {
            Ok(Some(file)) => return Ok(Some(file)),
            Ok(None) | Err(BodyError::Damaged { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let started = Instant::now();
        inner.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let me = inner.raft.node_id();
        let mut reasons = Vec::new();
        for (peer, node) in inner.raft.member_nodes(group)? {
            if peer == me {
                continue;
            }
            let timeout = deadline.saturating_duration_since(Instant::now());
            match inner
                .urgent
                .fetch(&node.api_addr, &inner.store, id, inner.max_message_bytes, timeout)
                .await
            {
                Ok(Some(_)) => match self.read_checked(id).await {
                    Ok(Some(file)) => {
                        let micros = started.elapsed().as_micros() as u64;
                        inner.counters.fetch_micros.fetch_add(micros, Ordering::Relaxed);
                        metrics::histogram!(BODY_FETCH_SECONDS).record(started.elapsed());
                        tracing::info!(body = %id, from = peer, micros, "fetched a body this node lacked");
                        return Ok(Some(file));
                    }
                    Ok(None) => reasons.push(format!("node {peer}: gone after the fetch")),
                    Err(e) => reasons.push(format!("node {peer}: {e}")),
                },
                Ok(None) => reasons.push(format!("node {peer}: no copy")),
                Err(e) => reasons.push(format!("node {peer}: {e}")),
            }
        }
        inner.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(body = %id, group, reasons = %reasons.join("; "), "no member has a good copy of a body this node lacks");
        Err(BodiesError::Unavailable {
            id,
            reason: reasons.join("; "),
        })
    }

    /// The checked bytes of each of `ids` that this node's store holds, read one after another
    /// on one blocking thread (one hand-off for the lot, not one per body). `None` for a body
    /// the store lacks, whose copy failed its check (it was quarantined) or could not be read:
    /// [`NodeBodies::open`] then fetches it from a member or says why it cannot.
    pub async fn read_local(&self, ids: Vec<BodyId>) -> Vec<Option<Vec<u8>>> {
        let store = self.inner.store.clone();
        let count = ids.len();
        tokio::task::spawn_blocking(move || {
            ids.iter().map(|id| store.read_bytes(id).ok().flatten()).collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; count])
    }

    /// The store's checked read, on a blocking thread (it hashes the whole body).
    async fn read_checked(&self, id: BodyId) -> Result<Option<std::fs::File>, BodyError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.read(&id))
            .await
            .map_err(|e| BodyError::Input {
                source: std::io::Error::other(format!("the store's reader failed: {e}")),
            })?
    }

    /// Puts body `id` in `peer`'s backlog.
    fn enqueue(&self, peer: NodeId, id: BodyId) {
        if self.inner.backlogs.enqueue(peer, id) == Enqueued::Overflowed {
            self.inner
                .counters
                .backlog_overflows
                .fetch_add(1, Ordering::Relaxed);
        }
        self.inner.wake.notify_one();
    }

    /// Where `peer`'s API listens, as the first group that has it as a member says.
    fn api_addr_of(&self, peer: NodeId) -> Option<String> {
        let raft = &self.inner.raft;
        (0..raft.group_count()).find_map(|g| {
            raft.member_nodes(g)
                .ok()
                .and_then(|nodes| nodes.get(&peer).map(|n| n.api_addr.clone()))
        })
    }

    /// Drains the backlogs, one job at a time, until the process ends. A peer marked for a full
    /// resync is asked, once it answers, to run its body sweep, which fetches every body its
    /// index references and its store lacks.
    pub async fn run_backlog(self) {
        loop {
            let Some((peer, job)) = self.inner.backlogs.next(Instant::now()) else {
                let _ = tokio::time::timeout(RETRY_PAUSE, self.inner.wake.notified()).await;
                continue;
            };
            let Some(api_addr) = self.api_addr_of(peer) else {
                // No longer a member of any group: nothing is owed to it.
                self.inner.backlogs.forget(peer);
                continue;
            };
            let background = &self.inner.background;
            let result = match job {
                Job::Push(id) => background
                    .push(
                        &api_addr,
                        &PushSource::Store(self.inner.store.clone()),
                        id,
                        BACKGROUND_PUSH_TIMEOUT,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Job::Resync => background
                    .request_sweep(&api_addr, BACKGROUND_PUSH_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => {
                    // Counted before the job leaves the backlog, so that an empty backlog
                    // implies its pushes are counted.
                    let counter = match job {
                        Job::Push(_) => &self.inner.counters.background_pushed,
                        Job::Resync => {
                            tracing::info!(
                                peer,
                                "asked a peer whose body backlog overflowed for a full body resync"
                            );
                            &self.inner.counters.resyncs_requested
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.inner.backlogs.done(peer, job);
                }
                Err(e) => {
                    tracing::debug!(peer, error = %e, "background body transfer failed; retrying later");
                    self.inner.backlogs.failed(peer, Instant::now() + RETRY_PAUSE);
                }
            }
        }
    }

    /// Fetches body `id` of `group` from a member on the background connections; whether it is
    /// now in the store.
    pub async fn fetch_in_background(&self, group: u32, id: BodyId) -> bool {
        let inner = &self.inner;
        let me = inner.raft.node_id();
        let Ok(members) = inner.raft.member_nodes(group) else {
            return false;
        };
        for (peer, node) in members {
            if peer == me {
                continue;
            }
            let fetched = inner
                .background
                .fetch(
                    &node.api_addr,
                    &inner.store,
                    id,
                    inner.max_message_bytes,
                    BACKGROUND_PUSH_TIMEOUT,
                )
                .await;
            if let Ok(Some(_)) = fetched {
                inner.counters.background_fetched.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// Asks the body sweep for a pass now.
    pub fn wake_sweep(&self) {
        self.inner.sweep.notify_one();
    }

    /// Waits until a pass is asked for, or `interval` has passed.
    pub async fn sweep_requested(&self, interval: Duration) {
        let _ = tokio::time::timeout(interval, self.inner.sweep.notified()).await;
    }

    /// What a sweep's collection found: the store and the references as listed, what it
    /// removed, and the referenced bodies missing here before its fetches.
    pub fn record_sweep(&self, report: crate::bodies::collector::CollectReport, missing: u64) {
        let c = &self.inner.counters;
        c.sweeps.fetch_add(1, Ordering::Relaxed);
        c.stored.store(report.listed - report.removed, Ordering::Relaxed);
        c.stored_bytes
            .store(report.listed_bytes - report.removed_bytes, Ordering::Relaxed);
        c.referenced.store(report.referenced + missing, Ordering::Relaxed);
        c.missing.store(missing, Ordering::Relaxed);
        c.collected.fetch_add(report.removed, Ordering::Relaxed);
        c.collected_bytes
            .fetch_add(report.removed_bytes, Ordering::Relaxed);
    }

    /// The referenced bodies still missing after a sweep's fetches.
    pub fn set_missing(&self, missing: u64) {
        self.inner.counters.missing.store(missing, Ordering::Relaxed);
    }

    pub fn status(&self) -> BodiesStatus {
        let c = &self.inner.counters;
        let fetches = c.fetches.load(Ordering::Relaxed);
        let failures = c.fetch_failures.load(Ordering::Relaxed);
        BodiesStatus {
            damaged: self.inner.store.damaged_count(),
            fetches,
            fetch_failures: failures,
            fetch_mean_micros: c.fetch_micros.load(Ordering::Relaxed)
                / fetches.saturating_sub(failures).max(1),
            background_pushed: c.background_pushed.load(Ordering::Relaxed),
            backlog_overflows: c.backlog_overflows.load(Ordering::Relaxed),
            resyncs_requested: c.resyncs_requested.load(Ordering::Relaxed),
            background_fetched: c.background_fetched.load(Ordering::Relaxed),
            sweeps: c.sweeps.load(Ordering::Relaxed),
            stored: c.stored.load(Ordering::Relaxed),
            stored_bytes: c.stored_bytes.load(Ordering::Relaxed),
            referenced: c.referenced.load(Ordering::Relaxed),
            missing: c.missing.load(Ordering::Relaxed),
            collected: c.collected.load(Ordering::Relaxed),
            collected_bytes: c.collected_bytes.load(Ordering::Relaxed),
            backlogs: self.inner.backlogs.status(),
        }
    }
}
