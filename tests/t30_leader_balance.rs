//! Group leaders spread evenly over the voters and come back to a node that returns. A 3-node
//! cluster with 6 groups and a 1 s rebalancing round: node 1 bootstraps (and at first tends to
//! lead everything), then the automatic rule must leave each node leading 2 groups. Node 3 is
//! killed (-9): its groups move to nodes 1 and 2 (3 each, and no transfer is attempted towards
//! the dead node). Node 3 restarts: leaders flow back until each node leads 2 again. Finally the
//! transfer-leader endpoint moves a named group to a named node, its errors are checked, and
//! `POST /admin/rebalance` answers with its plan while the cluster settles balanced again.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{post, wait_until, TestCluster};

const GROUPS: u32 = 6;

/// Whether every running node sees each of `leaders` leading `each` groups (and no other leader).
fn balanced(cluster: &TestCluster, leaders: &[u64], each: usize) -> bool {
    let expected: BTreeMap<u64, usize> = leaders.iter().map(|&n| (n, each)).collect();
    cluster
        .running()
        .iter()
        .all(|&via| cluster.leader_counts(via).is_some_and(|c| c == expected))
}

#[test]
fn leaders_spread_move_away_and_come_back() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(3, GROUPS, &["--rebalance-interval-ms", "1000"]);
    wait_until(Duration::from_secs(30), "each node leads 2 groups", || {
        balanced(&cluster, &[1, 2, 3], 2)
    });
    eprintln!("balanced after {:?}", started.elapsed());

    cluster.kill(3);
    wait_until(
        Duration::from_secs(20),
        "nodes 1 and 2 lead 3 groups each",
        || balanced(&cluster, &[1, 2], 3),
    );
    // The rule never targets the dead voter: the view stays put.
    std::thread::sleep(Duration::from_secs(3));
    assert!(balanced(&cluster, &[1, 2], 3), "{:?}", cluster.leader_counts(1));

    cluster.restart(3);
    wait_until(
        Duration::from_secs(30),
        "leaders come back: each node leads 2",
        || balanced(&cluster, &[1, 2, 3], 2),
    );
    eprintln!("rebalanced after restart at {:?}", started.elapsed());

    // Transfer a group led by node 1 to node 2, asking node 3.
    let api = cluster.node(3).api.clone();
    let group = (0..GROUPS).find(|&g| cluster.leader_of(g, 3) == Some(1)).unwrap();
    let (s, v) = post(
        &api,
        &format!("/admin/groups/{group}/transfer-leader"),
        &json!({"to": 2}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["group"].as_u64(), v["leader"].as_u64()),
        (Some(group as u64), Some(2))
    );
    wait_until(Duration::from_secs(5), "every node sees the new leader", || {
        (1..=3).all(|n| cluster.leader_of(group, n) == Some(2))
    });
    for (path, body, status, code) in [
        (
            "/admin/groups/99/transfer-leader",
            json!({"to": 2}),
            404,
            "no_such_group",
        ),
        (
            "/admin/groups/0/transfer-leader",
            json!({"to": 7}),
            404,
            "no_such_node",
        ),
        (
            "/admin/groups/0/transfer-leader",
            json!({"too": 2}),
            400,
            "invalid",
        ),
        (
            "/admin/groups/x/transfer-leader",
            json!({"to": 2}),
            400,
            "invalid",
        ),
        (
            "/admin/members/voters",
            json!({"node_id": 9}),
            404,
            "no_such_node",
        ),
        (
            "/admin/members/learners",
            json!({"node_id": 9, "peer_addr": "nowhere", "api_addr": "127.0.0.1:1"}),
            400,
            "invalid",
        ),
    ] {
        let (s, v) = post(&api, path, &body).unwrap();
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {body}: {v}"
        );
    }

    // The manual plan and the automatic rule both lead back to 2 each.
    let (s, v) = post(&api, "/admin/rebalance", &json!({})).unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(v["moves"].is_array(), "{v}");
    wait_until(Duration::from_secs(20), "balanced again", || {
        balanced(&cluster, &[1, 2, 3], 2)
    });
    eprintln!("t30_leader_balance: {:?}", started.elapsed());
}
