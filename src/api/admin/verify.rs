//! `POST /admin/verify`: compares every replica of every group (or of the groups asked), without
//! pausing writes. This file is the fan-out: in rounds, it asks every member of a group for its
//! digests (`GET /admin/groups/{group}/digests`, or this node's own) and hands each round's
//! answers to `node::verify::compare`, which decides what diverges and what is still in flux.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use dovetail_raft::NodeId;
use serde::Deserialize;
use serde_json::json;

use super::state::AdminState;
use crate::api::extract::OptionalJson;
use crate::api::ApiError;
use crate::node::replica::local_digests;
use crate::node::verify::{compare, GroupDigests, VerifyReport};

/// How often verify asks again about mailboxes whose copies are at different positions.
const VERIFY_ROUNDS: usize = 10;
const VERIFY_ROUND_PAUSE: Duration = Duration::from_millis(200);

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/admin/verify", post(verify))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    groups: Option<Vec<u32>>,
}

async fn verify(
    State(admin): State<AdminState>,
    OptionalJson(request): OptionalJson<VerifyRequest>,
) -> Result<Json<VerifyReport>, ApiError> {
    let groups = request
        .groups
        .unwrap_or_else(|| (0..admin.raft.group_count()).collect());
    let mut report = VerifyReport::default();
    for group in groups {
        verify_group(&admin, group, &mut report).await?;
        report.groups_checked += 1;
    }
    report.clean =
        report.divergences.is_empty() && report.unverified.is_empty() && report.unreachable.is_empty();
    Ok(Json(report))
}

async fn verify_group(admin: &AdminState, group: u32, report: &mut VerifyReport) -> Result<(), ApiError> {
    let members = admin.raft.member_nodes(group)?;
    let mut settled: BTreeSet<String> = BTreeSet::new();
    let mut manifest_checked = false;
    for round in 0..VERIFY_ROUNDS {
        if round > 0 {
            tokio::time::sleep(VERIFY_ROUND_PAUSE).await;
        }
        let mut asks = Vec::new();
        for (&node_id, node) in &members {
            let admin = admin.clone();
            let api_addr = node.api_addr.clone();
            asks.push((
                node_id,
                tokio::spawn(async move {
                    if node_id == admin.raft.node_id() {
                        local_digests(&admin.raft, group).await.map_err(|e| e.to_string())
                    } else {
                        admin
                            .peers
                            .get_json::<GroupDigests>(
                                &api_addr,
                                &format!("/admin/groups/{group}/digests"),
                                admin.timeout,
                            )
                            .await
                            .map_err(|e| e.to_string())
                    }
                }),
            ));
        }
        let mut views: BTreeMap<NodeId, GroupDigests> = BTreeMap::new();
        let mut missing = Vec::new();
        for (node_id, ask) in asks {
            match ask.await {
                Ok(Ok(view)) if view.node_id == node_id && view.group == group => {
                    views.insert(node_id, view);
                }
                Ok(Ok(view)) => missing.push(json!({"group": group, "node_id": node_id,
                    "error": format!("answered as node {} group {}", view.node_id, view.group)})),
                Ok(Err(e)) => missing.push(json!({"group": group, "node_id": node_id, "error": e})),
                Err(e) => missing.push(json!({"group": group, "node_id": node_id, "error": e.to_string()})),
            }
        }
        let last_round = round + 1 == VERIFY_ROUNDS;
        if !missing.is_empty() && (last_round || views.is_empty()) {
            report.unreachable.extend(missing);
            if views.is_empty() {
                return Ok(());
            }
        } else if !missing.is_empty() {
            continue;
        }
        let pending = compare(group, &views, &mut settled, &mut manifest_checked, report);
        if pending.is_empty() && manifest_checked {
            return Ok(());
        }
        if last_round {
            report.unverified.extend(pending);
        }
    }
    Ok(())
}
