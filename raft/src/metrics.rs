//! The metrics this crate records, through the `metrics` facade: their names, their
//! descriptions, and the task that counts leader changes.
//!
//! Recording is a no-op until the process installs a recorder (the domain crate installs a
//! Prometheus one); this crate never chooses an exporter. Names carry their unit last
//! (`_seconds`, `_bytes_total`), labels are bounded: `group` is a group id, never a user's data.
//!
//! Where they are recorded:
//! - [`LOG_APPEND_SECONDS`]: `log_store::flusher`, from a group's `append` call to the callback
//!   that tells openraft the entries are durable (the wait for the group commit included).
//! - [`LOG_FSYNC_SECONDS`], [`LOG_FSYNC_BATCH_REQUESTS`]: the group-commit flusher, per flush.
//! - [`PROPOSAL_BATCH_REQUESTS`]: `node::proposals`, per entry a leader proposes for requests.
//! - [`SNAPSHOTS_SENT_TOTAL`] .. [`SNAPSHOTS_RECEIVED_BYTES_TOTAL`]: `transport::snapshot`, once
//!   a transfer completed (sent: every byte went out and the receiver answered; received: every
//!   byte checked and the snapshot handed to openraft, which installed it or, if its vote is
//!   newer, declined it).
//! - [`GROUP_LEADER_CHANGES_TOTAL`]: `count_leader_changes`, one task per group, spawned by
//!   `RaftNode::start`.

use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::watch;

use crate::node::dispatch::GroupRaft;
use crate::type_config::GroupId;
use crate::Application;

/// Histogram: seconds from a log append call until its entries are durable.
pub const LOG_APPEND_SECONDS: &str = "dovetail_log_append_seconds";
/// Histogram: seconds one group-commit flush (sled flush + `fdatasync`) took.
pub const LOG_FSYNC_SECONDS: &str = "dovetail_log_fsync_seconds";
/// Histogram: durability requests (of any group) completed by one flush.
pub const LOG_FSYNC_BATCH_REQUESTS: &str = "dovetail_log_fsync_batch_requests";
/// Histogram: requests a leader proposed together as one log entry.
pub const PROPOSAL_BATCH_REQUESTS: &str = "dovetail_proposal_batch_requests";
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

/// Counts changes of the group's leader as this node sees them, until `shutdown` or the group
/// stops. Watches openraft's server metrics, which change only with the vote, the role or the
/// membership, so the task wakes rarely. A period without a known leader (an election) is not a
/// change by itself: the count goes up when a leader other than the last known one appears. The
/// first leader seen after start counts once.
pub(crate) async fn count_leader_changes<A: Application>(
    group_id: GroupId,
    raft: GroupRaft<A>,
    mut shutdown: watch::Receiver<bool>,
) {
    let counter = metrics::counter!(GROUP_LEADER_CHANGES_TOTAL, "group" => group_id.to_string());
    let mut server = raft.server_metrics();
    let mut last_leader = None;
    loop {
        let leader = server.borrow_and_update().current_leader;
        if leader.is_some() && leader != last_leader {
            counter.increment(1);
            last_leader = leader;
        }
        tokio::select! {
            changed = server.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
