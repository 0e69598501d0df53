//! `GET /admin/status` and `GET /admin/cluster`: one node's status, and the cluster overview the
//! dashboard draws.
//!
//! `/admin/cluster` asks every member (the voters and learners of any group, at the API
//! addresses this node's membership records) for its `/admin/status`, all in parallel and each
//! within [`MEMBER_STATUS_TIMEOUT`], then merges the answers (`node::overview::merge`, a pure
//! function). A member that does not answer in time is listed as unreachable; it never fails the
//! whole call, so the overview answers within about one timeout however many nodes are down.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dovetail_raft::NodeId;

use super::state::AdminState;
use crate::node::overview::{merge, ClusterOverview, FetchError, MemberAnswer};
use crate::node::status::{node_status, NodeStatus};

/// How long `/admin/cluster` waits for one member's status (connect included). A paused or
/// partitioned node costs the caller this much once, not once per group.
pub const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/cluster", get(cluster))
}

async fn status(State(admin): State<AdminState>) -> Json<NodeStatus> {
    Json(node_status(&admin.raft, &admin.info, &admin.bodies).await)
}

async fn cluster(State(admin): State<AdminState>) -> Json<ClusterOverview> {
    let local = node_status(&admin.raft, &admin.info, &admin.bodies).await;
    let this_node = admin.info.node_id;
    // Every member any group knows of; groups agree on addresses except mid-change, when
    // either address is as good a guess.
    let mut members: BTreeMap<NodeId, String> = BTreeMap::new();
    for group in 0..admin.raft.group_count() {
        if let Ok(nodes) = admin.raft.member_nodes(group) {
            for (node_id, node) in nodes {
                members.entry(node_id).or_insert(node.api_addr);
            }
        }
    }
    members.insert(this_node, admin.info.api_addr.clone());
    let asks: Vec<_> = members
        .into_iter()
        .filter(|(node_id, _)| *node_id != this_node)
        .map(|(node_id, api_addr)| {
            let admin = admin.clone();
            let addr = api_addr.clone();
            let ask = tokio::spawn(async move { fetch_status(&admin, node_id, &addr).await });
            (node_id, api_addr, ask)
        })
        .collect();
    let mut answers = BTreeMap::new();
    answers.insert(
        this_node,
        MemberAnswer {
            api_addr: admin.info.api_addr.clone(),
            status: Ok(local),
        },
    );
    for (node_id, api_addr, ask) in asks {
        let status = ask.await.unwrap_or_else(|e| Err(FetchError::TaskFailed(e)));
        answers.insert(node_id, MemberAnswer { api_addr, status });
    }
    Json(merge(this_node, &answers))
}

/// Member `node_id`'s `GET /admin/status`, within `MEMBER_STATUS_TIMEOUT`.
async fn fetch_status(admin: &AdminState, node_id: NodeId, api_addr: &str) -> Result<NodeStatus, FetchError> {
    if api_addr.is_empty() {
        return Err(FetchError::NoAddress);
    }
    let answer: NodeStatus = admin
        .peers
        .get_json(api_addr, "/admin/status", MEMBER_STATUS_TIMEOUT)
        .await?;
    if answer.node_id != node_id {
        return Err(FetchError::WrongNode {
            api_addr: api_addr.to_string(),
            answered: answer.node_id,
        });
    }
    Ok(answer)
}
