//! [`GroupNetwork`]: one group's openraft `RaftNetworkFactory`, and openraft-multi's
//! `GroupRouter` implemented for the shared [`Router`]: every group's `GroupNetworkAdapter` sends
//! its Raft RPCs through the router's one connection per peer, and its snapshots through
//! [`snapshot::send`] on a connection of their own.

use std::future::Future;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use openraft_multi::{GroupNetworkAdapter, GroupRouter};

use super::router::{unexpected, Router};
use super::wire::{RequestBody, ResponseBody};
use super::{snapshot, CallError};
use crate::type_config::{GroupId, Node, NodeId, Snapshot, TypeConfig, Vote};
use crate::SnapshotFile;

/// One group's `RaftNetworkFactory`: adapters over the shared [`Router`].
pub struct GroupNetwork {
    router: Router,
    group_id: GroupId,
}

impl GroupNetwork {
    pub fn new(router: Router, group_id: GroupId) -> GroupNetwork {
        GroupNetwork { router, group_id }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupNetworkAdapter<TypeConfig, GroupId, Router>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        self.router.set_peer_addr(target, &node.peer_addr);
        GroupNetworkAdapter::new(self.router.clone(), target, self.group_id)
    }
}

impl GroupRouter<TypeConfig, GroupId> for Router {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &self,
        target: NodeId,
        group_id: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let entries = if rpc.entries.is_empty() { "none" } else { "some" };
        metrics::counter!(crate::metrics::APPEND_ENTRIES_SENT_TOTAL, "entries" => entries).increment(1);
        let body = RequestBody::AppendEntries(rpc);
        match self
            .call(target, group_id, body, self.raft_timeout(&option))
            .await
        {
            Ok(ResponseBody::AppendEntries(response)) => Ok(response),
            Ok(other) => Err(rpc_error(
                target,
                "append_entries",
                unexpected("append_entries", &other),
            )),
            Err(e) => Err(rpc_error(target, "append_entries", e)),
        }
    }

    async fn vote(
        &self,
        target: NodeId,
        group_id: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                target,
                group_id,
                RequestBody::Vote(rpc),
                self.raft_timeout(&option),
            )
            .await
        {
            Ok(ResponseBody::Vote(response)) => Ok(response),
            Ok(other) => Err(rpc_error(target, "vote", unexpected("vote", &other))),
            Err(e) => Err(rpc_error(target, "vote", e)),
        }
    }

    async fn pre_vote(
        &self,
        target: NodeId,
        group_id: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                target,
                group_id,
                RequestBody::PreVote(rpc),
                self.raft_timeout(&option),
            )
            .await
        {
            Ok(ResponseBody::Vote(response)) => Ok(response),
            Ok(other) => Err(rpc_error(target, "pre_vote", unexpected("pre_vote", &other))),
            Err(e) => Err(rpc_error(target, "pre_vote", e)),
        }
    }

    async fn full_snapshot(
        &self,
        target: NodeId,
        group_id: GroupId,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        snapshot::send(self, target, group_id, vote, snapshot, cancel, option).await
    }

    async fn transfer_leader(
        &self,
        target: NodeId,
        group_id: GroupId,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                target,
                group_id,
                RequestBody::TransferLeader(req),
                self.raft_timeout(&option),
            )
            .await
        {
            Ok(ResponseBody::TransferLeader(response)) => Ok(response),
            Ok(other) => Err(rpc_error(
                target,
                "transfer_leader",
                unexpected("transfer_leader", &other),
            )),
            Err(e) => Err(rpc_error(target, "transfer_leader", e)),
        }
    }
}

/// openraft's error for a call that failed: `what` is the RPC, named as in [`RequestBody::name`].
fn rpc_error(target: NodeId, what: &str, error: CallError) -> RPCError<TypeConfig> {
    match error {
        CallError::Timeout(timeout) => RPCError::Timeout(openraft::error::Timeout {
            action: match what {
                "vote" | "pre_vote" => openraft::network::RPCTypes::Vote,
                "transfer_leader" => openraft::network::RPCTypes::TransferLeader,
                _ => openraft::network::RPCTypes::AppendEntries,
            },
            id: 0,
            target,
            timeout,
        }),
        CallError::Unreachable(message) => RPCError::Unreachable(Unreachable::from_string(message)),
        // The receiver could not serve the group (unknown, stopped): treat it as unreachable
        // so openraft backs off instead of retrying at once.
        CallError::Remote(message) => RPCError::Unreachable(Unreachable::from_string(format!(
            "node {target}: {what}: {message}"
        ))),
        CallError::Network(message) => RPCError::Network(NetworkError::from_string(message)),
    }
}
