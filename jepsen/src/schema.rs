//! The JSON shapes of event values, of `final.json` and of `nemesis.jsonl` lines: the contract
//! between the runner, which writes them, and the checkers and the report, which read them. The
//! table of operations per workload is in [`crate::history`].
//!
//! Every type ignores unknown fields, so the runner may store a server answer body whole. Field
//! names are the server's (README "Client API").

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Reads a typed value out of an event value without copying it.
pub fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

/// A read's `consistency` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Read index from the leader, then a local read: must reflect every write completed before
    /// the read began.
    #[default]
    Linearizable,
    /// The node's index as it is: may lag, never checked for staleness.
    Local,
}

/// `append` invoke value: `{"mailbox", "messages": [{"guid", "flags"?}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendArgs {
    pub mailbox: String,
    pub messages: Vec<NewMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Unique across the run.
    pub guid: String,
    /// Initial flags (`flags` workload); absent means none.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// `append` ok value (the server's answer): UIDs `first_uid..=last_uid`, in the order of `messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendResult {
    pub uid_validity: u32,
    pub first_uid: u32,
    pub last_uid: u32,
    /// The MODSEQ of the new records (`flags` workload needs it).
    #[serde(default)]
    pub modseq: Option<u64>,
}

/// `status` and set/list `read` invoke value; a flags `read` adds `uids`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadArgs {
    pub mailbox: String,
    #[serde(default)]
    pub consistency: Consistency,
    /// Flags workload only: the UIDs (registers) this read observes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uids: Option<Vec<u32>>,
}

/// `status` ok value (the server's answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    pub uid_validity: u32,
    pub uid_next: u32,
    #[serde(default)]
    pub exists: Option<u32>,
    #[serde(default)]
    pub highest_modseq: Option<u64>,
}

/// `read` ok value: the server's fetch answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResult {
    pub messages: Vec<MessageRecord>,
}

/// One record of a fetch answer or a final read; the fields a workload does not need may be absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub uid: u32,
    #[serde(default)]
    pub guid: Option<String>,
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    #[serde(default)]
    pub modseq: Option<u64>,
    /// The id of the message's body (32 hex digits: the first 128 bits of its SHA-256), for a
    /// delivered message; absent for an index-only append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// `deliver` invoke value (`bodies` workload): one message whose bytes are
/// [`crate::checker::bodies::message_bytes`]`(seed, size)`, delivered with a client session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverArgs {
    pub mailbox: String,
    pub seed: u64,
    pub size: u64,
    /// SHA-256 of the bytes, 64 hex digits: what every node must serve back.
    pub sha256: String,
    pub client_id: String,
    pub request_seq: u64,
}

/// What one node answered, at the end, to `GET .../messages/{uid}/body` (`bodies` workload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyRead {
    pub uid: u32,
    /// The last answer's HTTP status; `None`: no answer (the last attempt's `error` says why).
    #[serde(default)]
    pub status: Option<u16>,
    /// SHA-256 of the bytes served (200), 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How many bytes were served (200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The `x-dovetail-body` header of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_id: Option<String>,
    /// The error code of a refusal, or why there was no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Reads made until this answer (a miss is read again until the final phase's deadline).
    #[serde(default)]
    pub attempts: u32,
    /// When this answer is not the first: what the first read answered (`HTTP 503 unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

impl BodyRead {
    /// The answer in a few words: `HTTP 404 no_such_message`, `no answer: ...`.
    pub fn describe(&self) -> String {
        let error = self.error.as_deref().unwrap_or("");
        match self.status {
            Some(status) => format!("HTTP {status} {error}").trim_end().to_string(),
            None => format!("no answer: {error}"),
        }
    }
}

/// `write` and `cas` invoke value: a STORE `replace` of one UID's flags; `cas` adds
/// `unchanged_since` (the MODSEQ the client read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreArgs {
    pub mailbox: String,
    pub uid: u32,
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_since: Option<u64>,
}

/// `write` and `cas` ok value (the server's answer): `modseq` is null when the flags already were
/// the requested ones (nothing changed, the record's MODSEQ stays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreResult {
    pub modseq: Option<u64>,
    #[serde(default)]
    pub changed: String,
    #[serde(default)]
    pub modified: String,
}

/// A `fail` or `info` value: `{"error": "<code>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub error: String,
}

/// The server's error code for a STORE whose every UID failed `unchanged_since` (HTTP 409).
pub const CONDITION_FAILED: &str = "condition_failed";

/// `final.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finals {
    /// Every node of the cluster, readable or not.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeFinal>,
    /// The answer of `POST /admin/verify` after the run, or per-node digests (see
    /// [`crate::checker::replicas`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Value>,
    /// Node log texts, when the caller wants [`crate::checker::logs`] run by `analyze`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<BTreeMap<String, String>>,
}

/// One node's final reads, or why it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFinal {
    #[serde(default)]
    pub mailboxes: BTreeMap<String, MailboxFinal>,
    /// `bodies` workload: per mailbox, what the node served for every body to check.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bodies: BTreeMap<String, Vec<BodyRead>>,
    /// Set when the node could not be read: its mailboxes are then unknown, not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A mailbox as one node holds it at the end: status plus every record in UID order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MailboxFinal {
    #[serde(default)]
    pub uid_validity: Option<u32>,
    #[serde(default)]
    pub uid_next: Option<u32>,
    #[serde(default)]
    pub highest_modseq: Option<u64>,
    #[serde(default)]
    pub messages: Vec<MessageRecord>,
}

impl Finals {
    /// The nodes that answered, in name order.
    pub fn readable(&self) -> impl Iterator<Item = (&String, &NodeFinal)> {
        self.nodes.iter().filter(|(_, n)| n.error.is_none())
    }

    /// The nodes that did not answer, with their errors.
    pub fn unreadable(&self) -> impl Iterator<Item = (&String, &str)> {
        self.nodes
            .iter()
            .filter_map(|(name, n)| n.error.as_deref().map(|e| (name, e)))
    }
}

/// A fault window: one line of `nemesis.jsonl`, and a shaded band in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultWindow {
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub label: String,
    pub fault: Value,
    /// Why injecting or healing failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_answers_parse_with_their_extra_fields() {
        let append: AppendResult = parse(&json!({"uid_validity": 7, "first_uid": 3, "last_uid": 4,
            "modseq": 9, "group": 5, "token": 88}))
        .unwrap();
        assert_eq!(
            (append.first_uid, append.last_uid, append.modseq),
            (3, 4, Some(9))
        );
        let read: ReadArgs = parse(&json!({"mailbox": "u/INBOX"})).unwrap();
        assert_eq!(read.consistency, Consistency::Linearizable);
        let store: StoreResult = parse(&json!({"modseq": null, "changed": "", "modified": ""})).unwrap();
        assert_eq!(store.modseq, None);
        let finals: Finals = parse(
            &json!({"nodes": {"n1": {"mailboxes": {"u/INBOX": {"uid_validity": 7,
            "uid_next": 2, "messages": [{"uid": 1, "guid": "g", "flags": [], "modseq": 3}]}}},
            "n2": {"error": "timeout"}}}),
        )
        .unwrap();
        assert_eq!(finals.readable().count(), 1);
        assert_eq!(finals.unreadable().next(), Some((&"n2".to_string(), "timeout")));
    }
}
