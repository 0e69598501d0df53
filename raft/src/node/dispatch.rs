//! `GroupTable`: a node's groups, and the operations a group's leader runs on behalf of a
//! caller — local or forwarded over the transport. Implements the transport's [`Handler`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{LinearizableReadError, RaftError};
use openraft::raft::SnapshotResponse;
use openraft::{ChangeMembers, ReadPolicy};

use super::busy_hint::BusyHint;
use super::proposals::Proposals;
use super::storage_alarm::StorageAlarm;
use crate::state_machine::{position_of, GroupRaft};
use crate::transport::wire::{
    AdminRequest, ForwardReply, ReadIndexReply, RemoteError, RequestBody, ResponseBody,
};
use crate::transport::Handler;
use crate::type_config::{GroupId, Request, Response, Snapshot, TypeConfig, Vote};
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
}

/// The node's groups, indexed by group id (`0..group_count`).
pub(crate) struct GroupTable<A: Application> {
    pub groups: Vec<Group<A>>,
    pub staging_dir: PathBuf,
    /// Raised while the node's disk is full (see `storage_alarm.rs`).
    pub alarm: StorageAlarm,
}

impl<A: Application> GroupTable<A> {
    pub fn get(&self, group_id: GroupId) -> Option<&Group<A>> {
        self.groups.get(group_id as usize)
    }
}

/// Proposes `request` on this node, which should lead the group; answers after apply. The
/// request joins the group's queue and may share its entry with others (`Proposals`).
pub(crate) async fn local_write<A: Application>(group: &Group<A>, request: Request) -> ForwardReply {
    group.proposals.propose(&group.raft, request).await
}

/// Confirms leadership with a quorum (ReadIndex) and returns the position to reach.
pub(crate) async fn local_read_index<A: Application>(raft: &GroupRaft<A>) -> ReadIndexReply {
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

/// Runs a management operation on this node, which should lead the group.
pub(crate) async fn local_admin<A: Application>(raft: &GroupRaft<A>, request: AdminRequest) -> ForwardReply {
    match request {
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
            RequestBody::AppendEntries(rpc) => raft
                .append_entries(rpc)
                .await
                .map(ResponseBody::AppendEntries)
                .map_err(|e| group_stopped(group_id, e)),
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
            RequestBody::ReadIndex => Ok(ResponseBody::ReadIndex(local_read_index(raft).await)),
            RequestBody::Admin(request) => Ok(ResponseBody::Forward(local_admin(raft, request).await)),
        }
    }

    async fn install_snapshot(
        &self,
        group_id: GroupId,
        vote: Vote,
        snapshot: Snapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, RemoteError> {
        let group = self.get(group_id).ok_or(RemoteError::UnknownGroup { group_id })?;
        group
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| group_stopped(group_id, e))
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
