//! What the IMAP tests share (t63, t64, t65): a user in a passwd file, a 3-node cluster serving
//! plaintext IMAP on every node, the wait for a log encoding, and running a Python imaplib script.
#![allow(dead_code)]

use std::time::Duration;

use dovetail::node::dev::Start;
use dovetail::users::Cost;

use super::{free_node_addr, get, wait_until, TestCluster};

/// Writes `dir/users` with `user:password` (a cheap hash: the tests check the protocol, not the
/// KDF) and returns its path.
pub fn passwd_file(dir: &std::path::Path, user: &str, password: &str) -> String {
    let passwd = dir.join("users");
    let hash = dovetail::users::command::hash_field(password.as_bytes(), Cost::Sha512Crypt { rounds: 1_000 })
        .unwrap();
    std::fs::write(&passwd, format!("{user}:{hash}\n")).unwrap();
    passwd.to_str().unwrap().to_string()
}

/// A 3-node cluster (2 groups) of `passwd`'s users, each node serving IMAP with plaintext logins
/// on an address of its own, every group at least at log encoding `encoding`. Returns the
/// cluster and the IMAP addresses, node 1's first.
pub fn start_plaintext_cluster(passwd: &str, encoding: u64) -> (TestCluster, Vec<String>) {
    let mut cluster = TestCluster::prepare(
        3,
        2,
        &["--passwd-file", passwd, "--request-timeout-ms", "3000"],
        super::secrets(),
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
    wait_for_encoding(&cluster.nodes[0].api, encoding);
    (cluster, imap_addrs)
}

/// Waits until every group node `api` reports is at least at log encoding `encoding`.
pub fn wait_for_encoding(api: &str, encoding: u64) {
    wait_until(
        Duration::from_secs(30),
        &format!("every group at log encoding {encoding}"),
        || {
            get(api, "/admin/status").is_ok_and(|(_, v)| {
                v["groups"]
                    .as_array()
                    .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(encoding)))
            })
        },
    );
}

/// Runs the Python script `script` with `args`, printing its output; on a failure prints the
/// running nodes' IMAP log lines, and fails the test.
pub fn run_script(cluster: &TestCluster, script: &str, args: &[&str]) {
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
        "the IMAP script {script} failed: {}",
        output.status
    );
}
