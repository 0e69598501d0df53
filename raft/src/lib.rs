//! `dovetail-raft`: Dovetail's consensus layer.
//!
//! This crate is where openraft lives (type configuration, the sled log store, the peer
//! transport, multi-group routing and snapshot transfer). It is generic over the replicated state
//! machine and knows nothing of mail: the domain crate (`dovetail`) plugs in through the types
//! defined here.
//!
//! # Layout
//! - [`LogPosition`]: a (term, index) position in a group's log, as state machines record it.
//! - [`type_config`]: [`TypeConfig`], openraft's type configuration: opaque [`Request`] and
//!   [`Response`] bytes, `u64` node ids, [`Node`] addresses, [`GroupId`]; aliases for the
//!   openraft types it implies ([`Entry`], [`LogId`], [`Vote`], ...).
//! - [`application`]: [`Application`], what the domain provides per group (apply, snapshots);
//!   the raft crate adapts it to openraft's state machine trait.
//! - [`decode`]: bincode decoding of stored or received bytes with a limit set by the input, so
//!   that no length field sizes an allocation.
//! - [`snapshot_file`]: [`SnapshotFile`], the snapshot data of Dovetail state machines: one
//!   file on disk, read by position.
//! - [`log_store`]: the sled log store. [`LogDb`] is a node's one `sled::Db` with its
//!   group-commit flusher (`log_store::flusher`); [`GroupLogStore`] is one group's
//!   `RaftLogStorage`, which keeps its last entries decoded (`log_store::tail`).
//! - [`state_machine`]: [`state_machine::AppStateMachine`], openraft's `RaftStateMachine` over an
//!   [`Application`]; [`state_machine::GroupRaft`], the openraft instance that drives it; the
//!   versioned `consensus_meta` encoding.
//! - [`restore`]: the consensus side of backup and restore: a group's cut and membership as its
//!   consensus metadata says, and seeding a node of a new cluster from a backup (why that is
//!   sound against openraft's startup is in its docs).
//! - [`transport`]: the peer transport: one authenticated, pipelined TCP connection per peer
//!   for all groups (openraft-multi `GroupRouter`), snapshot streaming, forwarding RPCs.
//! - [`membership`]: guarded membership changes: what a group's leader is asked, the rules it
//!   applies first (promote only a caught-up learner, keep three voters that survive a
//!   failure; pure), and what it answers.
//! - [`node`]: [`RaftNode`], the API the domain uses: start, initialize, propose (forwarded to
//!   the leader), read index, applied waits, metrics, membership, removal from a group, shutdown.
//! - [`metrics`]: names and descriptions of what this crate records through the `metrics`
//!   facade (log append and fsync latency, snapshot transfers, leader changes).
//!
//! Reading order: `type_config`, then `log_store` (its own docs give the order inside), then
//! `state_machine`, `transport`, `membership`, `node`, `restore`.

pub mod application;
pub mod decode;
pub mod log_store;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod restore;
pub mod snapshot_file;
pub mod state_machine;
pub mod transport;
pub mod type_config;

/// The seeded generator of every randomized test of the workspace (one file, included).
#[cfg(test)]
#[path = "../../tests/support/rng.rs"]
pub(crate) mod test_rng;

use serde::{Deserialize, Serialize};

pub use application::{is_out_of_space, Application, FlushFinish, FlushJob, SnapshotInfo, SnapshotJob};
pub use log_store::{GroupLogStore, LogDb, LogDbOptions, LogDbStats, LogStoreError, ReserveStatus};
pub use membership::{MemberRole, MembershipChange, MembershipOutcome, MembershipRules, Refusal};
pub use node::{
    BusyQueue, GroupChange, GroupMetrics, GroupRole, ProposeError, Proposed, RaftNode, RaftNodeConfig,
    RaftNodeError,
};
pub use snapshot_file::SnapshotFile;
pub use type_config::{
    Batch, Entry, GroupId, LeaderId, LogId, Membership, Node, NodeId, Payload, Request, Response, Responses,
    Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

/// A position in one group's Raft log: the term of the leader that wrote the entry and the
/// entry's index. Ordered by index first: within one log, indexes are unique and terms of later
/// entries are never lower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogPosition {
    pub term: u64,
    pub index: u64,
}

impl LogPosition {
    pub const fn new(term: u64, index: u64) -> LogPosition {
        LogPosition { term, index }
    }
}

impl PartialOrd for LogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LogPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.index, self.term).cmp(&(other.index, other.term))
    }
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.term, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_index_then_term() {
        assert!(LogPosition::new(5, 1) < LogPosition::new(1, 2));
        assert!(LogPosition::new(1, 2) < LogPosition::new(2, 2));
        assert_eq!(LogPosition::new(3, 9).to_string(), "3-9");
    }
}
