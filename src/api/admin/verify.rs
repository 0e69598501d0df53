//! `POST /admin/verify`: compares every replica of every group (or of the groups asked), without
//! pausing writes. This file is the fan-out: in rounds, it asks every member of a group for its
//! digests (`GET /admin/groups/{group}/digests`, or this node's own) and hands each round's
//! answers to `node::verify::compare`, which decides what diverges and what is still in flux.
//! Then it asks every member once for its referenced bodies' faults (`POST /admin/bodies/check`:
//! missing, and with `hash_bodies` damaged) and hands the answers to
//! `node::verify::compare_bodies`; a fault is asked about again a second later, and only one
//! still there is reported (a body may be on its way: pushed before its entry, but late).

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
use crate::node::body_check::{check_bodies, BodyCheck, CheckRequest};
use crate::node::replica::local_digests;
use crate::node::verify::{compare, compare_bodies, GroupDigests, VerifyReport};

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
    /// Hash every referenced body on every node (reads them all); default: presence only.
    #[serde(default)]
    hash_bodies: bool,
}

/// How long verify waits before asking again about the body faults it found.
const BODY_RECHECK_PAUSE: Duration = Duration::from_secs(1);

async fn verify(
    State(admin): State<AdminState>,
    OptionalJson(request): OptionalJson<VerifyRequest>,
) -> Result<Json<VerifyReport>, ApiError> {
    let groups = request
        .groups
        .unwrap_or_else(|| (0..admin.raft.group_count()).collect());
    let mut report = VerifyReport::default();
    for &group in &groups {
        verify_group(&admin, group, &mut report).await?;
        report.groups_checked += 1;
    }
    verify_bodies(&admin, &groups, request.hash_bodies, &mut report).await?;
    report.clean = report.divergences.is_empty()
        && report.unverified.is_empty()
        && report.unreachable.is_empty()
        && report.bodies.is_empty();
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

/// Asks every member of `groups` for its body faults, twice if it reports any (see the module
/// docs), and adds what persists to `report`.
async fn verify_bodies(
    admin: &AdminState,
    groups: &[u32],
    hash: bool,
    report: &mut VerifyReport,
) -> Result<(), ApiError> {
    let mut members: BTreeMap<u32, BTreeSet<NodeId>> = BTreeMap::new();
    let mut addrs: BTreeMap<NodeId, String> = BTreeMap::new();
    for &group in groups {
        for (node_id, node) in admin.raft.member_nodes(group)? {
            members.entry(group).or_default().insert(node_id);
            addrs.insert(node_id, node.api_addr);
        }
    }
    let request = CheckRequest {
        groups: Some(groups.to_vec()),
        hash,
        body_ids: None,
    };
    let asks = addrs
        .iter()
        .map(|(&node_id, addr)| (node_id, addr.clone(), request.clone()))
        .collect();
    let mut checks = BTreeMap::new();
    for (node_id, answer) in ask_checks(admin, asks).await {
        match answer {
            Ok(check) => {
                report.bodies_checked += check.checked;
                checks.insert(node_id, check);
            }
            Err(error) => report
                .unreachable
                .push(json!({"node_id": node_id, "check": "bodies", "error": error})),
        }
    }
    report.bodies_hashed = hash;
    let found = compare_bodies(&checks, &members);
    if found.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(BODY_RECHECK_PAUSE).await;
    let asks = checks
        .iter()
        .filter(|(_, c)| !c.faults.is_empty())
        .map(|(&node_id, c)| {
            let body_ids = c.faults.iter().map(|f| f.body_id.clone()).collect();
            let request = CheckRequest {
                body_ids: Some(body_ids),
                ..request.clone()
            };
            (node_id, addrs[&node_id].clone(), request)
        })
        .collect();
    let again: BTreeMap<NodeId, Result<BodyCheck, String>> =
        ask_checks(admin, asks).await.into_iter().collect();
    report.bodies.extend(found.into_iter().filter(|d| {
        match again.get(&d.node_id) {
            Some(Ok(check)) => check
                .faults
                .iter()
                .any(|f| f.body_id == d.body_id && f.problem == d.problem),
            _ => true,
        }
    }));
    Ok(())
}

/// Sends each `(node, api address, request)` check, this node's own run here; the answers in
/// node order.
async fn ask_checks(
    admin: &AdminState,
    asks: Vec<(NodeId, String, CheckRequest)>,
) -> Vec<(NodeId, Result<BodyCheck, String>)> {
    let tasks: Vec<_> = asks
        .into_iter()
        .map(|(node_id, api_addr, request)| {
            let admin = admin.clone();
            let task = tokio::spawn(async move {
                if node_id == admin.raft.node_id() {
                    let (raft, store) = (admin.raft.clone(), admin.bodies.store().clone());
                    return tokio::task::spawn_blocking(move || check_bodies(&raft, &store, &request))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string());
                }
                let body = serde_json::to_value(&request).map_err(|e| e.to_string())?;
                let (_, bytes) = admin
                    .peers
                    .call(
                        axum::http::Method::POST,
                        &api_addr,
                        "/admin/bodies/check",
                        Some(body),
                        admin.timeout * 4,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let check: BodyCheck = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                if check.node_id != node_id {
                    return Err(format!("answered as node {}", check.node_id));
                }
                Ok(check)
            });
            (node_id, task)
        })
        .collect();
    let mut out = Vec::new();
    for (node_id, task) in tasks {
        out.push((node_id, task.await.map_err(|e| e.to_string()).and_then(|r| r)));
    }
    out
}
