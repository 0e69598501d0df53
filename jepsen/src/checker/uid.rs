//! The `uid` checker (ARCHITECTURE.md §6 invariants 1 and 2; RFC 9051's UID rules).
//!
//! # Operations read
//! - `append`: invoke `{"mailbox", "messages": [{"guid"}]}`, ok `{"uid_validity", "first_uid",
//!   "last_uid"}`: message `i` got UID `first_uid + i`.
//! - `status`: invoke `{"mailbox", "consistency"}`, ok `{"uid_validity", "uid_next"}`.
//! - `final.json`: each node's `uid_validity`, `uid_next` and records `{uid, guid}` per mailbox.
//!
//! Any workload with appends can be checked; `f`s other than these are ignored.
//!
//! # What it concludes, per (mailbox, UIDVALIDITY)
//! - `duplicate-uid`: one UID bound to two different messages: acknowledged to two appends, or
//!   acknowledged to one message while a final read shows another there, or two nodes' final
//!   reads disagree. An `info` append that shows up in the final reads binds its UIDs too.
//! - `uid-mismatch`: an acknowledged message appears in a final read under another UID.
//! - `uid-order`: if append A completed before append B was invoked, every UID of A is below
//!   every UID of B. Likewise against linearizable status reads: an append completed before a
//!   read began is below its UIDNEXT, and an append begun after a read completed is at or above
//!   it. `info` appends constrain only through the UIDs the final reads show for them.
//! - `uid-next-decreased`: a linearizable status read that began after another completed saw a
//!   smaller UIDNEXT.
//! - `uid-above-uid-next`: a UID (acknowledged or in a final read) or an observed UIDNEXT not
//!   below a node's final UIDNEXT (every committed UID stays below UIDNEXT, invariant 2).
//! - `malformed-result`: an acknowledged append without a readable UID range for its messages.
//!
//! `local` status reads may lag and are only counted. Failed appends assert nothing.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::order::{regressions, Span};
use super::{op_json, op_label, CheckResult, Findings};
use crate::history::{EventType, Operation};
use crate::schema::{parse, AppendArgs, AppendResult, Consistency, Finals, ReadArgs, StatusResult};

pub const NAME: &str = "uid";

type MailboxKey = (String, u32);

/// Where a UID binding or a span came from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Append(&'a Operation<'a>),
    Status(&'a Operation<'a>),
    Final(&'a str),
}

impl Source<'_> {
    fn label(&self) -> String {
        match self {
            Source::Append(op) | Source::Status(op) => op_label(op),
            Source::Final(node) => format!("the final read of {node}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Source::Append(op) | Source::Status(op) => op_json(op),
            Source::Final(node) => json!({ "final_read_of": node }),
        }
    }
}

/// Everything known about one (mailbox, UIDVALIDITY).
#[derive(Default)]
struct UidSpace<'a> {
    /// The first binding seen for each UID: the message's GUID (if known) and its source.
    bindings: BTreeMap<u32, (Option<&'a str>, Source<'a>)>,
    spans: Vec<Span>,
    span_sources: Vec<Source<'a>>,
}

impl<'a> UidSpace<'a> {
    fn bind(
        &mut self,
        key: &MailboxKey,
        uid: u32,
        guid: Option<&'a str>,
        source: Source<'a>,
        f: &mut Findings,
    ) {
        let Some(&(bound_guid, bound_source)) = self.bindings.get(&uid) else {
            self.bindings.insert(uid, (guid, source));
            return;
        };
        let same_message = match (bound_guid, guid) {
            (Some(a), Some(b)) => a == b,
            // Without GUIDs only two acknowledgements are comparable: they are two messages.
            _ => !matches!((bound_source, source), (Source::Append(_), Source::Append(_))),
        };
        if !same_message {
            f.anomaly(
                "duplicate-uid",
                format!(
                    "UID {uid} of {} (UIDVALIDITY {}) is bound to message {} by {} and to message {} by {}",
                    key.0,
                    key.1,
                    bound_guid.unwrap_or("?"),
                    bound_source.label(),
                    guid.unwrap_or("?"),
                    source.label()
                ),
                json!({"mailbox": key.0, "uid_validity": key.1, "uid": uid,
                       "first": {"guid": bound_guid, "by": bound_source.json()},
                       "second": {"guid": guid, "by": source.json()}}),
            );
        }
    }

    fn span(&mut self, span: Span, source: Source<'a>) {
        self.spans.push(span);
        self.span_sources.push(source);
    }
}

pub fn check(operations: &[Operation], finals: &Finals) -> CheckResult {
    let mut f = Findings::new(NAME);
    let mut spaces: BTreeMap<MailboxKey, UidSpace> = BTreeMap::new();
    // Where the final reads put each GUID: (mailbox, UIDVALIDITY, UID), first readable node wins.
    let mut final_uid_of: HashMap<(&str, &str), (u32, u32)> = HashMap::new();
    for (_, node) in finals.readable() {
        for (mailbox, m) in &node.mailboxes {
            let Some(uid_validity) = m.uid_validity else {
                continue;
            };
            for record in &m.messages {
                if let Some(guid) = record.guid.as_deref() {
                    final_uid_of
                        .entry((mailbox.as_str(), guid))
                        .or_insert((uid_validity, record.uid));
                }
            }
        }
    }

    for op in operations {
        match op.invoke.f.as_str() {
            "append" => check_append(op, &final_uid_of, &mut spaces, &mut f),
            "status" => {
                let (Some(result), Ok(args)) = (op.ok_value(), parse::<ReadArgs>(&op.invoke.value)) else {
                    continue;
                };
                let Ok(status) = parse::<StatusResult>(result) else {
                    f.anomaly(
                        "malformed-result",
                        format!("{} answered without uid_validity and uid_next", op_label(op)),
                        op_json(op),
                    );
                    continue;
                };
                if args.consistency == Consistency::Local {
                    f.count("status_local_skipped", 1);
                    continue;
                }
                f.count("status_reads", 1);
                let uid_next = u64::from(status.uid_next);
                spaces
                    .entry((args.mailbox, status.uid_validity))
                    .or_default()
                    .span(
                        Span {
                            invoked_ns: op.invoked_ns(),
                            completed_ns: op.completed_ns(),
                            low: uid_next,
                            high: uid_next,
                        },
                        Source::Status(op),
                    );
            }
            _ => {}
        }
    }

    // The final reads: bindings, and UIDNEXT as a read after everything else.
    for (node, n) in finals.readable() {
        for (mailbox, m) in &n.mailboxes {
            let Some(uid_validity) = m.uid_validity else {
                continue;
            };
            let key = (mailbox.clone(), uid_validity);
            let space = spaces.entry(key.clone()).or_default();
            for record in &m.messages {
                space.bind(
                    &key,
                    record.uid,
                    record.guid.as_deref(),
                    Source::Final(node),
                    &mut f,
                );
                if m.uid_next.is_some_and(|next| record.uid >= next) {
                    f.anomaly(
                        "uid-above-uid-next",
                        format!(
                            "{node} holds UID {} in {mailbox} but its UIDNEXT is {:?}",
                            record.uid, m.uid_next
                        ),
                        json!({"node": node, "mailbox": mailbox, "uid": record.uid, "uid_next": m.uid_next}),
                    );
                }
            }
            if let Some(next) = m.uid_next {
                let next = u64::from(next);
                let span = Span {
                    invoked_ns: u64::MAX,
                    completed_ns: None,
                    low: next,
                    high: next,
                };
                space.span(span, Source::Final(node));
            }
        }
    }
    for (node, error) in finals.unreadable() {
        f.unknown(format!(
            "the final read of {node} failed ({error}): its UIDs are unchecked"
        ));
    }

    for (key, space) in &spaces {
        f.count("uids_bound", space.bindings.len() as u64);
        for (earlier, later) in regressions(&space.spans) {
            report_regression(key, space, earlier, later, &mut f);
        }
    }
    f.finish()
}

fn check_append<'a>(
    op: &'a Operation<'a>,
    final_uid_of: &HashMap<(&str, &str), (u32, u32)>,
    spaces: &mut BTreeMap<MailboxKey, UidSpace<'a>>,
    f: &mut Findings,
) {
    let Ok(args) = parse::<AppendArgs>(&op.invoke.value) else {
        f.unknown(format!(
            "{}: unreadable arguments {}",
            op_label(op),
            op.invoke.value
        ));
        return;
    };
    let args_guids = || op.invoke.value["messages"].as_array().into_iter().flatten();
    match op.outcome() {
        EventType::Ok => {
            f.count("appends_ok", 1);
            let result = op.ok_value().and_then(|v| parse::<AppendResult>(v).ok());
            let Some(r) = result.filter(|r| {
                r.first_uid <= r.last_uid && (r.last_uid - r.first_uid) as usize + 1 == args.messages.len()
            }) else {
                f.anomaly(
                    "malformed-result",
                    format!(
                        "{} was acknowledged without one UID per message ({} messages)",
                        op_label(op),
                        args.messages.len()
                    ),
                    op_json(op),
                );
                return;
            };
            let key = (args.mailbox.clone(), r.uid_validity);
            let space = spaces.entry(key.clone()).or_default();
            for (i, message) in args_guids().enumerate() {
                let uid = r.first_uid + i as u32;
                let guid = message["guid"].as_str();
                space.bind(&key, uid, guid, Source::Append(op), f);
                let seen = guid.and_then(|g| final_uid_of.get(&(args.mailbox.as_str(), g)));
                if let Some(&(uid_validity, final_uid)) = seen {
                    if uid_validity == r.uid_validity && final_uid != uid {
                        f.anomaly(
                            "uid-mismatch",
                            format!(
                                "{} acknowledged message {} as UID {uid}; the final read shows it as UID {final_uid}",
                                op_label(op),
                                guid.unwrap_or("?")
                            ),
                            json!({"op": op_json(op), "guid": guid, "acknowledged_uid": uid, "final_uid": final_uid}),
                        );
                    }
                }
            }
            let span = Span {
                invoked_ns: op.invoked_ns(),
                completed_ns: op.completed_ns(),
                low: u64::from(r.first_uid),
                high: u64::from(r.last_uid) + 1,
            };
            space.span(span, Source::Append(op));
        }
        EventType::Fail => f.count("appends_failed", 1),
        _ => {
            f.count("appends_info", 1);
            // Uncertain: only the UIDs the final reads show for its messages count.
            let mut seen: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for message in &args.messages {
                if let Some(&(uid_validity, uid)) = final_uid_of.get(&(args.mailbox.as_str(), &message.guid))
                {
                    seen.entry(uid_validity).or_default().push(uid);
                }
            }
            for (uid_validity, uids) in seen {
                f.count("appends_info_observed", 1);
                let (low, high) = (uids.iter().min(), uids.iter().max());
                let span = Span {
                    invoked_ns: op.invoked_ns(),
                    completed_ns: None,
                    low: u64::from(*low.expect("non-empty")),
                    high: u64::from(*high.expect("non-empty")) + 1,
                };
                spaces
                    .entry((args.mailbox.clone(), uid_validity))
                    .or_default()
                    .span(span, Source::Append(op));
            }
        }
    }
}

fn report_regression(key: &MailboxKey, space: &UidSpace, earlier: usize, later: usize, f: &mut Findings) {
    let (a, b) = (space.span_sources[earlier], space.span_sources[later]);
    let (sa, sb) = (space.spans[earlier], space.spans[later]);
    let describe = |source: &Source, span: &Span| match source {
        Source::Append(_) => format!("UIDs {}..={}", span.low, span.high - 1),
        Source::Status(_) | Source::Final(_) => format!("UIDNEXT {}", span.low),
    };
    let kind = match (a, b) {
        (_, Source::Final(_)) => "uid-above-uid-next",
        (Source::Status(_), Source::Status(_)) => "uid-next-decreased",
        _ => "uid-order",
    };
    f.anomaly(
        kind,
        format!(
            "{} (UIDVALIDITY {}): {} got {} and completed before {} began, which got {}",
            key.0,
            key.1,
            a.label(),
            describe(&a, &sa),
            b.label(),
            describe(&b, &sb)
        ),
        json!({"mailbox": key.0, "uid_validity": key.1,
               "earlier": {"low": sa.low, "high": sa.high, "by": a.json()},
               "later": {"low": sb.low, "high": sb.high, "by": b.json()}}),
    );
}

#[cfg(test)]
mod tests;
