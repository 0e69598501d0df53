//! A write whose result the client never saw, retried with the same `(client_id, request_seq)`
//! through another node, is applied exactly once (Raft thesis §6.3 client sessions; ARCHITECTURE.md §6
//! invariants 1 and 4). A 3-node cluster of real processes; in each of several rounds a client
//! sends an append of two messages to the group's leader and the leader is killed with SIGKILL
//! a few milliseconds later (the delay varies by round and seed: before the request arrives,
//! while it replicates, after it committed), so the outcome is unknown to the client. The client
//! then retries the same request through the surviving nodes until it is acknowledged. Checked:
//! the acknowledged UIDs are exactly the two next UIDs after the previous round, the mailbox grew
//! by exactly two messages, each GUID appears at exactly one UID, an answer the first attempt did
//! get (if any) names the same UIDs, and a second retry after the acknowledgement (through yet
//! another node) returns the same UIDs and MODSEQ without applying anything. The killed node is
//! restarted before the next round.

#[path = "support/rng.rs"]
mod rng;
mod support;

use std::time::{Duration, Instant};

use dovetail::placement::group_of;
use rng::{seed, Rng};
use serde_json::{json, Value};
use support::{get, post, post_retrying, Retried, TestCluster};

const GROUPS: u32 = 2;
const USER: &str = "once@example.com";
const ROUNDS: u64 = 5;

fn status(cluster: &TestCluster, via: u64) -> Value {
    let (s, v) = get(
        &cluster.node(via).api,
        &format!("/v1/users/{USER}/mailboxes/INBOX"),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}\n{}", cluster.log(via));
    v
}

#[test]
fn a_retried_request_is_applied_exactly_once() {
    let mut rng = Rng::new(seed("t20_retry_exactly_once"));
    let mut cluster = TestCluster::start(
        3,
        GROUPS,
        &["--request-timeout-ms", "3000", "--rebalance-interval-ms", "0"],
    );
    let group = group_of(USER, GROUPS);
    let addrs: Vec<String> = (1..=3).map(|n| cluster.node(n).api.clone()).collect();
    let path = format!("/v1/users/{USER}/mailboxes/INBOX/messages");
    let (s, v) = post(
        &addrs[0],
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &addrs[0],
        &path,
        &json!({"messages": [{"guid": format!("{:032x}", 1), "size": 1}]}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");

    for round in 1..=ROUNDS {
        let before = status(&cluster, 1 + round % 3);
        let uid_next = before["uid_next"].as_u64().unwrap();
        let leader = cluster.leader_of(group, 1).expect("a leader");
        let guids = [
            format!("{round:016x}{:016x}", 1),
            format!("{round:016x}{:016x}", 2),
        ];
        let body = json!({
            "messages": [{"guid": guids[0], "size": 10}, {"guid": guids[1], "size": 20}],
            "client_id": "t20-once",
            "request_seq": round,
        });
        // Send to the leader and kill it a moment later: the client does not know the outcome.
        // The last round waits long enough for the answer to arrive first: then the retries
        // through the survivors must be answered from the session table.
        let delay = if round == ROUNDS {
            150
        } else {
            [0, 1, 3, 8, 20, 50][rng.below(6) as usize]
        };
        let first_attempt = {
            let (api, path, body) = (addrs[leader as usize - 1].clone(), path.clone(), body.clone());
            std::thread::spawn(move || post(&api, &path, &body))
        };
        std::thread::sleep(Duration::from_millis(delay));
        cluster.kill(leader);
        let first_attempt = first_attempt.join().unwrap();
        eprintln!("round {round}: killed leader {leader} after {delay} ms; first attempt: {first_attempt:?}");

        let survivors: Vec<String> = (1..=3)
            .filter(|&n| n != leader)
            .map(|n| addrs[n as usize - 1].clone())
            .collect();
        let started = Instant::now();
        let retried = post_retrying(&survivors, round as usize, &path, &body, || {
            started.elapsed() > Duration::from_secs(30)
        });
        let ack = match retried {
            Retried::Answered(200, v) => v,
            other => panic!("round {round}: the retry was not acknowledged: {other:?}"),
        };
        assert_eq!(
            (ack["first_uid"].as_u64(), ack["last_uid"].as_u64()),
            (Some(uid_next), Some(uid_next + 1)),
            "round {round}: {ack} after {before}"
        );
        if let Ok((200, v)) = &first_attempt {
            assert_eq!(
                (&v["first_uid"], &v["modseq"]),
                (&ack["first_uid"], &ack["modseq"]),
                "round {round}"
            );
        }
        // A retry after the acknowledgement, through the other survivor: the same answer.
        let (s, again) = post(&survivors[(round as usize + 1) % 2], &path, &body).unwrap();
        assert_eq!(s, 200, "{again}");
        assert_eq!(
            (&again["first_uid"], &again["last_uid"], &again["modseq"]),
            (&ack["first_uid"], &ack["last_uid"], &ack["modseq"]),
            "round {round}: a retry after the acknowledgement answered differently"
        );

        // Exactly two more messages, each GUID at exactly one UID, on both survivors.
        for api in &survivors {
            let (s, v) = get(api, &format!("/v1/users/{USER}/mailboxes/INBOX")).unwrap();
            assert_eq!(s, 200, "{v}");
            assert_eq!(
                v["exists"].as_u64(),
                Some(before["exists"].as_u64().unwrap() + 2),
                "round {round}: {v}"
            );
            assert_eq!(v["uid_next"].as_u64(), Some(uid_next + 2), "round {round}: {v}");
            let (s, v) = get(api, &format!("{path}?limit=10000")).unwrap();
            assert_eq!(s, 200, "{v}");
            for (i, g) in guids.iter().enumerate() {
                let at: Vec<u64> = v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["guid"] == g.as_str())
                    .map(|r| r["uid"].as_u64().unwrap())
                    .collect();
                assert_eq!(at, [uid_next + i as u64], "round {round}: GUID {g}");
            }
        }

        cluster.restart(leader);
        cluster.wait_for_leaders(Duration::from_secs(60));
    }
}
