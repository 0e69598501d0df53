//! Leadership: hand one group's leadership to a voter, or spread every group's leadership evenly
//! over the voters (the plan is `node::rebalance::plan`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use dovetail_raft::ProposeError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::AdminState;
use crate::api::extract::{AdminJson, PathParams};
use crate::api::{ApiError, ErrorCode};
use crate::node::rebalance::{plan, wait_for_leader, LeaderView};

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/groups/{group}/transfer-leader", post(transfer_leader))
        .route("/admin/rebalance", post(rebalance))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferLeader {
    to: u64,
}

async fn transfer_leader(
    State(admin): State<AdminState>,
    PathParams(group): PathParams<u32>,
    AdminJson(body): AdminJson<TransferLeader>,
) -> Result<Json<Value>, ApiError> {
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

async fn rebalance(State(admin): State<AdminState>) -> Result<Json<Value>, ApiError> {
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
