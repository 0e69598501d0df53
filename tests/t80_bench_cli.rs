//! `dovetail bench` end to end: the binary drives a live 3-node cluster with the `mixed`
//! workload (appends, flag stores and linearizable status reads, through every node round-robin,
//! so most requests are forwarded or need a read index from another node) for 2 measured
//! seconds and prints `--json`. Checked: every operation of the mix was measured (nonzero
//! successful ops with nonzero latencies), none failed, totals add up, and the cluster holds what
//! the report claims (each bench user's INBOX has the set-up messages plus at least the measured
//! appends).

mod support;

use std::process::Command;

use serde_json::Value;
use support::{get, TestCluster, CLIENT_TOKEN};

#[test]
fn t80_bench_mixed_json_reports_every_operation_without_errors() {
    let cluster = TestCluster::start(3, 4, &[]);
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("http://{}", n.api))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("bench")
        .args(["--nodes", &nodes.join(",")])
        .args([
            "--workload",
            "mixed",
            "--concurrency",
            "4",
            "--duration",
            "2",
            "--json",
        ])
        .env("DOVETAIL_CLIENT_TOKEN", CLIENT_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    assert_eq!(report["workload"], "mixed");
    assert_eq!(report["seconds"], 2.0);
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["errors_by_kind"], serde_json::json!({}));
    let operations = report["operations"].as_object().unwrap();
    let names: Vec<&str> = operations.keys().map(String::as_str).collect();
    assert_eq!(names, ["append", "read-linearizable", "store"]);
    let mut total = 0;
    for (name, op) in operations {
        let ops = op["ops"].as_u64().unwrap();
        assert!(ops > 0, "{name}: no successful requests: {report:#}");
        assert_eq!(op["errors"], 0, "{name}: {report:#}");
        assert!(op["latency_us"]["p50"].as_u64().unwrap() > 0, "{name}");
        assert!(op["latency_us"]["p50"].as_u64() <= op["latency_us"]["max"].as_u64());
        total += ops;
    }
    assert_eq!(report["ops"].as_u64(), Some(total));
    // Half the draws are appends: with hundreds of requests, appends outnumber each other kind.
    let ops = |name: &str| operations[name]["ops"].as_u64().unwrap();
    assert!(
        ops("append") > ops("store") && ops("append") > ops("read-linearizable"),
        "{report:#}"
    );

    // The cluster holds what the report claims: every bench user's INBOX has the set-up
    // messages plus its appends (measured ones and warm-up ones), read linearizably.
    let prefix = report["user_prefix"].as_str().unwrap();
    let mut exists = 0;
    for worker in 0..4 {
        let path = format!("/v1/users/{prefix}{worker}/mailboxes/INBOX?consistency=linearizable");
        let (status, inbox) = get(&cluster.node(1 + worker % 3).api, &path).unwrap();
        assert_eq!(status, 200, "{path}: {inbox}");
        exists += inbox["exists"].as_u64().unwrap();
    }
    assert!(exists >= 4 * 100 + ops("append"), "{exists} messages: {report:#}");
}
