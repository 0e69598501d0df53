//! The task that counts a group's leader changes as this node sees them
//! ([`GROUP_LEADER_CHANGES_TOTAL`]); `RaftNode::start` spawns one per group.

use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::watch;

use crate::metrics::GROUP_LEADER_CHANGES_TOTAL;
use crate::state_machine::GroupRaft;
use crate::type_config::GroupId;
use crate::Application;

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
