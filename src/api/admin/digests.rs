//! What this replica holds, as other members read it: `GET /admin/groups/{group}/digests` (its
//! per-mailbox digests, which verify compares) and `GET /admin/groups/{group}/mailboxes/{guid}/image`
//! (its copy of a mailbox file, which a repair on another replica installs).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::state::AdminState;
use crate::api::extract::{parse_guid, PathParams, QueryParams};
use crate::api::{ApiError, ErrorCode};
use crate::node::replica::{local_digests, mailbox_image, APPLIED_HEADER};
use crate::node::verify::GroupDigests;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/groups/{group}/digests", get(digests))
        .route("/admin/groups/{group}/mailboxes/{mailbox_guid}/image", get(image))
}

async fn digests(
    State(admin): State<AdminState>,
    PathParams(group): PathParams<u32>,
) -> Result<Json<GroupDigests>, ApiError> {
    Ok(Json(local_digests(&admin.raft, group).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    #[serde(default)]
    min_applied: u64,
}

/// This replica's copy of a mailbox file, once it has applied `min_applied`, with the group
/// position it was taken at in the `x-dovetail-applied` header. Refuses (409 `damaged`) to hand
/// out a copy that fails its own checks.
async fn image(
    State(admin): State<AdminState>,
    PathParams((group, guid_hex)): PathParams<(u32, String)>,
    QueryParams(q): QueryParams<ImageQuery>,
) -> Result<Response, ApiError> {
    let guid = parse_guid(&guid_hex)?;
    let Some((applied, bytes)) =
        mailbox_image(&admin.raft, group, guid, q.min_applied, admin.deadline()).await?
    else {
        return Err(ApiError::new(
            ErrorCode::NoSuchMailbox,
            format!("group {group} has no mailbox {guid_hex} on this node"),
        ));
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(APPLIED_HEADER, HeaderValue::from(applied));
    Ok(response)
}
