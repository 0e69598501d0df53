//! `POST /admin/groups/{group}/mailboxes/{guid}/repair`: replaces one replica's copy of one
//! mailbox by a healthy replica's copy. The replica itself does the work
//! (`node::repair::repair_mailbox`); asked on another node, this route passes the request on.

use axum::extract::State;
use axum::http::Method;
use axum::routing::post;
use axum::{Json, Router};
use dovetail_raft::NodeId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::AdminState;
use crate::api::extract::{parse_guid, OptionalJson, PathParams};
use crate::api::{ApiError, ErrorCode};
use crate::node::repair::repair_mailbox;

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route(
        "/admin/groups/{group}/mailboxes/{mailbox_guid}/repair",
        post(repair),
    )
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
    State(admin): State<AdminState>,
    PathParams((group, guid_hex)): PathParams<(u32, String)>,
    OptionalJson(request): OptionalJson<RepairRequest>,
) -> Result<Json<Value>, ApiError> {
    let guid = parse_guid(&guid_hex)?;
    let this_node = admin.raft.node_id();
    let replica = request.replica.unwrap_or(this_node);
    if replica != this_node {
        // The replica itself does the work; this node only passes the request on.
        let members = admin.raft.member_nodes(group)?;
        let target = members.get(&replica).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoSuchNode,
                format!("node {replica} is not a member of group {group}"),
            )
        })?;
        let path = format!("/admin/groups/{group}/mailboxes/{guid_hex}/repair");
        let body = json!({"source": request.source});
        let answer = admin
            .peers
            .call(
                Method::POST,
                &target.api_addr,
                &path,
                Some(body),
                admin.timeout * 2,
            )
            .await;
        return match answer {
            Ok((_, bytes)) => serde_json::from_slice(&bytes)
                .map(Json)
                .map_err(|e| ApiError::internal(format!("node {replica} answered: {e}"))),
            // The replica's own answer, with its status: one kind of error has one status
            // whichever node was asked (an unknown mailbox is 404 here too, not a 502 or 503).
            Err(e) => Err(ApiError::relayed(replica, e)),
        };
    }
    let repaired = repair_mailbox(
        &admin.raft,
        &admin.peers,
        group,
        guid,
        request.source,
        admin.timeout,
    )
    .await?;
    Ok(Json(json!({
        "group": group,
        "mailbox_guid": guid_hex,
        "replica": this_node,
        "source": repaired.source,
        "position": repaired.position.index,
        "source_applied": repaired.source_applied,
        "attempts": repaired.attempts,
    })))
}
