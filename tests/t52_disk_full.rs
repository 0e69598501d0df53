//! A full disk is an alarm, not a crash. Property: when a node's file system fills up — a
//! follower's, then the leader's — during a stream of writes, the node keeps running, refuses
//! writes through it with 507 `insufficient_storage` while serving reads, hands over its
//! leadership, loses nothing acknowledged, and takes writes again within 20 s of the space coming
//! back, without a restart; afterwards every replica holds the same records and the log of the
//! node whose disk filled reopens cleanly. Provocation: a 3-node cluster whose data directories
//! are each a 96 MiB tmpfs mounted by the test (root only), `--min-free-bytes 24 MiB`; a writer
//! thread streams appends of one user through all three nodes in turn (each with its client id
//! and sequence, retried on the next node on a connection error or 503, so each is applied at
//! most once); the test fills a node's tmpfs to its last KiB with `fallocate`, checks the alarm,
//! the 507 and the reads, keeps it full for a few seconds of writes, deletes the filler and
//! measures how long until a write through that node succeeds. First a follower of the user's
//! group, then its leader. Checks: the three processes never exit, every acknowledged append is
//! present at its acknowledged UID on every node at the same applied index, `POST /admin/verify`
//! is clean, and a restarted node (the former leader, SIGTERM then start) opens its log and
//! catches up.
//!
//! Runs only as root (tmpfs mounts); skipped otherwise unless `DOVETAIL_REQUIRE_ROOT=1`, which
//! `scripts/test.sh` sets as root, makes that a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, post, wait_until, TestCluster};

const TMPFS_SIZE: &str = "96m";

/// The tmpfs mounts, unmounted (after the cluster's processes are gone) on drop.
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(dir).status();
        }
    }
}

fn root_or_skip() -> bool {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("DOVETAIL_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("DOVETAIL_REQUIRE_ROOT=1 but this test is not running as root");
    }
    eprintln!(
        "t52: skipped (not root: tmpfs mounts need it); set DOVETAIL_REQUIRE_ROOT=1 to make this a failure"
    );
    false
}

fn free_bytes(dir: &Path) -> u64 {
    dovetail::node::disk_monitor::free_bytes(dir).unwrap()
}

/// Fills `dir`'s file system up to its last KiB with one file (`fallocate`, at once).
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let size = free_bytes(dir).saturating_sub(1024);
    let status = Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(status.success(), "fallocate of {size} bytes in {}", dir.display());
    assert!(
        free_bytes(dir) < 64 * 1024,
        "{} still has {} bytes free",
        dir.display(),
        free_bytes(dir)
    );
    filler
}

fn storage_alarm(cluster: &TestCluster, id: u64) -> Option<String> {
    let (_, status) = get(&cluster.node(id).api, "/admin/status").ok()?;
    status["node"]["storage"]["alarm"].as_str().map(str::to_string)
}

/// The GUID of append `seq` of `client`: distinct for every (client, seq).
fn guid(client: &str, seq: u64) -> String {
    let tag = client.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{seq:016x}{tag:016x}")
}

fn append_body(client: &str, seq: u64) -> Value {
    json!({"client_id": client, "request_seq": seq,
           "messages": [{"guid": guid(client, seq), "size": 100}]})
}

const MESSAGES: &str = "/v1/users/diskfull/mailboxes/INBOX/messages";

/// The writer: appends through the nodes in turn, each request retried on the next node until
/// answered with 2xx (recorded), a 4xx other than 507, or the stop flag. Returns the
/// acknowledged (seq, uid) pairs.
fn writer(
    apis: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, u64)>>>,
    sent: Arc<AtomicU64>,
) {
    let mut seq = 0;
    let mut node = 0usize;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        sent.store(seq, Ordering::SeqCst);
        let body = append_body("writer", seq);
        loop {
            node += 1;
            match post(&apis[node % apis.len()], MESSAGES, &body) {
                Ok((200, answer)) => {
                    acked
                        .lock()
                        .unwrap()
                        .push((seq, answer["first_uid"].as_u64().unwrap()));
                    break;
                }
                // The node is full, or there is no quorum yet: the next node.
                Ok((503 | 507, _)) | Err(_) => {}
                Ok((status, answer)) => panic!("append {seq}: {status} {answer}"),
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn group_of_user(cluster: &TestCluster) -> u32 {
    let (_, v) = post(
        &cluster.node(1).api,
        "/v1/users/diskfull/mailboxes",
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    v["group"].as_u64().unwrap() as u32
}

fn assert_running(cluster: &mut TestCluster) {
    for node in &mut cluster.nodes {
        let child = node.child.as_mut().expect("started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "node {} exited on a full disk",
            node.id
        );
    }
}

/// Fills node `id`'s disk, checks what a full node does, frees it; returns how long after the
/// space came back a write through the node took to succeed.
fn fill_and_free(cluster: &mut TestCluster, id: u64, mount: &Path, group: u32) -> Duration {
    let filler = fill(mount);
    wait_until(
        Duration::from_secs(10),
        &format!("node {id} raises its storage alarm"),
        || storage_alarm(cluster, id).is_some(),
    );
    let api = cluster.node(id).api.clone();
    // A client of its own for each node filled (its sequence numbers start at 1).
    let client = format!("through-node-{id}");
    let (status, body) = post(&api, MESSAGES, &append_body(&client, 1)).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (507, Some("insufficient_storage")),
        "{body}"
    );
    let (status, body) = get(&api, "/v1/users/diskfull/mailboxes/INBOX?consistency=local").unwrap();
    assert_eq!(status, 200, "a full node still serves reads: {body}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.leader_of(group, id).is_none_or(|leader| leader == id) {
        assert!(
            Instant::now() < deadline,
            "node {id} still leads group {group} 15 s after its storage alarm; its log:\n{}",
            cluster.log(id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Writes go on through the other nodes meanwhile (the writer thread); let them.
    std::thread::sleep(Duration::from_secs(3));
    assert_running(cluster);
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut seq = 1;
    loop {
        seq += 1;
        match post(&api, MESSAGES, &append_body(&client, seq)) {
            Ok((200, _)) => break,
            Ok((503 | 507, _)) | Err(_) => {}
            Ok((status, body)) => panic!("write through node {id} after freeing: {status} {body}"),
        }
        assert!(
            freed.elapsed() < Duration::from_secs(20),
            "node {id} takes no writes 20 s after its disk was freed; its log:\n{}",
            cluster.log(id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = freed.elapsed();
    wait_until(
        Duration::from_secs(10),
        &format!("node {id} clears its alarm"),
        || storage_alarm(cluster, id).is_none(),
    );
    took
}

#[test]
fn a_full_disk_stops_writes_through_the_node_not_the_node() {
    if !root_or_skip() {
        return;
    }
    let mut mounts = Mounts(Vec::new());
    let mut cluster = TestCluster::start_prepared(
        3,
        2,
        &[
            "--min-free-bytes",
            "25165824",
            "--log-reserve-bytes",
            "8388608",
            "--snapshot-interval",
            "500",
            "--rebalance-interval-ms",
            "0",
        ],
        |_, dir| {
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(status.success(), "mount a tmpfs on {}", dir.display());
            mounts.0.push(dir.to_path_buf());
        },
    );
    let group = group_of_user(&cluster);
    let apis: Vec<String> = cluster.nodes.iter().map(|n| n.api.clone()).collect();
    let (stop, acked, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicU64::new(0)),
    );
    let writing = {
        let (stop, acked, sent) = (stop.clone(), acked.clone(), sent.clone());
        std::thread::spawn(move || writer(apis, stop, acked, sent))
    };
    wait_until(Duration::from_secs(20), "the first acknowledged appends", || {
        acked.lock().unwrap().len() >= 20
    });

    let leader = cluster.leader_of(group, 1).expect("a leader");
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let follower_took = fill_and_free(
        &mut cluster,
        follower,
        &mounts.0[follower as usize - 1].clone(),
        group,
    );
    let leader = cluster.leader_of(group, 1).expect("a leader");
    let before = acked.lock().unwrap().len();
    let leader_took = fill_and_free(
        &mut cluster,
        leader,
        &mounts.0[leader as usize - 1].clone(),
        group,
    );
    eprintln!(
        "writes through the node again {follower_took:?} (follower {follower}) and {leader_took:?} (leader {leader}) after freeing its disk"
    );
    wait_until(
        Duration::from_secs(20),
        "appends acknowledged after both disks were freed",
        || acked.lock().unwrap().len() >= before + 20,
    );
    stop.store(true, Ordering::SeqCst);
    writing.join().unwrap();
    assert_running(&mut cluster);

    // Nothing acknowledged lost, on every node at the same position.
    let acked = acked.lock().unwrap().clone();
    let applied = cluster.wait_applied_equal(group, 1, Duration::from_secs(60));
    let expected: std::collections::BTreeMap<String, u64> = acked
        .iter()
        .map(|&(seq, uid)| (guid("writer", seq), uid))
        .collect();
    let mut views = Vec::new();
    for id in 1..=3 {
        let path =
            format!("{MESSAGES}?first=1&last=4294967294&limit=10000&consistency=local&min_applied={applied}");
        let (status, body) = get(&cluster.node(id).api, &path).unwrap();
        assert_eq!(status, 200, "{body}");
        let records: std::collections::BTreeMap<String, u64> = body["messages"]
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
        for (guid, uid) in &expected {
            assert_eq!(
                records.get(guid),
                Some(uid),
                "node {id}: acknowledged {guid} at UID {uid}"
            );
        }
        views.push(records);
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "replicas differ");
    let (status, verify) = post(&cluster.node(1).api, "/admin/verify", &json!({})).unwrap();
    assert_eq!((status, verify["clean"].as_bool()), (200, Some(true)), "{verify}");

    // The log of the node whose disk filled last reopens, and the node catches up.
    assert!(cluster.stop(leader).success(), "node {leader} drains and exits 0");
    cluster.restart(leader);
    wait_until(Duration::from_secs(30), "the restarted node catches up", || {
        cluster
            .group_status(leader, group)
            .and_then(|g| g["applied"].as_u64())
            .is_some_and(|a| a >= applied)
    });
    eprintln!(
        "{} appends acknowledged, {} sent",
        acked.len(),
        sent.load(Ordering::SeqCst)
    );
}
