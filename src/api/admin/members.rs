//! Membership: add a learner to every group, promote it to voter everywhere, remove a member
//! from every group. Each runs on every group's leader and is idempotent, so a 503 (some groups
//! changed, others did not before the deadline) is answered by retrying.

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::{delete, post};
use axum::{Json, Router};
use dovetail_raft::Node;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::AdminState;
use crate::api::extract::{AdminJson, PathParams};
use crate::api::{ApiError, ErrorCode};

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/members/learners", post(add_learner))
        .route("/admin/members/voters", post(add_voter))
        .route("/admin/members/{node_id}", delete(remove_member))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLearner {
    node_id: u64,
    peer_addr: String,
    api_addr: String,
}

async fn add_learner(
    State(admin): State<AdminState>,
    AdminJson(body): AdminJson<AddLearner>,
) -> Result<Json<Value>, ApiError> {
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
    State(admin): State<AdminState>,
    AdminJson(body): AdminJson<AddVoter>,
) -> Result<Json<Value>, ApiError> {
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
    State(admin): State<AdminState>,
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
        return Err(ApiError::new(
            ErrorCode::NoSuchNode,
            format!("node {node_id} is not a member"),
        ));
    }
    admin.raft.remove_node(node_id, admin.deadline()).await?;
    Ok(Json(
        json!({"node_id": node_id, "removed": true, "groups": admin.raft.group_count()}),
    ))
}
