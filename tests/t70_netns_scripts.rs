//! The fault-injection scripts in `scripts/` do what the Jepsen runner will rely on. A 3-node
//! cluster is brought up for real with `netns-cluster.sh up` (one network namespace per node on
//! a bridge, clients in the root namespace), and each fault is provoked through its script:
//! `partition.sh isolate:1` must cut node 1 off from its peers (checked from inside its
//! namespace) while the root namespace still reaches it and the majority keeps accepting writes
//! for every group; `heal.sh` must remove every nemesis rule and the three nodes must converge
//! (same leader and applied index per group, node 1 reads the majority's writes); `kill.sh`,
//! `restart.sh`, `pause.sh` and `resume.sh` must take a node's process through gone, answering
//! again, stopped (`T`) and running; `down` must leave no namespace, bridge or rule behind and
//! be safe to repeat. (Which rules each partition spec installs is `t70_partition_specs`.)
//!
//!
//! `proxy_script_steers_the_peer_proxies` brings a cluster up with `--proxy` (a TCP proxy per
//! namespace that carries the node's outgoing peer connections) and checks through the nodes'
//! own behaviour that `proxy.sh` does what it says: the nodes know each other by the proxies'
//! loopback routes and replicate through them; `latency 150` on every proxy makes a replicated
//! write take at least one delayed round trip (300 ms) and `clean` takes it away again; `drop`
//! resets the live connections (counted by the proxy) and the cluster reconnects; `refuse` and
//! `blackhole` on one node's proxy turn that node's reconnects away (counted) while the others
//! keep writing, and after `clean` everything converges; a partition still cuts a node off
//! through its proxy (its linearizable reads fail, heal restores them); `restart.sh` restarts a
//! dead proxy; `down` leaves no proxy running.
//!
//! The cluster tests need root and `ip netns`; without them they print a skip notice, or fail
//! when `DOVETAIL_REQUIRE_NETNS=1` (as `scripts/test.sh` sets for root). Namespaces and the
//! bridge are global names, so they run in nextest's serialized `cluster` group (and one at a
//! time under `cargo test`, by a lock) and refuse to start when a netns cluster is already up
//! (they would otherwise tear that one down). The proxy is `dovetail-jepsen proxy`, from another
//! package of the workspace: the proxy test builds it with `cargo build` unless
//! `DOVETAIL_JEPSEN_BIN` names it.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dovetail::placement::group_of;
use serde_json::{json, Value};
use support::request_as;

const NODES: u64 = 3;
const GROUPS: u32 = 4;

/// One cluster at a time within this binary (the namespaces are global names).
static NETNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// Runs `scripts/<name> args...` with the state directory `state` and the given extra
/// environment.
fn run_script(state: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(script_path(name));
    cmd.args(args).env("DOVETAIL_NETNS_DIR", state);
    for (key, value) in env {
        cmd.env(key, value);
    }
    // The scripts pick secrets from the environment when set; the cluster's own are generated.
    for key in [
        "DOVETAIL_CLUSTER_SECRET",
        "DOVETAIL_CLIENT_TOKEN",
        "DOVETAIL_ADMIN_TOKEN",
    ] {
        cmd.env_remove(key);
    }
    cmd.output().unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Runs a script that must succeed quietly on stderr; returns its stdout.
fn script_ok(state: &Path, name: &str, args: &[&str]) -> String {
    let out = run_script(state, name, args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stderr.trim().is_empty(),
        "{name} {args:?} wrote to stderr:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Why the cluster test cannot run here, if it cannot.
fn netns_unavailable() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `ip`: {e}")),
    }
}

/// The namespaces named like the scripts' (`dvt<number>`) that exist now.
fn dvt_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix("dvt")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect()
}

/// A cluster brought up by `netns-cluster.sh up`; dropping it runs `down`, also when a check
/// failed halfway.
struct NetnsCluster {
    state: tempfile::TempDir,
    client_token: String,
    admin_token: String,
    down: bool,
}

impl NetnsCluster {
    /// `up`; with `proxy_bin`, `up --proxy --proxy-bin <it>`.
    fn up(nodes: u64, groups: u32, proxy_bin: Option<&Path>) -> NetnsCluster {
        let state = tempfile::tempdir().unwrap();
        let (nodes_arg, groups_arg) = (nodes.to_string(), groups.to_string());
        let mut args = vec![
            "up".to_string(),
            nodes_arg,
            "--groups".into(),
            groups_arg,
            "--bin".into(),
            env!("CARGO_BIN_EXE_dovetail").into(),
        ];
        if let Some(bin) = proxy_bin {
            args.extend(["--proxy".into(), "--proxy-bin".into(), bin.display().to_string()]);
        }
        for flag in [
            "--",
            "--heartbeat-ms",
            "100",
            "--election-timeout-ms",
            "600",
            "--request-timeout-ms",
            "2000",
        ] {
            args.push(flag.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_script(state.path(), "netns-cluster.sh", &args, &[]);
        // A failed `up` tears down what it built itself.
        assert!(
            out.status.success(),
            "netns-cluster.sh up failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stdout);
        let env = std::fs::read_to_string(state.path().join("env")).unwrap();
        let token = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} missing from the env file"))
                .to_string()
        };
        let cluster = NetnsCluster {
            client_token: token("DOVETAIL_CLIENT_TOKEN"),
            admin_token: token("DOVETAIL_ADMIN_TOKEN"),
            state,
            down: false,
        };
        for i in 1..=nodes {
            assert!(
                summary.contains(&format!("node {i}: http://{}", api(i))),
                "summary lacks node {i}:\n{summary}"
            );
        }
        assert!(summary.contains("source "), "{summary}");
        cluster
    }

    fn dir(&self) -> &Path {
        self.state.path()
    }

    fn script(&self, name: &str, args: &[&str]) -> String {
        script_ok(self.dir(), name, args)
    }

    fn pid(&self, node: u64) -> u32 {
        std::fs::read_to_string(self.dir().join(format!("node{node}/pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn log(&self, node: u64) -> String {
        let log = std::fs::read(self.dir().join(format!("node{node}/node.log"))).unwrap_or_default();
        String::from_utf8_lossy(&log[log.len().saturating_sub(4000)..]).into_owned()
    }

    /// The end of every node's log, for failure messages.
    fn logs(&self) -> String {
        (1..=NODES)
            .map(|n| format!("--- node {n} log (end):\n{}", self.log(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn status(&self, node: u64) -> Option<Value> {
        match request_as(&api(node), "GET", "/admin/status", None, Some(&self.admin_token)) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    fn post(&self, node: u64, path: &str, body: &Value) -> std::io::Result<(u16, Value)> {
        request_as(&api(node), "POST", path, Some(body), Some(&self.client_token))
    }

    fn get(&self, node: u64, path: &str) -> std::io::Result<(u16, Value)> {
        request_as(&api(node), "GET", path, None, Some(&self.client_token))
    }

    /// Waits until every node answers and all agree, per group, on a leader and the applied
    /// index.
    fn wait_converged(&self, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        loop {
            let views: Vec<Option<Vec<(Value, Value)>>> = (1..=NODES)
                .map(|n| {
                    let status = self.status(n)?;
                    Some(
                        status["groups"]
                            .as_array()?
                            .iter()
                            .map(|g| (g["leader"].clone(), g["applied"].clone()))
                            .collect(),
                    )
                })
                .collect();
            let converged = views.iter().all(|v| {
                v.as_ref().is_some_and(|groups| {
                    groups.len() == GROUPS as usize
                        && groups
                            .iter()
                            .all(|(leader, applied)| leader.is_u64() && applied.is_u64())
                })
            }) && views.windows(2).all(|w| w[0] == w[1]);
            if converged {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: nodes did not converge within {limit:?}; (leader, applied) per group per node: {views:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `down` and checks that nothing is left.
    fn down(&mut self) {
        self.script("netns-cluster.sh", &["down"]);
        self.down = true;
        assert_eq!(
            dvt_namespaces(),
            Vec::<String>::new(),
            "namespaces left after down"
        );
        assert!(
            !Command::new("ip")
                .args(["link", "show", "dvtbr0"])
                .output()
                .unwrap()
                .status
                .success(),
            "the bridge is left after down"
        );
        let forward = Command::new("iptables")
            .args(["-w", "-S", "FORWARD"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&forward.stdout).contains("dovetail-netns"),
            "the root FORWARD rule is left after down"
        );
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        if !self.down {
            let out = run_script(self.dir(), "netns-cluster.sh", &["down"], &[]);
            if !out.status.success() {
                eprintln!(
                    "netns-cluster.sh down failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn api(node: u64) -> String {
    format!("10.77.0.{}:7001", 10 + node)
}

/// For each (node, address): whether a TCP connection from inside the node's namespace to the
/// address opens within 2 s. All are tried at once (a cut link costs the whole 2 s).
fn connects_from(attempts: &[(u64, &str)]) -> Vec<bool> {
    let children: Vec<_> = attempts
        .iter()
        .map(|(from, addr)| {
            let (ip, port) = addr.split_once(':').unwrap();
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("dvt{from}"),
                    "timeout",
                    "2",
                    "bash",
                    "-c",
                ])
                .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|mut child| child.wait().unwrap().success())
        .collect()
}

/// The kernel's state letter of a process, `None` once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// A user whose mailboxes live in each group.
fn user_per_group() -> BTreeMap<u32, String> {
    let mut users = BTreeMap::new();
    for i in 0.. {
        let user = format!("user{i}@example.com");
        users.entry(group_of(&user, GROUPS)).or_insert(user);
        if users.len() == GROUPS as usize {
            return users;
        }
    }
    unreachable!()
}

/// Whether the cluster tests can run here: false (after a notice) when they are to be skipped;
/// panics when they cannot run but must. Also refuses to run beside a cluster that is up.
fn netns_ready() -> bool {
    if let Some(why) = netns_unavailable() {
        if std::env::var("DOVETAIL_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("DOVETAIL_REQUIRE_NETNS=1 but network namespaces cannot be used: {why}");
        }
        eprintln!("t70: skipped ({why}); set DOVETAIL_REQUIRE_NETNS=1 to make this a failure");
        return false;
    }
    let existing = dvt_namespaces();
    assert!(
        existing.is_empty(),
        "a netns cluster is already up ({existing:?}); run scripts/netns-cluster.sh down first"
    );
    true
}

#[test]
fn scripts_drive_a_real_cluster() {
    let _one_at_a_time = NETNS.lock().unwrap_or_else(|e| e.into_inner());
    if !netns_ready() {
        return;
    }
    let started = Instant::now();
    let mut cluster = NetnsCluster::up(NODES, GROUPS, None);

    // Without --proxy the nodes know each other by their own peer listeners, and proxy.sh
    // refuses to run.
    let cmd = std::fs::read_to_string(cluster.dir().join("node1/cmd")).unwrap();
    assert!(
        cmd.contains("--peer 2=10.77.0.12:7101/10.77.0.12:7001") && !cmd.contains("--peer-advertise"),
        "{cmd}"
    );
    let out = run_script(cluster.dir(), "proxy.sh", &["all", "status"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Up: every API answers from the root namespace, and a write through node 2 is accepted.
    for n in 1..=NODES {
        let status = cluster
            .status(n)
            .unwrap_or_else(|| panic!("node {n}'s API does not answer"));
        assert_eq!(status["node_id"], n);
    }
    let (s, v) = cluster
        .post(2, "/v1/users/u/mailboxes", &json!({"name": "INBOX"}))
        .unwrap();
    assert_eq!(s, 201, "{v}\n{}", cluster.logs());

    // Isolate node 1: it reaches neither peer (API nor peer port), the others still reach each
    // other, the root namespace still reaches node 1, and the majority accepts a write in every
    // group (including those node 1 led: they elect a new leader).
    cluster.script("partition.sh", &["isolate:1"]);
    let attempts = [
        (1, "10.77.0.12:7001"),
        (1, "10.77.0.12:7101"),
        (1, "10.77.0.13:7001"),
        (1, "10.77.0.13:7101"),
        (2, "10.77.0.11:7001"),
        (3, "10.77.0.11:7101"),
        (2, "10.77.0.13:7101"),
        (3, "10.77.0.12:7001"),
    ];
    let reached = connects_from(&attempts);
    let expected = [false, false, false, false, false, false, true, true];
    assert_eq!(reached, expected, "reachability under isolate:1 of {attempts:?}");
    assert!(cluster.status(1).is_some(), "the root namespace lost node 1");
    let users = user_per_group();
    for (group, user) in &users {
        let body = json!({"name": "INBOX", "client_id": format!("t70-{group}"), "request_seq": 1});
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The same client_id and request_seq on every attempt: applied at most once.
            match cluster.post(2, &format!("/v1/users/{user}/mailboxes"), &body) {
                Ok((201, _)) => break,
                answer => assert!(
                    Instant::now() < deadline,
                    "the majority did not accept a write in group {group} within 30 s: {answer:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Heal: no nemesis rule is left anywhere, node 1 reaches its peers again, the nodes
    // converge, and node 1 serves the writes the majority took while it was away.
    cluster.script("heal.sh", &[]);
    for n in 1..=NODES {
        let rules = Command::new("ip")
            .args(["netns", "exec", &format!("dvt{n}"), "iptables", "-w", "-S"])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(
            !rules.contains("dovetail-nemesis") && !rules.contains("DOVETAIL-NEMESIS"),
            "dvt{n}:\n{rules}"
        );
    }
    let reached = connects_from(&attempts);
    assert!(
        reached.iter().all(|&r| r),
        "reachability after heal of {attempts:?}: {reached:?}"
    );
    cluster.wait_converged(Duration::from_secs(30), "after heal");
    for user in users.values() {
        let (s, v) = cluster
            .get(1, &format!("/v1/users/{user}/mailboxes/INBOX"))
            .unwrap();
        assert_eq!(s, 200, "node 1 reading {user}'s INBOX after heal: {v}");
    }

    // kill -9 node 3: its process is gone and its API refuses; restart brings it back and it
    // catches up.
    let old_pid = cluster.pid(3);
    cluster.script("kill.sh", &["3"]);
    assert!(
        matches!(proc_state(old_pid), None | Some('Z')),
        "node 3 (pid {old_pid}) is still there: {:?}",
        proc_state(old_pid)
    );
    assert!(
        cluster.status(3).is_none(),
        "node 3's API still answers after kill"
    );
    cluster.script("restart.sh", &["3"]);
    let new_pid = cluster.pid(3);
    assert_ne!(new_pid, old_pid);
    assert!(
        cluster.status(3).is_some(),
        "node 3's API does not answer after restart"
    );
    cluster.wait_converged(Duration::from_secs(30), "after restarting node 3");

    // Pause and resume node 2.
    let pid = cluster.pid(2);
    cluster.script("pause.sh", &["2"]);
    assert_eq!(proc_state(pid), Some('T'), "node 2 is not stopped after pause");
    cluster.script("resume.sh", &["2"]);
    let state = proc_state(pid);
    assert!(
        matches!(state, Some('S' | 'R' | 'D')),
        "node 2 is not running after resume: {state:?}"
    );
    assert!(
        cluster.status(2).is_some(),
        "node 2's API does not answer after resume"
    );

    // Down leaves nothing behind, and a second down is fine.
    cluster.down();
    cluster.script("netns-cluster.sh", &["down"]);
    eprintln!("t70: cluster checks took {:?}", started.elapsed());
}

/// The proxy binary: `DOVETAIL_JEPSEN_BIN`, else `dovetail-jepsen` built now with cargo beside
/// this test's `dovetail`.
fn proxy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DOVETAIL_JEPSEN_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "-p",
            "dovetail-jepsen",
            "--bin",
            "dovetail-jepsen",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building dovetail-jepsen failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_dovetail")).with_file_name("dovetail-jepsen");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// Every proxy's `status`, by node.
fn proxy_status(cluster: &NetnsCluster) -> BTreeMap<u64, Value> {
    cluster
        .script("proxy.sh", &["all", "status"])
        .lines()
        .map(|line| {
            let (node, json) = line
                .strip_prefix("node ")
                .and_then(|l| l.split_once(": "))
                .unwrap_or_else(|| panic!("unexpected status line {line:?}"));
            (node.parse().unwrap(), serde_json::from_str(json).unwrap())
        })
        .collect()
}

/// Appends message `seq` to `user`'s INBOX through `node`, once; how long the answer took.
fn append_once(
    cluster: &NetnsCluster,
    node: u64,
    user: &str,
    seq: u64,
) -> (Duration, std::io::Result<(u16, Value)>) {
    append_as(cluster, node, user, "t70-proxy", seq)
}

/// [`append_once`] as client `client` (its request_seqs must grow).
fn append_as(
    cluster: &NetnsCluster,
    node: u64,
    user: &str,
    client: &str,
    seq: u64,
) -> (Duration, std::io::Result<(u16, Value)>) {
    let body = json!({
        "messages": [{"guid": format!("{seq:032x}"), "size": 100}],
        "client_id": format!("{client}-{user}"),
        "request_seq": seq,
    });
    let started = Instant::now();
    let answer = cluster.post(node, &format!("/v1/users/{user}/mailboxes/INBOX/messages"), &body);
    (started.elapsed(), answer)
}

/// Appends message `seq` through `node`, retrying (the same request, applied at most once)
/// until it is acknowledged or `limit` has passed; how long the acknowledged attempt took.
fn append_within(
    cluster: &NetnsCluster,
    node: u64,
    user: &str,
    seq: u64,
    limit: Duration,
    what: &str,
) -> Duration {
    let deadline = Instant::now() + limit;
    loop {
        match append_once(cluster, node, user, seq) {
            (took, Ok((200, _))) => return took,
            (_, answer) => assert!(
                Instant::now() < deadline,
                "{what}: append {seq} to {user} through node {node} not acknowledged within {limit:?}: {answer:?}\n{}",
                cluster.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `counter` of node `node`'s proxy is above zero; `poke` runs before each look.
fn wait_counter(
    cluster: &NetnsCluster,
    node: u64,
    counter: &str,
    limit: Duration,
    mut poke: impl FnMut(),
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        poke();
        let status = proxy_status(cluster).remove(&node).unwrap();
        if status[counter].as_u64().is_some_and(|n| n > 0) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "node {node}'s proxy counted no {counter} within {limit:?}: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn proxy_script_steers_the_peer_proxies() {
    let _one_at_a_time = NETNS.lock().unwrap_or_else(|e| e.into_inner());
    if !netns_ready() {
        return;
    }
    let bin = proxy_bin();
    let started = Instant::now();
    let mut cluster = NetnsCluster::up(NODES, GROUPS, Some(&bin));

    // The nodes know each other by the proxy routes on their loopback and replicate through
    // them: node 1, which bootstrapped and leads, has had its connections forwarded (the others
    // open connections of their own only once they lead or forward).
    let cmd = std::fs::read_to_string(cluster.dir().join("node1/cmd")).unwrap();
    assert!(
        cmd.contains("--peer-advertise 127.0.0.1:8101")
            && cmd.contains("--peer 2=127.0.0.1:8102/10.77.0.12:7001"),
        "{cmd}"
    );
    let users = user_per_group();
    for user in users.values() {
        let (s, v) = cluster
            .post(
                1,
                &format!("/v1/users/{user}/mailboxes"),
                &json!({"name": "INBOX"}),
            )
            .unwrap();
        assert_eq!(s, 201, "{v}");
    }
    let status = proxy_status(&cluster);
    assert_eq!(status.len(), NODES as usize, "{status:?}");
    for (node, s) in &status {
        assert_eq!(s["settings"]["admit"], "open", "node {node}'s proxy: {s}");
    }
    assert!(status[&1]["forwarded"].as_u64().unwrap() >= 2, "{status:?}");
    let user = users.values().next().unwrap().clone();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };

    // latency 150 on every proxy: a replicated write needs the leader's request and the
    // follower's answer, each delayed 150 ms (a forwarded write more).
    cluster.script("proxy.sh", &["all", "latency", "150"]);
    for (_, s) in proxy_status(&cluster) {
        assert_eq!(s["settings"]["up"]["ms"], 150, "{s}");
        assert_eq!(s["settings"]["down"]["ms"], 150, "{s}");
    }
    // (An attempt may meet a leader change, by the rebalancer or a slow heartbeat: retried.)
    cluster.wait_converged(Duration::from_secs(30), "before latency");
    for node in 1..=NODES {
        let took = append_within(
            &cluster,
            node,
            &user,
            next(),
            Duration::from_secs(20),
            "under latency",
        );
        assert!(
            took >= Duration::from_millis(300),
            "a write through node {node} took {took:?} under 150 ms latency each way"
        );
    }
    // clean takes it away: some of five writes are faster than one delayed round trip.
    cluster.script("proxy.sh", &["all", "clean"]);
    let fastest = (0..5)
        .map(|_| append_within(&cluster, 1, &user, next(), Duration::from_secs(20), "after clean"))
        .min()
        .unwrap();
    assert!(
        fastest < Duration::from_millis(300),
        "the fastest of five writes after clean took {fastest:?}"
    );

    // drop resets every live connection (counted), and the cluster reconnects.
    cluster.script("proxy.sh", &["all", "drop"]);
    let resets: u64 = proxy_status(&cluster)
        .values()
        .map(|s| s["reset_by_drop"].as_u64().unwrap())
        .sum();
    assert!(resets > 0, "drop reset no connection");
    append_within(&cluster, 2, &user, next(), Duration::from_secs(20), "after drop");

    // refuse (and drop) on node 3's proxy: node 3 cannot open a peer connection (a write it
    // must forward or replicate is refused, counted), while nodes 1 and 2, which still reach
    // node 3 through their own proxies, write in every group.
    cluster.script("proxy.sh", &["3", "refuse"]);
    cluster.script("proxy.sh", &["3", "drop"]);
    // The pokes through node 3 may or may not be applied; they are a client of their own.
    let mut poke_seq = 1000;
    wait_counter(&cluster, 3, "refused", Duration::from_secs(20), || {
        poke_seq += 1;
        let _ = append_as(&cluster, 3, &user, "t70-poke", poke_seq);
    });
    for user in users.values() {
        append_within(
            &cluster,
            1,
            user,
            next(),
            Duration::from_secs(30),
            "node 3 refused",
        );
    }
    // blackhole: node 3's new connections are held and never reach a peer (counted).
    cluster.script("proxy.sh", &["3", "blackhole"]);
    wait_counter(&cluster, 3, "blackholed", Duration::from_secs(20), || {
        poke_seq += 1;
        let _ = append_as(&cluster, 3, &user, "t70-poke", poke_seq);
    });
    cluster.script("proxy.sh", &["3", "clean"]);
    cluster.wait_converged(Duration::from_secs(30), "after clean on node 3");
    append_within(
        &cluster,
        3,
        &user,
        next(),
        Duration::from_secs(20),
        "node 3 after clean",
    );

    // A partition still cuts a node off through its proxy: node 1's linearizable reads fail
    // (they need a quorum), and work again after heal.
    cluster.script("partition.sh", &["isolate:1"]);
    let read = format!("/v1/users/{user}/mailboxes/INBOX?consistency=linearizable");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cluster.get(1, &read) {
            Ok((200, _)) => assert!(
                Instant::now() < deadline,
                "node 1 still reads linearizably 20 s into isolate:1"
            ),
            Ok((503, _)) => break,
            other => panic!("node 1 under isolate:1: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.script("heal.sh", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(cluster.get(1, &read), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "node 1 does not read linearizably after heal"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // restart.sh brings back a dead proxy.
    let proxy_pid = |node: u64| -> u32 {
        std::fs::read_to_string(cluster.dir().join(format!("node{node}/proxy.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let old = proxy_pid(2);
    assert!(Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(proc_state(old), None | Some('Z')) {
        assert!(Instant::now() < deadline, "proxy {old} survived kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        run_script(cluster.dir(), "proxy.sh", &["2", "status"], &[])
            .status
            .code(),
        Some(1),
        "a dead proxy must make proxy.sh fail"
    );
    cluster.script("restart.sh", &["2"]);
    let new = proxy_pid(2);
    assert_ne!(new, old);
    assert!(proxy_status(&cluster).contains_key(&2));
    cluster.wait_converged(Duration::from_secs(30), "after restarting node 2's proxy");

    // down leaves no proxy running.
    let pids: Vec<u32> = (1..=NODES).map(proxy_pid).collect();
    cluster.down();
    for pid in pids {
        assert!(
            matches!(proc_state(pid), None | Some('Z')),
            "proxy {pid} left after down"
        );
    }
    eprintln!("t70: proxy checks took {:?}", started.elapsed());
}
