//! [`Router`]: the node's outgoing side of the peer transport, shared by all groups: one
//! [`Peer`] connection per node for the Raft RPCs of every group (through openraft-multi's
//! `GroupRouter`, implemented in `group_network.rs`) and for Dovetail's forwarding RPCs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::network::RPCOption;

use super::auth::ClusterSecret;
use super::connection::Peer;
use super::tls::PeerTls;
use super::wire::{AdminRequest, ForwardReply, ReadIndexReply, RequestBody, ResponseBody};
use super::CallError;
use crate::type_config::{GroupId, NodeId, Request};

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
    pub(super) fn raft_timeout(&self, option: &RPCOption) -> Duration {
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

/// The error of a call answered with the wrong kind of response.
pub(super) fn unexpected(what: &str, body: &ResponseBody) -> CallError {
    CallError::Network(format!("{what}: unexpected response {body:?}"))
}
