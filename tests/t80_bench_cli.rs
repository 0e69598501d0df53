//! `dovetail bench` end to end: the binary drives a live 3-node cluster with the `mixed`
//! workload (appends, flag stores and linearizable status reads, through every node round-robin,
//! so most requests are forwarded or need a read index from another node) for 2 measured
//! seconds and prints `--json`. Checked: every operation of the mix was measured (nonzero
//! successful ops with nonzero latencies), none failed, totals add up, and the cluster holds what
//! the report claims (each bench user's INBOX has the set-up messages plus at least the measured
//! appends).
//!
//! The `deliver` workload the same way: 2 clients deliver 16 KiB messages with their bodies for
//! 2 measured seconds (the set-up waits for log encoding 3). Checked: deliveries succeeded
//! without errors, MB/s is messages/s × 16,384 bytes, and each client's INBOX holds its set-up
//! delivery plus at least the measured ones, each of 16,384 bytes with a body.

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

#[test]
fn t80_bench_deliver_reports_messages_and_megabytes_per_second() {
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
            "deliver",
            "--size",
            "16k",
            "--concurrency",
            "2",
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
    assert_eq!(report["workload"], "deliver");
    assert_eq!(report["size_bytes"], 16_384);
    assert_eq!(report["errors"], 0, "{report:#}");
    let deliver = &report["operations"]["deliver"];
    let ops = deliver["ops"].as_u64().unwrap();
    assert!(ops > 0, "no successful deliveries: {report:#}");
    let messages_per_second = deliver["messages_per_second"].as_f64().unwrap();
    let megabytes_per_second = deliver["megabytes_per_second"].as_f64().unwrap();
    assert!(messages_per_second > 0.0);
    assert!(
        (megabytes_per_second - messages_per_second * 16_384.0 / 1e6).abs() < 1e-6,
        "{report:#}"
    );
    assert!(deliver["latency_us"]["p50"].as_u64().unwrap() > 0);

    // Every delivery the report counts is in the cluster, with its body's size.
    let prefix = report["user_prefix"].as_str().unwrap();
    let mut exists = 0;
    for worker in 0..2 {
        let user = format!("{prefix}{worker}");
        let path = format!("/v1/users/{user}/mailboxes/INBOX?consistency=linearizable");
        let (status, inbox) = get(&cluster.node(1 + worker).api, &path).unwrap();
        assert_eq!(status, 200, "{path}: {inbox}");
        exists += inbox["exists"].as_u64().unwrap();
        let path = format!("/v1/users/{user}/mailboxes/INBOX/messages?first=1&last=3");
        let (status, messages) = get(&cluster.node(1).api, &path).unwrap();
        assert_eq!(status, 200, "{path}: {messages}");
        for message in messages["messages"].as_array().unwrap() {
            assert_eq!(message["size"], 16_384, "{message}");
            assert!(message["body"].is_string(), "{message}");
        }
    }
    assert!(exists >= 2 + ops, "{exists} messages: {report:#}");
}
