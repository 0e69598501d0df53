//! Extractors that turn axum's rejections (bad JSON, oversized body, bad path or query) into
//! `ApiError`s, so every failure carries the JSON error body with the fitting status; and the
//! parsers of values that paths and bodies carry as text (GUIDs, UID sets).

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::{quoted, ApiError, ErrorCode};
use crate::txn::{Guid, UidSet, UidSetError};

/// A JSON request body: 400 `invalid` for a body that is not JSON or does not fit the request
/// (an unknown, missing or mistyped field: one status for one kind of mistake, on every route),
/// 413 past the body limit, 415 without a JSON content type.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = match rejection.status().as_u16() {
        413 => ErrorCode::TooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        // axum answers a body of the wrong shape with 422: here it is bad input like any other.
        _ => ErrorCode::Invalid,
    };
    ApiError::new(code, rejection.body_text())
}

/// The admin routes' JSON body: [`JsonBody`] under the name its handlers know.
pub use JsonBody as AdminJson;

/// A JSON request body that may be left out: an empty (or blank) body means `T::default()`.
/// Any content type is accepted; a body that does not parse is 400 `invalid`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    /// The body could not be read (axum's answer), or did not parse (a JSON error).
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&body)
            .map(OptionalJson)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")).into_response())
    }
}

/// Path parameters, percent-decoded (a `/` inside a mailbox name is sent as `%2F`).
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

/// A name as the client API takes it: in Unicode NFC, so that names that look alike (`café` typed
/// with a combining accent or a precomposed one) are one name (RFC 5198, RFC 6855).
pub fn nfc(name: String) -> String {
    use unicode_normalization::UnicodeNormalization;
    if unicode_normalization::is_nfc(&name) {
        name
    } else {
        name.nfc().collect()
    }
}

/// `{user}` of a client route, percent-decoded and in NFC ([`nfc`]).
pub struct UserPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathParams(user) = PathParams::<String>::from_request_parts(parts, state).await?;
        Ok(UserPath(nfc(user)))
    }
}

/// `{user}` and `{mailbox}` of a client route, percent-decoded and in NFC ([`nfc`]).
pub struct MailboxPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for MailboxPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathParams((user, mailbox)) =
            PathParams::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(MailboxPath(nfc(user), nfc(mailbox)))
    }
}

/// `{user}`, `{mailbox}` and `{uid}` of a message's route: the first two as [`MailboxPath`], the
/// UID an nz-number.
pub struct MessagePath(pub String, pub String, pub u32);

impl<S: Send + Sync> FromRequestParts<S> for MessagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathParams((user, mailbox, uid)) =
            PathParams::<(String, String, String)>::from_request_parts(parts, state).await?;
        let uid = crate::txn::uid_set::parse_nz_number(&uid).ok_or_else(|| {
            ApiError::invalid(format!(
                "UID {}: not a number from 1 to 4294967295",
                crate::txn::quoted(&uid)
            ))
        })?;
        Ok(MessagePath(nfc(user), nfc(mailbox), uid))
    }
}

/// 400 for a path that does not fit the route's parameters; a route whose parameters do not fit
/// its handler is this program's bug (500).
fn path_rejection(rejection: PathRejection) -> ApiError {
    let code = match rejection.status().as_u16() {
        400 => ErrorCode::Invalid,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, rejection.body_text())
}

/// Query parameters.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::invalid(rejection.body_text())
}

/// A GUID as 32 hex digits.
pub fn parse_guid(text: &str) -> Result<Guid, ApiError> {
    let invalid = || ApiError::invalid(format!("GUID {text:?} is not 32 hex digits"));
    // Hex digits only: `from_str_radix` alone would also take a sign (`+f`).
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let mut guid = [0u8; 16];
    for (i, byte) in guid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
    }
    Ok(guid)
}

/// A UID set in IMAP syntax (`1:5,9`); the error quotes at most 64 bytes of it.
pub fn parse_uids(text: &str) -> Result<UidSet, ApiError> {
    UidSet::parse(text).map_err(|e| match e {
        UidSetError::Syntax(text) => ApiError::invalid(UidSetError::Syntax(quoted(&text)).to_string()),
        e => ApiError::invalid(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GUID is 32 hex digits and nothing else: `+f+f...` (which `u8::from_str_radix` reads
    /// as hex) used to be taken as a GUID, a second spelling of one.
    #[test]
    fn guids_are_hex_digits_only() {
        assert_eq!(parse_guid(&"0f".repeat(16)).unwrap(), [0x0f; 16]);
        assert_eq!(parse_guid(&"AB".repeat(16)).unwrap(), [0xab; 16]);
        for bad in [
            "+f".repeat(16),
            "-0".repeat(16),
            "0f".repeat(15),
            "g0".repeat(16),
            "é".repeat(16),
        ] {
            assert!(parse_guid(&bad).is_err(), "{bad}");
        }
    }
}
