//! Peer connections over mutual TLS: three nodes whose certificates a test CA signed elect
//! leaders, replicate, forward proposals and ship a snapshot (a follower stopped past the log
//! retention) with every byte on the wire inside TLS. Then three would-be peers knock: one
//! with the cluster secret but no TLS, one with TLS but a certificate from another CA, and one
//! with both right; only the last is answered.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;
use crate::transport::{PeerTls, PeerTlsError, PeerTlsFiles};

/// A CA, a certificate for 127.0.0.1 signed by it, and one signed by a stranger CA.
fn tls_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for (prefix, ca_name) in [("", "test cluster CA"), ("stranger-", "stranger CA")] {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, ca_name);
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            let write = |name: &str, pem: String| {
                std::fs::write(dir.path().join(format!("{prefix}{name}")), pem).unwrap()
            };
            write("ca.pem", ca.pem());
            write("node.pem", cert.pem());
            write("node.key", key.serialize_pem());
        }
        dir
    })
    .path()
}

fn files(prefix: &str) -> PeerTlsFiles {
    let dir = tls_dir();
    let path = |name: &str| -> PathBuf { dir.join(format!("{prefix}{name}")) };
    PeerTlsFiles {
        cert: path("node.pem"),
        key: path("node.key"),
        ca: path("ca.pem"),
    }
}

fn with_tls(config: &mut RaftNodeConfig) {
    fast(config);
    config.snapshot_logs_since_last = Some(20);
    config.max_in_snapshot_log_to_keep = 5;
    config.peer_tls = Some(files(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_peers_over_mutual_tls_replicate_and_refuse_strangers() {
    let mut cluster = TestCluster::start(with_tls).await;
    cluster.wait_for_leaders().await;
    let group_id = 1;

    // Proposals through every node (forwarded over TLS), then a snapshot over TLS.
    cluster.stop_node(3).await;
    let mut last = LogPosition::default();
    for i in 0..60u8 {
        last = cluster
            .node(1 + u64::from(i % 2))
            .propose(group_id, vec![b't', i], deadline(10))
            .await
            .unwrap()
            .position;
    }
    let leader = cluster.node(1).metrics(group_id).unwrap().current_leader.unwrap();
    wait_until(Duration::from_secs(5), "the leader to purge its log", || {
        let m = cluster.node(leader).metrics(group_id).unwrap();
        m.purged_log_index.filter(|purged| *purged > 10)
    })
    .await;
    cluster.restart_node(3).await;
    cluster
        .node(3)
        .wait_applied(group_id, last.index, deadline(15))
        .await
        .unwrap();
    assert!(
        cluster.installs(3, group_id) >= 1,
        "node 3 caught up by a snapshot"
    );
    assert_eq!(cluster.applied(3, group_id), cluster.applied(1, group_id));

    let target = cluster.addrs[0].to_string();
    let knock = |id: NodeId, tls: Option<PeerTls>| {
        let router = Router::new(id, ClusterSecret::new(SECRET), tls, 1 << 20);
        router.set_peer_addr(1, &target);
        async move { router.read_index(1, 0, Duration::from_secs(3)).await }
    };
    let plain = knock(97, None).await;
    assert!(plain.is_err(), "a plain-TCP peer was answered: {plain:?}");
    let stranger = knock(96, Some(PeerTls::load(&files("stranger-")).unwrap())).await;
    assert!(
        stranger.is_err(),
        "a peer with a stranger CA's certificate was answered: {stranger:?}"
    );
    knock(95, Some(PeerTls::load(&files("")).unwrap())).await.unwrap();
    cluster.shutdown().await;
}

#[test]
fn bad_tls_files_are_named_errors() {
    let mut bad = files("");
    bad.key = bad.cert.clone();
    let e = PeerTls::load(&bad).unwrap_err();
    assert!(
        matches!(&e, PeerTlsError::Key { path, .. } if *path == bad.key),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(
        message.contains("key") && message.contains("node.pem"),
        "{message}"
    );
    let mut missing = files("");
    missing.ca = "/nonexistent/ca.pem".into();
    let e = PeerTls::load(&missing).unwrap_err();
    assert!(
        matches!(&e, PeerTlsError::CaFile { path, .. } if *path == missing.ca),
        "{e:?}"
    );
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}
