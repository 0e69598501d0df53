//! The task that counts a group's leader changes as this node sees them
//! ([`GROUP_LEADER_CHANGES_TOTAL`]) and notes since when this node leads the group (the
//! membership guards judge a member's progress only once its leader has led a while);
//! `RaftNode::start` spawns one per group.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tokio::sync::watch;

use crate::metrics::GROUP_LEADER_CHANGES_TOTAL;
use crate::state_machine::GroupRaft;
use crate::type_config::GroupId;
use crate::Application;

/// Counts changes of the group's leader as this node sees them, until `shutdown` or the group
/// stops. Watches openraft's server metrics, which change only with the vote, the role or the
/// membership, so the task wakes rarely. A period without a known leader (an election) is not a
/// change by itself: the count goes up when a leader other than the last known one appears. The
/// first leader seen after start counts once. `leading_since` is set when this node becomes
/// the group's leader and cleared when it stops.
pub(crate) async fn count_leader_changes<A: Application>(
    group_id: GroupId,
    raft: GroupRaft<A>,
    leading_since: Arc<Mutex<Option<Instant>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let counter = metrics::counter!(GROUP_LEADER_CHANGES_TOTAL, "group" => group_id.to_string());
    let mut server = raft.server_metrics();
    let mut last_leader = None;
    loop {
        let (leader, leading) = {
            let m = server.borrow_and_update();
            (m.current_leader, m.state == ServerState::Leader)
        };
        if leader.is_some() && leader != last_leader {
            counter.increment(1);
            last_leader = leader;
        }
        {
            let mut since = leading_since.lock().unwrap_or_else(PoisonError::into_inner);
            match (leading, *since) {
                (true, None) => *since = Some(Instant::now()),
                (false, Some(_)) => *since = None,
                _ => {}
            }
        }
        tokio::select! {
            changed = server.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
