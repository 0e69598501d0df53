//! The `bodies` checker: every acknowledged delivery's body is served byte-identical by every
//! node once the faults are healed (issue "Message bodies": an acknowledged delivery survives the
//! loss of any minority of nodes, body included; ARCHITECTURE.md §3).
//!
//! # Operations read
//! - `deliver`: invoke [`DeliverArgs`] `{"mailbox", "seed", "size", "sha256", "client_id",
//!   "request_seq"}`, the bytes being [`message_bytes`]`(seed, size)`; ok: the server's answer
//!   `{"uid_validity", "first_uid", "last_uid", ..}` (one message: `first_uid == last_uid`);
//!   `fail`, `info`.
//! - `final.json`: every node's records per mailbox (each names its `body`) and `bodies`: what
//!   the node served, per mailbox and UID, to `GET .../messages/{uid}/body` ([`BodyRead`]).
//!
//! # What it concludes
//! A delivery is *judged* when it was acknowledged (at its acknowledged UID), or when it is `info`
//! and some node's final records name its body (it landed, at that UID). On every readable node:
//! - `lost-body`: an acknowledged delivery whose body the node answers 404 (no such message, or an
//!   index-only record) or 503 (no member holds a copy) to, read again until the final phase's
//!   deadline.
//! - `corrupted-body`: the node served bytes whose SHA-256 is not the delivered one (acknowledged
//!   or landed deliveries).
//! - `wrong-body-id`: the right bytes, but an `x-dovetail-body` header that is not the first 128
//!   bits of their SHA-256.
//! - `duplicate-uid`: two acknowledged deliveries of different bodies got one UID of a mailbox
//!   (same UIDVALIDITY).
//! - `malformed-delivery`: an acknowledged delivery without one UID, or whose recorded `sha256`
//!   is not that of the bytes its `seed` and `size` make (the runner's own bug).
//!
//! Unknown (not a pass): a node whose final reads failed, a judged body the runner did not read on
//! some node, an answer that is neither 200, 404 nor 503 (no answer, another 5xx).
//! Counted, not anomalies: `info_unlanded` (indeterminate and in no final record: may never have
//! happened), `info_landed_unreadable` (landed, yet a node did not serve it: only the bytes of an
//! indeterminate delivery are judged, when served).

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{op_json, op_label, CheckResult, Findings};
use crate::history::{EventType, Operation};
use crate::rng::Rng;
use crate::schema::{parse, AppendResult, BodyRead, DeliverArgs, Finals};

pub const NAME: &str = "bodies";

/// Characters per line of a generated message (RFC 5322's recommended limit).
const LINE_CHARS: usize = 78;

/// The message a `deliver` of `seed` and `size` sends: a header naming the seed, then printable
/// text in CRLF-terminated lines, exactly `size` bytes. The history stores only `seed`, `size` and
/// the digest; anyone can make the bytes again.
pub fn message_bytes(seed: u64, size: u64) -> Vec<u8> {
    let size = size as usize;
    let mut bytes = format!("Subject: dovetail-jepsen {seed:016x}\r\n\r\n").into_bytes();
    bytes.reserve(size.saturating_sub(bytes.len()));
    let mut rng = Rng::new(seed);
    let mut column = 0;
    while bytes.len() < size {
        for b in rng.next_u64().to_le_bytes() {
            if column == LINE_CHARS {
                bytes.extend_from_slice(b"\r\n");
                column = 0;
            } else {
                bytes.push(b' ' + b % 95);
                column += 1;
            }
        }
    }
    bytes.truncate(size);
    bytes
}

/// SHA-256 of `bytes`, 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The body id a node names for bytes of SHA-256 `sha256` (hex): its first 128 bits, in hex.
pub fn body_id(sha256: &str) -> &str {
    sha256.get(..32).unwrap_or(sha256)
}

/// A delivery to judge: where it is, and whether it was acknowledged or only landed.
struct Judged<'a> {
    op: &'a Operation<'a>,
    args: DeliverArgs,
    uid: u32,
    acknowledged: bool,
}

pub fn check(operations: &[Operation], finals: &Finals) -> CheckResult {
    let mut f = Findings::new(NAME);
    // Where each body id stands in the final records: (mailbox, body id) -> UID.
    let mut landed: HashMap<(&str, &str), u32> = HashMap::new();
    for (_, node) in finals.readable() {
        for (mailbox, final_mailbox) in &node.mailboxes {
            for record in &final_mailbox.messages {
                if let Some(id) = record.body.as_deref() {
                    landed.entry((mailbox.as_str(), id)).or_insert(record.uid);
                }
            }
        }
    }
    let mut judged: Vec<Judged> = Vec::new();
    // (mailbox, UIDVALIDITY, UID) -> the acknowledged delivery (index into `judged`).
    let mut uids: BTreeMap<(String, u32, u32), usize> = BTreeMap::new();
    for op in operations.iter().filter(|op| op.invoke.f == "deliver") {
        let args: DeliverArgs = match parse(&op.invoke.value) {
            Ok(args) => args,
            Err(e) => {
                f.unknown(format!("{}: unreadable arguments: {e}", op_label(op)));
                continue;
            }
        };
        match op.outcome() {
            EventType::Ok => {
                f.count("deliveries_ok", 1);
                f.count("bytes_acknowledged", args.size);
                let result = op.ok_value().and_then(|v| parse::<AppendResult>(v).ok());
                let Some(result) = result.filter(|r| r.first_uid == r.last_uid) else {
                    f.anomaly(
                        "malformed-delivery",
                        format!("{} was acknowledged without one UID", op_label(op)),
                        op_json(op),
                    );
                    continue;
                };
                if sha256_hex(&message_bytes(args.seed, args.size)) != args.sha256 {
                    f.anomaly(
                        "malformed-delivery",
                        format!(
                            "{}: sha256 {} is not the digest of the bytes of seed {} and size {}",
                            op_label(op),
                            args.sha256,
                            args.seed,
                            args.size
                        ),
                        op_json(op),
                    );
                    continue;
                }
                let key = (args.mailbox.clone(), result.uid_validity, result.first_uid);
                if let Some(&other) = uids.get(&key) {
                    let earlier: &Judged = &judged[other];
                    if earlier.args.sha256 != args.sha256 {
                        f.anomaly(
                            "duplicate-uid",
                            format!(
                                "UID {} of {} (UIDVALIDITY {}) was acknowledged to {} and to {}",
                                key.2,
                                key.0,
                                key.1,
                                op_label(earlier.op),
                                op_label(op)
                            ),
                            json!({"mailbox": key.0, "uid_validity": key.1, "uid": key.2,
                                   "first": op_json(earlier.op), "second": op_json(op)}),
                        );
                    }
                    continue;
                }
                uids.insert(key, judged.len());
                judged.push(Judged {
                    op,
                    uid: result.first_uid,
                    args,
                    acknowledged: true,
                });
            }
            EventType::Fail => f.count("deliveries_fail", 1),
            EventType::Info | EventType::Invoke => {
                f.count("deliveries_info", 1);
                match landed.get(&(args.mailbox.as_str(), body_id(&args.sha256))) {
                    Some(&uid) => {
                        f.count("info_landed", 1);
                        judged.push(Judged {
                            op,
                            uid,
                            args,
                            acknowledged: false,
                        });
                    }
                    None => f.count("info_unlanded", 1),
                }
            }
        }
    }
    for (name, error) in finals.unreadable() {
        f.unknown(format!("node {name} could not be read: {error}"));
    }
    for (name, node) in finals.readable() {
        let reads: HashMap<(&str, u32), &BodyRead> = node
            .bodies
            .iter()
            .flat_map(|(mailbox, reads)| reads.iter().map(move |r| ((mailbox.as_str(), r.uid), r)))
            .collect();
        for delivery in &judged {
            let (mailbox, uid) = (delivery.args.mailbox.as_str(), delivery.uid);
            let Some(read) = reads.get(&(mailbox, uid)) else {
                f.unknown(format!("node {name}: UID {uid} of {mailbox} was not read"));
                continue;
            };
            judge_read(&mut f, name, delivery, read, node.mailboxes.get(mailbox));
        }
    }
    f.finish()
}

/// Judges what node `node` served for `delivery`.
fn judge_read(
    f: &mut Findings,
    node: &str,
    delivery: &Judged,
    read: &BodyRead,
    records: Option<&crate::schema::MailboxFinal>,
) {
    f.count("reads_checked", 1);
    if read.attempts > 1 {
        f.count("reads_retried", 1);
    }
    let (mailbox, uid, expected) = (&delivery.args.mailbox, delivery.uid, &delivery.args.sha256);
    let record_body = records
        .and_then(|m| m.messages.iter().find(|r| r.uid == uid))
        .map(|r| r.body.clone());
    let detail = || {
        json!({"node": node, "mailbox": mailbox, "uid": uid, "acknowledged": delivery.acknowledged,
               "expected_sha256": expected, "size": delivery.args.size, "read": read,
               "final_record_body": record_body, "delivery": op_json(delivery.op)})
    };
    let how = if delivery.acknowledged {
        "acknowledged"
    } else {
        "indeterminate, landed"
    };
    match (read.status, read.sha256.as_deref()) {
        (Some(200), Some(served)) if served != expected => f.anomaly(
            "corrupted-body",
            format!(
                "node {node} served other bytes for UID {uid} of {mailbox} ({how} by {}): SHA-256 {served} ({} bytes), delivered {expected} ({} bytes)",
                op_label(delivery.op),
                read.size.map_or("?".into(), |s| s.to_string()),
                delivery.args.size
            ),
            detail(),
        ),
        (Some(200), Some(_)) if read.body_id.as_deref() != Some(body_id(expected)) => f.anomaly(
            "wrong-body-id",
            format!(
                "node {node} served the right bytes for UID {uid} of {mailbox} with x-dovetail-body {}, not {}",
                read.body_id.as_deref().unwrap_or("(none)"),
                body_id(expected)
            ),
            detail(),
        ),
        (Some(200), Some(_)) => f.count("reads_equal", 1),
        (Some(200), None) => f.unknown(format!(
            "node {node}: UID {uid} of {mailbox} was served but its digest not recorded"
        )),
        (Some(404 | 503), _) if delivery.acknowledged => f.anomaly(
            "lost-body",
            format!(
                "node {node} does not serve the body of UID {uid} of {mailbox}, acknowledged by {}: {} after {} reads",
                op_label(delivery.op),
                read.describe(),
                read.attempts
            ),
            detail(),
        ),
        (Some(404 | 503), _) => f.count("info_landed_unreadable", 1),
        _ => f.unknown(format!(
            "node {node}: UID {uid} of {mailbox} unreadable: {}",
            read.describe()
        )),
    }
}

#[cfg(test)]
mod tests;
