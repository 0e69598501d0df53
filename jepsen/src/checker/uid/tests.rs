//! Hand-made append and status histories on one mailbox (`u/INBOX`, UIDVALIDITY 7): correct
//! ones accepted, each kind of anomaly provoked once and named.

use super::*;
use crate::checker::testing::History;
use crate::checker::Validity;
use serde_json::{json, Value};

fn args(guids: &[&str]) -> Value {
    json!({"mailbox": "u/INBOX", "messages": guids.iter().map(|g| json!({"guid": g})).collect::<Vec<_>>()})
}

fn acked(first: u32, last: u32) -> Value {
    json!({"uid_validity": 7, "first_uid": first, "last_uid": last, "modseq": 1, "group": 0, "token": 1})
}

fn status(h: &mut History, start: u64, end: u64, uid_next: u32) {
    h.ok(
        "status",
        start,
        end,
        json!({"mailbox": "u/INBOX"}),
        json!({"uid_validity": 7, "uid_next": uid_next, "exists": 0, "highest_modseq": 1}),
    );
}

/// A node's name, UIDNEXT and (UID, GUID) records of `u/INBOX`.
type NodeFinal<'a> = (&'a str, u32, &'a [(u32, &'a str)]);

fn finals(nodes: &[NodeFinal]) -> Finals {
    let mut v = json!({"nodes": {}});
    for (node, uid_next, records) in nodes {
        let messages: Vec<Value> = records
            .iter()
            .map(|(u, g)| json!({"uid": u, "guid": g}))
            .collect();
        v["nodes"][node] = json!({"mailboxes": {"u/INBOX": {"uid_validity": 7, "uid_next": uid_next,
            "messages": messages}}});
    }
    parse(&v).unwrap()
}

#[test]
fn accepts_concurrent_appends_reads_and_matching_finals() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a", "b"]), acked(1, 2));
    h.ok("append", 5, 20, args(&["d"]), acked(4, 4)); // concurrent with the next one
    h.ok("append", 6, 15, args(&["c"]), acked(3, 3));
    status(&mut h, 21, 22, 5);
    h.ok("append", 30, 40, args(&["e"]), acked(5, 5));
    h.info("append", 41, 45, args(&["f"]));
    h.fail("append", 46, 47, args(&["g"]), "invalid");
    let records: &[(u32, &str)] = &[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f")];
    let r = check(&h.ops(), &finals(&[("n1", 7, records), ("n2", 7, records)]));
    assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
    assert_eq!(r.stats["appends_ok"], 4);
    assert_eq!(r.stats["appends_info_observed"], 1);
}

#[test]
fn rejects_a_duplicate_uid() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a", "b"]), acked(1, 2));
    h.ok("append", 3, 12, args(&["c"]), acked(2, 2));
    let r = check(&h.ops(), &Finals::default());
    assert_eq!(r.valid, Validity::False);
    assert_eq!(r.of_kind("duplicate-uid").len(), 1, "{:#?}", r.anomalies);
    assert!(r.anomalies[0].message.contains("UID 2 of u/INBOX"));
}

#[test]
fn rejects_an_info_append_that_took_an_acknowledged_uid() {
    // The timed-out append of "x" did happen: the final read shows it with UID 1, which was
    // acknowledged to "a".
    let mut h = History::new();
    h.info("append", 0, 50, args(&["x"]));
    h.ok("append", 1, 10, args(&["a"]), acked(1, 1));
    let r = check(&h.ops(), &finals(&[("n1", 2, &[(1, "x")])]));
    assert_eq!(r.valid, Validity::False);
    assert_eq!(r.of_kind("duplicate-uid").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn rejects_replicas_that_bind_a_uid_to_different_messages() {
    let r = check(&[], &finals(&[("n1", 2, &[(1, "a")]), ("n2", 2, &[(1, "b")])]));
    assert_eq!(r.of_kind("duplicate-uid").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn rejects_a_uid_that_decreases_in_real_time() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a"]), acked(5, 5));
    h.ok("append", 11, 20, args(&["b"]), acked(3, 3));
    let r = check(&h.ops(), &Finals::default());
    assert_eq!(r.valid, Validity::False);
    assert_eq!(r.of_kind("uid-order").len(), 1, "{:#?}", r.anomalies);
    assert!(
        r.anomalies[0].message.contains("got UIDs 5..=5"),
        "{}",
        r.anomalies[0].message
    );
}

#[test]
fn rejects_an_observed_info_append_below_an_earlier_acknowledged_uid() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a"]), acked(5, 5));
    h.info("append", 11, 20, args(&["x"]));
    let r = check(&h.ops(), &finals(&[("n1", 6, &[(4, "x"), (5, "a")])]));
    assert_eq!(r.of_kind("uid-order").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn rejects_uid_next_going_down() {
    let mut h = History::new();
    status(&mut h, 0, 10, 8);
    status(&mut h, 11, 20, 6);
    let r = check(&h.ops(), &Finals::default());
    assert_eq!(r.valid, Validity::False);
    assert_eq!(r.of_kind("uid-next-decreased").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn rejects_appends_on_the_wrong_side_of_an_observed_uid_next() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a"]), acked(5, 5));
    status(&mut h, 11, 12, 5); // must be at least 6
    let r = check(&h.ops(), &Finals::default());
    assert_eq!(r.of_kind("uid-order").len(), 1, "{:#?}", r.anomalies);
    let mut h = History::new();
    status(&mut h, 0, 1, 9);
    h.ok("append", 2, 10, args(&["a"]), acked(5, 5)); // must be at least 9
    assert_eq!(check(&h.ops(), &Finals::default()).of_kind("uid-order").len(), 1);
}

#[test]
fn local_reads_may_lag_but_final_uid_next_must_cover_everything() {
    let mut h = History::new();
    status(&mut h, 0, 10, 8);
    h.ok(
        "status",
        11,
        20,
        json!({"mailbox": "u/INBOX", "consistency": "local"}),
        json!({"uid_validity": 7, "uid_next": 2}),
    );
    assert_eq!(check(&h.ops(), &Finals::default()).valid, Validity::True);
    let r = check(&h.ops(), &finals(&[("n1", 7, &[])]));
    assert_eq!(r.of_kind("uid-above-uid-next").len(), 1, "{:#?}", r.anomalies);
    let r = check(&[], &finals(&[("n1", 3, &[(3, "a")])]));
    assert_eq!(r.of_kind("uid-above-uid-next").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn rejects_a_message_that_moved_to_another_uid() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a"]), acked(1, 1));
    let r = check(&h.ops(), &finals(&[("n1", 3, &[(2, "a")])]));
    assert_eq!(r.of_kind("uid-mismatch").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn a_new_uid_validity_is_a_new_uid_space() {
    let mut h = History::new();
    h.ok("append", 0, 10, args(&["a"]), acked(5, 5));
    h.ok(
        "append",
        11,
        20,
        args(&["b"]),
        json!({"uid_validity": 8, "first_uid": 1, "last_uid": 1}),
    );
    assert_eq!(check(&h.ops(), &Finals::default()).valid, Validity::True);
}

#[test]
fn rejects_an_acknowledgement_without_uids_and_is_unsure_without_a_node() {
    let mut h = History::new();
    h.ok("append", 0, 1, args(&["a"]), json!({"oops": true}));
    h.ok("append", 2, 3, args(&["b", "c"]), acked(4, 4)); // one UID for two messages
    let r = check(&h.ops(), &Finals::default());
    assert_eq!(r.of_kind("malformed-result").len(), 2, "{:#?}", r.anomalies);
    let unread: Finals = parse(&json!({"nodes": {"n1": {"error": "connection refused"}}})).unwrap();
    assert_eq!(check(&[], &unread).valid, Validity::Unknown);
}
