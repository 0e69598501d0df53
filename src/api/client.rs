//! The client API: JSON over HTTP, one route per transaction type and read.
//!
//! ```text
//! GET    /v1/users/{user}/mailboxes                       list
//! POST   /v1/users/{user}/mailboxes                       create        {"name"}
//! GET    /v1/users/{user}/mailboxes/{mailbox}             status
//! DELETE /v1/users/{user}/mailboxes/{mailbox}             delete
//! POST   /v1/users/{user}/mailboxes/{mailbox}/rename      rename        {"to"}
//! POST   /v1/users/{user}/mailboxes/{mailbox}/messages    append        {"messages": [...]}
//! GET    /v1/users/{user}/mailboxes/{mailbox}/messages    records by UID range (?first&last&limit)
//! POST   /v1/users/{user}/mailboxes/{mailbox}/store       flags         {"uids","mode","flags","unchanged_since"}
//! POST   /v1/users/{user}/mailboxes/{mailbox}/expunge     expunge       {"uids","expected_guids"}
//! GET    /v1/users/{user}/mailboxes/{mailbox}/changes     changes since ?since=MODSEQ
//! ```
//! Mailbox names are percent-encoded path segments (`Archive%2F2024`). Writes take optional
//! `client_id` and `request_seq` (a retry with the same pair is applied once) and answer with the
//! outcome, the group and a `token` (the entry's log index); reads take `consistency=local|
//! linearizable` (default linearizable) and `min_applied=<token>`, and answer with `applied`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorCode};
use super::extract::{JsonBody, PathParams, QueryParams};
use crate::service::{Consistency, MailService, ReadOptions, WriteAck};
use crate::state_machine::apply::hex;
use crate::state_machine::manifest::{is_anonymous, ANONYMOUS_CLIENT_PREFIX};
use crate::state_machine::{GroupStateMachine, ReadError};
use crate::txn::validate::{check_client_id, check_mailbox_name, check_user};
use crate::txn::{Guid, NewMessage, Op, Outcome, StoreMode, Txn, UidSet};

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most records one fetch returns.
pub const MAX_FETCH_LIMIT: usize = 10_000;

/// The client API router over a service.
pub fn router<S: MailService>(service: Arc<S>) -> Router {
    Router::new()
        .route("/v1/users/{user}/mailboxes", get(list::<S>).post(create::<S>))
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}",
            get(status::<S>).delete(delete::<S>),
        )
        .route("/v1/users/{user}/mailboxes/{mailbox}/rename", post(rename::<S>))
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}/messages",
            get(fetch::<S>).post(append::<S>),
        )
        .route("/v1/users/{user}/mailboxes/{mailbox}/store", post(store::<S>))
        .route("/v1/users/{user}/mailboxes/{mailbox}/expunge", post(expunge::<S>))
        .route("/v1/users/{user}/mailboxes/{mailbox}/changes", get(changes::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
}

// ---------------------------------------------------------------------------------------------
// Writes.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    to: String,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody {
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
struct StoreBody {
    uids: String,
    mode: StoreMode,
    flags: Vec<String>,
    unchanged_since: Option<u64>,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpungeBody {
    uids: String,
    /// UID -> expected message GUID (hex).
    #[serde(default)]
    expected_guids: std::collections::BTreeMap<u32, String>,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

/// The client session of a write: given, or a fresh one-off id (no retry protection).
fn session(
    node_id: u64,
    client_id: Option<String>,
    request_seq: Option<u64>,
) -> Result<(String, u64), ApiError> {
    match (client_id, request_seq) {
        (Some(client_id), Some(seq)) => {
            check_client_id(&client_id)?;
            if is_anonymous(&client_id) {
                return Err(ApiError::invalid(format!(
                    "client_id {client_id:?}: the prefix {ANONYMOUS_CLIENT_PREFIX:?} is reserved for the ids a node makes for writes without client_id"
                )));
            }
            Ok((client_id, seq))
        }
        (Some(_), None) => Err(ApiError::invalid("client_id given without request_seq")),
        (None, Some(_)) => Err(ApiError::invalid("request_seq given without client_id")),
        (None, None) => Ok((
            format!("{ANONYMOUS_CLIENT_PREFIX}{node_id}-{}", hex(&random_guid())),
            1,
        )),
    }
}

fn random_guid() -> Guid {
    let mut guid = [0u8; 16];
    getrandom::fill(&mut guid).expect("the OS random source is available");
    guid
}

pub(crate) fn parse_guid(text: &str) -> Result<Guid, ApiError> {
    let invalid = || ApiError::invalid(format!("GUID {text:?} is not 32 hex digits"));
    if text.len() != 32 || !text.is_ascii() {
        return Err(invalid());
    }
    let mut guid = [0u8; 16];
    for (i, byte) in guid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
    }
    Ok(guid)
}

fn parse_uids(text: &str) -> Result<UidSet, ApiError> {
    UidSet::parse(text).map_err(|e| ApiError::invalid(e.to_string()))
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn submit<S: MailService>(service: &S, client: (String, u64), op: Op) -> Result<WriteAck, ApiError> {
    let txn = Txn {
        client_id: client.0,
        request_seq: client.1,
        op,
    };
    crate::txn::validate::validate(&txn)?;
    Ok(service.write(txn).await?)
}

/// The HTTP answer for an applied write: 2xx with the result, or the rejection's error.
fn write_response(ack: WriteAck, created: bool) -> Result<Response, ApiError> {
    let mut body = json!({"group": ack.group, "token": ack.position.index});
    let result = match ack.outcome {
        Outcome::Rejected(rejection) => return Err(rejection.into()),
        Outcome::Created {
            mailbox_guid,
            uid_validity,
        } => json!({"mailbox_guid": hex(&mailbox_guid), "uid_validity": uid_validity}),
        Outcome::Renamed { mailboxes } => json!({"renamed": mailboxes}),
        Outcome::Deleted { mailbox_guid } => json!({"mailbox_guid": hex(&mailbox_guid)}),
        Outcome::Appended {
            uid_validity,
            first_uid,
            last_uid,
            modseq,
        } => {
            json!({"uid_validity": uid_validity, "first_uid": first_uid, "last_uid": last_uid, "modseq": modseq})
        }
        Outcome::Stored {
            modseq,
            changed,
            modified,
        } => {
            if changed.is_empty() && !modified.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::ConditionFailed,
                    format!(
                        "UNCHANGEDSINCE failed for UIDs {modified} (token {})",
                        ack.position.index
                    ),
                ));
            }
            json!({"modseq": modseq, "changed": changed.to_string(), "modified": modified.to_string()})
        }
        Outcome::Expunged {
            modseq,
            expunged,
            guid_mismatch,
        } => {
            json!({"modseq": modseq, "expunged": expunged.to_string(), "guid_mismatch": guid_mismatch.to_string()})
        }
    };
    if let (Value::Object(body), Value::Object(result)) = (&mut body, result) {
        body.extend(result);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

async fn create<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams(user): PathParams<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let op = Op::CreateMailbox {
        user,
        mailbox: body.name,
        mailbox_guid: random_guid(),
        uid_validity: u32::try_from(now_seconds()).unwrap_or(u32::MAX).max(1),
    };
    write_response(submit(&*service, client, op).await?, true)
}

async fn rename<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<RenameBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let op = Op::RenameMailbox {
        user,
        from: mailbox,
        to: body.to,
    };
    write_response(submit(&*service, client, op).await?, false)
}

async fn delete<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<SessionQuery>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), query.client_id, query.request_seq)?;
    write_response(
        submit(&*service, client, Op::DeleteMailbox { user, mailbox }).await?,
        false,
    )
}

async fn append<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<AppendBody>,
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

async fn store<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<StoreBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let op = Op::Store {
        user,
        mailbox,
        uids: parse_uids(&body.uids)?,
        mode: body.mode,
        flags: body.flags,
        unchanged_since: body.unchanged_since,
    };
    write_response(submit(&*service, client, op).await?, false)
}

async fn expunge<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<ExpungeBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let expected_guids = body
        .expected_guids
        .iter()
        .map(|(uid, guid)| Ok((*uid, parse_guid(guid)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let op = Op::Expunge {
        user,
        mailbox,
        uids: parse_uids(&body.uids)?,
        expected_guids,
    };
    write_response(submit(&*service, client, op).await?, false)
}

// ---------------------------------------------------------------------------------------------
// Reads.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    #[serde(default)]
    consistency: Consistency,
    min_applied: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchQuery {
    #[serde(default)]
    consistency: Consistency,
    min_applied: Option<u64>,
    first: Option<u32>,
    last: Option<u32>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    #[serde(default)]
    consistency: Consistency,
    min_applied: Option<u64>,
    since: u64,
}

/// Runs a read and wraps its value with the group and applied position.
async fn read<S, R, F>(service: &S, user: String, options: ReadOptions, f: F) -> Result<Response, ApiError>
where
    S: MailService,
    R: serde::Serialize + Send + 'static,
    F: FnOnce(&GroupStateMachine, &str) -> Result<R, ReadError> + Send + 'static,
{
    check_user(&user)?;
    let ack = service.read(&user.clone(), options, move |g| f(g, &user)).await?;
    let value = serde_json::to_value(ack.value?).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut body = json!({"group": ack.group, "applied": ack.applied.map(|a| a.index)});
    if let (Value::Object(body), Value::Object(value)) = (&mut body, value) {
        body.extend(value);
    }
    Ok(Json(body).into_response())
}

#[derive(serde::Serialize)]
struct MailboxList {
    mailboxes: Vec<crate::state_machine::MailboxSummary>,
}

async fn list<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams(user): PathParams<String>,
    QueryParams(q): QueryParams<ReadQuery>,
) -> Result<Response, ApiError> {
    let options = ReadOptions {
        consistency: q.consistency,
        min_applied: q.min_applied,
    };
    read(&*service, user, options, |g, user| {
        Ok(MailboxList {
            mailboxes: g.state().list_mailboxes(user),
        })
    })
    .await
}

async fn status<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<ReadQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    let options = ReadOptions {
        consistency: q.consistency,
        min_applied: q.min_applied,
    };
    read(&*service, user, options, move |g, user| {
        g.state().status(user, &mailbox)
    })
    .await
}

#[derive(serde::Serialize)]
struct Messages {
    messages: Vec<crate::state_machine::MessageView>,
}

async fn fetch<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<FetchQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_FETCH_LIMIT {
        return Err(ApiError::invalid(format!("limit must be 1..={MAX_FETCH_LIMIT}")));
    }
    let (first, last) = (q.first.unwrap_or(1), q.last.unwrap_or(u32::MAX));
    let options = ReadOptions {
        consistency: q.consistency,
        min_applied: q.min_applied,
    };
    read(&*service, user, options, move |g, user| {
        Ok(Messages {
            messages: g.state().fetch(user, &mailbox, first, last, limit)?,
        })
    })
    .await
}

async fn changes<S: MailService>(
    State(service): State<Arc<S>>,
    PathParams((user, mailbox)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<ChangesQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    let options = ReadOptions {
        consistency: q.consistency,
        min_applied: q.min_applied,
    };
    read(&*service, user, options, move |g, user| {
        let changes = g.state().changes_since(user, &mailbox, q.since)?;
        Ok(json!({
            "uid_validity": changes.uid_validity,
            "highest_modseq": changes.highest_modseq,
            "changed": changes.changed,
            "vanished": changes.vanished.to_string(),
        }))
    })
    .await
}
