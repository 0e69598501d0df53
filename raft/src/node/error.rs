//! The errors of [`RaftNode`](super::RaftNode): [`ProposeError`] for the request paths
//! (propose, read index, waits) and [`RaftNodeError`] for starting, bootstrapping and
//! management.

use std::io;

use super::config::ConfigError;
use crate::type_config::GroupId;
use crate::LogStoreError;

/// Why a proposal, read index or wait did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader, no quorum, or no commit before the deadline. A proposal that timed out may
    /// still commit later.
    #[error("group {group_id}: deadline passed: {last_error}")]
    Timeout { group_id: GroupId, last_error: String },
    /// The node is shutting down.
    #[error("node is shutting down")]
    Shutdown,
    /// The group stopped (storage or application failure); it will not recover by retrying.
    #[error("group {group_id}: fatal: {reason}")]
    Fatal { group_id: GroupId, reason: String },
    #[error("unknown group {group_id}")]
    UnknownGroup { group_id: GroupId },
    /// This node's disk is (nearly) full: it takes no new writes until its storage alarm clears
    /// ([`super::RaftNode::set_storage_alarm`]). Reads still work.
    #[error("node {node_id} refuses writes: {reason}")]
    NoSpace { node_id: crate::NodeId, reason: String },
    /// A bounded queue on the way to the group's leader was full: `queued` requests in `queue`,
    /// at its `limit`. The request was not taken and will never commit; it was refused at once
    /// (not retried until the deadline), and the client should come back later.
    #[error("group {group_id}: busy: {queued} requests in the {queue} (limit {limit}); retry later")]
    Busy {
        group_id: GroupId,
        queue: BusyQueue,
        queued: u64,
        limit: u64,
    },
    /// This node was removed from the group ([`super::RaftNode::set_removed`]): it serves none of
    /// the group's requests; the group's members do.
    #[error("group {group_id}: node {node_id} was removed from the group and no longer serves it")]
    Removed {
        group_id: GroupId,
        node_id: crate::NodeId,
    },
}

/// Which bound a [`ProposeError::Busy`] request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyQueue {
    /// The leader's queue of requests waiting to be proposed (`node::proposals`).
    Proposals,
    /// The forwarded requests the leader serves at once from one peer connection
    /// (`transport::server`).
    Forwards,
}

impl std::fmt::Display for BusyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusyQueue::Proposals => "leader's proposal queue",
            BusyQueue::Forwards => "leader's forwarded requests from this node",
        })
    }
}

/// Why starting, bootstrapping or a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftNodeError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    #[error("group {group_id}: {reason}")]
    Group { group_id: GroupId, reason: String },
    #[error(transparent)]
    Request(#[from] ProposeError),
}
