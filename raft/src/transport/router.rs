//! [`Router`]: the node's outgoing side of the peer transport, shared by all groups.
//!
//! It implements openraft-multi's `GroupRouter`, so every group's `GroupNetworkAdapter` sends
//! through the same per-peer [`Peer`] connection. [`GroupNetwork`] is the per-group
//! `RaftNetworkFactory` that hands out those adapters.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use openraft_multi::{GroupNetworkAdapter, GroupRouter};

use super::auth::ClusterSecret;
use super::connection::Peer;
use super::tls::PeerTls;
use super::wire::{AdminRequest, ForwardReply, ReadIndexReply, RequestBody, ResponseBody};
use super::{snapshot, CallError};
use crate::type_config::{GroupId, Node, NodeId, Request, Snapshot, TypeConfig, Vote};
use crate::SnapshotFile;

/// The outgoing peer transport. Cheap to clone; all clones share connections.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    node_id: NodeId,
    secret: ClusterSecret,
    tls: Option<PeerTls>,
    snapshot_chunk_bytes: usize,
    /// The least time a Raft RPC (append entries, heartbeat, vote, transfer) may wait for its
    /// answer; see [`Router::with_min_raft_rpc_timeout`].
    min_raft_rpc_timeout: Duration,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
}

impl Router {
    pub fn new(
        node_id: NodeId,
        secret: ClusterSecret,
        tls: Option<PeerTls>,
        snapshot_chunk_bytes: usize,
    ) -> Router {
        Router {
            inner: Arc::new(RouterInner {
                node_id,
                secret,
                tls,
                snapshot_chunk_bytes: snapshot_chunk_bytes.max(1),
                min_raft_rpc_timeout: Duration::ZERO,
                peers: Mutex::default(),
            }),
        }
    }

    /// Lets every Raft RPC wait at least `floor` for its answer (the node passes its election
    /// timeout). openraft gives append entries and heartbeats the heartbeat interval as their
    /// time to live; taken literally, a peer round trip longer than three quarters of it (112
    /// ms at the default 150 ms) fails every replication and heartbeat: nothing commits and no
    /// linearizable read succeeds, though the followers answer and nobody calls an election.
    /// Found by the proxy test of `tests/t70_netns_scripts.rs` (150 ms each way).
    ///
    /// # Panics
    /// If the router was cloned already.
    pub fn with_min_raft_rpc_timeout(mut self, floor: Duration) -> Router {
        Arc::get_mut(&mut self.inner)
            .expect("with_min_raft_rpc_timeout before the router is shared")
            .min_raft_rpc_timeout = floor;
        self
    }

    /// How long a Raft RPC with `option` waits: openraft's soft time to live, at least the floor.
    fn raft_timeout(&self, option: &RPCOption) -> Duration {
        option.soft_ttl().max(self.inner.min_raft_rpc_timeout)
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    pub(crate) fn secret(&self) -> &ClusterSecret {
        &self.inner.secret
    }

    pub(crate) fn tls(&self) -> Option<&PeerTls> {
        self.inner.tls.as_ref()
    }

    pub(crate) fn snapshot_chunk_bytes(&self) -> usize {
        self.inner.snapshot_chunk_bytes
    }

    /// Records where `target` listens. A changed address replaces the peer (and its connection).
    pub fn set_peer_addr(&self, target: NodeId, addr: &str) {
        let mut peers = self.inner.peers.lock().expect("peers lock");
        if peers.get(&target).is_none_or(|peer| peer.addr != addr) {
            peers.insert(target, Arc::new(Peer::new(addr.to_string())));
        }
    }

    pub(crate) fn peer(&self, target: NodeId) -> Result<Arc<Peer>, CallError> {
        let peers = self.inner.peers.lock().expect("peers lock");
        peers
            .get(&target)
            .cloned()
            .ok_or_else(|| CallError::Unreachable(format!("no address known for node {target}")))
    }

    /// Sends one request to `target` over the shared connection.
    pub async fn call(
        &self,
        target: NodeId,
        group_id: GroupId,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody, CallError> {
        let peer = self.peer(target)?;
        let connect = peer.connection(&self.inner.secret, self.inner.tls.as_ref(), self.inner.node_id);
        let connection = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| CallError::Timeout(timeout))??;
        connection.call(group_id, body, timeout).await
    }

    /// Asks `target` to propose `request` in `group_id`.
    pub async fn forward(
        &self,
        target: NodeId,
        group_id: GroupId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<ForwardReply, CallError> {
        match self
            .call(target, group_id, RequestBody::Forward(Request(request)), timeout)
            .await?
        {
            ResponseBody::Forward(reply) => Ok(reply),
            other => Err(unexpected("forward", &other)),
        }
    }

    /// Asks `target` for a linearizable read index in `group_id`.
    pub async fn read_index(
        &self,
        target: NodeId,
        group_id: GroupId,
        timeout: Duration,
    ) -> Result<ReadIndexReply, CallError> {
        match self
            .call(target, group_id, RequestBody::ReadIndex, timeout)
            .await?
        {
            ResponseBody::ReadIndex(reply) => Ok(reply),
            other => Err(unexpected("read_index", &other)),
        }
    }

    /// Asks `target` to run a management operation in `group_id`.
    pub async fn admin(
        &self,
        target: NodeId,
        group_id: GroupId,
        request: AdminRequest,
        timeout: Duration,
    ) -> Result<ForwardReply, CallError> {
        match self
            .call(target, group_id, RequestBody::Admin(request), timeout)
            .await?
        {
            ResponseBody::Forward(reply) => Ok(reply),
            other => Err(unexpected("admin", &other)),
        }
    }

    /// Drops every connection.
    pub async fn close(&self) {
        let peers: Vec<_> = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .values()
            .cloned()
            .collect();
        for peer in peers {
            peer.close().await;
        }
    }
}

fn unexpected(what: &str, body: &ResponseBody) -> CallError {
    CallError::Network(format!("{what}: unexpected response {body:?}"))
}

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
