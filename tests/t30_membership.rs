//! Growing a cluster from 3 to 5 nodes and shrinking it back loses no acknowledged write. Nodes 4
//! and 5 start as new, unbootstrapped processes; the test adds them as learners through the
//! admin API of different members, waits until they have caught up, promotes them to voters
//! (automatic rebalancing then hands them leaderships), and removes them again — while a
//! background thread keeps appending through the API of nodes 1-3, retrying on 503. Checked:
//! membership as every member reports it after each step, every acknowledged append present with
//! its UID on a linearizable read, and byte-identical `live/` files of every group on nodes 1-3
//! after a simultaneous SIGTERM.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{files_of, get, post, post_retrying, request, wait_until, Retried, TestCluster};

const GROUPS: u32 = 4;
const USERS: [&str; 4] = [
    "u0@example.com",
    "u1@example.com",
    "u2@example.com",
    "u3@example.com",
];

/// Whether every group, as node `via` sees it, has exactly these voters and learners.
fn membership_is(cluster: &TestCluster, via: u64, voters: &[u64], learners: &[u64]) -> bool {
    (0..GROUPS).all(|g| {
        cluster.group_status(via, g).is_some_and(|s| {
            let ids = |v: &Value| -> Vec<u64> {
                v.as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default()
            };
            ids(&s["voters"]) == voters && ids(&s["learners"]) == learners
        })
    })
}

/// Calls an admin endpoint, retrying on 503 (each membership operation is idempotent).
fn admin(api: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = request(api, method, path, body).unwrap();
        if s == 200 {
            return v;
        }
        assert!(s == 503 && Instant::now() < deadline, "{method} {path}: {s} {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn grow_to_five_and_shrink_to_three_under_writes() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(3, GROUPS, &["--rebalance-interval-ms", "1000"]);
    let addrs: Vec<String> = (1..=3).map(|n| cluster.node(n).api.clone()).collect();
    for user in USERS {
        let (s, v) = post(
            &addrs[0],
            &format!("/v1/users/{user}/mailboxes"),
            &json!({"name": "INBOX"}),
        )
        .unwrap();
        assert_eq!(s, 201, "{v}");
    }

    // The writer: round-robin over users and nodes 1-3; records each acknowledged append's UID.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<(String, String), u64>>> = Arc::default();
    let writer = {
        let (stop, acked, addrs) = (stop.clone(), acked.clone(), addrs.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let user = USERS[seq as usize % USERS.len()];
                let guid = format!("{seq:032x}");
                let body = json!({
                    "messages": [{"guid": guid, "size": seq}],
                    "client_id": format!("t30-{user}"),
                    "request_seq": seq,
                });
                let path = format!("/v1/users/{user}/mailboxes/INBOX/messages");
                let give_up = Instant::now() + Duration::from_secs(30);
                match post_retrying(&addrs, seq as usize, &path, &body, || Instant::now() > give_up) {
                    Retried::Answered(200, v) => {
                        acked
                            .lock()
                            .unwrap()
                            .insert((user.to_string(), guid), v["first_uid"].as_u64().unwrap());
                    }
                    Retried::Answered(s, v) => panic!("append {seq}: {s} {v}"),
                    Retried::Unknown => panic!("append {seq}: no answer for 30 s"),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seq
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    wait_until(Duration::from_secs(20), "appends flow", || acked_count() >= 20);

    // Grow: two new processes, added as learners through different members.
    let n4 = cluster.add_node();
    let n5 = cluster.add_node();
    for (via, id) in [(1, n4), (2, n5)] {
        let node = cluster.node(id);
        let body = json!({"node_id": id, "peer_addr": node.peer, "api_addr": node.api});
        let v = admin(
            &cluster.node(via).api,
            "POST",
            "/admin/members/learners",
            Some(&body),
        );
        assert_eq!(v["role"], "learner", "{v}");
    }
    wait_until(
        Duration::from_secs(20),
        "every member sees learners 4 and 5",
        || (1..=5).all(|n| membership_is(&cluster, n, &[1, 2, 3], &[4, 5])),
    );
    // Caught up: each learner applied, in every group, what node 1 had applied after adding them.
    let target: Vec<u64> = (0..GROUPS)
        .map(|g| cluster.group_status(1, g).unwrap()["applied"].as_u64().unwrap())
        .collect();
    wait_until(Duration::from_secs(20), "learners caught up", || {
        [n4, n5].iter().all(|&n| {
            (0..GROUPS).all(|g| {
                cluster
                    .group_status(n, g)
                    .and_then(|s| s["applied"].as_u64())
                    .is_some_and(|a| a >= target[g as usize])
            })
        })
    });
    for (via, id) in [(3, n4), (n4, n5)] {
        let v = admin(
            &cluster.node(via).api,
            "POST",
            "/admin/members/voters",
            Some(&json!({"node_id": id})),
        );
        assert_eq!(v["role"], "voter", "{v}");
    }
    wait_until(Duration::from_secs(20), "every member sees five voters", || {
        (1..=5).all(|n| membership_is(&cluster, n, &[1, 2, 3, 4, 5], &[]))
    });
    // Let the rebalancer hand the new voters some leaderships while writes continue.
    let before = acked_count();
    wait_until(Duration::from_secs(20), "the new voters lead groups", || {
        cluster
            .leader_counts(1)
            .is_some_and(|c| c.contains_key(&n4) || c.contains_key(&n5))
    });
    wait_until(Duration::from_secs(20), "appends flow on five voters", || {
        acked_count() >= before + 20
    });

    // Shrink: remove both again (whatever groups they lead).
    for (via, id) in [(n5, n4), (2, n5)] {
        let v = admin(
            &cluster.node(via).api,
            "DELETE",
            &format!("/admin/members/{id}"),
            None,
        );
        assert_eq!(v["removed"], true, "{v}");
    }
    wait_until(Duration::from_secs(20), "every member sees three voters", || {
        (1..=3).all(|n| membership_is(&cluster, n, &[1, 2, 3], &[]))
    });
    let before = acked_count();
    wait_until(
        Duration::from_secs(20),
        "appends flow on three voters again",
        || acked_count() >= before + 20,
    );
    let (s, v) = request(&cluster.node(1).api, "DELETE", "/admin/members/4", None).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("no_such_node")),
        "{v}"
    );

    stop.store(true, Ordering::SeqCst);
    let attempted = writer.join().expect("the writer failed");
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    eprintln!(
        "t30_membership: {} of {attempted} appends acknowledged",
        acked.len()
    );

    // Every acknowledged append is there, with its UID (linearizable reads through node 3).
    for user in USERS {
        let (s, v) = get(
            &addrs[2],
            &format!("/v1/users/{user}/mailboxes/INBOX/messages?limit=10000"),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        let present: BTreeMap<String, u64> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["guid"].as_str().unwrap().to_string(),
                    m["uid"].as_u64().unwrap(),
                )
            })
            .collect();
        for ((u, guid), uid) in acked.iter().filter(|((u, _), _)| u == user) {
            assert_eq!(
                present.get(guid),
                Some(uid),
                "{u}: acknowledged append {guid} lost"
            );
        }
    }

    // The removed nodes go first; then nodes 1-3 stop together and their files must agree.
    for id in [n4, n5] {
        assert!(cluster.stop(id).success(), "{}", cluster.log(id));
    }
    for g in 0..GROUPS {
        cluster.wait_applied_equal(g, 1, Duration::from_secs(20));
    }
    cluster.stop_all();
    for g in 0..GROUPS {
        let live: Vec<_> = (1..=3)
            .map(|n| files_of(&cluster.group_dir(n, g).join("live")))
            .collect();
        let names: BTreeSet<_> = live[0].keys().collect();
        for (i, files) in live.iter().enumerate() {
            assert_eq!(
                files.keys().collect::<BTreeSet<_>>(),
                names,
                "group {g}: node {} files",
                i + 1
            );
            for name in &names {
                assert!(
                    files[*name] == live[0][*name],
                    "group {g}: {name} differs on node {}",
                    i + 1
                );
            }
        }
    }
    eprintln!("t30_membership: {:?}", started.elapsed());
}
