//! Verify and repair of message bodies (issue "Message bodies", item 8; README, "Verify and
//! repair"). Property: verify names every node that lacks a referenced body or holds it damaged,
//! by node and body, and `ctl repair --bodies` makes the node whole again from a good copy.
//! Provocation, on a 3-node cluster of real processes (2 groups): three deliveries held by every
//! node, then one body's file deleted on node 2 and one byte flipped in another body's file on
//! node 3. Checks: verify is clean before; after, verify without hashing names only the missing
//! body (a stat per body), with `hash_bodies` both (missing on 2, damaged on 3, each with the
//! members holding a good copy), and `ctl verify --hash-bodies` exits 3 and prints the repair
//! commands; `ctl repair --bodies --replica 2` and `--replica 3 --check` (sent through node 1)
//! fetch one body each; verify is clean again and both files hold the delivered bytes, the
//! damaged copy kept aside in node 3's quarantine.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;
use support::{get, post, raw_request, wait_until, TestCluster, ADMIN_TOKEN};

const GROUPS: u32 = 2;
const USER: &str = "body-ops@example.com";

fn body_id(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stored_path(cluster: &TestCluster, node: u64, id: &str) -> PathBuf {
    cluster.node(node).dir.join("blobs").join(&id[..2]).join(id)
}

fn ctl(cluster: &TestCluster, via: u64, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("ctl")
        .args(args)
        .args(["--node", &format!("http://{}", cluster.node(via).api)])
        .env("DOVETAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(cluster: &TestCluster, hash_bodies: bool) -> Value {
    let (status, report) = post(
        &cluster.node(1).api,
        "/admin/verify",
        &json!({ "hash_bodies": hash_bodies }),
    )
    .unwrap();
    assert_eq!(status, 200, "{report}");
    report
}

/// The body divergences of a report as (node, body, problem, good copies).
fn body_faults(report: &Value) -> Vec<(u64, String, String, Vec<u64>)> {
    report["bodies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["node_id"].as_u64().unwrap(),
                b["body_id"].as_str().unwrap().to_string(),
                b["problem"].as_str().unwrap().to_string(),
                b["good_copies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn verify_names_missing_and_damaged_bodies_and_repair_fetches_them() {
    let cluster = TestCluster::start(3, GROUPS, &[]);
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
    let messages: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("Subject: body ops {i}\r\n\r\n{}", "x".repeat(1000 * (i + 1))).into_bytes())
        .collect();
    for bytes in &messages {
        let answer = raw_request(
            &cluster.node(1).api,
            "POST",
            &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
            &[("Content-Type", "message/rfc822")],
            bytes,
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.json());
    }
    let ids: Vec<String> = messages.iter().map(|m| body_id(m)).collect();
    wait_until(Duration::from_secs(30), "every node holds every body", || {
        (1..=3).all(|n| ids.iter().all(|id| stored_path(&cluster, n, id).is_file()))
    });
    wait_until(
        Duration::from_secs(30),
        "every node applied every delivery",
        || {
            let report = verify(&cluster, false);
            report["clean"] == json!(true) && report["bodies_checked"] == json!(9)
        },
    );
    let report = verify(&cluster, true);
    assert_eq!(report["clean"], json!(true), "{report}");
    assert_eq!(report["bodies_hashed"], json!(true), "{report}");

    // Node 2 loses body 0; node 3's copy of body 1 gets one byte flipped.
    let (missing, damaged) = (&ids[0], &ids[1]);
    std::fs::remove_file(stored_path(&cluster, 2, missing)).unwrap();
    let flipped = stored_path(&cluster, 3, damaged);
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&flipped, &bytes).unwrap();

    // Presence only: the missing body; hashing: both, each with the nodes holding a good copy.
    let report = verify(&cluster, false);
    assert_eq!(report["clean"], json!(false), "{report}");
    assert_eq!(
        body_faults(&report),
        [(2, missing.clone(), "missing".into(), vec![1, 3])],
        "{report}"
    );
    let report = verify(&cluster, true);
    assert_eq!(
        body_faults(&report),
        [
            (2, missing.clone(), "missing".into(), vec![1, 3]),
            (3, damaged.clone(), "damaged".into(), vec![1, 2]),
        ],
        "{report}"
    );
    assert!(report["divergences"].as_array().unwrap().is_empty(), "{report}");
    // Verify only reads: the damaged copy is still in place.
    assert_eq!(std::fs::read(&flipped).unwrap(), bytes);

    let (code, out, err) = ctl(&cluster, 1, &["verify", "--hash-bodies"]);
    assert_eq!(code, 3, "{out}{err}");
    for text in [
        missing.as_str(),
        damaged.as_str(),
        "ctl repair --bodies --replica 2 --check",
        "ctl repair --bodies --replica 3 --check",
        "2 missing or damaged",
    ] {
        assert!(out.contains(text), "{text} in\n{out}");
    }

    // Repair through node 1: node 2 fetches what it lacks; node 3 hashes first, which moves its
    // damaged copy aside, and fetches it again.
    let (code, out, err) = ctl(&cluster, 1, &["repair", "--bodies", "--replica", "2", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let repaired: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&repaired["node_id"], &repaired["missing"], &repaired["fetched"]),
        (&json!(2), &json!(1), &json!(1)),
        "{repaired}"
    );
    let (code, out, err) = ctl(
        &cluster,
        1,
        &["repair", "--bodies", "--replica", "3", "--check", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let repaired: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &repaired["node_id"],
            &repaired["hashed"],
            &repaired["damaged"],
            &repaired["fetched"]
        ),
        (&json!(3), &json!(3), &json!(1), &json!(1)),
        "{repaired}"
    );

    let report = verify(&cluster, true);
    assert_eq!(report["clean"], json!(true), "{report}");
    assert_eq!(
        std::fs::read(stored_path(&cluster, 2, missing)).unwrap(),
        messages[0]
    );
    assert_eq!(std::fs::read(&flipped).unwrap(), messages[1]);
    let aside = std::fs::read_dir(cluster.node(3).dir.join("blobs/quarantine"))
        .unwrap()
        .count();
    assert_eq!(aside, 1, "the damaged copy is kept aside");
    let (code, out, err) = ctl(&cluster, 1, &["verify", "--hash-bodies"]);
    assert_eq!(code, 0, "{out}{err}");
    // ctl status has a column for each node's bodies and one for what it lacks and owes.
    let (code, out, err) = ctl(&cluster, 1, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("BODIES") && out.contains("MISSING/OWED"), "{out}");
}
