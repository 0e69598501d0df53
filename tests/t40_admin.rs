//! The admin API and `dovetail ctl` against a live 3-node cluster: status and overview,
//! snapshots on demand, per-mailbox digests and copies, and the verify/repair cycle. A mailbox
//! is written, then one byte of one record in one follower's mapped file is flipped behind the
//! node's back (the kind of damage a bad disk does). Verify, asked through a node other than the
//! damaged one and with writes to another mailbox of the same group going on, must name exactly
//! that group, mailbox and node, and `ctl verify` must exit 3; after `ctl repair` (sent to a third
//! node, which passes it on) verify is clean, the repaired file equals the leader's byte for byte,
//! and the other mailbox's file on the repaired node was not rewritten. Error paths answer with
//! JSON errors: unknown group, bad GUID, unknown mailbox, unknown node.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::process::Command;
use std::time::Duration;

use dovetail::placement::group_of;
use serde_json::{json, Value};
use support::{get, post, request, wait_until, TestCluster, ADMIN_TOKEN};

const GROUPS: u32 = 3;
const USER: &str = "admin-test@example.com";

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

fn append(api: &str, mailbox: &str, seq: u64) -> Value {
    let (s, v) = post(
        api,
        &format!("/v1/users/{USER}/mailboxes/{mailbox}/messages"),
        &json!({"messages": [{"guid": format!("{seq:032x}"), "size": seq, "flags": ["\\Seen"]}]}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn admin_endpoints_verify_and_repair() {
    let cluster = TestCluster::start(3, GROUPS, &["--rebalance-interval-ms", "0"]);
    let group = group_of(USER, GROUPS);
    let leader = cluster.leader_of(group, 1).expect("a leader");
    let damaged = (1..=3).find(|&n| n != leader).unwrap();
    let third = (1..=3).find(|&n| n != leader && n != damaged).unwrap();
    let api = |n: u64| cluster.node(n).api.clone();

    let mut guids = Vec::new();
    for name in ["INBOX", "Archive"] {
        let (s, v) = post(
            &api(1),
            &format!("/v1/users/{USER}/mailboxes"),
            &json!({"name": name}),
        )
        .unwrap();
        assert_eq!(s, 201, "{v}");
        guids.push(v["mailbox_guid"].as_str().expect("mailbox_guid").to_string());
    }
    for seq in 1..=20 {
        append(&api(1 + seq % 3), "INBOX", seq);
    }
    let token = append(&api(1), "Archive", 100)["token"].as_u64().unwrap();

    // Status and overview.
    let (s, status) = get(&api(damaged), "/admin/status").unwrap();
    assert_eq!(s, 200, "{status}");
    assert_eq!(status["groups"].as_array().unwrap().len(), GROUPS as usize);
    // No IMAP or LMTP listener: the mail counts are there, and 0.
    assert_eq!(status["node"]["mail"]["lmtp_delivered"], 0, "{status}");
    assert_eq!(status["node"]["mail"]["imap_sessions_open"], 0, "{status}");
    let (s, overview) = get(&api(third), "/admin/cluster").unwrap();
    assert_eq!(s, 200, "{overview}");
    assert_eq!(overview["nodes"].as_array().unwrap().len(), 3);
    assert!(overview["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["reachable"] == true));
    assert_eq!(overview["groups"][group as usize]["leader"], leader);

    // Snapshots on demand: one group, then all groups of a node.
    let (s, v) = post(
        &api(damaged),
        &format!("/admin/groups/{group}/snapshot"),
        &json!(null),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(v["snapshot"].as_u64().unwrap() >= token, "{v}");
    let (s, v) = request(&api(third), "POST", "/admin/snapshot", None).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["groups"].as_array().unwrap().len(), GROUPS as usize);
    let (_, st) = get(&api(third), "/admin/status").unwrap();
    assert!(
        st["groups"][group as usize]["snapshot"].as_u64().unwrap() >= token,
        "{st}"
    );

    // Digests and copies of one replica.
    cluster.wait_applied_equal(group, token, Duration::from_secs(20));
    let (s, d) = get(&api(damaged), &format!("/admin/groups/{group}/digests")).unwrap();
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["mailboxes"].as_array().unwrap().len(), 2, "{d}");
    let (s, v) = get(
        &api(leader),
        &format!("/admin/groups/{group}/mailboxes/{}/image", guids[0]),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");

    // Error paths.
    for (method, path, status, code) in [
        (
            "GET",
            format!("/admin/groups/{GROUPS}/digests"),
            404,
            "no_such_group",
        ),
        (
            "GET",
            format!("/admin/groups/{GROUPS}/backup"),
            404,
            "no_such_group",
        ),
        (
            "GET",
            format!("/admin/groups/{group}/mailboxes/nothex/image"),
            400,
            "invalid",
        ),
        (
            "GET",
            format!("/admin/groups/{group}/mailboxes/{:032x}/image", 7),
            404,
            "no_such_mailbox",
        ),
        (
            "POST",
            format!("/admin/groups/{group}/transfer-leader"),
            400,
            "invalid",
        ),
        ("DELETE", "/admin/members/99".to_string(), 404, "no_such_node"),
        // A method a route does not take: the JSON error body too (it was an empty 405; found
        // by the admin_api fuzz target).
        ("POST", "/admin/members/99".to_string(), 405, "method_not_allowed"),
        ("PUT", "/admin/status".to_string(), 405, "method_not_allowed"),
    ] {
        let body = (method == "POST").then(|| json!({"nobody": 1}));
        let (s, v) = request(&api(1), method, &path, body.as_ref()).unwrap();
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {v}"
        );
    }

    // A clean cluster verifies clean, and ctl agrees.
    let (s, v) = post(&api(third), "/admin/verify", &json!({})).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["clean"], true, "{v}");
    assert_eq!(v["mailboxes_checked"], 2, "{v}");
    let (code, out, err) = ctl(&cluster, third, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("clean: 3 groups, 2 mailboxes checked, 0 divergent"),
        "{out}"
    );

    // ctl status: a table with every node up.
    let (code, out, err) = ctl(&cluster, 1, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NODE") && lines[0].contains("STATE"),
        "{out}"
    );
    for n in 1..=3 {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{n} ")) && l.contains(" up ")),
            "node {n} missing: {out}"
        );
    }
    assert!(out.contains("3 nodes, 3 groups, 0 without a leader"), "{out}");
    // Then one line of mail counts per node.
    let mail = out
        .lines()
        .skip_while(|l| !l.contains("DELIVERED/DEFERRED/REFUSED"));
    assert_eq!(mail.filter(|l| l.ends_with(" 0/0/0")).count(), 3, "{out}");
    let (code, out, _) = ctl(&cluster, 1, &["groups", "--json"]);
    assert_eq!(code, 0);
    let parsed: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(parsed["groups"].as_array().unwrap().len(), GROUPS as usize);

    // Damage one record of INBOX on one follower, in place (the node has the file mapped).
    let path = cluster
        .group_dir(damaged, group)
        .join("live")
        .join(format!("{}.idx", guids[0]));
    let archive_path = cluster
        .group_dir(damaged, group)
        .join("live")
        .join(format!("{}.idx", guids[1]));
    {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.seek(SeekFrom::Start(8192 + 64 * 3 + 40)).unwrap();
        file.write_all(&[0xa5]).unwrap();
        file.sync_all().unwrap();
    }
    // Writes to the other mailbox go on while verify runs.
    let writer = {
        let api = api(leader);
        std::thread::spawn(move || {
            for seq in 200..230 {
                append(&api, "Archive", seq);
            }
        })
    };
    let (s, v) = post(&api(third), "/admin/verify", &json!({})).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["clean"], false, "{v}");
    let divergences = v["divergences"].as_array().unwrap();
    assert_eq!(divergences.len(), 1, "{v}");
    assert_eq!(divergences[0]["group"], group);
    assert_eq!(divergences[0]["mailbox_guid"], guids[0].as_str());
    assert_eq!(divergences[0]["suspects"], json!([damaged]));
    let (code, out, err) = ctl(&cluster, leader, &["verify", "--group", &group.to_string()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains(&guids[0]) && out.contains("NOT CLEAN"), "{out}");
    // The damaged copy is never handed out as a source.
    let (s, v) = get(
        &api(damaged),
        &format!("/admin/groups/{group}/mailboxes/{}/image", guids[0]),
    )
    .unwrap();
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("damaged")), "{v}");
    writer.join().unwrap();

    // Repair through the third node, which passes it to the damaged one.
    let archive_before = std::fs::metadata(&archive_path).unwrap();
    let inode = |m: &std::fs::Metadata| std::os::unix::fs::MetadataExt::ino(m);
    let (code, out, err) = ctl(
        &cluster,
        third,
        &[
            "repair",
            "--group",
            &group.to_string(),
            "--mailbox",
            &guids[0],
            "--replica",
            &damaged.to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}\n{}", cluster.log(damaged));
    assert!(
        out.contains("replica") && out.contains(&damaged.to_string()),
        "{out}"
    );
    let (code, out, err) = ctl(&cluster, damaged, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        inode(&std::fs::metadata(&archive_path).unwrap()),
        inode(&archive_before),
        "the other mailbox's file was replaced"
    );
    // Byte-identical to the leader's copy once both stand at the same position.
    let last = append(&api(1), "INBOX", 300)["token"].as_u64().unwrap();
    cluster.wait_applied_equal(group, last, Duration::from_secs(20));
    let leader_copy = cluster
        .group_dir(leader, group)
        .join("live")
        .join(format!("{}.idx", guids[0]));
    wait_until(
        Duration::from_secs(10),
        "the repaired copy equals the leader's",
        || std::fs::read(&path).unwrap() == std::fs::read(&leader_copy).unwrap(),
    );
    // And reads on the repaired node see the right data again.
    let (s, v) = get(
        &api(damaged),
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages?consistency=local&min_applied={last}"),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 21, "{v}");
}
