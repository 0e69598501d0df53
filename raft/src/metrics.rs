//! The metrics this crate records, through the `metrics` facade: their names and their
//! descriptions.
//!
//! Recording is a no-op until the process installs a recorder (the domain crate installs a
//! Prometheus one); this crate never chooses an exporter. Names carry their unit last
//! (`_seconds`, `_bytes_total`), labels are bounded: `group` is a group id, never a user's data.
//!
//! Where they are recorded:
//! - [`LOG_APPEND_SECONDS`]: `log_store::flusher`, from a group's `append` call to the callback
//!   that tells openraft the entries are durable (the wait for the group commit included).
//! - [`LOG_FSYNC_SECONDS`], [`LOG_FSYNC_BATCH_REQUESTS`]: the group-commit flusher, per flush.
//! - [`PROPOSAL_BATCH_REQUESTS`], [`PROPOSAL_ROUND_SECONDS`]: `node::proposals`, per entry a
//!   leader proposes for requests; [`PROPOSALS_REFUSED_TOTAL`] there too, per request its full
//!   queue refused.
//! - [`APPEND_ENTRIES_SENT_TOTAL`]: `transport::group_network`, per AppendEntries RPC sent.
//! - [`SNAPSHOTS_SENT_TOTAL`] .. [`SNAPSHOTS_RECEIVED_BYTES_TOTAL`]: `transport::snapshot`, once
//!   a transfer completed (sent: every byte went out and the receiver answered; received: every
//!   byte checked and the snapshot handed to openraft, which installed it or, if its vote is
//!   newer, declined it).
//! - [`GROUP_LEADER_CHANGES_TOTAL`]: `node::leader_changes`, one task per group, spawned by
//!   `RaftNode::start`.

/// Histogram: seconds from a log append call until its entries are durable.
pub const LOG_APPEND_SECONDS: &str = "dovetail_log_append_seconds";
/// Histogram: seconds one group-commit flush (sled flush + `fdatasync`) took.
pub const LOG_FSYNC_SECONDS: &str = "dovetail_log_fsync_seconds";
/// Histogram: durability requests (of any group) completed by one flush.
pub const LOG_FSYNC_BATCH_REQUESTS: &str = "dovetail_log_fsync_batch_requests";
/// Histogram: requests a leader proposed together as one log entry.
pub const PROPOSAL_BATCH_REQUESTS: &str = "dovetail_proposal_batch_requests";
/// Counter, label `group`: requests a leader refused because the group's proposal queue was full.
pub const PROPOSALS_REFUSED_TOTAL: &str = "dovetail_proposals_refused_total";
/// Counter, label `entries` = `some`|`none`: AppendEntries RPCs this node sent as a leader;
/// `none` are heartbeats and commit-index updates.
pub const APPEND_ENTRIES_SENT_TOTAL: &str = "dovetail_append_entries_sent_total";
/// Histogram: seconds from a leader proposing a coalesced entry until it is applied there.
pub const PROPOSAL_ROUND_SECONDS: &str = "dovetail_proposal_round_seconds";
/// Counter, label `group`: snapshots this node sent completely and the receiver answered.
pub const SNAPSHOTS_SENT_TOTAL: &str = "dovetail_snapshots_sent_total";
/// Counter, label `group`: bytes of those snapshots.
pub const SNAPSHOTS_SENT_BYTES_TOTAL: &str = "dovetail_snapshots_sent_bytes_total";
/// Counter, label `group`: snapshots this node received completely and handed to openraft.
pub const SNAPSHOTS_RECEIVED_TOTAL: &str = "dovetail_snapshots_received_total";
/// Counter, label `group`: bytes of those snapshots.
pub const SNAPSHOTS_RECEIVED_BYTES_TOTAL: &str = "dovetail_snapshots_received_bytes_total";
/// Counter, label `group`: times this node saw the group's leader become a different node.
pub const GROUP_LEADER_CHANGES_TOTAL: &str = "dovetail_group_leader_changes_total";

/// Registers the help text of every metric above with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_histogram!(
        LOG_APPEND_SECONDS,
        Unit::Seconds,
        "Time from a log append call until its entries are durable (group commit included)"
    );
    describe_histogram!(
        LOG_FSYNC_SECONDS,
        Unit::Seconds,
        "Time of one group-commit flush of the log (sled flush and fdatasync)"
    );
    describe_histogram!(
        LOG_FSYNC_BATCH_REQUESTS,
        Unit::Count,
        "Durability requests of all groups completed by one log flush"
    );
    describe_histogram!(
        PROPOSAL_BATCH_REQUESTS,
        Unit::Count,
        "Requests a leader coalesced into one log entry (1 when the group is quiet)"
    );
    describe_histogram!(
        PROPOSAL_ROUND_SECONDS,
        Unit::Seconds,
        "Time from a leader proposing a coalesced entry until it was applied there (or failed)"
    );
    describe_counter!(
        PROPOSALS_REFUSED_TOTAL,
        "Requests refused as busy because the group's proposal queue on this leader was full"
    );
    describe_counter!(
        APPEND_ENTRIES_SENT_TOTAL,
        "AppendEntries RPCs sent as a leader, by whether they carried entries (none: heartbeats and commit updates)"
    );
    describe_counter!(
        SNAPSHOTS_SENT_TOTAL,
        "Snapshots this node sent completely and the receiver answered"
    );
    describe_counter!(
        SNAPSHOTS_SENT_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of snapshots this node sent completely"
    );
    describe_counter!(
        SNAPSHOTS_RECEIVED_TOTAL,
        "Snapshots this node received completely and handed to openraft to install"
    );
    describe_counter!(
        SNAPSHOTS_RECEIVED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of snapshots this node received completely"
    );
    describe_counter!(
        GROUP_LEADER_CHANGES_TOTAL,
        "Times this node saw the group's leader become a different node"
    );
}
