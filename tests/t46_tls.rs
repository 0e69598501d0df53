//! TLS on both ports. A test CA signs one certificate naming the nodes' loopback addresses; three
//! real nodes run with `--tls-cert/--tls-key/--tls-ca` (HTTPS API) and
//! `--peer-tls-cert/--peer-tls-key/--peer-tls-ca` (mutual TLS between peers). The cluster must
//! work as usual over them: a write through one node (forwarded to the leader over peer TLS),
//! a linearizable read through another, the cluster overview (nodes calling each other's API
//! over HTTPS) with every node reachable, and `ctl status` over HTTPS. And the doors must be
//! shut to plaintext: plain HTTP to the API gets no HTTP answer, and a peer handshake over
//! plain TCP fails even with the right cluster secret.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use dovetail_raft::transport::auth::{client_handshake, ConnectionKind};
use dovetail_raft::transport::ClusterSecret;
use serde_json::json;
use support::{get, post, TestCluster, ADMIN_TOKEN, SECRET};

#[test]
fn api_and_peers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dovetail test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    for last in 10..=15u8 {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, last].into()));
    }
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("node.pem"), cert.pem()).unwrap();
    std::fs::write(path("node.key"), key.serialize_pem()).unwrap();
    support::use_tls(&ca.pem());

    let (ca_pem, node_pem, node_key) = (path("ca.pem"), path("node.pem"), path("node.key"));
    let cluster = TestCluster::start(
        3,
        2,
        &[
            "--tls-cert",
            &node_pem,
            "--tls-key",
            &node_key,
            "--tls-ca",
            &ca_pem,
            "--peer-tls-cert",
            &node_pem,
            "--peer-tls-key",
            &node_key,
            "--peer-tls-ca",
            &ca_pem,
        ],
    );
    let user = "tls@example.com";
    let (s, v) = post(
        &cluster.node(2).api,
        &format!("/v1/users/{user}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &cluster.node(2).api,
        &format!("/v1/users/{user}/mailboxes/INBOX/messages"),
        &json!({"messages": [{"guid": format!("{:032x}", 1), "size": 5}]}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = get(&cluster.node(3).api, &format!("/v1/users/{user}/mailboxes/INBOX")).unwrap();
    assert_eq!((s, v["exists"].as_u64()), (200, Some(1)), "{v}");

    let (s, v) = get(&cluster.node(1).api, "/admin/cluster").unwrap();
    assert_eq!(s, 200, "{v}");
    for node in v["nodes"].as_array().unwrap() {
        assert_eq!(node["reachable"], true, "{v}");
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .args([
            "ctl",
            "status",
            "--node",
            &format!("https://{}", cluster.node(1).api),
        ])
        .args(["--ca-cert", &ca_pem])
        .env("DOVETAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("3 nodes, 2 groups, 0 without a leader"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain HTTP to the API: no HTTP answer.
    let mut plain = std::net::TcpStream::connect(&cluster.node(1).api).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    plain
        .write_all(b"GET /admin/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1"), "plain HTTP was answered");

    // A peer handshake over plain TCP fails, the secret notwithstanding.
    let peer = cluster.node(1).peer.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut stream = tokio::net::TcpStream::connect(&peer).await.unwrap();
            let handshake = tokio::time::timeout(
                Duration::from_secs(15),
                client_handshake(
                    &mut stream,
                    &ClusterSecret::new(SECRET.as_bytes()),
                    7,
                    ConnectionKind::Rpc,
                ),
            )
            .await;
            assert!(
                !matches!(handshake, Ok(Ok(()))),
                "a plain-TCP peer completed the handshake"
            );
        });
}
