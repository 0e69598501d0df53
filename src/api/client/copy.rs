//! Copy and move: `POST .../{mailbox}/copy` copies messages of the mailbox into another of the
//! same user (`"move": true` also expunges them from the source, in the same log entry), and
//! answers with what UIDPLUS's COPYUID needs: the target's UIDVALIDITY and the UID map.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::write::{session, submit, write_response};
use crate::api::error::ApiError;
use crate::api::extract::{nfc, parse_uids, JsonBody, MailboxPath};
use crate::service::MailService;
use crate::txn::Op;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CopyBody {
    /// The source UIDs, IMAP syntax (`1:5,7`); those the source lacks are skipped.
    uids: String,
    /// The target mailbox's name.
    to: String,
    /// Expunge the copied messages from the source too (IMAP MOVE).
    #[serde(default, rename = "move")]
    moving: bool,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

pub(super) async fn copy<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, from): MailboxPath,
    JsonBody(body): JsonBody<CopyBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let (to, uids) = (nfc(body.to), parse_uids(&body.uids)?);
    let op = if body.moving {
        Op::Move { user, from, to, uids }
    } else {
        Op::Copy { user, from, to, uids }
    };
    write_response(submit(&*service, client, op).await?, false)
}
