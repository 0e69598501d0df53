//! Locked doors: every route of the client and admin routers refuses a request without a
//! bearer token, with a wrong one, or with the other router's token (401, a JSON error, and
//! nothing changes), and the peer port refuses a handshake without the cluster secret. A 3-node
//! cluster holds one mailbox with one message; each request in the table is a real, valid
//! request that would change or reveal something with the right token (create, delete, append,
//! expunge, remove a member, move a leader, snapshot, repair, ...). Afterwards the mailboxes,
//! the message, every group's membership, leader and snapshot index are as before. As a
//! control, the same kind of request with the right token does go through, and a handshake
//! with the right secret succeeds, so the test would notice an open door.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use dovetail::placement::group_of;
use dovetail_raft::transport::auth::{client_handshake, ConnectionKind};
use dovetail_raft::transport::ClusterSecret;
use serde_json::{json, Value};
use support::{get, post, request_as, TestCluster, ADMIN_TOKEN, CLIENT_TOKEN, SECRET};

const GROUPS: u32 = 2;
const USER: &str = "locked@example.com";

/// What must not change: mailboxes, the message, and each group's membership, leader and
/// snapshot index on every node.
fn state(cluster: &TestCluster) -> Value {
    let (_, mailboxes) = get(&cluster.node(1).api, &format!("/v1/users/{USER}/mailboxes")).unwrap();
    let (_, messages) = get(
        &cluster.node(1).api,
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
    )
    .unwrap();
    let groups: Vec<Value> = (1..=3)
        .flat_map(|n| {
            let (_, status) = get(&cluster.node(n).api, "/admin/status").unwrap();
            status["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    json!([
                        n,
                        g["group"],
                        g["leader"],
                        g["voters"],
                        g["learners"],
                        g["snapshot"]
                    ])
                })
                .collect::<Vec<_>>()
        })
        .collect();
    json!({"mailboxes": mailboxes["mailboxes"], "messages": messages["messages"], "groups": groups})
}

#[test]
fn every_route_refuses_without_the_right_token() {
    let cluster = TestCluster::start(3, GROUPS, &["--rebalance-interval-ms", "0"]);
    let api = cluster.node(1).api.clone();
    let group = group_of(USER, GROUPS);
    let (s, v) = post(
        &api,
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let guid = v["mailbox_guid"].as_str().unwrap().to_string();
    let (s, v) = post(
        &api,
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
        &json!({"messages": [{"guid": format!("{:032x}", 1), "size": 10}]}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let leader = cluster.leader_of(group, 1).unwrap();
    let other = (1..=3).find(|&n| n != leader).unwrap();
    let before = state(&cluster);

    let m = format!("/v1/users/{USER}/mailboxes");
    let b = format!("{m}/INBOX");
    let client_routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", m.clone(), None),
        ("POST", m.clone(), Some(json!({"name": "Evil"}))),
        ("GET", b.clone(), None),
        ("DELETE", b.clone(), None),
        ("POST", format!("{b}/rename"), Some(json!({"to": "Renamed"}))),
        ("GET", format!("{b}/messages"), None),
        (
            "POST",
            format!("{b}/messages"),
            Some(json!({"messages": [{"guid": format!("{:032x}", 2), "size": 1}]})),
        ),
        (
            "POST",
            format!("{b}/store"),
            Some(json!({"uids": "1", "mode": "add", "flags": ["\\Deleted"]})),
        ),
        ("POST", format!("{b}/expunge"), Some(json!({"uids": "1"}))),
        ("GET", format!("{b}/changes?since=0"), None),
        (
            "POST",
            format!("{b}/copy"),
            Some(json!({"uids": "1", "to": "INBOX"})),
        ),
        ("GET", format!("/v1/users/{USER}/subscriptions"), None),
        ("PUT", format!("/v1/users/{USER}/subscriptions/Evil"), None),
        ("DELETE", format!("/v1/users/{USER}/subscriptions/INBOX"), None),
    ];
    let admin_routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/admin/status".into(), None),
        ("GET", "/admin/cluster".into(), None),
        (
            "POST",
            "/admin/members/learners".into(),
            Some(json!({"node_id": 9, "peer_addr": "127.0.0.1:1", "api_addr": "127.0.0.1:2"})),
        ),
        (
            "POST",
            "/admin/members/voters".into(),
            Some(json!({"node_id": 3})),
        ),
        ("DELETE", "/admin/members/3".into(), None),
        (
            "POST",
            format!("/admin/groups/{group}/transfer-leader"),
            Some(json!({"to": other})),
        ),
        ("POST", "/admin/rebalance".into(), None),
        ("POST", "/admin/verify".into(), Some(json!({}))),
        ("GET", format!("/admin/groups/{group}/digests"), None),
        (
            "GET",
            format!("/admin/groups/{group}/mailboxes/{guid}/image"),
            None,
        ),
        (
            "POST",
            format!("/admin/groups/{group}/mailboxes/{guid}/repair"),
            Some(json!({"replica": other})),
        ),
        ("POST", format!("/admin/groups/{group}/snapshot"), None),
        ("POST", "/admin/snapshot".into(), None),
        ("GET", format!("/admin/groups/{group}/backup"), None),
        ("GET", "/metrics".into(), None),
    ];
    let mut checked = 0;
    for (routes, right, wrong_role) in [
        (&client_routes, CLIENT_TOKEN, ADMIN_TOKEN),
        (&admin_routes, ADMIN_TOKEN, CLIENT_TOKEN),
    ] {
        let near_miss = format!("{right}x");
        for (method, path, body) in routes.iter() {
            for token in [
                None,
                Some("not-a-token"),
                Some(near_miss.as_str()),
                Some(wrong_role),
            ] {
                for n in 1..=3 {
                    let (s, v) =
                        request_as(&cluster.node(n).api, method, path, body.as_ref(), token).unwrap();
                    assert_eq!(
                        (s, v["error"]["code"].as_str()),
                        (401, Some("unauthorized")),
                        "{method} {path} with {token:?} on node {n}: {v}"
                    );
                    let text = v.to_string();
                    assert!(
                        !text.contains(right) && !text.contains(wrong_role),
                        "a token leaked: {text}"
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} refused requests");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&cluster), before, "a refused request changed something");

    // Controls: with the right token these routes do act.
    let (s, v) = request_as(
        &api,
        "POST",
        &m,
        Some(&json!({"name": "Allowed"})),
        Some(CLIENT_TOKEN),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = request_as(&api, "GET", "/metrics", None, Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_ne!(state(&cluster), before);
    // An unknown path is a plain 404, token or not.
    let (s, v) = request_as(&api, "GET", "/nothing/here", None, None).unwrap();
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");

    // The peer port: a wrong secret fails the handshake, garbage gets the connection closed
    // without an answer past the challenge, the right secret gets through.
    let peer = cluster.node(1).peer.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for (secret, ok) in [("wrong-secret-0123456789abcdef", false), (SECRET, true)] {
            let mut stream = tokio::net::TcpStream::connect(&peer).await.unwrap();
            let handshake = client_handshake(
                &mut stream,
                &ClusterSecret::new(secret.as_bytes()),
                7,
                ConnectionKind::Rpc,
            )
            .await;
            assert_eq!(handshake.is_ok(), ok, "secret {secret:?}: {handshake:?}");
        }
    });
    let mut raw = std::net::TcpStream::connect(&peer).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut challenge = [0u8; 37];
    raw.read_exact(&mut challenge).unwrap();
    assert_eq!(&challenge[..4], b"DVTL");
    raw.write_all(&[0u8; 73]).unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the server answered a bad proof with {} bytes",
        rest.len()
    );
}
