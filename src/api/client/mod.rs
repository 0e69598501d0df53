//! The client API: JSON over HTTP, one route per transaction type and read.
//!
//! ```text
//! GET    /v1/users/{user}/mailboxes                       list
//! POST   /v1/users/{user}/mailboxes                       create        {"name"}
//! GET    /v1/users/{user}/mailboxes/{mailbox}             status
//! DELETE /v1/users/{user}/mailboxes/{mailbox}             delete
//! POST   /v1/users/{user}/mailboxes/{mailbox}/rename      rename        {"to"}
//! POST   /v1/users/{user}/mailboxes/{mailbox}/messages    append        {"messages": [...]}
//!                                                         or deliver    message/rfc822 body (?flags&internal_date)
//! GET    /v1/users/{user}/mailboxes/{mailbox}/messages/{uid}/body   the message's bytes (Range)
//! GET    /v1/users/{user}/mailboxes/{mailbox}/messages    records by UID range (?first&last&limit)
//! POST   /v1/users/{user}/mailboxes/{mailbox}/store       flags         {"uids","mode","flags","unchanged_since"}
//! POST   /v1/users/{user}/mailboxes/{mailbox}/expunge     expunge       {"uids","expected_guids"}
//! GET    /v1/users/{user}/mailboxes/{mailbox}/changes     changes ?since=MODSEQ&after_uid&limit, paged
//! POST   /v1/users/{user}/mailboxes/{mailbox}/copy        copy or move  {"uids","to","move"}
//! GET    /v1/users/{user}/subscriptions                   subscribed names
//! PUT    /v1/users/{user}/subscriptions/{mailbox}         subscribe
//! DELETE /v1/users/{user}/subscriptions/{mailbox}         unsubscribe
//! ```
//! Mailbox names are percent-encoded path segments (`Archive%2F2024`). Writes take optional
//! `client_id` and `request_seq` (a retry with the same pair is applied once) and answer with the
//! outcome, the group and a `token` (the entry's log index); reads take `consistency=local|
//! linearizable` (default linearizable) and `min_applied=<token>`, and answer with `applied`.
//!
//! One file per resource, each with its handlers and body types: `mailboxes` (list, create,
//! status, delete, rename), `messages` (append, fetch), `bodies` (deliver, a body's bytes), `flags`
//! (store, expunge), `changes`, `copy` (copy, move), `subscriptions` (list, subscribe, unsubscribe).
//! What every write shares is in `write` (the client session, validation, the answer); what
//! every read shares is in `read` (the freshness parameters, the answer). This file holds the
//! route table.

mod bodies;
mod changes;
mod copy;
mod flags;
mod mailboxes;
mod messages;
mod probe;
mod read;
mod subscriptions;
mod write;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

pub use read::{DEFAULT_FETCH_LIMIT, MAX_FETCH_LIMIT};

use super::error::ApiError;
use crate::service::MailService;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The route of the test op (`POST /v1/users/{user}/probe`, see `probe.rs`), merged beside the
/// client API only on a node started with `--test-next-encoding`.
pub fn test_next_encoding_router<S: MailService>(service: Arc<S>) -> Router {
    Router::new()
        .route("/v1/users/{user}/probe", post(probe::probe::<S>))
        .method_not_allowed_fallback(ApiError::method_not_allowed)
        .with_state(service)
}

/// The client API router over a service.
pub fn router<S: MailService>(service: Arc<S>) -> Router {
    Router::new()
        .route(
            "/v1/users/{user}/mailboxes",
            get(mailboxes::list::<S>).post(mailboxes::create::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}",
            get(mailboxes::status::<S>).delete(mailboxes::delete::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/rename",
            post(mailboxes::rename::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/messages",
            get(messages::fetch::<S>).post(messages::append_or_deliver::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/messages/{uid}/body",
            get(bodies::body::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/store",
            post(flags::store::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/expunge",
            post(flags::expunge::<S>),
        )
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/changes",
            get(changes::changes::<S>),
        )
        .route("/v1/users/{user}/mailboxes/{mailbox}/copy", post(copy::copy::<S>))
        .route("/v1/users/{user}/subscriptions", get(subscriptions::list::<S>))
        .route(
            "/v1/users/{user}/subscriptions/{mailbox}",
            put(subscriptions::subscribe::<S>).delete(subscriptions::unsubscribe::<S>),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            service.clone(),
            write::admit::<S>,
        ))
        .fallback(ApiError::no_such_route)
        .method_not_allowed_fallback(ApiError::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}
