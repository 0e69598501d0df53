//! The `bodies` workload's client side: deliveries of generated messages with client sessions,
//! and the final phase that reads every body back from every node (what
//! [`crate::checker::bodies`] judges).
//!
//! Sizes run from 1 KiB to 1 MiB, spread log-uniformly: as many between 1 and 32 KiB as between 32
//! KiB and 1 MiB, so most are small and some near 1 MiB (about 150 KB on average). The bytes are
//! [`message_bytes`]`(seed, size)` with a seed drawn per operation, so the history keeps only the
//! seed, the size and the SHA-256.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde_json::{json, Value};

use super::control::{api_addr, node_name, Cluster};
use super::http::{Api, BytesAnswer, Role};
use crate::checker::bodies::{message_bytes, sha256_hex};
use crate::history::{Event, EventType};
use crate::rng::Rng;
use crate::schema::{parse, BodyRead, DeliverArgs, Finals};

/// The smallest and the largest message.
pub const MIN_BODY_BYTES: u64 = 1 << 10;
pub const MAX_BODY_BYTES: u64 = 1 << 20;

/// Attempts of one delivery (the first node, then the next ones) before it is `info`.
const DELIVERY_ATTEMPTS: u32 = 3;

/// How long the final phase keeps reading again the bodies a node did not serve (a node still
/// catching up, a fetch on miss that failed once).
const FINAL_READ_PATIENCE: Duration = Duration::from_secs(60);

/// A body's size: log-uniform in `MIN_BODY_BYTES..=MAX_BODY_BYTES`.
pub fn body_size(rng: &mut Rng) -> u64 {
    let (lo, hi) = ((MIN_BODY_BYTES as f64).ln(), (MAX_BODY_BYTES as f64).ln());
    ((lo + rng.unit() * (hi - lo)).exp() as u64).clamp(MIN_BODY_BYTES, MAX_BODY_BYTES)
}

/// A client's session: its `client_id` and the last `request_seq` it used. A client that gave up
/// on a request (`info`) takes a new one: a session has one request outstanding at a time.
#[derive(Debug, Clone)]
pub struct Session {
    pub client_id: String,
    pub request_seq: u64,
}

/// The next delivery of a client to `mailbox`: its invoke value.
pub fn next_delivery(rng: &mut Rng, mailbox: &str, session: &mut Session) -> Value {
    session.request_seq += 1;
    let (seed, size) = (rng.next_u64(), body_size(rng));
    let sha256 = sha256_hex(&message_bytes(seed, size));
    json!({"mailbox": mailbox, "seed": seed, "size": size, "sha256": sha256,
           "client_id": session.client_id, "request_seq": session.request_seq})
}

/// Delivers `args` through `node`, and while there is no answer, the same request (same
/// session) through the next nodes. `ok`: the answer of the attempt that got one, plus `sha256`;
/// `fail` only if every attempt was certainly not applied; `info` otherwise.
pub async fn deliver(
    api: &Api,
    nodes: u32,
    node: u32,
    args: &Value,
    timeout: Duration,
) -> (EventType, Value) {
    let args: DeliverArgs = match parse(args) {
        Ok(args) => args,
        Err(e) => return (EventType::Fail, json!({"error": format!("bad arguments: {e}")})),
    };
    let (user, mailbox) = args.mailbox.split_once('/').unwrap_or((&args.mailbox, "INBOX"));
    let path = format!(
        "/v1/users/{user}/mailboxes/{mailbox}/messages?client_id={}&request_seq={}",
        args.client_id, args.request_seq
    );
    let bytes = Bytes::from(message_bytes(args.seed, args.size));
    // Whether some attempt may have been applied: then no later refusal makes the outcome certain.
    let mut uncertain = false;
    let mut last = json!({"error": "no attempt"});
    for attempt in 0..DELIVERY_ATTEMPTS {
        let target = 1 + (node - 1 + attempt) % nodes;
        let answer = api
            .call_bytes(
                Role::Client,
                &api_addr(target),
                "POST",
                &path,
                "message/rfc822",
                bytes.clone(),
                timeout,
            )
            .await;
        let error = |bytes: &Bytes| -> String {
            serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(String::from))
                .unwrap_or_else(|| "error".into())
        };
        match answer {
            BytesAnswer::Http {
                status: 200, bytes, ..
            } => {
                let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if let Value::Object(fields) = &mut value {
                    fields.insert("sha256".into(), json!(args.sha256));
                    fields.insert("attempts".into(), json!(attempt + 1));
                }
                return (EventType::Ok, value);
            }
            // A definite refusal: judged and not applied; a retry would be refused alike.
            BytesAnswer::Http {
                status: status @ 400..=499,
                bytes,
                ..
            } => {
                let value = json!({"error": error(&bytes), "status": status, "attempts": attempt + 1});
                let kind = if uncertain {
                    EventType::Info
                } else {
                    EventType::Fail
                };
                return (kind, value);
            }
            // 503 and other 5xx: the delivery may still be applied (its entry may commit).
            BytesAnswer::Http { status, bytes, .. } => {
                uncertain = true;
                last = json!({"error": error(&bytes), "status": status});
            }
            BytesAnswer::NotSent(e) => last = json!({"error": "not_sent", "detail": e}),
            BytesAnswer::Unknown(e) => {
                uncertain = true;
                last = json!({"error": "no_answer", "detail": e});
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last["attempts"] = json!(DELIVERY_ATTEMPTS);
    let kind = if uncertain {
        EventType::Info
    } else {
        EventType::Fail
    };
    (kind, last)
}

/// Waits until every group of every node is at log encoding 3 (deliveries are refused with 409
/// `not_enabled` before); a fresh cluster gets there on its own shortly after it starts.
pub async fn wait_for_deliveries(cluster: &Cluster, api: &Api, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let mut ready = true;
        for node in 1..=cluster.nodes {
            match api
                .admin_get(&api_addr(node), "/admin/status", Duration::from_secs(2))
                .await
            {
                Ok(status) => {
                    let encodings: Vec<Value> = status["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|g| g["encoding"].clone())
                        .collect();
                    if encodings.is_empty() || encodings.iter().any(|e| e.as_u64().unwrap_or(0) < 3) {
                        ready = false;
                        last = format!("node {node}: encodings {encodings:?}");
                    }
                }
                Err(e) => {
                    ready = false;
                    last = e.to_string();
                }
            }
        }
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("log encoding 3 not reached within {limit:?}: {last}"))
}

/// Reads, on every node, the body of every message to judge: each UID acknowledged to a
/// delivery, and each UID some node's final records name a body for (indeterminate deliveries
/// that landed). A read that is not 200 is made again, every second, until
/// [`FINAL_READ_PATIENCE`]: a node may still be catching up, or fetch on miss. Fills
/// `finals.nodes[..].bodies`.
pub async fn final_body_reads(cluster: &Cluster, api: &Api, events: &[Event], finals: &mut Finals) {
    let mut wanted: BTreeSet<(String, u32)> = BTreeSet::new();
    // Pair each acknowledged delivery's UID with its mailbox.
    let mut open: BTreeMap<u64, &Value> = BTreeMap::new();
    for event in events.iter().filter(|e| e.f == "deliver") {
        match event.kind {
            EventType::Invoke => {
                open.insert(event.process, &event.value);
            }
            kind => {
                let invoke = open.remove(&event.process);
                if let (EventType::Ok, Some(invoke)) = (kind, invoke) {
                    if let (Some(mailbox), Some(uid)) =
                        (invoke["mailbox"].as_str(), event.value["first_uid"].as_u64())
                    {
                        wanted.insert((mailbox.to_string(), uid as u32));
                    }
                }
            }
        }
    }
    for node in finals.nodes.values() {
        for (mailbox, records) in &node.mailboxes {
            for record in records.messages.iter().filter(|r| r.body.is_some()) {
                wanted.insert((mailbox.clone(), record.uid));
            }
        }
    }
    let started = Instant::now();
    // The nodes are read at once, each by its own task.
    let wanted: Vec<(String, u32)> = wanted.into_iter().collect();
    let tasks: Vec<_> = (1..=cluster.nodes)
        .map(|node| {
            let (api, wanted) = (api.clone(), wanted.clone());
            tokio::spawn(async move { (node, read_node(&api, node, &wanted, started).await) })
        })
        .collect();
    for task in tasks {
        let Ok((node, reads)) = task.await else {
            continue; // the node's reads are then missing: the checker says unknown
        };
        if let Some(node_final) = finals.nodes.get_mut(&node_name(node)) {
            for (mailbox, read) in reads {
                node_final.bodies.entry(mailbox).or_default().push(read);
            }
        }
    }
    let retried = finals
        .nodes
        .values()
        .flat_map(|n| n.bodies.values().flatten())
        .filter(|r| r.attempts > 1)
        .count();
    println!(
        "  read {} bodies on each of {} nodes in {:.1}s ({retried} read more than once)",
        wanted.len(),
        cluster.nodes,
        started.elapsed().as_secs_f64()
    );
}

/// Reads every body of `wanted` on `node`, then again those it did not serve, every second,
/// until [`FINAL_READ_PATIENCE`] after `started`.
async fn read_node(
    api: &Api,
    node: u32,
    wanted: &[(String, u32)],
    started: Instant,
) -> Vec<(String, BodyRead)> {
    let mut reads: Vec<(String, BodyRead)> = Vec::with_capacity(wanted.len());
    for (mailbox, uid) in wanted {
        reads.push((mailbox.clone(), read_body(api, node, mailbox, *uid, 1).await));
    }
    while started.elapsed() < FINAL_READ_PATIENCE && reads.iter().any(|(_, r)| r.status != Some(200)) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (mailbox, read) in reads.iter_mut().filter(|(_, r)| r.status != Some(200)) {
            let first_failure = read.first_failure.take().unwrap_or_else(|| read.describe());
            *read = read_body(api, node, mailbox, read.uid, read.attempts + 1).await;
            read.first_failure = Some(first_failure);
        }
    }
    reads
}

/// One read of a body on `node`, `consistency=local` (the cluster has converged).
async fn read_body(api: &Api, node: u32, mailbox: &str, uid: u32, attempts: u32) -> BodyRead {
    let (user, name) = mailbox.split_once('/').unwrap_or((mailbox, "INBOX"));
    let path = format!("/v1/users/{user}/mailboxes/{name}/messages/{uid}/body?consistency=local");
    let answer = api
        .call_bytes(
            Role::Client,
            &api_addr(node),
            "GET",
            &path,
            "application/json",
            Bytes::new(),
            Duration::from_secs(30),
        )
        .await;
    let mut read = BodyRead {
        uid,
        status: None,
        sha256: None,
        size: None,
        body_id: None,
        error: None,
        attempts,
        first_failure: None,
    };
    match answer {
        BytesAnswer::Http {
            status: 200,
            body_id,
            bytes,
        } => {
            read.status = Some(200);
            read.sha256 = Some(sha256_hex(&bytes));
            read.size = Some(bytes.len() as u64);
            read.body_id = body_id;
        }
        BytesAnswer::Http {
            status,
            body_id,
            bytes,
        } => {
            read.status = Some(status);
            read.body_id = body_id;
            read.error = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(String::from));
        }
        BytesAnswer::NotSent(e) | BytesAnswer::Unknown(e) => read.error = Some(e),
    }
    read
}
