//! Checkers: each decides one property of a history and explains every violation it finds.
//!
//! Every checker is pure: it takes the paired history ([`Operation`]s), the typed final reads
//! ([`crate::schema::Finals`]) or a report, and returns a [`CheckResult`]. None reads files.
//!
//! - [`uid`]: UIDs are unique per (mailbox, UIDVALIDITY), increase in real-time order, stay below
//!   UIDNEXT; UIDNEXT seen by linearizable reads never goes down.
//! - [`set`]: set-full over appended message GUIDs: nothing acknowledged is lost, linearizable
//!   reads are not stale, no duplicates, every node ends with the same set.
//! - [`flags`]: each message's flags are a linearizable register with an UNCHANGEDSINCE
//!   compare-and-set, checked by a Wing–Gong–Lowe search ([`wgl`]) per message.
//! - [`list`]: a mailbox is the list of its UIDs; every read is a prefix of the final list, and
//!   linearizable reads never shrink in real-time order.
//! - [`bodies`]: every acknowledged delivery's body is served by every node at the end with the
//!   delivered bytes (SHA-256) and id: no lost body, no corrupted one.
//! - [`replicas`]: the cluster's own verify report (or per-node digests) is clean.
//! - [`logs`]: no node log shows a panic.
//! - [`wellformed`]: the history itself is one the checkers can judge.
//!
//! Shared pieces: [`order`] finds real-time regressions in O(n log n); [`wgl`] is the generic
//! linearizability search.

pub mod bodies;
pub mod flags;
pub mod list;
pub mod logs;
pub mod order;
pub mod replicas;
pub mod set;
pub mod uid;
pub mod wellformed;
pub mod wgl;

#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::history::Operation;

/// Anomalies kept per kind; the rest are only counted (`anomaly_counts`), so a badly broken run
/// still yields a readable `results.json`.
pub const MAX_ANOMALIES_PER_KIND: usize = 100;

/// Jepsen's three-valued verdict: serialized as `true`, `false` or `"unknown"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The history is explained by the property.
    True,
    /// At least one anomaly proves the property broken.
    False,
    /// The checker could not decide (search budget spent, a final read missing, a malformed
    /// history). Not a pass.
    Unknown,
}

impl Validity {
    /// The verdict of two checks together: any `False` wins, then any `Unknown`.
    pub fn and(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::False, _) | (_, Validity::False) => Validity::False,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::True,
        }
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::True => serializer.serialize_bool(true),
            Validity::False => serializer.serialize_bool(false),
            Validity::Unknown => serializer.serialize_str("unknown"),
        }
    }
}

/// One violation: a kind to group by, a sentence naming the operations, and the same facts as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// Short kebab-case name, e.g. `duplicate-uid`, `lost`, `nonlinearizable`.
    pub kind: &'static str,
    pub message: String,
    pub detail: Value,
}

/// A checker's verdict, serialized as one entry of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub checker: &'static str,
    /// Invariant: `False` iff `anomaly_counts` is non-empty; otherwise `Unknown` iff `unknown` is
    /// non-empty.
    pub valid: Validity,
    /// At most [`MAX_ANOMALIES_PER_KIND`] per kind.
    pub anomalies: Vec<Anomaly>,
    /// Every anomaly counted by kind, including those left out of `anomalies`.
    pub anomaly_counts: BTreeMap<&'static str, u64>,
    /// Why the verdict could not be decided, when it could not.
    pub unknown: Vec<String>,
    /// What was examined (operations, keys, reads, search steps, ...).
    pub stats: BTreeMap<&'static str, u64>,
}

impl CheckResult {
    /// The anomalies of one kind (tests and reports).
    pub fn of_kind(&self, kind: &str) -> Vec<&Anomaly> {
        self.anomalies.iter().filter(|a| a.kind == kind).collect()
    }
}

/// Collects a checker's findings and turns them into a [`CheckResult`] whose verdict follows
/// from them, so no checker can report anomalies and still say `valid`.
#[derive(Debug)]
pub struct Findings {
    checker: &'static str,
    anomalies: Vec<Anomaly>,
    anomaly_counts: BTreeMap<&'static str, u64>,
    unknown: Vec<String>,
    stats: BTreeMap<&'static str, u64>,
}

impl Findings {
    pub fn new(checker: &'static str) -> Findings {
        Findings {
            checker,
            anomalies: Vec::new(),
            anomaly_counts: BTreeMap::new(),
            unknown: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    pub fn anomaly(&mut self, kind: &'static str, message: String, detail: Value) {
        let count = self.anomaly_counts.entry(kind).or_insert(0);
        *count += 1;
        if *count as usize <= MAX_ANOMALIES_PER_KIND {
            self.anomalies.push(Anomaly {
                kind,
                message,
                detail,
            });
        }
    }

    /// Records why the verdict cannot be `True` even without anomalies.
    pub fn unknown(&mut self, reason: String) {
        if self.unknown.len() < MAX_ANOMALIES_PER_KIND {
            self.unknown.push(reason);
        }
    }

    pub fn count(&mut self, stat: &'static str, n: u64) {
        *self.stats.entry(stat).or_insert(0) += n;
    }

    pub fn finish(self) -> CheckResult {
        let valid = if !self.anomaly_counts.is_empty() {
            Validity::False
        } else if !self.unknown.is_empty() {
            Validity::Unknown
        } else {
            Validity::True
        };
        CheckResult {
            checker: self.checker,
            valid,
            anomalies: self.anomalies,
            anomaly_counts: self.anomaly_counts,
            unknown: self.unknown,
            stats: self.stats,
        }
    }
}

/// An operation as anomalies cite it: who, where, when, with what arguments and result.
pub fn op_json(op: &Operation) -> Value {
    let complete = op.complete.as_ref();
    json!({
        "process": op.invoke.process,
        "node": op.invoke.node,
        "f": op.invoke.f,
        "invoke_ns": op.invoke.time_ns,
        "complete_ns": complete.map(|c| c.time_ns),
        "type": op.outcome(),
        "args": op.invoke.value,
        "result": complete.map(|c| &c.value),
    })
}

/// An operation cited without its result: for reads whose answer is a whole mailbox.
pub fn op_ref(op: &Operation) -> Value {
    json!({
        "process": op.invoke.process,
        "node": op.invoke.node,
        "f": op.invoke.f,
        "invoke_ns": op.invoke.time_ns,
        "complete_ns": op.complete.as_ref().map(|c| c.time_ns),
        "type": op.outcome(),
        "args": op.invoke.value,
    })
}

/// The same, as a phrase for messages: `append by process 3 [10..20 ns]`.
pub fn op_label(op: &Operation) -> String {
    match op.completed_ns() {
        Some(done) => format!(
            "{} by process {} [{}..{} ns]",
            op.invoke.f, op.invoke.process, op.invoke.time_ns, done
        ),
        None => format!(
            "{} by process {} [{} ns..?, {:?}]",
            op.invoke.f,
            op.invoke.process,
            op.invoke.time_ns,
            op.outcome()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_serializes_as_jepsen_does_and_combines() {
        assert_eq!(serde_json::to_string(&Validity::True).unwrap(), "true");
        assert_eq!(serde_json::to_string(&Validity::False).unwrap(), "false");
        assert_eq!(serde_json::to_string(&Validity::Unknown).unwrap(), "\"unknown\"");
        assert_eq!(Validity::True.and(Validity::Unknown), Validity::Unknown);
        assert_eq!(Validity::Unknown.and(Validity::False), Validity::False);
        assert_eq!(Validity::True.and(Validity::True), Validity::True);
    }

    #[test]
    fn findings_cap_listed_anomalies_but_count_all_and_decide_the_verdict() {
        let mut f = Findings::new("t");
        f.unknown("budget".into());
        assert_eq!(Findings::new("t").finish().valid, Validity::True);
        for i in 0..(MAX_ANOMALIES_PER_KIND + 5) {
            f.anomaly("lost", format!("{i}"), Value::Null);
        }
        let r = f.finish();
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.anomalies.len(), MAX_ANOMALIES_PER_KIND);
        assert_eq!(r.anomaly_counts["lost"], MAX_ANOMALIES_PER_KIND as u64 + 5);
        let mut u = Findings::new("t");
        u.unknown("node n3 unreadable".into());
        assert_eq!(u.finish().valid, Validity::Unknown);
        let json = serde_json::to_value(Findings::new("t").finish()).unwrap();
        assert_eq!(json["valid"], true);
        assert_eq!(json["checker"], "t");
    }
}
