//! The consensus side of backup and restore: what a group's consensus metadata says about a
//! backup ([`read_cut`]), and how a node of a new cluster is seeded from a backup
//! ([`reseat_membership`], [`seed_node_logs`]). The domain side (which files, which checks) is
//! `dovetail::backup`.
//!
//! A backup holds, per group, the application's state at one applied log position `(T, I)`
//! with the consensus metadata stored there ([`ConsensusMeta`]: the last applied log id and the
//! membership of the cluster it came from). A node of a new cluster, whose Raft logs are empty,
//! starts from it as if it had installed a snapshot at `(T, I)` and purged its log through it:
//! - the application's state, and its current snapshot, carry consensus metadata with the same
//!   last applied log id and the NEW cluster's membership ([`reseat_membership`]);
//! - the group's log is seeded ([`seed_log`]): no entry, last purged and committed log id
//!   `(T, I)`, and a vote of term `T` for this node that nobody granted.
//!
//! Why every group then starts initialized with the new membership and elects a leader above
//! term `T` (openraft 0.10.0-alpha.37, `raft/vendor/openraft/src`):
//! 1. `storage/helper.rs::get_initial_state` reads the vote `(T, self)`, committed `(T, I)`, the
//!    log state (last purged = last log id = `(T, I)`) and the state machine's applied `(T, I)`.
//!    Committed equals applied: nothing to re-apply. The last log id equals applied: no hole to
//!    purge. The log id list is just `(T, I)`; the current snapshot covers `(T, I)`, so
//!    `purged <= snapshot <= committed <= last log id` holds (`raft_state/mod.rs`, `validate`;
//!    without a snapshot, `io_state.rs` would fail `purged <= snapshot`, which is why the
//!    application must hold the state as its current snapshot). No membership entry is left in
//!    the log, so the membership in force is the state machine's: the new one.
//! 2. `RaftState::is_initialized` holds (there is a last log id): `initialize` is refused, so the
//!    node needs no bootstrap and a stray `--bootstrap` changes nothing.
//!    `engine/engine_impl.rs::startup` makes a voter of the new membership a follower; the vote
//!    is not committed, so the node never resumes as a leader.
//! 3. At its election timeout a node becomes a candidate for term `T + 1` (`elect`: the vote's
//!    term plus one). Every restored node has the same last log id `(T, I)`, so the others grant
//!    it (`handle_vote_req` refuses only a candidate whose last log id is behind). The new
//!    leader's first entry, its blank entry (`vote_handler/mod.rs`, on becoming leader), gets
//!    log id `(T + 1, leader, I + 1)`, above `(T, I)`. Hence the vote of term `T` and not the
//!    default term 0: a leader of term 1 would be below the leader `(T, _)` of the last log id,
//!    which openraft asserts against (`proposer/leader.rs`, `Leader::new`: "vote must GE
//!    last_leader_log_ids"; `t20_nodes_restored_from_a_backup_elect_above_its_term_and_go_on`
//!    in `node/tests.rs` fails there when seeded with term 0), and in a release build its blank
//!    entry's log id `(1, leader, I + 1)` would sort below `(T, _, I)`.
//! 4. A follower missing entries the leader has already purged is sent the leader's snapshot,
//!    as after any install.
//!
//! Every node of the new cluster must be restored from the same backup with the same membership:
//! then their states at `(T, I)` are byte-identical, as replicas' are (ARCHITECTURE.md §6
//! invariant 7), and the old positions recorded in index files (at most `I`) stay comparable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::vote::{RaftLeaderId, RaftLeaderIdExt};
use serde::{Deserialize, Serialize};

use crate::log_store::{LogDb, LogStoreError};
use crate::node::LOG_DB_DIR;
use crate::state_machine::{position_of, ConsensusMeta};
use crate::type_config::{GroupId, LeaderId, LogId, Membership, Node, NodeId, StoredMembership, Vote};
use crate::LogPosition;

/// A group's members as a backup records them and a restore names them: ids and addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembers {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Where each member is reached. Invariant: its keys are `voters` and `learners`, which
    /// are disjoint.
    pub nodes: BTreeMap<NodeId, Node>,
}

/// Where a group's state stands and who its members are, as its consensus metadata says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusCut {
    /// The last applied log position.
    pub last_applied: LogPosition,
    /// The node that led the term of the last applied entry (part of its log id).
    pub leader: NodeId,
    /// The membership in force at `last_applied`.
    pub members: GroupMembers,
}

/// Why a restore cannot seed a node.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The consensus metadata does not decode.
    #[error("consensus metadata: {reason}")]
    ConsensusMeta { reason: String },
    /// The membership asked for cannot be a group's membership.
    #[error("membership: {reason}")]
    Membership { reason: String },
    /// The log db could not be opened, or a group's log could not be seeded.
    #[error(transparent)]
    Log(#[from] LogStoreError),
}

fn members_of(membership: &Membership) -> GroupMembers {
    GroupMembers {
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        nodes: membership.nodes().map(|(id, node)| (*id, node.clone())).collect(),
    }
}

fn decode(consensus_meta: &[u8]) -> Result<ConsensusMeta, RestoreError> {
    ConsensusMeta::decode(consensus_meta).map_err(|e| RestoreError::ConsensusMeta {
        reason: e.to_string(),
    })
}

/// Where the state that stored `consensus_meta` stands, and the membership in force there.
pub fn read_cut(consensus_meta: &[u8]) -> Result<ConsensusCut, RestoreError> {
    let meta = decode(consensus_meta)?;
    Ok(ConsensusCut {
        last_applied: position_of(&meta.last_applied),
        leader: *meta.last_applied.leader_id.node_id(),
        members: members_of(meta.membership.membership()),
    })
}

/// The consensus metadata of a state restored into a new cluster: the same last applied log id
/// as `consensus_meta`, and `members` as the membership in force from there on.
pub fn reseat_membership(consensus_meta: &[u8], members: &GroupMembers) -> Result<Vec<u8>, RestoreError> {
    let cut = read_cut(consensus_meta)?;
    consensus_meta_at(cut.last_applied, cut.leader, members)
}

/// The consensus metadata of a state whose last applied entry is at `last_applied`, written by
/// the leader `leader`, with `members` in force (since that entry).
pub fn consensus_meta_at(
    last_applied: LogPosition,
    leader: NodeId,
    members: &GroupMembers,
) -> Result<Vec<u8>, RestoreError> {
    let invalid = |reason: String| RestoreError::Membership { reason };
    if members.voters.is_empty() {
        return Err(invalid("no voter".into()));
    }
    if let Some(both) = members.voters.intersection(&members.learners).next() {
        return Err(invalid(format!("node {both} is both a voter and a learner")));
    }
    let listed: BTreeSet<NodeId> = members.voters.union(&members.learners).copied().collect();
    let addressed: BTreeSet<NodeId> = members.nodes.keys().copied().collect();
    if listed != addressed {
        return Err(invalid(format!(
            "members {listed:?} but addresses for {addressed:?}"
        )));
    }
    if members.nodes.contains_key(&0) {
        return Err(invalid("node ids start at 1".into()));
    }
    let membership = Membership::new(vec![members.voters.clone()], members.nodes.clone())
        .map_err(|e| invalid(e.to_string()))?;
    let log_id = LogId::new(
        LeaderId::new_committed(last_applied.term, leader),
        last_applied.index,
    );
    let meta = ConsensusMeta {
        last_applied: log_id,
        membership: StoredMembership::new(Some(log_id), membership),
    };
    debug_assert_eq!(members_of(meta.membership.membership()), *members);
    Ok(meta.encode())
}

/// Seeds group `group_id`'s empty log in `log_db` for node `node_id` of a new cluster, whose
/// state stored `consensus_meta` (see the module docs): purged and committed through the last
/// applied log id, a vote of its term for `node_id`. Refuses a log that is not empty.
pub async fn seed_log(
    log_db: &LogDb,
    group_id: GroupId,
    node_id: NodeId,
    consensus_meta: &[u8],
) -> Result<(), RestoreError> {
    let meta = decode(consensus_meta)?;
    let vote = Vote::new(meta.last_applied.leader_id.term, node_id);
    log_db.group(group_id)?.seed(meta.last_applied, vote).await?;
    Ok(())
}

/// Seeds the log of every group in `groups` (group id, the consensus metadata its restored
/// state stores) for node `node_id`, in the log db of the node data directory `data_dir`
/// (created). Returns once everything is durable and the db is closed. Must run inside a tokio
/// runtime.
pub async fn seed_node_logs(
    data_dir: &Path,
    node_id: NodeId,
    groups: &[(GroupId, Vec<u8>)],
) -> Result<(), RestoreError> {
    let log_db = LogDb::open(data_dir.join(LOG_DB_DIR))?;
    let mut result = Ok(());
    for (group_id, consensus_meta) in groups {
        result = seed_log(&log_db, *group_id, node_id, consensus_meta).await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = log_db.sync().await.map_err(RestoreError::from);
    }
    log_db.close().await;
    result
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogReader, RaftLogStorage};

    use super::*;

    fn node(port: u16) -> Node {
        Node {
            peer_addr: format!("127.0.0.1:{port}"),
            api_addr: format!("127.0.0.1:{}", port + 1000),
        }
    }

    /// The metadata of a group of the old cluster {1, 2, 3} at (7, 40), written by leader 3.
    fn old_meta() -> Vec<u8> {
        let log_id = LogId::new(LeaderId::new_committed(7, 3), 40);
        let membership = Membership::new(
            vec![[1, 2, 3].into_iter().collect()],
            (1..=3)
                .map(|id| (id, node(7100 + id as u16)))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap();
        ConsensusMeta {
            last_applied: log_id,
            membership: StoredMembership::new(Some(LogId::new(LeaderId::new_committed(1, 1), 1)), membership),
        }
        .encode()
    }

    fn new_members() -> GroupMembers {
        GroupMembers {
            voters: [11, 12].into_iter().collect(),
            learners: [13].into_iter().collect(),
            nodes: [11, 12, 13]
                .into_iter()
                .map(|id| (id, node(9000 + id as u16)))
                .collect(),
        }
    }

    #[test]
    fn a_cut_names_its_position_leader_and_members() {
        let cut = read_cut(&old_meta()).unwrap();
        assert_eq!(cut.last_applied, LogPosition::new(7, 40));
        assert_eq!(cut.leader, 3);
        assert_eq!(cut.members.voters, [1, 2, 3].into_iter().collect());
        assert!(cut.members.learners.is_empty());
        assert_eq!(cut.members.nodes[&2], node(7102));
        assert!(matches!(
            read_cut(b"\x01garbage"),
            Err(RestoreError::ConsensusMeta { .. })
        ));
    }

    #[test]
    fn reseating_keeps_the_log_id_and_replaces_the_membership() {
        let old = old_meta();
        let reseated = reseat_membership(&old, &new_members()).unwrap();
        let meta = ConsensusMeta::decode(&reseated).unwrap();
        assert_eq!(
            meta.last_applied,
            ConsensusMeta::decode(&old).unwrap().last_applied
        );
        assert_eq!(meta.membership.log_id(), &Some(meta.last_applied));
        let cut = read_cut(&reseated).unwrap();
        assert_eq!((cut.last_applied, cut.leader), (LogPosition::new(7, 40), 3));
        assert_eq!(cut.members, new_members());
        // Deterministic: every node restored with the same flags stores the same bytes.
        assert_eq!(reseat_membership(&old, &new_members()).unwrap(), reseated);

        let refused = |members: GroupMembers| reseat_membership(&old, &members).unwrap_err();
        let mut none = new_members();
        none.voters.clear();
        none.learners = [11, 12, 13].into_iter().collect();
        assert!(matches!(refused(none), RestoreError::Membership { .. }));
        let mut unaddressed = new_members();
        unaddressed.nodes.remove(&12);
        assert!(matches!(refused(unaddressed), RestoreError::Membership { .. }));
        let mut both = new_members();
        both.learners.insert(11);
        assert!(matches!(refused(both), RestoreError::Membership { .. }));
    }

    #[tokio::test]
    async fn a_seeded_log_reads_as_purged_through_the_cut_with_a_vote_of_its_term() {
        let dir = tempfile::tempdir().unwrap();
        let meta = reseat_membership(&old_meta(), &new_members()).unwrap();
        seed_node_logs(dir.path(), 12, &[(0, meta.clone()), (1, meta.clone())])
            .await
            .unwrap();

        let log_db = LogDb::open(dir.path().join(LOG_DB_DIR)).unwrap();
        let cut = LogId::new(LeaderId::new_committed(7, 3), 40);
        for group_id in [0, 1] {
            let mut store = log_db.group(group_id).unwrap();
            let state = store.get_log_state().await.unwrap();
            assert_eq!(
                (state.last_purged_log_id, state.last_log_id),
                (Some(cut), Some(cut))
            );
            assert_eq!(store.read_committed().await.unwrap(), Some(cut));
            assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(7, 12)));
            assert!(store.try_get_log_entries(0..100).await.unwrap().is_empty());
        }
        // A group that was not seeded is untouched; a seeded one is never seeded again.
        let mut other = log_db.group(2).unwrap();
        assert_eq!(other.read_vote().await.unwrap(), None);
        let again = seed_log(&log_db, 0, 12, &meta).await.unwrap_err();
        assert!(
            matches!(again, RestoreError::Log(LogStoreError::NotEmpty { group_id: 0 })),
            "{again}"
        );
        log_db.close().await;
    }
}
