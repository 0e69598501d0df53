//! What every write of the client API shares: its admission ([`admit`]), its client session
//! ([`session`]), validation and proposal ([`submit`]), and its answer ([`write_response`]).

use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::api::error::{ApiError, ErrorCode};
use crate::service::{MailService, WriteAck};
use crate::state_machine::apply::hex;
use crate::state_machine::manifest::{is_anonymous, ANONYMOUS_CLIENT_PREFIX};
use crate::txn::validate::check_client_id;
use crate::txn::{Op, Outcome, Txn, UidMap};

/// A route layer: a write (POST, PUT, DELETE) of a user whose group the node knows to be busy is
/// answered 429 at once, before its body is read or parsed (`MailService::admit_write`); reads
/// and other writes go on.
pub(super) async fn admit<S: MailService>(
    State(service): State<Arc<S>>,
    // A path the handler will refuse anyway (not UTF-8) is left to it, for its JSON error.
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    if let (Ok(params), Method::POST | Method::PUT | Method::DELETE) = (&params, request.method().clone()) {
        let user = params
            .iter()
            .find(|(key, _)| *key == "user")
            .map(|(_, user)| user);
        if let Some(Err(e)) = user.map(|user| service.admit_write(user)) {
            return ApiError::from(e).into_response();
        }
    }
    next.run(request).await
}

/// The client session of a write without a body (delete, probe, subscribe, unsubscribe), from
/// its query string.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionQuery {
    pub(super) client_id: Option<String>,
    pub(super) request_seq: Option<u64>,
}

/// The client session of a write: given, or a fresh one-off id (no retry protection).
pub(super) fn session(
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

pub(super) use crate::service::{now_seconds, random_guid};

/// Validates `op` as a transaction of `client` and proposes it; answers once it is applied.
pub(super) async fn submit<S: MailService>(
    service: &S,
    client: (String, u64),
    op: Op,
) -> Result<WriteAck, ApiError> {
    let txn = Txn {
        client_id: client.0,
        request_seq: client.1,
        op,
    };
    crate::txn::validate::validate_content(&txn, crate::txn::encoding::CURRENT_ENCODING)?;
    Ok(service.write(txn).await?)
}

/// A copy's UIDs as UIDPLUS's COPYUID gives them (RFC 4315): the source UIDs copied and the
/// target UIDs, the i-th of one the copy of the i-th of the other; both empty if none was.
fn uid_map(uids: &UidMap) -> Value {
    json!({"source": uids.source.to_string(), "target": uids.target().to_string()})
}

/// The HTTP answer for an applied write: 2xx with the result, or the rejection's error.
pub(super) fn write_response(ack: WriteAck, created: bool) -> Result<Response, ApiError> {
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
        Outcome::EncodingSet { encoding } => json!({"encoding": encoding}),
        Outcome::Probed => json!({"probed": true}),
        Outcome::Copied {
            uid_validity,
            uids,
            modseq,
        } => json!({"uid_validity": uid_validity, "uid_map": uid_map(&uids), "modseq": modseq}),
        Outcome::Moved {
            uid_validity,
            uids,
            modseq,
            expunged,
            source_modseq,
        } => json!({
            "uid_validity": uid_validity,
            "uid_map": uid_map(&uids),
            "modseq": modseq,
            "expunged": expunged.to_string(),
            "source_modseq": source_modseq,
        }),
        Outcome::Subscribed { changed } => json!({"subscribed": true, "changed": changed}),
        Outcome::Unsubscribed { changed } => json!({"subscribed": false, "changed": changed}),
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
