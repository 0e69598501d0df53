//! The replicated state machine of one group: applies committed index transactions
//! deterministically, serves reads, and exports/imports whole-group snapshots.
//!
//! - [`group_state`]: `GroupState`, the state and `apply` (generic over where files live).
//! - [`apply`]: per-op logic; UID, UIDVALIDITY and MODSEQ assignment; subscriptions.
//! - [`copy`]: copy and move (records copied with their body ids; a move's expunge).
//! - [`read`]: list, status, fetch, changes since a MODSEQ.
//! - [`manifest`]: mailbox names, UIDVALIDITY high-water mark, session table, applied position,
//!   subscriptions.
//! - [`snapshot`]: the snapshot stream (also the on-disk checkpoint).
//! - [`group_machine`]: `GroupStateMachine`, the on-disk group with crash recovery.
//! - [`repair`]: per-mailbox digests for cross-replica verification, and the replacement of one
//!   damaged mailbox file by a healthy replica's copy.
//! - [`error`]: the `SmError` type.

pub mod apply;
pub mod copy;
pub mod error;
pub mod group_machine;
pub mod group_state;
pub mod manifest;
pub mod read;
pub mod repair;
pub mod snapshot;

pub use error::SmError;
pub use group_machine::{CheckpointInfo, DirFiles, GroupStateMachine, PendingFlush, Recovery};
pub use group_state::{GroupCounts, GroupState, MailboxFiles, MemoryFiles};
pub use manifest::Manifest;
pub use read::{
    Changes, ChangesPageView, MailboxStatus, MailboxSummary, MessageView, NextChanges, ReadError,
};
pub use repair::{MailboxDigest, RepairWait};
pub use snapshot::{SnapshotHeader, SnapshotReader};

#[cfg(test)]
mod model_tests;
