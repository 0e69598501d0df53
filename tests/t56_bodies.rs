//! Message bodies (issue "Message bodies"; ARCHITECTURE.md §3, "A delivery"). Property: an
//! acknowledged delivery's body survives the loss of any minority of nodes and is read back
//! byte-identical through every node; a copy a node lacks, or whose bytes were damaged, is
//! fetched from a member and never served damaged. Provocation, on 3-node clusters of real
//! processes (2 groups): (1) a delivery acknowledged while node 3 is down, then the receiving
//! node killed and node 3 started; (2) a body deleted from one node's store and a byte flipped in
//! another's; (3) kill -9 of the receiving node during a stream of deliveries with client
//! sessions (retried through the survivors). Checks: status codes of the delivery and body
//! routes (200, 206 and 416 for ranges, 404 for an index-only message, 413 over
//! `--max-message-bytes` with nothing stored anywhere), bytes equal to what was sent and to the
//! id the index names, the fetch and damage counters in `/admin/status`, the quarantined copy.

#[path = "support/rng.rs"]
mod rng;
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rng::{seed, Rng};
use serde_json::{json, Value};
use sha2::Digest;
use support::{get, post, raw_request, wait_until, RawAnswer, TestCluster};

const GROUPS: u32 = 2;
const USER: &str = "bodies@example.com";
const MAX_MESSAGE: usize = 1 << 20;

fn start() -> TestCluster {
    let max = MAX_MESSAGE.to_string();
    let cluster = TestCluster::start(3, GROUPS, &["--max-message-bytes", &max]);
    // Deliveries need log encoding 3: wait until every group's gate is there.
    wait_until(Duration::from_secs(30), "every group at log encoding 3", || {
        get(&cluster.node(1).api, "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    for name in ["INBOX", "Archive"] {
        let (status, v) = post(
            &cluster.node(1).api,
            &format!("/v1/users/{USER}/mailboxes"),
            &json!({ "name": name }),
        )
        .unwrap();
        assert_eq!(status, 201, "{v}");
    }
    cluster
}

/// A message of `len` random bytes.
fn message(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut bytes = format!("Subject: test {}\r\n\r\n", rng.next_u64()).into_bytes();
    while bytes.len() < len {
        bytes.push(b' ' + (rng.next_u64() % 90) as u8);
    }
    bytes.truncate(len);
    bytes
}

/// The id the index names for `bytes`: 128 bits of their SHA-256, in hex.
fn body_id(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn deliver(api: &str, mailbox: &str, query: &str, bytes: &[u8]) -> RawAnswer {
    raw_request(
        api,
        "POST",
        &format!("/v1/users/{USER}/mailboxes/{mailbox}/messages{query}"),
        &[("Content-Type", "message/rfc822")],
        bytes,
    )
    .unwrap()
}

fn read_body(api: &str, mailbox: &str, uid: u64, range: Option<&str>) -> RawAnswer {
    try_read_body(api, mailbox, uid, range).unwrap()
}

/// As [`read_body`], for a node that may not listen yet.
fn try_read_body(api: &str, mailbox: &str, uid: u64, range: Option<&str>) -> std::io::Result<RawAnswer> {
    let headers: Vec<(&str, &str)> = range.map(|r| vec![("Range", r)]).unwrap_or_default();
    raw_request(
        api,
        "GET",
        &format!("/v1/users/{USER}/mailboxes/{mailbox}/messages/{uid}/body"),
        &headers,
        b"",
    )
}

/// Where node `node`'s store keeps body `id`.
fn stored_path(cluster: &TestCluster, node: u64, id: &str) -> PathBuf {
    cluster.node(node).dir.join("blobs").join(&id[..2]).join(id)
}

fn bodies_status(cluster: &TestCluster, node: u64) -> Value {
    let (_, v) = get(&cluster.node(node).api, "/admin/status").unwrap();
    v["node"]["bodies"].clone()
}

#[test]
fn an_acknowledged_delivery_lives_on_a_majority() {
    let mut rng = Rng::new(seed("t56_bodies"));
    let mut cluster = start();
    cluster.stop(3);
    let bytes = message(&mut rng, 300_000);
    let answer = deliver(
        &cluster.node(1).api,
        "Archive",
        "?flags=%5CSeen%20%24Forwarded",
        &bytes,
    );
    assert_eq!(answer.status, 200, "{}", answer.json());
    let uid = answer.json()["first_uid"].as_u64().unwrap();
    let token = answer.json()["token"].as_u64().unwrap();
    // Node 1 took the delivery; node 2 holds the body for the majority. Node 1 goes, node 3 comes.
    cluster.kill(1);
    cluster.restart(3);
    wait_until(Duration::from_secs(30), "node 3 has caught up", || {
        get(
            &cluster.node(3).api,
            &format!("/v1/users/{USER}/mailboxes/Archive?consistency=local&min_applied={token}"),
        )
        .is_ok_and(|(status, _)| status == 200)
    });
    assert!(!stored_path(&cluster, 3, &body_id(&bytes)).exists());
    let read = read_body(&cluster.node(3).api, "Archive", uid, None);
    assert_eq!(read.status, 200, "{}", read.json());
    assert!(
        read.body == bytes,
        "node 3 served other bytes than were delivered"
    );
    assert_eq!(read.headers["x-dovetail-body"], body_id(&bytes));
    assert_eq!(read.headers["content-type"], "message/rfc822");
    assert!(
        stored_path(&cluster, 3, &body_id(&bytes)).exists(),
        "fetched and stored"
    );
    assert_eq!(bodies_status(&cluster, 3)["fetches"], 1);
    // The record names the body, with the size and flags asked for.
    let (_, listing) = get(
        &cluster.node(3).api,
        &format!("/v1/users/{USER}/mailboxes/Archive/messages"),
    )
    .unwrap();
    let record = &listing["messages"][0];
    assert_eq!(record["body"], body_id(&bytes), "{listing}");
    assert_eq!(record["size"], bytes.len(), "{listing}");
    assert_eq!(record["flags"], json!(["\\Seen", "$Forwarded"]), "{listing}");
    // Ranges.
    let part = read_body(&cluster.node(2).api, "Archive", uid, Some("bytes=100-199"));
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &bytes[100..200]);
    assert_eq!(
        part.headers["content-range"],
        format!("bytes 100-199/{}", bytes.len())
    );
    let tail = read_body(&cluster.node(2).api, "Archive", uid, Some("bytes=-10"));
    assert_eq!((tail.status, &tail.body[..]), (206, &bytes[bytes.len() - 10..]));
    let beyond = read_body(&cluster.node(2).api, "Archive", uid, Some("bytes=999999999-"));
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.headers["content-range"],
        format!("bytes */{}", bytes.len())
    );
    // Node 1 back: it has the body, and reads it without fetching.
    cluster.restart(1);
    wait_until(Duration::from_secs(30), "node 1 serves the body", || {
        try_read_body(&cluster.node(1).api, "Archive", uid, None).is_ok_and(|read| read.body == bytes)
    });
    assert_eq!(bodies_status(&cluster, 1)["fetches"], 0);
}

#[test]
fn a_missing_or_damaged_copy_is_fetched_and_never_served() {
    let mut rng = Rng::new(seed("t56_bodies"));
    let cluster = start();
    let api = |n: u64| cluster.node(n).api.clone();
    let bytes = message(&mut rng, 200_000);
    let id = body_id(&bytes);
    let answer = deliver(&api(1), "INBOX", "", &bytes);
    assert_eq!(answer.status, 200, "{}", answer.json());
    let uid = answer.json()["first_uid"].as_u64().unwrap();
    // Every node gets the body: a majority before the answer, the last one just after.
    wait_until(Duration::from_secs(10), "every node holds the body", || {
        (1..=3).all(|n| stored_path(&cluster, n, &id).exists())
    });
    // Deleted from node 2's store: fetched when read there.
    std::fs::remove_file(stored_path(&cluster, 2, &id)).unwrap();
    let read = read_body(&api(2), "INBOX", uid, None);
    assert_eq!(read.status, 200, "{}", read.json());
    assert!(read.body == bytes);
    assert_eq!(bodies_status(&cluster, 2)["fetches"], 1);
    // One byte flipped in node 3's copy: detected, moved aside, fetched again; never served.
    let path = stored_path(&cluster, 3, &id);
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[12_345] ^= 0x20;
    std::fs::write(&path, &damaged).unwrap();
    let read = read_body(&api(3), "INBOX", uid, None);
    assert_eq!(read.status, 200, "{}", read.json());
    assert!(read.body == bytes, "node 3 served its damaged copy");
    let status = bodies_status(&cluster, 3);
    assert_eq!(
        (status["damaged"].as_u64(), status["fetches"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    let aside: Vec<_> = std::fs::read_dir(cluster.node(3).dir.join("blobs/quarantine"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(aside, vec![damaged], "the damaged copy is kept aside");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "a good copy in its place");
    // A peer never hands out a damaged copy either: node 2's is damaged and node 1's deleted,
    // so node 3 (whose copy goes too) finds none.
    let path2 = stored_path(&cluster, 2, &id);
    let mut damaged2 = std::fs::read(&path2).unwrap();
    damaged2[0] ^= 0x01;
    std::fs::write(&path2, damaged2).unwrap();
    std::fs::remove_file(stored_path(&cluster, 1, &id)).unwrap();
    std::fs::remove_file(&path).unwrap();
    let read = read_body(&api(3), "INBOX", uid, None);
    assert_eq!(read.status, 503, "no good copy anywhere: {}", read.json());
    assert_eq!(read.json()["error"]["code"], "unavailable");
    assert!(!path.exists() && !stored_path(&cluster, 1, &id).exists());

    // An index-only message has no body; no such UID; a UID that is no nz-number.
    let (status, v) = post(
        &api(1),
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
        &json!({"messages": [{"guid": "00000000000000000000000000000001", "size": 10}]}),
    )
    .unwrap();
    assert_eq!(status, 200, "{v}");
    let index_only = v["first_uid"].as_u64().unwrap();
    let read = read_body(&api(1), "INBOX", index_only, None);
    assert_eq!(
        (read.status, read.json()["error"]["code"].clone()),
        (404, json!("no_such_message"))
    );
    let read = read_body(&api(1), "INBOX", 999, None);
    assert_eq!(
        (read.status, read.json()["error"]["code"].clone()),
        (404, json!("no_such_message"))
    );
    let answer = raw_request(
        &api(1),
        "GET",
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages/01/body"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 400);

    // Over --max-message-bytes: 413, nothing stored on any node.
    let count = |n: u64| walk(&cluster.node(n).dir.join("blobs"));
    let before: Vec<usize> = (1..=3).map(count).collect();
    let big = message(&mut rng, MAX_MESSAGE + 1);
    let answer = deliver(&api(2), "INBOX", "", &big);
    assert_eq!(answer.status, 413, "{}", answer.json());
    assert_eq!((1..=3).map(count).collect::<Vec<_>>(), before);
    // A delivery into a mailbox that does not exist: 404, and the body it stored is an orphan
    // (the collector's).
    let answer = deliver(&api(2), "Nowhere", "", b"Subject: x\r\n\r\nx");
    assert_eq!(answer.status, 404, "{}", answer.json());
}

/// Stored bodies under a `blobs/` directory (fan-out directories only).
fn walk(blobs: &std::path::Path) -> usize {
    std::fs::read_dir(blobs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 2)
        .map(|e| std::fs::read_dir(e.path()).unwrap().count())
        .sum()
}

/// An acknowledged delivery: its UID and the bytes sent.
type Acked = (u64, Vec<u8>);

#[test]
fn every_acknowledged_body_survives_a_kill_of_the_receiving_node() {
    let seed = seed("t56_bodies kill");
    let mut cluster = start();
    let apis: Vec<String> = (1..=3).map(|n| cluster.node(n).api.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let writer = {
        let (stop, acked, apis) = (stop.clone(), acked.clone(), apis.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let len = 1_000 + (rng.next_u64() % 100_000) as usize;
                let bytes = message(&mut rng, len);
                // Node 1 first; once it fails, the same request through the others.
                for attempt in 0..40 {
                    let api = &apis[if attempt == 0 { 0 } else { 1 + attempt % 2 }];
                    let query = format!("?client_id=writer&request_seq={seq}");
                    let Ok(answer) = raw_request(
                        api,
                        "POST",
                        &format!("/v1/users/{USER}/mailboxes/INBOX/messages{query}"),
                        &[("Content-Type", "message/rfc822")],
                        &bytes,
                    ) else {
                        continue;
                    };
                    if answer.status == 200 {
                        let uid = answer.json()["first_uid"].as_u64().unwrap();
                        acked.lock().unwrap().push((uid, bytes));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    wait_until(Duration::from_secs(30), "some deliveries", || {
        acked.lock().unwrap().len() >= 10
    });
    cluster.kill(1);
    let at_kill = acked.lock().unwrap().len();
    wait_until(Duration::from_secs(30), "deliveries after the kill", || {
        acked.lock().unwrap().len() >= at_kill + 10
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    for node in [2, 3] {
        for (uid, bytes) in &acked {
            let read = read_body(&cluster.node(node).api, "INBOX", *uid, None);
            assert_eq!(read.status, 200, "node {node}, UID {uid}: {}", read.json());
            if read.body != *bytes {
                // Diagnostics for the failure below: the node's body log lines, the answer's
                // headers, and whether a second read gets the right bytes.
                let log = cluster.log(node);
                let lines: Vec<&str> = log.lines().filter(|l| l.contains("body")).collect();
                eprintln!("node {node}'s body log lines:\n{}", lines.join("\n"));
                let again = read_body(&cluster.node(node).api, "INBOX", *uid, None);
                eprintln!(
                    "headers {:?}; read again: {}, {} bytes, the bytes sent: {}",
                    read.headers,
                    again.status,
                    again.body.len(),
                    again.body == *bytes
                );
            }
            assert!(
                read.body == *bytes,
                "node {node}, UID {uid}: other bytes: {} read (id {}, header {:?}), {} sent (id {})",
                read.body.len(),
                body_id(&read.body),
                read.headers.get("x-dovetail-body"),
                bytes.len(),
                body_id(bytes)
            );
        }
    }
    cluster.restart(1);
    wait_until(
        Duration::from_secs(30),
        "node 1 serves every acknowledged body",
        || {
            acked.iter().all(|(uid, bytes)| {
                try_read_body(&cluster.node(1).api, "INBOX", *uid, None).is_ok_and(|read| read.body == *bytes)
            })
        },
    );
    eprintln!(
        "{} deliveries acknowledged, {} after the kill; node 1 fetched {} on reads",
        acked.len(),
        acked.len() - at_kill,
        bodies_status(&cluster, 1)["fetches"]
    );
}

#[test]
fn without_a_majority_a_delivery_is_refused_and_never_indexed() {
    let mut rng = Rng::new(seed("t56_bodies quorum"));
    let mut cluster = start();
    cluster.stop(2);
    cluster.stop(3);
    let bytes = message(&mut rng, 50_000);
    let answer = deliver(&cluster.node(1).api, "INBOX", "", &bytes);
    assert_eq!(answer.status, 503, "{}", answer.json());
    assert_eq!(answer.json()["error"]["code"], "unavailable");
    let message_text = answer.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message_text.contains("held by 1 of the 2 voters"),
        "{message_text}"
    );
    cluster.restart(2);
    cluster.restart(3);
    cluster.wait_for_leaders(Duration::from_secs(30));
    let (status, listing) = get(
        &cluster.node(2).api,
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
    )
    .unwrap();
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["messages"], json!([]), "a refused delivery was indexed");
}

/// A member that stops answering (SIGSTOP) while it is a delivering node's first choice for the
/// copy a majority needs costs a hedge delay, not the deadline: every delivery through node 1
/// is acknowledged with node 2 paused (a refusal naming the body's quorum fails the test: a
/// majority was up), and once node 2 continues it gets every body from the background lane,
/// with no read asking for them.
#[test]
fn a_paused_member_costs_a_hedge_and_gets_its_copies_from_the_background() {
    let mut rng = Rng::new(seed("t56_bodies pause"));
    let cluster = start();
    // Node 1 pushes the copy its answers wait on to the member that answered fastest, and to a
    // member with no record last: after this delivery node 2 (tried first, members in id order)
    // is the one it would choose.
    let warm = message(&mut rng, 4_000);
    assert_eq!(deliver(&cluster.node(1).api, "INBOX", "", &warm).status, 200);
    cluster.signal(2, libc::SIGSTOP);
    let mut ids = Vec::new();
    for i in 0..12 {
        let bytes = message(&mut rng, if i % 3 == 0 { 400_000 } else { 4_000 + i * 1_000 });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = deliver(&cluster.node(1).api, "INBOX", "", &bytes);
            if answer.status == 200 {
                break;
            }
            let text = answer.json().to_string();
            assert!(
                !text.contains("held by"),
                "delivery {i} missed the body's majority with nodes 1 and 3 up: {text}"
            );
            // A group whose leader was node 2 elects another: retry until it has.
            assert!(std::time::Instant::now() < deadline, "delivery {i}: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
        ids.push(body_id(&bytes));
    }
    for id in &ids {
        assert!(
            stored_path(&cluster, 3, id).is_file(),
            "node 3 holds every acknowledged body"
        );
    }
    cluster.signal(2, libc::SIGCONT);
    wait_until(
        Duration::from_secs(60),
        "node 2 has every body from the background lane",
        || ids.iter().all(|id| stored_path(&cluster, 2, id).is_file()),
    );
    assert_eq!(
        bodies_status(&cluster, 2)["fetches"],
        0,
        "no read fetched a body on node 2"
    );
}
