//! The admin API of a cluster member: JSON over HTTP, every route behind the admin token.
//!
//! ```text
//! GET    /admin/status                               this node: identity, disk use, view of every group
//! GET    /admin/cluster                              every member's status, merged (the dashboard's data)
//! POST   /admin/members/learners                     add a learner everywhere  {"node_id","peer_addr","api_addr"}
//! POST   /admin/members/voters                       promote a caught-up learner everywhere  {"node_id","force"?}
//! DELETE /admin/members/{node_id}                    remove a voter or learner from every group  (?force=true)
//! POST   /admin/groups/{group}/transfer-leader       hand a group's leadership  {"to"}
//! POST   /admin/rebalance                            spread group leaders evenly over the voters
//! POST   /admin/verify                               compare every replica of every group  {"groups"?: [..]}
//! POST   /admin/groups/{group}/mailboxes/{guid}/repair  replace one replica's copy  {"replica"?, "source"?}
//! POST   /admin/groups/{group}/snapshot              build a snapshot of one group on this node
//! POST   /admin/snapshot                             build a snapshot of every group on this node
//! GET    /admin/groups/{group}/backup                a copy of one group at a linearizable cut (ctl backup)
//! GET    /admin/groups/{group}/digests               this replica's per-mailbox digests (verify)
//! GET    /admin/groups/{group}/mailboxes/{guid}/image  this replica's copy of a mailbox file (repair)
//! PUT    /admin/bodies/{id}                          store a body another member pushes (checked)
//! GET    /admin/bodies/{id}                          this node's checked copy of a body
//! POST   /admin/bodies/sweep                         collect, then fetch missing referenced bodies, now
//! GET    /metrics                                    Prometheus text format
//! ```
//! Any member accepts these; each group's change runs on that group's leader (the raft layer
//! forwards). Membership operations are idempotent, so a 503 (no leader or quorum before the
//! deadline, possibly after some groups changed) is answered by retrying. Errors use the client
//! API's body, `{"error": {"code", "message"}}`: 400 for bad input, 404 for an unknown group or
//! node, 409 for a membership change a group's leader refused (`not_caught_up`,
//! `too_few_voters`, `not_a_learner`; `error.details` says what each group answered), 503 when no
//! leader or quorum answered in time.
//!
//! One file per concern: `cluster` (status and overview), `members` (membership),
//! `leadership` (transfer and rebalance), `verify`, `repair`, `snapshots`, `backup`, `digests` (digests
//! and images, which verify and repair read from every replica), `bodies` (between members) and `metrics`; `state` is what
//! they share. The logic they call lives in `node`: the overview's merge and verify's
//! comparison (both pure), the repair loop, the leader plan.

mod backup;
mod bodies;
mod cluster;
mod digests;
mod leadership;
mod members;
mod metrics;
mod repair;
mod snapshots;
mod state;
mod verify;

use axum::Router;

pub use state::AdminState;

use super::ApiError;

/// Every admin route (`/admin/...` and `/metrics`). Wrap it in the admin token's
/// `require_bearer`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .merge(cluster::routes())
        .merge(members::routes())
        .merge(leadership::routes())
        .merge(verify::routes())
        .merge(repair::routes())
        .merge(snapshots::routes())
        .merge(backup::routes())
        .merge(digests::routes())
        .merge(bodies::routes())
        .merge(metrics::routes())
        .method_not_allowed_fallback(ApiError::method_not_allowed)
        .with_state(state)
}
