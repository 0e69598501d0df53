//! `POST /v1/users/{user}/probe`: the op of the encoding a test build pretends is the next
//! release's (`txn::encoding::TEST_NEXT_ENCODING`). Routed only on a node started with
//! `--test-next-encoding`, for the rolling-upgrade test: it is refused (409 `not_enabled`) until
//! every member of the user's group applies that encoding and the gate has moved.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::write::{session, submit, write_response, SessionQuery};
use crate::api::error::ApiError;
use crate::api::extract::{QueryParams, UserPath};
use crate::service::MailService;
use crate::txn::Op;

pub(super) async fn probe<S: MailService>(
    State(service): State<Arc<S>>,
    UserPath(user): UserPath,
    QueryParams(query): QueryParams<SessionQuery>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), query.client_id, query.request_seq)?;
    let ack = submit(&*service, client, Op::Probe { user }).await?;
    write_response(ack, false)
}
