//! The encoding gate: a group's leader raises the group's log encoding (`txn::encoding`) once
//! every member of the group can apply the higher one.
//!
//! Each node reports the highest encoding it applies in `GET /admin/status`
//! (`node.max_encoding`; a node of a release before encodings reports nothing, read as 0). Every
//! [`GATE_INTERVAL`] this task looks at the groups this node leads whose active encoding is
//! below its own highest; for those it asks every member (voters and learners) for its status,
//! takes the lowest highest encoding among them, and if that is above the group's active one,
//! proposes `SetEncoding` to it. The change takes effect at that entry's position on every
//! replica (the state machine applies it), which is what makes it deterministic: nodes propose
//! in the encoding they have applied, never ahead of the log. A member that does not answer
//! holds the gate where it is. During a rolling upgrade the gate therefore moves only after the
//! last member runs the new release; a node started afterwards on an older release stops the
//! group when it meets an entry it cannot apply (`MailGroup::apply`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail_raft::{GroupRole, NodeId, RaftNode};

use super::mail_group::MailGroup;
use super::peer_api::PeerApi;
use super::status::{NodeInfo, NodeStatus};
use crate::txn::encoding::encode_entry;
use crate::txn::{Op, Txn};

/// How often the gate looks at the groups this node leads.
pub const GATE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a member's status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// The lowest encoding every member applies, or `None` if a member's is unknown.
pub fn common_encoding(members: &BTreeMap<NodeId, Option<u8>>) -> Option<u8> {
    members
        .values()
        .copied()
        .try_fold(u8::MAX, |low, max| Some(low.min(max?)))
}

/// Runs the gate until aborted.
pub async fn run_encoding_gate(
    raft: RaftNode<MailGroup>,
    info: Arc<NodeInfo>,
    peers: PeerApi,
    timeout: Duration,
) {
    let mut ticker = tokio::time::interval(GATE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Asked at most once a round, however many groups need it.
        let mut known: BTreeMap<NodeId, Option<u8>> = BTreeMap::new();
        known.insert(info.node_id, Some(info.max_encoding));
        for group in 0..raft.group_count() {
            // Only the groups this node leads: the others cost one look at their role.
            if raft.role(group).ok() != Some(GroupRole::Leader) {
                continue;
            }
            let Ok(active) = raft.with_app(group, MailGroup::encoding) else {
                continue;
            };
            if active >= info.max_encoding {
                continue;
            }
            let Ok(nodes) = raft.member_nodes(group) else {
                continue;
            };
            let mut members = BTreeMap::new();
            for (node_id, node) in nodes {
                let max = match known.get(&node_id) {
                    Some(max) => *max,
                    None => {
                        let max = max_encoding_of(&peers, node_id, &node.api_addr).await;
                        *known.entry(node_id).or_insert(max)
                    }
                };
                members.insert(node_id, max);
            }
            let Some(target) = common_encoding(&members) else {
                continue;
            };
            if target > active {
                raise(&raft, info.node_id, group, active, target, timeout).await;
            }
        }
    }
}

/// Member `node_id`'s highest encoding, or `None` if it did not answer as itself.
async fn max_encoding_of(peers: &PeerApi, node_id: NodeId, api_addr: &str) -> Option<u8> {
    if api_addr.is_empty() {
        return None;
    }
    match peers
        .get_json::<NodeStatus>(api_addr, "/admin/status", STATUS_TIMEOUT)
        .await
    {
        Ok(status) if status.node_id == node_id => Some(status.node.max_encoding),
        _ => None,
    }
}

async fn raise(
    raft: &RaftNode<MailGroup>,
    node_id: NodeId,
    group: u32,
    active: u8,
    target: u8,
    timeout: Duration,
) {
    let txn = Txn {
        // An anonymous id (reserved for ids a node makes): a retry of the same step is answered
        // from the session table instead of applied twice.
        client_id: format!(
            "{}{node_id}-encoding",
            crate::state_machine::manifest::ANONYMOUS_CLIENT_PREFIX
        ),
        request_seq: u64::from(target),
        op: Op::SetEncoding { version: target },
    };
    let entry = encode_entry(&txn, target).expect("SetEncoding exists in every encoding from 1 on");
    match raft.propose(group, entry, Instant::now() + timeout).await {
        Ok(proposed) => tracing::info!(
            group,
            from = active,
            to = target,
            index = proposed.position.index,
            "log encoding raised: every member of the group applies it"
        ),
        Err(e) => {
            tracing::warn!(group, to = target, error = %e, "could not raise the log encoding; trying again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_takes_the_lowest_and_waits_for_every_member() {
        let mut members = BTreeMap::from([(1, Some(2)), (2, Some(1)), (3, Some(2))]);
        assert_eq!(common_encoding(&members), Some(1));
        members.insert(4, None);
        assert_eq!(common_encoding(&members), None);
        members.insert(4, Some(0));
        assert_eq!(common_encoding(&members), Some(0));
    }
}
