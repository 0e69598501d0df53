//! IMAP content (issue "Speak mail"; `src/imap/fetch.rs`, `src/imap/selected.rs` SEARCH).
//! Property: what a client reads of a message's content — ENVELOPE, BODYSTRUCTURE, sections —
//! and which messages a SEARCH finds are the same through any node, derived from the stored
//! bytes and the replicated index alone, and match what Dovecot answers for the same bytes.
//! Provocation, on a 3-node cluster of real processes with `--passwd-file` and
//! `--imap-listen --imap-allow-plaintext`, driven by Python's imaplib (`tests/imap/content.py`):
//! APPEND of fixture messages (`tests/fixtures/imap/`: a multipart with an attachment and an
//! enclosed message/rfc822, a plain one, one with encoded words) on node 1, then on node 2
//! FETCH of ENVELOPE, BODYSTRUCTURE, BODY, `BODY[1.MIME]`, `BODY[HEADER.FIELDS (...)]`,
//! `BODY.PEEK[2]<0.10>`, RFC822.HEADER, RFC822.TEXT, ALL, FULL, FAST; SEARCH by flags, FROM,
//! SUBJECT, BODY, TEXT, HEADER, LARGER, SMALLER, SINCE, BEFORE, UID ranges, NOT/OR, CHARSET
//! UTF-8 with a non-ASCII literal, an unknown charset, MODSEQ after ENABLE CONDSTORE; node 1
//! expunging while node 2 SEARCHes. Checks (in the script): each FETCH answer byte-equal on
//! both nodes and equal to Dovecot's recorded one (BODY/BODYSTRUCTURE case-insensitively);
//! `\Seen` set by non-PEEK sections and RFC822.TEXT only; the SEARCH results; `NO
//! [BADCHARSET (US-ASCII UTF-8)]`; `(MODSEQ n)` the highest of the matches, only when MODSEQ was
//! asked; no EXPUNGE during a non-UID SEARCH, whose numbers stay the session's. Then a message
//! appended by reference through the HTTP API (an index record without bytes): FETCH ENVELOPE
//! answers the others and NO naming it; SEARCH FLAGGED finds it; SEARCH BODY answers NO.

mod support;

use std::time::Duration;

use dovetail::node::dev::Start;
use dovetail::users::Cost;
use serde_json::json;
use support::{free_node_addr, get, post, wait_until, TestCluster};

const USER: &str = "carol";
const PASSWORD: &str = "content test password";

#[test]
fn fetch_and_search_answer_the_same_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("users");
    // A cheap hash: the test checks the protocol, not the KDF.
    let hash = dovetail::users::command::hash_field(PASSWORD.as_bytes(), Cost::Sha512Crypt { rounds: 1_000 })
        .unwrap();
    std::fs::write(&passwd, format!("{USER}:{hash}\n")).unwrap();
    let passwd = passwd.to_str().unwrap().to_string();
    let mut cluster = TestCluster::prepare(
        3,
        2,
        &["--passwd-file", &passwd, "--request-timeout-ms", "3000"],
        support::secrets(),
    );
    let imap_addrs: Vec<String> = (1..=3).map(free_node_addr).collect();
    for (node, addr) in cluster.nodes.iter_mut().zip(&imap_addrs) {
        node.own_flags = vec![
            "--imap-listen".to_string(),
            addr.clone(),
            "--imap-allow-plaintext".to_string(),
        ];
    }
    cluster.start_all(Start::Fresh);
    let api = cluster.nodes[0].api.clone();
    // APPEND stores through the body store: log encoding 3.
    wait_until(Duration::from_secs(30), "every group at log encoding 3", || {
        get(&api, "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/content.py");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imap");
    run_script(
        &cluster,
        script,
        &[&imap_addrs[0], &imap_addrs[1], USER, PASSWORD, fixtures],
    );
    // A message appended by reference through the HTTP API: an index record, no bytes anywhere.
    let (status, answer) = post(
        &api,
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
        &json!({"messages": [{"guid": format!("{:032x}", 64), "size": 10, "flags": ["\\Flagged"]}],
                "client_id": "t64", "request_seq": 1}),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    run_script(&cluster, script, &["nobody", &imap_addrs[1], USER, PASSWORD]);
}

/// Runs the script with `args`, printing its output; fails the test if it fails.
fn run_script(cluster: &TestCluster, script: &str, args: &[&str]) {
    let output = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        for node in cluster.running() {
            let log = cluster.log(node);
            let imap: Vec<&str> = log.lines().filter(|l| l.contains("imap")).collect();
            eprintln!("--- node {node} log, IMAP lines\n{}", imap.join("\n"));
        }
    }
    assert!(
        output.status.success(),
        "the IMAP content script failed: {}",
        output.status
    );
}
