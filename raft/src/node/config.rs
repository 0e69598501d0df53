//! [`RaftNodeConfig`]: what a node needs to start, with defaults sized for 16-256 groups on a
//! couple of cores; [`ConfigError`] when it cannot start one.
//!
//! Every group runs its own timers (ARCHITECTURE.md §10), so with 256 groups a 50 ms heartbeat would be
//! 5,000 heartbeats a second per peer. The defaults (150 ms heartbeat, 1-2 s election timeout)
//! keep that near 1,700/s per peer on one shared connection, and leave an election timeout long
//! enough that a busy runtime thread does not start spurious elections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};

use super::proposals::{ProposalLimits, DEFAULT_MAX_QUEUED_REQUESTS};
use crate::transport::{PeerTlsError, PeerTlsFiles};
use crate::type_config::NodeId;

/// Why a [`RaftNodeConfig`] cannot start a node.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `group_count` is 0.
    #[error("group_count must be at least 1")]
    NoGroups,
    /// openraft refused the timing or snapshot settings (`heartbeat_interval_ms`,
    /// `election_timeout_ms_min`, `election_timeout_ms_max`, ...).
    #[error(transparent)]
    Raft(#[from] openraft::ConfigError),
    /// The files named by `peer_tls` could not be loaded.
    #[error(transparent)]
    PeerTls(#[from] PeerTlsError),
}

/// Configuration of a [`RaftNode`](super::RaftNode).
#[derive(Clone)]
pub struct RaftNodeConfig {
    /// This node's id. Invariant: never reused by another node (ARCHITECTURE.md §10).
    pub node_id: NodeId,
    /// Directory for the log db (`<data_dir>/raft-log`) and staged incoming snapshots
    /// (`<data_dir>/snapshot-staging`).
    pub data_dir: PathBuf,
    /// Groups are `0..group_count`; fixed at cluster creation.
    pub group_count: u32,
    /// Shared by all nodes; every peer connection proves knowledge of it. Never logged.
    pub cluster_secret: Vec<u8>,
    /// How often a leader sends heartbeats, per group. Default 150 ms.
    pub heartbeat_interval_ms: u64,
    /// Election timeout range; a follower that hears no leader for a random time in this range
    /// campaigns. Default 1000..2000 ms. Invariant: `heartbeat_interval_ms < election_timeout_ms_min`.
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    /// Build a snapshot once this many entries were applied since the last one; `None` never
    /// builds one automatically. Default `Some(5000)`.
    pub snapshot_logs_since_last: Option<u64>,
    /// Entries kept in the log behind the latest snapshot. A follower lagging by less catches up
    /// from the log; beyond it, from a snapshot (ARCHITECTURE.md §8). Default 1000.
    pub max_in_snapshot_log_to_keep: u64,
    /// How often `Application::begin_periodic_flush` runs for every group (`Application::flush` runs
    /// once at shutdown). Default 500 ms.
    pub app_flush_interval_ms: u64,
    /// Incoming peer connections beyond this are refused. Default 256.
    pub max_peer_connections: usize,
    /// Snapshot transfer chunk size. Default 1 MiB.
    pub snapshot_chunk_bytes: usize,
    /// Requests a leader queues per group while the previous entry commits; beyond it a request
    /// is refused at once ([`ProposeError::Busy`](super::ProposeError::Busy)). Default
    /// [`DEFAULT_MAX_QUEUED_REQUESTS`]; see `node::proposals` for the byte bound beside it.
    pub max_queued_proposals: usize,
    /// Mutual TLS on peer connections (see `transport::tls`); `None`: plain TCP.
    /// What the Raft log keeps written ahead of its segments, so a full disk is noticed while
    /// the log still has room (`log_store/reserve.rs`). Default 16 MiB.
    pub log_reserve_bytes: u64,
    pub peer_tls: Option<PeerTlsFiles>,
}

impl std::fmt::Debug for RaftNodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNodeConfig")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("group_count", &self.group_count)
            .field("cluster_secret", &"..")
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("election_timeout_ms_min", &self.election_timeout_ms_min)
            .field("election_timeout_ms_max", &self.election_timeout_ms_max)
            .field("snapshot_logs_since_last", &self.snapshot_logs_since_last)
            .field("max_in_snapshot_log_to_keep", &self.max_in_snapshot_log_to_keep)
            .field("app_flush_interval_ms", &self.app_flush_interval_ms)
            .field("max_peer_connections", &self.max_peer_connections)
            .field("snapshot_chunk_bytes", &self.snapshot_chunk_bytes)
            .field("max_queued_proposals", &self.max_queued_proposals)
            .field("peer_tls", &self.peer_tls)
            .finish()
    }
}

impl RaftNodeConfig {
    /// A configuration with the documented defaults.
    pub fn new(
        node_id: NodeId,
        data_dir: impl Into<PathBuf>,
        group_count: u32,
        cluster_secret: impl Into<Vec<u8>>,
    ) -> Self {
        RaftNodeConfig {
            node_id,
            data_dir: data_dir.into(),
            group_count,
            cluster_secret: cluster_secret.into(),
            heartbeat_interval_ms: 150,
            election_timeout_ms_min: 1000,
            election_timeout_ms_max: 2000,
            snapshot_logs_since_last: Some(5000),
            max_in_snapshot_log_to_keep: 1000,
            app_flush_interval_ms: 500,
            max_peer_connections: 256,
            snapshot_chunk_bytes: 1 << 20,
            log_reserve_bytes: crate::log_store::reserve::DEFAULT_RESERVE_BYTES,
            max_queued_proposals: DEFAULT_MAX_QUEUED_REQUESTS,
            peer_tls: None,
        }
    }

    /// The bound of every group's proposal queue.
    pub(crate) fn proposal_limits(&self) -> ProposalLimits {
        ProposalLimits {
            requests: self.max_queued_proposals,
            ..ProposalLimits::default()
        }
    }

    pub(crate) fn app_flush_interval(&self) -> Duration {
        Duration::from_millis(self.app_flush_interval_ms.max(1))
    }

    /// The openraft configuration every group of this node uses.
    pub(crate) fn raft_config(&self) -> Result<Arc<Config>, ConfigError> {
        let config = Config {
            cluster_name: "dovetail".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_ms_min,
            election_timeout_max: self.election_timeout_ms_max,
            // Per chunk / frame of a snapshot transfer, not for the whole snapshot.
            install_snapshot_timeout: self.election_timeout_ms_min.max(1000),
            snapshot_policy: match self.snapshot_logs_since_last {
                Some(n) => SnapshotPolicy::LogsSinceLast(n),
                None => SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            // A leader that restarts must not resume leadership in its old term: openraft then
            // takes the read index from its first entry of that term and its persisted commit
            // index, which may lag what it had acknowledged before the crash (the commit index
            // is saved lazily), so a "linearizable" read could miss an acknowledged write. Found
            // by the Jepsen set workload under kill -9 of all nodes. As a follower it must win a
            // new election, whose blank entry bounds every later read index from below.
            enable_leader_restore: Some(false),
            // openraft's default of 300 entries per AppendEntries fits one transport frame
            // because no entry exceeds `MAX_BATCH_BYTES` (`transport::wire` tests it).
            ..Config::default()
        };
        Ok(Arc::new(config.validate()?))
    }
}
