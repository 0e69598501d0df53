//! Hand-made set histories on one mailbox (`u/INBOX`): correct ones accepted, each kind of
//! anomaly provoked once and named.

use super::*;
use crate::checker::testing::History;
use crate::checker::Validity;
use crate::schema::parse;

fn append(h: &mut History, start: u64, end: u64, guid: &str) {
    h.ok(
        "append",
        start,
        end,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": guid}]}),
        json!({"uid_validity": 1, "first_uid": 1, "last_uid": 1}),
    );
}

fn read(h: &mut History, start: u64, end: u64, consistency: &str, guids: &[&str]) {
    let messages: Vec<Value> = guids.iter().map(|g| json!({"uid": 1, "guid": g})).collect();
    h.ok(
        "read",
        start,
        end,
        json!({"mailbox": "u/INBOX", "consistency": consistency}),
        json!({ "messages": messages }),
    );
}

fn finals(nodes: &[(&str, &[&str])]) -> Finals {
    let mut v = json!({"nodes": {}});
    for (node, guids) in nodes {
        let messages: Vec<Value> = guids.iter().map(|g| json!({"uid": 1, "guid": g})).collect();
        v["nodes"][node] = json!({"mailboxes": {"u/INBOX": {"uid_validity": 1, "messages": messages}}});
    }
    parse(&v).unwrap()
}

fn run(h: &History, finals: &Finals) -> CheckResult {
    check(&h.ops(), finals, SetOptions::default())
}

#[test]
fn accepts_concurrent_reads_info_appends_and_lagging_local_reads() {
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    read(&mut h, 5, 12, "linearizable", &[]); // concurrent with the append: may miss it
    h.info(
        "append",
        11,
        20,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "b"}]}),
    );
    h.info(
        "append",
        12,
        21,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "c"}]}),
    );
    read(&mut h, 22, 30, "local", &[]); // local reads may lag
    read(&mut h, 31, 40, "linearizable", &["a", "b"]);
    h.fail(
        "append",
        41,
        42,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "d"}]}),
        "invalid",
    );
    let r = run(&h, &finals(&[("n1", &["a", "b"]), ("n2", &["a", "b"])]));
    assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
    assert_eq!(r.stats["stable"], 2);
    assert_eq!(r.stats["info_unobserved"], 1);
}

#[test]
fn rejects_a_lost_write() {
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    append(&mut h, 0, 10, "b");
    read(&mut h, 11, 20, "linearizable", &["a", "b"]);
    let r = run(&h, &finals(&[("n1", &["a"]), ("n2", &["a"])]));
    assert_eq!(r.valid, Validity::False);
    assert_eq!(r.of_kind("lost").len(), 1, "{:#?}", r.anomalies);
    assert!(r.anomalies[0]
        .message
        .contains("absent from the final reads of n1, n2"));
    // Without final reads the last read decides.
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    read(&mut h, 11, 20, "linearizable", &["a"]);
    read(&mut h, 21, 30, "linearizable", &[]);
    assert_eq!(run(&h, &Finals::default()).of_kind("lost").len(), 1);
}

#[test]
fn rejects_an_observed_info_append_that_is_lost_later() {
    let mut h = History::new();
    h.info(
        "append",
        0,
        5,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "x"}]}),
    );
    read(&mut h, 6, 10, "local", &["x"]);
    let r = run(&h, &finals(&[("n1", &[])]));
    assert_eq!(r.of_kind("lost").len(), 1, "{:#?}", r.anomalies);
}

#[test]
fn rejects_a_stale_linearizable_read_and_tolerates_it_when_asked() {
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    read(&mut h, 11, 20, "linearizable", &[]);
    read(&mut h, 21, 30, "linearizable", &["a"]);
    let all = finals(&[("n1", &["a"])]);
    let r = run(&h, &all);
    assert_eq!(r.valid, Validity::False);
    assert_eq!(r.of_kind("stale").len(), 1, "{:#?}", r.anomalies);
    assert_eq!(r.anomalies[0].detail["evidence"]["stale_read"]["invoke_ns"], 11);
    let lenient = SetOptions {
        linearizable_reads_must_not_be_stale: false,
    };
    let r = check(&h.ops(), &all, lenient);
    assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
    assert_eq!(r.stats["stale"], 1);
    // Present, then missing (the stale read named), then present again; a concurrent read
    // and a local one that miss it do not count.
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    read(&mut h, 5, 15, "linearizable", &[]);
    read(&mut h, 11, 20, "linearizable", &["a"]);
    read(&mut h, 21, 30, "local", &[]);
    read(&mut h, 31, 40, "linearizable", &[]);
    read(&mut h, 41, 50, "linearizable", &["a"]);
    let r = run(&h, &all);
    assert_eq!(r.of_kind("stale").len(), 1, "{:#?}", r.anomalies);
    assert_eq!(r.anomalies[0].detail["evidence"]["stale_read"]["invoke_ns"], 31);
}

#[test]
fn rejects_duplicates_and_unexpected_elements() {
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    h.fail(
        "append",
        0,
        10,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "f"}]}),
        "invalid",
    );
    read(&mut h, 11, 20, "linearizable", &["a", "a", "ghost", "f"]);
    let r = run(&h, &finals(&[("n1", &["a", "a"])]));
    assert_eq!(r.of_kind("duplicate").len(), 2, "{:#?}", r.anomalies);
    assert_eq!(r.of_kind("unexpected").len(), 2, "{:#?}", r.anomalies);
}

#[test]
fn rejects_final_divergence_between_nodes() {
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    h.info(
        "append",
        0,
        10,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "b"}]}),
    );
    let r = run(
        &h,
        &finals(&[("n1", &["a", "b"]), ("n2", &["a"]), ("n3", &["a", "b"])]),
    );
    assert_eq!(r.of_kind("final-divergence").len(), 1, "{:#?}", r.anomalies);
    assert_eq!(
        r.of_kind("final-divergence")[0].detail["only_on_first"],
        json!(["b"])
    );
    // b was uncertain but seen on n1 and n3, so missing on n2 it is lost too.
    assert_eq!(r.of_kind("lost").len(), 1);
}

#[test]
fn is_unsure_without_final_reads_or_with_an_unreadable_node() {
    let mut h = History::new();
    append(&mut h, 0, 10, "a");
    read(&mut h, 11, 20, "linearizable", &["a"]);
    assert_eq!(run(&h, &Finals::default()).valid, Validity::Unknown);
    let mut partial = finals(&[("n1", &["a"])]);
    partial
        .nodes
        .insert("n2".into(), parse(&json!({"error": "timeout"})).unwrap());
    assert_eq!(run(&h, &partial).valid, Validity::Unknown);
    assert_eq!(run(&h, &finals(&[("n1", &["a"])])).valid, Validity::True);
}

/// An acknowledged append and a read in a given mailbox (the rotation test's helpers).
fn append_in(h: &mut History, mailbox: &str, start: u64, end: u64, guid: &str) {
    h.ok(
        "append",
        start,
        end,
        json!({"mailbox": mailbox, "messages": [{"guid": guid}]}),
        json!({"uid_validity": 1, "first_uid": 1, "last_uid": 1}),
    );
}

fn read_in(h: &mut History, mailbox: &str, start: u64, end: u64, guids: &[&str]) {
    let messages: Vec<Value> = guids.iter().map(|g| json!({"uid": 1, "guid": g})).collect();
    h.ok(
        "read",
        start,
        end,
        json!({"mailbox": mailbox, "consistency": "linearizable"}),
        json!({ "messages": messages }),
    );
}

#[test]
fn judges_each_mailbox_of_a_rotation_on_its_own() {
    // The workload moves from u/INBOX to u/rot001: the earlier mailbox is no longer read once
    // the clients have moved on, but its final reads still judge it, and reads of one mailbox
    // never vouch for another's elements.
    let mut h = History::new();
    append_in(&mut h, "u/INBOX", 0, 10, "a");
    append_in(&mut h, "u/INBOX", 11, 20, "b");
    read_in(&mut h, "u/INBOX", 21, 30, &["a", "b"]);
    append_in(&mut h, "u/INBOX", 31, 40, "c"); // the last one before the rotation: never read
    append_in(&mut h, "u/rot001", 41, 50, "d");
    read_in(&mut h, "u/rot001", 51, 60, &["d"]);
    let finals_with = |inbox: &[&str], rot: &[&str]| {
        let records =
            |guids: &[&str]| -> Vec<Value> { guids.iter().map(|g| json!({"uid": 1, "guid": g})).collect() };
        let mut v = json!({"nodes": {}});
        for node in ["n1", "n2"] {
            v["nodes"][node] = json!({"mailboxes": {
                "u/INBOX": {"uid_validity": 1, "messages": records(inbox)},
                "u/rot001": {"uid_validity": 1, "messages": records(rot)},
            }});
        }
        parse(&v).unwrap()
    };
    let r = run(&h, &finals_with(&["a", "b", "c"], &["d"]));
    assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
    assert_eq!(r.stats.get("never_read").copied().unwrap_or(0), 0);
    assert_eq!(r.stats["stable"], 4);

    // A write lost in the earlier mailbox, after the clients left it, is still caught, and
    // named in that mailbox.
    let r = run(&h, &finals_with(&["a", "b"], &["d"]));
    assert_eq!(r.valid, Validity::False);
    let lost = r.of_kind("lost");
    assert_eq!(lost.len(), 1, "{:#?}", r.anomalies);
    assert_eq!(lost[0].detail["guid"], "c");
    assert_eq!(lost[0].detail["mailbox"], "u/INBOX");

    // An element turning up in the other generation's mailbox is lost from its own and
    // unexpected in the other.
    let r = run(&h, &finals_with(&["a", "b"], &["c", "d"]));
    assert_eq!(r.of_kind("lost").len(), 1, "{:#?}", r.anomalies);
    assert_eq!(r.of_kind("unexpected").len(), 2, "{:#?}", r.anomalies);

    // A stale read in the earlier mailbox is caught although later reads go elsewhere.
    let mut stale = History::new();
    append_in(&mut stale, "u/INBOX", 0, 10, "a");
    read_in(&mut stale, "u/INBOX", 11, 20, &[]);
    append_in(&mut stale, "u/rot001", 21, 30, "d");
    read_in(&mut stale, "u/rot001", 31, 40, &["d"]);
    let r = run(&stale, &finals_with(&["a"], &["d"]));
    assert_eq!(r.of_kind("stale").len(), 1, "{:#?}", r.anomalies);
}
