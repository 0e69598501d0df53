//! `client_api` and `admin_api`: HTTP requests to a node's API, through the node's own router
//! (`node::server::http_app`: tokens, client and admin routes, extractors, handlers) over a
//! real one-node cluster in this process (one group, its log and files in a temporary
//! directory), sent with `tower::ServiceExt::oneshot`.
//!
//! An input is a request in a small text form:
//! ```text
//! POST /v1/users/alice/mailboxes/INBOX/store?client_id=c&request_seq=4
//! content-type: application/json
//!
//! {"uids":"1:*","mode":"add","flags":["\\Seen"]}
//! ```
//! the method and target, header lines, an empty line, the body. A request without an
//! `authorization` header gets the right token for its path. Bytes no HTTP parser would hand on
//! (a malformed method, target or header) end the execution, as a server's parser would.
//!
//! What is checked beyond "no panic, no hang": no request is answered 500 (`internal`: a bug
//! by the API's own rules), and every error answer is the JSON error body.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use dovetail::api::admin::AdminState;
use dovetail::api::auth::BearerToken;
use dovetail::node::mail_group::MailGroup;
use dovetail::node::peer_api::PeerApi;
use dovetail::node::replicated::ReplicatedNode;
use dovetail::node::server::http_app;
use dovetail::node::status::NodeInfo;
use dovetail::service::{MailService, ReadOptions};
use dovetail::state_machine::GroupStateMachine;
use dovetail::txn::encoding::CURRENT_ENCODING;
use dovetail::txn::{NewMessage, Op, Txn};
use dovetail_raft::{Node, RaftNode, RaftNodeConfig};
use tower::ServiceExt;

pub const CLIENT_TOKEN: &str = "fuzz-client-token-0123456789";
pub const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";
const CLUSTER_SECRET: &str = "fuzz-cluster-secret-0123456789";

/// A node's state grows with the writes it applies (and its membership with the learners the
/// admin API adds): a fresh node replaces it after this many requests.
const REQUESTS_PER_NODE: u64 = 500;
/// How long a request may wait for the group's leader, quorum or another member.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest response body read back.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A one-node cluster and its HTTP surface.
struct TestNode {
    runtime: tokio::runtime::Runtime,
    raft: RaftNode<MailGroup>,
    app: axum::Router,
    requests: u64,
    _dir: tempfile::TempDir,
}

/// A real one-node cluster in this process (one group, its log, index and body files under a
/// directory): what the API targets, and the IMAP and LMTP targets (`frontend.rs`), run against.
pub struct Cluster {
    pub raft: RaftNode<MailGroup>,
    pub node: Arc<ReplicatedNode>,
    pub bodies: dovetail::node::bodies::NodeBodies,
    pub peer_addr: String,
    /// Never dialled: nothing listens on port 1.
    pub api_addr: String,
}

/// Starts a one-node cluster with its files under `data_dir` and waits until it leads.
pub async fn start_cluster(data_dir: &std::path::Path) -> Cluster {
    let peer_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a peer port");
    let peer_addr = peer_listener.local_addr().expect("its address").to_string();
    let config = RaftNodeConfig {
        heartbeat_interval_ms: 50,
        election_timeout_ms_min: 150,
        election_timeout_ms_max: 300,
        ..RaftNodeConfig::new(1, data_dir.join("raft"), 1, CLUSTER_SECRET.as_bytes().to_vec())
    };
    let groups = data_dir.join("groups");
    let raft = RaftNode::start(config, peer_listener, move |group| {
        let machine =
            GroupStateMachine::open(&groups.join(format!("g{group:04}"))).map_err(std::io::Error::other)?;
        Ok(MailGroup::new(machine, CURRENT_ENCODING))
    })
    .await
    .expect("the node starts");
    let api_addr = "127.0.0.1:1".to_string();
    let members = BTreeMap::from([(
        1,
        Node {
            peer_addr: peer_addr.clone(),
            api_addr: api_addr.clone(),
        },
    )]);
    raft.initialize(members).await.expect("initialize");
    let deadline = Instant::now() + Duration::from_secs(10);
    while raft.metrics(0).expect("group 0").current_leader != Some(1) {
        assert!(Instant::now() < deadline, "the one-node cluster elects itself");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bodies = dovetail::node::bodies::NodeBodies::new(
        Arc::new(dovetail::bodies::BodyStore::open(data_dir.join("blobs")).expect("the body store opens")),
        raft.clone(),
        dovetail::node::body_transfer::BodyTransfer::new(ADMIN_TOKEN, None).expect("a client"),
        dovetail::node::body_transfer::BodyTransfer::new(ADMIN_TOKEN, None).expect("a client"),
        1 << 20,
        dovetail::node::body_backlog::Backlogs::open(data_dir.join("body-backlog"), 1 << 20, 1 << 20)
            .expect("the backlog directory"),
    );
    let node = Arc::new(ReplicatedNode::new(raft.clone(), bodies.clone(), REQUEST_TIMEOUT));
    Cluster {
        raft,
        node,
        bodies,
        peer_addr,
        api_addr,
    }
}

impl TestNode {
    fn start() -> TestNode {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = super::temp_dir();
        let data_dir = dir.path().to_path_buf();
        let (raft, app) = runtime.block_on(async {
            let Cluster {
                raft,
                node,
                bodies,
                peer_addr,
                api_addr,
            } = start_cluster(&data_dir).await;
            seed_mailboxes(&node).await;
            let info = Arc::new(NodeInfo::new(
                1,
                api_addr,
                peer_addr,
                CURRENT_ENCODING,
                data_dir.clone(),
                Instant::now(),
            ));
            let admin = AdminState {
                raft: raft.clone(),
                info,
                peers: PeerApi::new(ADMIN_TOKEN),
                timeout: REQUEST_TIMEOUT,
                metrics: dovetail::node::metrics::install(),
                bodies,
            };
            let app = http_app(
                node,
                admin,
                BearerToken::new("client", CLIENT_TOKEN),
                BearerToken::new("admin", ADMIN_TOKEN),
                true,
                dovetail::api::in_flight::InFlightLimit::new(256),
            );
            (raft, app)
        });
        TestNode {
            runtime,
            raft,
            app,
            requests: 0,
            _dir: dir,
        }
    }

    fn stop(self) {
        let _ = self.runtime.block_on(self.raft.shutdown());
    }
}

/// What the seeds' requests find: alice's INBOX with messages (one flagged, one with a
/// keyword), one expunged, and an Archive/2024 child.
async fn seed_mailboxes(node: &ReplicatedNode) {
    let user = "alice";
    let ops = [
        Op::CreateMailbox {
            user: user.into(),
            mailbox: "INBOX".into(),
            mailbox_guid: [0xaa; 16],
            uid_validity: 1_700_000_000,
        },
        Op::CreateMailbox {
            user: user.into(),
            mailbox: "Archive".into(),
            mailbox_guid: [0xbb; 16],
            uid_validity: 1_700_000_001,
        },
        Op::CreateMailbox {
            user: user.into(),
            mailbox: "Archive/2024".into(),
            mailbox_guid: [0xcc; 16],
            uid_validity: 1_700_000_002,
        },
        Op::Append {
            user: user.into(),
            mailbox: "INBOX".into(),
            messages: (1..=5u8)
                .map(|i| NewMessage {
                    guid: [i; 16],
                    size: 1000 * u64::from(i),
                    internal_date: 1_700_000_000 + i64::from(i),
                    flags: match i {
                        2 => vec!["\\Flagged".into()],
                        3 => vec!["$Work".into(), "\\Seen".into()],
                        _ => vec![],
                    },
                })
                .collect(),
        },
        Op::Expunge {
            user: user.into(),
            mailbox: "INBOX".into(),
            uids: dovetail::txn::UidSet::parse("4").expect("a UID set"),
            expected_guids: vec![],
        },
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let txn = Txn {
            client_id: "fuzz-seed".into(),
            request_seq: i as u64 + 1,
            op,
        };
        let ack = node.write(txn).await.expect("a seed write");
        assert!(!ack.outcome.is_rejected(), "seed write {i}: {:?}", ack.outcome);
    }
    let status = node
        .read(user, ReadOptions::default(), |g| {
            g.state().list_mailboxes("alice").len()
        })
        .await
        .expect("a read");
    assert_eq!(status.value, 3);
}

thread_local! {
    static NODE: RefCell<Option<TestNode>> = const { RefCell::new(None) };
}

/// Parses the text form of a request; `None` for what no HTTP parser would hand on.
pub fn parse_request(data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next()?;
    let space = request_line.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&request_line[..space]).ok()?;
    let target = axum::http::Uri::try_from(&request_line[space + 1..]).ok()?;
    // The router sees origin-form targets only (a server's parser takes the authority apart).
    if target.scheme().is_some() || target.authority().is_some() {
        return None;
    }
    let mut request = Request::builder().method(method).uri(target);
    let mut authorized = false;
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        authorized |= name == header::AUTHORIZATION;
        request = request.header(name, value);
    }
    let mut request = request.body(Body::from(body.to_vec())).ok()?;
    if !authorized {
        let path = request.uri().path();
        let token = if path.starts_with("/admin") || path.starts_with("/metrics") {
            ADMIN_TOKEN
        } else {
            CLIENT_TOKEN
        };
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Some(request)
}

/// Sends the request to the node's router and checks the answer.
fn serve(data: &[u8]) {
    let Some(request) = parse_request(data) else {
        return;
    };
    NODE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell
            .as_ref()
            .is_some_and(|node| node.requests >= REQUESTS_PER_NODE)
        {
            super::setup(|| cell.take().expect("a node").stop());
        }
        let node = cell.get_or_insert_with(|| super::setup(TestNode::start));
        node.requests += 1;
        let app = node.app.clone();
        let (status, body) = node.runtime.block_on(async move {
            let response = app.oneshot(request).await.expect("the router is infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), MAX_RESPONSE_BYTES)
                .await
                .expect("a response body");
            (status, body)
        });
        // A membership change outlives the request: learners are removed again, and a node
        // whose voters changed (a joint configuration with an unreachable voter stays
        // uncommitted) is replaced, so that every request meets a one-node cluster.
        let metrics = node.raft.metrics(0).expect("group 0");
        if metrics.voters != BTreeSet::from([1]) || metrics.current_leader != Some(1) {
            super::setup(|| cell.take().expect("a node").stop());
        } else if !metrics.learners.is_empty() {
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            for learner in &metrics.learners {
                if node
                    .runtime
                    .block_on(node.raft.change_members(
                        dovetail_raft::MembershipChange::Remove {
                            node_id: *learner,
                            force: true,
                        },
                        deadline,
                    ))
                    .is_err()
                {
                    super::setup(|| cell.take().expect("a node").stop());
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&body);
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "an internal error: {text}"
        );
        if status.is_client_error() || status.is_server_error() {
            let error: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{status}: not a JSON error body ({e}): {text}"));
            assert!(
                error["error"]["code"].is_string(),
                "{status}: no error code: {text}"
            );
        }
    });
}

/// A request to the client API (`/v1/...`).
pub fn client_api(data: &[u8]) {
    serve(data);
}

/// A request to the admin API (`/admin/...`, `/metrics`).
pub fn admin_api(data: &[u8]) {
    serve(data);
}
