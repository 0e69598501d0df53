//! [`RaftNode`]: a node's Raft groups behind one API for the domain crate.
//!
//! # Layout
//! - [`busy_hint`]: a group's last busy answer from its leader, so this node refuses the next
//!   writes itself for a moment instead of forwarding them to be refused.
//! - [`config`]: [`RaftNodeConfig`] and its defaults; [`ConfigError`].
//! - [`error`]: [`ProposeError`], [`RaftNodeError`].
//! - [`leader_changes`]: the per-group task that counts leader changes for the metrics and
//!   notes since when this node leads.
//! - [`dispatch`]: the group table and what a leader runs for a caller (also for the transport).
//! - [`proposals`]: a leader's per-group queue that coalesces waiting requests into one entry.
//! - [`requests`]: propose, read index, applied waits and membership operations, forwarded to
//!   the leader as needed (membership changes under the guards of `crate::membership`).
//! - [`storage_alarm`]: the node's switch for a full disk: no new entries, no leadership.
//! - this file: start, bootstrap, metrics, local reads, the periodic application flush, a
//!   group's removed mark (no requests served, no campaigning), shutdown.

pub mod busy_hint;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod leader_changes;
pub mod proposals;
mod read_rounds;
pub mod requests;
pub mod storage_alarm;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{InitializeError, RaftError};
use openraft::{Raft, ServerState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{ConfigError, RaftNodeConfig};
use dispatch::{Group, GroupTable};
pub use error::{BusyQueue, ProposeError, RaftNodeError};
use proposals::Proposals;
pub use requests::{GroupChange, Proposed};

use crate::membership::MembershipRules;
use crate::state_machine::{lock_app, position_of, AppStateMachine};
use crate::transport::{self, ClusterSecret, GroupNetwork, Router};
use crate::type_config::{GroupId, Node, NodeId};
use crate::{Application, FlushJob, LogDb, LogDbOptions, LogPosition, ReserveStatus};
use storage_alarm::StorageAlarm;

/// The directory of a node's log db (every group's Raft log) under its data directory.
pub const LOG_DB_DIR: &str = "raft-log";

/// A group's role on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// A snapshot of one group's Raft state on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetrics {
    pub group_id: GroupId,
    pub node_id: NodeId,
    pub role: GroupRole,
    pub current_leader: Option<NodeId>,
    pub current_term: u64,
    pub last_log_index: Option<u64>,
    /// Invariant: `applied_log_index <= committed_log_index`.
    pub committed_log_index: Option<u64>,
    pub applied: Option<LogPosition>,
    pub snapshot: Option<LogPosition>,
    /// Entries up to this index are gone from the log (covered by the snapshot).
    pub purged_log_index: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// When leader: the highest log index known to be replicated on each member.
    pub matched_log_index: Option<BTreeMap<NodeId, Option<u64>>>,
    /// When leader: how long ago each member last acknowledged a heartbeat or append (`None`:
    /// not yet since this node became leader). A hint of which members are alive.
    pub since_acked: Option<BTreeMap<NodeId, Option<std::time::Duration>>>,
    /// `Some` once the group stopped on an error.
    pub fatal: Option<String>,
    /// The log position of the entry that set the group's membership as this node knows it (its
    /// last membership entry, possibly uncommitted); `None` before any.
    pub membership_log: Option<LogPosition>,
    /// Whether that membership is committed as far as this node knows.
    pub membership_committed: bool,
    /// How long ago a leader last reached this node for the group (an AppendEntries or a
    /// snapshot); since the node started if none has. Zero on the leader itself.
    pub since_leader_contact: std::time::Duration,
    /// Whether this node holds that it was removed from the group ([`RaftNode::set_removed`]).
    pub removed: bool,
}

/// A node's Raft groups. Cheap to clone; clones share the node.
pub struct RaftNode<A: Application> {
    inner: Arc<NodeInner<A>>,
}

impl<A: Application> Clone for RaftNode<A> {
    fn clone(&self) -> Self {
        RaftNode {
            inner: self.inner.clone(),
        }
    }
}

struct NodeInner<A: Application> {
    node_id: NodeId,
    config: RaftNodeConfig,
    table: Arc<GroupTable<A>>,
    router: Router,
    log_db: LogDb,
    peer_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<A: Application> RaftNode<A> {
    /// Opens the log db, builds every group's application with `make_app`, starts the groups
    /// and serves peers on `peer_listener`. Groups are not bootstrapped: see
    /// [`RaftNode::initialize`] (or join an existing cluster as a learner).
    pub async fn start(
        config: RaftNodeConfig,
        peer_listener: TcpListener,
        make_app: impl Fn(GroupId) -> io::Result<A>,
    ) -> Result<RaftNode<A>, RaftNodeError> {
        if config.group_count == 0 {
            return Err(ConfigError::NoGroups.into());
        }
        let raft_config = config.raft_config()?;
        let io_error = |what: String| move |source| RaftNodeError::Io { what, source };
        let staging_dir = config.data_dir.join("snapshot-staging");
        // Leftovers of transfers interrupted by a crash are useless: start empty.
        if staging_dir.exists() {
            std::fs::remove_dir_all(&staging_dir)
                .map_err(io_error(format!("clear {}", staging_dir.display())))?;
        }
        std::fs::create_dir_all(&staging_dir)
            .map_err(io_error(format!("create {}", staging_dir.display())))?;
        let log_db = LogDb::open_with(
            config.data_dir.join(LOG_DB_DIR),
            LogDbOptions {
                reserve_bytes: config.log_reserve_bytes,
                ..LogDbOptions::default()
            },
        )?;
        let peer_addr = peer_listener
            .local_addr()
            .map_err(io_error("peer listener address".to_string()))?;

        let secret = ClusterSecret::new(config.cluster_secret.clone());
        let tls = match &config.peer_tls {
            Some(files) => Some(transport::PeerTls::load(files).map_err(ConfigError::from)?),
            None => None,
        };
        let router = Router::new(
            config.node_id,
            secret.clone(),
            tls.clone(),
            config.snapshot_chunk_bytes,
        )
        .with_min_raft_rpc_timeout(std::time::Duration::from_millis(config.election_timeout_ms_min));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut groups = Vec::with_capacity(config.group_count as usize);
        for group_id in 0..config.group_count {
            let app = Arc::new(Mutex::new(
                make_app(group_id).map_err(io_error(format!("create application of group {group_id}")))?,
            ));
            let state_machine = AppStateMachine::new(group_id, app.clone(), shutdown_rx.clone())
                .map_err(io_error(format!("read applied state of group {group_id}")))?;
            let network = GroupNetwork::new(router.clone(), group_id);
            let raft = Raft::new(
                config.node_id,
                raft_config.clone(),
                network,
                log_db.group(group_id)?,
                state_machine,
            )
            .await
            .map_err(|e| RaftNodeError::Group {
                group_id,
                reason: e.to_string(),
            })?;
            groups.push(Group::new(
                raft,
                app,
                Arc::new(Proposals::new(group_id, config.proposal_limits())),
            ));
        }
        let table = Arc::new(GroupTable {
            groups,
            staging_dir,
            alarm: StorageAlarm::default(),
            rules: MembershipRules::new(config.heartbeat_interval_ms, config.election_timeout_ms_min),
            started: std::time::Instant::now(),
        });

        let mut tasks: Vec<JoinHandle<()>> = (0..config.group_count)
            .map(|group_id| {
                let group = &table.groups[group_id as usize];
                tokio::spawn(leader_changes::count_leader_changes(
                    group_id,
                    group.raft.clone(),
                    group.leading_since.clone(),
                    shutdown_rx.clone(),
                ))
            })
            .collect();
        let server = tokio::spawn(transport::serve(
            peer_listener,
            secret,
            tls,
            table.clone(),
            config.max_peer_connections,
            shutdown_rx.clone(),
        ));
        let flusher = tokio::spawn(flush_periodically(
            table.clone(),
            config.app_flush_interval(),
            shutdown_rx,
        ));
        tasks.extend([server, flusher]);
        tracing::info!(node_id = config.node_id, %peer_addr, groups = config.group_count, "raft node started");
        Ok(RaftNode {
            inner: Arc::new(NodeInner {
                node_id: config.node_id,
                config,
                table,
                router,
                log_db,
                peer_addr,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The Raft log's reserve of written-ahead space (short when the disk is full).
    pub fn log_reserve(&self) -> ReserveStatus {
        self.inner.log_db.reserve()
    }

    /// Why this node refuses writes (its storage alarm), if it does.
    pub fn storage_alarm(&self) -> Option<String> {
        self.inner.table.alarm.reason()
    }

    /// Raises (`Some(reason)`) or clears (`None`) the storage alarm (see `storage_alarm.rs`).
    /// Meant to be called on every check of the node's disk: while raised, each call also asks
    /// the groups this node still leads to hand leadership over (at most once a second each).
    pub async fn set_storage_alarm(&self, reason: Option<String>) {
        let table = &self.inner.table;
        let raised = reason.is_some();
        let previous = table.alarm.set(reason.clone());
        if previous.is_some() != raised {
            for group in &table.groups {
                table.update_elect(group);
            }
            match &reason {
                Some(reason) => tracing::error!(
                    node_id = self.inner.node_id,
                    %reason,
                    "storage alarm raised: this node takes no writes, leads no group and stands for no election until it clears; reads go on"
                ),
                None => tracing::info!(
                    node_id = self.inner.node_id,
                    "storage alarm cleared: writes and elections resume"
                ),
            }
        }
        if !raised {
            return;
        }
        let now = std::time::Instant::now();
        for group_id in 0..self.group_count() {
            let Ok(metrics) = self.metrics(group_id) else {
                continue;
            };
            if metrics.role != GroupRole::Leader || !table.alarm.step_down_due(group_id, now) {
                continue;
            }
            // The voter with the most of the log: it can take over without catching up first.
            let matched = metrics.matched_log_index.unwrap_or_default();
            let target = metrics
                .voters
                .iter()
                .filter(|&&voter| voter != self.inner.node_id)
                .max_by_key(|&&voter| matched.get(&voter).copied().flatten());
            if let Some(&to) = target {
                let group = &table.groups[group_id as usize];
                match group.raft.trigger().transfer_leader(to).await {
                    Ok(()) => tracing::warn!(group_id, to, "storage alarm: handing leadership over"),
                    Err(e) => {
                        tracing::warn!(group_id, to, error = %e, "storage alarm: could not hand leadership over")
                    }
                }
            }
        }
    }

    /// Records whether this node holds that it was removed from `group_id` (the domain finds
    /// out: a removed node is never told through the log, since the leader stops replicating to
    /// it). While set, proposals and read indexes of the group fail at once with
    /// [`ProposeError::Removed`], and the node does not campaign in it (openraft's `elect`
    /// switch); it still accepts what a leader sends, so a node added again catches up and then
    /// sees itself in the group's membership. Returns the previous value.
    pub fn set_removed(&self, group_id: GroupId, removed: bool) -> Result<bool, ProposeError> {
        let group = self.group(group_id)?;
        let previous = group.removed.swap(removed, std::sync::atomic::Ordering::SeqCst);
        self.inner.table.update_elect(group);
        Ok(previous)
    }

    /// Whether this node holds that it was removed from `group_id` ([`RaftNode::set_removed`]).
    pub fn is_removed(&self, group_id: GroupId) -> bool {
        self.group(group_id).is_ok_and(|group| group.is_removed())
    }

    /// The guards this node applies to membership changes as a leader.
    pub fn membership_rules(&self) -> MembershipRules {
        self.inner.table.rules
    }

    /// The address the peer listener is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    pub fn group_count(&self) -> u32 {
        self.inner.config.group_count
    }

    fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Bootstraps every group with `members` as voters. Idempotent: a group that is already
    /// initialized is left alone. Call it on one node of a new cluster.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Node>) -> Result<(), RaftNodeError> {
        for (node_id, node) in &members {
            self.inner.router.set_peer_addr(*node_id, &node.peer_addr);
        }
        for (group_id, group) in self.inner.table.groups.iter().enumerate() {
            match group.raft.initialize(members.clone()).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    return Err(RaftNodeError::Group {
                        group_id: group_id as GroupId,
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Runs `read` on the group's application, as applied on this node (no consistency
    /// guarantee beyond that; see [`RaftNode::read_index`]).
    pub fn with_app<R>(&self, group_id: GroupId, read: impl FnOnce(&A) -> R) -> Result<R, ProposeError> {
        let group = self.group(group_id)?;
        let app = lock_app(&group.app).map_err(|e| ProposeError::Fatal {
            group_id,
            reason: e.to_string(),
        })?;
        Ok(read(&app))
    }

    /// Runs `change` on the group's application, between two applies. For local
    /// maintenance that keeps the application's replicated state as it is (such as replacing a
    /// damaged file by a healthy replica's identical copy); it must not block for long, since
    /// the group applies nothing meanwhile.
    pub fn with_app_mut<R>(
        &self,
        group_id: GroupId,
        change: impl FnOnce(&mut A) -> R,
    ) -> Result<R, ProposeError> {
        let group = self.group(group_id)?;
        let mut app = lock_app(&group.app).map_err(|e| ProposeError::Fatal {
            group_id,
            reason: e.to_string(),
        })?;
        Ok(change(&mut app))
    }

    /// Asks one group to build a snapshot now; returns once the request is queued.
    pub async fn trigger_snapshot(&self, group_id: GroupId) -> Result<(), ProposeError> {
        let group = self.group(group_id)?;
        group
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ProposeError::Fatal {
                group_id,
                reason: e.to_string(),
            })
    }

    /// The last proposal or read index of the group that failed on this node, with the time it
    /// failed; `None` if none has since the process started.
    pub fn last_error(
        &self,
        group_id: GroupId,
    ) -> Result<Option<(std::time::SystemTime, String)>, ProposeError> {
        let group = self.group(group_id)?;
        let last = group.last_error.lock().map(|l| l.clone()).unwrap_or(None);
        Ok(last)
    }

    /// The group's role on this node: what [`metrics`](Self::metrics) says, without copying
    /// the rest (for tasks that look at every group often and at most groups no further).
    pub fn role(&self, group_id: GroupId) -> Result<GroupRole, ProposeError> {
        let group = self.group(group_id)?;
        let state = group.raft.metrics().borrow_watched().state;
        Ok(role_of(state))
    }

    /// How long since this node last heard from the group's leader (zero while it leads):
    /// [`GroupMetrics::since_leader_contact`], without copying the rest.
    pub fn since_leader_contact(&self, group_id: GroupId) -> Result<std::time::Duration, ProposeError> {
        let group = self.group(group_id)?;
        if group.raft.metrics().borrow_watched().state == ServerState::Leader {
            return Ok(std::time::Duration::ZERO);
        }
        Ok(self.inner.table.since_leader_contact(group))
    }

    /// The group's Raft state on this node.
    pub fn metrics(&self, group_id: GroupId) -> Result<GroupMetrics, ProposeError> {
        let group = self.group(group_id)?;
        let m = group.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        Ok(GroupMetrics {
            group_id,
            node_id: m.id,
            role: role_of(m.state),
            current_leader: m.current_leader,
            current_term: m.current_term,
            last_log_index: m.last_log_index,
            committed_log_index: m.local_committed.map(|c| c.index),
            applied: m.last_applied.as_ref().map(position_of),
            snapshot: m.snapshot.as_ref().map(position_of),
            purged_log_index: m.purged.map(|p| p.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            matched_log_index: m.replication.as_ref().map(|replication| {
                replication
                    .iter()
                    .map(|(id, matched)| (*id, matched.map(|log_id| log_id.index)))
                    .collect()
            }),
            since_acked: m.heartbeat.as_ref().map(|heartbeat| {
                heartbeat
                    .iter()
                    .map(|(id, acked)| (*id, acked.as_ref().map(|at| openraft::Instant::elapsed(&**at))))
                    .collect()
            }),
            fatal: m.running_state.as_ref().err().map(|e| e.to_string()),
            membership_log: m.membership_config.log_id().as_ref().map(position_of),
            membership_committed: m.committed_membership_config.log_id() == m.membership_config.log_id(),
            since_leader_contact: if m.state == ServerState::Leader {
                std::time::Duration::ZERO
            } else {
                self.inner.table.since_leader_contact(group)
            },
            removed: group.is_removed(),
        })
    }

    /// Where each member (voter or learner) of the group can be reached, as the group's
    /// membership on this node records it.
    pub fn member_nodes(&self, group_id: GroupId) -> Result<BTreeMap<NodeId, Node>, ProposeError> {
        let group = self.group(group_id)?;
        let m = group.raft.metrics().borrow_watched().clone();
        let nodes = m.membership_config.membership().nodes();
        Ok(nodes.map(|(id, node)| (*id, node.clone())).collect())
    }

    /// Asks every group to build a snapshot now (in the background).
    pub async fn trigger_snapshots(&self) {
        for group in &self.inner.table.groups {
            let _ = group.raft.trigger().snapshot().await;
        }
    }

    /// Stops every group, flushes every application and syncs the log db. Requests in flight
    /// fail with [`ProposeError::Shutdown`]. Idempotent.
    pub async fn shutdown(&self) -> Result<(), RaftNodeError> {
        if self.inner.shutdown.send_replace(true) {
            return Ok(());
        }
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for group in &self.inner.table.groups {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(error = %e, "raft group shutdown failed");
            }
        }
        self.inner.router.close().await;
        for task in tasks {
            let _ = task.await;
        }
        let mut first_error = None;
        for (group_id, group) in self.inner.table.groups.iter().enumerate() {
            if let Err(e) = flush_app(group).await {
                tracing::error!(group_id, error = %e, "application flush at shutdown failed");
                first_error.get_or_insert(RaftNodeError::Io {
                    what: format!("flush application of group {group_id}"),
                    source: e,
                });
            }
        }
        self.inner.log_db.sync().await?;
        self.inner.log_db.clone().close().await;
        tracing::info!(node_id = self.inner.node_id, "raft node stopped");
        first_error.map_or(Ok(()), Err)
    }
}

fn role_of(state: ServerState) -> GroupRole {
    match state {
        ServerState::Leader => GroupRole::Leader,
        ServerState::Follower => GroupRole::Follower,
        ServerState::Candidate => GroupRole::Candidate,
        ServerState::Learner => GroupRole::Learner,
        ServerState::Shutdown => GroupRole::Shutdown,
    }
}

async fn flush_app<A: Application>(group: &Group<A>) -> io::Result<()> {
    on_app(group, A::flush).await
}

/// Runs `flush` (`Application::flush`) on the blocking pool under the app lock.
async fn on_app<A: Application>(group: &Group<A>, flush: fn(&mut A) -> io::Result<()>) -> io::Result<()> {
    let app = group.app.clone();
    tokio::task::spawn_blocking(move || flush(&mut *lock_app(&app)?))
        .await
        .map_err(|e| io::Error::other(format!("flush task failed: {e}")))?
}

/// Runs `Application::begin_periodic_flush` (on a blocking thread): its start and its last part
/// under the app lock, the slow part between them without it (the group applies meanwhile).
fn periodic_flush<A: Application>(app: &Mutex<A>) -> io::Result<()> {
    let job = lock_app(app)?.begin_periodic_flush()?;
    match job {
        FlushJob::Done => Ok(()),
        FlushJob::Pending(slow) => {
            let finish = slow()?;
            finish(&mut *lock_app(app)?)
        }
    }
}

/// Offers every group's application a flush every `interval` (`begin_periodic_flush`: the application
/// decides whether it is due). A flush that fails for want of disk space is offered again later
/// (the log keeps everything it would have written; recovery replays it). A group whose
/// application cannot flush for another reason is stopped. One sweep over all groups is one
/// task on the blocking pool (a handoff per sweep, not per group: most groups of an idle node
/// have nothing to flush and answer at once).
async fn flush_periodically<A: Application>(
    table: Arc<GroupTable<A>>,
    interval: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let groups = table.clone();
        let swept = tokio::task::spawn_blocking(move || offer_flushes(groups.groups.iter().map(|g| &*g.app)));
        let failed = match swept.await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::error!(error = %e, "application flush sweep failed; trying again later");
                continue;
            }
        };
        for group_id in failed {
            let _ = table.groups[group_id].raft.shutdown().await;
        }
    }
}

/// Offers each application in turn its periodic flush ([`periodic_flush`], on a blocking
/// thread). Returns the indexes of those that failed for another reason than a full disk (to
/// stop).
fn offer_flushes<'a, A: Application + 'a>(apps: impl IntoIterator<Item = &'a Mutex<A>>) -> Vec<usize> {
    let mut failed = Vec::new();
    for (group_id, app) in apps.into_iter().enumerate() {
        match periodic_flush(app) {
            Ok(()) => {}
            Err(e) if crate::is_out_of_space(&e) => {
                tracing::warn!(group_id, error = %e, "application flush waits for disk space");
            }
            Err(e) => {
                tracing::error!(group_id, error = %e, "application flush failed; stopping the group");
                failed.push(group_id);
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests;
