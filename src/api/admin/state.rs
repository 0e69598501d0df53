//! `AdminState`: what every admin handler shares.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail_raft::RaftNode;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::node::bodies::NodeBodies;
use crate::node::mail_group::MailGroup;
use crate::node::peer_api::PeerApi;
use crate::node::status::NodeInfo;

#[derive(Clone)]
pub struct AdminState {
    pub raft: RaftNode<MailGroup>,
    /// Who this node is, for `GET /admin/status`.
    pub info: Arc<NodeInfo>,
    /// Calls other members' admin API, with the admin token every member of a cluster shares.
    pub peers: PeerApi,
    /// Bounds each operation: how long it may wait for leaders, quorums and other members
    /// (across all groups for a membership change, which visits every group).
    pub timeout: Duration,
    /// The process's metrics recorder, rendered by `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// The node's message bodies (the body routes, status).
    pub bodies: NodeBodies,
}

impl AdminState {
    /// The deadline of an operation starting now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
}
