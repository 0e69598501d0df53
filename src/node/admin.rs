//! The admin API of a cluster member: membership and leadership, JSON over HTTP.
//!
//! ```text
//! POST   /admin/members/learners              add a learner to every group  {"node_id","peer_addr","api_addr"}
//! POST   /admin/members/voters                promote a learner everywhere  {"node_id"}
//! DELETE /admin/members/{node_id}             remove a voter or learner from every group
//! POST   /admin/groups/{group}/transfer-leader  hand a group's leadership   {"to"}
//! POST   /admin/rebalance                     spread group leaders evenly over the voters
//! ```
//! Any member accepts these; each group's change runs on that group's leader (the raft layer
//! forwards). Membership operations are idempotent, so a 503 (no leader or quorum before the
//! deadline, possibly after some groups changed) is answered by retrying. Errors use the client
//! API's body, `{"error": {"code", "message"}}`: 400 for bad input, 404 for an unknown group or
//! node, 503 when no leader or quorum answered in time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{delete, post};
use axum::{Json, Router};
use dovetail_raft::{Node, ProposeError, RaftNode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::mail_group::MailGroup;
use super::rebalance::{plan, wait_for_leader, LeaderView};
use crate::api::extract::{JsonBody, PathParams};
use crate::api::{ApiError, ErrorCode};

/// What the admin handlers share.
#[derive(Clone)]
struct Admin {
    raft: RaftNode<MailGroup>,
    /// How long one operation may wait for leaders and quorums (across all groups).
    timeout: Duration,
}

/// The admin router. `timeout` bounds each operation (a membership change visits every group).
pub fn router(raft: RaftNode<MailGroup>, timeout: Duration) -> Router {
    Router::new()
        .route("/admin/members/learners", post(add_learner))
        .route("/admin/members/voters", post(add_voter))
        .route("/admin/members/{node_id}", delete(remove_member))
        .route("/admin/groups/{group}/transfer-leader", post(transfer_leader))
        .route("/admin/rebalance", post(rebalance))
        .with_state(Admin { raft, timeout })
}

impl Admin {
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
}

/// The body, or why not: a body of the wrong shape is bad input here (400), not the client
/// API's 422.
fn bad_input<T>(body: Result<JsonBody<T>, ApiError>) -> Result<T, ApiError> {
    body.map(|JsonBody(body)| body).map_err(|e| match e.code {
        ErrorCode::InvalidBody => ApiError::invalid(e.message),
        _ => e,
    })
}

fn no_such_node(node_id: u64) -> ApiError {
    ApiError::new(ErrorCode::NoSuchNode, format!("node {node_id} is not a member"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLearner {
    node_id: u64,
    peer_addr: String,
    api_addr: String,
}

async fn add_learner(
    State(admin): State<Admin>,
    body: Result<JsonBody<AddLearner>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let body = bad_input(body)?;
    if body.node_id == 0 {
        return Err(ApiError::invalid("node_id: node ids start at 1"));
    }
    for (field, addr) in [("peer_addr", &body.peer_addr), ("api_addr", &body.api_addr)] {
        addr.parse::<SocketAddr>()
            .map_err(|e| ApiError::invalid(format!("{field}: {addr:?} is not host:port ({e})")))?;
    }
    let node = Node {
        peer_addr: body.peer_addr,
        api_addr: body.api_addr,
    };
    admin
        .raft
        .add_learner(body.node_id, node, admin.deadline())
        .await?;
    Ok(Json(
        json!({"node_id": body.node_id, "role": "learner", "groups": admin.raft.group_count()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddVoter {
    node_id: u64,
}

async fn add_voter(
    State(admin): State<Admin>,
    body: Result<JsonBody<AddVoter>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let body = bad_input(body)?;
    // Every group must already know the node (as learner or voter); the local view may lag the
    // leaders', which then decide.
    for group in 0..admin.raft.group_count() {
        let m = admin.raft.metrics(group)?;
        if !m.voters.contains(&body.node_id) && !m.learners.contains(&body.node_id) {
            return Err(ApiError::new(
                ErrorCode::NoSuchNode,
                format!(
                    "node {} is not a learner of group {group}: add it first (POST /admin/members/learners)",
                    body.node_id
                ),
            ));
        }
    }
    admin.raft.add_voter(body.node_id, admin.deadline()).await?;
    Ok(Json(
        json!({"node_id": body.node_id, "role": "voter", "groups": admin.raft.group_count()}),
    ))
}

async fn remove_member(
    State(admin): State<Admin>,
    PathParams(node_id): PathParams<u64>,
) -> Result<Json<Value>, ApiError> {
    let mut known = false;
    for group in 0..admin.raft.group_count() {
        let m = admin.raft.metrics(group)?;
        if m.voters.len() == 1 && m.voters.contains(&node_id) {
            return Err(ApiError::invalid(format!(
                "node {node_id} is the only voter of group {group}"
            )));
        }
        known |= m.voters.contains(&node_id) || m.learners.contains(&node_id);
    }
    if !known {
        return Err(no_such_node(node_id));
    }
    admin.raft.remove_node(node_id, admin.deadline()).await?;
    Ok(Json(
        json!({"node_id": node_id, "removed": true, "groups": admin.raft.group_count()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferLeader {
    to: u64,
}

async fn transfer_leader(
    State(admin): State<Admin>,
    PathParams(group): PathParams<u32>,
    body: Result<JsonBody<TransferLeader>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let body = bad_input(body)?;
    let m = admin.raft.metrics(group)?;
    if !m.voters.contains(&body.to) {
        return Err(ApiError::new(
            ErrorCode::NoSuchNode,
            format!("node {} is not a voter of group {group}", body.to),
        ));
    }
    let from = m.current_leader;
    // A leader asked to transfer to itself would stop serving until an election: skip it.
    if from != Some(body.to) {
        let deadline = admin.deadline();
        admin.raft.transfer_leader(group, body.to, deadline).await?;
        if !wait_for_leader(&admin.raft, group, body.to, deadline).await {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "group {group}: node {} did not take over before the deadline",
                    body.to
                ),
            ));
        }
    }
    Ok(Json(json!({"group": group, "from": from, "leader": body.to})))
}

async fn rebalance(State(admin): State<Admin>) -> Result<Json<Value>, ApiError> {
    let view = LeaderView::observe(&admin.raft);
    let voters = view.common_voters().cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "groups disagree on their voters (membership change under way); retry",
        )
    })?;
    let moves = plan(&voters, &view.leaders);
    let mut report = Vec::with_capacity(moves.len());
    for step in &moves {
        let deadline = admin.deadline();
        let done = match admin.raft.transfer_leader(step.group, step.to, deadline).await {
            Ok(()) => wait_for_leader(&admin.raft, step.group, step.to, deadline).await,
            Err(ProposeError::Shutdown) => return Err(ProposeError::Shutdown.into()),
            Err(e) => {
                tracing::warn!(group = step.group, to = step.to, error = %e, "rebalance move failed");
                false
            }
        };
        report.push(json!({"group": step.group, "from": step.from, "to": step.to, "done": done}));
    }
    let after = LeaderView::observe(&admin.raft);
    let mut led: BTreeMap<u64, u32> = voters.iter().map(|&v| (v, 0)).collect();
    for leader in after.leaders.iter().flatten() {
        *led.entry(*leader).or_default() += 1;
    }
    Ok(Json(json!({"moves": report, "leaders": led})))
}
