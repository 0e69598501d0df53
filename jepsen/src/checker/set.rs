//! The `set` checker: Jepsen's set-full over appended message GUIDs, per mailbox.
//!
//! # Operations read
//! - `append`: invoke `{"mailbox", "messages": [{"guid"}]}`; `ok`, `fail` or `info`.
//! - `read`: invoke `{"mailbox", "consistency"}`, ok `{"messages": [{"guid", ..}]}`: the whole
//!   mailbox in one fetch.
//! - `final.json`: every node's `messages` per mailbox.
//!
//! # What it concludes, per GUID
//! An element is *known* from the completion of its acknowledged append, or, for an `info`
//! append, from the completion of the first read that shows it. Only linearizable reads that
//! began strictly after that moment judge it (a `local` read may lag):
//! - `lost`: known, but absent from some node's final read (or, without final reads, from the
//!   last read).
//! - `stale`: not lost, but a linearizable read that began after it was known misses it. An
//!   anomaly unless [`SetOptions::linearizable_reads_must_not_be_stale`] is off, then only counted.
//! - `duplicate`: a GUID twice in one read or one final read.
//! - `unexpected`: a read shows a GUID never appended, or one whose append certainly failed.
//! - `final-divergence`: two nodes' final reads of a mailbox hold different sets.
//!
//! Counted, not anomalies: `never_read` (acknowledged, no read after it was known; the final reads
//! still judge it), `info_unobserved` (uncertain and never seen: may never have happened).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::{json, Value};

use super::{op_json, op_label, op_ref, CheckResult, Findings};
use crate::history::{EventType, Operation};
use crate::schema::Finals;

pub const NAME: &str = "set";

/// How strict the checker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOptions {
    /// A linearizable read must show every element acknowledged before it began.
    pub linearizable_reads_must_not_be_stale: bool,
}

impl Default for SetOptions {
    fn default() -> SetOptions {
        SetOptions {
            linearizable_reads_must_not_be_stale: true,
        }
    }
}

const NONE: u32 = u32::MAX;

/// One appended GUID and what the reads showed of it, gathered in one pass over the reads in
/// invocation order (so the checker needs memory for the elements, not for the reads).
struct Element<'a> {
    guid: &'a str,
    append: &'a Operation<'a>,
    /// `append.outcome()`, kept here: the pass over the reads looks at it for every entry.
    outcome: EventType,
    /// When it became known: its append's completion if acknowledged, else the earliest
    /// completion of a read (of any consistency) that showed it; `u64::MAX` until then.
    known_ns: u64,
    /// Linearizable reads (numbered in invocation order) that began after `known_ns`: the first
    /// of them, how many showed the element, the last that did, and the first that did not.
    first_after: u32,
    present_after: u32,
    last_present: u32,
    first_absent: u32,
    /// While no read after `known_ns` missed it: the number of the next linearizable read.
    next_expected: u32,
    /// The last read (numbered by `resolve`) that showed it: finds duplicates in a read.
    last_seen_by: u32,
}

/// A fast hash for the GUID index (the input is the run's own history, not an adversary's).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct Mailbox<'a> {
    index: HashMap<&'a str, u32, BuildHasherDefault<FxHasher>>,
    elements: Vec<Element<'a>>,
    /// Reads of any consistency, sorted by invocation before the pass.
    reads: Vec<(&'a Operation<'a>, bool)>,
    /// The linearizable reads in invocation order, and their invocation times.
    linearizable: Vec<&'a Operation<'a>>,
    linearizable_invoked_ns: Vec<u64>,
    resolved: u32,
}

/// What showed a set of GUIDs: a read, or a node's final read.
#[derive(Debug, Clone, Copy)]
enum Seen<'a> {
    Read(&'a Operation<'a>),
    Final(&'a str),
}

impl Seen<'_> {
    fn label(&self) -> String {
        match self {
            Seen::Read(op) => op_label(op),
            Seen::Final(node) => format!("the final read of {node}"),
        }
    }

    fn json(&self) -> Value {
        match self {
            Seen::Read(op) => op_ref(op),
            Seen::Final(node) => json!({ "final_read_of": node }),
        }
    }
}

/// The GUIDs of a fetch answer, in order.
fn guids_of(value: &Value) -> impl Iterator<Item = &str> {
    value["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["guid"].as_str())
}

pub fn check(operations: &[Operation], finals: &Finals, options: SetOptions) -> CheckResult {
    let mut f = Findings::new(NAME);
    let mut mailboxes: BTreeMap<&str, Mailbox> = BTreeMap::new();
    for op in operations.iter().filter(|op| op.invoke.f == "append") {
        let (Some(mailbox), Some(messages)) = (
            op.invoke.value["mailbox"].as_str(),
            op.invoke.value["messages"].as_array(),
        ) else {
            f.unknown(format!(
                "{}: unreadable arguments {}",
                op_label(op),
                op.invoke.value
            ));
            continue;
        };
        let m = mailboxes.entry(mailbox).or_default();
        for guid in messages.iter().filter_map(|m| m["guid"].as_str()) {
            if m.index.contains_key(guid) {
                f.unknown(format!(
                    "GUID {guid} was appended twice: the runner must use unique GUIDs"
                ));
                continue;
            }
            m.index.insert(guid, m.elements.len() as u32);
            m.elements.push(Element {
                guid,
                append: op,
                outcome: op.outcome(),
                known_ns: if op.outcome() == EventType::Ok {
                    op.completed_ns().expect("ok")
                } else {
                    u64::MAX
                },
                first_after: NONE,
                present_after: 0,
                last_present: NONE,
                first_absent: NONE,
                next_expected: NONE,
                last_seen_by: 0,
            });
        }
    }
    for op in operations
        .iter()
        .filter(|op| op.invoke.f == "read" && op.ok_value().is_some())
    {
        let Some(mailbox) = op.invoke.value["mailbox"].as_str() else {
            f.unknown(format!(
                "{}: unreadable arguments {}",
                op_label(op),
                op.invoke.value
            ));
            continue;
        };
        let linearizable = op.invoke.value["consistency"].as_str() != Some("local");
        f.count(
            if linearizable {
                "reads_linearizable"
            } else {
                "reads_local"
            },
            1,
        );
        mailboxes
            .entry(mailbox)
            .or_default()
            .reads
            .push((op, linearizable));
    }
    for (node, error) in finals.unreadable() {
        f.unknown(format!("the final read of {node} failed ({error})"));
    }
    if finals.nodes.is_empty() {
        f.unknown("no final reads: lost elements can only be judged by the last read".into());
    }
    // Each mailbox is judged on its own and dropped before the next (the workloads rotate to
    // fresh mailboxes on long runs, so no one mailbox grows without bound).
    for (name, mut m) in mailboxes {
        let m = &mut m;
        m.reads.sort_by_key(|(op, _)| op.invoked_ns());
        for &(op, linearizable) in &m.reads {
            if linearizable {
                m.linearizable.push(op);
                m.linearizable_invoked_ns.push(op.invoked_ns());
            }
        }
        m.observe_reads(&mut f);
        let mut final_sets: Vec<(&str, HashSet<u32>)> = Vec::new();
        for (node, n) in finals.readable() {
            let records = n.mailboxes.get(name).map_or(&[][..], |mb| &mb.messages[..]);
            let guids = records.iter().filter_map(|r| r.guid.as_deref());
            final_sets.push((node, m.final_set(guids, node, &mut f)));
        }
        judge_elements(name, m, &final_sets, options, &mut f);
        compare_finals(name, m, &final_sets, &mut f);
    }
    f.finish()
}

impl<'a> Mailbox<'a> {
    /// The one pass over the reads. An element's `known_ns` can only still drop while reads that
    /// began before it are processed (the read that shows it first completes after it began), so
    /// "began after known" is decided correctly as the pass goes.
    fn observe_reads(&mut self, f: &mut Findings) {
        let reads = std::mem::take(&mut self.reads);
        let mut number = 0u32;
        for &(op, linearizable) in &reads {
            let invoked_ns = op.invoked_ns();
            let completed_ns = op.completed_ns().unwrap_or(u64::MAX);
            let this = linearizable.then_some(number);
            number += u32::from(linearizable);
            let result = op.ok_value().expect("only ok reads are kept");
            let invokes = &self.linearizable_invoked_ns;
            let elements = &mut self.elements;
            self.resolved += 1;
            resolve_into(
                &self.index,
                elements,
                self.resolved,
                guids_of(result),
                Seen::Read(op),
                f,
                |_, element| {
                    if element.outcome != EventType::Ok {
                        element.known_ns = element.known_ns.min(completed_ns);
                    }
                    let Some(r) = this.filter(|_| invoked_ns > element.known_ns) else {
                        return;
                    };
                    if element.first_after == NONE {
                        element.first_after = invokes.partition_point(|&t| t <= element.known_ns) as u32;
                        element.next_expected = element.first_after;
                    }
                    if r != element.next_expected && element.first_absent == NONE {
                        element.first_absent = element.next_expected;
                    }
                    element.next_expected = r + 1;
                    element.present_after += 1;
                    element.last_present = r;
                },
            );
        }
        self.reads = reads;
    }

    /// The elements a node's final read shows.
    fn final_set<'g>(
        &mut self,
        guids: impl Iterator<Item = &'g str>,
        node: &str,
        f: &mut Findings,
    ) -> HashSet<u32> {
        let mut set = HashSet::new();
        self.resolved += 1;
        resolve_into(
            &self.index,
            &mut self.elements,
            self.resolved,
            guids,
            Seen::Final(node),
            f,
            |e, _| {
                set.insert(e);
            },
        );
        set
    }
}

/// Resolves each GUID to its element and hands it to `each`, once per read.
fn resolve_into<'a, 'g>(
    index: &HashMap<&'a str, u32, BuildHasherDefault<FxHasher>>,
    elements: &mut [Element<'a>],
    read_number: u32,
    guids: impl Iterator<Item = &'g str>,
    seen_by: Seen,
    f: &mut Findings,
    mut each: impl FnMut(u32, &mut Element<'a>),
) {
    for guid in guids {
        let Some(&e) = index.get(guid) else {
            f.anomaly(
                "unexpected",
                format!("{} shows {guid}, which was never appended", seen_by.label()),
                json!({"guid": guid, "read": seen_by.json()}),
            );
            continue;
        };
        let element = &mut elements[e as usize];
        if std::mem::replace(&mut element.last_seen_by, read_number) == read_number {
            f.anomaly(
                "duplicate",
                format!("{} shows {guid} twice", seen_by.label()),
                json!({"guid": guid, "read": seen_by.json()}),
            );
            continue;
        }
        if element.outcome == EventType::Fail {
            f.anomaly(
                "unexpected",
                format!(
                    "{} shows {guid}, whose {} certainly failed",
                    seen_by.label(),
                    op_label(element.append)
                ),
                json!({"guid": guid, "read": seen_by.json(), "append": op_json(element.append)}),
            );
        }
        each(e, element);
    }
}

fn judge_elements(
    mailbox: &str,
    m: &Mailbox,
    final_sets: &[(&str, HashSet<u32>)],
    options: SetOptions,
    f: &mut Findings,
) {
    let reads = m.linearizable.len() as u32;
    for (e, element) in m.elements.iter().enumerate() {
        let in_finals = final_sets.iter().any(|(_, set)| set.contains(&(e as u32)));
        match element.outcome {
            EventType::Fail => continue,
            EventType::Ok => {}
            _ if element.known_ns == u64::MAX && !in_finals => {
                f.count("info_unobserved", 1);
                continue;
            }
            _ => {}
        }
        f.count("elements_known", 1);
        let first_after = match element.first_after {
            NONE => m
                .linearizable_invoked_ns
                .partition_point(|&t| t <= element.known_ns) as u32,
            first => first,
        };
        let after = reads - first_after;
        let missing_nodes: Vec<&str> = final_sets
            .iter()
            .filter(|(_, set)| !set.contains(&(e as u32)))
            .map(|(node, _)| *node)
            .collect();
        let lost = if final_sets.is_empty() {
            after > 0 && element.last_present != reads - 1
        } else {
            !missing_nodes.is_empty()
        };
        let detail = |extra: Value| json!({"mailbox": mailbox, "guid": element.guid, "append": op_json(element.append), "evidence": extra});
        if lost {
            f.count("lost", 1);
            let evidence = if final_sets.is_empty() {
                format!(
                    "absent from the last read, {}",
                    op_label(m.linearizable[reads as usize - 1])
                )
            } else {
                format!("absent from the final reads of {}", missing_nodes.join(", "))
            };
            f.anomaly(
                "lost",
                format!(
                    "{} of {} in {mailbox} is {evidence}",
                    element.guid,
                    op_label(element.append)
                ),
                detail(json!({ "missing_on": missing_nodes })),
            );
        } else if element.present_after < after {
            f.count("stale", 1);
            let absent = match element.first_absent {
                NONE => first_after + element.present_after,
                first => first,
            };
            let read = m.linearizable[absent as usize];
            if options.linearizable_reads_must_not_be_stale {
                f.anomaly(
                    "stale",
                    format!(
                        "{} of {} in {mailbox} is missing from the linearizable {}, which began after it was known",
                        element.guid,
                        op_label(element.append),
                        op_label(read)
                    ),
                    detail(json!({ "stale_read": op_ref(read), "known_ns": element.known_ns })),
                );
            }
        } else if after == 0 && !in_finals {
            f.count("never_read", 1);
        } else {
            f.count("stable", 1);
        }
    }
}

fn compare_finals(mailbox: &str, m: &Mailbox, final_sets: &[(&str, HashSet<u32>)], f: &mut Findings) {
    let Some((first_node, first_set)) = final_sets.first() else {
        return;
    };
    for (node, set) in &final_sets[1..] {
        if set == first_set {
            continue;
        }
        let sample = |a: &HashSet<u32>, b: &HashSet<u32>| -> Vec<&str> {
            let mut only: Vec<&str> = a.difference(b).map(|&e| m.elements[e as usize].guid).collect();
            only.sort_unstable();
            only.truncate(10);
            only
        };
        f.anomaly(
            "final-divergence",
            format!(
                "the final reads of {mailbox} on {first_node} ({} messages) and {node} ({}) differ",
                first_set.len(),
                set.len()
            ),
            json!({"mailbox": mailbox, "nodes": [first_node, node],
                   "only_on_first": sample(first_set, set), "only_on_second": sample(set, first_set)}),
        );
    }
}

#[cfg(test)]
mod tests;
