//! The request paths of [`RaftNode`]: proposals, read indexes, applied waits and management
//! operations, each run on the group's leader — here if this node leads, else forwarded.
//!
//! openraft does not forward (ARCHITECTURE.md §10), so `RaftNode::on_leader` does: it asks the leader
//! named by local metrics (or by the last `NotLeader` hint), follows hints at once, and backs
//! off (20 ms doubling to 200 ms) when there is no leader or the leader cannot finish, until the
//! deadline. A retried proposal may commit twice if an earlier attempt's answer was lost; the
//! application's exactly-once session table makes that harmless. A leader that is busy (its
//! proposal queue, or its forwarded requests from this node, at their bound) is not retried:
//! the request fails at once with [`ProposeError::Busy`].

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::metrics::WaitError;

use super::dispatch::{local_admin, local_read_index, local_write, Group};
use super::error::BusyQueue;
use super::{ProposeError, RaftNode, RaftNodeError};
use crate::membership::{MembershipChange, MembershipOutcome};
use crate::state_machine::position_of;
use crate::transport::wire::{AdminRequest, ForwardReply, ReadIndexReply, RemoteError};
use crate::transport::CallError;
use crate::type_config::{GroupId, NodeId, Request};
use crate::{Application, LogPosition};

/// A committed and applied proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// Where the request sits in the group's log. Usable as a read-your-writes token.
    pub position: LogPosition,
    /// The application's response bytes.
    pub response: Vec<u8>,
}

/// What one attempt on a presumed leader came to.
pub(crate) enum Outcome<T> {
    Done(T),
    /// Not the leader; maybe names the one to try next.
    Redirect(Option<NodeId>),
    /// The leader could not finish; try again after a pause.
    Retry(String),
    /// The leader's proposal queue was full: refused, not retried.
    Busy {
        queued: u64,
        limit: u64,
    },
}

impl From<ForwardReply> for Outcome<Proposed> {
    fn from(reply: ForwardReply) -> Self {
        match reply {
            ForwardReply::Applied { position, response } => Outcome::Done(Proposed {
                position,
                response: response.0,
            }),
            ForwardReply::NotLeader { leader } => Outcome::Redirect(leader),
            ForwardReply::Failed { reason } => Outcome::Retry(reason),
            ForwardReply::Busy { queued, limit } => Outcome::Busy { queued, limit },
            ForwardReply::Membership(outcome) => {
                Outcome::Retry(format!("a membership answer to a proposal: {outcome:?}"))
            }
        }
    }
}

impl From<ForwardReply> for Outcome<MembershipOutcome> {
    fn from(reply: ForwardReply) -> Self {
        match reply {
            ForwardReply::Membership(outcome) => Outcome::Done(outcome),
            ForwardReply::NotLeader { leader } => Outcome::Redirect(leader),
            ForwardReply::Failed { reason } => Outcome::Retry(reason),
            ForwardReply::Applied { .. } => {
                Outcome::Retry("a proposal's answer to a membership change".to_string())
            }
            ForwardReply::Busy { .. } => {
                Outcome::Retry("a busy proposal queue's answer to a membership change".to_string())
            }
        }
    }
}

/// What one group's leader did with a membership change ([`RaftNode::change_members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    pub group_id: GroupId,
    pub outcome: MembershipOutcome,
}

impl From<ReadIndexReply> for Outcome<LogPosition> {
    fn from(reply: ReadIndexReply) -> Self {
        match reply {
            ReadIndexReply::Ready { position } => Outcome::Done(position),
            ReadIndexReply::NotLeader { leader } => Outcome::Redirect(leader),
            ReadIndexReply::NoQuorum { reason } => Outcome::Retry(reason),
        }
    }
}

const RETRY_DELAY_MIN: Duration = Duration::from_millis(20);
const RETRY_DELAY_MAX: Duration = Duration::from_millis(200);

/// Where an attempt runs: this node (`None`) or a peer.
type Target = Option<NodeId>;

impl<A: Application> RaftNode<A> {
    pub(crate) fn group(&self, group_id: GroupId) -> Result<&Group<A>, ProposeError> {
        self.inner
            .table
            .get(group_id)
            .ok_or(ProposeError::UnknownGroup { group_id })
    }

    /// [`ProposeError::Removed`] if this node holds that it was removed from the group.
    fn refuse_if_removed(&self, group_id: GroupId) -> Result<(), ProposeError> {
        if self.is_removed(group_id) {
            return Err(ProposeError::Removed {
                group_id,
                node_id: self.inner.node_id,
            });
        }
        Ok(())
    }

    /// Runs `attempt` on the group's leader until it is done or `deadline` passes.
    pub(crate) async fn on_leader<T, F, Fut>(
        &self,
        group_id: GroupId,
        deadline: Instant,
        attempt: F,
    ) -> Result<T, ProposeError>
    where
        F: Fn(Target, Duration) -> Fut,
        Fut: Future<Output = Result<Outcome<T>, CallError>>,
    {
        let group = self.group(group_id)?;
        let mut hint: Option<NodeId> = None;
        let mut last_error = "no leader known".to_string();
        let mut delay = RETRY_DELAY_MIN;
        loop {
            if self.is_shutting_down() {
                return Err(ProposeError::Shutdown);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ProposeError::Timeout { group_id, last_error });
            }
            let remaining = deadline - now;
            let (leader, leader_node) = {
                // Read in place: cloning openraft's metrics (maps of replication and heartbeat
                // progress) per request costs allocations for two fields.
                let metrics = group.raft.metrics();
                let metrics = metrics.borrow_watched();
                if let Err(fatal) = &metrics.running_state {
                    return Err(ProposeError::Fatal {
                        group_id,
                        reason: fatal.to_string(),
                    });
                }
                let leader = hint.take().or(metrics.current_leader);
                let node = leader.and_then(|id| metrics.membership_config.get_node(&id).cloned());
                (leader, node)
            };
            let outcome = match leader {
                None => Ok(Outcome::Retry("no leader known".to_string())),
                Some(id) if id == self.inner.node_id => attempt(None, remaining).await,
                Some(id) => {
                    if let Some(node) = leader_node {
                        self.inner.router.set_peer_addr(id, &node.peer_addr);
                    }
                    attempt(Some(id), remaining).await
                }
            };
            match outcome {
                Ok(Outcome::Done(value)) => return Ok(value),
                Ok(Outcome::Redirect(Some(next))) if Some(next) != leader => {
                    hint = Some(next);
                    continue;
                }
                Ok(Outcome::Redirect(_)) => last_error = format!("node {leader:?} is not the leader"),
                Ok(Outcome::Retry(reason)) => last_error = reason,
                // A full queue on the leader will not empty within a backoff pause: the client
                // hears of it at once, and the request never waits for its deadline here.
                Ok(Outcome::Busy { queued, limit }) => {
                    return Err(self.busy(group_id, group, leader, BusyQueue::Proposals, queued, limit));
                }
                Err(CallError::Remote(RemoteError::Busy { in_flight, limit, .. })) => {
                    return Err(self.busy(group_id, group, leader, BusyQueue::Forwards, in_flight, limit));
                }
                Err(e) => last_error = format!("node {leader:?}: {e}"),
            }
            let pause = delay.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(RETRY_DELAY_MAX);
        }
    }

    /// The error of a request `leader` refused as busy; a refusal by another node is
    /// remembered for [`BUSY_HINT`](super::busy_hint::BUSY_HINT) ([`RaftNode::admit_write`]).
    pub(crate) fn busy(
        &self,
        group_id: GroupId,
        group: &Group<A>,
        leader: Option<NodeId>,
        queue: BusyQueue,
        queued: u64,
        limit: u64,
    ) -> ProposeError {
        if leader != Some(self.inner.node_id) {
            group.busy_hint.set(queue, queued, limit, Instant::now());
        }
        ProposeError::Busy {
            group_id,
            queue,
            queued,
            limit,
        }
    }

    /// Whether a write to `group_id` would be refused as busy, as far as this node can tell
    /// without reading it: this node leads the group and its proposal queue is full, or the
    /// group's leader refused a request from this node as busy a moment ago. Cheap (two
    /// uncontended locks), for the API to call before it reads a request's body. A write it
    /// admits may still be refused by [`RaftNode::propose`].
    pub fn admit_write(&self, group_id: GroupId) -> Result<(), ProposeError> {
        let group = self.group(group_id)?;
        if let Some((queued, limit)) = group.proposals.full() {
            return Err(ProposeError::Busy {
                group_id,
                queue: BusyQueue::Proposals,
                queued,
                limit,
            });
        }
        match group.busy_hint.get(Instant::now()) {
            Some(refusal) => Err(ProposeError::Busy {
                group_id,
                queue: refusal.queue,
                queued: refusal.queued,
                limit: refusal.limit,
            }),
            None => Ok(()),
        }
    }

    /// Proposes `request` to `group_id` and returns once it is committed and applied (on the
    /// leader), with its log position and the application's response. Forwards to the leader
    /// when this node is not it; retries across leader changes until `deadline`.
    pub async fn propose(
        &self,
        group_id: GroupId,
        request: Vec<u8>,
        deadline: Instant,
    ) -> Result<Proposed, ProposeError> {
        let group = self.group(group_id)?;
        self.refuse_if_removed(group_id)?;
        if let Some(reason) = self.inner.table.alarm.reason() {
            return Err(ProposeError::NoSpace {
                node_id: self.inner.node_id,
                reason,
            });
        }
        let result = self
            .on_leader(group_id, deadline, |target, remaining| {
                let request = Request(request.clone());
                async move {
                    match target {
                        None => bounded(remaining, local_write(group, request))
                            .await
                            .map(Outcome::from),
                        Some(id) => {
                            let reply = self
                                .inner
                                .router
                                .forward(id, group_id, request.0, remaining)
                                .await?;
                            Ok(Outcome::from(reply))
                        }
                    }
                }
            })
            .await;
        record_error(group, "propose", &result);
        result
    }

    /// Obtains a linearizable read index from the group's leader: once this node has applied
    /// the returned position ([`RaftNode::wait_applied`]), a local read reflects every write
    /// committed before this call began (ARCHITECTURE.md §5).
    pub async fn read_index(
        &self,
        group_id: GroupId,
        deadline: Instant,
    ) -> Result<LogPosition, ProposeError> {
        let group = self.group(group_id)?;
        self.refuse_if_removed(group_id)?;
        let result = self
            .on_leader(group_id, deadline, |target, remaining| async move {
                match target {
                    None => bounded(remaining, local_read_index(group))
                        .await
                        .map(Outcome::from),
                    Some(id) => Ok(Outcome::from(
                        self.inner.router.read_index(id, group_id, remaining).await?,
                    )),
                }
            })
            .await;
        record_error(group, "read index", &result);
        result
    }

    /// Waits until this node has applied `index` in `group_id`; returns the applied position.
    pub async fn wait_applied(
        &self,
        group_id: GroupId,
        index: u64,
        deadline: Instant,
    ) -> Result<LogPosition, ProposeError> {
        let group = self.group(group_id)?;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let waited = group
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.running_state.is_err() || m.last_applied.is_some_and(|applied| applied.index >= index),
                format!("group {group_id} applied >= {index}"),
            )
            .await;
        match waited {
            Ok(metrics) => match (&metrics.running_state, metrics.last_applied) {
                (Err(fatal), _) => Err(ProposeError::Fatal {
                    group_id,
                    reason: fatal.to_string(),
                }),
                (Ok(()), Some(applied)) => Ok(position_of(&applied)),
                (Ok(()), None) => unreachable!("the wait condition requires an applied entry"),
            },
            Err(WaitError::Timeout(..)) => Err(ProposeError::Timeout {
                group_id,
                last_error: format!("not applied through {index}"),
            }),
            Err(WaitError::ShuttingDown) => Err(ProposeError::Shutdown),
        }
    }

    async fn admin_on_leader(
        &self,
        group_id: GroupId,
        request: AdminRequest,
        deadline: Instant,
    ) -> Result<LogPosition, ProposeError> {
        let group = self.group(group_id)?;
        let proposed: Proposed = self
            .on_leader(group_id, deadline, |target, remaining| {
                let request = request.clone();
                async move {
                    match target {
                        None => bounded(remaining, local_admin(group, &self.inner.table.rules, request))
                            .await
                            .map(Outcome::from),
                        Some(id) => Ok(Outcome::from(
                            self.inner.router.admin(id, group_id, request, remaining).await?,
                        )),
                    }
                }
            })
            .await?;
        Ok(proposed.position)
    }

    /// Asks `group_id`'s leader to hand leadership to `to`. Returns once the request is made;
    /// watch [`RaftNode::metrics`] for the outcome.
    pub async fn transfer_leader(
        &self,
        group_id: GroupId,
        to: NodeId,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        self.admin_on_leader(group_id, AdminRequest::TransferLeader { to }, deadline)
            .await
            .map(|_| ())
    }

    /// Asks one group's leader to make (or, with `check_only`, to check) a guarded membership
    /// change; its answer says what it did or why it refused.
    pub async fn change_group_members(
        &self,
        group_id: GroupId,
        change: MembershipChange,
        check_only: bool,
        deadline: Instant,
    ) -> Result<MembershipOutcome, ProposeError> {
        let group = self.group(group_id)?;
        let request = AdminRequest::Membership { change, check_only };
        self.on_leader(group_id, deadline, |target, remaining| {
            let request = request.clone();
            async move {
                match target {
                    None => bounded(remaining, local_admin(group, &self.inner.table.rules, request))
                        .await
                        .map(Outcome::from),
                    Some(id) => Ok(Outcome::from(
                        self.inner.router.admin(id, group_id, request, remaining).await?,
                    )),
                }
            }
        })
        .await
    }

    /// Makes a membership change in every group, each on its group's leader under the guards of
    /// `crate::membership`, and returns what each leader did. A promotion or removal is first
    /// checked in every group: if any leader refuses, nothing is changed anywhere and the
    /// answer holds the refusals (and the groups that would have changed, as
    /// [`MembershipOutcome::Allowed`]). Otherwise every group is changed; a leader may still
    /// refuse if its view changed in between (the answer says which groups changed). Adding a
    /// learner has no guard and is not checked first. Idempotent: a group where the node already
    /// has the role asked for answers [`MembershipOutcome::Unchanged`].
    pub async fn change_members(
        &self,
        change: MembershipChange,
        deadline: Instant,
    ) -> Result<Vec<GroupChange>, RaftNodeError> {
        if let MembershipChange::AddLearner { node_id, node } = &change {
            self.inner.router.set_peer_addr(*node_id, &node.peer_addr);
        }
        let groups = 0..self.inner.config.group_count;
        if !matches!(change, MembershipChange::AddLearner { .. }) {
            let mut checked = Vec::new();
            for group_id in groups.clone() {
                let outcome = self
                    .change_group_members(group_id, change.clone(), true, deadline)
                    .await?;
                checked.push(GroupChange { group_id, outcome });
            }
            if checked
                .iter()
                .any(|c| matches!(c.outcome, MembershipOutcome::Refused(_)))
            {
                return Ok(checked);
            }
        }
        let mut changes = Vec::new();
        for group_id in groups {
            let outcome = self
                .change_group_members(group_id, change.clone(), false, deadline)
                .await?;
            changes.push(GroupChange { group_id, outcome });
        }
        Ok(changes)
    }

    /// Makes `voters` the voter set of every group; voters dropped from it leave the groups.
    /// New voters must already be learners ([`RaftNode::add_learner`]).
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        deadline: Instant,
    ) -> Result<(), RaftNodeError> {
        for group_id in 0..self.inner.config.group_count {
            let request = AdminRequest::ChangeMembership {
                voters: voters.clone(),
            };
            self.admin_on_leader(group_id, request, deadline).await?;
        }
        Ok(())
    }
}

/// Runs a local leader operation for at most `timeout`.
async fn bounded<T>(timeout: Duration, work: impl Future<Output = T>) -> Result<T, CallError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CallError::Timeout(timeout))
}

/// Remembers a failed request as the group's last error.
fn record_error<A: Application, T>(group: &Group<A>, what: &str, result: &Result<T, ProposeError>) {
    if let Err(e) = result {
        if let Ok(mut last) = group.last_error.lock() {
            *last = Some((std::time::SystemTime::now(), format!("{what}: {e}")));
        }
    }
}
