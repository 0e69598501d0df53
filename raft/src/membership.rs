//! Guarded membership changes: what a group's leader is asked ([`MembershipChange`]), the rules
//! it applies first ([`MembershipRules`], pure functions of its own view), and what it answers
//! ([`MembershipOutcome`], with a [`Refusal`] naming the reason).
//!
//! The guards run on each group's leader (`node::dispatch::local_membership`), because only the
//! leader knows how far each member has matched its log and when each last answered. Membership
//! changes are applied to every group, so a promotion or removal is checked, and may be refused,
//! per group.
//!
//! # The rules
//! - **Promote** a learner only if it is caught up: its matched index at most
//!   [`PROMOTE_MAX_LAG_ENTRIES`] entries behind the leader's last log index, and acknowledged
//!   within [`PROMOTE_ACK_HEARTBEATS`] heartbeat intervals. 300 entries is openraft's
//!   `max_payload_entries`: such a learner is one AppendEntries away from the leader's last
//!   entry, so as a voter it takes part in the next commits at once, while the entries in flight
//!   to a healthy learner under load (a round trip's worth, tens of entries) stay well below it.
//!   A learner that has matched nothing or stopped answering would, as a voter, count against
//!   every quorum from then on; into a group of fewer than three healthy voters it wedges the
//!   group (issue 21, row 2).
//! - **Remove** a voter only if the voters left are at least [`MIN_VOTERS`] and still tolerate
//!   one failure: more of them reachable (acknowledged within the reachability window, an
//!   election timeout) than a quorum of them needs. Learners are removed freely.
//! - A leader that cannot judge its members now (elected less than the reachability window ago,
//!   no voter of its own membership any more, or not acknowledged by a quorum lately) answers
//!   "ask again" (a retry, not a refusal), and the caller asks again (`cannot_judge`).
//! - Either rule is skipped with `force`; a forced change is still refused where it makes no
//!   sense (promoting a node that is no learner of the group, removing a group's last voter).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::type_config::{Node, NodeId};
use crate::LogPosition;

/// Fewest voters a group keeps without `force`: three voters survive one failure.
pub const MIN_VOTERS: usize = 3;

/// How many entries a learner may be behind the leader's last log index and still be promoted
/// without `force` (openraft's `max_payload_entries`: one AppendEntries).
pub const PROMOTE_MAX_LAG_ENTRIES: u64 = 300;

/// Within how many heartbeat intervals a learner must have acknowledged the leader to be promoted
/// without `force`.
pub const PROMOTE_ACK_HEARTBEATS: u32 = 3;

/// A membership change asked of a group's leader (carried by `AdminRequest::Membership`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add `node_id` as a learner; a voter stays a voter.
    AddLearner { node_id: NodeId, node: Node },
    /// Make the learner `node_id` a voter; `force` skips the caught-up rule.
    Promote { node_id: NodeId, force: bool },
    /// Remove `node_id`, voter or learner; `force` skips the fault-tolerance rule.
    Remove { node_id: NodeId, force: bool },
}

impl MembershipChange {
    pub fn node_id(&self) -> NodeId {
        match self {
            MembershipChange::AddLearner { node_id, .. }
            | MembershipChange::Promote { node_id, .. }
            | MembershipChange::Remove { node_id, .. } => *node_id,
        }
    }
}

/// A node's place in one group's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    Voter,
    Learner,
    /// Neither voter nor learner.
    Absent,
}

impl MemberRole {
    /// `node_id`'s role among `voters` and `learners`.
    pub fn of(node_id: NodeId, voters: &BTreeSet<NodeId>, learners: &BTreeSet<NodeId>) -> MemberRole {
        if voters.contains(&node_id) {
            MemberRole::Voter
        } else if learners.contains(&node_id) {
            MemberRole::Learner
        } else {
            MemberRole::Absent
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Absent => "absent",
        }
    }
}

/// What a group's leader did with a [`MembershipChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipOutcome {
    /// Committed: the group's membership changed at `position`, leaving the node `role`.
    Changed { position: LogPosition, role: MemberRole },
    /// A check only: the change is allowed now (nothing written).
    Allowed,
    /// Nothing to do: the node already is `already` in this group.
    Unchanged { already: MemberRole },
    /// Refused by a rule; nothing written.
    Refused(Refusal),
}

/// Why a group's leader refused a membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// A promotion of a learner that lags or has not answered lately.
    #[error(
        "node {node_id} is not caught up: {} (at most {max_lag_entries} allowed); last acknowledged {} (at most {max_ack_age_ms} ms ago allowed)",
        lag_text(.matched, .last_log_index), ack_text(.since_acked_ms)
    )]
    NotCaughtUp {
        node_id: NodeId,
        /// The learner's matched log index in the leader's view (`None`: nothing yet).
        matched: Option<u64>,
        /// The leader's last log index.
        last_log_index: Option<u64>,
        /// Entries the learner is missing: `last_log_index - matched`.
        lag_entries: u64,
        max_lag_entries: u64,
        /// How long ago it last acknowledged the leader (`None`: not since this leader leads).
        since_acked_ms: Option<u64>,
        max_ack_age_ms: u64,
    },
    /// A promotion of a node that is not a learner of the group (add it first).
    #[error("node {node_id} is not a learner of the group: add it as a learner first")]
    NotALearner { node_id: NodeId },
    /// A removal that would leave too few voters, or too few of them reachable, to survive one
    /// more failure.
    #[error(
        "removing node {node_id} would leave voters {} ({}): one more failure would stop the group",
        ids(.voters_after), tolerance_text(.voters_after, .unreachable_after)
    )]
    TooFewVoters {
        node_id: NodeId,
        voters_after: BTreeSet<NodeId>,
        /// Of `voters_after`, those that have not acknowledged the leader lately.
        unreachable_after: BTreeSet<NodeId>,
        min_voters: u64,
    },
}

impl Refusal {
    /// The API's error code for it.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotCaughtUp { .. } => "not_caught_up",
            Refusal::NotALearner { .. } => "not_a_learner",
            Refusal::TooFewVoters { .. } => "too_few_voters",
        }
    }
}

fn lag_text(matched: &Option<u64>, last_log_index: &Option<u64>) -> String {
    let (matched, last_log_index) = (*matched, *last_log_index);
    let last = last_log_index.map_or("none".to_string(), |i| i.to_string());
    match matched {
        None => format!(
            "matched nothing of the leader's log (last index {last}), {} entries behind",
            entries_behind(None, last_log_index)
        ),
        Some(m) => format!(
            "matched index {m} of the leader's {last}, {} entries behind",
            entries_behind(Some(m), last_log_index)
        ),
    }
}

fn ack_text(since_acked_ms: &Option<u64>) -> String {
    since_acked_ms.map_or("never".to_string(), |ms| format!("{ms} ms ago"))
}

fn ids(set: &BTreeSet<NodeId>) -> String {
    let list: Vec<String> = set.iter().map(NodeId::to_string).collect();
    format!("{{{}}}", list.join(","))
}

fn tolerance_text(voters_after: &BTreeSet<NodeId>, unreachable_after: &BTreeSet<NodeId>) -> String {
    if voters_after.len() < MIN_VOTERS {
        format!("fewer than {MIN_VOTERS}")
    } else {
        format!("{} of them not answering", ids(unreachable_after))
    }
}

/// How many entries a member that matched `matched` lacks of a log whose last index is
/// `last_log_index` (`None`: nothing matched / an empty log).
pub fn entries_behind(matched: Option<u64>, last_log_index: Option<u64>) -> u64 {
    let have = matched.map_or(0, |m| m + 1);
    let want = last_log_index.map_or(0, |l| l + 1);
    want.saturating_sub(have)
}

/// Votes a quorum of `voters` voters needs.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// What a group's leader knows that the rules need, from its own metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// The leader itself (always reachable to itself).
    pub leader: NodeId,
    /// How long it has led the group: a new leader has matched and heard from nobody yet.
    pub led_for: Duration,
    /// How long ago a quorum last acknowledged it (`None`: not yet).
    pub since_quorum_acked: Option<Duration>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub last_log_index: Option<u64>,
    /// Each member's matched log index (`None`: nothing yet).
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// How long ago each member last acknowledged (`None`: not since this leader leads).
    pub since_acked: BTreeMap<NodeId, Option<Duration>>,
}

impl LeaderView {
    pub fn role(&self, node_id: NodeId) -> MemberRole {
        MemberRole::of(node_id, &self.voters, &self.learners)
    }

    /// Whether `node_id` acknowledged the leader within `window` (the leader itself always has).
    fn acked_within(&self, node_id: NodeId, window: Duration) -> bool {
        node_id == self.leader
            || self
                .since_acked
                .get(&node_id)
                .copied()
                .flatten()
                .is_some_and(|age| age <= window)
    }
}

/// The thresholds of the rules, from the node's timing configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipRules {
    /// A learner further behind than this is not promoted without `force`.
    pub max_lag_entries: u64,
    /// A learner that last acknowledged longer ago than this is not promoted without `force`.
    pub max_ack_age: Duration,
    /// A voter that last acknowledged longer ago than this counts as unreachable when a removal
    /// checks what the remaining voters tolerate.
    pub reachable_within: Duration,
}

impl MembershipRules {
    /// The documented thresholds for a node with these timers: [`PROMOTE_MAX_LAG_ENTRIES`],
    /// [`PROMOTE_ACK_HEARTBEATS`] heartbeats, and the minimum election timeout for reachability.
    pub fn new(heartbeat_interval_ms: u64, election_timeout_ms_min: u64) -> MembershipRules {
        MembershipRules {
            max_lag_entries: PROMOTE_MAX_LAG_ENTRIES,
            max_ack_age: Duration::from_millis(heartbeat_interval_ms * u64::from(PROMOTE_ACK_HEARTBEATS)),
            reachable_within: Duration::from_millis(election_timeout_ms_min),
        }
    }

    /// Why the leader cannot judge its members now, if it cannot; the caller asks again (the
    /// leader's answer is a retry, not a refusal):
    /// - it has led for less than the reachability window, so a member it has not heard from may
    ///   simply not have answered this leader yet;
    /// - it is no voter of its own membership (it removed itself and is about to step down; it
    ///   no longer replicates to anyone);
    /// - no quorum has acknowledged it within the window: it may be deposed or cut off, and what
    ///   it knows of the others is old.
    pub fn cannot_judge(&self, view: &LeaderView) -> Option<String> {
        let window = self.reachable_within;
        if view.led_for < window {
            return Some(format!(
                "node {} has led the group for {} ms; it judges its members' progress after {} ms",
                view.leader,
                view.led_for.as_millis(),
                window.as_millis()
            ));
        }
        if !view.voters.contains(&view.leader) {
            return Some(format!(
                "node {} leads the group but is no voter of it any more (it is stepping down)",
                view.leader
            ));
        }
        let alone = view.voters.len() == 1;
        if !alone && view.since_quorum_acked.is_none_or(|age| age > window) {
            return Some(format!(
                "no quorum has acknowledged node {} as the group's leader within {} ms",
                view.leader,
                window.as_millis()
            ));
        }
        None
    }

    /// Whether the leader may promote `node_id` without `force`.
    pub fn check_promote(&self, node_id: NodeId, view: &LeaderView) -> Result<(), Refusal> {
        if view.role(node_id) != MemberRole::Learner {
            return Err(Refusal::NotALearner { node_id });
        }
        let matched = view.matched.get(&node_id).copied().flatten();
        let lag_entries = entries_behind(matched, view.last_log_index);
        let since_acked = view.since_acked.get(&node_id).copied().flatten();
        let caught_up = matched.is_some() && lag_entries <= self.max_lag_entries;
        if caught_up && view.acked_within(node_id, self.max_ack_age) {
            return Ok(());
        }
        Err(Refusal::NotCaughtUp {
            node_id,
            matched,
            last_log_index: view.last_log_index,
            lag_entries,
            max_lag_entries: self.max_lag_entries,
            since_acked_ms: since_acked.map(|age| age.as_millis() as u64),
            max_ack_age_ms: self.max_ack_age.as_millis() as u64,
        })
    }

    /// Whether the leader may remove `node_id` without `force`: a learner (or a node already
    /// gone) always; a voter if the voters left are at least [`MIN_VOTERS`] and more of them are
    /// reachable than a quorum of them needs.
    pub fn check_remove(&self, node_id: NodeId, view: &LeaderView) -> Result<(), Refusal> {
        if view.role(node_id) != MemberRole::Voter {
            return Ok(());
        }
        let voters_after: BTreeSet<NodeId> = view.voters.iter().copied().filter(|&v| v != node_id).collect();
        let unreachable_after: BTreeSet<NodeId> = voters_after
            .iter()
            .copied()
            .filter(|&v| !view.acked_within(v, self.reachable_within))
            .collect();
        let reachable = voters_after.len() - unreachable_after.len();
        if voters_after.len() >= MIN_VOTERS && reachable > quorum(voters_after.len()) {
            return Ok(());
        }
        Err(Refusal::TooFewVoters {
            node_id,
            voters_after,
            unreachable_after,
            min_voters: MIN_VOTERS as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MembershipRules {
        MembershipRules::new(150, 1000)
    }

    /// A leader (node 1) of voters 1-3 at last log index 1000, every member matched and acked.
    fn view(learners: &[NodeId]) -> LeaderView {
        let members: Vec<NodeId> = [1, 2, 3].iter().chain(learners).copied().collect();
        LeaderView {
            leader: 1,
            led_for: Duration::from_secs(10),
            since_quorum_acked: Some(Duration::from_millis(40)),
            voters: BTreeSet::from([1, 2, 3]),
            learners: learners.iter().copied().collect(),
            last_log_index: Some(1000),
            matched: members.iter().map(|&m| (m, Some(1000))).collect(),
            since_acked: members
                .iter()
                .map(|&m| (m, Some(Duration::from_millis(40))))
                .collect(),
        }
    }

    #[test]
    fn thresholds_follow_the_timers() {
        let r = rules();
        assert_eq!(r.max_lag_entries, 300);
        assert_eq!(r.max_ack_age, Duration::from_millis(450));
        assert_eq!(r.reachable_within, Duration::from_millis(1000));
    }

    #[test]
    fn lag_counts_missing_entries() {
        assert_eq!(entries_behind(None, None), 0);
        assert_eq!(entries_behind(None, Some(0)), 1);
        assert_eq!(entries_behind(None, Some(56)), 57);
        assert_eq!(entries_behind(Some(56), Some(56)), 0);
        assert_eq!(entries_behind(Some(50), Some(56)), 6);
        // A member ahead of a new leader's view (it will be truncated) lacks nothing.
        assert_eq!(entries_behind(Some(60), Some(56)), 0);
    }

    #[test]
    fn a_caught_up_learner_is_promoted_at_the_threshold_and_not_past_it() {
        let mut v = view(&[4]);
        assert_eq!(rules().check_promote(4, &v), Ok(()));
        v.matched.insert(4, Some(700));
        assert_eq!(rules().check_promote(4, &v), Ok(()), "300 behind is allowed");
        v.matched.insert(4, Some(699));
        let refused = rules().check_promote(4, &v).unwrap_err();
        assert!(
            matches!(
                refused,
                Refusal::NotCaughtUp {
                    lag_entries: 301,
                    max_lag_entries: 300,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("301 entries behind"), "{refused}");
        assert_eq!(refused.code(), "not_caught_up");
    }

    #[test]
    fn an_unreachable_learner_that_matched_nothing_is_not_promoted() {
        // Issue 21, row 2: learner 20 at 127.0.0.1:1 never answered.
        let mut v = view(&[]);
        v.learners.insert(20);
        v.matched.insert(20, None);
        v.since_acked.insert(20, None);
        let refused = rules().check_promote(20, &v).unwrap_err();
        assert_eq!(
            refused,
            Refusal::NotCaughtUp {
                node_id: 20,
                matched: None,
                last_log_index: Some(1000),
                lag_entries: 1001,
                max_lag_entries: 300,
                since_acked_ms: None,
                max_ack_age_ms: 450,
            }
        );
        assert_eq!(
            refused.to_string(),
            "node 20 is not caught up: matched nothing of the leader's log (last index 1000), 1001 \
             entries behind (at most 300 allowed); last acknowledged never (at most 450 ms ago allowed)"
        );
    }

    #[test]
    fn a_matched_learner_that_stopped_answering_is_not_promoted() {
        let mut v = view(&[4]);
        v.since_acked.insert(4, Some(Duration::from_millis(451)));
        assert!(matches!(
            rules().check_promote(4, &v),
            Err(Refusal::NotCaughtUp {
                since_acked_ms: Some(451),
                ..
            })
        ));
        v.since_acked.insert(4, Some(Duration::from_millis(450)));
        assert_eq!(rules().check_promote(4, &v), Ok(()));
    }

    #[test]
    fn only_a_learner_is_promoted() {
        assert_eq!(
            rules().check_promote(9, &view(&[])),
            Err(Refusal::NotALearner { node_id: 9 })
        );
        assert_eq!(
            rules().check_promote(2, &view(&[])),
            Err(Refusal::NotALearner { node_id: 2 })
        );
    }

    #[test]
    fn removal_keeps_three_voters() {
        // 3 voters: removing any leaves 2.
        let refused = rules().check_remove(2, &view(&[])).unwrap_err();
        assert_eq!(
            refused,
            Refusal::TooFewVoters {
                node_id: 2,
                voters_after: BTreeSet::from([1, 3]),
                unreachable_after: BTreeSet::new(),
                min_voters: 3,
            }
        );
        assert_eq!(
            refused.to_string(),
            "removing node 2 would leave voters {1,3} (fewer than 3): one more failure would stop the group"
        );
        assert_eq!(refused.code(), "too_few_voters");
        // The leader itself counts like any voter.
        assert!(rules().check_remove(1, &view(&[])).is_err());
        // 4 healthy voters: removing one leaves 3.
        let mut v = view(&[]);
        v.voters.insert(4);
        v.matched.insert(4, Some(1000));
        v.since_acked.insert(4, Some(Duration::from_millis(10)));
        assert_eq!(rules().check_remove(4, &v), Ok(()));
        assert_eq!(rules().check_remove(1, &v), Ok(()));
    }

    #[test]
    fn removal_keeps_one_failure_of_slack_among_reachable_voters() {
        // Voters 1-4 with 4 unreachable: removing 4 leaves three healthy voters (the undo of a
        // forced promotion); removing a healthy one leaves {1,3,4} of which 4 is down.
        let mut v = view(&[]);
        v.voters.insert(4);
        v.matched.insert(4, None);
        v.since_acked.insert(4, None);
        assert_eq!(rules().check_remove(4, &v), Ok(()));
        let refused = rules().check_remove(2, &v).unwrap_err();
        assert_eq!(
            refused,
            Refusal::TooFewVoters {
                node_id: 2,
                voters_after: BTreeSet::from([1, 3, 4]),
                unreachable_after: BTreeSet::from([4]),
                min_voters: 3,
            }
        );
        assert!(
            refused.to_string().contains("{4} of them not answering"),
            "{refused}"
        );
        // An acknowledgement older than the election timeout counts as unreachable.
        v.since_acked.insert(4, Some(Duration::from_millis(1001)));
        assert!(rules().check_remove(2, &v).is_err());
        v.since_acked.insert(4, Some(Duration::from_millis(999)));
        assert_eq!(rules().check_remove(2, &v), Ok(()));
        // Five voters, one down: removing a healthy one leaves {1,3,4,5} with 3 reachable,
        // exactly a quorum: no slack.
        v.voters.insert(5);
        v.since_acked.insert(5, None);
        assert!(rules().check_remove(2, &v).is_err());
        assert_eq!(rules().check_remove(5, &v), Ok(()));
    }

    #[test]
    fn learners_and_strangers_are_removed_freely() {
        assert_eq!(rules().check_remove(4, &view(&[4])), Ok(()));
        assert_eq!(rules().check_remove(9, &view(&[])), Ok(()));
    }

    #[test]
    fn a_leader_judges_only_once_it_has_led_a_while_as_a_voter_a_quorum_follows() {
        let mut v = view(&[4]);
        assert_eq!(rules().cannot_judge(&v), None);
        v.led_for = Duration::from_millis(999);
        assert_eq!(
            rules().cannot_judge(&v).as_deref(),
            Some("node 1 has led the group for 999 ms; it judges its members' progress after 1000 ms")
        );
        v.led_for = Duration::from_millis(1000);
        assert_eq!(rules().cannot_judge(&v), None);
        // A leader that removed itself still leads until it steps down, replicating to nobody.
        v.voters.remove(&1);
        assert!(rules()
            .cannot_judge(&v)
            .unwrap()
            .contains("is no voter of it any more"));
        v.voters.insert(1);
        // Cut off: no quorum has answered lately.
        v.since_quorum_acked = Some(Duration::from_millis(1001));
        assert!(rules()
            .cannot_judge(&v)
            .unwrap()
            .starts_with("no quorum has acknowledged node 1"));
        v.since_quorum_acked = None;
        assert!(rules().cannot_judge(&v).is_some());
        // The only voter is its own quorum.
        v.voters = BTreeSet::from([1]);
        assert_eq!(rules().cannot_judge(&v), None);
    }

    #[test]
    fn quorums() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
    }
}
