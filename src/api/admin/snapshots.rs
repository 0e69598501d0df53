//! `POST /admin/groups/{group}/snapshot` and `POST /admin/snapshot`: build a snapshot of one
//! group, or of every group, on this node now, and answer once it covers what was applied when
//! asked.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::AdminState;
use crate::api::extract::PathParams;
use crate::api::{ApiError, ErrorCode};

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/groups/{group}/snapshot", post(snapshot_group))
        .route("/admin/snapshot", post(snapshot_all))
}

/// Builds a snapshot of `group` on this node and waits until it covers what was applied when
/// asked.
async fn snapshot_one(admin: &AdminState, group: u32, deadline: Instant) -> Result<Value, ApiError> {
    let before = admin.raft.metrics(group)?;
    let wanted = before.applied.map_or(0, |a| a.index);
    admin.raft.trigger_snapshot(group).await?;
    loop {
        let now = admin.raft.metrics(group)?;
        let snapshot = now.snapshot.map_or(0, |s| s.index);
        if snapshot >= wanted && (wanted == 0 || now.snapshot.is_some()) {
            return Ok(json!({"group": group, "snapshot": snapshot, "applied": wanted}));
        }
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("group {group}: the snapshot did not reach {wanted} before the deadline"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn snapshot_group(
    State(admin): State<AdminState>,
    PathParams(group): PathParams<u32>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(snapshot_one(&admin, group, admin.deadline()).await?))
}

async fn snapshot_all(State(admin): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let deadline = Instant::now() + admin.timeout * 2;
    let mut groups = Vec::new();
    for group in 0..admin.raft.group_count() {
        groups.push(snapshot_one(&admin, group, deadline).await?);
    }
    Ok(Json(json!({"node_id": admin.raft.node_id(), "groups": groups})))
}
