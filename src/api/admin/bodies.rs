//! Bodies between members: `PUT /admin/bodies/{id}` stores a body another member pushes (checked
//! against its id, durable before the answer), `GET /admin/bodies/{id}` hands out this node's
//! checked copy (what a member fetches on a miss). Behind the admin token, which every member
//! shares; see `node::bodies`. `POST /admin/bodies/sweep` asks for a body sweep now (a full body
//! resync, `node::body_sweep`). `POST /admin/bodies/check` and `POST /admin/bodies/repair` are
//! verify's and repair's part for bodies (`node::body_check`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde_json::json;

use super::state::AdminState;
use crate::api::extract::{OptionalJson, PathParams};
use crate::api::{ApiError, ErrorCode};
use crate::bodies::stream::{file_body, put_stream, read_head, Head};
use crate::bodies::{BodyError, BodyId};
use crate::node::bodies::SMALL_BODY;
use crate::node::body_check::{check_bodies, repair_bodies, BodyCheck, BodyRepair, CheckRequest};

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/bodies/sweep", post(sweep))
        .route("/admin/bodies/check", post(check))
        .route("/admin/bodies/repair", post(repair))
        .route("/admin/bodies/{id}", put(store).get(fetch))
}

fn body_id(text: &str) -> Result<BodyId, ApiError> {
    BodyId::parse(text)
        .ok_or_else(|| ApiError::invalid(format!("body id {}: not 32 hex digits", crate::txn::quoted(text))))
}

fn store_error(e: BodyError) -> ApiError {
    let code = match &e {
        BodyError::TooLarge { .. } => ErrorCode::TooLarge,
        BodyError::Mismatch { .. } | BodyError::Input { .. } => ErrorCode::Invalid,
        e if e.is_out_of_space() => ErrorCode::InsufficientStorage,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, e.to_string())
}

/// Stores the pushed body if its bytes hash to `id`; 201 once it is durable (200 if this node
/// already held it).
async fn store(
    State(admin): State<AdminState>,
    PathParams(id): PathParams<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = body_id(&id)?;
    if let Some(reason) = admin.raft.storage_alarm() {
        return Err(ApiError::new(ErrorCode::InsufficientStorage, reason));
    }
    let bodies = &admin.bodies;
    let max = bodies.max_message_bytes();
    // A small body (a delivery's push) is read whole and made durable through the store's
    // journal; a larger one streams into the store.
    let limit = SMALL_BODY.min(usize::try_from(max).unwrap_or(usize::MAX));
    let stored = match read_head(request.into_body(), limit).await.map_err(store_error)? {
        Head::Whole(bytes) => {
            let store = bodies.store().clone();
            tokio::task::spawn_blocking(move || store.put_small(&bytes, max, Some(id)))
                .await
                .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the store's writer failed: {e}")))?
        }
        Head::Longer(body) => put_stream(bodies.store().clone(), body, max, Some(id)).await,
    }
    .map_err(store_error)?;
    let status = if stored.written {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"id": id.hex(), "size": stored.size}))).into_response())
}

/// This node's copy of body `id`, checked first; 404 if it has none or its copy failed the
/// check (moved aside: the member asks another, and this node fetches it again when it needs it).
async fn fetch(
    State(admin): State<AdminState>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let id = body_id(&id)?;
    let store = admin.bodies.store().clone();
    let read = tokio::task::spawn_blocking(move || store.read(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let file = match read {
        Ok(Some(file)) => file,
        Ok(None) | Err(BodyError::Damaged { .. }) => {
            return Err(ApiError::new(
                ErrorCode::NoSuchBody,
                format!("this node has no good copy of body {id}"),
            ))
        }
        Err(e) => return Err(store_error(e)),
    };
    let size = file
        .metadata()
        .map_err(|e| ApiError::internal(e.to_string()))?
        .len();
    let mut response = Response::new(Body::new(file_body(file, 0, size)));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

/// Asks this node's body sweep for a pass now (collect, then fetch every referenced body the
/// store lacks): what a member whose backlog for this node overflowed asks for. 202: the pass
/// runs in the background.
async fn sweep(State(admin): State<AdminState>) -> Response {
    admin.bodies.wake_sweep();
    (StatusCode::ACCEPTED, Json(json!({"sweep": "requested"}))).into_response()
}

/// This node's referenced bodies that its store lacks, or (with `hash`) holds damaged: what
/// verify asks every member (`node::body_check::check_bodies`). Reads only.
async fn check(
    State(admin): State<AdminState>,
    OptionalJson(request): OptionalJson<CheckRequest>,
) -> Result<Json<BodyCheck>, ApiError> {
    let (raft, store) = (admin.raft.clone(), admin.bodies.store().clone());
    let checked = tokio::task::spawn_blocking(move || check_bodies(&raft, &store, &request))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(store_error)?;
    Ok(Json(checked))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RepairRequest {
    /// The node whose bodies are repaired (default: this node).
    replica: Option<dovetail_raft::NodeId>,
    /// Hash every referenced body held first, moving damaged copies aside.
    #[serde(default)]
    check: bool,
}

/// Fetches every referenced body the replica lacks (with `check`, after moving its damaged
/// copies aside); asked on another node, passes the request on to the replica.
async fn repair(
    State(admin): State<AdminState>,
    OptionalJson(request): OptionalJson<RepairRequest>,
) -> Result<Json<BodyRepair>, ApiError> {
    let this_node = admin.raft.node_id();
    let replica = request.replica.unwrap_or(this_node);
    if replica != this_node {
        let api_addr = (0..admin.raft.group_count())
            .find_map(|g| {
                admin
                    .raft
                    .member_nodes(g)
                    .ok()
                    .and_then(|nodes| nodes.get(&replica).map(|n| n.api_addr.clone()))
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoSuchNode,
                    format!("node {replica} is not a member of any group"),
                )
            })?;
        let body = json!({"check": request.check});
        let answer = admin
            .peers
            .call(
                axum::http::Method::POST,
                &api_addr,
                "/admin/bodies/repair",
                Some(body),
                admin.timeout * 4,
            )
            .await;
        return match answer {
            Ok((_, bytes)) => serde_json::from_slice(&bytes)
                .map(Json)
                .map_err(|e| ApiError::internal(format!("node {replica} answered: {e}"))),
            Err(e) => Err(ApiError::relayed(replica, e)),
        };
    }
    let repaired = repair_bodies(&admin.raft, &admin.bodies, request.check)
        .await
        .map_err(store_error)?;
    Ok(Json(repaired))
}
