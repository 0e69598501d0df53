//! The shared fixture of the multi-node tests: `TestCluster::start(n)` runs n real `dovetail
//! serve` processes, node i on its own loopback address 127.0.0.(10+i), data in a temporary
//! directory; node 1 bootstraps. Each node's command line comes from the library's
//! `dovetail::node::dev::ClusterLayout`, as `dovetail dev`'s do. Helpers: a small blocking HTTP
//! client, `wait_until`, and process control (kill -9, SIGTERM, SIGSTOP/SIGCONT, restart).
//!
//! A randomized test takes its seed and generator from `rng.rs` beside this file
//! (`#[path = "support/rng.rs"] mod rng;`).

#![allow(dead_code)]

/// What the IMAP tests share.
pub mod imap;
/// What the real-client tests share.
pub mod mail;
/// Maildir folders, as the real clients keep them.
pub mod maildir;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dovetail::node::dev::{ClusterLayout, NodeAddrs, Secrets, Start};
use serde_json::Value;

pub const SECRET: &str = "test-cluster-secret-0123456789";
pub const CLIENT_TOKEN: &str = "test-client-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Every test cluster's secrets.
pub fn secrets() -> Secrets {
    Secrets {
        cluster_secret: SECRET.into(),
        client_token: CLIENT_TOKEN.into(),
        admin_token: ADMIN_TOKEN.into(),
    }
}

/// Flags every test node runs with before the test's own: quick heartbeats and elections.
const TEST_SERVE_FLAGS: [&str; 4] = ["--heartbeat-ms", "100", "--election-timeout-ms", "600"];

/// The token a path needs: the admin token for `/admin/...` and `/metrics`, else the client token.
pub fn token_for(path: &str) -> &'static str {
    if path.starts_with("/admin") || path.starts_with("/metrics") {
        ADMIN_TOKEN
    } else {
        CLIENT_TOKEN
    }
}

pub struct NodeProcess {
    pub id: u64,
    pub api: String,
    pub peer: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// Flags of this node only, after the cluster's (see [`TestCluster::restart_with`]).
    pub own_flags: Vec<String>,
}

pub struct TestCluster {
    pub nodes: Vec<NodeProcess>,
    /// Every node's addresses and flags; the nodes' command lines come from it.
    pub layout: ClusterLayout,
    /// The cluster's secret and tokens: [`secrets`] unless the test chose others.
    pub secrets: Secrets,
    _dir: tempfile::TempDir,
}

/// Node `id`'s API and peer addresses: its own loopback address 127.0.0.(10+id), two free ports
/// (bound and released; the tests' own processes are the only users). Both are bound at once:
/// two binds in turn may be handed the same port, and a node whose two listeners collide exits
/// at start. A port is handed out at most once per test process: tests of one binary run in
/// parallel, and a port released here could otherwise be handed to another test's cluster before
/// this node binds it — the two clusters would then answer for each other (every cluster's node
/// i listens on the same address, and they share tokens, users and mailbox names).
fn free_node_addrs(id: u64) -> NodeAddrs {
    let ip = format!("127.0.0.{}", 10 + id);
    let [api, peer] = free_ports(&ip);
    NodeAddrs {
        id,
        api: format!("{ip}:{api}"),
        peer: format!("{ip}:{peer}"),
    }
}

/// Ports handed out so far in this test process (see [`free_node_addrs`]).
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// `N` free ports on `ip`, bound at once and released, none handed out before in this process.
fn free_ports<const N: usize>(ip: &str) -> [u16; N] {
    loop {
        let listeners: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind((ip, 0)).unwrap()).collect();
        let ports: [u16; N] = std::array::from_fn(|i| listeners[i].local_addr().unwrap().port());
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if ports.iter().any(|p| handed_out.contains(p)) {
            continue;
        }
        handed_out.extend(ports);
        return ports;
    }
}

/// A free `HOST:PORT` on node `id`'s loopback address 127.0.0.(10+id) for another listener of
/// the node (`--lmtp-listen`), never handed out before in this test process.
pub fn free_node_addr(id: u64) -> String {
    let ip = format!("127.0.0.{}", 10 + id);
    let [port] = free_ports(&ip);
    format!("{ip}:{port}")
}

impl NodeProcess {
    /// Not started yet.
    fn new(layout: &ClusterLayout, node: &NodeAddrs) -> NodeProcess {
        NodeProcess {
            id: node.id,
            api: node.api.clone(),
            peer: node.peer.clone(),
            dir: layout.node_dir(node.id),
            child: None,
            own_flags: Vec::new(),
        }
    }
}

impl TestCluster {
    /// Starts `n` nodes with `groups` groups and waits until every group has a leader.
    pub fn start(n: u64, groups: u32, extra_args: &[&str]) -> TestCluster {
        let mut cluster = TestCluster::prepare(n, groups, extra_args, secrets());
        cluster.start_all(Start::Fresh);
        cluster
    }

    /// The layout of `n` nodes (addresses, data directories, flags) with `secrets`, none started
    /// yet: for a test that prepares their data directories first (such as a restore), then
    /// calls [`TestCluster::start_all`].
    pub fn prepare(n: u64, groups: u32, extra_args: &[&str], secrets: Secrets) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let layout = ClusterLayout {
            data_dir: dir.path().to_path_buf(),
            groups,
            nodes: (1..=n).map(free_node_addrs).collect(),
            members: n as usize,
            serve_flags: TEST_SERVE_FLAGS
                .iter()
                .chain(extra_args)
                .map(|s| s.to_string())
                .collect(),
        };
        let nodes = layout
            .nodes
            .iter()
            .map(|node| NodeProcess::new(&layout, node))
            .collect();
        TestCluster {
            nodes,
            layout,
            secrets,
            _dir: dir,
        }
    }

    /// Starts every node as `start` says (`Start::Fresh`: node 1 bootstraps; `Start::Restart`:
    /// nobody does, as on data directories a restore prepared) and waits until every group has a
    /// leader.
    pub fn start_all(&mut self, start: Start) {
        for id in 1..=self.nodes.len() as u64 {
            self.spawn(id, start);
        }
        self.wait_for_leaders(Duration::from_secs(60));
    }

    /// [`TestCluster::start`], calling `prepare(id, dir)` on each node's (created, empty) data
    /// directory before its process starts: to mount a small file system there, say.
    pub fn start_prepared(
        n: u64,
        groups: u32,
        extra_args: &[&str],
        mut prepare: impl FnMut(u64, &Path),
    ) -> TestCluster {
        let mut cluster = TestCluster::prepare(n, groups, extra_args, secrets());
        for id in 1..=n {
            let node_dir = cluster.layout.node_dir(id);
            std::fs::create_dir_all(&node_dir).unwrap();
            prepare(id, &node_dir);
        }
        cluster.start_all(Start::Fresh);
        cluster
    }

    /// A request to node `id` with this cluster's token for the path (see [`token_for`]).
    pub fn call(
        &self,
        id: u64,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let token = if token_for(path) == ADMIN_TOKEN {
            &self.secrets.admin_token
        } else {
            &self.secrets.client_token
        };
        request_as(&self.node(id).api, method, path, body, Some(token))
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        &self.nodes[(id - 1) as usize]
    }

    /// Where node `id`'s log goes: beside its data directory, not in it, so that a test that
    /// fills the node's file system still reads what the node said.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.layout.data_dir.join(format!("node{id}.log"))
    }

    /// Starts node `id`'s process, its stderr appended to its log ([`TestCluster::log_path`]).
    fn spawn(&mut self, id: u64, start: Start) {
        let dir = self.layout.node_dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let exe = Path::new(env!("CARGO_BIN_EXE_dovetail"));
        let child = self
            .layout
            .command(exe, id, start, &self.secrets)
            .args(&self.nodes[(id - 1) as usize].own_flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[(id - 1) as usize].child = Some(child);
    }

    /// Waits until every group has a leader in the view of every running node, and has moved
    /// to the log encoding every running node applies (a new cluster's leaders raise it with a
    /// log entry shortly after they are elected: tests that count entries start after it).
    pub fn wait_for_leaders(&self, limit: Duration) {
        let running: Vec<&NodeProcess> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        let deadline = Instant::now() + limit;
        let common_encoding = || {
            running
                .iter()
                .map(|n| {
                    self.call(n.id, "GET", "/admin/status", None)
                        .ok()
                        .and_then(|(_, v)| v["node"]["max_encoding"].as_u64())
                        .unwrap_or(0)
                })
                .min()
                .unwrap_or(0)
        };
        let led_at = |n: &NodeProcess, encoding: u64| {
            self.call(n.id, "GET", "/admin/status", None).is_ok_and(|(s, v)| {
                s == 200
                    && v["groups"].as_array().is_some_and(|g| {
                        g.iter()
                            .all(|g| !g["leader"].is_null() && g["encoding"].as_u64() >= Some(encoding))
                    })
            })
        };
        let led = |n: &NodeProcess| led_at(n, common_encoding());
        while !running.iter().all(|n| led(n)) {
            if Instant::now() >= deadline {
                // Name the nodes that never got there, with the end of their logs.
                let mut report = String::new();
                for n in running.iter().filter(|n| !led(n)) {
                    let log = std::fs::read_to_string(self.log_path(n.id)).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    report += &format!("\n--- node {} ({}), last log lines:\n", n.id, n.api);
                    for line in tail.into_iter().rev() {
                        report += line;
                        report += "\n";
                    }
                }
                panic!("timed out after {limit:?} waiting until every group has a leader{report}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The leader of `group` as node `via` sees it.
    pub fn leader_of(&self, group: u32, via: u64) -> Option<u64> {
        let (_, v) = self.call(via, "GET", "/admin/status", None).ok()?;
        v["groups"][group as usize]["leader"].as_u64()
    }

    pub fn signal(&self, id: u64, signal: i32) {
        let pid = self.node(id).child.as_ref().expect("node running").id();
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        if let Some(mut child) = node.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: the node drains and exits.
    pub fn stop(&mut self, id: u64) -> std::process::ExitStatus {
        self.signal(id, libc::SIGTERM);
        self.stop_signalled(id)
    }

    /// Waits for a node that was sent SIGTERM to exit.
    pub fn stop_signalled(&mut self, id: u64) -> std::process::ExitStatus {
        let node = &mut self.nodes[(id - 1) as usize];
        let mut child = node.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {id} did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self, id: u64) {
        assert!(self.node(id).child.is_none(), "node {id} is still running");
        self.spawn(id, Start::Restart);
    }

    /// Restarts node `id` with `flags` of its own (replacing any it had) after the cluster's:
    /// a different release of the node, say.
    pub fn restart_with(&mut self, id: u64, flags: &[&str]) {
        self.nodes[(id - 1) as usize].own_flags = flags.iter().map(|f| f.to_string()).collect();
        self.restart(id);
    }

    /// The node's log, for failure messages.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// The directory of `group` on node `id`.
    pub fn group_dir(&self, id: u64, group: u32) -> PathBuf {
        self.node(id).dir.join("groups").join(format!("g{group:04}"))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Polls `condition` every 50 ms until it holds, or panics after `limit` naming `what`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When set (once per test process, before the cluster starts), every request of this fixture
/// speaks HTTPS with this client configuration.
static TLS: std::sync::OnceLock<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> =
    std::sync::OnceLock::new();

/// Makes this process's fixture requests use HTTPS, trusting the PEM CA certificate `ca_pem`.
pub fn use_tls(ca_pem: &str) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TLS.set(std::sync::Arc::new(config))
        .unwrap_or_else(|_| panic!("use_tls called twice"));
}

/// One HTTP/1.1 request; returns the status and the JSON body (`Null` if the body is not JSON).
/// The path's token (see [`token_for`]) is sent as a bearer token.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
    request_as(addr, method, path, body, Some(token_for(path)))
}

/// One HTTP/1.1 request with the given bearer token (or none).
pub fn request_as(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut response = Vec::new();
    match TLS.get() {
        None => {
            stream.write_all(head.as_bytes())?;
            stream.write_all(body.as_bytes())?;
            stream.read_to_end(&mut response)?;
        }
        Some(config) => {
            use tokio_rustls::rustls;
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(std::io::Error::other)?;
            let connection =
                rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(connection, stream);
            tls.write_all(head.as_bytes())?;
            tls.write_all(body.as_bytes())?;
            // A server that closes without close_notify still sent a whole response.
            if let Err(e) = tls.read_to_end(&mut response) {
                if e.kind() != std::io::ErrorKind::UnexpectedEof || response.is_empty() {
                    return Err(e);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

pub fn get(addr: &str, path: &str) -> std::io::Result<(u16, Value)> {
    request(addr, "GET", path, None)
}

pub fn post(addr: &str, path: &str, body: &Value) -> std::io::Result<(u16, Value)> {
    request(addr, "POST", path, Some(body))
}

/// Every file of `dir`, relative path -> bytes.
pub fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    files
}

impl TestCluster {
    /// Node `id`'s `/admin/status` entry for `group`, or `None` if the node does not answer.
    pub fn group_status(&self, id: u64, group: u32) -> Option<Value> {
        let (s, v) = self.call(id, "GET", "/admin/status", None).ok()?;
        (s == 200).then(|| v["groups"][group as usize].clone())
    }

    /// Ids of the nodes whose process is running (possibly SIGSTOPped).
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Sends SIGTERM to every running node at once, then waits for each to exit; asserts a clean
    /// exit and returns nothing (a failing node's log is in the panic message).
    pub fn stop_all(&mut self) {
        let running = self.running();
        for &id in &running {
            self.signal(id, libc::SIGTERM);
        }
        for &id in &running {
            let status = self.stop_signalled(id);
            assert!(status.success(), "node {id} exit {status}\n{}", self.log(id));
        }
    }

    /// Waits until every running node reports the same `applied` index for `group`, at least
    /// `at_least`; returns that index.
    pub fn wait_applied_equal(&self, group: u32, at_least: u64, limit: Duration) -> u64 {
        let mut index = 0;
        wait_until(
            limit,
            &format!("all running nodes applied group {group} equally"),
            || {
                let applied: Vec<Option<u64>> = self
                    .running()
                    .iter()
                    .map(|&n| self.group_status(n, group).and_then(|g| g["applied"].as_u64()))
                    .collect();
                match applied.first() {
                    Some(Some(first)) if *first >= at_least && applied.iter().all(|a| a == &Some(*first)) => {
                        index = *first;
                        true
                    }
                    _ => false,
                }
            },
        );
        index
    }
}

/// The answer to a write retried across nodes.
#[derive(Debug, Clone)]
pub enum Retried {
    /// A node answered with something other than 503 (the status and body).
    Answered(u16, Value),
    /// Every attempt failed (connection error or 503) until `give_up` said stop: the write may
    /// or may not have been applied.
    Unknown,
}

/// POSTs `body` (which carries a `client_id` and `request_seq`, so a retry is applied at most
/// once) to `addrs[start]`, and on a connection error or a 503 retries the same body against the
/// next address in turn, until a node answers otherwise or `give_up()` returns true.
pub fn post_retrying(
    addrs: &[String],
    start: usize,
    path: &str,
    body: &Value,
    mut give_up: impl FnMut() -> bool,
) -> Retried {
    let mut i = start;
    loop {
        match post(&addrs[i % addrs.len()], path, body) {
            Ok((503, _)) | Err(_) => {}
            Ok((status, value)) => return Retried::Answered(status, value),
        }
        if give_up() {
            return Retried::Unknown;
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TestCluster {
    /// Starts one more node (id = current count + 1) that is not bootstrapped and belongs to no
    /// group yet: it serves its API and waits to be added (`POST /admin/members/learners`).
    /// Returns its id once its API answers.
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        self.layout.nodes.push(free_node_addrs(id));
        self.nodes
            .push(NodeProcess::new(&self.layout, self.layout.node(id)));
        self.spawn(id, Start::Fresh);
        wait_until(
            Duration::from_secs(30),
            &format!("node {id} serves its API"),
            || {
                self.call(id, "GET", "/admin/status", None)
                    .is_ok_and(|(s, _)| s == 200)
            },
        );
        id
    }

    /// How many groups each node leads, as node `via` sees it (nodes leading none are absent).
    pub fn leader_counts(&self, via: u64) -> Option<std::collections::BTreeMap<u64, usize>> {
        let (s, v) = self.call(via, "GET", "/admin/status", None).ok()?;
        if s != 200 {
            return None;
        }
        let mut counts = std::collections::BTreeMap::new();
        for g in v["groups"].as_array()? {
            *counts.entry(g["leader"].as_u64()?).or_default() += 1;
        }
        Some(counts)
    }
}

/// An HTTP answer with its headers (names lower-cased) and raw body.
pub struct RawAnswer {
    pub status: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request with raw bytes as its body and extra headers; the path's token is sent.
/// Plain HTTP only. The answer's body is read to the connection's end (`Connection: close`).
pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawAnswer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        token_for(path),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server may answer (413) before it has read the whole body and close: not a failure.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(RawAnswer {
        status,
        headers,
        body: response[split + 4..].to_vec(),
    })
}
