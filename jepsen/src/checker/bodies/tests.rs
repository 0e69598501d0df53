//! Hand-made delivery histories on one mailbox (`u/INBOX`, UIDVALIDITY 7) and the final body
//! reads of three nodes: a correct run accepted; a lost body, a corrupted one, a wrong id header,
//! a UID acknowledged twice and a digest that is not the bytes' each provoked once and named,
//! with the node and the UID; what cannot be judged is unknown, not valid.

use super::*;
use crate::checker::testing::History;
use crate::checker::Validity;
use serde_json::{json, Value};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A delivery of the bytes of `seed` (1 KiB and a little more), and their digest.
fn args(seed: u64) -> (Value, String) {
    let size = 1024 + seed % 512;
    let sha256 = sha256_hex(&message_bytes(seed, size));
    (
        json!({"mailbox": "u/INBOX", "seed": seed, "size": size, "sha256": sha256,
               "client_id": format!("c{seed}"), "request_seq": 1}),
        sha256,
    )
}

fn acked(uid: u32, sha256: &str) -> Value {
    json!({"uid_validity": 7, "first_uid": uid, "last_uid": uid, "modseq": uid + 1, "group": 0,
           "token": uid, "sha256": sha256})
}

/// What a correct node serves for UID `uid` whose bytes have digest `sha256`.
fn served(uid: u32, sha256: &str) -> Value {
    json!({"uid": uid, "status": 200, "sha256": sha256, "size": 1024, "body_id": body_id(sha256),
           "attempts": 1})
}

fn refused(uid: u32, status: u16, error: &str, attempts: u32) -> Value {
    json!({"uid": uid, "status": status, "error": error, "attempts": attempts})
}

/// Every node holds `records` ((UID, digest)) and serves `reads`, unless `overrides` gives a
/// node's read of a UID another answer.
fn finals(records: &[(u32, &str)], overrides: &[(&str, u32, Value)]) -> Finals {
    let mut v = json!({"nodes": {}});
    for node in NODES {
        let messages: Vec<Value> = records
            .iter()
            .map(|(uid, sha)| json!({"uid": uid, "guid": format!("g{uid}"), "body": body_id(sha)}))
            .collect();
        let reads: Vec<Value> = records
            .iter()
            .map(|(uid, sha)| {
                overrides
                    .iter()
                    .find(|(n, u, _)| *n == node && u == uid)
                    .map_or_else(|| served(*uid, sha), |(_, _, read)| read.clone())
            })
            .collect();
        v["nodes"][node] = json!({
            "mailboxes": {"u/INBOX": {"uid_validity": 7, "uid_next": records.len() + 1, "messages": messages}},
            "bodies": {"u/INBOX": reads},
        });
    }
    parse(&v).unwrap()
}

/// Two acknowledged deliveries (UIDs 1 and 2), one timed out that landed (UID 3), one timed out
/// that did not, and one refused; their digests by UID.
fn history() -> (History, [String; 3]) {
    let mut h = History::new();
    let (a, sha_a) = args(1);
    let (b, sha_b) = args(2);
    let (c, sha_c) = args(3);
    let (d, _) = args(4);
    let (e, _) = args(5);
    h.ok("deliver", 0, 10, a, acked(1, &sha_a));
    h.ok("deliver", 5, 20, b, acked(2, &sha_b));
    h.info("deliver", 21, 40, c);
    h.info("deliver", 22, 41, d);
    h.fail("deliver", 42, 43, e, "too_large");
    (h, [sha_a, sha_b, sha_c])
}

#[test]
fn accepts_bodies_served_byte_identical_by_every_node() {
    let (h, [a, b, c]) = history();
    // n3 needed three reads of UID 2 (catching up, fetching on miss): only the last one counts.
    let mut late = served(2, &b);
    late["attempts"] = json!(3);
    let finals = finals(&[(1, &a), (2, &b), (3, &c)], &[("n3", 2, late)]);
    let r = check(&h.ops(), &finals);
    assert_eq!(r.valid, Validity::True, "{:#?} {:?}", r.anomalies, r.unknown);
    assert_eq!(r.stats["deliveries_ok"], 2);
    assert_eq!(r.stats["info_landed"], 1);
    assert_eq!(r.stats["info_unlanded"], 1);
    assert_eq!(r.stats["deliveries_fail"], 1);
    assert_eq!(r.stats["reads_checked"], 9);
    assert_eq!(r.stats["reads_equal"], 9);
    assert_eq!(r.stats["reads_retried"], 1);
}

#[test]
fn rejects_a_lost_body_naming_the_node_and_the_uid() {
    let (h, [a, b, c]) = history();
    // n2 has no record of UID 2 any more; no member holds UID 1's body for n3.
    let finals = finals(
        &[(1, &a), (2, &b), (3, &c)],
        &[
            ("n2", 2, refused(2, 404, "no_such_message", 20)),
            ("n3", 1, refused(1, 503, "unavailable", 20)),
        ],
    );
    let r = check(&h.ops(), &finals);
    assert_eq!(r.valid, Validity::False);
    let lost = r.of_kind("lost-body");
    assert_eq!(lost.len(), 2, "{:#?}", r.anomalies);
    assert!(r.of_kind("corrupted-body").is_empty());
    assert!(lost[0].message.contains("node n2") && lost[0].message.contains("UID 2 of u/INBOX"));
    assert!(lost[0].message.contains("HTTP 404"), "{}", lost[0].message);
    assert_eq!(lost[1].detail["node"], "n3");
    assert_eq!(lost[1].detail["uid"], 1);
    assert_eq!(lost[1].detail["read"]["status"], 503);
}

#[test]
fn rejects_a_corrupted_body_naming_the_node_and_the_uid() {
    let (h, [a, b, c]) = history();
    // n1 serves UID 1 with one byte flipped: another digest, the id header still the index's.
    let mut flipped = message_bytes(1, 1025);
    flipped[100] ^= 1;
    let mut bad = served(1, &sha256_hex(&flipped));
    bad["body_id"] = json!(body_id(&a));
    let finals = finals(&[(1, &a), (2, &b), (3, &c)], &[("n1", 1, bad)]);
    let r = check(&h.ops(), &finals);
    assert_eq!(r.valid, Validity::False);
    let corrupted = r.of_kind("corrupted-body");
    assert_eq!(corrupted.len(), 1, "{:#?}", r.anomalies);
    assert!(r.of_kind("lost-body").is_empty() && r.of_kind("wrong-body-id").is_empty());
    assert!(corrupted[0]
        .message
        .contains("node n1 served other bytes for UID 1 of u/INBOX"));
    assert_eq!(corrupted[0].detail["acknowledged"], true);
}

#[test]
fn judges_an_indeterminate_delivery_that_landed_by_its_bytes_only() {
    let (h, [a, b, c]) = history();
    // UID 3 (timed out, landed) unreadable on n1: counted, not lost; other bytes on n2: corrupted.
    let finals = finals(
        &[(1, &a), (2, &b), (3, &c)],
        &[
            ("n1", 3, refused(3, 503, "unavailable", 20)),
            ("n2", 3, served(3, &a)),
        ],
    );
    let r = check(&h.ops(), &finals);
    assert_eq!(r.valid, Validity::False);
    assert!(r.of_kind("lost-body").is_empty(), "{:#?}", r.anomalies);
    let corrupted = r.of_kind("corrupted-body");
    assert_eq!(corrupted.len(), 1, "{:#?}", r.anomalies);
    assert_eq!(corrupted[0].detail["acknowledged"], false);
    assert!(corrupted[0].message.contains("indeterminate, landed"));
    assert_eq!(r.stats["info_landed_unreadable"], 1);
}

#[test]
fn rejects_a_wrong_id_header_a_uid_acknowledged_twice_and_a_false_digest() {
    let (mut h, [a, b, c]) = history();
    let mut header = served(2, &b);
    header["body_id"] = json!(body_id(&a));
    let r = check(
        &h.ops(),
        &finals(&[(1, &a), (2, &b), (3, &c)], &[("n3", 2, header)]),
    );
    assert_eq!(r.of_kind("wrong-body-id").len(), 1, "{:#?}", r.anomalies);
    assert_eq!(r.of_kind("wrong-body-id")[0].detail["node"], "n3");

    // UID 1 acknowledged again to other bytes; a delivery whose digest is not of its bytes.
    let (x, sha_x) = args(6);
    h.ok("deliver", 50, 60, x, acked(1, &sha_x));
    let (mut y, _) = args(7);
    y["sha256"] = json!(a);
    h.ok("deliver", 61, 70, y, acked(4, &a));
    let r = check(&h.ops(), &finals(&[(1, &a), (2, &b), (3, &c)], &[]));
    assert_eq!(r.of_kind("duplicate-uid").len(), 1, "{:#?}", r.anomalies);
    assert_eq!(r.of_kind("malformed-delivery").len(), 1, "{:#?}", r.anomalies);
    assert!(r.of_kind("duplicate-uid")[0].message.contains("UID 1 of u/INBOX"));
}

#[test]
fn what_was_not_read_is_unknown_not_valid() {
    let (h, [a, b, c]) = history();
    // n2 answered UID 2 with a 500; n3 lacks its read of UID 1.
    let mut v = serde_json::to_value(finals(
        &[(1, &a), (2, &b), (3, &c)],
        &[("n2", 2, refused(2, 500, "internal", 20))],
    ))
    .unwrap();
    v["nodes"]["n3"]["bodies"]["u/INBOX"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let r = check(&h.ops(), &parse(&v).unwrap());
    assert_eq!(r.valid, Validity::Unknown, "{:#?}", r.anomalies);
    assert_eq!(r.unknown.len(), 2, "{:?}", r.unknown);
    let mut v = serde_json::to_value(finals(&[(1, &a)], &[])).unwrap();
    v["nodes"]["n1"] = json!({"error": "timeout"});
    let r = check(&h.ops(), &parse(&v).unwrap());
    assert_eq!(r.valid, Validity::Unknown);
}

#[test]
fn generated_messages_are_reproducible_sized_and_distinct() {
    for size in [1024, 1025, 70_000] {
        let bytes = message_bytes(9, size);
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(bytes, message_bytes(9, size));
        assert!(bytes.starts_with(b"Subject: dovetail-jepsen 0000000000000009\r\n\r\n"));
        assert!(bytes
            .iter()
            .all(|b| (b' '..=b'~').contains(b) || *b == b'\r' || *b == b'\n'));
    }
    assert_ne!(message_bytes(9, 2000), message_bytes(10, 2000));
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(body_id(&sha256_hex(b"abc")), "ba7816bf8f01cfea414140de5dae2223");
}
