//! Bodies in the background (issue "Message bodies"; `node::bodies`, `node::body_sweep`).
//! Property: a member that was down while bodies were delivered ends up holding every body its
//! index references — by the receiving node's backlog when it was short, by a full body resync
//! (the sweep) when the backlog overflowed — and the collector deletes exactly the bodies no
//! record references once they are older than the grace. Provocation: a 3-node cluster of real
//! processes with `--body-backlog-memory 640` (ten ids), `--body-backlog-disk 320` (twenty) and
//! `--body-gc-grace 3s`; node 3 is stopped while 5, then 25 (node 1, the sender, killed and
//! restarted meanwhile), then 40 bodies are delivered through node 1, and started again after
//! each; a delivery into a mailbox that does not exist leaves an orphan body, and one message
//! is expunged. Checks: which path was taken (memory, spill file, resync: node 1's backlog,
//! `background_pushed`, `backlog_overflows`, `resyncs_requested`, its spill file; node 3's
//! `background_fetched`, with no fetch on a read), every
//! referenced body in node 3's store and none missing, the orphan and the expunged message's
//! body gone from every node after the grace while every referenced body stays.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{get, post, raw_request, wait_until, TestCluster};

const USER: &str = "backlog@example.com";

fn body_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stored(cluster: &TestCluster, node: u64, id: &str) -> bool {
    cluster
        .node(node)
        .dir
        .join("blobs")
        .join(&id[..2])
        .join(id)
        .exists()
}

/// Node `node`'s backlog for node 3 (`Null` if it has none).
fn backlog_for_3(cluster: &TestCluster, node: u64) -> Value {
    bodies(cluster, node)["backlogs"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["node_id"] == 3).cloned())
        .unwrap_or(Value::Null)
}

fn bodies(cluster: &TestCluster, node: u64) -> Value {
    let (_, v) = get(&cluster.node(node).api, "/admin/status").unwrap();
    v["node"]["bodies"].clone()
}

/// Delivers `count` distinct small messages through node 1; their body ids and UIDs.
fn deliver(cluster: &TestCluster, tag: &str, count: usize) -> Vec<(String, u64)> {
    (0..count)
        .map(|i| {
            let bytes = format!("Subject: {tag} {i}\r\n\r\n{}", "x".repeat(2000 + i)).into_bytes();
            let answer = raw_request(
                &cluster.node(1).api,
                "POST",
                &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
                &[("Content-Type", "message/rfc822")],
                &bytes,
            )
            .unwrap();
            assert_eq!(answer.status, 200, "{}", answer.json());
            (body_id(&bytes), answer.json()["first_uid"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn a_member_that_was_down_gets_every_body_and_unreferenced_ones_are_collected() {
    let mut cluster = TestCluster::start(
        3,
        2,
        &[
            "--body-backlog-memory",
            "640",
            "--body-backlog-disk",
            "320",
            "--body-gc-grace",
            "3s",
        ],
    );
    wait_until(Duration::from_secs(30), "every group at log encoding 3", || {
        get(&cluster.node(1).api, "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    let (status, v) = post(
        &cluster.node(1).api,
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(status, 201, "{v}");

    // A short absence: the backlog carries the bodies over.
    cluster.stop(3);
    let short = deliver(&cluster, "short", 5);
    // The pushes to node 3 fail after each answer (node 2 made the majority).
    wait_until(
        Duration::from_secs(10),
        "node 1's backlog for node 3 holds 5 bodies",
        || backlog_for_3(&cluster, 1)["queued"] == 5,
    );
    cluster.restart(3);
    wait_until(Duration::from_secs(30), "node 3 holds the 5 bodies", || {
        short.iter().all(|(id, _)| stored(&cluster, 3, id))
    });
    // Node 3 stores a pushed body before node 1 hears the answer and counts it: wait for the
    // sender's side too.
    wait_until(Duration::from_secs(30), "node 1's backlog drained", || {
        backlog_for_3(&cluster, 1).is_null()
    });
    let node1 = bodies(&cluster, 1);
    assert!(node1["background_pushed"].as_u64() >= Some(5), "{node1}");
    assert_eq!(node1["backlog_overflows"], 0, "{node1}");
    assert_eq!(node1["resyncs_requested"], 0, "{node1}");

    // A longer one: ten ids in memory, the next fifteen spilled to disk. Node 1 (the sender) is
    // killed and restarted meanwhile: the spilled ids survive it, the ten in memory do not, and
    // node 3's own sweep fetches those.
    cluster.stop(3);
    let medium = deliver(&cluster, "medium", 25);
    wait_until(Duration::from_secs(10), "15 ids spilled to disk", || {
        backlog_for_3(&cluster, 1)["spilled"] == 15
    });
    assert_eq!(backlog_for_3(&cluster, 1)["queued"], 10);
    cluster.kill(1);
    cluster.restart(1);
    wait_until(
        Duration::from_secs(30),
        "node 1 back with its spilled backlog",
        || {
            get(&cluster.node(1).api, "/admin/status").is_ok_and(|(_, v)| {
                v["node"]["bodies"]["backlogs"].as_array().is_some_and(|b| {
                    // Read back into memory as the sender takes it up again.
                    b.iter().any(|b| {
                        b["node_id"] == 3
                            && b["spilled"]
                                .as_u64()
                                .zip(b["queued"].as_u64())
                                .map(|(s, q)| s + q)
                                == Some(15)
                    })
                })
            })
        },
    );
    cluster.restart(3);
    wait_until(Duration::from_secs(60), "node 3 holds the 25 bodies", || {
        medium.iter().all(|(id, _)| stored(&cluster, 3, id))
    });
    wait_until(Duration::from_secs(30), "node 1's backlog drained", || {
        backlog_for_3(&cluster, 1).is_null()
    });
    let (node1, node3) = (bodies(&cluster, 1), bodies(&cluster, 3));
    assert!(node1["background_pushed"].as_u64() >= Some(15), "{node1}");
    assert_eq!(node1["backlog_overflows"], 0, "{node1}");
    assert_eq!(node1["resyncs_requested"], 0, "{node1}");
    assert!(
        node3["background_fetched"].as_u64() >= Some(1),
        "the lost memory tier: {node3}"
    );

    // A long one: memory and disk (twenty ids) overflow, node 3 is marked for a full resync,
    // and its sweep fetches what its index references.
    cluster.stop(3);
    let long = deliver(&cluster, "long", 40);
    wait_until(Duration::from_secs(10), "node 3 marked for a full resync", || {
        backlog_for_3(&cluster, 1)["resync"] == true
    });
    let node1 = bodies(&cluster, 1);
    assert_eq!(node1["backlog_overflows"], 1, "{node1}");
    assert!(
        !cluster.node(1).dir.join("body-backlog/3.ids").exists(),
        "the spill file goes"
    );
    cluster.restart(3);
    wait_until(Duration::from_secs(60), "node 3 holds the 40 bodies", || {
        long.iter().all(|(id, _)| stored(&cluster, 3, id))
    });
    wait_until(
        Duration::from_secs(30),
        "node 3's sweep finds nothing missing",
        || {
            let node3 = bodies(&cluster, 3);
            node3["sweeps"].as_u64() > Some(0) && node3["missing"] == 0
        },
    );
    // Node 3's own sweep at start may fetch everything before node 1's resync request lands.
    wait_until(
        Duration::from_secs(30),
        "node 1's resync request answered",
        || backlog_for_3(&cluster, 1).is_null(),
    );
    let (node1, node3) = (bodies(&cluster, 1), bodies(&cluster, 3));
    assert_eq!(node1["resyncs_requested"], 1, "{node1}");
    assert!(node3["background_fetched"].as_u64() >= Some(40), "{node3}");
    assert_eq!(node3["fetches"], 0, "no read fetched anything: {node3}");

    // The collector: an orphan body (its delivery was refused) and an expunged message's body
    // go after the grace; every referenced body stays.
    let orphan = b"Subject: orphan\r\n\r\nnobody references this".to_vec();
    let answer = raw_request(
        &cluster.node(1).api,
        "POST",
        &format!("/v1/users/{USER}/mailboxes/Nowhere/messages"),
        &[("Content-Type", "message/rfc822")],
        &orphan,
    )
    .unwrap();
    assert_eq!(answer.status, 404, "{}", answer.json());
    let orphan = body_id(&orphan);
    assert!(
        stored(&cluster, 1, &orphan),
        "stored before the entry was refused"
    );
    let (expunged, uid) = short[0].clone();
    let (status, v) = post(
        &cluster.node(1).api,
        &format!("/v1/users/{USER}/mailboxes/INBOX/expunge"),
        &json!({"uids": uid.to_string()}),
    )
    .unwrap();
    assert_eq!(status, 200, "{v}");
    wait_until(
        Duration::from_secs(30),
        "the orphan and the expunged body collected everywhere",
        || (1..=3).all(|n| !stored(&cluster, n, &orphan) && !stored(&cluster, n, &expunged)),
    );
    for n in 1..=3 {
        for (id, _) in short[1..].iter().chain(&medium).chain(&long) {
            assert!(stored(&cluster, n, id), "node {n} lost referenced body {id}");
        }
        let b = bodies(&cluster, n);
        assert!(b["collected"].as_u64() >= Some(1), "node {n}: {b}");
        assert_eq!(b["missing"], 0, "node {n}: {b}");
    }
}
