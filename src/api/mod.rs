//! The HTTP API (axum), the whole HTTP surface of a node: the client routes over a
//! `MailService`, the admin routes over the replicated node, the dashboard page; JSON errors,
//! extractors, bearer tokens. `node::server` mounts them.
//!
//! - [`admin`]: the admin routes (`/admin/...`, `/metrics`), one file per concern.
//! - [`auth`]: bearer tokens, checked in constant time before any handler runs.
//! - [`client`]: the client routes (`/v1/...`), one file per resource.
//! - [`dashboard`]: `GET /`, the dashboard page (`dashboard.html`, compiled in).
//! - [`error`]: `ApiError` and `ErrorCode`, the status of every code, and every conversion of
//!   another layer's error into an HTTP error.
//! - [`extract`]: body, path and query extractors with JSON errors; GUID and UID set parsers.
//! - [`in_flight`]: the bound on client requests served at once (429 `busy` beyond it).

pub mod admin;
pub mod auth;
pub mod client;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod in_flight;

pub use error::{ApiError, ErrorCode};

#[cfg(test)]
mod tests;
