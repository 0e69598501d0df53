//! The `list` checker: a mailbox without expunges is the list of its UIDs in append order, and
//! the log orders appends once for every replica (ARCHITECTURE.md §6 invariants 1, 7, 8).
//!
//! # Operations read
//! - `read`: invoke `{"mailbox", "consistency"}`, ok `{"messages": [{"uid", "guid"}]}`: the whole
//!   mailbox in one fetch, in the server's order.
//! - `final.json`: every node's `messages` per mailbox.
//!
//! Appends are judged by [`super::set`] and [`super::uid`]; this checker judges order.
//!
//! # What it concludes, per mailbox
//! The final list is the first readable node's final read; every node's must equal it.
//! - `final-divergence`: two nodes' final lists differ (UIDs, GUIDs or order).
//! - Every read, `local` ones included (a lagging replica holds a prefix of the log), must be a
//!   prefix of the final list. Where it departs from it:
//!   `reorder` (its UIDs are not strictly ascending; also checked on the final list itself),
//!   `gap` (it skips UIDs the final list has at that place),
//!   `not-in-final` (it shows a UID the final list lacks there or at all),
//!   `wrong-message` (same UID, another GUID than the final list's).
//! - `shrunk`: a linearizable read that began after another completed is shorter.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::order::{regressions, Span};
use super::{op_json, op_label, op_ref, CheckResult, Findings};
use crate::history::Operation;
use crate::schema::{Finals, MessageRecord};

pub const NAME: &str = "list";

/// A read's list: UIDs and, where known, GUIDs.
type Entries<'a> = Vec<(u32, Option<&'a str>)>;

fn entries(records: &[MessageRecord]) -> Entries<'_> {
    records.iter().map(|r| (r.uid, r.guid.as_deref())).collect()
}

/// The list of a fetch answer, read in place; `None` if it is not one.
fn answer_entries(answer: &Value) -> Option<Entries<'_>> {
    answer["messages"]
        .as_array()?
        .iter()
        .map(|r| Some((u32::try_from(r["uid"].as_u64()?).ok()?, r["guid"].as_str())))
        .collect()
}

/// A mailbox's final list (the first readable node's) and where each UID stands in it.
struct Reference<'a> {
    node: &'a str,
    entries: Entries<'a>,
    position: HashMap<u32, usize>,
}

/// What the shrink check keeps of a read: each read is judged as it comes, then dropped.
struct ReadLength<'a> {
    op: &'a Operation<'a>,
    length: usize,
}

pub fn check(operations: &[Operation], finals: &Finals) -> CheckResult {
    let mut f = Findings::new(NAME);
    for (node, error) in finals.unreadable() {
        f.unknown(format!("the final read of {node} failed ({error})"));
    }
    let mut names: Vec<&str> = finals
        .readable()
        .flat_map(|(_, n)| n.mailboxes.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut references: BTreeMap<&str, Reference> = BTreeMap::new();
    for mailbox in names {
        let lists: Vec<(&str, Entries)> = finals
            .readable()
            .map(|(node, n)| {
                let list = n
                    .mailboxes
                    .get(mailbox)
                    .map_or_else(Vec::new, |m| entries(&m.messages));
                (node.as_str(), list)
            })
            .collect();
        let reference = compare_finals(mailbox, lists, &mut f);
        judge(
            mailbox,
            Seen::Final(reference.node),
            &reference.entries,
            &reference,
            &mut f,
        );
        references.insert(mailbox, reference);
    }
    let mut linearizable: BTreeMap<&str, Vec<ReadLength>> = BTreeMap::new();
    let mut unjudged: BTreeMap<&str, usize> = BTreeMap::new();
    for op in operations.iter().filter(|op| op.invoke.f == "read") {
        let (Some(result), Some(mailbox)) = (op.ok_value(), op.invoke.value["mailbox"].as_str()) else {
            continue;
        };
        let Some(list) = answer_entries(result) else {
            f.anomaly(
                "malformed-result",
                format!("{} answered without messages", op_label(op)),
                op_json(op),
            );
            continue;
        };
        f.count("reads", 1);
        match references.get(mailbox) {
            Some(reference) => judge(mailbox, Seen::Read(op), &list, reference, &mut f),
            None => *unjudged.entry(mailbox).or_default() += 1,
        }
        if op.invoke.value["consistency"].as_str() != Some("local") {
            let length = list.len();
            linearizable
                .entry(mailbox)
                .or_default()
                .push(ReadLength { op, length });
        }
    }
    for (mailbox, reads) in unjudged {
        f.unknown(format!("{mailbox}: no final read to compare {reads} reads with"));
    }
    for (mailbox, reads) in linearizable {
        check_growth(mailbox, &reads, &mut f);
    }
    f.finish()
}

/// Reports every node whose final list differs from the first node's, which is the reference.
fn compare_finals<'a>(
    mailbox: &str,
    mut lists: Vec<(&'a str, Entries<'a>)>,
    f: &mut Findings,
) -> Reference<'a> {
    let others = lists.split_off(1);
    let (node, entries) = lists.pop().expect("the mailbox comes from a readable node");
    for (other, list) in &others {
        if *list != entries {
            let at = list.iter().zip(&entries).take_while(|(a, b)| a == b).count();
            f.anomaly(
                "final-divergence",
                format!(
                    "the final lists of {mailbox} on {node} ({} UIDs) and {other} ({}) differ from position {at}",
                    entries.len(),
                    list.len()
                ),
                json!({"mailbox": mailbox, "nodes": [node, other], "position": at,
                       "first": entries.get(at), "second": list.get(at)}),
            );
        }
    }
    let position = entries.iter().enumerate().map(|(i, e)| (e.0, i)).collect();
    Reference {
        node,
        entries,
        position,
    }
}

/// Linearizable reads never shrink in real-time order.
fn check_growth(mailbox: &str, reads: &[ReadLength], f: &mut Findings) {
    let spans: Vec<Span> = reads
        .iter()
        .map(|r| Span {
            invoked_ns: r.op.invoked_ns(),
            completed_ns: r.op.completed_ns(),
            low: r.length as u64,
            high: r.length as u64,
        })
        .collect();
    for (earlier, later) in regressions(&spans) {
        let (a, b) = (&reads[earlier], &reads[later]);
        f.anomaly(
            "shrunk",
            format!(
                "{mailbox}: {} saw {} UIDs and completed before {} began, which saw {}",
                op_label(a.op),
                a.length,
                op_label(b.op),
                b.length
            ),
            json!({"mailbox": mailbox, "earlier": op_ref(a.op), "later": op_ref(b.op)}),
        );
    }
}

/// What showed a list: a read, or a node's final read.
#[derive(Debug, Clone, Copy)]
enum Seen<'a> {
    Read(&'a Operation<'a>),
    Final(&'a str),
}

/// Reports where `list` stops being a prefix of the reference list.
fn judge(mailbox: &str, seen_by: Seen, list: &Entries<'_>, reference: &Reference, f: &mut Findings) {
    let (position, reference) = (&reference.position, &reference.entries);
    let cite = || match seen_by {
        Seen::Read(op) => (op_label(op), op_ref(op)),
        Seen::Final(node) => (
            format!("the final read of {node}"),
            json!({ "final_read_of": node }),
        ),
    };
    if let Some(i) = (1..list.len()).find(|&i| list[i - 1].0 >= list[i].0) {
        let (label, source) = cite();
        f.anomaly(
            "reorder",
            format!(
                "{label}: {mailbox} lists UID {} after UID {}",
                list[i].0,
                list[i - 1].0
            ),
            json!({"mailbox": mailbox, "read": source, "position": i, "uids": [list[i - 1].0, list[i].0]}),
        );
        return;
    }
    let Some(i) = (0..list.len()).find(|&i| reference.get(i).is_none_or(|r| r.0 != list[i].0)) else {
        let wrong = list
            .iter()
            .zip(reference)
            .find(|(a, b)| a.1.is_some() && b.1.is_some() && a.1 != b.1);
        if let Some((a, b)) = wrong {
            let (label, source) = cite();
            f.anomaly(
                "wrong-message",
                format!(
                    "{label}: {mailbox} UID {} is {:?}, the final list has {:?}",
                    a.0, a.1, b.1
                ),
                json!({"mailbox": mailbox, "read": source, "uid": a.0, "guid": a.1, "final_guid": b.1}),
            );
        }
        return;
    };
    let uid = list[i].0;
    let (label, source) = cite();
    match position.get(&uid) {
        Some(&j) if j > i => {
            let skipped: Vec<u32> = reference[i..j].iter().take(10).map(|e| e.0).collect();
            f.anomaly(
                "gap",
                format!(
                    "{label}: {mailbox} jumps to UID {uid} at position {i}, skipping {} UIDs ({skipped:?}..)",
                    j - i
                ),
                json!({"mailbox": mailbox, "read": source, "position": i, "uid": uid, "skipped": skipped}),
            );
        }
        _ => f.anomaly(
            "not-in-final",
            format!("{label}: {mailbox} has UID {uid} at position {i}, which the final list does not"),
            json!({"mailbox": mailbox, "read": source, "position": i, "uid": uid,
                   "final_at_position": reference.get(i).map(|e| e.0)}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::History;
    use crate::checker::Validity;
    use crate::schema::parse;

    fn messages(uids: &[u32]) -> Value {
        let records: Vec<Value> = uids
            .iter()
            .map(|u| json!({"uid": u, "guid": format!("g{u}")}))
            .collect();
        json!({ "messages": records })
    }

    fn read(h: &mut History, start: u64, end: u64, consistency: &str, uids: &[u32]) {
        h.ok(
            "read",
            start,
            end,
            json!({"mailbox": "u/INBOX", "consistency": consistency}),
            messages(uids),
        );
    }

    fn finals(nodes: &[(&str, &[u32])]) -> Finals {
        let mut v = json!({"nodes": {}});
        for (node, uids) in nodes {
            v["nodes"][node] = json!({"mailboxes": {"u/INBOX": messages(uids)}});
        }
        parse(&v).unwrap()
    }

    fn one_kind(h: &History, finals: &Finals, kind: &str) {
        let r = check(&h.ops(), finals);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.of_kind(kind).len(), 1, "{:#?}", r.anomalies);
    }

    #[test]
    fn accepts_growing_prefixes_and_lagging_local_reads() {
        let mut h = History::new();
        read(&mut h, 0, 10, "linearizable", &[1, 2]);
        read(&mut h, 5, 15, "linearizable", &[1]); // concurrent: may be shorter
        read(&mut h, 20, 30, "linearizable", &[1, 2, 4]);
        read(&mut h, 31, 40, "local", &[1]); // a lagging replica still holds a prefix
        let r = check(&h.ops(), &finals(&[("n1", &[1, 2, 4, 5]), ("n2", &[1, 2, 4, 5])]));
        assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
        assert_eq!(r.stats["reads"], 4);
    }

    #[test]
    fn rejects_a_read_with_a_gap() {
        let mut h = History::new();
        read(&mut h, 0, 10, "local", &[1, 3]);
        one_kind(&h, &finals(&[("n1", &[1, 2, 3])]), "gap");
    }

    #[test]
    fn rejects_a_read_out_of_order() {
        let mut h = History::new();
        read(&mut h, 0, 10, "linearizable", &[1, 3, 2]);
        one_kind(&h, &finals(&[("n1", &[1, 2, 3])]), "reorder");
        one_kind(&History::new(), &finals(&[("n1", &[2, 1])]), "reorder");
    }

    #[test]
    fn rejects_a_read_that_is_not_a_prefix_of_the_final_list() {
        let mut h = History::new();
        read(&mut h, 0, 10, "linearizable", &[1, 2, 3]);
        one_kind(&h, &finals(&[("n1", &[1, 2])]), "not-in-final");
        let mut h = History::new();
        h.ok(
            "read",
            0,
            10,
            json!({"mailbox": "u/INBOX"}),
            json!({"messages": [{"uid": 1, "guid": "other"}]}),
        );
        one_kind(&h, &finals(&[("n1", &[1, 2])]), "wrong-message");
    }

    #[test]
    fn rejects_nodes_whose_final_lists_differ() {
        one_kind(
            &History::new(),
            &finals(&[("n1", &[1, 2, 3]), ("n2", &[1, 3])]),
            "final-divergence",
        );
        one_kind(
            &History::new(),
            &finals(&[("n1", &[1, 2]), ("n2", &[])]),
            "final-divergence",
        );
    }

    #[test]
    fn rejects_a_linearizable_read_that_shrinks_in_real_time() {
        let mut h = History::new();
        read(&mut h, 0, 10, "linearizable", &[1, 2]);
        read(&mut h, 11, 20, "linearizable", &[1]);
        one_kind(&h, &finals(&[("n1", &[1, 2])]), "shrunk");
    }

    #[test]
    fn judges_each_mailbox_of_a_rotation_against_its_own_final_list() {
        // The clients moved from u/INBOX to u/rot001. A gap in a read of the earlier mailbox
        // is caught against that mailbox's final list, and reads of the later mailbox, shorter
        // than the earlier one's, neither shrink nor stop being prefixes.
        let in_mailbox = |h: &mut History, mailbox: &str, start: u64, uids: &[u32]| {
            h.ok(
                "read",
                start,
                start + 5,
                json!({"mailbox": mailbox, "consistency": "linearizable"}),
                messages(uids),
            );
        };
        let finals = {
            let mut v = json!({"nodes": {}});
            for node in ["n1", "n2"] {
                v["nodes"][node] = json!({"mailboxes": {
                    "u/INBOX": messages(&[1, 2, 3]),
                    "u/rot001": messages(&[1]),
                }});
            }
            parse(&v).unwrap()
        };
        let mut h = History::new();
        in_mailbox(&mut h, "u/INBOX", 0, &[1, 2]);
        in_mailbox(&mut h, "u/INBOX", 10, &[1, 2, 3]);
        in_mailbox(&mut h, "u/rot001", 20, &[1]);
        let r = check(&h.ops(), &finals);
        assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
        in_mailbox(&mut h, "u/INBOX", 30, &[1, 3]);
        let r = check(&h.ops(), &finals);
        assert_eq!(r.valid, Validity::False);
        let gaps = r.of_kind("gap");
        assert_eq!(gaps.len(), 1, "{:#?}", r.anomalies);
        assert!(gaps[0].message.contains("u/INBOX"), "{}", gaps[0].message);
    }

    #[test]
    fn is_unsure_without_a_final_list() {
        let mut h = History::new();
        read(&mut h, 0, 10, "linearizable", &[1]);
        assert_eq!(check(&h.ops(), &Finals::default()).valid, Validity::Unknown);
    }
}
