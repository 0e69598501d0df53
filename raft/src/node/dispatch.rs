//! `GroupTable`: a node's groups, and the operations a group's leader runs on behalf of a
//! caller — local or forwarded over the transport. Implements the transport's [`Handler`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{LinearizableReadError, RaftError};
use openraft::raft::{AppendEntriesResponse, Precondition, SnapshotResponse};
use openraft::{ChangeMembers, ReadPolicy};

use super::busy_hint::BusyHint;
use super::proposals::Proposals;
use super::read_rounds::ReadRounds;
use super::storage_alarm::StorageAlarm;
use crate::membership::{LeaderView, MemberRole, MembershipChange, MembershipOutcome, MembershipRules};
use crate::state_machine::{position_of, GroupRaft};
use crate::transport::wire::{
    AdminRequest, ForwardReply, ReadIndexReply, RemoteError, RequestBody, ResponseBody,
};
use crate::transport::Handler;
use crate::type_config::{GroupId, NodeId, Request, Response, Snapshot, TypeConfig, Vote};
use crate::{Application, LogPosition};

/// One group of this node: its Raft and its application.
pub(crate) struct Group<A: Application> {
    pub raft: GroupRaft<A>,
    pub app: Arc<Mutex<A>>,
    /// The last request of this group that failed on this node, and when (for operators).
    pub last_error: Mutex<Option<(std::time::SystemTime, String)>>,
    /// Requests waiting to be proposed while this node leads (coalesced into entries).
    pub proposals: Arc<Proposals>,
    /// The group's leader said busy a moment ago: refuse its writes here for now.
    pub busy_hint: BusyHint,
    /// Set while this node holds that it was removed from the group (`RaftNode::set_removed`):
    /// it serves no request of the group and does not campaign.
    pub removed: AtomicBool,
    /// When a leader last reached this node for the group (an AppendEntries or a snapshot it
    /// did not refuse for a stale vote), in milliseconds since `GroupTable::started`.
    pub leader_contact_ms: AtomicU64,
    /// Since when this node leads the group (`None`: it does not); kept by the
    /// `leader_changes` task.
    pub leading_since: Arc<Mutex<Option<Instant>>>,
    /// Linearizable reads waiting at this node while it leads: one confirmation per round.
    pub reads: Arc<ReadRounds>,
}

impl<A: Application> Group<A> {
    pub fn new(raft: GroupRaft<A>, app: Arc<Mutex<A>>, proposals: Arc<Proposals>) -> Group<A> {
        Group {
            raft,
            app,
            last_error: Mutex::default(),
            proposals,
            busy_hint: BusyHint::default(),
            removed: AtomicBool::new(false),
            leader_contact_ms: AtomicU64::new(0),
            leading_since: Arc::default(),
            reads: Arc::default(),
        }
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// How long this node has led the group (zero if it does not, as far as the
    /// `leader_changes` task has seen).
    fn led_for(&self) -> Duration {
        self.leading_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(Duration::ZERO, |since| since.elapsed())
    }
}

/// The node's groups, indexed by group id (`0..group_count`).
pub(crate) struct GroupTable<A: Application> {
    pub groups: Vec<Group<A>>,
    pub staging_dir: PathBuf,
    /// Raised while the node's disk is full (see `storage_alarm.rs`).
    pub alarm: StorageAlarm,
    /// The guards of membership changes this node applies as a leader.
    pub rules: MembershipRules,
    /// The origin of `Group::leader_contact_ms` (when the node started).
    pub started: Instant,
}

impl<A: Application> GroupTable<A> {
    pub fn get(&self, group_id: GroupId) -> Option<&Group<A>> {
        self.groups.get(group_id as usize)
    }

    /// Notes that a leader reached this node for `group` just now.
    fn leader_contact(&self, group: &Group<A>) {
        let ms = self.started.elapsed().as_millis() as u64;
        group.leader_contact_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago a leader last reached this node for `group` (since the node started, if
    /// none has).
    pub fn since_leader_contact(&self, group: &Group<A>) -> Duration {
        let at = Duration::from_millis(group.leader_contact_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(at)
    }

    /// Switches the group's campaigning on or off: off while the storage alarm is raised or
    /// the node holds that it was removed from the group.
    pub fn update_elect(&self, group: &Group<A>) {
        let elect = self.alarm.reason().is_none() && !group.is_removed();
        group.raft.runtime_config().elect(elect);
    }
}

/// Proposes `request` on this node, which should lead the group; answers after apply. The
/// request joins the group's queue and may share its entry with others (`Proposals`).
pub(crate) async fn local_write<A: Application>(group: &Group<A>, request: Request) -> ForwardReply {
    group.proposals.propose(&group.raft, request).await
}

/// Confirms leadership with a quorum (ReadIndex) and returns the position to reach: in a round
/// shared with every read waiting on the group here (`super::read_rounds`).
pub(crate) async fn local_read_index<A: Application>(group: &Group<A>) -> ReadIndexReply {
    let raft = group.raft.clone();
    group
        .reads
        .read(move || {
            let raft = raft.clone();
            async move { confirm_leadership(&raft).await }
        })
        .await
}

/// One ReadIndex round of openraft: the commit index, once a quorum confirmed this leader.
async fn confirm_leadership<A: Application>(raft: &GroupRaft<A>) -> ReadIndexReply {
    match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
        Ok(linearizer) => ReadIndexReply::Ready {
            position: position_of(linearizer.read_log_id().log_id()),
        },
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(to))) => {
            ReadIndexReply::NotLeader { leader: to.leader_id }
        }
        Err(e) => ReadIndexReply::NoQuorum {
            reason: e.to_string(),
        },
    }
}

/// Runs a guarded membership change on this node, which should lead the group: the leader's
/// own (latest) membership and replication progress decide whether it is needed and allowed
/// (`crate::membership`). The change is proposed only while the membership is still the one
/// checked (openraft's `LastMembershipLogId` precondition); a concurrent change makes it fail
/// and the caller retry, which checks again.
pub(crate) async fn local_membership<A: Application>(
    group: &Group<A>,
    rules: &MembershipRules,
    change: MembershipChange,
    check_only: bool,
) -> ForwardReply {
    let raft = &group.raft;
    if let Err(redirect) = raft.as_leader() {
        return ForwardReply::NotLeader {
            leader: redirect.leader_id,
        };
    }
    let (membership_log_id, view, node_of) = {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let node_of = |id: NodeId| membership.get_node(&id).cloned();
        let view = LeaderView {
            leader: m.id,
            led_for: group.led_for(),
            since_quorum_acked: m
                .last_quorum_acked
                .as_ref()
                .map(|at| openraft::Instant::elapsed(&**at)),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            last_log_index: m.last_log_index,
            matched: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, log_id)| (*id, log_id.map(|l| l.index)))
                        .collect()
                })
                .unwrap_or_default(),
            since_acked: m
                .heartbeat
                .as_ref()
                .map(|h| {
                    h.iter()
                        .map(|(id, at)| (*id, at.as_ref().map(|at| openraft::Instant::elapsed(&**at))))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let node_id = change.node_id();
        (*m.membership_config.log_id(), view, node_of(node_id))
    };
    let node_id = change.node_id();
    let role = view.role(node_id);
    let precondition = [Precondition::LastMembershipLogId {
        last_membership_log_id: membership_log_id,
    }];
    let (change, role_after) = match change {
        MembershipChange::AddLearner { node, .. } => {
            if role == MemberRole::Voter || (role == MemberRole::Learner && node_of == Some(node.clone())) {
                return ForwardReply::Membership(MembershipOutcome::Unchanged { already: role });
            }
            if check_only {
                return ForwardReply::Membership(MembershipOutcome::Allowed);
            }
            return changed(raft.add_learner(node_id, node, false).await, MemberRole::Learner);
        }
        MembershipChange::Promote { force, .. } => {
            if role == MemberRole::Voter {
                return ForwardReply::Membership(MembershipOutcome::Unchanged { already: role });
            }
            let checked = if force && role == MemberRole::Learner {
                Ok(())
            } else {
                if let Some(reason) = rules.cannot_judge(&view) {
                    return ForwardReply::Failed { reason };
                }
                rules.check_promote(node_id, &view)
            };
            if let Err(refusal) = checked {
                return ForwardReply::Membership(MembershipOutcome::Refused(refusal));
            }
            (
                ChangeMembers::AddVoterIds(BTreeSet::from([node_id])),
                MemberRole::Voter,
            )
        }
        MembershipChange::Remove { force, .. } => {
            let ids = BTreeSet::from([node_id]);
            let change = match role {
                MemberRole::Absent => {
                    return ForwardReply::Membership(MembershipOutcome::Unchanged { already: role })
                }
                MemberRole::Learner => ChangeMembers::RemoveNodes(ids),
                MemberRole::Voter => ChangeMembers::RemoveVoters(ids),
            };
            // Not even `force` removes the last voter: a group cannot have none.
            let last_voter = role == MemberRole::Voter && view.voters.len() == 1;
            if !force || last_voter {
                if let Some(reason) = rules.cannot_judge(&view).filter(|_| !last_voter) {
                    return ForwardReply::Failed { reason };
                }
                if let Err(refusal) = rules.check_remove(node_id, &view) {
                    return ForwardReply::Membership(MembershipOutcome::Refused(refusal));
                }
            }
            (change, MemberRole::Absent)
        }
    };
    if check_only {
        return ForwardReply::Membership(MembershipOutcome::Allowed);
    }
    changed(
        raft.change_membership_if(change, false, precondition).await,
        role_after,
    )
}

/// The reply to a committed (or failed) membership write that left the node `role`.
fn changed(
    result: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<TypeConfig, openraft::error::ClientWriteError<TypeConfig>>,
    >,
    role: MemberRole,
) -> ForwardReply {
    match ForwardReply::from_write(result) {
        ForwardReply::Applied { position, .. } => {
            ForwardReply::Membership(MembershipOutcome::Changed { position, role })
        }
        reply => reply,
    }
}

/// Runs a management operation on this node, which should lead the group.
pub(crate) async fn local_admin<A: Application>(
    group: &Group<A>,
    rules: &MembershipRules,
    request: AdminRequest,
) -> ForwardReply {
    let raft = &group.raft;
    match request {
        AdminRequest::Membership { change, check_only } => {
            local_membership(group, rules, change, check_only).await
        }
        // Non-blocking: the learner catches up in the background; callers watch metrics.
        AdminRequest::AddLearner { node_id, node } => {
            ForwardReply::from_write(raft.add_learner(node_id, node, false).await)
        }
        AdminRequest::ChangeMembership { voters } => ForwardReply::from_write(
            raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
                .await,
        ),
        AdminRequest::AddVoter { node_id } => ForwardReply::from_write(
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
                .await,
        ),
        AdminRequest::RemoveNode { node_id } => {
            if let Err(redirect) = raft.as_leader() {
                return ForwardReply::NotLeader {
                    leader: redirect.leader_id,
                };
            }
            // The leader's own (latest) membership decides which removal applies.
            let membership = raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .clone();
            let ids = BTreeSet::from([node_id]);
            let change = if membership.voter_ids().any(|id| id == node_id) {
                ChangeMembers::RemoveVoters(ids)
            } else if membership.learner_ids().any(|id| id == node_id) {
                ChangeMembers::RemoveNodes(ids)
            } else {
                return ForwardReply::Applied {
                    position: LogPosition::default(),
                    response: Response::default(),
                };
            };
            ForwardReply::from_write(raft.change_membership(change, false).await)
        }
        AdminRequest::TransferLeader { to } => {
            if let Err(redirect) = raft.as_leader() {
                return ForwardReply::NotLeader {
                    leader: redirect.leader_id,
                };
            }
            match raft.trigger().transfer_leader(to).await {
                Ok(()) => ForwardReply::Applied {
                    position: LogPosition::default(),
                    response: Response::default(),
                },
                Err(e) => ForwardReply::Failed {
                    reason: e.to_string(),
                },
            }
        }
    }
}

impl<A: Application> Handler for GroupTable<A> {
    async fn handle(&self, group_id: GroupId, body: RequestBody) -> Result<ResponseBody, RemoteError> {
        let group = self.get(group_id).ok_or(RemoteError::UnknownGroup { group_id })?;
        let raft = &group.raft;
        match body {
            RequestBody::AppendEntries(rpc) if !rpc.entries.is_empty() && self.alarm.reason().is_some() => {
                Err(RemoteError::NoSpace {
                    group_id,
                    reason: self.alarm.reason().unwrap_or_default(),
                })
            }
            RequestBody::AppendEntries(rpc) => {
                let response = raft
                    .append_entries(rpc)
                    .await
                    .map_err(|e| group_stopped(group_id, e))?;
                if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
                    self.leader_contact(group);
                }
                Ok(ResponseBody::AppendEntries(response))
            }
            RequestBody::Vote(rpc) => raft
                .vote(rpc)
                .await
                .map(ResponseBody::Vote)
                .map_err(|e| group_stopped(group_id, e)),
            RequestBody::PreVote(rpc) => raft
                .pre_vote(rpc)
                .await
                .map(ResponseBody::Vote)
                .map_err(|e| group_stopped(group_id, e)),
            RequestBody::TransferLeader(rpc) => raft
                .handle_transfer_leader(rpc)
                .await
                .map(ResponseBody::TransferLeader)
                .map_err(|e| group_stopped(group_id, e)),
            RequestBody::Forward(_) if self.alarm.reason().is_some() => {
                Ok(ResponseBody::Forward(ForwardReply::Failed {
                    // The forwarding node retries (at the next leader: this one is handing over).
                    reason: format!(
                        "the leader refuses writes: {}",
                        self.alarm.reason().unwrap_or_default()
                    ),
                }))
            }
            RequestBody::Forward(request) => Ok(ResponseBody::Forward(local_write(group, request).await)),
            RequestBody::ReadIndex => Ok(ResponseBody::ReadIndex(local_read_index(group).await)),
            RequestBody::Admin(request) => Ok(ResponseBody::Forward(
                local_admin(group, &self.rules, request).await,
            )),
        }
    }

    async fn install_snapshot(
        &self,
        group_id: GroupId,
        vote: Vote,
        snapshot: Snapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, RemoteError> {
        let group = self.get(group_id).ok_or(RemoteError::UnknownGroup { group_id })?;
        let response = group
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| group_stopped(group_id, e))?;
        self.leader_contact(group);
        Ok(response)
    }

    fn staging_dir(&self) -> &Path {
        &self.staging_dir
    }

    fn refuses_writes(&self) -> Option<String> {
        self.alarm.reason()
    }
}

/// The answer to a peer whose request the group's Raft refused: openraft refuses a peer's Raft
/// RPC only once the group stopped ([`openraft::error::Fatal`]).
fn group_stopped(group_id: GroupId, error: impl std::fmt::Display) -> RemoteError {
    RemoteError::Fatal {
        group_id,
        reason: error.to_string(),
    }
}
