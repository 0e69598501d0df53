//! Backup and restore: `dovetail ctl backup` copies every group of a running cluster, each at a
//! linearizable cut, into a directory; `dovetail restore` seeds the data directory of one node of
//! a new cluster from it. The format is in ARCHITECTURE.md §9; what a backup guarantees, in the
//! README's "Backup and restore".
//!
//! ```text
//! <backup dir>/
//!   backup.json          the manifest (BackupManifest, JSON): source cluster, time, release,
//!                        log encoding, group count, per group its cut, read index and
//!                        membership, the size and SHA-256 of every other file, and the
//!                        count and bytes of the bodies
//!   backup.json.sha256   the manifest's SHA-256 (`sha256sum -c` format)
//!   groups/g<NNNN>.snap  each group's snapshot stream at its cut (the checkpoint format)
//!   bodies/<32 hex>      each message body the copies' records reference, once, named by its
//!                        id (the first 128 bits of its SHA-256)
//! ```
//!
//! # Layout
//! - [`manifest`]: `BackupManifest` and its checksum: encoding, decoding, structural checks.
//! - [`take`]: taking a backup from a node (`BackupWriter`, `take_backup`).
//! - [`verify`]: checking a backup through before anything is restored.
//! - [`restore`]: seeding a new node's data directory (`RestoreArgs`, `restore`).
//! - [`error`]: the `BackupError` type.
//!
//! The node's side, the copy of one group at a linearizable cut, is
//! `node::replica::group_copy`, served by `api::admin::backup`; the consensus side of a restore
//! (the new membership, the seeded log) is `dovetail_raft::restore`.

pub mod error;
pub mod manifest;
pub mod restore;
pub mod take;
pub mod verify;

pub use error::BackupError;
pub use manifest::BackupManifest;

#[cfg(test)]
mod tests;
