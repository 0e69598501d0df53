//! Workloads: what the clients do, as operations of the shapes in [`crate::history`], and the
//! final reads the checkers compare against.
//!
//! - `uid`: appends of one or two messages to three mailboxes (three users, so usually three
//!   groups) and linearizable `status` reads; UIDs must be unique and increasing in real time.
//! - `set`: appends of unique GUIDs to two mailboxes and reads of the whole mailbox (mostly
//!   linearizable, some local); set-full: nothing acknowledged lost, nothing duplicated.
//! - `flags`: four messages per mailbox in two mailboxes are registers of flags: reads, STORE
//!   replace (`write`) and STORE replace with UNCHANGEDSINCE the MODSEQ last read (`cas`).
//! - `list`: appends and reads; every read is a prefix of the final UID order.
//! - `bodies`: deliveries of messages of 1 KiB to 1 MiB to three mailboxes (three users) with
//!   client sessions ([`super::bodies`]); at the end every body is read back from every node.
//!
//! **Rotation** (set and list): every `--rotate-ops` operations (counted over all clients) the
//! clients move on to a fresh mailbox per user (`INBOX`, then `rot001`, `rot002`, ...), so a
//! read fetches at most a few hundred messages and the checkers, which judge each mailbox on
//! its own, keep their work per read bounded however long the run. The mailboxes are all
//! created by the setup, before any fault (enough for `--time-limit` × `--rate` operations plus
//! two spare generations; past them the clients stay on the last one), and every one of them is
//! read at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::bodies::{self, Session};
use super::control::{api_addr, node_name, Cluster};
use super::error::RunError;
use super::http::{Answer, Api, RequestError, Role};
use crate::history::EventType;
use crate::rng::Rng;
use crate::schema::{Finals, MailboxFinal, MessageRecord, NodeFinal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Uid,
    Set,
    Flags,
    List,
    Bodies,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Uid => "uid",
            WorkloadKind::Set => "set",
            WorkloadKind::Flags => "flags",
            WorkloadKind::List => "list",
            WorkloadKind::Bodies => "bodies",
        }
    }

    /// Operations per second, all clients together, unless `--rate` says otherwise: the bodies
    /// workload's deliveries average 150 KB, stored on every node of a machine's one disk.
    pub fn default_rate(self) -> f64 {
        match self {
            WorkloadKind::Bodies => 6.0,
            _ => 30.0,
        }
    }
}

/// Registers per mailbox in the flags workload.
const FLAG_MESSAGES: u32 = 4;
const FLAG_NAMES: [&str; 4] = ["\\Seen", "\\Flagged", "$Work", "$Later"];

/// One operation to invoke.
#[derive(Debug, Clone)]
pub struct Op {
    pub f: &'static str,
    pub value: Value,
}

/// What a client remembers between its operations: the flags workload's last-read MODSEQs, the
/// bodies workload's client session (none after an `info`: the next operation starts another).
#[derive(Debug, Default)]
pub struct ClientState {
    modseqs: BTreeMap<(String, u32), u64>,
    session: Option<Session>,
}

pub struct Workload {
    pub kind: WorkloadKind,
    /// `(user, mailbox name)` per generation; generation 0 is every user's INBOX. Only the set
    /// and list workloads have more than one.
    generations: Vec<Vec<(String, String)>>,
    /// Operations per generation (`u64::MAX`: no rotation).
    rotate_ops: u64,
    /// Operations handed out so far, over all clients.
    ops: AtomicU64,
    run_id: u64,
    next_guid: AtomicU64,
    /// Flags workload: the UIDs of each mailbox's registers.
    registers: BTreeMap<String, Vec<u32>>,
    /// Nodes of the cluster (a delivery without an answer is sent again through the next ones).
    nodes: u32,
}

fn key(user: &str, mailbox: &str) -> String {
    format!("{user}/{mailbox}")
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, "INBOX"))
}

/// The most generations a run creates.
const MAX_GENERATIONS: u64 = 500;

/// Generation `g`'s mailbox name.
fn generation_name(generation: u64) -> String {
    match generation {
        0 => "INBOX".into(),
        g => format!("rot{g:03}"),
    }
}

impl Workload {
    /// `rotate_ops`: operations per mailbox generation for set and list (0: no rotation);
    /// `expected_ops`: about how many operations the run will make (time limit × rate).
    pub fn new(kind: WorkloadKind, run_id: u64, rotate_ops: u64, expected_ops: u64, nodes: u32) -> Workload {
        let count = if matches!(kind, WorkloadKind::Uid | WorkloadKind::Bodies) {
            3
        } else {
            2
        };
        let rotates = matches!(kind, WorkloadKind::Set | WorkloadKind::List) && rotate_ops > 0;
        let generations = if rotates {
            (expected_ops / rotate_ops + 2).min(MAX_GENERATIONS)
        } else {
            1
        };
        Workload {
            kind,
            generations: (0..generations)
                .map(|g| {
                    (1..=count)
                        .map(|i| (format!("u{i}"), generation_name(g)))
                        .collect()
                })
                .collect(),
            rotate_ops: if rotates { rotate_ops } else { u64::MAX },
            ops: AtomicU64::new(0),
            run_id,
            next_guid: AtomicU64::new(1),
            registers: BTreeMap::new(),
            nodes: nodes.max(1),
        }
    }

    /// Every mailbox of every generation.
    fn mailboxes(&self) -> impl Iterator<Item = &(String, String)> {
        self.generations.iter().flatten()
    }

    pub fn mailbox_keys(&self) -> Vec<String> {
        self.mailboxes().map(|(u, m)| key(u, m)).collect()
    }

    fn guid(&self) -> String {
        format!(
            "{:016x}{:016x}",
            self.run_id,
            self.next_guid.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Creates the mailboxes (and the flags workload's registers) before the clients start.
    /// Returns the appends it made, `(invoke value, ok value)`, for the history: the checkers
    /// must know every acknowledged message.
    pub async fn setup(&mut self, cluster: &Cluster, api: &Api) -> Result<Vec<(Value, Value)>, RunError> {
        let mut appends = Vec::new();
        let mailboxes: Vec<(String, String)> = self.mailboxes().cloned().collect();
        for (user, mailbox) in mailboxes {
            let path = format!("/v1/users/{user}/mailboxes");
            let body = json!({ "name": mailbox });
            retry(cluster, api, "POST", &path, &body, &[201, 409]).await?;
            if self.kind == WorkloadKind::Bodies {
                continue;
            }
            if self.kind == WorkloadKind::Flags {
                let messages: Vec<Value> = (0..FLAG_MESSAGES)
                    .map(|_| json!({"guid": self.guid(), "size": 1}))
                    .collect();
                let path = format!("/v1/users/{user}/mailboxes/{mailbox}/messages");
                let answer = retry(
                    cluster,
                    api,
                    "POST",
                    &path,
                    &json!({"messages": messages}),
                    &[200],
                )
                .await?;
                let invoke = json!({
                    "mailbox": key(&user, &mailbox),
                    "messages": messages.iter().map(|m| json!({"guid": m["guid"], "flags": []})).collect::<Vec<_>>(),
                });
                appends.push((invoke, answer.clone()));
                let (first, last) = (answer["first_uid"].as_u64(), answer["last_uid"].as_u64());
                let (Some(first), Some(last)) = (first, last) else {
                    return Err(RunError::SetupAnswer { answer });
                };
                self.registers
                    .insert(key(&user, &mailbox), (first as u32..=last as u32).collect());
            }
        }
        if self.kind == WorkloadKind::Bodies {
            bodies::wait_for_deliveries(cluster, api, Duration::from_secs(60))
                .await
                .map_err(|reason| RunError::NotReady { reason })?;
        }
        Ok(appends)
    }

    /// The next operation of a client.
    pub fn next_op(&self, rng: &mut Rng, state: &mut ClientState) -> Op {
        let generation = (self.ops.fetch_add(1, Ordering::Relaxed) / self.rotate_ops)
            .min(self.generations.len() as u64 - 1);
        let (user, mailbox) = rng.pick(&self.generations[generation as usize]);
        let mailbox_key = key(user, mailbox);
        let append = |count: u64| Op {
            f: "append",
            value: json!({
                "mailbox": mailbox_key,
                "messages": (0..count).map(|_| json!({"guid": self.guid()})).collect::<Vec<_>>(),
            }),
        };
        match self.kind {
            WorkloadKind::Bodies => {
                let session = state.session.get_or_insert_with(|| Session {
                    client_id: format!(
                        "jepsen-{:x}-{}",
                        self.run_id,
                        self.next_guid.fetch_add(1, Ordering::Relaxed)
                    ),
                    request_seq: 0,
                });
                Op {
                    f: "deliver",
                    value: bodies::next_delivery(rng, &mailbox_key, session),
                }
            }
            WorkloadKind::Uid => {
                if rng.chance(0.75) {
                    append(1 + rng.below(2))
                } else {
                    Op {
                        f: "status",
                        value: json!({"mailbox": mailbox_key, "consistency": "linearizable"}),
                    }
                }
            }
            WorkloadKind::Set | WorkloadKind::List => {
                if rng.chance(0.7) {
                    append(1)
                } else {
                    let consistency = if self.kind == WorkloadKind::Set && rng.chance(0.2) {
                        "local"
                    } else {
                        "linearizable"
                    };
                    Op {
                        f: "read",
                        value: json!({"mailbox": mailbox_key, "consistency": consistency}),
                    }
                }
            }
            WorkloadKind::Flags => {
                let uid = *rng.pick(&self.registers[&mailbox_key]);
                let flags: Vec<&str> = FLAG_NAMES.iter().copied().filter(|_| rng.chance(0.5)).collect();
                let roll = rng.below(10);
                let known = state.modseqs.get(&(mailbox_key.clone(), uid)).copied();
                match (roll, known) {
                    (0..=3, _) | (7.., None) => Op {
                        f: "read",
                        value: json!({"mailbox": mailbox_key, "uids": [uid], "consistency": "linearizable"}),
                    },
                    (4..=6, _) => Op {
                        f: "write",
                        value: json!({"mailbox": mailbox_key, "uid": uid, "flags": flags}),
                    },
                    (_, Some(modseq)) => Op {
                        f: "cas",
                        value: json!({"mailbox": mailbox_key, "uid": uid, "flags": flags, "unchanged_since": modseq}),
                    },
                }
            }
        }
    }

    /// Runs `op` against `node`; returns the completion type and value (see the history rules:
    /// `fail` only when the operation certainly did not take effect).
    pub async fn execute(
        &self,
        api: &Api,
        node: u32,
        op: &Op,
        state: &mut ClientState,
        timeout: Duration,
    ) -> (EventType, Value) {
        let mailbox_key = op.value["mailbox"].as_str().unwrap_or_default().to_string();
        let (user, mailbox) = split_key(&mailbox_key);
        let base = format!("/v1/users/{user}/mailboxes/{mailbox}");
        let consistency = op.value["consistency"].as_str().unwrap_or("linearizable");
        if op.f == "deliver" {
            let (kind, value) = bodies::deliver(api, self.nodes, node, &op.value, timeout).await;
            if kind == EventType::Info {
                state.session = None;
            }
            return (kind, value);
        }
        let (method, path, body, writes) = match op.f {
            "append" => {
                let messages: Vec<Value> = op.value["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| json!({"guid": m["guid"], "size": 1}))
                    .collect();
                (
                    "POST",
                    format!("{base}/messages"),
                    Some(json!({ "messages": messages })),
                    true,
                )
            }
            "status" => ("GET", format!("{base}?consistency={consistency}"), None, false),
            "read" => match op.value["uids"].as_array() {
                Some(uids) => {
                    let uids: Vec<u64> = uids.iter().filter_map(Value::as_u64).collect();
                    let (first, last) = (
                        uids.iter().min().copied().unwrap_or(1),
                        uids.iter().max().copied().unwrap_or(1),
                    );
                    (
                        "GET",
                        format!("{base}/messages?first={first}&last={last}&consistency={consistency}"),
                        None,
                        false,
                    )
                }
                None => (
                    "GET",
                    format!("{base}/messages?first=1&limit=10000&consistency={consistency}"),
                    None,
                    false,
                ),
            },
            "write" | "cas" => {
                let mut body = json!({
                    "uids": op.value["uid"].to_string(),
                    "mode": "replace",
                    "flags": op.value["flags"],
                });
                if op.f == "cas" {
                    body["unchanged_since"] = op.value["unchanged_since"].clone();
                }
                ("POST", format!("{base}/store"), Some(body), true)
            }
            other => {
                return (
                    EventType::Fail,
                    json!({"error": format!("unknown operation {other}")}),
                )
            }
        };
        let answer = api
            .call(
                Role::Client,
                &api_addr(node),
                method,
                &path,
                body.as_ref(),
                timeout,
            )
            .await;
        match answer {
            Answer::Http(200 | 201, value) => {
                if op.f == "read" && self.kind == WorkloadKind::Flags {
                    for m in value["messages"].as_array().into_iter().flatten() {
                        if let (Some(uid), Some(modseq)) = (m["uid"].as_u64(), m["modseq"].as_u64()) {
                            state.modseqs.insert((mailbox_key.clone(), uid as u32), modseq);
                        }
                    }
                }
                (EventType::Ok, value)
            }
            // A definite refusal: the request was judged and not applied.
            Answer::Http(status @ 400..=499, value) => (
                EventType::Fail,
                json!({"error": value["error"]["code"].as_str().unwrap_or("refused"), "status": status}),
            ),
            // Reads change nothing, so any failure of a read is a plain `fail`.
            Answer::Http(status, value) if !writes => (
                EventType::Fail,
                json!({"error": value["error"]["code"].as_str().unwrap_or("error"), "status": status}),
            ),
            Answer::NotSent(e) => (EventType::Fail, json!({"error": "not_sent", "detail": e})),
            Answer::Unknown(e) if !writes => (EventType::Fail, json!({"error": "no_answer", "detail": e})),
            // 503 and 5xx: the write may still commit later.
            Answer::Http(status, value) => (
                EventType::Info,
                json!({"error": value["error"]["code"].as_str().unwrap_or("error"), "status": status}),
            ),
            Answer::Unknown(e) => (EventType::Info, json!({"error": "no_answer", "detail": e})),
        }
    }

    /// Every node's view of every mailbox, read locally (the cluster is converged and quiet).
    pub async fn final_reads(&self, cluster: &Cluster, api: &Api) -> Finals {
        let mut finals = Finals::default();
        for node in 1..=cluster.nodes {
            let mut node_final = NodeFinal::default();
            for (user, mailbox) in self.mailboxes() {
                let base = format!("/v1/users/{user}/mailboxes/{mailbox}");
                let status = api
                    .call(
                        Role::Client,
                        &api_addr(node),
                        "GET",
                        &format!("{base}?consistency=local"),
                        None,
                        Duration::from_secs(10),
                    )
                    .await;
                let records = api
                    .call(
                        Role::Client,
                        &api_addr(node),
                        "GET",
                        &format!("{base}/messages?first=1&limit=10000&consistency=local"),
                        None,
                        Duration::from_secs(30),
                    )
                    .await;
                match (status, records) {
                    (Answer::Http(200, status), Answer::Http(200, records)) => {
                        let messages: Vec<MessageRecord> =
                            serde_json::from_value(records["messages"].clone()).unwrap_or_default();
                        node_final.mailboxes.insert(
                            key(user, mailbox),
                            MailboxFinal {
                                uid_validity: status["uid_validity"].as_u64().map(|v| v as u32),
                                uid_next: status["uid_next"].as_u64().map(|v| v as u32),
                                highest_modseq: status["highest_modseq"].as_u64(),
                                messages,
                            },
                        );
                    }
                    (status, records) => {
                        node_final.error = Some(format!(
                            "{}: status {status:?}, records {records:?}",
                            key(user, mailbox)
                        ));
                        node_final.mailboxes.clear();
                        break;
                    }
                }
            }
            finals.nodes.insert(node_name(node), node_final);
        }
        finals
    }
}

/// Attempts of a setup request, half a second apart.
const SETUP_ATTEMPTS: u32 = 60;

/// Sends a setup request through the nodes in turn until one answers with an accepted status.
async fn retry(
    cluster: &Cluster,
    api: &Api,
    method: &str,
    path: &str,
    body: &Value,
    accept: &[u16],
) -> Result<Value, RunError> {
    let mut last = RequestError::NotSent("no node tried".into());
    for attempt in 0..SETUP_ATTEMPTS {
        let addr = api_addr(1 + attempt % cluster.nodes);
        match api
            .call(
                Role::Client,
                &addr,
                method,
                path,
                Some(body),
                Duration::from_secs(10),
            )
            .await
            .accepted(|status| accept.contains(&status), method, &addr, path)
        {
            Ok(value) => return Ok(value),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(RunError::Setup {
        method: method.to_string(),
        path: path.to_string(),
        attempts: SETUP_ATTEMPTS,
        last: Box::new(last),
    })
}
