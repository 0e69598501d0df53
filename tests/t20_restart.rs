//! A whole-cluster restart loses nothing and the UID space moves on (ARCHITECTURE.md §6 invariants 2, 4
//! and 5). A 3-node cluster of real processes; several users spread over at least two groups get
//! mailboxes (created, one renamed, one deleted), appended messages, flag stores and an expunge,
//! each write with a `client_id` and `request_seq`. The test records every mailbox's status and
//! records (read linearizably), then takes the whole cluster down, either by SIGTERM (a drain) or
//! by SIGKILL of every node (nothing flushed but the Raft log, which is fsync'd before a write is
//! acknowledged), and starts every node again. Checked after the restart, through every node:
//! the mailbox lists, statuses (UIDNEXT, HIGHESTMODSEQ, counts) and records are exactly as
//! before; a retry of an acknowledged request still returns its first outcome (the session table
//! survived); and a new append gets UIDs from the old UIDNEXT on, with a higher MODSEQ. The
//! SIGKILL variant runs with a small snapshot interval and log retention, so that recovery
//! combines a snapshot with the log suffix after it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dovetail::placement::group_of;
use serde_json::{json, Value};
use support::{get, post, request, TestCluster};

const GROUPS: u32 = 3;

/// A user's mailbox -> (status, records), read linearizably through node `via`.
fn snapshot_of(cluster: &TestCluster, via: u64, user: &str) -> BTreeMap<String, (Value, Value)> {
    let api = &cluster.node(via).api;
    let (s, list) = get(api, &format!("/v1/users/{user}/mailboxes")).unwrap();
    assert_eq!(s, 200, "{list}\n{}", cluster.log(via));
    let mut mailboxes = BTreeMap::new();
    for m in list["mailboxes"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        let (s, mut status) = get(api, &format!("/v1/users/{user}/mailboxes/{name}")).unwrap();
        assert_eq!(s, 200, "{status}");
        let (s, records) = get(
            api,
            &format!("/v1/users/{user}/mailboxes/{name}/messages?limit=10000"),
        )
        .unwrap();
        assert_eq!(s, 200, "{records}");
        // `applied` is the node's position, not mailbox state.
        status.as_object_mut().unwrap().remove("applied");
        mailboxes.insert(name, (status, records["messages"].clone()));
    }
    mailboxes
}

/// One write with a session; asserts the expected status and returns the body.
fn write(
    api: &str,
    method: &str,
    path: &str,
    mut body: Value,
    client: &mut (String, u64),
    expect: u16,
) -> Value {
    client.1 += 1;
    let (s, v) = if method == "DELETE" {
        // A delete carries its session in the query.
        let path = format!("{path}?client_id={}&request_seq={}", client.0, client.1);
        request(api, method, &path, None).unwrap()
    } else {
        body["client_id"] = json!(client.0);
        body["request_seq"] = json!(client.1);
        request(api, method, path, Some(&body)).unwrap()
    };
    assert_eq!(s, expect, "{method} {path} {body}: {v}");
    v
}

fn restart_preserves_everything(kill: bool, extra_args: &[&str]) {
    let mut cluster = TestCluster::start(3, GROUPS, extra_args);
    let users: Vec<String> = (0..6).map(|i| format!("user{i}@restart.example")).collect();
    let groups: BTreeSet<u32> = users.iter().map(|u| group_of(u, GROUPS)).collect();
    assert!(
        groups.len() >= 2,
        "the users span at least two groups: {groups:?}"
    );

    // Writes, through the three nodes in turn.
    for (i, user) in users.iter().enumerate() {
        let api = cluster.node(1 + i as u64 % 3).api.clone();
        let mut client = (format!("t20-restart-{i}"), 0);
        let base = format!("/v1/users/{user}/mailboxes");
        for name in ["INBOX", "Sent", "Trash", "Old"] {
            write(&api, "POST", &base, json!({"name": name}), &mut client, 201);
        }
        write(
            &api,
            "POST",
            &format!("{base}/Trash/rename"),
            json!({"to": "Junk"}),
            &mut client,
            200,
        );
        write(
            &api,
            "DELETE",
            &format!("{base}/Old"),
            json!({}),
            &mut client,
            200,
        );
        for (k, (mailbox, batches)) in [("INBOX", 4u64), ("Sent", 2), ("Junk", 1)]
            .into_iter()
            .enumerate()
        {
            for b in 0..batches {
                let messages: Vec<Value> = (0..3u64)
                    .map(|m| {
                        json!({"guid": format!("{:08x}{:08x}{:08x}{:08x}", i + 1, k, b, m),
                               "size": 500 + m, "internal_date": 1_700_000_000 + b as i64, "flags": []})
                    })
                    .collect();
                let path = format!("{base}/{mailbox}/messages");
                write(
                    &api,
                    "POST",
                    &path,
                    json!({"messages": messages}),
                    &mut client,
                    200,
                );
            }
        }
        let store =
            |uids: &str, mode: &str, flags: Value| json!({"uids": uids, "mode": mode, "flags": flags});
        write(
            &api,
            "POST",
            &format!("{base}/INBOX/store"),
            store("1:6", "add", json!(["\\Seen"])),
            &mut client,
            200,
        );
        write(
            &api,
            "POST",
            &format!("{base}/INBOX/store"),
            store("2,4", "add", json!(["\\Deleted", "$Work"])),
            &mut client,
            200,
        );
        write(
            &api,
            "POST",
            &format!("{base}/INBOX/store"),
            store("5", "remove", json!(["\\Seen"])),
            &mut client,
            200,
        );
        write(
            &api,
            "POST",
            &format!("{base}/INBOX/expunge"),
            json!({"uids": "2,4"}),
            &mut client,
            200,
        );
    }

    // The last request of its client (only the last one's outcome is remembered), for a retry
    // after the restart.
    let mut client = ("t20-restart-last".to_string(), 0);
    let last_path = format!("/v1/users/{}/mailboxes/Sent/messages", users[0]);
    let last_messages = json!([{"guid": format!("{:032x}", 0xabcdefu32), "size": 7}]);
    let last_api = cluster.node(2).api.clone();
    let first = write(
        &last_api,
        "POST",
        &last_path,
        json!({"messages": last_messages}),
        &mut client,
        200,
    );

    let before: BTreeMap<&String, _> = users.iter().map(|u| (u, snapshot_of(&cluster, 1, u))).collect();
    for (user, mailboxes) in &before {
        let names: Vec<&String> = mailboxes.keys().collect();
        assert_eq!(names, ["INBOX", "Junk", "Sent"], "{user}");
        let (inbox, records) = &mailboxes["INBOX"];
        assert_eq!(
            (inbox["exists"].as_u64(), inbox["uid_next"].as_u64()),
            (Some(10), Some(13)),
            "{inbox}"
        );
        assert_eq!(records.as_array().unwrap().len(), 10);
    }

    if kill {
        // The small snapshot interval did cut snapshots: recovery reads one and replays after it.
        for &g in &groups {
            support::wait_until(
                Duration::from_secs(20),
                &format!("group {g} has a snapshot"),
                || {
                    (1..=3).all(|n| {
                        cluster
                            .group_status(n, g)
                            .is_some_and(|s| !s["snapshot"].is_null())
                    })
                },
            );
        }
    }

    // Down, and up again.
    if kill {
        for n in 1..=3 {
            cluster.kill(n);
        }
    } else {
        cluster.stop_all();
    }
    for n in 1..=3 {
        cluster.restart(n);
    }
    cluster.wait_for_leaders(Duration::from_secs(60));

    for n in 1..=3 {
        for user in &users {
            let after = snapshot_of(&cluster, n, user);
            assert!(
                after == before[user],
                "node {n}, {user}: state changed across the restart\nbefore {:?}\nafter  {:?}\n{}",
                before[user],
                after,
                cluster.log(n)
            );
        }
    }

    // A retry of the last acknowledged append is answered from the surviving session table.
    let body = json!({"messages": last_messages, "client_id": client.0, "request_seq": client.1});
    let (s, v) = post(&cluster.node(3).api, &last_path, &body).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["first_uid"], &v["last_uid"], &v["modseq"]),
        (&first["first_uid"], &first["last_uid"], &first["modseq"]),
        "a retry after the restart was applied again"
    );

    // New writes continue with fresh UIDs and higher MODSEQs.
    for (i, user) in users.iter().enumerate() {
        let api = cluster.node(3 - i as u64 % 3).api.clone();
        let (status, _) = &before[user]["INBOX"];
        let message = json!({"guid": format!("{:08x}{:024x}", i, 0xffffu32), "size": 1});
        let (s, v) = post(
            &api,
            &format!("/v1/users/{user}/mailboxes/INBOX/messages"),
            &json!({"messages": [message]}),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["first_uid"], status["uid_next"], "{user}: {v} after {status}");
        assert!(
            v["modseq"].as_u64() > status["highest_modseq"].as_u64(),
            "{user}: {v} after {status}"
        );
        let (s, now) = get(&api, &format!("/v1/users/{user}/mailboxes/INBOX")).unwrap();
        assert_eq!(s, 200, "{now}");
        assert_eq!(
            now["uid_next"].as_u64(),
            Some(status["uid_next"].as_u64().unwrap() + 1),
            "{now}"
        );
        assert_eq!(
            now["exists"].as_u64(),
            Some(status["exists"].as_u64().unwrap() + 1),
            "{now}"
        );
        assert_eq!(now["uid_validity"], status["uid_validity"], "{now}");
    }
}

#[test]
fn sigterm_of_every_node_loses_nothing() {
    restart_preserves_everything(false, &[]);
}

#[test]
fn sigkill_of_every_node_loses_no_acknowledged_write() {
    restart_preserves_everything(true, &["--snapshot-interval", "7", "--log-retention", "3"]);
}
