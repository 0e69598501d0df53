//! Multi-node tests of [`RaftNode`] in one process over real TCP on 127.0.0.1: three nodes,
//! four groups, and [`TestApp`], which appends request bytes to a list.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::*;
use crate::transport::{CallError, ClusterSecret, Router};
use crate::{Request, SnapshotFile, SnapshotInfo};

const GROUPS: u32 = 4;
const SECRET: &[u8] = b"test cluster secret";

/// The state of one group's test application. It lives in a registry outside the node, so it
/// survives a node restart as a durable application state would.
#[derive(Default)]
struct TestState {
    applied: Vec<Vec<u8>>,
    last: Option<(LogPosition, Vec<u8>)>,
    snapshot: Option<(PathBuf, LogPosition, Vec<u8>)>,
    snapshots_built: usize,
    snapshots_installed: Arc<AtomicUsize>,
    /// The next this many applies fail as on a full disk (`StorageFull`), changing nothing.
    full_disk_applies: usize,
    /// Calls of `flush`, and the error each fails with (none: they succeed).
    flushes: usize,
    flush_error: Option<io::ErrorKind>,
}

/// A test application: requests are appended to a list; the response is the list length.
struct TestApp {
    dir: PathBuf,
    state: Arc<Mutex<TestState>>,
}

type SnapshotBody = (Vec<Vec<u8>>, LogPosition, Vec<u8>);

impl TestApp {
    fn state(&self) -> std::sync::MutexGuard<'_, TestState> {
        self.state.lock().unwrap()
    }

    fn applied(&self) -> Vec<Vec<u8>> {
        self.state().applied.clone()
    }

    fn is_duplicate(&self, position: LogPosition) -> bool {
        self.state()
            .last
            .as_ref()
            .is_some_and(|(last, _)| position <= *last)
    }
}

impl Application for TestApp {
    fn applied_state(&self) -> Option<(LogPosition, Vec<u8>)> {
        self.state().last.clone()
    }

    fn apply(
        &mut self,
        position: LogPosition,
        consensus_meta: &[u8],
        requests: &[Request],
    ) -> io::Result<Vec<Vec<u8>>> {
        if self.is_duplicate(position) {
            return Ok(Vec::new());
        }
        let mut state = self.state();
        if state.full_disk_applies > 0 {
            state.full_disk_applies -= 1;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left (test)"));
        }
        let mut responses = Vec::with_capacity(requests.len());
        for request in requests {
            state.applied.push(request.0.clone());
            responses.push((state.applied.len() as u64).to_le_bytes().to_vec());
        }
        state.last = Some((position, consensus_meta.to_vec()));
        Ok(responses)
    }

    fn apply_blank(&mut self, position: LogPosition, consensus_meta: &[u8]) -> io::Result<()> {
        if !self.is_duplicate(position) {
            self.state().last = Some((position, consensus_meta.to_vec()));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut state = self.state();
        state.flushes += 1;
        state
            .flush_error
            .map_or(Ok(()), |kind| Err(io::Error::new(kind, "flush fails (test)")))
    }

    fn build_snapshot(&mut self) -> io::Result<SnapshotInfo> {
        let mut state = self.state();
        let (position, meta) = state
            .last
            .clone()
            .ok_or_else(|| io::Error::other("nothing applied"))?;
        state.snapshots_built += 1;
        let path = self.dir.join(format!("snapshot-{}", state.snapshots_built));
        let body: SnapshotBody = (state.applied.clone(), position, meta.clone());
        std::fs::write(
            &path,
            bincode::serde::encode_to_vec(&body, bincode::config::standard()).unwrap(),
        )?;
        state.snapshot = Some((path.clone(), position, meta.clone()));
        Ok(SnapshotInfo {
            file: SnapshotFile::open(&path)?,
            position,
            consensus_meta: meta,
        })
    }

    fn current_snapshot(&self) -> io::Result<Option<SnapshotInfo>> {
        let state = self.state();
        let Some((path, position, meta)) = &state.snapshot else {
            return Ok(None);
        };
        Ok(Some(SnapshotInfo {
            file: SnapshotFile::open(path)?,
            position: *position,
            consensus_meta: meta.clone(),
        }))
    }

    fn install_snapshot(&mut self, snapshot: &SnapshotFile) -> io::Result<LogPosition> {
        let bytes = snapshot.read_to_vec()?;
        let ((applied, position, meta), _): (SnapshotBody, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .map_err(io::Error::other)?;
        let mut state = self.state();
        state.snapshots_built += 1;
        let path = self.dir.join(format!("installed-{}", state.snapshots_built));
        std::fs::write(&path, &bytes)?;
        state.applied = applied;
        state.last = Some((position, meta.clone()));
        state.snapshot = Some((path, position, meta));
        state.snapshots_installed.fetch_add(1, Ordering::SeqCst);
        Ok(position)
    }
}

/// Three nodes on loopback, their data directories, and the applications' states.
struct TestCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Option<RaftNode<TestApp>>>,
    addrs: Vec<SocketAddr>,
    states: BTreeMap<(NodeId, GroupId), Arc<Mutex<TestState>>>,
    tune: fn(&mut RaftNodeConfig),
}

fn fast(config: &mut RaftNodeConfig) {
    config.heartbeat_interval_ms = 50;
    config.election_timeout_ms_min = 300;
    config.election_timeout_ms_max = 600;
}

fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

impl TestCluster {
    async fn start(tune: fn(&mut RaftNodeConfig)) -> TestCluster {
        let mut cluster = TestCluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            addrs: Vec::new(),
            states: BTreeMap::new(),
            tune,
        };
        for _ in 0..3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster.addrs.push(listener.local_addr().unwrap());
            cluster.nodes.push(None);
            let node_id = cluster.nodes.len() as NodeId;
            cluster.start_node(node_id, listener).await;
        }
        let members = (1..=3)
            .map(|id| {
                let addr = cluster.addrs[id as usize - 1].to_string();
                (
                    id,
                    Node {
                        peer_addr: addr.clone(),
                        api_addr: addr,
                    },
                )
            })
            .collect();
        cluster.node(1).initialize(members).await.unwrap();
        cluster
    }

    /// Three nodes of a new cluster, each restored from one backup as `crate::restore` seeds
    /// a node: every group's application stands at `at` (written by node 9 of an old cluster
    /// {7, 8, 9}) with `applied` as its state and current snapshot, its consensus metadata
    /// naming the new members {1, 2, 3}; every group's log is seeded. Nobody initializes.
    async fn start_restored(
        tune: fn(&mut RaftNodeConfig),
        at: LogPosition,
        applied: &[Vec<u8>],
    ) -> TestCluster {
        use openraft::vote::RaftLeaderIdExt;

        use crate::restore::{reseat_membership, seed_node_logs, GroupMembers};
        use crate::state_machine::ConsensusMeta;
        use crate::type_config::{LeaderId, LogId, Membership, StoredMembership};

        let mut cluster = TestCluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            addrs: Vec::new(),
            states: BTreeMap::new(),
            tune,
        };
        let mut listeners = Vec::new();
        for _ in 0..3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster.addrs.push(listener.local_addr().unwrap());
            cluster.nodes.push(None);
            listeners.push(listener);
        }
        let old_node = |id: NodeId| Node {
            peer_addr: format!("192.0.2.{id}:7100"),
            api_addr: format!("192.0.2.{id}:7000"),
        };
        let old_membership = Membership::new(
            vec![[7, 8, 9].into_iter().collect()],
            (7..=9).map(|id| (id, old_node(id))).collect::<BTreeMap<_, _>>(),
        )
        .unwrap();
        let last_applied = LogId::new(LeaderId::new_committed(at.term, 9), at.index);
        let old_meta = ConsensusMeta {
            last_applied,
            membership: StoredMembership::new(Some(last_applied), old_membership),
        }
        .encode();
        let members = GroupMembers {
            voters: (1..=3).collect(),
            learners: Default::default(),
            nodes: (1..=3)
                .map(|id: NodeId| {
                    let addr = cluster.addrs[id as usize - 1].to_string();
                    (
                        id,
                        Node {
                            peer_addr: addr.clone(),
                            api_addr: addr,
                        },
                    )
                })
                .collect(),
        };
        let meta = reseat_membership(&old_meta, &members).unwrap();
        for node_id in 1..=3 {
            let data_dir = cluster.dir.path().join(format!("node-{node_id}"));
            let app_dir = data_dir.join("app");
            std::fs::create_dir_all(&app_dir).unwrap();
            let body: SnapshotBody = (applied.to_vec(), at, meta.clone());
            let path = app_dir.join("restored");
            std::fs::write(
                &path,
                bincode::serde::encode_to_vec(&body, bincode::config::standard()).unwrap(),
            )
            .unwrap();
            for group_id in 0..GROUPS {
                let state = cluster.states.entry((node_id, group_id)).or_default();
                let mut state = state.lock().unwrap();
                state.applied = applied.to_vec();
                state.last = Some((at, meta.clone()));
                state.snapshot = Some((path.clone(), at, meta.clone()));
            }
            let groups: Vec<(GroupId, Vec<u8>)> = (0..GROUPS).map(|g| (g, meta.clone())).collect();
            seed_node_logs(&data_dir, node_id, &groups).await.unwrap();
        }
        for (i, listener) in listeners.into_iter().enumerate() {
            cluster.start_node(i as NodeId + 1, listener).await;
        }
        cluster
    }

    async fn start_node(&mut self, node_id: NodeId, listener: TcpListener) {
        let data_dir = self.dir.path().join(format!("node-{node_id}"));
        let mut config = RaftNodeConfig::new(node_id, &data_dir, GROUPS, SECRET);
        (self.tune)(&mut config);
        let app_dir = data_dir.join("app");
        std::fs::create_dir_all(&app_dir).unwrap();
        let states: Vec<_> = (0..GROUPS)
            .map(|group_id| self.states.entry((node_id, group_id)).or_default().clone())
            .collect();
        let node = RaftNode::start(config, listener, |group_id| {
            Ok(TestApp {
                dir: app_dir.clone(),
                state: states[group_id as usize].clone(),
            })
        })
        .await
        .unwrap();
        self.nodes[node_id as usize - 1] = Some(node);
    }

    async fn stop_node(&mut self, node_id: NodeId) {
        let node = self.nodes[node_id as usize - 1].take().unwrap();
        node.shutdown().await.unwrap();
    }

    async fn restart_node(&mut self, node_id: NodeId) {
        let listener = TcpListener::bind(self.addrs[node_id as usize - 1]).await.unwrap();
        self.start_node(node_id, listener).await;
    }

    fn node(&self, node_id: NodeId) -> &RaftNode<TestApp> {
        self.nodes[node_id as usize - 1].as_ref().unwrap()
    }

    fn running(&self) -> impl Iterator<Item = &RaftNode<TestApp>> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running node agrees on one leader in every group.
    async fn wait_for_leaders(&self) -> BTreeMap<GroupId, NodeId> {
        wait_until(Duration::from_secs(10), "a leader in every group", || {
            (0..GROUPS)
                .map(|group_id| {
                    let leaders: Vec<_> = self
                        .running()
                        .map(|n| n.metrics(group_id).unwrap().current_leader)
                        .collect();
                    match leaders[0] {
                        Some(leader) if leaders.iter().all(|l| *l == Some(leader)) => {
                            Some((group_id, leader))
                        }
                        _ => None,
                    }
                })
                .collect::<Option<BTreeMap<_, _>>>()
        })
        .await
    }

    fn applied(&self, node_id: NodeId, group_id: GroupId) -> Vec<Vec<u8>> {
        self.node(node_id).with_app(group_id, TestApp::applied).unwrap()
    }

    fn installs(&self, node_id: NodeId, group_id: GroupId) -> usize {
        self.states[&(node_id, group_id)]
            .lock()
            .unwrap()
            .snapshots_installed
            .load(Ordering::SeqCst)
    }

    async fn shutdown(mut self) {
        for node_id in 1..=3 {
            if self.nodes[node_id as usize - 1].is_some() {
                self.stop_node(node_id).await;
            }
        }
    }
}

async fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every group elects a leader; proposals sent through every node (followers included) are
/// forwarded, committed, and applied on all three nodes in one order; a read index obtained on
/// a follower covers a write acknowledged just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_elects_forwards_and_reads_linearizably() {
    let cluster = TestCluster::start(fast).await;
    let leaders = cluster.wait_for_leaders().await;

    for group_id in 0..GROUPS {
        let mut last = LogPosition::default();
        for i in 0..6u8 {
            let via = NodeId::from(i % 3 + 1);
            let proposed = cluster
                .node(via)
                .propose(group_id, vec![group_id as u8, i], deadline(10))
                .await
                .unwrap();
            assert!(proposed.position > last, "positions increase");
            assert_eq!(proposed.response, u64::from(i + 1).to_le_bytes().to_vec());
            last = proposed.position;
        }
        let expected: Vec<Vec<u8>> = (0..6u8).map(|i| vec![group_id as u8, i]).collect();
        for node_id in 1..=3 {
            cluster
                .node(node_id)
                .wait_applied(group_id, last.index, deadline(5))
                .await
                .unwrap();
            assert_eq!(
                cluster.applied(node_id, group_id),
                expected,
                "node {node_id} group {group_id}"
            );
        }

        // A follower's read index, once applied locally, covers the write acknowledged before.
        let follower = (1..=3).find(|id| *id != leaders[&group_id]).unwrap();
        let written = cluster
            .node(leaders[&group_id])
            .propose(group_id, b"fresh".to_vec(), deadline(5))
            .await
            .unwrap();
        let read_at = cluster
            .node(follower)
            .read_index(group_id, deadline(5))
            .await
            .unwrap();
        assert!(read_at.index >= written.position.index);
        cluster
            .node(follower)
            .wait_applied(group_id, read_at.index, deadline(5))
            .await
            .unwrap();
        assert_eq!(cluster.applied(follower, group_id).last().unwrap(), b"fresh");
    }

    let metrics = cluster.node(leaders[&0]).metrics(0).unwrap();
    assert_eq!(metrics.role, GroupRole::Leader);
    assert_eq!(metrics.voters.len(), 3);
    assert_eq!(metrics.matched_log_index.unwrap().len(), 3);
    // The cheap looks agree with the full metrics: a leader's role, and no wait for itself; a
    // follower, which has just heard from its leader (heartbeats every 50 ms).
    let leader = cluster.node(leaders[&0]);
    assert_eq!(leader.role(0).unwrap(), GroupRole::Leader);
    assert_eq!(leader.since_leader_contact(0).unwrap(), Duration::ZERO);
    let follower = cluster.node((1..=3).find(|id| *id != leaders[&0]).unwrap());
    assert_eq!(follower.role(0).unwrap(), follower.metrics(0).unwrap().role);
    assert_eq!(follower.role(0).unwrap(), GroupRole::Follower);
    assert!(follower.since_leader_contact(0).unwrap() < Duration::from_secs(2));
    assert!(leader.role(GROUPS).is_err(), "no such group");
    cluster.shutdown().await;
}

fn slow_heartbeats(config: &mut RaftNodeConfig) {
    config.heartbeat_interval_ms = 3_000;
    config.election_timeout_ms_min = 10_000;
    config.election_timeout_ms_max = 20_000;
}

/// Followers learn a quiet group's commit index promptly, not only from the next entries or
/// heartbeat: the vendored openraft holds an entry-less commit update back at most a few
/// milliseconds (`COMMIT_ONLY_DELAY`, raft/vendor/README.md) waiting for entries to carry it.
/// With heartbeats 3 s apart, each of five lone writes must be applied on both followers within
/// 300 ms of the leader's answer (a heartbeat would land that soon with odds of 1 in 10 each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_followers_learn_a_quiet_groups_commit_without_waiting_for_a_heartbeat() {
    let cluster = TestCluster::start(slow_heartbeats).await;
    let leaders = cluster.wait_for_leaders().await;
    let leader = leaders[&0];
    for i in 0..5u8 {
        let written = cluster
            .node(leader)
            .propose(0, vec![i], deadline(10))
            .await
            .unwrap();
        let answered = Instant::now();
        for follower in (1..=3).filter(|id| *id != leader) {
            let applied = cluster
                .node(follower)
                .wait_applied(0, written.position.index, answered + Duration::from_millis(300))
                .await;
            assert!(
                applied.is_ok(),
                "write {i}: node {follower} had not applied index {} 300 ms after the answer: {applied:?}",
                written.position.index
            );
        }
        // Quiet: longer than the commit update is held back, far shorter than a heartbeat.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}

/// A peer that does not know the cluster secret is refused before any request is served,
/// while one that does is answered.
/// Concurrent proposals to one group, through every node, are coalesced by the leader into
/// fewer entries than requests; each caller still gets its own response, every request is
/// applied exactly once and in the same order on every node, and requests that shared an entry
/// share its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_concurrent_proposals_share_entries_and_keep_their_own_answers() {
    // Room for every request in the leader's queue: none is refused as busy here.
    fn roomy(config: &mut RaftNodeConfig) {
        fast(config);
        config.max_queued_proposals = 256;
    }
    let cluster = TestCluster::start(roomy).await;
    cluster.wait_for_leaders().await;
    let group_id = 0;
    const N: u8 = 120;
    let calls = (0..N).map(|i| {
        let node = cluster.node(NodeId::from(i % 3 + 1));
        async move {
            (
                i,
                node.propose(group_id, vec![b'c', i], deadline(10)).await.unwrap(),
            )
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let last = results.iter().map(|(_, p)| p.position).max().unwrap();
    let positions: std::collections::BTreeSet<u64> = results.iter().map(|(_, p)| p.position.index).collect();
    assert!(
        positions.len() < usize::from(N),
        "{N} concurrent proposals took {} entries: nothing was coalesced",
        positions.len()
    );
    for node_id in 1..=3 {
        cluster
            .node(node_id)
            .wait_applied(group_id, last.index, deadline(5))
            .await
            .unwrap();
    }
    let applied = cluster.applied(1, group_id);
    for node_id in 2..=3 {
        assert_eq!(cluster.applied(node_id, group_id), applied, "node {node_id}");
    }
    // The test application answers each request with its ordinal among the applied requests.
    for (i, proposed) in &results {
        let ordinal = u64::from_le_bytes(proposed.response.clone().try_into().unwrap());
        assert_eq!(
            applied[ordinal as usize - 1],
            vec![b'c', *i],
            "request {i}'s answer"
        );
    }
    assert_eq!(applied.len(), usize::from(N), "each request applied exactly once");
}

fn one_queued_proposal(config: &mut RaftNodeConfig) {
    fast(config);
    config.max_queued_proposals = 1;
}

/// A leader's full proposal queue refuses at once, also through a follower: with room for one
/// queued request beside the entry in flight, a burst of concurrent proposals through a
/// follower comes back partly `Busy` — each long before its deadline, so neither the leader nor
/// the forwarding follower retried it — and exactly the admitted requests are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_full_proposal_queue_refuses_at_once_also_through_a_follower() {
    let cluster = TestCluster::start(one_queued_proposal).await;
    let leaders = cluster.wait_for_leaders().await;
    let group_id = 1;
    let follower = (1..=3).find(|id| *id != leaders[&group_id]).unwrap();
    const N: u8 = 64;
    let calls = (0..N).map(|i| {
        let node = cluster.node(follower);
        async move {
            let started = Instant::now();
            let result = node.propose(group_id, vec![b'b', i], deadline(30)).await;
            (i, result, started.elapsed())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut admitted = Vec::new();
    let mut refused = 0;
    let mut last = 0;
    for (i, result, took) in results {
        match result {
            Ok(proposed) => {
                admitted.push(vec![b'b', i]);
                last = last.max(proposed.position.index);
            }
            Err(ProposeError::Busy {
                group_id: 1,
                queue: BusyQueue::Proposals,
                limit: 1,
                ..
            }) => {
                refused += 1;
                assert!(took < Duration::from_secs(5), "a refusal took {took:?}: retried?");
            }
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    assert!(
        refused > 0,
        "{N} concurrent proposals with room for one: none refused"
    );
    assert!(!admitted.is_empty());
    for node_id in 1..=3 {
        cluster
            .node(node_id)
            .wait_applied(group_id, last, deadline(5))
            .await
            .unwrap();
    }
    let mut applied = cluster.applied(leaders[&group_id], group_id);
    applied.sort();
    admitted.sort();
    assert_eq!(applied, admitted, "exactly the admitted requests are applied");
}

/// A follower told "busy" by its group's leader refuses that group's writes itself for
/// `BUSY_HINT`, before reading them, then admits them again; other groups are not affected, and
/// a node's own refusals are no hint (it knows its queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_busy_answer_from_the_leader_is_a_hint_for_a_moment() {
    use super::busy_hint::BUSY_HINT;

    let cluster = TestCluster::start(fast).await;
    let leaders = cluster.wait_for_leaders().await;
    let group_id = 2;
    let leader = leaders[&group_id];
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let node = cluster.node(follower);
    assert!(node.admit_write(group_id).is_ok());
    let group = node.group(group_id).unwrap();
    let error = node.busy(group_id, group, Some(leader), BusyQueue::Proposals, 64, 64);
    assert!(matches!(error, ProposeError::Busy { group_id: 2, .. }), "{error}");
    match node.admit_write(group_id) {
        Err(ProposeError::Busy {
            group_id: 2,
            queue: BusyQueue::Proposals,
            queued: 64,
            limit: 64,
        }) => {}
        other => panic!("within the hint: {other:?}"),
    }
    assert!(node.admit_write(3).is_ok(), "another group");
    tokio::time::sleep(BUSY_HINT).await;
    assert!(node.admit_write(group_id).is_ok(), "after the hint");

    let own = cluster.node(leader);
    own.busy(
        group_id,
        own.group(group_id).unwrap(),
        Some(leader),
        BusyQueue::Proposals,
        64,
        64,
    );
    assert!(own.admit_write(group_id).is_ok(), "the leader's own refusal");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_wrong_cluster_secret_is_refused() {
    let cluster = TestCluster::start(fast).await;
    cluster.wait_for_leaders().await;
    let target = cluster.addrs[0].to_string();

    let intruder = Router::new(99, ClusterSecret::new("guessed"), None, 1 << 20);
    intruder.set_peer_addr(1, &target);
    let refused = intruder
        .read_index(1, 0, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, CallError::Unreachable(m) if m.contains("refused")),
        "{refused:?}"
    );

    let member = Router::new(98, ClusterSecret::new(SECRET), None, 1 << 20);
    member.set_peer_addr(1, &target);
    member.read_index(1, 0, Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// Log retention decides how a stopped follower catches up. Node 3 misses a few entries (fewer
/// than the snapshot threshold, so nothing is purged) and catches up from the log: no snapshot
/// is installed. Then it misses many more; the others snapshot and purge all but the last 5
/// entries, so node 3 must install a snapshot (counted by the test application), after which
/// its state equals the others'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_lagging_follower_catches_up_by_log_then_by_snapshot() {
    fn tune(config: &mut RaftNodeConfig) {
        fast(config);
        config.snapshot_logs_since_last = Some(20);
        config.max_in_snapshot_log_to_keep = 5;
        config.snapshot_chunk_bytes = 64; // several chunks even for a small snapshot
    }
    let mut cluster = TestCluster::start(tune).await;
    cluster.wait_for_leaders().await;
    let group_id = 0;

    cluster.stop_node(3).await;
    let mut last = LogPosition::default();
    for i in 0..5u8 {
        last = cluster
            .node(1)
            .propose(group_id, vec![b'a', i], deadline(10))
            .await
            .unwrap()
            .position;
    }
    cluster.restart_node(3).await;
    cluster
        .node(3)
        .wait_applied(group_id, last.index, deadline(10))
        .await
        .unwrap();
    assert_eq!(cluster.applied(3, group_id), cluster.applied(1, group_id));
    assert_eq!(
        cluster.installs(3, group_id),
        0,
        "within retention: caught up from the log"
    );

    cluster.stop_node(3).await;
    for i in 0..60u8 {
        last = cluster
            .node(1 + u64::from(i % 2))
            .propose(group_id, vec![b'b', i], deadline(10))
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
        "beyond retention: installed a snapshot"
    );
    assert_eq!(cluster.applied(3, group_id), cluster.applied(1, group_id));
    assert_eq!(cluster.applied(3, group_id).len(), 65);
    cluster.shutdown().await;
}

/// Mutual TLS on the peer port.
mod tls;

/// Guarded membership changes, and a group marked removed.
mod membership;

/// Regression (Jepsen `set` under kill -9 of every node): a leader that restarts must not
/// resume leadership in its old term, where its read index could lag a write it had already
/// acknowledged. After the restart it leads again only after winning a new election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_restarted_leader_does_not_resume_its_old_term() {
    let mut cluster = TestCluster::start(fast).await;
    let leaders = cluster.wait_for_leaders().await;
    let group_id = 0;
    let leader = leaders[&group_id];
    for i in 0..5u8 {
        cluster
            .node(leader)
            .propose(group_id, vec![i], deadline(10))
            .await
            .unwrap();
    }
    let term = cluster.node(leader).metrics(group_id).unwrap().current_term;
    cluster.stop_node(leader).await;
    cluster.restart_node(leader).await;
    let restarted = cluster.node(leader).metrics(group_id).unwrap();
    assert!(
        restarted.role != GroupRole::Leader || restarted.current_term > term,
        "node {leader} resumed leadership of term {term} at startup"
    );
    cluster.wait_for_leaders().await;
    let now = cluster.node(leader).metrics(group_id).unwrap();
    if now.role == GroupRole::Leader {
        assert!(now.current_term > term, "leader again in the old term {term}");
    }
    cluster.shutdown().await;
}

/// A full disk delays applying, it does not stop the group: applies that fail with
/// `StorageFull` are retried (every `OUT_OF_SPACE_RETRY`) until they succeed, on the leader (the
/// client's answer waits) and on a follower (it catches up), each entry applied exactly once;
/// the group never reports a fatal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_full_disk_delays_applying_but_does_not_stop_the_group() {
    let cluster = TestCluster::start(fast).await;
    let leaders = cluster.wait_for_leaders().await;
    let group_id = 1;
    let leader = leaders[&group_id];
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    for node_id in [leader, follower] {
        cluster.states[&(node_id, group_id)]
            .lock()
            .unwrap()
            .full_disk_applies = 4;
    }
    let started = Instant::now();
    let proposed = cluster
        .node(leader)
        .propose(group_id, b"after the disk filled".to_vec(), deadline(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= crate::application::OUT_OF_SPACE_RETRY * 3,
        "the leader answered after its applies were retried, {:?}",
        started.elapsed()
    );
    for node_id in 1..=3 {
        cluster
            .node(node_id)
            .wait_applied(group_id, proposed.position.index, deadline(10))
            .await
            .unwrap();
        let applied = cluster.applied(node_id, group_id);
        assert_eq!(
            applied
                .iter()
                .filter(|r| r.as_slice() == b"after the disk filled")
                .count(),
            1,
            "node {node_id} applied it once"
        );
        assert_eq!(cluster.node(node_id).metrics(group_id).unwrap().fatal, None);
    }
    cluster.shutdown().await;
}

/// The storage alarm: a node in alarm refuses proposals made on it (`NoSpace`), turns back
/// proposals forwarded to it, hands over the groups it leads and takes no entries, while the
/// other two keep writing; once cleared it catches up and leads again if asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_node_in_storage_alarm_takes_no_writes_and_leads_nothing() {
    let cluster = TestCluster::start(fast).await;
    let leaders = cluster.wait_for_leaders().await;
    let full = leaders[&0];
    cluster
        .node(full)
        .set_storage_alarm(Some("disk full (test)".into()))
        .await;
    assert!(matches!(
        cluster.node(full).propose(0, b"x".to_vec(), deadline(5)).await,
        Err(ProposeError::NoSpace { .. })
    ));
    wait_until(
        Duration::from_secs(10),
        "the node in alarm leads no group",
        || {
            (0..GROUPS)
                .all(|g| {
                    let leader = cluster.node(full).metrics(g).unwrap().current_leader;
                    leader.is_some() && leader != Some(full)
                })
                .then_some(())
        },
    )
    .await;
    let other = (1..=3).find(|id| *id != full).unwrap();
    let written = cluster
        .node(other)
        .propose(0, b"while one node is full".to_vec(), deadline(10))
        .await
        .unwrap();
    // The full node took no entry: it applied nothing past what it had.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!cluster
        .applied(full, 0)
        .iter()
        .any(|r| r.as_slice() == b"while one node is full"));
    assert_eq!(cluster.node(full).metrics(0).unwrap().fatal, None);

    cluster.node(full).set_storage_alarm(None).await;
    cluster
        .node(full)
        .wait_applied(0, written.position.index, deadline(10))
        .await
        .unwrap();
    assert!(cluster
        .applied(full, 0)
        .iter()
        .any(|r| r.as_slice() == b"while one node is full"));
    cluster
        .node(full)
        .propose(0, b"after".to_vec(), deadline(10))
        .await
        .unwrap();
    cluster.shutdown().await;
}

/// A new cluster restored from a backup (`crate::restore`): three nodes whose groups stand at
/// (5, 40) of an old cluster, with their logs seeded (purged through (5, 40), a vote of term 5)
/// and the new members in the state's consensus metadata. Started without `initialize`, every
/// group elects a leader at a term above 5 with the new voters; proposals through every node
/// commit at indexes above 40 and apply on every node after the backup's state, none of which is
/// applied again; a node restarted afterwards resumes as any node does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_nodes_restored_from_a_backup_elect_above_its_term_and_go_on() {
    let at = LogPosition::new(5, 40);
    let backup: Vec<Vec<u8>> = vec![b"backed up 1".to_vec(), b"backed up 2".to_vec()];
    let mut cluster = TestCluster::start_restored(fast, at, &backup).await;
    let leaders = cluster.wait_for_leaders().await;
    for group_id in 0..GROUPS {
        let m = cluster.node(leaders[&group_id]).metrics(group_id).unwrap();
        assert!(
            m.current_term > at.term,
            "group {group_id}: leader of term {}",
            m.current_term
        );
        assert_eq!(m.voters, (1..=3).collect(), "group {group_id}");
        assert_eq!(m.purged_log_index, Some(at.index), "group {group_id}");
        let mut last = at;
        for i in 0..3u8 {
            let proposed = cluster
                .node(NodeId::from(i % 3 + 1))
                .propose(group_id, vec![b'n', i], deadline(10))
                .await
                .unwrap();
            assert!(
                proposed.position > last,
                "group {group_id}: {} after {last}",
                proposed.position
            );
            assert_eq!(
                proposed.response,
                (backup.len() as u64 + u64::from(i) + 1).to_le_bytes().to_vec(),
                "appended after the backup's state"
            );
            last = proposed.position;
        }
        let mut expected = backup.clone();
        expected.extend((0..3u8).map(|i| vec![b'n', i]));
        for node_id in 1..=3 {
            cluster
                .node(node_id)
                .wait_applied(group_id, last.index, deadline(5))
                .await
                .unwrap();
            assert_eq!(
                cluster.applied(node_id, group_id),
                expected,
                "node {node_id} group {group_id}"
            );
        }
    }
    let restarted = (1..=3).find(|id| *id != leaders[&0]).unwrap();
    cluster.stop_node(restarted).await;
    let written = cluster
        .node(leaders[&0])
        .propose(0, b"while away".to_vec(), deadline(10))
        .await
        .unwrap();
    cluster.restart_node(restarted).await;
    cluster
        .node(restarted)
        .wait_applied(0, written.position.index, deadline(10))
        .await
        .unwrap();
    assert_eq!(cluster.applied(restarted, 0), cluster.applied(leaders[&0], 0));
    cluster.shutdown().await;
}

/// One flush sweep offers every group's application a flush, in one pass, and names the groups
/// to stop: those whose flush failed for another reason than a full disk (which is only
/// offered again later), and one whose application lock is poisoned.
#[test]
fn a_flush_sweep_offers_every_group_and_names_those_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let errors = [
        None,
        Some(io::ErrorKind::StorageFull),
        Some(io::ErrorKind::PermissionDenied),
        None,
        None,
    ];
    let states: Vec<Arc<Mutex<TestState>>> = errors
        .iter()
        .map(|&flush_error| {
            Arc::new(Mutex::new(TestState {
                flush_error,
                ..TestState::default()
            }))
        })
        .collect();
    let apps: Vec<Mutex<TestApp>> = states
        .iter()
        .map(|state| {
            Mutex::new(TestApp {
                dir: dir.path().to_path_buf(),
                state: state.clone(),
            })
        })
        .collect();
    std::thread::scope(|scope| {
        let _ = scope
            .spawn(|| {
                let _held = apps[4].lock().unwrap();
                panic!("poisons group 4's lock (test)");
            })
            .join();
    });
    assert_eq!(offer_flushes(apps.iter()), vec![2, 4]);
    let flushes: Vec<usize> = states.iter().map(|state| state.lock().unwrap().flushes).collect();
    assert_eq!(flushes, vec![1, 1, 1, 1, 0]);
    assert_eq!(offer_flushes(apps.iter().take(2)), Vec::<usize>::new());
}
