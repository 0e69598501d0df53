//! The history of a test run: one event per invocation and per completion, as Jepsen records it.
//! Stored as JSON lines (`history.jsonl`), one [`Event`] per line:
//!
//! ```json
//! {"time_ns":1200,"process":3,"node":"n2","type":"invoke","f":"append","value":{"mailbox":"u3/INBOX","messages":[{"guid":"g-3-17"}]}}
//! {"time_ns":9800,"process":3,"node":"n2","type":"ok","f":"append","value":{"uid_validity":7,"first_uid":12,"last_uid":12,"modseq":40,"group":5,"token":88}}
//! ```
//!
//! # Rules for the runner
//! - `time_ns` is monotonic (one clock for the whole run); events are written in time order.
//! - One operation at a time per `process`. An operation that times out or whose answer is lost is
//!   completed as `info` (it may still take effect later) and its process is retired: the next
//!   operation of that client gets a fresh process number. `fail` means *certainly not applied*:
//!   use it only for definite refusals (4xx answers; never for 503, which may apply later).
//! - Operation A *precedes* B iff A completed (`ok` or `fail`) strictly before B was invoked.
//! - The completion repeats the invocation's `f`. Invoke `value` = arguments, `ok` value = the
//!   server's JSON answer body **as is** (extra fields such as `group`, `token`, `applied` are
//!   ignored), `fail` value = `{"error": "<code>"}` with the server's error code, `info` value =
//!   `{"error": "<what happened>"}` (ignored).
//! - `mailbox` is `"<user>/<mailbox name>"`, opaque to the checkers. `consistency` is the read's
//!   `consistency` parameter, `"linearizable"` (the default when absent) or `"local"`.
//! - GUIDs are unique across the whole run (never appended twice).
//!
//! # Operations per workload
//! Types are in [`crate::schema`]; the checker of each workload documents what it concludes.
//!
//! | workload | `f` | invoke `value` | `ok` value (server body) |
//! | --- | --- | --- | --- |
//! | all but `flags` | `append` | `{"mailbox", "messages": [{"guid"}]}` | `{"uid_validity", "first_uid", "last_uid", "modseq"}` |
//! | `uid` | `status` | `{"mailbox", "consistency"}` | `{"uid_validity", "uid_next", "exists", "highest_modseq"}` |
//! | `set`, `list` | `read` | `{"mailbox", "consistency"}` | `{"messages": [{"uid", "guid"}]}`: the whole mailbox, one request |
//! | `flags` | `append` | `{"mailbox", "messages": [{"guid", "flags": [..]}]}` | as above |
//! | `flags` | `read` | `{"mailbox", "uids": [..], "consistency"}` | `{"messages": [{"uid", "flags", "modseq"}]}` |
//! | `flags` | `write` | `{"mailbox", "uid", "flags": [..]}` (STORE replace) | `{"modseq": m or null, "changed", "modified"}` |
//! | `flags` | `cas` | `{"mailbox", "uid", "flags": [..], "unchanged_since": M}` | as `write`; 409 → `fail` `{"error": "condition_failed"}` |
//! | `bodies` | `deliver` | `{"mailbox", "seed", "size", "sha256", "client_id", "request_seq"}` | the append answer (`first_uid == last_uid`) plus `"sha256"` |
//!
//! A set/list `read` fetches with `first=1&limit=10000` in one request (pagination would not be
//! one snapshot); the workload keeps every mailbox below 10 000 messages. A flags `read` fetches
//! `first=min(uids)&last=max(uids)`; records outside `uids` are ignored, and a UID of `uids` that
//! the answer lacks is read as "no such message".
//!
//! A `deliver` sends the bytes [`crate::checker::bodies::message_bytes`]`(seed, size)` (the history
//! keeps their SHA-256, never the bytes) with `content-type: message/rfc822` and the client
//! session `client_id`/`request_seq`; one without an answer is sent again, the same request,
//! through the next nodes before the operation is given up as `info`.
//!
//! `final.json` holds what every node reads after the cluster is healed and quiet
//! ([`crate::schema::Finals`]): `{"nodes": {"n1": {"mailboxes": {"u3/INBOX": {"uid_validity",
//! "uid_next", "highest_modseq", "messages": [{"uid", "guid", "flags", "modseq"}]}}}}, "verify":
//! <POST /admin/verify answer>}`. A node that could not be read is `{"error": "..."}`. Final
//! reads use `consistency=local` on each node, after all nodes report the same applied index.
//! The `bodies` workload adds, per node, `"bodies": {"u1/INBOX": [{"uid", "status", "sha256",
//! "size", "body_id", "error", "attempts"}]}`: what the node served for the body of every message
//! some final read or acknowledgement names ([`crate::schema::BodyRead`]).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A client started an operation.
    Invoke,
    /// The operation took effect.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect (a timeout). The process is retired.
    Info,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic nanoseconds since the run started.
    pub time_ns: u64,
    /// The logical client process; one operation at a time per process.
    pub process: u64,
    /// The node the client talked to.
    pub node: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation's name (`append`, `read`, ...).
    pub f: String,
    /// Arguments on invoke, results on completion.
    pub value: serde_json::Value,
}

/// An invocation and its completion (`None` if the run ended first), borrowed from the history's
/// events so that pairing a long history copies nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operation<'e> {
    pub invoke: &'e Event,
    pub complete: Option<&'e Event>,
}

impl<'e> Operation<'e> {
    /// The completion type; an operation with no completion is as uncertain as `info`.
    pub fn outcome(&self) -> EventType {
        self.complete.map_or(EventType::Info, |c| c.kind)
    }

    pub fn invoked_ns(&self) -> u64 {
        self.invoke.time_ns
    }

    /// When the operation certainly ended: `Some` only for `ok` and `fail`. An `info` operation
    /// may take effect at any time after its invocation, so it precedes nothing.
    pub fn completed_ns(&self) -> Option<u64> {
        self.complete
            .filter(|c| matches!(c.kind, EventType::Ok | EventType::Fail))
            .map(|c| c.time_ns)
    }

    /// The `ok` result, if the operation succeeded.
    pub fn ok_value(&self) -> Option<&'e serde_json::Value> {
        self.complete
            .filter(|c| c.kind == EventType::Ok)
            .map(|c| &c.value)
    }

    /// True iff this operation completed before `later` was invoked (real-time order).
    pub fn precedes(&self, later: &Operation) -> bool {
        self.completed_ns().is_some_and(|done| done < later.invoked_ns())
    }
}

/// Errors reading or pairing a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history line {line}: {source}")]
    Parse { line: usize, source: serde_json::Error },
    #[error("history I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("event {index}: process {process} completes an operation it never invoked")]
    UnmatchedCompletion { index: usize, process: u64 },
    #[error("event {index}: process {process} invokes while its previous operation is open")]
    OverlappingInvoke { index: usize, process: u64 },
}

pub fn write_jsonl(events: &[Event], out: &mut impl Write) -> std::io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn read_jsonl(input: impl BufRead) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        events
            .push(serde_json::from_str(&line).map_err(|source| HistoryError::Parse { line: i + 1, source })?);
    }
    Ok(events)
}

/// Pairs each invocation with its process's next completion, in invocation order.
pub fn pair(events: &[Event]) -> Result<Vec<Operation<'_>>, HistoryError> {
    let mut open: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut operations: Vec<Operation> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match event.kind {
            EventType::Invoke => {
                if open.contains_key(&event.process) {
                    return Err(HistoryError::OverlappingInvoke {
                        index,
                        process: event.process,
                    });
                }
                open.insert(event.process, operations.len());
                operations.push(Operation {
                    invoke: event,
                    complete: None,
                });
            }
            _ => {
                let at = open
                    .remove(&event.process)
                    .ok_or(HistoryError::UnmatchedCompletion {
                        index,
                        process: event.process,
                    })?;
                operations[at].complete = Some(event);
            }
        }
    }
    Ok(operations)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn event(time_ns: u64, process: u64, kind: EventType, f: &str, value: serde_json::Value) -> Event {
        Event {
            time_ns,
            process,
            node: "n1".into(),
            kind,
            f: f.into(),
            value,
        }
    }

    #[test]
    fn jsonl_round_trip_and_pairing() {
        let events = vec![
            event(1, 0, EventType::Invoke, "append", serde_json::json!({})),
            event(2, 1, EventType::Invoke, "append", serde_json::json!({})),
            event(3, 0, EventType::Ok, "append", serde_json::json!({"uids": [1]})),
        ];
        let mut buf = Vec::new();
        write_jsonl(&events, &mut buf).unwrap();
        let back = read_jsonl(buf.as_slice()).unwrap();
        assert_eq!(back, events);
        let ops = pair(&back).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].outcome(), EventType::Ok);
        assert_eq!(ops[1].outcome(), EventType::Info);
        let bad = vec![event(1, 5, EventType::Ok, "append", serde_json::json!({}))];
        assert!(matches!(
            pair(&bad),
            Err(HistoryError::UnmatchedCompletion { .. })
        ));
    }
}
