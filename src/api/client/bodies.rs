//! Message bodies: a delivery (`POST .../messages` with `content-type: message/rfc822`, the
//! message's bytes as the request body) and a body's bytes (`GET .../messages/{uid}/body`, with
//! `Range`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::read::ReadQuery;
use super::write::{now_seconds, session, submit, write_response};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::extract::{MessagePath, QueryParams};
use crate::bodies::stream::file_body;
use crate::bodies::BodyId;
use crate::service::{deliver_op, delivery_guid, MailService};
use crate::txn::validate::{check_mailbox_name, check_user};

/// The media type of a delivery's body.
pub const MESSAGE_RFC822: &str = "message/rfc822";

/// Whether a request's body is a message to deliver (rather than a JSON append).
pub(super) fn is_delivery(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(MESSAGE_RFC822))
}

/// A delivery's parameters, in the query string (the body is the message).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliverQuery {
    /// Space-separated flags and keywords, as in IMAP (`\Seen $Forwarded`).
    #[serde(default)]
    flags: String,
    /// Seconds since the epoch; defaults to the receiving node's clock.
    internal_date: Option<i64>,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

/// `POST .../messages` with a `message/rfc822` body: stores the body on a majority of the
/// group's voters, then proposes the entry that names it; answers as an append.
pub(super) async fn deliver<S: MailService>(
    service: Arc<S>,
    user: String,
    mailbox: String,
    query: DeliverQuery,
    request: Request,
) -> Result<Response, ApiError> {
    // Checked before the body is read: a request that would be refused stores nothing.
    check_user(&user)?;
    check_mailbox_name(&mailbox)?;
    let given = query.client_id.is_some();
    let client = session(service.node_id(), query.client_id, query.request_seq)?;
    let flags: Vec<String> = query.flags.split_whitespace().map(str::to_string).collect();
    let max = service.max_message_bytes();
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("the message is larger than {max} bytes (--max-message-bytes)"),
        ));
    }
    let stored = service.store_body(&user, request.into_body()).await?;
    let op = deliver_op(
        user,
        mailbox,
        stored,
        delivery_guid(given.then_some(&client), &stored.id),
        query.internal_date.unwrap_or_else(now_seconds),
        flags,
    );
    write_response(submit(&*service, client, op).await?, false)
}

/// `GET .../messages/{uid}/body`: the message's bytes, whole or the one range asked for.
pub(super) async fn body<S: MailService>(
    State(service): State<Arc<S>>,
    MessagePath(user, mailbox, uid): MessagePath,
    QueryParams(query): QueryParams<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_user(&user)?;
    check_mailbox_name(&mailbox)?;
    let ack = service
        .read(&user, query.into(), {
            let (user, mailbox) = (user.clone(), mailbox.clone());
            move |g| g.state().fetch(&user, &mailbox, uid, uid, 1)
        })
        .await?;
    let message = ack
        .value?
        .into_iter()
        .find(|m| m.uid == uid)
        .ok_or_else(|| ApiError::new(ErrorCode::NoSuchMessage, format!("no message with UID {uid}")))?;
    let Some(id) = message.body.map(BodyId) else {
        return Err(ApiError::new(
            ErrorCode::NoSuchMessage,
            format!("message {uid} was appended without a body (index only)"),
        ));
    };
    let size = message.size;
    let range = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(text) => match parse_range(text, size) {
            RangeAsked::Whole => None,
            RangeAsked::Bytes(start, end) => Some((start, end)),
            RangeAsked::Unsatisfiable => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                response.headers_mut().insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
                );
                return Ok(response);
            }
        },
    };
    let file = service.open_body(&user, id).await?;
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    let mut response = Response::new(Body::new(file_body(file, start, len)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(MESSAGE_RFC822));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-dovetail-body", HeaderValue::from_str(&id.hex()).expect("hex"));
    if let Some(applied) = ack.applied {
        h.insert("x-dovetail-applied", HeaderValue::from(applied.index));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1)).expect("ASCII"),
        );
    }
    Ok(response)
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeAsked {
    /// No range this server serves (another unit, several ranges, a malformed one): the
    /// whole body, as RFC 9110 §14.2 lets a server answer.
    Whole,
    /// Bytes `start..=end`, within the body.
    Bytes(u64, u64),
    /// A well-formed range that starts at or after the end: 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range (RFC 9110 §14.1.2): `a-b`, `a-`, or the suffix `-n`.
pub(super) fn parse_range(text: &str, size: u64) -> RangeAsked {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeAsked::Whole;
    };
    if spec.contains(',') {
        return RangeAsked::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsked::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (first, last) {
        ("", n) if digits(n) => match n.parse::<u64>() {
            Ok(0) => RangeAsked::Unsatisfiable,
            Ok(_) if size == 0 => RangeAsked::Unsatisfiable,
            Ok(n) => RangeAsked::Bytes(size.saturating_sub(n), size - 1),
            Err(_) => RangeAsked::Bytes(0, size.saturating_sub(1)),
        },
        (a, b) if digits(a) && (b.is_empty() || digits(b)) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeAsked::Unsatisfiable;
            };
            if start >= size {
                return RangeAsked::Unsatisfiable;
            }
            let end = if b.is_empty() {
                size - 1
            } else {
                match b.parse::<u64>() {
                    Ok(end) if end < start => return RangeAsked::Whole,
                    Ok(end) => end.min(size - 1),
                    Err(_) => size - 1,
                }
            };
            RangeAsked::Bytes(start, end)
        }
        _ => RangeAsked::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeAsked::*;
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Bytes(90, 99));
        assert_eq!(parse_range("bytes=90-1000", 100), Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Bytes(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Bytes(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=a-b", 100), Whole);
        assert_eq!(parse_range("bytes=+1-2", 100), Whole);
        assert_eq!(parse_range("bytes=99999999999999999999999-", 100), Unsatisfiable);
    }
}
