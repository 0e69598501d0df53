//! A follower that was down catches up from the leader's log when it missed little, and by
//! snapshot when the entries it missed are gone. A 3-node cluster with `--snapshot-interval 20`
//! and `--log-retention 10` (automatic rebalancing off, so no leader change adds entries): the
//! test stops a follower of one group (SIGTERM), appends fewer entries than the retention,
//! restarts it and checks that it caught up without a snapshot (`snapshots_installed` 0); then
//! stops it again, appends several snapshots' worth until the leader's log no longer holds what
//! the follower has, restarts it and checks that it installed a snapshot. Finally every node holds
//! the same messages and, after a simultaneous SIGTERM, byte-identical `live/` files.

mod support;

use std::time::{Duration, Instant};

use dovetail::placement::group_of;
use serde_json::{json, Value};
use support::{files_of, get, post, TestCluster};

const GROUPS: u32 = 2;
const USER: &str = "carol@example.com";

/// Appends one message (`seq` makes its guid) through `api`; returns the write's token.
fn append(api: &str, seq: u64) -> u64 {
    let body = json!({
        "messages": [{"guid": format!("{seq:032x}"), "size": seq}],
        "client_id": "t30-catch-up",
        "request_seq": seq,
    });
    let (s, v) = post(api, &format!("/v1/users/{USER}/mailboxes/INBOX/messages"), &body).unwrap();
    assert_eq!(s, 200, "append {seq}: {v}");
    v["token"].as_u64().unwrap()
}

fn field(status: &Option<Value>, name: &str) -> Option<u64> {
    status.as_ref().and_then(|g| g[name].as_u64())
}

#[test]
fn a_returning_follower_catches_up_from_the_log_or_by_snapshot() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(
        3,
        GROUPS,
        &[
            "--snapshot-interval",
            "20",
            "--log-retention",
            "10",
            "--rebalance-interval-ms",
            "0",
        ],
    );
    let group = group_of(USER, GROUPS);
    let leader = cluster.leader_of(group, 1).expect("a leader");
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let api = cluster.node(leader).api.clone();
    let (s, v) = post(
        &api,
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let mut seq = 0;
    for _ in 0..25 {
        seq += 1;
        append(&api, seq);
    }
    let applied = cluster.wait_applied_equal(group, 26, Duration::from_secs(20));

    // Log path: the follower misses fewer entries than the leader keeps behind its snapshot.
    assert!(cluster.stop(follower).success(), "{}", cluster.log(follower));
    for _ in 0..5 {
        seq += 1;
        append(&api, seq);
    }
    let purged = field(&cluster.group_status(leader, group), "purged");
    assert!(
        purged.is_none_or(|p| p <= applied),
        "precondition: the leader still holds entry {} (purged through {purged:?})",
        applied + 1
    );
    cluster.restart(follower);
    cluster.wait_applied_equal(group, applied + 5, Duration::from_secs(20));
    let status = cluster.group_status(follower, group);
    assert_eq!(
        field(&status, "snapshots_installed"),
        Some(0),
        "caught up from the log: {status:?}"
    );

    // Snapshot path: the follower misses several snapshots' worth; its next entry is purged.
    let applied = field(&status, "applied").unwrap();
    assert!(cluster.stop(follower).success(), "{}", cluster.log(follower));
    for _ in 0..80 {
        seq += 1;
        append(&api, seq);
    }
    support::wait_until(
        Duration::from_secs(20),
        "the leader purged the entries the follower misses",
        || field(&cluster.group_status(leader, group), "purged").is_some_and(|p| p > applied + 1),
    );
    cluster.restart(follower);
    let token = cluster.wait_applied_equal(group, applied + 80, Duration::from_secs(30));
    let status = cluster.group_status(follower, group);
    assert!(
        field(&status, "snapshots_installed").is_some_and(|n| n >= 1),
        "caught up by snapshot: {status:?}\n{}",
        cluster.log(follower)
    );

    // Every node holds the same messages, then the same files.
    let mut views = Vec::new();
    for n in 1..=3 {
        let path = format!("/v1/users/{USER}/mailboxes/INBOX/messages?consistency=local&min_applied={token}");
        let (s, v) = get(&cluster.node(n).api, &path).unwrap();
        assert_eq!(s, 200, "{v}");
        views.push(v["messages"].clone());
    }
    assert_eq!(views[0].as_array().map(Vec::len), Some(seq as usize));
    assert!(views.iter().all(|v| v == &views[0]), "replicas differ");
    cluster.stop_all();
    let live = |n| files_of(&cluster.group_dir(n, group).join("live"));
    let (a, b, c) = (live(1), live(2), live(3));
    assert_eq!(a.keys().collect::<Vec<_>>(), c.keys().collect::<Vec<_>>());
    for name in a.keys() {
        assert!(
            a[name] == b[name] && b[name] == c[name],
            "{name} differs between replicas"
        );
    }
    eprintln!("t30_catch_up: {:?}", started.elapsed());
}
