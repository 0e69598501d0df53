//! The cluster overview, pure: every member's answer to `GET /admin/status` merged into one
//! view of the cluster ([`merge`]) — per group, membership, commit index and what each member has
//! matched come from the leader's view, role and applied index from each member's own. The route
//! that asks every member, `GET /admin/cluster`, is `api::admin::cluster`; `dovetail ctl` and the
//! dashboard read the [`ClusterOverview`] it answers.

use std::collections::{BTreeMap, BTreeSet};

use dovetail_raft::NodeId;
use serde::{Deserialize, Serialize};

use super::bodies::BodiesStatus;
use super::peer_api::PeerApiError;
use super::status::{DiskUsage, GroupStatus, MailFrontStatus, NodeStatus};

/// What `GET /admin/cluster` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterOverview {
    /// Every member, by node id.
    pub nodes: Vec<NodeReport>,
    /// Every group, in group order.
    pub groups: Vec<GroupOverview>,
}

/// One member as the overview found it. The summary fields are `None` when it did not answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub api_addr: String,
    pub reachable: bool,
    /// Why the member's status could not be had (set exactly when `reachable` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub version: Option<String>,
    pub uptime_s: Option<u64>,
    pub disk: Option<DiskUsage>,
    /// The highest log encoding the member applies.
    #[serde(default)]
    pub max_encoding: Option<u8>,
    /// Why the member refuses writes (its storage alarm), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_alarm: Option<String>,
    /// The member holds that it was removed from every group (it serves nothing).
    #[serde(default)]
    pub removed: bool,
    /// The member's bodies (`node.bodies` of its status): store, missing, fetches, backlogs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bodies: Option<BodiesStatus>,
    /// The member's mail front ends (`node.mail` of its status): sessions, commands, deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailFrontStatus>,
}

/// One group across the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupOverview {
    pub group: u32,
    /// The member that reports leading the group in the highest term; if no reachable member
    /// leads, the leader named by the newest view (possibly a member that did not answer).
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// The leader's commit index (this node's, if no reachable member leads).
    pub committed: Option<u64>,
    pub snapshot: Option<u64>,
    /// Every voter and learner, keyed by node id.
    pub replicas: BTreeMap<NodeId, Replica>,
    /// The first error a member reports for the group, prefixed with `node <id>: `.
    pub last_error: Option<String>,
    /// The group's active log encoding in the base view (the leader's, when one answered).
    #[serde(default)]
    pub encoding: Option<u8>,
}

/// One member's replica of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The member's own view of its role; `None` when it did not answer.
    pub role: Option<String>,
    /// The member's own applied index; `None` when it did not answer.
    pub applied: Option<u64>,
    /// From the leader's view: the highest log index known to be on this member.
    pub matched: Option<u64>,
    /// `committed - matched` in the leader's view (0 if matched is ahead of committed); `None`
    /// when either is unknown (no reachable leader, or not replicated to yet).
    pub lag: Option<u64>,
}

/// A member's answer to `GET /admin/status`, or why there is none.
#[derive(Debug)]
pub struct MemberAnswer {
    pub api_addr: String,
    pub status: Result<NodeStatus, FetchError>,
}

/// Why a member's status could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no API address in the membership")]
    NoAddress,
    #[error(transparent)]
    Peer(#[from] PeerApiError),
    #[error("{api_addr} answered as node {answered}")]
    WrongNode { api_addr: String, answered: NodeId },
    /// The task asking the member panicked or was cancelled.
    #[error("status request task failed: {0}")]
    TaskFailed(tokio::task::JoinError),
}

/// Merges the members' answers into the overview. `this_node` is the node answering; its own
/// view decides a group's membership when no reachable member leads the group.
pub fn merge(this_node: NodeId, answers: &BTreeMap<NodeId, MemberAnswer>) -> ClusterOverview {
    let statuses: BTreeMap<NodeId, &NodeStatus> = answers
        .iter()
        .filter_map(|(node_id, answer)| answer.status.as_ref().ok().map(|s| (*node_id, s)))
        .collect();
    let nodes = answers
        .iter()
        .map(|(&node_id, answer)| {
            let summary = answer.status.as_ref().ok().map(|s| &s.node);
            NodeReport {
                node_id,
                api_addr: answer.api_addr.clone(),
                reachable: answer.status.is_ok(),
                error: answer.status.as_ref().err().map(ToString::to_string),
                version: summary.map(|s| s.version.clone()),
                uptime_s: summary.map(|s| s.uptime_s),
                disk: summary.map(|s| s.disk),
                max_encoding: summary.map(|s| s.max_encoding),
                storage_alarm: summary.and_then(|s| s.storage.alarm.clone()),
                removed: summary.is_some_and(|s| s.removed),
                bodies: summary.map(|s| s.bodies.clone()),
                mail: summary.map(|s| s.mail),
            }
        })
        .collect();
    let group_count = statuses
        .get(&this_node)
        .map(|s| s.groups.len())
        .or_else(|| statuses.values().map(|s| s.groups.len()).max())
        .unwrap_or(0);
    let groups = (0..group_count as u32)
        .map(|group| {
            let views: Vec<(NodeId, &GroupStatus)> = statuses
                .iter()
                .filter_map(|(&node_id, s)| s.groups.iter().find(|g| g.group == group).map(|g| (node_id, g)))
                .collect();
            merge_group(group, this_node, &views)
        })
        .collect();
    ClusterOverview { nodes, groups }
}

/// One group from the views of the members that answered.
fn merge_group(group: u32, this_node: NodeId, views: &[(NodeId, &GroupStatus)]) -> GroupOverview {
    let leading = views
        .iter()
        .filter(|(_, v)| v.role == "leader")
        .max_by_key(|(_, v)| v.term);
    let newest_claim = views
        .iter()
        .filter(|(_, v)| v.leader.is_some())
        .max_by_key(|(_, v)| v.term);
    let base = leading
        .or_else(|| views.iter().find(|(node_id, _)| *node_id == this_node))
        .or(views.first())
        .map(|(_, v)| *v);
    let leader = leading
        .map(|(node_id, _)| *node_id)
        .or_else(|| newest_claim.and_then(|(_, v)| v.leader));
    let term = leading
        .map(|(_, v)| v.term)
        .or_else(|| views.iter().map(|(_, v)| v.term).max())
        .unwrap_or(0);
    let (voters, learners) = base
        .map(|v| (v.voters.clone(), v.learners.clone()))
        .unwrap_or_default();
    let committed = base.and_then(|v| v.committed);
    let replicas = voters
        .iter()
        .chain(&learners)
        .map(|&member| {
            let own = views
                .iter()
                .find(|(node_id, _)| *node_id == member)
                .map(|(_, v)| *v);
            let matched = leading
                .and_then(|(_, v)| v.matched.as_ref())
                .and_then(|matched| matched.get(&member).copied().flatten());
            let lag = match (leading.and_then(|(_, v)| v.committed), matched) {
                (Some(committed), Some(matched)) => Some(committed.saturating_sub(matched)),
                _ => None,
            };
            let replica = Replica {
                role: own.map(|v| v.role.clone()),
                applied: own.and_then(|v| v.applied),
                matched,
                lag,
            };
            (member, replica)
        })
        .collect();
    let last_error = views.iter().find_map(|(node_id, v)| {
        v.last_error
            .as_ref()
            .or(v.fatal.as_ref())
            .map(|e| format!("node {node_id}: {e}"))
    });
    GroupOverview {
        group,
        leader,
        term,
        voters,
        learners,
        committed,
        snapshot: base.and_then(|v| v.snapshot),
        replicas,
        last_error,
        encoding: base.and_then(|v| v.encoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::status::NodeSummary;

    fn group(group: u32, role: &str, leader: u64, term: u64, committed: u64, applied: u64) -> GroupStatus {
        GroupStatus {
            group,
            role: role.into(),
            leader: Some(leader),
            term,
            committed: Some(committed),
            applied: Some(applied),
            snapshot: None,
            purged: None,
            voters: [1, 2, 3].into(),
            learners: BTreeSet::new(),
            matched: None,
            fatal: None,
            snapshots_installed: Some(0),
            last_error: None,
            encoding: Some(1),
            membership_log: None,
            membership_committed: true,
            removed: false,
            legacy_names: Vec::new(),
        }
    }

    fn answer(node_id: NodeId, groups: Vec<GroupStatus>) -> MemberAnswer {
        MemberAnswer {
            api_addr: format!("127.0.0.{node_id}:7000"),
            status: Ok(NodeStatus {
                node_id,
                node: NodeSummary {
                    node_id,
                    version: "0.1.0".into(),
                    uptime_s: 10 * node_id,
                    api_addr: format!("127.0.0.{node_id}:7000"),
                    peer_addr: format!("127.0.0.{node_id}:7100"),
                    disk: DiskUsage {
                        log_bytes: 1,
                        index_bytes: 2,
                        body_bytes: 3,
                    },
                    max_encoding: 1,
                    storage: Default::default(),
                    removed_groups: Vec::new(),
                    removed: false,
                    bodies: Default::default(),
                    mail: Default::default(),
                },
                groups,
            }),
        }
    }

    /// Three nodes, node 3 unreachable. Group 0 is led by node 1, which has matched node 2 up to
    /// 8 of 10 committed and node 3 up to 4. Group 1's leader is node 3, so only the followers'
    /// claims name it.
    fn answers() -> BTreeMap<NodeId, MemberAnswer> {
        let mut g0_leader = group(0, "leader", 1, 5, 10, 10);
        g0_leader.matched = Some([(1, Some(10)), (2, Some(8)), (3, Some(4))].into());
        let mut g1_follower = group(1, "follower", 3, 7, 20, 19);
        g1_follower.fatal = Some("storage error".into());
        g1_follower.last_error = g1_follower.fatal.clone();
        let mut answers = BTreeMap::new();
        answers.insert(1, answer(1, vec![g0_leader, group(1, "follower", 3, 6, 18, 18)]));
        answers.insert(2, answer(2, vec![group(0, "follower", 1, 5, 9, 7), g1_follower]));
        answers.insert(
            3,
            MemberAnswer {
                api_addr: "127.0.0.3:7000".into(),
                status: Err(FetchError::Peer(PeerApiError::Timeout {
                    url: "http://127.0.0.3:7000/admin/status".into(),
                    timeout: std::time::Duration::from_secs(1),
                })),
            },
        );
        answers
    }

    #[test]
    fn nodes_list_every_member_and_who_answered() {
        let overview = merge(1, &answers());
        let reachable: Vec<_> = overview.nodes.iter().map(|n| (n.node_id, n.reachable)).collect();
        assert_eq!(reachable, [(1, true), (2, true), (3, false)]);
        let down = &overview.nodes[2];
        assert_eq!(
            down.error.as_deref(),
            Some("http://127.0.0.3:7000/admin/status: no answer within 1s")
        );
        assert_eq!(
            (down.version.as_ref(), down.uptime_s, down.disk),
            (None, None, None)
        );
        assert_eq!(overview.nodes[1].uptime_s, Some(20));
        assert_eq!(overview.nodes[0].error, None);
    }

    #[test]
    fn a_group_takes_membership_and_lag_from_its_leader() {
        let g0 = &merge(2, &answers()).groups[0];
        assert_eq!((g0.leader, g0.term, g0.committed), (Some(1), 5, Some(10)));
        let r = &g0.replicas;
        assert_eq!(r.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            (r[&1].role.as_deref(), r[&1].applied, r[&1].lag),
            (Some("leader"), Some(10), Some(0))
        );
        assert_eq!(
            (r[&2].role.as_deref(), r[&2].applied, r[&2].matched, r[&2].lag),
            (Some("follower"), Some(7), Some(8), Some(2))
        );
        // Unreachable, but the leader still knows how far it got.
        assert_eq!(
            (r[&3].role.as_deref(), r[&3].applied, r[&3].matched, r[&3].lag),
            (None, None, Some(4), Some(6))
        );
        assert_eq!(g0.last_error, None);
    }

    #[test]
    fn a_group_whose_leader_did_not_answer_names_it_from_the_newest_claim() {
        let g1 = &merge(1, &answers()).groups[1];
        assert_eq!((g1.leader, g1.term), (Some(3), 7));
        // No reachable leader: this node's view of membership and commit, no lag.
        assert_eq!(g1.committed, Some(18));
        assert!(g1
            .replicas
            .values()
            .all(|r| r.lag.is_none() && r.matched.is_none()));
        assert_eq!(g1.replicas[&2].applied, Some(19));
        assert_eq!(g1.last_error.as_deref(), Some("node 2: storage error"));
    }

    #[test]
    fn the_overview_round_trips_through_json() {
        let overview = merge(1, &answers());
        let json = serde_json::to_value(&overview).unwrap();
        assert_eq!(json["groups"][0]["replicas"]["2"]["lag"], 2);
        assert!(json["nodes"][0].get("error").is_none());
        assert_eq!(json["nodes"][2]["reachable"], false);
        let back: ClusterOverview = serde_json::from_value(json).unwrap();
        assert_eq!(back, overview);
    }
}
