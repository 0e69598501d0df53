//! LMTP deliveries (issue "Speak mail", item 2; ARCHITECTURE.md §3, "A delivery"). Property: an
//! LMTP 250 means the message is durable and readable through every node, byte-identical; a
//! delivery the cluster cannot make durable is answered 451 (the MTA retries) and leaves nothing
//! in the index. Provocation, on a 3-node cluster of real processes, each with `--lmtp-listen`,
//! driven by Python's `smtplib.LMTP` (a subprocess; one transaction per run, per-recipient DATA
//! replies read with `getreply`): two recipients (one through `user+Folder` into a folder that
//! exists) and one invalid recipient in one transaction through node 2; a message over
//! `--max-message-bytes`, announced with `SIZE=` and not; then nodes 1 and 3 stopped and a
//! delivery tried through node 2. Checks: 550 5.1.1 at RCPT for the invalid user, 250 per valid
//! recipient after DATA, the messages and their bytes read back through node 3's HTTP API, 552
//! at MAIL (SIZE) and after DATA, 451 without quorum and, once the nodes are back, no new message;
//! node 2's `/admin/status` (`node.mail`) counting the 250s, the 550 and the 451s.

mod support;

use std::time::Duration;

use dovetail::node::dev::Start;
use serde_json::{json, Value};
use support::{free_node_addr, get, post, raw_request, wait_until, TestCluster};

const GROUPS: u32 = 2;
const MAX_MESSAGE: usize = 64 * 1024;

/// One LMTP transaction: LHLO, MAIL FROM (with `SIZE=` if given), RCPT TO each, and DATA if a
/// recipient was accepted; prints every reply as JSON. argv: host port size message-file rcpt...
const LMTP_CLIENT: &str = r#"
import json, smtplib, sys
host, port, size, path, rcpts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
out = {}
s = smtplib.LMTP(host, port, timeout=60)
out["lhlo"] = s.ehlo()[0]
out["esmtp"] = sorted(s.esmtp_features)
out["mail"] = list(s.mail("sender@example.org", ["SIZE=%d" % size] if size else []))
out["mail"][1] = out["mail"][1].decode()
out["rcpt"] = [[c, m.decode()] for c, m in (s.rcpt(r) for r in rcpts)]
accepted = sum(1 for c, _ in out["rcpt"] if c == 250)
out["data"] = []
if out["mail"][0] == 250 and accepted:
    c, m = s.data(open(path, "rb").read())
    out["data"].append([c, m.decode()])
    for _ in range(accepted - 1):
        c, m = s.getreply()
        out["data"].append([c, m.decode()])
s.quit()
print(json.dumps(out))
"#;

/// Runs [`LMTP_CLIENT`]; its replies.
fn lmtp(addr: &str, size: usize, message: &[u8], rcpts: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message).unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let output = std::process::Command::new("python3")
        .args(["-c", LMTP_CLIENT, host, port, &size.to_string()])
        .arg(&path)
        .args(rcpts)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "LMTP client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn codes(replies: &Value) -> Vec<u64> {
    replies
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect()
}

/// A message of CRLF lines (what smtplib sends unchanged) with lines that need dot-stuffing
/// and 8-bit bytes.
fn message(tag: &str, len: usize) -> Vec<u8> {
    let mut bytes =
        format!("From: sender@example.org\r\nSubject: {tag}\r\n\r\n.a leading dot\r\n.\r\n..\r\nété\r\n")
            .into_bytes();
    let mut i = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(format!("line {i} of {tag}\r\n").as_bytes());
        i += 1;
    }
    bytes
}

/// The UIDs in `user`'s `mailbox`, read through `api`.
fn uids(api: &str, user: &str, mailbox: &str) -> Vec<u64> {
    let (status, v) = get(api, &format!("/v1/users/{user}/mailboxes/{mailbox}/messages")).unwrap();
    assert_eq!(status, 200, "{v}");
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uid"].as_u64().unwrap())
        .collect()
}

/// `node.mail` of the node's `/admin/status`: its IMAP and LMTP counts.
fn mail(api: &str) -> Value {
    let (status, v) = get(api, "/admin/status").unwrap();
    assert_eq!(status, 200, "{v}");
    v["node"]["mail"].clone()
}

fn body(api: &str, user: &str, mailbox: &str, uid: u64) -> Vec<u8> {
    let answer = raw_request(
        api,
        "GET",
        &format!("/v1/users/{user}/mailboxes/{mailbox}/messages/{uid}/body"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    answer.body
}

#[test]
fn lmtp_delivers_durably_and_refuses_what_it_cannot() {
    let max = MAX_MESSAGE.to_string();
    let mut cluster = TestCluster::prepare(
        3,
        GROUPS,
        &["--max-message-bytes", &max, "--request-timeout-ms", "3000"],
        support::secrets(),
    );
    let lmtp_addrs: Vec<String> = (1..=3).map(free_node_addr).collect();
    for (node, addr) in cluster.nodes.iter_mut().zip(&lmtp_addrs) {
        node.own_flags = vec!["--lmtp-listen".to_string(), addr.clone()];
    }
    cluster.start_all(Start::Fresh);
    let apis: Vec<String> = cluster.nodes.iter().map(|n| n.api.clone()).collect();
    let api = |id: u64| apis[(id - 1) as usize].clone();
    wait_until(Duration::from_secs(30), "every group at log encoding 3", || {
        get(&api(1), "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    // bob has a folder "Lists"; alice has nothing yet (her INBOX comes with the delivery).
    for name in ["INBOX", "Lists"] {
        let (status, v) = post(&api(1), "/v1/users/bob/mailboxes", &json!({ "name": name })).unwrap();
        assert_eq!(status, 201, "{v}");
    }

    // Two recipients and an invalid one, through node 2.
    let first = message("first", 20_000);
    let out = lmtp(
        &lmtp_addrs[1],
        first.len(),
        &first,
        &[
            "alice@example.com",
            "bad/user@example.com",
            "bob+Lists@example.com",
        ],
    );
    assert_eq!(out["lhlo"], 250, "{out}");
    for feature in ["8bitmime", "enhancedstatuscodes", "pipelining", "size"] {
        assert!(
            out["esmtp"].as_array().unwrap().contains(&json!(feature)),
            "{out}"
        );
    }
    assert_eq!(codes(&out["rcpt"]), [250, 550, 250], "{out}");
    assert!(out["rcpt"][1][1].as_str().unwrap().starts_with("5.1.1"), "{out}");
    assert_eq!(codes(&out["data"]), [250, 250], "{out}");
    // Read back through node 3, byte-identical (dot-unstuffed, 8-bit bytes kept).
    for (user, mailbox) in [("alice", "INBOX"), ("bob", "Lists")] {
        let found = uids(&api(3), user, mailbox);
        assert_eq!(found.len(), 1, "{user}/{mailbox}: {found:?}");
        assert!(
            body(&api(3), user, mailbox, found[0]) == first,
            "{user}/{mailbox}: other bytes"
        );
    }
    assert!(uids(&api(3), "bob", "INBOX").is_empty());
    // Node 2's /admin/status counts both 250s and the refused recipient; the session is over.
    wait_until(Duration::from_secs(10), "node 2's LMTP session closed", || {
        mail(&api(2))["lmtp_sessions_open"] == 0
    });
    let counts = mail(&api(2));
    assert!(counts["lmtp_delivered"].as_u64() >= Some(2), "{counts}");
    assert!(counts["lmtp_refused"].as_u64() >= Some(1), "{counts}");

    // Too large: announced (552 at MAIL), and not announced (552 per recipient after DATA).
    let big = message("big", MAX_MESSAGE + 1000);
    let out = lmtp(&lmtp_addrs[0], big.len(), &big, &["alice@example.com"]);
    assert_eq!(out["mail"][0], 552, "{out}");
    assert!(out["mail"][1].as_str().unwrap().starts_with("5.3.4"), "{out}");
    let out = lmtp(&lmtp_addrs[0], 0, &big, &["alice@example.com", "bob@example.com"]);
    assert_eq!(codes(&out["data"]), [552, 552], "{out}");
    assert_eq!(uids(&api(1), "alice", "INBOX").len(), 1);

    // No quorum: 451 per recipient (the MTA keeps the message and retries), nothing delivered.
    cluster.stop(1);
    cluster.stop(3);
    let lost = message("no quorum", 1000);
    let out = lmtp(
        &lmtp_addrs[1],
        lost.len(),
        &lost,
        &["alice@example.com", "bob@example.com"],
    );
    assert_eq!(codes(&out["rcpt"]), [250, 250], "{out}");
    assert_eq!(codes(&out["data"]), [451, 451], "{out}");
    assert!(out["data"][0][1].as_str().unwrap().starts_with("4."), "{out}");
    assert!(mail(&api(2))["lmtp_deferred"].as_u64() >= Some(2));
    cluster.restart(1);
    cluster.restart(3);
    cluster.wait_for_leaders(Duration::from_secs(60));
    wait_until(Duration::from_secs(30), "reads through node 3", || {
        get(&api(3), "/v1/users/alice/mailboxes/INBOX/messages").is_ok_and(|(s, _)| s == 200)
    });
    assert_eq!(
        uids(&api(3), "alice", "INBOX").len(),
        1,
        "a 451 delivered nothing"
    );
    assert!(
        uids(&api(3), "bob", "INBOX").is_empty(),
        "a 451 delivered nothing"
    );
    // And the MTA's retry now succeeds.
    let out = lmtp(&lmtp_addrs[2], lost.len(), &lost, &["alice@example.com"]);
    assert_eq!(codes(&out["data"]), [250], "{out}");
    let found = uids(&api(1), "alice", "INBOX");
    assert_eq!(found.len(), 2);
    assert!(body(&api(1), "alice", "INBOX", found[1]) == lost);
}

/// With `--passwd-file`, only its users get mail: a valid name that is not in the file is
/// refused 550 5.1.1 at `RCPT TO`; added to the file and the node sent SIGHUP, it is accepted,
/// and a file that no longer parses is refused and the old users kept.
#[test]
fn with_a_passwd_file_only_its_users_get_mail() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("users");
    std::fs::write(&passwd, "# users\nalice:\n").unwrap();
    let passwd_flag = passwd.to_str().unwrap().to_string();
    let mut cluster = TestCluster::prepare(1, 1, &["--passwd-file", &passwd_flag], support::secrets());
    let lmtp_addr = free_node_addr(1);
    cluster.nodes[0].own_flags = vec!["--lmtp-listen".to_string(), lmtp_addr.clone()];
    cluster.start_all(Start::Fresh);
    let api = cluster.node(1).api.clone();
    wait_until(Duration::from_secs(30), "the group at log encoding 3", || {
        get(&api, "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    let mail = message("passwd", 500);
    let replies = lmtp(&lmtp_addr, 0, &mail, &["alice@example.com", "carol@example.com"]);
    assert_eq!(codes(&replies["rcpt"]), vec![250, 550], "{replies}");
    assert!(
        replies["rcpt"][1][1].as_str().unwrap().contains("5.1.1"),
        "{replies}"
    );
    assert_eq!(codes(&replies["data"]), vec![250], "{replies}");
    assert_eq!(body(&api, "alice", "INBOX", 1), mail);

    // carol added; the node re-reads the file on SIGHUP.
    std::fs::write(&passwd, "# users\nalice:\ncarol:\n").unwrap();
    cluster.signal(1, libc::SIGHUP);
    wait_until(Duration::from_secs(10), "carol accepted after SIGHUP", || {
        codes(&lmtp(&lmtp_addr, 0, &mail, &["carol@example.com"])["rcpt"]) == vec![250]
    });
    assert_eq!(body(&api, "carol", "INBOX", 1), mail);

    // A broken edit: refused, the users as they were.
    std::fs::write(&passwd, "alice:\nthis line has no colon\n").unwrap();
    cluster.signal(1, libc::SIGHUP);
    wait_until(Duration::from_secs(10), "the refused reload logged", || {
        cluster.log(1).contains("passwd-file not reloaded")
    });
    let replies = lmtp(&lmtp_addr, 0, &mail, &["carol@example.com"]);
    assert_eq!(
        codes(&replies["rcpt"]),
        vec![250],
        "the old users are kept: {replies}"
    );
}
