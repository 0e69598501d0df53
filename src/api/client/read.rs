//! What every read of the client API shares: the freshness parameters ([`ReadQuery`], the one
//! place where a query string becomes `ReadOptions`) and the answer ([`read`]).

use std::fmt;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::service::{Consistency, MailService, ReadOptions};
use crate::state_machine::{GroupStateMachine, ReadError};
use crate::txn::validate::check_user;

/// `consistency` and `min_applied`: the query parameters every read takes. Reads with
/// parameters of their own embed it with `#[serde(flatten)]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadQuery {
    #[serde(default)]
    consistency: Consistency,
    #[serde(default, deserialize_with = "log_index_from_text")]
    min_applied: Option<u64>,
}

impl From<ReadQuery> for ReadOptions {
    fn from(q: ReadQuery) -> ReadOptions {
        ReadOptions {
            consistency: q.consistency,
            min_applied: q.min_applied,
        }
    }
}

/// A log index from a query string. Needed because a flattened struct receives its values as
/// the strings serde buffered, which `u64`'s own `Deserialize` refuses; the parse error's text is
/// the one `serde_urlencoded` gives.
fn log_index_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct LogIndex;
    impl Visitor<'_> for LogIndex {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a log index")
        }
        fn visit_u64<E: de::Error>(self, index: u64) -> Result<u64, E> {
            Ok(index)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
            text.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_any(LogIndex).map(Some)
}

/// Most records (or changes) one page of a read returns: `/messages` and `/changes`.
pub const MAX_FETCH_LIMIT: usize = 10_000;

/// What a page holds when the request gives no `limit`.
pub const DEFAULT_FETCH_LIMIT: usize = 1_000;

/// A read's `limit` parameter: [`DEFAULT_FETCH_LIMIT`] if absent, else 1 to [`MAX_FETCH_LIMIT`].
pub(super) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_FETCH_LIMIT) {
        limit @ 1..=MAX_FETCH_LIMIT => Ok(limit),
        _ => Err(ApiError::invalid(format!("limit must be 1..={MAX_FETCH_LIMIT}"))),
    }
}

/// Runs a read of `user`'s group and wraps its value with the group and applied position.
pub(super) async fn read<S, R, F>(
    service: &S,
    user: String,
    query: ReadQuery,
    f: F,
) -> Result<Response, ApiError>
where
    S: MailService,
    R: serde::Serialize + Send + 'static,
    F: FnOnce(&GroupStateMachine, &str) -> Result<R, ReadError> + Send + 'static,
{
    check_user(&user)?;
    let ack = service
        .read(&user.clone(), query.into(), move |g| f(g, &user))
        .await?;
    let value = serde_json::to_value(ack.value?).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut body = json!({"group": ack.group, "applied": ack.applied.map(|a| a.index)});
    if let (Value::Object(body), Value::Object(value)) = (&mut body, value) {
        body.extend(value);
    }
    Ok(Json(body).into_response())
}
