//! Message bodies: a content-addressed store per node beside the index (`store`), replicated to
//! the group's members (a delivery is acknowledged once a majority holds its body), fetched from
//! a peer on a miss.
//!
//! - [`store`]: [`BodyStore`], the node's bodies under `<data-dir>/blobs/`, named by [`BodyId`]
//!   (128 bits of the SHA-256 of the bytes), checked on every read.
//! - [`id`]: [`BodyId`] and [`BodyError`].
//! - [`journal`]: how a small body becomes durable with one `fdatasync` shared by concurrent
//!   puts; replayed when the store opens.
//! - [`collector`]: deletes the bodies no record of the node's applied index references, once
//!   they are older than the grace period (`plan`, pure; `collect_once`).
//! - [`stream`]: bodies between HTTP byte streams and the store, never whole in memory.

pub mod collector;
pub mod id;
pub mod journal;
pub mod store;
pub mod stream;

#[cfg(test)]
mod collector_tests;
#[cfg(test)]
mod journal_tests;

pub use store::{BodyError, BodyId, BodyStore, Removal, Stored};
