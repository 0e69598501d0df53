//! The HTTP API (axum): the client router over a `MailService`, JSON errors, extractors.
//!
//! - [`auth`]: bearer tokens, checked in constant time before any handler runs.
//! - [`client`]: routes for mailboxes, messages, flags, expunges and reads.
//! - [`error`]: `ApiError` and `ErrorCode`, the status of every code, and every conversion of
//!   another layer's error into an HTTP error.
//! - [`extract`]: body, path and query extractors with JSON errors.

pub mod auth;
pub mod client;
pub mod error;
pub mod extract;

pub use error::{ApiError, ErrorCode};

#[cfg(test)]
mod tests;
