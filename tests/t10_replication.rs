//! Writes through a follower, reads linearizably through the third node, and byte-identical
//! replicas. A 3-node cluster of real processes; the test picks a group, sends every write to a
//! node that does not lead it (so the node must forward), reads through the remaining node with
//! `consistency=linearizable`, then checks each node's local view at the write's token, and
//! finally stops all nodes at once and compares the group's files byte for byte.

mod support;

use std::time::Duration;

use dovetail::placement::group_of;
use serde_json::json;
use support::{files_of, get, post, TestCluster};

const GROUPS: u32 = 4;

#[test]
fn writes_through_a_follower_replicate_byte_identically() {
    let mut cluster = TestCluster::start(3, GROUPS, &["--rebalance-interval-ms", "0"]);
    let user = "alice@example.com";
    let group = group_of(user, GROUPS);
    let leader = cluster.leader_of(group, 1).expect("a leader");
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let third = (1..=3).find(|&n| n != leader && n != follower).unwrap();
    let via = cluster.node(follower).api.clone();

    let (s, v) = post(
        &via,
        &format!("/v1/users/{user}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}\n{}", cluster.log(follower));
    let uid_validity = v["uid_validity"].as_u64().unwrap();

    let mut uids = Vec::new();
    let mut token = 0;
    for batch in 0..5u64 {
        let messages: Vec<_> = (0..3u64)
            .map(|i| json!({"guid": format!("{:032x}", batch * 10 + i + 1), "size": 100 + i, "flags": ["\\Seen"]}))
            .collect();
        let (s, v) = post(
            &via,
            &format!("/v1/users/{user}/mailboxes/INBOX/messages"),
            &json!({"messages": messages, "client_id": "t10", "request_seq": batch + 1}),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["group"], group);
        uids.extend(v["first_uid"].as_u64().unwrap()..=v["last_uid"].as_u64().unwrap());
        token = v["token"].as_u64().unwrap();
    }
    assert_eq!(
        uids,
        (1..=15).collect::<Vec<u64>>(),
        "UIDs are consecutive from 1"
    );

    // Linearizable read through the third node sees every write.
    let (s, v) = get(
        &cluster.node(third).api,
        &format!("/v1/users/{user}/mailboxes/INBOX"),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["exists"].as_u64(), v["uid_next"].as_u64()),
        (Some(15), Some(16))
    );
    assert_eq!(v["uid_validity"].as_u64(), Some(uid_validity));

    // Every node, read locally once it has applied the last write, holds the same records.
    let mut views = Vec::new();
    for n in 1..=3 {
        let path = format!("/v1/users/{user}/mailboxes/INBOX/messages?consistency=local&min_applied={token}");
        let (s, v) = get(&cluster.node(n).api, &path).unwrap();
        assert_eq!(s, 200, "{v}");
        views.push(v["messages"].clone());
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    assert_eq!(views[0].as_array().unwrap().len(), 15);

    // Stop every node at once (SIGTERM drains and flushes), then compare the group's files.
    support::wait_until(
        Duration::from_secs(10),
        "all nodes applied the same index",
        || {
            let applied: Vec<_> = (1..=3)
                .map(|n| {
                    get(&cluster.node(n).api, "/admin/status").unwrap().1["groups"][group as usize]["applied"]
                        .clone()
                })
                .collect();
            applied[0] == applied[1] && applied[1] == applied[2]
        },
    );
    for n in 1..=3 {
        cluster.signal(n, libc::SIGTERM);
    }
    for n in 1..=3 {
        assert!(
            cluster.stop_signalled(n).success(),
            "node {n} exit\n{}",
            cluster.log(n)
        );
    }
    let live = |n| files_of(&cluster.group_dir(n, group).join("live"));
    let (a, b, c) = (live(1), live(2), live(3));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.contains_key("manifest") && a.len() == 2, "{:?}", a.keys());
    for name in a.keys() {
        assert!(
            a[name] == b[name] && b[name] == c[name],
            "{name} differs between replicas"
        );
    }
}
