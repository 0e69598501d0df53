//! The replicated node: groups of `GroupStateMachine`s replicated by `dovetail-raft`, and the
//! wiring of a cluster member. The HTTP surface is `api`; what its admin routes call is here.
//!
//! - [`api_server`]: `serve_api`, the API served on the listener's connections, with deadlines.
//! - [`bodies`]: `NodeBodies`, a node's message bodies: a delivery's majority, the backlogs,
//!   fetch on a miss.
//! - [`body_backlog`]: the bodies owed to each peer: memory, then a spill file, then a resync mark.
//! - [`body_sweep`]: the periodic pass that collects unreferenced bodies and fetches missing ones.
//! - [`body_transfer`]: `BodyTransfer`, the HTTP client that moves bodies between members.
//! - [`config`]: `ServeConfig`, the flags of `dovetail serve`.
//! - [`dev`]: `dovetail dev`, a local cluster of real processes.
//! - [`disk_monitor`]: the storage alarm: a full disk stops writes through the node, not the node.
//! - [`encoding_gate`]: a leader raises its group's log encoding once every member applies it.
//! - [`listener`]: `ApiListener`, the API accept loop: budgets for connections with and without
//!   a valid token, optional TLS.
//! - [`mail_group`]: `MailGroup`, a group's state machine as the raft layer's `Application`.
//! - [`membership_watch`]: how a node finds out it was removed from a group (or added again).
//! - [`metrics`]: the Prometheus recorder, the API middleware, the gauge task.
//! - [`overview`]: the cluster overview, every member's status merged (pure).
//! - [`peer_api`]: `PeerApi`, the HTTP client for other members' admin API.
//! - [`rebalance`]: leader balancing: the plan, the automatic rule and its background task.
//! - [`removal`]: when a node may conclude it was removed from a group, and its record (pure).
//! - [`repair`]: the repair loop: one replica's copy of a mailbox replaced by a healthy copy.
//! - [`replica`]: this node's replica of a group as verify and repair read it (digests, images).
//! - [`replicated`]: `ReplicatedNode`, the `MailService` of a cluster member.
//! - [`server`]: `run`, a cluster member on bound listeners until shutdown.
//! - [`status`]: `NodeStatus`, one node's identity, disk use and view of every group.
//! - [`verify`]: verify's comparison of every replica's digests (pure).

pub mod api_server;
pub mod bodies;
pub mod body_backlog;
pub mod body_check;
pub mod body_metrics;
pub mod body_sweep;
pub mod body_transfer;
pub mod config;
pub mod dev;
pub mod disk_monitor;
pub mod encoding_gate;
pub mod listener;
pub mod mail_group;
pub mod membership_watch;
pub mod metrics;
pub mod overview;
pub mod peer_api;
pub mod rebalance;
pub mod removal;
pub mod repair;
pub mod replica;
pub mod replicated;
pub mod server;
pub mod status;
pub mod verify;
