//! [`CallError`]: why a call to a peer failed, and whether the request may have taken effect.

use std::time::Duration;

use super::wire::RemoteError;

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No connection could be made (or we are backing off); the request was not sent.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Sent, but no answer within the timeout; it may or may not have taken effect.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke or carried garbage; the request may or may not have taken effect.
    #[error("network: {0}")]
    Network(String),
    /// The receiver could not serve the request (unknown group, group stopped).
    #[error("remote: {0}")]
    Remote(#[source] RemoteError),
}
