//! SIGTERM drains without losing an acknowledged write. Property: a node sent SIGTERM stops
//! accepting, finishes its in-flight writes, flushes and exits with status 0, and every append
//! acknowledged by any node (before, during or after the drain) is in the index afterwards,
//! exactly once. Provocation: a 3-node cluster (2 groups, no automatic rebalancing); three client
//! threads stream one-message appends, each with a `client_id` and `request_seq`, through all
//! nodes in turn, retrying the same request on the next node on a connection error or a 503.
//! During the stream node 2 gets SIGTERM, is restarted, then node 3 gets SIGTERM (a majority
//! always runs). Check: both stopped nodes exit 0; after the stream, linearizable reads through
//! the running nodes return every acknowledged message with the UID it was acknowledged with and
//! no message twice; after node 3 restarts, every node applied each group equally and returns
//! the same records.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{get, post, post_retrying, Retried, TestCluster};

const THREADS: usize = 3;

fn user(t: usize) -> String {
    format!("drain{t}@sigterm.example")
}

/// A user's INBOX records, guid -> uid, read linearizably through `api`; asserts no guid twice.
fn records(cluster: &TestCluster, via: u64, user: &str) -> BTreeMap<String, u64> {
    let api = &cluster.node(via).api;
    let path = format!("/v1/users/{user}/mailboxes/INBOX/messages?limit=10000");
    let (s, v) = get(api, &path).unwrap();
    assert_eq!(s, 200, "node {via}: {v}\n{}", cluster.log(via));
    let mut out = BTreeMap::new();
    for m in v["messages"].as_array().unwrap() {
        let guid = m["guid"].as_str().unwrap().to_string();
        let uid = m["uid"].as_u64().unwrap();
        assert!(out.insert(guid.clone(), uid).is_none(), "{user}: {guid} twice");
    }
    out
}

#[test]
fn sigterm_drains_and_loses_no_acknowledged_append() {
    let mut cluster = TestCluster::start(3, 2, &["--rebalance-interval-ms", "0"]);
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.api.clone()).collect();
    for t in 0..THREADS {
        let body = json!({"name": "INBOX"});
        let (s, v) = post(&addrs[0], &format!("/v1/users/{}/mailboxes", user(t)), &body).unwrap();
        assert_eq!(s, 201, "{v}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..THREADS)
        .map(|t| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            std::thread::spawn(move || {
                let path = format!("/v1/users/{}/mailboxes/INBOX/messages", user(t));
                let mut acked: BTreeMap<String, u64> = BTreeMap::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let guid = format!("{:016x}{:016x}", t, seq);
                    let body = json!({"messages": [{"guid": guid, "size": 100}],
                                      "client_id": format!("t20-drain-{t}"), "request_seq": seq});
                    let deadline = Instant::now() + Duration::from_secs(15);
                    match post_retrying(&addrs, t + seq as usize, &path, &body, || {
                        Instant::now() > deadline
                    }) {
                        Retried::Answered(200, v) => {
                            acked.insert(guid, v["first_uid"].as_u64().unwrap());
                        }
                        Retried::Answered(s, v) => panic!("append {guid}: {s} {v}"),
                        Retried::Unknown => {}
                    }
                }
                acked
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    let status = cluster.stop(2);
    assert!(status.success(), "node 2 exit {status}\n{}", cluster.log(2));
    std::thread::sleep(Duration::from_millis(1000));
    cluster.restart(2);
    cluster.wait_for_leaders(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1000));
    let status = cluster.stop(3);
    assert!(status.success(), "node 3 exit {status}\n{}", cluster.log(3));
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<BTreeMap<String, u64>> = streams.into_iter().map(|h| h.join().unwrap()).collect();
    let total: usize = acked.iter().map(|a| a.len()).sum();
    assert!(total >= 20, "only {total} appends acknowledged");

    let check = |cluster: &TestCluster, via: u64| -> Vec<BTreeMap<String, u64>> {
        (0..THREADS)
            .map(|t| {
                let found = records(cluster, via, &user(t));
                for (guid, uid) in &acked[t] {
                    assert_eq!(
                        found.get(guid),
                        Some(uid),
                        "node {via}, {}: acknowledged {guid} (uid {uid}) missing or moved",
                        user(t)
                    );
                }
                found
            })
            .collect()
    };
    for via in [1, 2] {
        check(&cluster, via);
    }

    cluster.restart(3);
    cluster.wait_for_leaders(Duration::from_secs(30));
    for g in 0..2 {
        cluster.wait_applied_equal(g, 1, Duration::from_secs(30));
    }
    let reference = check(&cluster, 1);
    for via in [2, 3] {
        assert!(
            check(&cluster, via) == reference,
            "node {via} differs from node 1"
        );
    }
}
