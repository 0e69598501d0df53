//! Removal from a group, pure: when a node may conclude that it was removed from a group it still
//! believes it belongs to ([`removal_evidence`]), when it is a member again ([`readmitted`]), and
//! the record of those conclusions that outlives a restart ([`RemovedGroups`]).
//!
//! A removed node is never told through the log: a leader stops replicating to a node as soon
//! as it appends the membership that leaves it out, so the node keeps its last membership (often
//! the joint one, which still lists it), campaigns in vain and, unchecked, serves local reads of
//! a copy that no longer follows the group (issue 21, row 3). So it asks: the membership watch
//! (`membership_watch`) asks the members it knows for their view of the group once no leader has
//! reached it for a while, and applies this rule to each answer.
//!
//! **The rule.** Node N holds it was removed from a group when some member answers with a
//! membership that (a) is committed as far as that member knows, (b) was set at or after the log
//! index of N's own latest membership entry, and (c) lists N neither as voter nor as learner,
//! and that member does not itself hold it was removed. A committed membership is in the log of
//! every later leader; N's log has no membership entry after it, so N has missed the change that
//! left it out. Membership log positions, not terms, are compared: a term says nothing about
//! which membership is newer, and a removed node that campaigns may hold a higher term than the
//! group's. An answer that lacks any of (a)-(c) proves nothing; N asks again later.
//!
//! **Added again.** A node that is added back is replicated to again, and its log then holds a
//! membership entry after the evidence that lists it: [`readmitted`]. That is also how a
//! mistaken conclusion (a member's committed view that lagged a later re-admission) undoes itself.

use std::collections::{BTreeMap, BTreeSet};

use dovetail_raft::NodeId;
use serde::{Deserialize, Serialize};

use super::status::GroupStatus;
use crate::index::LogPosition;

/// One group's membership as one node reports it (its `GET /admin/status` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipView {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Where the node's latest membership entry is; `None`: none (a node never added).
    pub membership_log: Option<LogPosition>,
    /// Whether the node knows that membership to be committed.
    pub committed: bool,
    /// Whether the node holds that it was removed from the group itself.
    pub removed: bool,
}

impl MembershipView {
    pub fn of(status: &GroupStatus) -> MembershipView {
        MembershipView {
            voters: status.voters.clone(),
            learners: status.learners.clone(),
            membership_log: status.membership_log,
            committed: status.membership_committed,
            removed: status.removed,
        }
    }

    /// Whether `node_id` is a voter or a learner in this view.
    pub fn lists(&self, node_id: NodeId) -> bool {
        self.voters.contains(&node_id) || self.learners.contains(&node_id)
    }
}

/// Whether `peer`'s view of a group proves that node `me`, whose own view is `own`, was removed
/// from it (the rule in the module docs); the position of the membership that left it out.
pub fn removal_evidence(me: NodeId, own: &MembershipView, peer: &MembershipView) -> Option<LogPosition> {
    let ours = own.membership_log?;
    let theirs = peer.membership_log?;
    let proves = peer.committed
        && !peer.removed
        && !peer.voters.is_empty()
        && !peer.lists(me)
        && theirs.index >= ours.index;
    proves.then_some(theirs)
}

/// Whether node `me`, which concluded it was removed on `evidence`, is a member again: its own
/// log holds a later membership entry that lists it.
pub fn readmitted(me: NodeId, own: &MembershipView, evidence: LogPosition) -> bool {
    own.lists(me) && own.membership_log.is_some_and(|ours| ours.index > evidence.index)
}

/// The `format` of a [`RemovedGroups`] file.
pub const RECORD_FORMAT: &str = "dovetail-removed-groups";
/// The `version` this release writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// The groups a node holds it was removed from, kept in `<data-dir>/removed-groups.json` so that
/// a restarted node does not serve them until it has asked again (what it knows is derived, but
/// deriving it again takes an election timeout and reachable members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedGroups {
    /// [`RECORD_FORMAT`].
    pub format: String,
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The node the record is about. Invariant: the node whose data directory holds it.
    pub node_id: NodeId,
    /// Per group, why the node holds it was removed.
    pub groups: BTreeMap<u32, Removal>,
}

/// Why a node holds it was removed from one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Removal {
    /// The committed membership that left the node out.
    pub membership_log: LogPosition,
    /// The member that reported it.
    pub reported_by: NodeId,
    /// When the node concluded it (Unix milliseconds).
    pub at_unix_ms: u64,
}

/// Why a [`RemovedGroups`] file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a removed-groups record: {reason}")]
    Malformed { reason: String },
    #[error("format {found:?}, expected {RECORD_FORMAT:?}")]
    Format { found: String },
    #[error("version {found} (this release reads {RECORD_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("the record is about node {found}, this is node {expected}")]
    OtherNode { found: NodeId, expected: NodeId },
}

impl RemovedGroups {
    pub fn new(node_id: NodeId) -> RemovedGroups {
        RemovedGroups {
            format: RECORD_FORMAT.to_string(),
            version: RECORD_VERSION,
            node_id,
            groups: BTreeMap::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a record always encodes");
        bytes.push(b'\n');
        bytes
    }

    /// Reads a record of node `node_id`, checking its format, version and node.
    pub fn decode(bytes: &[u8], node_id: NodeId) -> Result<RemovedGroups, RecordError> {
        let record: RemovedGroups = serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed {
            reason: e.to_string(),
        })?;
        if record.format != RECORD_FORMAT {
            return Err(RecordError::Format { found: record.format });
        }
        if record.version != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion {
                found: record.version,
            });
        }
        if record.node_id != node_id {
            return Err(RecordError::OtherNode {
                found: record.node_id,
                expected: node_id,
            });
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: u64) -> LogPosition {
        LogPosition::new(2, index)
    }

    fn view(voters: &[NodeId], learners: &[NodeId], index: u64, committed: bool) -> MembershipView {
        MembershipView {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            membership_log: Some(at(index)),
            committed,
            removed: false,
        }
    }

    #[test]
    fn a_committed_later_membership_without_the_node_proves_removal() {
        // Node 3 holds the joint membership at 20; the uniform one at 21 left it out.
        let own = view(&[1, 2, 3], &[], 20, false);
        let peer = view(&[1, 2], &[], 21, true);
        assert_eq!(removal_evidence(3, &own, &peer), Some(at(21)));
        // The same membership entry as its own, committed without it: removed too (a leader
        // that removed itself has the entry in its log).
        let own = view(&[1, 2], &[], 21, true);
        assert_eq!(removal_evidence(3, &own, &peer), Some(at(21)));
    }

    #[test]
    fn nothing_less_proves_removal() {
        let own = view(&[1, 2, 3], &[], 20, true);
        // Not committed as far as the peer knows: a new leader may drop it.
        assert_eq!(removal_evidence(3, &own, &view(&[1, 2], &[], 21, false)), None);
        // Older than the node's own membership.
        assert_eq!(removal_evidence(3, &own, &view(&[1, 2], &[], 19, true)), None);
        // Lists the node (as voter or learner).
        assert_eq!(removal_evidence(3, &own, &view(&[1, 2, 3], &[], 21, true)), None);
        assert_eq!(removal_evidence(3, &own, &view(&[1, 2], &[3], 21, true)), None);
        // The peer itself holds it was removed: its view is stale.
        let mut stale = view(&[1, 2], &[], 21, true);
        stale.removed = true;
        assert_eq!(removal_evidence(3, &own, &stale), None);
        // A peer that never had a membership (or reports none: an older release).
        assert_eq!(removal_evidence(3, &own, &MembershipView::default()), None);
        // A node that never had a membership (never added) concludes nothing.
        let fresh = MembershipView::default();
        assert_eq!(
            removal_evidence(4, &fresh, &view(&[1, 2, 3], &[], 21, true)),
            None
        );
    }

    #[test]
    fn a_later_membership_that_lists_the_node_readmits_it() {
        let evidence = at(21);
        assert!(!readmitted(3, &view(&[1, 2, 3], &[], 20, false), evidence));
        assert!(!readmitted(3, &view(&[1, 2], &[], 21, true), evidence));
        assert!(!readmitted(3, &view(&[1, 2], &[], 30, true), evidence));
        assert!(readmitted(3, &view(&[1, 2], &[3], 30, false), evidence));
        assert!(readmitted(3, &view(&[1, 2, 3], &[], 31, true), evidence));
    }

    #[test]
    fn the_record_round_trips_and_refuses_what_it_is_not() {
        let mut record = RemovedGroups::new(3);
        record.groups.insert(
            5,
            Removal {
                membership_log: at(21),
                reported_by: 1,
                at_unix_ms: 1_700_000_000_000,
            },
        );
        let bytes = record.encode();
        assert_eq!(RemovedGroups::decode(&bytes, 3), Ok(record.clone()));
        assert_eq!(
            RemovedGroups::decode(&bytes, 4),
            Err(RecordError::OtherNode {
                found: 3,
                expected: 4
            })
        );
        let text = String::from_utf8(bytes).unwrap();
        let other = text.replace("\"version\": 1", "\"version\": 2");
        assert_eq!(
            RemovedGroups::decode(other.as_bytes(), 3),
            Err(RecordError::UnsupportedVersion { found: 2 })
        );
        let other = text.replace(RECORD_FORMAT, "something-else");
        assert!(matches!(
            RemovedGroups::decode(other.as_bytes(), 3),
            Err(RecordError::Format { .. })
        ));
        assert!(matches!(
            RemovedGroups::decode(&text.as_bytes()[..text.len() / 2], 3),
            Err(RecordError::Malformed { .. })
        ));
    }
}
