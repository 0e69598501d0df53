//! `ApiError`: every failure of the HTTP API as a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::service::ServiceError;
use crate::state_machine::ReadError;
use crate::txn::{Rejection, TxnError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: `invalid`, `no_such_mailbox`, `mailbox_exists`, ...
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        (self.status, body).into_response()
    }
}

impl From<TxnError> for ApiError {
    fn from(e: TxnError) -> ApiError {
        ApiError::invalid(e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::NoSuchMailbox { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_mailbox", e.to_string())
            }
            ReadError::Invalid(e) => e.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Unavailable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
            }
            ServiceError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string())
            }
            ServiceError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            ServiceError::Internal { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        let (status, code) = match &r {
            Rejection::NoSuchMailbox { .. } => (StatusCode::NOT_FOUND, "no_such_mailbox"),
            Rejection::MailboxExists { .. } => (StatusCode::CONFLICT, "mailbox_exists"),
            Rejection::HasChildren { .. } => (StatusCode::CONFLICT, "has_children"),
            Rejection::RenameIntoSelf { .. } => (StatusCode::BAD_REQUEST, "rename_into_self"),
            Rejection::KeywordLimit { .. } => (StatusCode::CONFLICT, "keyword_limit"),
            Rejection::UidSpaceExhausted => (StatusCode::CONFLICT, "uid_space_exhausted"),
            Rejection::UidValidityExhausted => (StatusCode::CONFLICT, "uid_validity_exhausted"),
            Rejection::TooManyMailboxes { .. } => (StatusCode::CONFLICT, "too_many_mailboxes"),
            Rejection::StaleRequest { .. } => (StatusCode::CONFLICT, "stale_request"),
            Rejection::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        };
        ApiError::new(status, code, r.to_string())
    }
}
