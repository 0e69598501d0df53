//! The sled-backed Raft log store: one [`LogDb`] per node, one [`GroupLogStore`] per group.
//!
//! # Layout
//! - [`log_db`]: [`LogDb`] owns the node's single `sled::Db` and starts its flusher.
//! - [`flusher`]: the group-commit flusher, a thread that turns the durability requests of all
//!   groups into as few fsyncs as the disk allows.
//! - [`group_log_store`]: [`GroupLogStore`], one group's log and vote; implements openraft's
//!   `RaftLogStorage` and `RaftLogReader`.
//! - [`reserve`]: keeps the log file written ahead of the segments in use, so a full disk shows
//!   up as a short reserve ([`ReserveStatus`]) instead of a failed log write.
//! - [`tail`]: [`tail::Tail`], a group's last entries kept decoded, which answers the reads that
//!   follow every write.
//! - [`codec`]: the on-disk layout (trees, keys, bincode 2 values).
//! - [`error`]: [`LogStoreError`], naming the group and operation that failed.
//!
//! Reading order: `codec` (what is on disk), `log_db` and `flusher` (how it becomes durable),
//! `group_log_store` and `tail` (what openraft sees).

pub mod codec;
pub mod error;
pub mod flusher;
pub mod group_log_store;
pub mod log_db;
pub mod reserve;
pub mod tail;

#[cfg(test)]
mod tests;

pub use error::LogStoreError;
pub use group_log_store::GroupLogStore;
pub use log_db::{LogDb, LogDbOptions, LogDbStats};
pub use reserve::ReserveStatus;
