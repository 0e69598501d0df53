//! Subscriptions (IMAP SUBSCRIBE, UNSUBSCRIBE, LSUB): a user's list of subscribed mailbox names,
//! which may name mailboxes that do not exist. `GET` lists them; `PUT` and `DELETE` of a name
//! subscribe and unsubscribe it (each answers `changed`: false if it already was so).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::read::{read, ReadQuery};
use super::write::{session, submit, write_response, SessionQuery};
use crate::api::error::ApiError;
use crate::api::extract::{MailboxPath, QueryParams, UserPath};
use crate::service::MailService;
use crate::txn::Op;

#[derive(serde::Serialize)]
struct SubscriptionList {
    /// Names in name order.
    subscriptions: Vec<String>,
}

pub(super) async fn list<S: MailService>(
    State(service): State<Arc<S>>,
    UserPath(user): UserPath,
    QueryParams(query): QueryParams<ReadQuery>,
) -> Result<Response, ApiError> {
    read(&*service, user, query, |g, user| {
        Ok(SubscriptionList {
            subscriptions: g.subscriptions(user),
        })
    })
    .await
}

pub(super) async fn subscribe<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(query): QueryParams<SessionQuery>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), query.client_id, query.request_seq)?;
    write_response(
        submit(&*service, client, Op::Subscribe { user, mailbox }).await?,
        false,
    )
}

pub(super) async fn unsubscribe<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(query): QueryParams<SessionQuery>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), query.client_id, query.request_seq)?;
    write_response(
        submit(&*service, client, Op::Unsubscribe { user, mailbox }).await?,
        false,
    )
}
