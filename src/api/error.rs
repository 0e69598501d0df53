//! `ApiError`: every failure of the HTTP API as an [`ErrorCode`] and a message, answered as
//! `{"error": {"code": "...", "message": "..."}}` with the status of the code.
//!
//! The status of each code is decided in one exhaustive `match` ([`ErrorCode::status`]), and the
//! `From` impls below are the only places where another layer's error becomes an HTTP error:
//! transaction and read failures, `ServiceError` (the client API, through `MailService`), the
//! raft layer's `ProposeError` and `RaftNodeError`, and the errors of the node's maintenance
//! (`ReplicaError`, `RepairError`, another member's `PeerApiError`) for the admin API.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dovetail_raft::{ProposeError, RaftNodeError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::node::peer_api::PeerApiError;
use crate::node::repair::RepairError;
use crate::node::replica::ReplicaError;
use crate::service::ServiceError;
use crate::state_machine::ReadError;
use crate::txn::{Rejection, TxnError};

/// What went wrong, as a client sees it: the `code` of the JSON error body. Stable and
/// machine-readable; the string is the variant's name in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Bad input: names, flags, UID sets, GUIDs, query parameters, a body that is not JSON or
    /// does not fit the request (an unknown, missing or mistyped field), a `min_applied` beyond
    /// what the group committed.
    Invalid,
    /// No bearer token, or not this router's token.
    Unauthorized,
    /// No route matches the path.
    NotFound,
    MethodNotAllowed,
    NoSuchMailbox,
    /// No message with that UID, or one appended without a body (index only).
    NoSuchMessage,
    /// A peer asked for a body this node has no good copy of.
    NoSuchBody,
    NoSuchGroup,
    NoSuchNode,
    MailboxExists,
    HasChildren,
    RenameIntoSelf,
    KeywordLimit,
    UidSpaceExhausted,
    UidValidityExhausted,
    TooManyMailboxes,
    TooManySubscriptions,
    /// A request older than the client's last one (its session has moved on).
    StaleRequest,
    /// The client's `request_seq` was already used for a different request.
    RequestReused,
    /// UNCHANGEDSINCE failed for every UID asked.
    ConditionFailed,
    /// The op needs a log encoding the group has not enabled (a rolling upgrade is not done).
    NotEnabled,
    /// This node's copy of a mailbox fails its own checks, so it is not handed out.
    Damaged,
    /// A body over the limit, or a transaction over one log entry.
    TooLarge,
    UnsupportedMediaType,
    Internal,
    /// A repair's copy from another replica could not be installed.
    BadCopy,
    /// Another member refused (4xx) a request this node passed on or made.
    PeerRefused,
    /// A bounded queue on the way to the group's leader was full: the request was not taken.
    /// Retry after the `Retry-After` header's seconds.
    Busy,
    /// No leader or quorum before the deadline, or another member did not answer: retry.
    Unavailable,
    /// The group stopped on this node (a storage failure, or a log encoding its release cannot
    /// apply: `ctl groups` says which); other nodes may serve it.
    GroupStopped,
    /// This node's disk is (nearly) full (its storage alarm): no writes through it until space
    /// returns; reads work, and so do writes through other nodes.
    InsufficientStorage,
    ShuttingDown,
    /// This node was removed from the group: ask one of the group's members.
    Removed,
    /// A promotion refused: the learner lags or has not answered lately (`force` overrides).
    NotCaughtUp,
    /// A promotion of a node that is not a learner of some group (add it first).
    NotALearner,
    /// A removal refused: too few voters would be left to survive a failure (`force` overrides).
    TooFewVoters,
}

impl ErrorCode {
    /// The HTTP status of every answer with this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Invalid | ErrorCode::RenameIntoSelf => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound
            | ErrorCode::NoSuchMailbox
            | ErrorCode::NoSuchMessage
            | ErrorCode::NoSuchBody
            | ErrorCode::NoSuchGroup
            | ErrorCode::NoSuchNode => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MailboxExists
            | ErrorCode::HasChildren
            | ErrorCode::KeywordLimit
            | ErrorCode::UidSpaceExhausted
            | ErrorCode::UidValidityExhausted
            | ErrorCode::TooManyMailboxes
            | ErrorCode::TooManySubscriptions
            | ErrorCode::StaleRequest
            | ErrorCode::RequestReused
            | ErrorCode::ConditionFailed
            | ErrorCode::NotEnabled
            | ErrorCode::Damaged
            | ErrorCode::NotCaughtUp
            | ErrorCode::NotALearner
            | ErrorCode::TooFewVoters => StatusCode::CONFLICT,
            ErrorCode::Removed => StatusCode::GONE,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::BadCopy | ErrorCode::PeerRefused => StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::GroupStopped => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A failed request: the code decides the status, the message says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Machine-readable particulars beside the message (`error.details`), such as what each
    /// group's leader answered to a refused membership change.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The same error with `details` in its body.
    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Invalid, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The answer to a path no route has (a router's fallback).
    pub async fn no_such_route() -> ApiError {
        ApiError::new(ErrorCode::NotFound, "no such route")
    }

    /// The answer to a method a route does not take (a router's `method_not_allowed_fallback`):
    /// every router of the API sets it, so a 405 carries the JSON error body too.
    pub async fn method_not_allowed() -> ApiError {
        ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
    }

    /// Another member, `node_id`, refused a request this node made or passed on (4xx: 502
    /// `peer_refused`, with its answer) or did not answer (503 `unavailable`).
    pub fn peer_failure(node_id: u64, e: PeerApiError) -> ApiError {
        match e {
            PeerApiError::Status { status, body, .. } if status < 500 => ApiError::new(
                ErrorCode::PeerRefused,
                format!("node {node_id} refused: HTTP {status}: {body}"),
            ),
            e => ApiError::new(ErrorCode::Unavailable, format!("node {node_id}: {e}")),
        }
    }

    /// The answer of another member, `node_id`, that did the work of this request (a repair of
    /// its own replica, say): its error, code and status alike, so that one kind of error has
    /// one status whichever node was asked. An answer that is not a JSON error is
    /// [`ApiError::peer_failure`].
    pub fn relayed(node_id: u64, e: PeerApiError) -> ApiError {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: ErrorCode,
            message: String,
        }
        if let PeerApiError::Status { body, .. } = &e {
            if let Ok(Body { error }) = serde_json::from_str::<Body>(body) {
                return ApiError::new(error.code, format!("node {node_id}: {}", error.message));
            }
        }
        ApiError::peer_failure(node_id, e)
    }
}

impl ErrorCode {
    /// Seconds a client should wait before retrying, sent as `Retry-After`: for `busy`, one
    /// (a full queue on a leader drains within a few replication rounds, milliseconds; a second
    /// spreads the retries of many refused clients over many of them).
    pub fn retry_after_seconds(self) -> Option<u32> {
        match self {
            ErrorCode::Busy => Some(BUSY_RETRY_AFTER_SECONDS),
            _ => None,
        }
    }
}

/// `Retry-After` of a 429 `busy`.
pub const BUSY_RETRY_AFTER_SECONDS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.details {
            None => Json(json!({"error": {"code": self.code, "message": self.message}})),
            Some(details) => Json(json!({
                "error": {"code": self.code, "message": self.message, "details": details}
            })),
        };
        let mut response = (self.code.status(), body).into_response();
        if let Some(seconds) = self.code.retry_after_seconds() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

pub use crate::txn::{quoted, MAX_QUOTED_BYTES};

impl From<TxnError> for ApiError {
    fn from(e: TxnError) -> ApiError {
        // The message quotes at most MAX_QUOTED_BYTES of the offending input.
        let e = match e {
            TxnError::InvalidMailboxName { name, reason } => TxnError::InvalidMailboxName {
                name: quoted(&name),
                reason,
            },
            TxnError::InvalidName { what, name, reason } => TxnError::InvalidName {
                what,
                name: quoted(&name),
                reason,
            },
            TxnError::InvalidKeyword { keyword, reason } => TxnError::InvalidKeyword {
                keyword: quoted(&keyword),
                reason,
            },
            TxnError::UnknownSystemFlag { flag } => TxnError::UnknownSystemFlag { flag: quoted(&flag) },
            TxnError::RenameToSelf { name } => TxnError::RenameToSelf { name: quoted(&name) },
            e => e,
        };
        ApiError::invalid(e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::NoSuchMailbox { .. } => ApiError::new(ErrorCode::NoSuchMailbox, e.to_string()),
            ReadError::Invalid(e) => e.into(),
        }
    }
}

/// The client API's failures: a node that could not serve a write or read.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let code = match e {
            ServiceError::Unavailable { .. } => ErrorCode::Unavailable,
            ServiceError::Busy { .. } => ErrorCode::Busy,
            ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
            ServiceError::TooLarge { .. } | ServiceError::BodyTooLarge { .. } => ErrorCode::TooLarge,
            ServiceError::BadBody { .. } => ErrorCode::Invalid,
            ServiceError::NotEnabled(_) => ErrorCode::NotEnabled,
            ServiceError::BeyondCommitted { .. } => ErrorCode::Invalid,
            ServiceError::NoSpace { .. } => ErrorCode::InsufficientStorage,
            ServiceError::GroupStopped { .. } => ErrorCode::GroupStopped,
            ServiceError::Removed { .. } => ErrorCode::Removed,
            ServiceError::Internal { .. } => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The admin API's failures of a raft request on a group. Unlike the client API (whose groups
/// come from placement, so an unknown one is this node's fault), an admin caller names the
/// group: an unknown group is its 404.
impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> ApiError {
        let code = match e {
            ProposeError::Timeout { .. } => ErrorCode::Unavailable,
            ProposeError::Busy { .. } => ErrorCode::Busy,
            ProposeError::Shutdown => ErrorCode::ShuttingDown,
            ProposeError::UnknownGroup { .. } => ErrorCode::NoSuchGroup,
            ProposeError::NoSpace { .. } => ErrorCode::InsufficientStorage,
            ProposeError::Fatal { .. } => ErrorCode::GroupStopped,
            ProposeError::Removed { .. } => ErrorCode::Removed,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The admin API's failures of a membership change: a request that failed as requests do, or
/// something this node could not do at all.
impl From<RaftNodeError> for ApiError {
    fn from(e: RaftNodeError) -> ApiError {
        match e {
            RaftNodeError::Request(e) => e.into(),
            e => ApiError::internal(e.to_string()),
        }
    }
}

/// This node's replica could not be read or changed (digests, images, repairs).
impl From<ReplicaError> for ApiError {
    fn from(e: ReplicaError) -> ApiError {
        match e {
            ReplicaError::Group(e) => e.into(),
            ReplicaError::Damaged(_) => ApiError::new(ErrorCode::Damaged, e.to_string()),
            ReplicaError::Copy {
                out_of_space: true, ..
            } => ApiError::new(ErrorCode::Unavailable, e.to_string()),
            ReplicaError::TaskFailed { .. }
            | ReplicaError::Vanished
            | ReplicaError::Copy { .. }
            | ReplicaError::CutBelowReadIndex { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<RepairError> for ApiError {
    fn from(e: RepairError) -> ApiError {
        match e {
            RepairError::Replica(e) => e.into(),
            RepairError::Group(e) => e.into(),
            RepairError::Peer { node_id, error } => ApiError::peer_failure(node_id, error),
            RepairError::NoOtherVoter | RepairError::SourceIsReplica => ApiError::invalid(e.to_string()),
            RepairError::NotMember { .. } => ApiError::new(ErrorCode::NoSuchNode, e.to_string()),
            RepairError::NoSuchMailbox { .. } => ApiError::new(ErrorCode::NoSuchMailbox, e.to_string()),
            RepairError::Busy { .. } => ApiError::new(ErrorCode::Unavailable, e.to_string()),
            RepairError::NoAppliedHeader { .. } => ApiError::internal(e.to_string()),
            RepairError::BadCopy { .. } => ApiError::new(ErrorCode::BadCopy, e.to_string()),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        let code = match &r {
            Rejection::NoSuchMailbox { .. } => ErrorCode::NoSuchMailbox,
            Rejection::MailboxExists { .. } => ErrorCode::MailboxExists,
            Rejection::HasChildren { .. } => ErrorCode::HasChildren,
            Rejection::RenameIntoSelf { .. } => ErrorCode::RenameIntoSelf,
            Rejection::KeywordLimit { .. } => ErrorCode::KeywordLimit,
            Rejection::UidSpaceExhausted => ErrorCode::UidSpaceExhausted,
            Rejection::UidValidityExhausted => ErrorCode::UidValidityExhausted,
            Rejection::TooManyMailboxes { .. } => ErrorCode::TooManyMailboxes,
            Rejection::TooManySubscriptions { .. } => ErrorCode::TooManySubscriptions,
            Rejection::StaleRequest { .. } => ErrorCode::StaleRequest,
            Rejection::RequestReused { .. } => ErrorCode::RequestReused,
            Rejection::Invalid { .. } => ErrorCode::Invalid,
        };
        ApiError::new(code, r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings and statuses clients rely on (README, "Errors"): renaming a variant must not
    /// change them.
    #[test]
    fn codes_keep_their_strings_and_statuses() {
        use ErrorCode::*;
        let expected = [
            (Invalid, "invalid", 400),
            (Unauthorized, "unauthorized", 401),
            (NotFound, "not_found", 404),
            (MethodNotAllowed, "method_not_allowed", 405),
            (NoSuchMailbox, "no_such_mailbox", 404),
            (NoSuchGroup, "no_such_group", 404),
            (NoSuchNode, "no_such_node", 404),
            (MailboxExists, "mailbox_exists", 409),
            (HasChildren, "has_children", 409),
            (RenameIntoSelf, "rename_into_self", 400),
            (KeywordLimit, "keyword_limit", 409),
            (UidSpaceExhausted, "uid_space_exhausted", 409),
            (UidValidityExhausted, "uid_validity_exhausted", 409),
            (TooManyMailboxes, "too_many_mailboxes", 409),
            (TooManySubscriptions, "too_many_subscriptions", 409),
            (StaleRequest, "stale_request", 409),
            (RequestReused, "request_reused", 409),
            (ConditionFailed, "condition_failed", 409),
            (NotEnabled, "not_enabled", 409),
            (Damaged, "damaged", 409),
            (TooLarge, "too_large", 413),
            (UnsupportedMediaType, "unsupported_media_type", 415),
            (Internal, "internal", 500),
            (BadCopy, "bad_copy", 502),
            (PeerRefused, "peer_refused", 502),
            (Busy, "busy", 429),
            (Unavailable, "unavailable", 503),
            (ShuttingDown, "shutting_down", 503),
            (InsufficientStorage, "insufficient_storage", 507),
            (GroupStopped, "group_stopped", 503),
            (Removed, "removed", 410),
            (NotCaughtUp, "not_caught_up", 409),
            (NotALearner, "not_a_learner", 409),
            (TooFewVoters, "too_few_voters", 409),
        ];
        for (code, text, status) in expected {
            assert_eq!(serde_json::to_value(code).unwrap(), text, "{code:?}");
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
        let body = ApiError::new(NoSuchNode, "node 9").into_response();
        assert_eq!(body.status(), StatusCode::NOT_FOUND);
        assert!(body.headers().get("retry-after").is_none());
    }

    /// A busy refusal is a 429 that says when to come back; the raft layer's `Busy` and the
    /// service's become it.
    #[test]
    fn busy_is_429_with_retry_after() {
        let busy = ProposeError::Busy {
            group_id: 5,
            queue: dovetail_raft::BusyQueue::Proposals,
            queued: 256,
            limit: 256,
        };
        let api = ApiError::from(busy);
        assert_eq!(api.code, ErrorCode::Busy);
        assert!(
            api.message.contains("group 5") && api.message.contains("limit 256"),
            "{}",
            api.message
        );
        let service = ApiError::from(ServiceError::Busy {
            reason: "queue full".into(),
        });
        assert_eq!(service.code, ErrorCode::Busy);
        let response = service.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
    }

    /// Client mistakes are 4xx whichever node was asked: a repair of an unknown mailbox is 404
    /// on the replica and, relayed, on the node that passed it on (it was 503 there); a token
    /// beyond the group's commit is 400; only what may succeed later is 503.
    #[test]
    fn client_mistakes_are_4xx_and_relayed_with_their_status() {
        let unknown = RepairError::NoSuchMailbox {
            group: 2,
            mailbox_guid: "ab".repeat(16),
            node_id: 3,
        };
        let api = ApiError::from(unknown);
        assert_eq!(api.status(), StatusCode::NOT_FOUND);
        let answer =
            serde_json::to_string(&json!({"error": {"code": api.code, "message": api.message}})).unwrap();
        let relayed = ApiError::relayed(
            3,
            PeerApiError::Status {
                url: "http://n3/admin/...".into(),
                status: 404,
                body: answer,
            },
        );
        assert_eq!(
            (relayed.code, relayed.status()),
            (ErrorCode::NoSuchMailbox, StatusCode::NOT_FOUND)
        );
        assert!(
            relayed.message.starts_with("node 3: group 2 has no mailbox"),
            "{}",
            relayed.message
        );
        // An answer that is no JSON error is still the peer's failure.
        let garbled = ApiError::relayed(
            3,
            PeerApiError::Status {
                url: "u".into(),
                status: 418,
                body: "<html>".into(),
            },
        );
        assert_eq!(garbled.code, ErrorCode::PeerRefused);
        let timeout = ApiError::relayed(
            3,
            PeerApiError::Timeout {
                url: "u".into(),
                timeout: std::time::Duration::from_secs(1),
            },
        );
        assert_eq!(timeout.code, ErrorCode::Unavailable);
        let beyond = ApiError::from(ServiceError::BeyondCommitted {
            group: 1,
            min_applied: u64::MAX,
            committed: 35,
        });
        assert_eq!(
            (beyond.code, beyond.status()),
            (ErrorCode::Invalid, StatusCode::BAD_REQUEST)
        );
        for retry in [
            ServiceError::Unavailable {
                reason: "no quorum".into(),
            },
            ServiceError::ShuttingDown,
        ] {
            assert_eq!(ApiError::from(retry).status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[test]
    fn raft_failures_of_admin_requests() {
        let cases = [
            (
                ProposeError::Timeout {
                    group_id: 3,
                    last_error: "no leader".into(),
                },
                ErrorCode::Unavailable,
            ),
            (ProposeError::Shutdown, ErrorCode::ShuttingDown),
            (
                ProposeError::UnknownGroup { group_id: 99 },
                ErrorCode::NoSuchGroup,
            ),
            (
                ProposeError::Fatal {
                    group_id: 3,
                    reason: "disk".into(),
                },
                ErrorCode::GroupStopped,
            ),
            (
                ProposeError::Removed {
                    group_id: 3,
                    node_id: 2,
                },
                ErrorCode::Removed,
            ),
        ];
        for (e, code) in cases {
            let message = e.to_string();
            let api = ApiError::from(RaftNodeError::Request(e));
            assert_eq!((api.code, api.message), (code, message));
        }
        let e = ApiError::from(RaftNodeError::Config(dovetail_raft::node::ConfigError::NoGroups));
        assert_eq!(e.code, ErrorCode::Internal);
    }
}
