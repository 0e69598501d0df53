//! Verify's comparison, pure: from each replica's digests of a group ([`GroupDigests`]) to
//! divergences, suspects and what is still in flux ([`VerifyReport`]). No I/O: the fan-out that
//! asks every replica, in rounds, is `api::admin::verify`.
//!
//! Verify needs no pause in writes: a mailbox file records the position of the last entry that
//! changed it, and copies recording the same position must be byte-identical (see
//! `state_machine::repair`). Copies at different positions are in flux and are asked again a
//! few times; the manifest (names, sessions) is compared when the replicas stand at the same
//! group position. A copy that fails its own checks is reported at once.
//!
//! Bodies are compared per node, not per mailbox ([`compare_bodies`]): each member reports the
//! referenced bodies its store lacks or (when verify hashes) holds damaged
//! (`node::body_check`), and each such body is a divergence of its own kind, named by node and
//! body, with the members that hold it without fault (where `repair --bodies` fetches from).

use std::collections::{BTreeMap, BTreeSet};

use dovetail_raft::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body_check::{BodyCheck, BodyProblem};
use crate::state_machine::MailboxDigest;

/// One replica's digests of one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupDigests {
    pub node_id: NodeId,
    pub group: u32,
    pub applied: u64,
    pub manifest_digest: String,
    pub mailboxes: Vec<MailboxDigest>,
}

/// What verify found.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// True iff every replica of every group answered and no divergence was found.
    pub clean: bool,
    pub groups_checked: usize,
    pub mailboxes_checked: usize,
    pub divergences: Vec<Divergence>,
    /// Mailboxes whose copies kept changing, so no common position was seen.
    pub unverified: Vec<Unverified>,
    /// Replicas that did not answer: `{group, node_id, error}`.
    pub unreachable: Vec<Value>,
    /// Referenced bodies checked, summed over the nodes, and whether their bytes were hashed
    /// (else only their presence was checked).
    #[serde(default)]
    pub bodies_checked: u64,
    #[serde(default)]
    pub bodies_hashed: bool,
    /// Referenced bodies missing or damaged on a node.
    #[serde(default)]
    pub bodies: Vec<BodyDivergence>,
}

/// A referenced body that a node lacks or holds damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyDivergence {
    pub node_id: NodeId,
    pub group: u32,
    pub body_id: String,
    pub problem: BodyProblem,
    /// The other members of the group that answered and hold the body without fault (as far
    /// as the check went): where a repair can fetch it. Empty: no good copy is known.
    pub good_copies: Vec<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divergence {
    pub group: u32,
    /// None for the group's manifest (names and sessions).
    pub mailbox_guid: Option<String>,
    pub user: String,
    pub mailbox: String,
    pub reason: String,
    /// The replicas whose copy differs from the majority's or fails its own checks.
    pub suspects: Vec<NodeId>,
    /// Each replica's copy: `{position, digest, damage}` or null if it has none.
    pub replicas: BTreeMap<NodeId, Option<MailboxDigest>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unverified {
    pub group: u32,
    pub mailbox_guid: String,
    pub positions: BTreeMap<NodeId, Option<u64>>,
}

/// Compares one round of views; settles what can be settled and returns the rest.
pub fn compare(
    group: u32,
    views: &BTreeMap<NodeId, GroupDigests>,
    settled: &mut BTreeSet<String>,
    manifest_checked: &mut bool,
    report: &mut VerifyReport,
) -> Vec<Unverified> {
    let same_applied = views
        .values()
        .all(|v| v.applied == views.values().next().map_or(0, |f| f.applied));
    if same_applied && !*manifest_checked {
        *manifest_checked = true;
        let digests: BTreeMap<NodeId, &str> = views
            .iter()
            .map(|(n, v)| (*n, v.manifest_digest.as_str()))
            .collect();
        let suspects = minority(&digests);
        if !suspects.is_empty() {
            report.divergences.push(Divergence {
                group,
                mailbox_guid: None,
                user: String::new(),
                mailbox: String::new(),
                reason: format!(
                    "manifests differ at applied index {}",
                    views.values().next().map_or(0, |v| v.applied)
                ),
                suspects,
                replicas: BTreeMap::new(),
            });
        }
    }
    let by_guid: BTreeMap<NodeId, BTreeMap<&str, &MailboxDigest>> = views
        .iter()
        .map(|(n, v)| {
            (
                *n,
                v.mailboxes.iter().map(|d| (d.mailbox_guid.as_str(), d)).collect(),
            )
        })
        .collect();
    let guids: BTreeSet<&str> = by_guid.values().flat_map(|m| m.keys().copied()).collect();
    let mut pending = Vec::new();
    for guid in guids {
        if settled.contains(guid) {
            continue;
        }
        let per_node: BTreeMap<NodeId, Option<&MailboxDigest>> = by_guid
            .iter()
            .map(|(n, copies)| (*n, copies.get(guid).copied()))
            .collect();
        let any = per_node.values().flatten().next().expect("a copy exists");
        let diverged = |reason: String, suspects: Vec<NodeId>| Divergence {
            group,
            mailbox_guid: Some(guid.to_string()),
            user: any.user.clone(),
            mailbox: any.mailbox.clone(),
            reason,
            suspects,
            replicas: per_node
                .iter()
                .map(|(n, d)| (*n, d.map(|d| (*d).clone())))
                .collect(),
        };
        let damaged: Vec<NodeId> = per_node
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| d.damage.is_some()))
            .map(|(n, _)| *n)
            .collect();
        if !damaged.is_empty() {
            settled.insert(guid.to_string());
            report.mailboxes_checked += 1;
            report
                .divergences
                .push(diverged("a copy fails its own checks".into(), damaged));
            continue;
        }
        let positions: BTreeSet<Option<u64>> = per_node.values().map(|d| d.map(|d| d.position)).collect();
        if positions.len() == 1 && !positions.contains(&None) {
            settled.insert(guid.to_string());
            report.mailboxes_checked += 1;
            let digests: BTreeMap<NodeId, &str> = per_node
                .iter()
                .filter_map(|(n, d)| d.map(|d| (*n, d.digest.as_str())))
                .collect();
            let suspects = minority(&digests);
            if !suspects.is_empty() {
                let position = positions.into_iter().next().flatten().unwrap_or(0);
                report.divergences.push(diverged(
                    format!("copies recording position {position} differ"),
                    suspects,
                ));
            }
        } else if positions.contains(&None) && same_applied {
            settled.insert(guid.to_string());
            report.mailboxes_checked += 1;
            let lacking = per_node
                .iter()
                .filter(|(_, d)| d.is_none())
                .map(|(n, _)| *n)
                .collect();
            report.divergences.push(diverged(
                "missing on some replicas at the same applied index".into(),
                lacking,
            ));
        } else {
            pending.push(Unverified {
                group,
                mailbox_guid: guid.to_string(),
                positions: per_node
                    .iter()
                    .map(|(n, d)| (*n, d.map(|d| d.position)))
                    .collect(),
            });
        }
    }
    pending
}

/// The body divergences of one round of checks: every fault a node reports, with the members of
/// its group (`members`) that answered, checked that group and report no fault for that body.
pub fn compare_bodies(
    checks: &BTreeMap<NodeId, BodyCheck>,
    members: &BTreeMap<u32, BTreeSet<NodeId>>,
) -> Vec<BodyDivergence> {
    let faulty: BTreeSet<(NodeId, &str)> = checks
        .iter()
        .flat_map(|(n, c)| c.faults.iter().map(move |f| (*n, f.body_id.as_str())))
        .collect();
    let mut out = Vec::new();
    for (node_id, check) in checks {
        for fault in &check.faults {
            let good_copies = members
                .get(&fault.group)
                .into_iter()
                .flatten()
                .filter(|m| *m != node_id && !faulty.contains(&(**m, fault.body_id.as_str())))
                .filter(|m| checks.get(m).is_some_and(|c| c.groups.contains(&fault.group)))
                .copied()
                .collect();
            out.push(BodyDivergence {
                node_id: *node_id,
                group: fault.group,
                body_id: fault.body_id.clone(),
                problem: fault.problem,
                good_copies,
            });
        }
    }
    out
}

/// The nodes whose value differs from the most common one (all of them if there is a tie
/// for most common, since no majority vouches for any copy).
fn minority(values: &BTreeMap<NodeId, &str>) -> Vec<NodeId> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values.values() {
        *counts.entry(v).or_default() += 1;
    }
    if counts.len() <= 1 {
        return Vec::new();
    }
    let best = counts.values().copied().max().unwrap_or(0);
    let winners: Vec<&str> = counts
        .iter()
        .filter(|(_, c)| **c == best)
        .map(|(v, _)| *v)
        .collect();
    if winners.len() > 1 {
        return values.keys().copied().collect();
    }
    values
        .iter()
        .filter(|(_, v)| **v != winners[0])
        .map(|(n, _)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(guid: &str, position: u64, digest: &str, damage: Option<&str>) -> MailboxDigest {
        MailboxDigest {
            mailbox_guid: guid.into(),
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: 1,
            position,
            digest: digest.into(),
            damage: damage.map(String::from),
        }
    }

    fn view(node_id: NodeId, applied: u64, mailboxes: Vec<MailboxDigest>) -> GroupDigests {
        GroupDigests {
            node_id,
            group: 0,
            applied,
            manifest_digest: "m".into(),
            mailboxes,
        }
    }

    fn run(views: Vec<GroupDigests>) -> (VerifyReport, Vec<Unverified>) {
        let views = views.into_iter().map(|v| (v.node_id, v)).collect();
        let mut report = VerifyReport::default();
        let pending = compare(0, &views, &mut BTreeSet::new(), &mut false, &mut report);
        (report, pending)
    }

    #[test]
    fn equal_copies_are_clean_and_a_differing_one_is_named() {
        let (report, pending) = run(vec![
            view(1, 9, vec![digest("a", 5, "x", None), digest("b", 7, "y", None)]),
            view(2, 9, vec![digest("a", 5, "x", None), digest("b", 7, "y", None)]),
            view(3, 9, vec![digest("a", 5, "x", None), digest("b", 7, "z", None)]),
        ]);
        assert!(pending.is_empty());
        assert_eq!(report.mailboxes_checked, 2);
        assert_eq!(report.divergences.len(), 1, "{report:?}");
        assert_eq!(report.divergences[0].mailbox_guid.as_deref(), Some("b"));
        assert_eq!(report.divergences[0].suspects, [3]);
    }

    #[test]
    fn copies_in_flux_wait_and_damage_is_reported_at_once() {
        let (report, pending) = run(vec![
            view(1, 9, vec![digest("a", 5, "x", None), digest("b", 9, "y", None)]),
            view(
                2,
                8,
                vec![
                    digest("a", 5, "x", Some("record 3: bad")),
                    digest("b", 7, "w", None),
                ],
            ),
        ]);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].mailbox_guid, "b");
        assert_eq!(report.divergences.len(), 1);
        assert_eq!(report.divergences[0].suspects, [2]);
    }

    fn check(node_id: NodeId, faults: &[(&str, BodyProblem)]) -> BodyCheck {
        BodyCheck {
            node_id,
            groups: vec![0],
            checked: 3,
            hashed: true,
            faults: faults
                .iter()
                .map(|(id, problem)| crate::node::body_check::BodyFault {
                    group: 0,
                    body_id: id.to_string(),
                    problem: *problem,
                })
                .collect(),
        }
    }

    #[test]
    fn body_faults_are_named_by_node_and_body_with_their_good_copies() {
        use BodyProblem::{Damaged, Missing};
        let members = BTreeMap::from([(0, BTreeSet::from([1, 2, 3]))]);
        let clean: BTreeMap<NodeId, BodyCheck> = (1..=3).map(|n| (n, check(n, &[]))).collect();
        assert!(compare_bodies(&clean, &members).is_empty());

        let checks = BTreeMap::from([
            (1, check(1, &[])),
            (2, check(2, &[("aa", Missing), ("cc", Missing)])),
            (3, check(3, &[("bb", Damaged), ("cc", Missing)])),
        ]);
        let found = compare_bodies(&checks, &members);
        let named: Vec<(NodeId, &str, BodyProblem, Vec<NodeId>)> = found
            .iter()
            .map(|d| (d.node_id, d.body_id.as_str(), d.problem, d.good_copies.clone()))
            .collect();
        assert_eq!(
            named,
            [
                (2, "aa", Missing, vec![1, 3]),
                (2, "cc", Missing, vec![1]),
                (3, "bb", Damaged, vec![1, 2]),
                (3, "cc", Missing, vec![1]),
            ]
        );
    }

    #[test]
    fn a_member_that_did_not_answer_is_no_good_copy() {
        let members = BTreeMap::from([(0, BTreeSet::from([1, 2, 3]))]);
        let checks = BTreeMap::from([(2, check(2, &[("aa", BodyProblem::Missing)])), (3, check(3, &[]))]);
        let found = compare_bodies(&checks, &members);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].good_copies, [3], "node 1 did not answer");
        let mut other_group = check(3, &[]);
        other_group.groups = vec![1];
        let checks = BTreeMap::from([(2, check(2, &[("aa", BodyProblem::Missing)])), (3, other_group)]);
        assert!(compare_bodies(&checks, &members)[0].good_copies.is_empty());
    }

    #[test]
    fn a_tie_suspects_everyone_and_manifests_are_compared_at_equal_positions() {
        let mut a = view(1, 9, vec![digest("a", 5, "x", None)]);
        let b = view(2, 9, vec![digest("a", 5, "y", None)]);
        a.manifest_digest = "other".into();
        let (report, _) = run(vec![a, b]);
        assert_eq!(report.divergences.len(), 2, "{report:?}");
        assert!(report.divergences.iter().all(|d| d.suspects == [1, 2]));
    }
}
