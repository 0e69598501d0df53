//! Keeping replicas honest: verify, repair and snapshot endpoints of the admin API.
//!
//! ```text
//! POST /admin/verify                                      compare every replica of every group  {"groups"?: [..]}
//! POST /admin/groups/{group}/mailboxes/{guid}/repair      replace one replica's copy of one mailbox  {"replica"?, "source"?}
//! POST /admin/groups/{group}/snapshot                     build a snapshot of one group on this node
//! POST /admin/snapshot                                    build a snapshot of every group on this node
//! GET  /admin/groups/{group}/digests                      this replica's per-mailbox digests (used by verify)
//! GET  /admin/groups/{group}/mailboxes/{guid}/image       this replica's copy of a mailbox file (used by repair)
//! ```
//!
//! Verify needs no pause in writes: a mailbox file records the position of the last entry that
//! changed it, and copies recording the same position must be byte-identical (see
//! `state_machine::repair`). Copies at different positions are in flux and are asked again a
//! few times; the manifest (names, sessions) is compared when the replicas stand at the same
//! group position. A copy that fails its own checks is reported at once.
//!
//! Repair replaces one replica's file of one mailbox by a healthy replica's copy, when that copy
//! is exactly the mailbox at the replica's position, then rewrites that replica's checkpoint so
//! a crash recovery cannot bring the damaged copy back. The rest of the group is not touched and
//! the group keeps serving; its applies wait only while the file is swapped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dovetail_raft::{NodeId, RaftNode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::mail_group::MailGroup;
use super::peer_api::{PeerApi, PeerApiError};
use crate::api::extract::{parse_guid, PathParams, QueryParams};
use crate::api::{ApiError, ErrorCode};
use crate::state_machine::{MailboxDigest, RepairWait};

/// How often verify asks again about mailboxes whose copies are at different positions.
const VERIFY_ROUNDS: usize = 10;
const VERIFY_ROUND_PAUSE: Duration = Duration::from_millis(200);
/// The header of an image answer: the group position the copy was taken at.
const APPLIED_HEADER: &str = "x-dovetail-applied";

#[derive(Clone)]
struct Maintenance {
    raft: RaftNode<MailGroup>,
    peers: PeerApi,
    /// Bounds each operation.
    timeout: Duration,
}

pub fn router(raft: RaftNode<MailGroup>, peers: PeerApi, timeout: Duration) -> Router {
    Router::new()
        .route("/admin/verify", post(verify))
        .route("/admin/groups/{group}/digests", get(digests))
        .route("/admin/groups/{group}/mailboxes/{mailbox_guid}/image", get(image))
        .route(
            "/admin/groups/{group}/mailboxes/{mailbox_guid}/repair",
            post(repair),
        )
        .route("/admin/groups/{group}/snapshot", post(snapshot_group))
        .route("/admin/snapshot", post(snapshot_all))
        .with_state(Maintenance { raft, peers, timeout })
}

/// One replica's digests of one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupDigests {
    pub node_id: NodeId,
    pub group: u32,
    pub applied: u64,
    pub manifest_digest: String,
    pub mailboxes: Vec<MailboxDigest>,
}

/// A JSON body that may be left out (empty means all defaults).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

/// Runs `f` on the group's application on the blocking pool (it may read whole files).
async fn on_group<R: Send + 'static>(
    raft: &RaftNode<MailGroup>,
    group: u32,
    f: impl FnOnce(&mut MailGroup) -> R + Send + 'static,
) -> Result<R, ApiError> {
    let raft = raft.clone();
    tokio::task::spawn_blocking(move || raft.with_app_mut(group, f))
        .await
        .map_err(|e| ApiError::internal(format!("maintenance task failed: {e}")))?
        .map_err(ApiError::from)
}

async fn local_digests(raft: &RaftNode<MailGroup>, group: u32) -> Result<GroupDigests, ApiError> {
    let node_id = raft.node_id();
    on_group(raft, group, move |app| {
        let machine = app.machine();
        GroupDigests {
            node_id,
            group,
            applied: machine.applied().map_or(0, |a| a.index),
            manifest_digest: machine.manifest_digest(),
            mailboxes: machine.mailbox_digests(),
        }
    })
    .await
}

async fn digests(
    State(m): State<Maintenance>,
    PathParams(group): PathParams<u32>,
) -> Result<Json<GroupDigests>, ApiError> {
    Ok(Json(local_digests(&m.raft, group).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    #[serde(default)]
    min_applied: u64,
}

/// This replica's copy of a mailbox file, once it has applied `min_applied`. Refuses (409
/// `damaged`) to hand out a copy that fails its own checks.
async fn image(
    State(m): State<Maintenance>,
    PathParams((group, guid_hex)): PathParams<(u32, String)>,
    QueryParams(q): QueryParams<ImageQuery>,
) -> Result<Response, ApiError> {
    let guid = parse_guid(&guid_hex)?;
    m.raft
        .wait_applied(group, q.min_applied, Instant::now() + m.timeout)
        .await?;
    let copy = on_group(&m.raft, group, move |app| {
        let machine = app.machine();
        let index = machine.state().mailboxes().get(&guid)?;
        Some(index.verify().map(|()| machine.mailbox_image(&guid)))
    })
    .await?;
    match copy {
        None => Err(ApiError::new(
            ErrorCode::NoSuchMailbox,
            format!("group {group} has no mailbox {guid_hex} on this node"),
        )),
        Some(Err(e)) => Err(ApiError::new(
            ErrorCode::Damaged,
            format!("this node's copy fails its own checks: {e}"),
        )),
        Some(Ok(None)) => Err(ApiError::internal("the mailbox vanished while being read")),
        Some(Ok(Some((applied, bytes)))) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(APPLIED_HEADER, HeaderValue::from(applied));
            Ok(response)
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RepairRequest {
    /// The node whose copy is replaced (default: this node).
    replica: Option<NodeId>,
    /// The node whose copy is taken (default: the group's leader, or another voter if the
    /// replica leads).
    source: Option<NodeId>,
}

async fn repair(
    State(m): State<Maintenance>,
    PathParams((group, guid_hex)): PathParams<(u32, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let guid = parse_guid(&guid_hex)?;
    let request: RepairRequest = optional_json(&body)?;
    let members = m.raft.member_nodes(group)?;
    let this_node = m.raft.node_id();
    let replica = request.replica.unwrap_or(this_node);
    let no_such_node = |id: NodeId| {
        ApiError::new(
            ErrorCode::NoSuchNode,
            format!("node {id} is not a member of group {group}"),
        )
    };
    if replica != this_node {
        // The replica itself does the work; this node only passes the request on.
        let target = members.get(&replica).ok_or_else(|| no_such_node(replica))?;
        let path = format!("/admin/groups/{group}/mailboxes/{guid_hex}/repair");
        let body = json!({"source": request.source});
        let answer = m
            .peers
            .call(Method::POST, &target.api_addr, &path, Some(body), m.timeout * 2)
            .await;
        return match answer {
            Ok((_, bytes)) => serde_json::from_slice(&bytes)
                .map(Json)
                .map_err(|e| ApiError::internal(format!("node {replica} answered: {e}"))),
            Err(e) => Err(peer_failure(replica, e)),
        };
    }
    let metrics = m.raft.metrics(group)?;
    let source = match request.source {
        Some(source) => source,
        None => match metrics.current_leader {
            Some(leader) if leader != this_node => leader,
            _ => *metrics
                .voters
                .iter()
                .find(|&&v| v != this_node)
                .ok_or_else(|| ApiError::invalid("the group has no other voter to copy from"))?,
        },
    };
    if source == this_node {
        return Err(ApiError::invalid("a replica cannot be repaired from itself"));
    }
    let source_addr = members
        .get(&source)
        .ok_or_else(|| no_such_node(source))?
        .api_addr
        .clone();
    let deadline = Instant::now() + m.timeout;
    let mut min_applied = metrics.applied.map_or(0, |a| a.index);
    let mut attempts = 0;
    let (position, source_applied) = loop {
        attempts += 1;
        if Instant::now() >= deadline {
            return Err(ApiError::new(ErrorCode::Unavailable,
                format!("group {group}: no exact copy of {guid_hex} before the deadline ({attempts} attempts); the mailbox is busy, try again"),
            ));
        }
        let path = format!("/admin/groups/{group}/mailboxes/{guid_hex}/image?min_applied={min_applied}");
        let left = deadline.saturating_duration_since(Instant::now());
        let (headers, bytes) = m
            .peers
            .call(Method::GET, &source_addr, &path, None, left)
            .await
            .map_err(|e| peer_failure(source, e))?;
        let source_applied: u64 = headers
            .get(APPLIED_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::internal(format!("node {source} sent no {APPLIED_HEADER} header")))?;
        let bytes = bytes.to_vec();
        let replaced = on_group(&m.raft, group, move |app| {
            let machine = app.machine_mut();
            let replaced = machine.replace_mailbox(&guid, bytes, source_applied)?;
            if replaced.is_ok() {
                machine.checkpoint()?;
            }
            Ok::<_, crate::state_machine::SmError>(replaced)
        })
        .await?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::BadCopy,
                format!("the copy from node {source} was not installed: {e}"),
            )
        })?;
        match replaced {
            Ok(position) => break (position, source_applied),
            Err(RepairWait::Target { needed, .. }) => {
                m.raft.wait_applied(group, needed, deadline).await?;
            }
            Err(RepairWait::Source { needed, .. }) => min_applied = needed,
        }
    };
    tracing::warn!(group, mailbox = %guid_hex, source, position = %position, "repaired a mailbox file from another replica");
    Ok(Json(json!({
        "group": group,
        "mailbox_guid": guid_hex,
        "replica": this_node,
        "source": source,
        "position": position.index,
        "source_applied": source_applied,
        "attempts": attempts,
    })))
}

fn peer_failure(node: NodeId, e: PeerApiError) -> ApiError {
    match e {
        PeerApiError::Status { status, body, .. } if status < 500 => ApiError::new(
            ErrorCode::PeerRefused,
            format!("node {node} refused: HTTP {status}: {body}"),
        ),
        e => ApiError::new(ErrorCode::Unavailable, format!("node {node}: {e}")),
    }
}

/// Builds a snapshot of `group` on this node and waits until it covers what was applied when
/// asked.
async fn snapshot_one(m: &Maintenance, group: u32, deadline: Instant) -> Result<Value, ApiError> {
    let before = m.raft.metrics(group)?;
    let wanted = before.applied.map_or(0, |a| a.index);
    m.raft.trigger_snapshot(group).await?;
    loop {
        let now = m.raft.metrics(group)?;
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
    State(m): State<Maintenance>,
    PathParams(group): PathParams<u32>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(snapshot_one(&m, group, Instant::now() + m.timeout).await?))
}

async fn snapshot_all(State(m): State<Maintenance>) -> Result<Json<Value>, ApiError> {
    let deadline = Instant::now() + m.timeout * 2;
    let mut groups = Vec::new();
    for group in 0..m.raft.group_count() {
        groups.push(snapshot_one(&m, group, deadline).await?);
    }
    Ok(Json(json!({"node_id": m.raft.node_id(), "groups": groups})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    groups: Option<Vec<u32>>,
}

/// What verify found.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// True iff every replica of every group answered and no divergence was found.
    pub clean: bool,
    pub groups_checked: usize,
    pub mailboxes_checked: usize,
    pub divergences: Vec<Divergence>,
    /// Mailboxes whose copies kept changing, so no common position was seen.
    pub unverified: Vec<Unverified>,
    /// Replicas that did not answer: `{group, node_id, error}`.
    pub unreachable: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divergence {
    pub group: u32,
    /// None for the group's manifest (names and sessions).
    pub mailbox_guid: Option<String>,
    pub user: String,
    pub mailbox: String,
    pub reason: String,
    /// The replicas whose copy differs from the majority's or fails its own checks.
    pub suspects: Vec<NodeId>,
    /// Each replica's copy: `{position, digest, damage}` or null if it has none.
    pub replicas: BTreeMap<NodeId, Option<MailboxDigest>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unverified {
    pub group: u32,
    pub mailbox_guid: String,
    pub positions: BTreeMap<NodeId, Option<u64>>,
}

async fn verify(
    State(m): State<Maintenance>,
    body: axum::body::Bytes,
) -> Result<Json<VerifyReport>, ApiError> {
    let request: VerifyRequest = optional_json(&body)?;
    let groups = request
        .groups
        .unwrap_or_else(|| (0..m.raft.group_count()).collect());
    let mut report = VerifyReport::default();
    for group in groups {
        verify_group(&m, group, &mut report).await?;
        report.groups_checked += 1;
    }
    report.clean =
        report.divergences.is_empty() && report.unverified.is_empty() && report.unreachable.is_empty();
    Ok(Json(report))
}

async fn verify_group(m: &Maintenance, group: u32, report: &mut VerifyReport) -> Result<(), ApiError> {
    let members = m.raft.member_nodes(group)?;
    let mut settled: BTreeSet<String> = BTreeSet::new();
    let mut manifest_checked = false;
    for round in 0..VERIFY_ROUNDS {
        if round > 0 {
            tokio::time::sleep(VERIFY_ROUND_PAUSE).await;
        }
        let mut asks = Vec::new();
        for (&node_id, node) in &members {
            let m = m.clone();
            let api_addr = node.api_addr.clone();
            asks.push((
                node_id,
                tokio::spawn(async move {
                    if node_id == m.raft.node_id() {
                        local_digests(&m.raft, group).await.map_err(|e| e.message)
                    } else {
                        m.peers
                            .get_json::<GroupDigests>(
                                &api_addr,
                                &format!("/admin/groups/{group}/digests"),
                                m.timeout,
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

/// Compares one round of views; settles what can be settled and returns the rest.
fn compare(
    group: u32,
    views: &BTreeMap<NodeId, GroupDigests>,
    settled: &mut BTreeSet<String>,
    manifest_checked: &mut bool,
    report: &mut VerifyReport,
) -> Vec<Unverified> {
    let same_applied = views
        .values()
        .all(|v| v.applied == views.values().next().map_or(0, |f| f.applied));
    if same_applied && !*manifest_checked {
        *manifest_checked = true;
        let digests: BTreeMap<NodeId, &str> = views
            .iter()
            .map(|(n, v)| (*n, v.manifest_digest.as_str()))
            .collect();
        let suspects = minority(&digests);
        if !suspects.is_empty() {
            report.divergences.push(Divergence {
                group,
                mailbox_guid: None,
                user: String::new(),
                mailbox: String::new(),
                reason: format!(
                    "manifests differ at applied index {}",
                    views.values().next().map_or(0, |v| v.applied)
                ),
                suspects,
                replicas: BTreeMap::new(),
            });
        }
    }
    let by_guid: BTreeMap<NodeId, BTreeMap<&str, &MailboxDigest>> = views
        .iter()
        .map(|(n, v)| {
            (
                *n,
                v.mailboxes.iter().map(|d| (d.mailbox_guid.as_str(), d)).collect(),
            )
        })
        .collect();
    let guids: BTreeSet<&str> = by_guid.values().flat_map(|m| m.keys().copied()).collect();
    let mut pending = Vec::new();
    for guid in guids {
        if settled.contains(guid) {
            continue;
        }
        let per_node: BTreeMap<NodeId, Option<&MailboxDigest>> = by_guid
            .iter()
            .map(|(n, copies)| (*n, copies.get(guid).copied()))
            .collect();
        let any = per_node.values().flatten().next().expect("a copy exists");
        let diverged = |reason: String, suspects: Vec<NodeId>| Divergence {
            group,
            mailbox_guid: Some(guid.to_string()),
            user: any.user.clone(),
            mailbox: any.mailbox.clone(),
            reason,
            suspects,
            replicas: per_node
                .iter()
                .map(|(n, d)| (*n, d.map(|d| (*d).clone())))
                .collect(),
        };
        let damaged: Vec<NodeId> = per_node
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| d.damage.is_some()))
            .map(|(n, _)| *n)
            .collect();
        if !damaged.is_empty() {
            settled.insert(guid.to_string());
            report.mailboxes_checked += 1;
            report
                .divergences
                .push(diverged("a copy fails its own checks".into(), damaged));
            continue;
        }
        let positions: BTreeSet<Option<u64>> = per_node.values().map(|d| d.map(|d| d.position)).collect();
        if positions.len() == 1 && !positions.contains(&None) {
            settled.insert(guid.to_string());
            report.mailboxes_checked += 1;
            let digests: BTreeMap<NodeId, &str> = per_node
                .iter()
                .filter_map(|(n, d)| d.map(|d| (*n, d.digest.as_str())))
                .collect();
            let suspects = minority(&digests);
            if !suspects.is_empty() {
                let position = positions.into_iter().next().flatten().unwrap_or(0);
                report.divergences.push(diverged(
                    format!("copies recording position {position} differ"),
                    suspects,
                ));
            }
        } else if positions.contains(&None) && same_applied {
            settled.insert(guid.to_string());
            report.mailboxes_checked += 1;
            let lacking = per_node
                .iter()
                .filter(|(_, d)| d.is_none())
                .map(|(n, _)| *n)
                .collect();
            report.divergences.push(diverged(
                "missing on some replicas at the same applied index".into(),
                lacking,
            ));
        } else {
            pending.push(Unverified {
                group,
                mailbox_guid: guid.to_string(),
                positions: per_node
                    .iter()
                    .map(|(n, d)| (*n, d.map(|d| d.position)))
                    .collect(),
            });
        }
    }
    pending
}

/// The nodes whose value differs from the most common one (all of them if there is a tie
/// for most common, since no majority vouches for any copy).
fn minority(values: &BTreeMap<NodeId, &str>) -> Vec<NodeId> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values.values() {
        *counts.entry(v).or_default() += 1;
    }
    if counts.len() <= 1 {
        return Vec::new();
    }
    let best = counts.values().copied().max().unwrap_or(0);
    let winners: Vec<&str> = counts
        .iter()
        .filter(|(_, c)| **c == best)
        .map(|(v, _)| *v)
        .collect();
    if winners.len() > 1 {
        return values.keys().copied().collect();
    }
    values
        .iter()
        .filter(|(_, v)| **v != winners[0])
        .map(|(n, _)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(guid: &str, position: u64, digest: &str, damage: Option<&str>) -> MailboxDigest {
        MailboxDigest {
            mailbox_guid: guid.into(),
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: 1,
            position,
            digest: digest.into(),
            damage: damage.map(String::from),
        }
    }

    fn view(node_id: NodeId, applied: u64, mailboxes: Vec<MailboxDigest>) -> GroupDigests {
        GroupDigests {
            node_id,
            group: 0,
            applied,
            manifest_digest: "m".into(),
            mailboxes,
        }
    }

    fn run(views: Vec<GroupDigests>) -> (VerifyReport, Vec<Unverified>) {
        let views = views.into_iter().map(|v| (v.node_id, v)).collect();
        let mut report = VerifyReport::default();
        let pending = compare(0, &views, &mut BTreeSet::new(), &mut false, &mut report);
        (report, pending)
    }

    #[test]
    fn equal_copies_are_clean_and_a_differing_one_is_named() {
        let (report, pending) = run(vec![
            view(1, 9, vec![digest("a", 5, "x", None), digest("b", 7, "y", None)]),
            view(2, 9, vec![digest("a", 5, "x", None), digest("b", 7, "y", None)]),
            view(3, 9, vec![digest("a", 5, "x", None), digest("b", 7, "z", None)]),
        ]);
        assert!(pending.is_empty());
        assert_eq!(report.mailboxes_checked, 2);
        assert_eq!(report.divergences.len(), 1, "{report:?}");
        assert_eq!(report.divergences[0].mailbox_guid.as_deref(), Some("b"));
        assert_eq!(report.divergences[0].suspects, [3]);
    }

    #[test]
    fn copies_in_flux_wait_and_damage_is_reported_at_once() {
        let (report, pending) = run(vec![
            view(1, 9, vec![digest("a", 5, "x", None), digest("b", 9, "y", None)]),
            view(
                2,
                8,
                vec![
                    digest("a", 5, "x", Some("record 3: bad")),
                    digest("b", 7, "w", None),
                ],
            ),
        ]);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].mailbox_guid, "b");
        assert_eq!(report.divergences.len(), 1);
        assert_eq!(report.divergences[0].suspects, [2]);
    }

    #[test]
    fn a_tie_suspects_everyone_and_manifests_are_compared_at_equal_positions() {
        let mut a = view(1, 9, vec![digest("a", 5, "x", None)]);
        let b = view(2, 9, vec![digest("a", 5, "y", None)]);
        a.manifest_digest = "other".into();
        let (report, _) = run(vec![a, b]);
        assert_eq!(report.divergences.len(), 2, "{report:?}");
        assert!(report.divergences.iter().all(|d| d.suspects == [1, 2]));
    }
}
