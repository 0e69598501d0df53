//! IMAP COPY, MOVE, subscriptions and RENAME INBOX over the replicated ops of log encoding 4
//! (`src/imap/copy.rs`, `src/imap/subscriptions.rs`). Property: a copy or a move is one log
//! entry, so every node sees the same result — the copies with their flags and bytes, the UIDs
//! COPYUID named, a moved message gone from its source — and sessions elsewhere learn of a
//! move's expunges only where RFC 3501 §7.4.1 allows. Provocation, on a 3-node cluster of real
//! processes with `--passwd-file` and `--imap-listen` on each, driven by Python's imaplib
//! (`tests/imap/copy.py`): COPY and UID COPY on node 1, read back through node 2; MOVE and UID
//! MOVE on node 1 while a session on node 3 has the mailbox selected; COPY to a missing mailbox;
//! SUBSCRIBE/UNSUBSCRIBE on node 1 and LSUB on node 3; RENAME INBOX. Checks (in the script):
//! COPYUID's UID map, equal flags and `BODY[]` bytes of source and copy, MOVE's `* OK [COPYUID]`
//! then EXPUNGEs renumbering the mover's view, no EXPUNGE on node 3 during a FETCH and the
//! EXPUNGEs at its NOOP, `NO [TRYCREATE]`, LSUB `%` with an unsubscribed parent `\Noselect`,
//! INBOX empty after RENAME INBOX and the new mailbox holding its messages, a retried RENAME INBOX
//! (target created, nothing moved) finishing into the empty target; MOVE refused under EXAMINE
//! and into the selected mailbox itself.

mod support;

use std::time::Duration;

use dovetail::node::dev::Start;
use dovetail::users::Cost;
use support::{free_node_addr, get, wait_until, TestCluster};

const USER: &str = "carol";
const PASSWORD: &str = "copy and move";

#[test]
fn imap_copy_move_and_subscriptions_are_one_entry_seen_by_every_node() {
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
    // Copy, Move and Subscribe are log encoding 4.
    wait_until(Duration::from_secs(30), "every group at log encoding 4", || {
        get(&api, "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(4)))
        })
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/copy.py");
    let mut args: Vec<String> = imap_addrs.clone();
    args.extend([USER.to_string(), PASSWORD.to_string()]);
    let output = std::process::Command::new("python3")
        .arg(script)
        .args(&args)
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
        "the IMAP script failed: {}",
        output.status
    );
}
