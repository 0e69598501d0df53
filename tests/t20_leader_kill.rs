//! An acknowledged append survives kill -9 of its group's leader, and failover neither loses nor
//! duplicates nor rebinds a UID (ARCHITECTURE.md §6 invariants 1, 2 and 4, 7). A 3-node cluster of real
//! processes; several client threads stream appends into one mailbox, each with its own
//! `client_id` and increasing `request_seq`, sending to random nodes and retrying a failed or
//! timed-out request with the same `(client_id, request_seq)` against the next node until it is
//! acknowledged (or, past a limit, recorded as unknown). A reader thread polls the mailbox status
//! linearizably. Mid-stream the group's leader is killed with SIGKILL. Checked afterwards, on both
//! survivors, read linearizably and locally at the highest token: every acknowledged append is
//! present at exactly its acknowledged UIDs; no UID appears twice and no message GUID at two UIDs
//! (a duplicate application would show one); every record comes from a request the clients sent;
//! the acknowledged UID ranges are disjoint; and UIDNEXT and HIGHESTMODSEQ never decreased across
//! the reader's successive status reads. Then the killed node restarts and catches up, every node
//! is stopped at once, and the group's `live/` files are compared byte for byte.

#[path = "support/rng.rs"]
mod rng;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dovetail::placement::group_of;
use rng::{seed, Rng};
use serde_json::{json, Value};
use support::{files_of, get, post, post_retrying, wait_until, Retried, TestCluster};

const GROUPS: u32 = 2;
const CLIENTS: u64 = 4;
const USER: &str = "kill@example.com";

/// The GUID of message `i` of request `seq` of client `client`: unique per request, so a record
/// names the request that created it.
fn guid(client: u64, seq: u64, i: u64) -> String {
    format!("{:08x}{:016x}{:08x}", client + 1, seq, i)
}

/// An acknowledged append: its GUIDs in order and the UIDs the cluster answered.
#[derive(Debug, Clone)]
struct Acked {
    guids: Vec<String>,
    first_uid: u64,
    last_uid: u64,
    token: u64,
}

#[derive(Default)]
struct History {
    acked: Vec<Acked>,
    /// Requests given up on: they may or may not have been applied.
    unknown: Vec<Vec<String>>,
    /// Acknowledgements received after the kill.
    acked_after_kill: usize,
}

/// Checks one replica's records against the clients' history: every record's GUID was sent, no
/// UID holds two records, no GUID sits at two UIDs (an append applied twice), and every
/// acknowledged append sits at exactly its acknowledged UIDs. Returns the highest UID.
fn check_records(records: &[Value], acked: &[Acked], sent: &BTreeSet<&String>) -> Result<u64, String> {
    let mut by_uid: BTreeMap<u64, String> = BTreeMap::new();
    let mut by_guid: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        let (uid, g) = (
            r["uid"].as_u64().unwrap(),
            r["guid"].as_str().unwrap().to_string(),
        );
        if !sent.contains(&g) {
            return Err(format!("UID {uid} holds GUID {g} that no client sent"));
        }
        if let Some(other) = by_uid.insert(uid, g.clone()) {
            return Err(format!("UID {uid} bound to {other} and {g}"));
        }
        if let Some(other) = by_guid.insert(g.clone(), uid) {
            return Err(format!(
                "GUID {g} at UIDs {other} and {uid}: an append was applied twice"
            ));
        }
    }
    for a in acked {
        for (uid, g) in (a.first_uid..=a.last_uid).zip(&a.guids) {
            if by_uid.get(&uid) != Some(g) {
                return Err(format!(
                    "acknowledged UID {uid} ({g}) missing or rebound: {:?}",
                    by_uid.get(&uid)
                ));
            }
        }
    }
    Ok(by_uid.keys().next_back().copied().unwrap_or(0))
}

/// The checker rejects bad histories: a lost acknowledged append, a duplicate application, a
/// rebound UID, a record nobody sent.
#[test]
fn checker_rejects_bad_histories() {
    let record = |uid: u64, g: &str| json!({"uid": uid, "guid": g});
    let (a, b, c) = (guid(0, 1, 0), guid(0, 1, 1), guid(1, 1, 0));
    let acked = [Acked {
        guids: vec![a.clone(), b.clone()],
        first_uid: 1,
        last_uid: 2,
        token: 5,
    }];
    let sent: BTreeSet<&String> = [&a, &b, &c].into_iter().collect();
    let good = [record(1, &a), record(2, &b), record(3, &c)];
    assert_eq!(check_records(&good, &acked, &sent), Ok(3));
    let bad: [&[Value]; 5] = [
        &[record(1, &a), record(3, &c)],                // acknowledged UID 2 lost
        &[record(1, &a), record(2, &b), record(3, &a)], // applied twice
        &[record(1, &a), record(2, &c)],                // UID 2 rebound
        &[record(1, &a), record(2, &b), record(2, &c)], // UID 2 bound twice
        &[record(1, &a), record(2, &b), record(3, &guid(9, 9, 9))], // never sent
    ];
    for (i, records) in bad.iter().enumerate() {
        assert!(
            check_records(records, &acked, &sent).is_err(),
            "bad history {i} accepted"
        );
    }
}

#[test]
fn acknowledged_appends_survive_leader_kill() {
    let seed = seed("t20_leader_kill");
    let mut cluster = TestCluster::start(
        3,
        GROUPS,
        &["--request-timeout-ms", "3000", "--rebalance-interval-ms", "0"],
    );
    let group = group_of(USER, GROUPS);
    let addrs: Vec<String> = (1..=3).map(|n| cluster.node(n).api.clone()).collect();
    let mailbox_path = format!("/v1/users/{USER}/mailboxes/INBOX");
    let (s, v) = post(
        &addrs[0],
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX", "client_id": "t20-setup", "request_seq": 1}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let uid_validity = v["uid_validity"].as_u64().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicUsize::new(0));
    let history = Arc::new(Mutex::new(History::default()));

    let writers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addrs, stop, killed, acked_total, history) = (
                addrs.clone(),
                stop.clone(),
                killed.clone(),
                acked_total.clone(),
                history.clone(),
            );
            let path = format!("{mailbox_path}/messages");
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (client + 1).wrapping_mul(0x1234_5678_9abc_def1));
                let client_id = format!("t20-kill-{client}");
                let mut seq = 0;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    let count = 1 + rng.below(3);
                    let guids: Vec<String> = (0..count).map(|i| guid(client, seq, i)).collect();
                    let messages: Vec<Value> = guids
                        .iter()
                        .map(|g| json!({"guid": g, "size": 1000 + seq, "flags": []}))
                        .collect();
                    let body = json!({"messages": messages, "client_id": client_id, "request_seq": seq});
                    let started = Instant::now();
                    let give_up =
                        || stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(20);
                    let answer = post_retrying(&addrs, rng.below(3) as usize, &path, &body, give_up);
                    let mut history = history.lock().unwrap();
                    match answer {
                        Retried::Answered(200, v) => {
                            let (first_uid, last_uid) =
                                (v["first_uid"].as_u64().unwrap(), v["last_uid"].as_u64().unwrap());
                            assert_eq!(last_uid + 1 - first_uid, count, "{client_id}/{seq}: {v}");
                            assert_eq!(v["uid_validity"].as_u64(), Some(uid_validity), "{v}");
                            history.acked.push(Acked {
                                guids,
                                first_uid,
                                last_uid,
                                token: v["token"].as_u64().unwrap(),
                            });
                            if killed.load(Ordering::SeqCst) {
                                history.acked_after_kill += 1;
                            }
                            acked_total.fetch_add(1, Ordering::SeqCst);
                        }
                        Retried::Answered(status, v) => panic!("{client_id}/{seq}: {status} {v}"),
                        Retried::Unknown => history.unknown.push(guids),
                    }
                }
            })
        })
        .collect();

    // The reader: successive linearizable status reads (through any node) never go back.
    let reader = {
        let (addrs, stop, mailbox_path) = (addrs.clone(), stop.clone(), mailbox_path.clone());
        std::thread::spawn(move || {
            let mut last = (0u64, 0u64);
            let mut reads = 0;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                if let Ok((200, v)) = get(&addrs[i % 3], &format!("{mailbox_path}?consistency=linearizable"))
                {
                    let now = (
                        v["uid_next"].as_u64().unwrap(),
                        v["highest_modseq"].as_u64().unwrap(),
                    );
                    assert!(
                        now.0 >= last.0 && now.1 >= last.1,
                        "UIDNEXT/HIGHESTMODSEQ went back from {last:?} to {now:?} (node {})",
                        i % 3 + 1
                    );
                    last = now;
                    reads += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            reads
        })
    };

    wait_until(Duration::from_secs(30), "20 appends acknowledged", || {
        acked_total.load(Ordering::SeqCst) >= 20
    });
    let leader = cluster.leader_of(group, 1).expect("a leader");
    eprintln!("killing node {leader}, the leader of group {group}");
    killed.store(true, Ordering::SeqCst);
    cluster.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    wait_until(
        Duration::from_secs(40),
        "20 appends acknowledged after the kill",
        || history.lock().unwrap().acked_after_kill >= 20,
    );
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("a writer failed");
    }
    let reads = reader.join().expect("the reader failed");
    let history = Arc::try_unwrap(history).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "acknowledged {} appends ({} after the kill), {} unknown, {reads} status reads",
        history.acked.len(),
        history.acked_after_kill,
        history.unknown.len()
    );
    assert!(reads > 0, "the reader never got a status");

    // The acknowledged UID ranges are disjoint.
    let mut acked_uids = BTreeSet::new();
    for a in &history.acked {
        for uid in a.first_uid..=a.last_uid {
            assert!(acked_uids.insert(uid), "UID {uid} acknowledged twice");
        }
    }
    let sent: BTreeSet<&String> = history
        .acked
        .iter()
        .flat_map(|a| &a.guids)
        .chain(history.unknown.iter().flatten())
        .collect();
    let token = history.acked.iter().map(|a| a.token).max().unwrap();

    let mut views = Vec::new();
    for &n in &survivors {
        for query in [
            "consistency=linearizable",
            &format!("consistency=local&min_applied={token}"),
        ] {
            let (s, v) = get(
                &cluster.node(n).api,
                &format!("{mailbox_path}/messages?limit=10000&{query}"),
            )
            .unwrap();
            assert_eq!(s, 200, "node {n} {query}: {v}\n{}", cluster.log(n));
            let records = v["messages"].as_array().unwrap().clone();
            let max_uid = check_records(&records, &history.acked, &sent)
                .unwrap_or_else(|e| panic!("node {n} ({query}): {e}"));
            let (s, status) = get(&cluster.node(n).api, &format!("{mailbox_path}?{query}")).unwrap();
            assert_eq!(s, 200, "{status}");
            assert!(status["uid_next"].as_u64().unwrap() > max_uid, "{status}");
            assert_eq!(status["exists"].as_u64(), Some(records.len() as u64), "{status}");
            views.push(records);
        }
    }
    for v in &views[1..] {
        assert_eq!(v, &views[0], "the survivors' records differ");
    }

    // The killed node comes back and catches up; then all stop at once and compare files.
    cluster.restart(leader);
    let applied = survivors
        .iter()
        .filter_map(|&n| cluster.group_status(n, group)?["applied"].as_u64())
        .max()
        .unwrap();
    cluster.wait_applied_equal(group, applied, Duration::from_secs(30));
    cluster.stop_all();
    let live = |n| files_of(&cluster.group_dir(n, group).join("live"));
    let (a, b, c) = (live(1), live(2), live(3));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a.keys().collect::<Vec<_>>(), c.keys().collect::<Vec<_>>());
    assert!(a.contains_key("manifest"), "{:?}", a.keys());
    for name in a.keys() {
        assert!(
            a[name] == b[name] && b[name] == c[name],
            "{name} differs between replicas"
        );
    }
}
