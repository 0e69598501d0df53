//! The `replicas` checker: the replicas hold the same data at the end (ARCHITECTURE.md §6 invariant 7).
//!
//! Two inputs are understood (`final.json` field `verify`):
//! - the answer of `POST /admin/verify`: `{"clean", "divergences": [{group, mailbox_guid, user,
//!   mailbox, reason, suspects, replicas}], "unverified": [..], "unreachable": [..]}`. Each
//!   divergence is an anomaly; unverified mailboxes and unreachable replicas make the verdict
//!   `unknown` (nothing proven either way).
//! - per-node digests `{"n1": {"applied": 812, "digest": "ab12.."}, ..}`: nodes at the same applied
//!   index must have equal digests (`divergence`); nodes at different indexes cannot be compared,
//!   so the verdict is `unknown` unless all stand at one index. A node given as `{"error"}` is
//!   unknown too.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{CheckResult, Findings};

pub const NAME: &str = "replicas";

pub fn check(report: &Value) -> CheckResult {
    let mut f = Findings::new(NAME);
    match report.get("clean") {
        Some(clean) => check_verify_report(report, clean.as_bool(), &mut f),
        None => match report.as_object() {
            Some(nodes) if !nodes.is_empty() => check_digests(nodes, &mut f),
            _ => f.unknown(format!("unrecognized replica report: {report}")),
        },
    }
    f.finish()
}

fn check_verify_report(report: &Value, clean: Option<bool>, f: &mut Findings) {
    let list = |field: &str| report[field].as_array().cloned().unwrap_or_default();
    f.count("groups_checked", report["groups_checked"].as_u64().unwrap_or(0));
    f.count(
        "mailboxes_checked",
        report["mailboxes_checked"].as_u64().unwrap_or(0),
    );
    let (divergences, unverified, unreachable) =
        (list("divergences"), list("unverified"), list("unreachable"));
    for d in &divergences {
        f.anomaly(
            "divergence",
            format!(
                "group {} mailbox {}/{} ({}): {}; suspects {}",
                d["group"],
                d["user"].as_str().unwrap_or("?"),
                d["mailbox"].as_str().unwrap_or("?"),
                d["mailbox_guid"],
                d["reason"].as_str().unwrap_or("?"),
                d["suspects"]
            ),
            d.clone(),
        );
    }
    for u in &unverified {
        f.unknown(format!(
            "mailbox {} of group {} kept changing and was not compared",
            u["mailbox_guid"], u["group"]
        ));
    }
    for u in &unreachable {
        f.unknown(format!(
            "replica {} of group {} did not answer: {}",
            u["node_id"], u["group"], u["error"]
        ));
    }
    // The lists decide; a report that is not clean must say why.
    let explained = !(divergences.is_empty() && unverified.is_empty() && unreachable.is_empty());
    if clean != Some(true) && !explained {
        f.unknown(format!(
            "verify report with clean = {} and no reason given",
            report["clean"]
        ));
    }
}

fn check_digests(nodes: &serde_json::Map<String, Value>, f: &mut Findings) {
    let mut by_applied: BTreeMap<u64, Vec<(&str, &Value)>> = BTreeMap::new();
    for (node, entry) in nodes {
        match (entry["applied"].as_u64(), entry.get("digest")) {
            (Some(applied), Some(digest)) => by_applied.entry(applied).or_default().push((node, digest)),
            _ => f.unknown(format!("{node} has no applied index and digest: {entry}")),
        }
    }
    f.count("nodes", nodes.len() as u64);
    for (applied, group) in &by_applied {
        let (first_node, first_digest) = group[0];
        for &(node, digest) in &group[1..] {
            if digest != first_digest {
                f.anomaly(
                    "divergence",
                    format!("{first_node} and {node} both applied {applied} but their digests differ"),
                    json!({"applied": applied, "nodes": {first_node: first_digest, node: digest}}),
                );
            }
        }
    }
    if by_applied.len() > 1 {
        let positions: BTreeMap<&str, u64> = by_applied
            .iter()
            .flat_map(|(applied, group)| group.iter().map(move |(node, _)| (*node, *applied)))
            .collect();
        f.unknown(format!(
            "the nodes stand at different applied indexes, not all comparable: {positions:?}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    #[test]
    fn a_clean_verify_report_is_valid() {
        let r = check(
            &json!({"clean": true, "groups_checked": 16, "mailboxes_checked": 40,
            "divergences": [], "unverified": [], "unreachable": []}),
        );
        assert_eq!(r.valid, Validity::True, "{r:#?}");
        assert_eq!(r.stats["mailboxes_checked"], 40);
    }

    #[test]
    fn a_divergence_is_invalid_and_an_unverified_mailbox_unknown() {
        let divergence = json!({"group": 3, "mailbox_guid": "ab", "user": "u", "mailbox": "INBOX",
            "reason": "digests differ at position 40", "suspects": [2], "replicas": {}});
        let r =
            check(&json!({"clean": false, "divergences": [divergence], "unverified": [], "unreachable": []}));
        assert_eq!(r.valid, Validity::False);
        assert!(
            r.anomalies[0].message.contains("u/INBOX"),
            "{}",
            r.anomalies[0].message
        );
        let r = check(&json!({"clean": false, "divergences": [],
            "unverified": [{"group": 1, "mailbox_guid": "cd", "positions": {}}], "unreachable": []}));
        assert_eq!(r.valid, Validity::Unknown);
        let r = check(&json!({"clean": false, "divergences": [], "unverified": [],
            "unreachable": [{"group": 1, "node_id": 3, "error": "timeout"}]}));
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(check(&json!({"clean": false})).valid, Validity::Unknown);
        assert_eq!(check(&json!("nonsense")).valid, Validity::Unknown);
    }

    #[test]
    fn digests_at_the_same_applied_index_must_be_equal() {
        let same = json!({"n1": {"applied": 9, "digest": "aa"}, "n2": {"applied": 9, "digest": "aa"}});
        assert_eq!(check(&same).valid, Validity::True);
        let differ = json!({"n1": {"applied": 9, "digest": "aa"}, "n2": {"applied": 9, "digest": "ab"},
            "n3": {"applied": 7, "digest": "zz"}});
        let r = check(&differ);
        assert_eq!((r.valid, r.anomalies.len()), (Validity::False, 1), "{r:#?}");
        let apart = json!({"n1": {"applied": 9, "digest": "aa"}, "n2": {"applied": 8, "digest": "ab"}});
        assert_eq!(check(&apart).valid, Validity::Unknown);
        assert_eq!(
            check(&json!({"n1": {"error": "refused"}})).valid,
            Validity::Unknown
        );
    }
}
