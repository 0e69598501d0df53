//! Messages: append, and fetch records by UID range.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::response::Response;
use serde::Deserialize;

use super::bodies::{deliver, is_delivery};
use super::read::{page_limit, read, ReadQuery};
use super::write::{now_seconds, session, submit, write_response};
use crate::api::error::ApiError;
use crate::api::extract::{parse_guid, JsonBody, MailboxPath, QueryParams};
use crate::service::MailService;
use crate::state_machine::MessageView;
use crate::txn::validate::check_mailbox_name;
use crate::txn::{NewMessage, Op};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppendBody {
    messages: Vec<MessageBody>,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    /// 32 hex digits.
    guid: String,
    size: u64,
    /// Seconds since the epoch; defaults to the receiving node's clock.
    internal_date: Option<i64>,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FetchQuery {
    #[serde(flatten)]
    read: ReadQuery,
    first: Option<u32>,
    last: Option<u32>,
    limit: Option<usize>,
}

#[derive(serde::Serialize)]
struct Messages {
    messages: Vec<MessageView>,
}

/// `POST .../messages`: a delivery when the body is a message (`message/rfc822`), else an append
/// of index records (JSON).
pub(super) async fn append_or_deliver<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    request: Request,
) -> Result<Response, ApiError> {
    if is_delivery(request.headers()) {
        let (mut parts, body) = request.into_parts();
        let QueryParams(query) = QueryParams::from_request_parts(&mut parts, &()).await?;
        let request = Request::from_parts(parts, body);
        return deliver(service, user, mailbox, query, request).await;
    }
    let JsonBody(body) = JsonBody::from_request(request, &()).await?;
    append(service, user, mailbox, body).await
}

async fn append<S: MailService>(
    service: Arc<S>,
    user: String,
    mailbox: String,
    body: AppendBody,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let now = now_seconds();
    let messages = body
        .messages
        .into_iter()
        .map(|m| {
            Ok(NewMessage {
                guid: parse_guid(&m.guid)?,
                size: m.size,
                internal_date: m.internal_date.unwrap_or(now),
                flags: m.flags,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let op = Op::Append {
        user,
        mailbox,
        messages,
    };
    write_response(submit(&*service, client, op).await?, false)
}

pub(super) async fn fetch<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(q): QueryParams<FetchQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    let limit = page_limit(q.limit)?;
    let (first, last) = (q.first.unwrap_or(1), q.last.unwrap_or(u32::MAX));
    read(&*service, user, q.read, move |g, user| {
        Ok(Messages {
            messages: g.state().fetch(user, &mailbox, first, last, limit)?,
        })
    })
    .await
}
