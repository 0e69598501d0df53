//! Hand-made flag histories on one message (UID 1 of `u/INBOX`, appended with `\Seen` at MODSEQ
//! 1), each one either explainable by the register model or provably not.

use serde_json::{json, Value};

use super::*;
use crate::checker::testing::History;
use crate::checker::Validity;

fn created(h: &mut History) {
    h.ok(
        "append",
        0,
        1,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "g1", "flags": ["\\Seen"]}]}),
        json!({"uid_validity": 7, "first_uid": 1, "last_uid": 1, "modseq": 1}),
    );
}

fn read(h: &mut History, start: u64, end: u64, flags: &[&str], modseq: u64) {
    h.ok(
        "read",
        start,
        end,
        json!({"mailbox": "u/INBOX", "uids": [1]}),
        json!({"messages": [{"uid": 1, "flags": flags, "modseq": modseq, "guid": "g1"}], "applied": 9}),
    );
}

fn store_args(flags: &[&str], since: Option<u64>) -> Value {
    let mut args = json!({"mailbox": "u/INBOX", "uid": 1, "flags": flags});
    if let Some(since) = since {
        args["unchanged_since"] = json!(since);
    }
    args
}

/// An acknowledged write or cas; `modseq: None` means the flags were already these.
fn stored(h: &mut History, start: u64, end: u64, flags: &[&str], since: Option<u64>, modseq: Option<u64>) {
    let f = if since.is_some() { "cas" } else { "write" };
    let changed = if modseq.is_some() { "1" } else { "" };
    h.ok(
        f,
        start,
        end,
        store_args(flags, since),
        json!({"modseq": modseq, "changed": changed, "modified": "", "group": 0, "token": 5}),
    );
}

fn run(h: &History) -> CheckResult {
    check(&h.ops(), FlagsOptions::default())
}

fn assert_nonlinearizable(h: &History) -> CheckResult {
    let r = run(h);
    assert_eq!(r.valid, Validity::False, "{r:#?}");
    assert_eq!(r.of_kind("nonlinearizable").len(), 1, "{:#?}", r.anomalies);
    r
}

#[test]
fn accepts_concurrent_overlapping_operations_with_a_valid_order() {
    let mut h = History::new();
    created(&mut h);
    // Two overlapping writes and reads in between: the order write(A), read A, write(B), read B
    // explains it even though write(B) was invoked first.
    stored(&mut h, 10, 40, &["$B"], None, Some(3));
    stored(&mut h, 11, 20, &["$A"], None, Some(2));
    read(&mut h, 21, 22, &["$A"], 2);
    read(&mut h, 41, 42, &["$b"], 3); // flags compare case-insensitively
                                      // A cas based on the last read succeeds, a second one on the same MODSEQ fails with 409.
    stored(&mut h, 50, 60, &["\\Seen", "$C"], Some(3), Some(4));
    h.fail("cas", 61, 62, store_args(&["$D"], Some(3)), "condition_failed");
    // Writing the same flags again changes nothing.
    stored(&mut h, 63, 64, &["$C", "\\Seen"], None, None);
    read(&mut h, 65, 66, &["\\Seen", "$C"], 4);
    let r = run(&h);
    assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
    assert_eq!(r.stats["keys"], 1);
    assert_eq!(r.stats["operations"], 9);
}

#[test]
fn accepts_uncertain_operations_taking_effect_late_or_never() {
    let mut h = History::new();
    created(&mut h);
    h.info("write", 10, 20, store_args(&["$Lost"], None)); // never took effect
    h.info("cas", 11, 21, store_args(&["$Late"], Some(1))); // took effect after the next read
    read(&mut h, 30, 31, &["\\Seen"], 1);
    read(&mut h, 40, 41, &["$Late"], 6); // its MODSEQ was unknown until now
    stored(&mut h, 50, 51, &["$Next"], Some(6), Some(7));
    h.fail("write", 52, 53, store_args(&["$Refused"], None), "invalid"); // certainly no effect
    read(&mut h, 60, 61, &["$Next"], 7);
    let r = run(&h);
    assert_eq!(r.valid, Validity::True, "{:#?}", r.anomalies);
    assert_eq!(r.stats["stores_failed_dropped"], 1);
}

#[test]
fn rejects_a_stale_read_after_a_completed_write() {
    let mut h = History::new();
    created(&mut h);
    stored(&mut h, 10, 20, &["$A"], None, Some(2));
    read(&mut h, 21, 22, &["\\Seen"], 1);
    let r = assert_nonlinearizable(&h);
    assert_eq!(r.anomalies[0].detail["stuck"]["f"], "read");
    assert_eq!(r.anomalies[0].detail["state"]["flags"], json!(["$a"]));
}

#[test]
fn rejects_a_cas_that_succeeded_although_another_write_intervened() {
    let mut h = History::new();
    created(&mut h);
    read(&mut h, 10, 11, &["\\Seen"], 1);
    stored(&mut h, 12, 13, &["$Other"], None, Some(2));
    stored(&mut h, 14, 15, &["$Mine"], Some(1), Some(3)); // UNCHANGEDSINCE 1, but MODSEQ is 2
    assert_nonlinearizable(&h);
}

#[test]
fn rejects_two_cas_with_the_same_expected_modseq_both_succeeding() {
    let mut h = History::new();
    created(&mut h);
    read(&mut h, 10, 11, &["\\Seen"], 1);
    stored(&mut h, 12, 30, &["$A"], Some(1), Some(2));
    stored(&mut h, 13, 31, &["$B"], Some(1), Some(3));
    assert_nonlinearizable(&h);
}

#[test]
fn rejects_a_read_of_a_value_never_written() {
    let mut h = History::new();
    created(&mut h);
    stored(&mut h, 10, 20, &["$A"], None, Some(2));
    h.info("write", 11, 21, store_args(&["$B"], None));
    read(&mut h, 30, 31, &["$Z"], 3);
    assert_nonlinearizable(&h);
}

#[test]
fn rejects_a_condition_failure_nothing_explains() {
    // Nothing changed the message since MODSEQ 1, so UNCHANGEDSINCE 1 must pass.
    let mut h = History::new();
    created(&mut h);
    h.fail("cas", 10, 11, store_args(&["$A"], Some(1)), "condition_failed");
    assert_nonlinearizable(&h);
}

#[test]
fn rejects_modseq_going_backwards_and_a_message_vanishing() {
    let mut h = History::new();
    created(&mut h);
    stored(&mut h, 10, 11, &["$A"], None, Some(5));
    stored(&mut h, 12, 13, &["$B"], None, Some(4));
    assert_nonlinearizable(&h);
    let mut h = History::new();
    created(&mut h);
    h.ok(
        "read",
        10,
        11,
        json!({"mailbox": "u/INBOX", "uids": [1]}),
        json!({"messages": []}),
    );
    assert_nonlinearizable(&h);
    // A local read may lag, even to before the append: it is not checked.
    let mut h = History::new();
    created(&mut h);
    h.ok(
        "read",
        10,
        11,
        json!({"mailbox": "u/INBOX", "uids": [1], "consistency": "local"}),
        json!({"messages": []}),
    );
    let r = run(&h);
    assert_eq!((r.valid, r.stats["reads_local_skipped"]), (Validity::True, 1));
}

#[test]
fn a_spent_budget_makes_the_verdict_unknown() {
    // Ten concurrent uncertain writes and a read of a value none of them wrote: proving that no
    // subset in no order explains the read means visiting every subset.
    let mut h = History::new();
    created(&mut h);
    for i in 0..10 {
        h.info("write", 10 + i, 100, store_args(&[&format!("$K{i}")], None));
    }
    read(&mut h, 200, 201, &["$Never"], 50);
    let tight = FlagsOptions {
        max_steps_per_key: 1_000,
    };
    let r = check(&h.ops(), tight);
    assert_eq!(r.valid, Validity::Unknown, "{r:#?}");
    assert_eq!(r.stats["keys_unknown"], 1);
    assert!(r.unknown[0].contains("budget"), "{:?}", r.unknown);
    assert_eq!(run(&h).valid, Validity::False);
}

#[test]
fn registers_are_independent_and_stores_on_unknown_messages_are_unknown() {
    let mut h = History::new();
    h.ok(
        "append",
        0,
        1,
        json!({"mailbox": "u/INBOX", "messages": [{"guid": "a"}, {"guid": "b", "flags": ["$X"]}]}),
        json!({"uid_validity": 7, "first_uid": 1, "last_uid": 2, "modseq": 1}),
    );
    h.ok(
        "read",
        2,
        3,
        json!({"mailbox": "u/INBOX", "uids": [1, 2]}),
        json!({"messages": [{"uid": 1, "flags": [], "modseq": 1}, {"uid": 2, "flags": ["$X"], "modseq": 1}]}),
    );
    let r = run(&h);
    assert_eq!(
        (r.valid, r.stats["keys"]),
        (Validity::True, 2),
        "{:#?}",
        r.anomalies
    );
    h.ok(
        "write",
        4,
        5,
        json!({"mailbox": "u/INBOX", "uid": 9, "flags": []}),
        json!({"modseq": null}),
    );
    assert_eq!(run(&h).valid, Validity::Unknown);
}
