//! The replicated node: groups of `GroupStateMachine`s replicated by `dovetail-raft`.
//!
//! - [`admin`]: the admin router: membership changes, leadership transfer, rebalancing.
//! - [`config`]: `ServeConfig`, the flags of `dovetail serve`.
//! - [`dashboard`]: `GET /`, the dashboard page (`dashboard.html`, compiled in).
//! - [`dev`]: `dovetail dev`, a local cluster of real processes.
//! - [`listener`]: `ApiListener`, the API accept loop with a connection cap and optional TLS.
//! - [`mail_group`]: `MailGroup`, a group's state machine as the raft layer's `Application`.
//! - [`metrics`]: the Prometheus recorder, `GET /metrics`, the API middleware, the gauge task.
//! - [`overview`]: `GET /admin/status` and `GET /admin/cluster`, every member's status merged.
//! - [`maintenance`]: verify, repair and snapshot endpoints.
//! - [`peer_api`]: `PeerApi`, the HTTP client for other members' admin API.
//! - [`rebalance`]: leader balancing: the plan, the automatic rule and its background task.
//! - [`replicated`]: `ReplicatedNode`, the `MailService` of a cluster member.
//! - [`server`]: `run`, a cluster member on bound listeners until shutdown.
//! - [`status`]: `NodeStatus`, one node's identity, disk use and view of every group.

pub mod admin;
pub mod config;
pub mod dashboard;
pub mod dev;
pub mod listener;
pub mod mail_group;
pub mod maintenance;
pub mod metrics;
pub mod overview;
pub mod peer_api;
pub mod rebalance;
pub mod replicated;
pub mod server;
pub mod status;
