//! Dovetail: multi-master mailbox index replication on Raft.
//!
//! A mail server keeps, per mailbox, a small hot *index* (UIDs, flags, keywords, MODSEQs) beside
//! the cold message bodies. Dovetail replicates that index: each group of mailboxes is a Raft log
//! whose entries are index transactions; every replica applies committed entries to its own
//! memory-mapped index files and assigns UIDs and MODSEQs deterministically, so replicas at the
//! same applied index are byte-identical.
//!
//! # Layout
//! - [`bodies`]: the message bodies: a content-addressed store per node, replicated, checked.
//! - [`index`]: the on-disk mailbox index (format v1): layout, encoding, checksums, mmap access.
//! - [`txn`]: index transactions: ops, validation, outcomes.
//! - [`state_machine`]: applies transactions to a group's files; recovery; snapshots; reads.
//! - [`node`]: a cluster member's wiring: groups under `dovetail-raft`, server, config, metrics.
//! - [`service`]: `MailService`, the seam between the HTTP API and the replicated node.
//! - [`imap`]: IMAP4rev1 and its extensions for mail clients (SEARCH, COPY/MOVE, subscriptions, MIME items to come).
//! - [`lmtp`]: LMTP (RFC 2033) for MTAs: one body stored once, one committed entry per recipient.
//! - [`api`]: the whole HTTP surface (axum): client and admin routes, dashboard, JSON errors.
//! - [`placement`]: which group a user's mailboxes belong to.
//! - [`backup`]: `dovetail ctl backup` and `dovetail restore`: a consistent copy of every group,
//!   checksummed, and the seeding of a new cluster's nodes from it.
//! - [`bench`]: `dovetail bench`, a load generator against a cluster's HTTP API.
//! - [`users`]: the passwd-file (Dovecot's format, reloaded on SIGHUP), password checks, the
//!   failed-login limiter, `dovetail user hash`.
//! - [`ctl`]: `dovetail ctl`, the operator's command line over the admin API.
//! - [`dump`]: human- and machine-readable dumps of index files and group directories.
//! - [`cli`]: the `dovetail` command line.
//!
//! Reading order: `index::format`, `index::mailbox_index`, `txn`, `state_machine::group_state`,
//! `state_machine::apply`, `state_machine::group_machine`; then a request's way in: `service`,
//! `api::client` (and `api::error`), `node::replicated`, `node::mail_group`, `node::server`.

pub mod api;
pub mod backup;
pub mod bench;
pub mod bodies;
pub mod cli;
pub mod ctl;
pub mod dump;
pub mod imap;
pub mod index;
pub mod lmtp;
pub mod node;
pub mod placement;
pub mod service;
pub mod state_machine;
pub mod txn;
pub mod users;

/// The seeded generator of the library's randomized tests (one copy: `tests/support/rng.rs`).
#[cfg(test)]
#[path = "../tests/support/rng.rs"]
pub(crate) mod test_rng;
