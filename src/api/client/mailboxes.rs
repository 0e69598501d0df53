//! Mailboxes: list, create, status, delete, rename.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::read::{read, ReadQuery};
use super::write::{now_seconds, random_guid, session, submit, write_response, SessionQuery};
use crate::api::error::ApiError;
use crate::api::extract::{nfc, JsonBody, MailboxPath, QueryParams, UserPath};
use crate::service::MailService;
use crate::state_machine::MailboxSummary;
use crate::txn::validate::check_mailbox_name;
use crate::txn::Op;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    name: String,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenameBody {
    to: String,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(serde::Serialize)]
struct MailboxList {
    mailboxes: Vec<MailboxSummary>,
}

pub(super) async fn list<S: MailService>(
    State(service): State<Arc<S>>,
    UserPath(user): UserPath,
    QueryParams(query): QueryParams<ReadQuery>,
) -> Result<Response, ApiError> {
    read(&*service, user, query, |g, user| {
        Ok(MailboxList {
            mailboxes: g.state().list_mailboxes(user),
        })
    })
    .await
}

pub(super) async fn create<S: MailService>(
    State(service): State<Arc<S>>,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let op = Op::CreateMailbox {
        user,
        mailbox: nfc(body.name),
        mailbox_guid: random_guid(),
        uid_validity: u32::try_from(now_seconds()).unwrap_or(u32::MAX).max(1),
    };
    write_response(submit(&*service, client, op).await?, true)
}

pub(super) async fn status<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(query): QueryParams<ReadQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    read(&*service, user, query, move |g, user| {
        g.state().status(user, &mailbox)
    })
    .await
}

pub(super) async fn delete<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(query): QueryParams<SessionQuery>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), query.client_id, query.request_seq)?;
    write_response(
        submit(&*service, client, Op::DeleteMailbox { user, mailbox }).await?,
        false,
    )
}

pub(super) async fn rename<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    JsonBody(body): JsonBody<RenameBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let op = Op::RenameMailbox {
        user,
        from: mailbox,
        to: nfc(body.to),
    };
    write_response(submit(&*service, client, op).await?, false)
}
