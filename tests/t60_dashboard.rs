//! The cluster overview and the dashboard: `GET /admin/cluster` on any node lists every member
//! and, for every group, the leader the members themselves report, with each replica's role,
//! applied index and lag; a paused member is listed as unreachable without failing or stalling
//! the call; and the dashboard page, rendered by a real browser, draws the same grid. A 3-node
//! cluster of real processes with 4 groups and automatic rebalancing off (so leaders stay where
//! they are while the views are compared) takes a few writes. First `/admin/cluster` is read on
//! every node and checked against each node's `/admin/status` (the overview must also refuse a
//! request without the admin token); then node 3 is paused with SIGSTOP: the overview on nodes 1
//! and 2 must still answer within a few seconds, listing node 3 with `reachable: false`, and
//! list it reachable again after SIGCONT. Separately, headless Chromium loads `GET /` with the
//! admin token in the URL fragment; in the DOM it leaves after the page's script ran, there must
//! be one column header per node and, for each group, exactly one cell marked leader, in the
//! column of the leader `/admin/status` reports. A screenshot is kept under
//! `target/test-artifacts/dashboard.png`.
//!
//! Chromium: Debian's `chromium`, which `scripts/test.sh` installs when it can. Without it this
//! test prints a notice and passes, unless `DOVETAIL_REQUIRE_CHROMIUM=1` (as `scripts/test.sh`
//! sets), where it fails.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, post, request_as, wait_until, TestCluster, ADMIN_TOKEN};

const GROUPS: u32 = 4;
const NODES: u64 = 3;

/// The leader each group is moved to: spread over the nodes, so a grid that put every leader in
/// one column, or the columns in the wrong order, cannot pass.
fn planned_leader(group: u32) -> u64 {
    (group as u64 % NODES) + 1
}

/// A cluster with leaders spread by `planned_leader` and a few mailboxes written, so indexes
/// and logs are not empty.
fn start_cluster() -> TestCluster {
    let cluster = TestCluster::start(NODES, GROUPS, &["--rebalance-interval-ms", "0"]);
    for g in 0..GROUPS {
        let to = planned_leader(g);
        let path = format!("/admin/groups/{g}/transfer-leader");
        let (s, v) = post(&cluster.node(1).api, &path, &json!({ "to": to })).unwrap();
        assert_eq!(s, 200, "moving group {g} to node {to}: {v}");
    }
    for user in ["ann", "bob", "cyd", "dee", "eve", "fay"] {
        let api = &cluster.node(1).api;
        let (s, v) = post(
            api,
            &format!("/v1/users/{user}/mailboxes"),
            &json!({"name": "INBOX"}),
        )
        .unwrap();
        assert_eq!(s, 201, "{v}");
        let messages = json!({"messages": [{"guid": "00112233445566778899aabbccddeeff", "size": 10}]});
        let (s, v) = post(
            api,
            &format!("/v1/users/{user}/mailboxes/INBOX/messages"),
            &messages,
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
    }
    cluster
}

/// Each group's leader, once every node's `/admin/status` names the same one.
fn agreed_leaders(cluster: &TestCluster) -> Vec<u64> {
    let mut leaders = Vec::new();
    wait_until(
        Duration::from_secs(30),
        "every node names the same leaders",
        || {
            let views: Vec<Option<Vec<u64>>> = (1..=NODES)
                .map(|n| (0..GROUPS).map(|g| cluster.leader_of(g, n)).collect())
                .collect();
            leaders = views[0].clone().unwrap_or_default();
            views.iter().all(|v| v.is_some() && *v == views[0])
        },
    );
    leaders
}

/// `GET /admin/cluster` on `node`, with how long it took.
fn overview(cluster: &TestCluster, node: u64) -> (Value, Duration) {
    let started = Instant::now();
    let (s, v) = get(&cluster.node(node).api, "/admin/cluster").unwrap();
    assert_eq!(s, 200, "node {node}: {v}");
    (v, started.elapsed())
}

fn reachable(overview: &Value) -> BTreeMap<u64, bool> {
    overview["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_u64().unwrap(), n["reachable"].as_bool().unwrap()))
        .collect()
}

#[test]
fn cluster_overview_lists_members_and_survives_a_paused_one() {
    let cluster = start_cluster();
    let leaders = agreed_leaders(&cluster);
    assert_eq!(leaders, (0..GROUPS).map(planned_leader).collect::<Vec<_>>());

    for n in 1..=NODES {
        let api = &cluster.node(n).api;
        let (s, status) = get(api, "/admin/status").unwrap();
        assert_eq!(s, 200);
        let node = &status["node"];
        assert_eq!(node["node_id"], n, "{node}");
        assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(node["api_addr"], cluster.node(n).api.as_str());
        assert_eq!(node["peer_addr"], cluster.node(n).peer.as_str());
        assert!(node["uptime_s"].is_u64(), "{node}");
        assert!(node["disk"]["log_bytes"].as_u64().unwrap() > 0, "{node}");
        assert!(node["disk"]["index_bytes"].as_u64().unwrap() > 0, "{node}");
        assert_eq!(status["groups"].as_array().unwrap().len(), GROUPS as usize);
        assert!(status["groups"][0]["last_error"].is_null(), "{status}");

        let (s, refused) = request_as(api, "GET", "/admin/cluster", None, None).unwrap();
        assert_eq!(s, 401, "/admin/cluster without a token: {refused}");

        let (view, _) = overview(&cluster, n);
        assert_eq!(reachable(&view), (1..=NODES).map(|id| (id, true)).collect());
        for node in view["nodes"].as_array().unwrap() {
            assert_eq!(node["version"], env!("CARGO_PKG_VERSION"), "{node}");
            assert!(node["error"].is_null() && node["uptime_s"].is_u64(), "{node}");
            assert!(node["disk"]["log_bytes"].as_u64().unwrap() > 0, "{node}");
        }
        let groups = view["groups"].as_array().unwrap();
        assert_eq!(groups.len(), GROUPS as usize);
        for (g, group) in groups.iter().enumerate() {
            let leader = leaders[g];
            assert_eq!(group["group"], g as u64);
            assert_eq!(group["leader"], leader, "via node {n}: {group}");
            assert_eq!(group["voters"], json!([1, 2, 3]), "{group}");
            assert!(group["last_error"].is_null(), "{group}");
            let replicas = group["replicas"].as_object().unwrap();
            assert_eq!(replicas.len(), NODES as usize, "{group}");
            for (id, replica) in replicas {
                let role = if id.parse::<u64>().unwrap() == leader {
                    "leader"
                } else {
                    "follower"
                };
                assert_eq!(replica["role"], role, "group {g} node {id}: {group}");
                assert!(replica["applied"].is_u64(), "{group}");
                // The leader has an acknowledged position for every member by now.
                assert!(replica["matched"].is_u64() && replica["lag"].is_u64(), "{group}");
            }
        }
    }

    // Node 3 (leader of group 2) stops answering; its socket still accepts connections (the
    // kernel does that), so only the request deadline can tell.
    cluster.signal(3, libc::SIGSTOP);
    for n in [1, 2] {
        let (view, took) = overview(&cluster, n);
        assert!(
            took < Duration::from_secs(5),
            "/admin/cluster on node {n} took {took:?}"
        );
        assert_eq!(
            reachable(&view),
            BTreeMap::from([(1, true), (2, true), (3, false)])
        );
        let paused = &view["nodes"][2];
        assert!(
            paused["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{paused}"
        );
        assert!(
            paused["version"].is_null() && paused["disk"].is_null(),
            "{paused}"
        );
        for group in view["groups"].as_array().unwrap() {
            assert!(group["replicas"]["3"]["role"].is_null(), "{group}");
            assert!(group["replicas"]["1"]["role"].is_string(), "{group}");
        }
        eprintln!("/admin/cluster on node {n} with node 3 paused: {took:?}");
    }
    cluster.signal(3, libc::SIGCONT);
    wait_until(Duration::from_secs(20), "node 3 is reachable again", || {
        reachable(&overview(&cluster, 1).0).values().all(|&r| r)
    });
}

/// The Chromium binary on PATH, or `None` (after a notice) when the test may skip.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let why = "`chromium` is not on PATH (Debian: apt-get install chromium; scripts/test.sh does this)";
        assert!(
            std::env::var("DOVETAIL_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "DOVETAIL_REQUIRE_CHROMIUM=1 but {why}"
        );
        eprintln!("t60_dashboard: SKIPPING the browser test: {why}");
    }
    found
}

/// A Chromium process group, killed (every process in it) when dropped, so a failing or
/// timed-out test leaves no browser behind.
struct Browser {
    pid: i32,
    child: std::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group: the browser and the renderer, GPU and utility processes it forked.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Runs headless Chromium on `url` until it exits (at most `limit`); returns its stdout.
fn run_chromium(chromium: &Path, work: &Path, args: &[String], url: &str, limit: Duration) -> String {
    use std::os::unix::process::CommandExt;
    let stdout_path = work.join("stdout");
    let stderr_path = work.join("stderr");
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
        ])
        // Its own process group, so that one kill reaches every process it forks. (Its crash
        // handlers run in sessions of their own, but exit once the browser is gone.)
        .arg(format!("--user-data-dir={}", work.join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("starting chromium");
    let mut browser = Browser {
        pid: child.id() as i32,
        child,
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = browser.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("chromium did not finish within {limit:?}; its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(browser);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium exited with {status}; its stderr:\n{stderr}"
    );
    std::fs::read_to_string(&stdout_path).unwrap()
}

/// The attributes of every `<tag ...>` start tag in `html` (values unescaped only for `&quot;`
/// and `&amp;`, which is all the page's attributes can hold).
fn start_tags(html: &str, tag: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{tag}");
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        if !rest.starts_with([' ', '>', '\n', '\t']) {
            continue;
        }
        let mut attributes = BTreeMap::new();
        let mut chars = rest.char_indices().peekable();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '>' => {
                    end = i;
                    break;
                }
                c if c.is_whitespace() => {}
                _ => {
                    let mut name = String::from(c);
                    while let Some(&(_, c)) = chars.peek() {
                        if c == '=' || c == '>' || c.is_whitespace() {
                            break;
                        }
                        name.push(c);
                        chars.next();
                    }
                    let mut value = String::new();
                    if chars.peek().is_some_and(|&(_, c)| c == '=') {
                        chars.next();
                        if chars.peek().is_some_and(|&(_, c)| c == '"') {
                            chars.next();
                            for (_, c) in chars.by_ref() {
                                if c == '"' {
                                    break;
                                }
                                value.push(c);
                            }
                        }
                    }
                    attributes.insert(name, value.replace("&quot;", "\"").replace("&amp;", "&"));
                }
            }
        }
        rest = &rest[end..];
        tags.push(attributes);
    }
    tags
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

/// The dashboard as Chromium rendered it.
struct Rendered {
    /// The DOM after the page's script ran.
    dom: String,
    /// `(DOM of ..., also in <file>: <dom>)`, for failure messages.
    context: String,
    /// Attributes of the `th[data-node]` column headers, in page order.
    headers: Vec<BTreeMap<String, String>>,
    /// Attributes of the `td[data-group]` cells.
    cells: Vec<BTreeMap<String, String>>,
}

/// Loads the dashboard from node `via` in headless Chromium, with the admin token in the URL
/// fragment, and keeps its DOM and a screenshot as `target/test-artifacts/<name>.{html,png}`.
///
/// `--dump-dom` prints the DOM once the page is "ready". With `--virtual-time-budget`, Chromium
/// runs the page on a virtual clock that does not advance while network requests are pending and
/// exits when the budget is spent: the page's first `fetch` of /admin/cluster has answered and
/// been rendered by then. (Without the budget the DOM is dumped at the load event, before any
/// fetch answers.) The screenshot, taken in the same run, shows that DOM. So no CDP client over a
/// websocket is needed.
///
/// The URL asks for `&once` (draw once, stop polling). With the page polling, a poll is nearly
/// always in flight when a node is paused (/admin/cluster then takes its 1 s peer timeout), and
/// Chromium 156 hung in about 3 of 10 runs waiting to capture the screenshot frame (seen in CI and
/// reproduced by hand; 0 of 15 with `&once`).
fn render(chromium: &Path, cluster: &TestCluster, via: u64, name: &str) -> Rendered {
    let work = tempfile::tempdir().unwrap();
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("http://{}/#token={ADMIN_TOKEN}&once", cluster.node(via).api);
    let started = Instant::now();
    let dom = run_chromium(
        chromium,
        work.path(),
        &[
            "--virtual-time-budget=1500".into(),
            "--window-size=1400,900".into(),
            format!("--screenshot={}", screenshot.display()),
            "--dump-dom".into(),
        ],
        &url,
        Duration::from_secs(60),
    );
    eprintln!("chromium rendered {name} in {:?}", started.elapsed());
    let saved = artifacts.join(format!("{name}.html"));
    std::fs::write(&saved, &dom).unwrap();
    let context = format!("(DOM of {url}, also in {}:\n{dom})", saved.display());

    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("{}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{}: not a PNG screenshot",
        screenshot.display()
    );
    println!("dashboard screenshot: {}", screenshot.display());
    eprintln!("dashboard screenshot: {}", screenshot.display());

    let status = start_tags(&dom, "p")
        .into_iter()
        .find(|p| p.get("id").map(String::as_str) == Some("status"));
    assert_eq!(
        status
            .as_ref()
            .and_then(|p| p.get("data-state"))
            .map(String::as_str),
        Some("ok"),
        "the page did not update successfully {context}"
    );
    assert!(
        dom.contains("not updating (#once)"),
        "the page must honour &once {context}"
    );
    assert!(
        !dom.contains(ADMIN_TOKEN),
        "the token must not end up in the DOM {context}"
    );
    let headers: Vec<_> = start_tags(&dom, "th")
        .into_iter()
        .filter(|th| th.contains_key("data-node"))
        .collect();
    let cells: Vec<_> = start_tags(&dom, "td")
        .into_iter()
        .filter(|td| td.contains_key("data-group"))
        .collect();
    Rendered {
        dom,
        context,
        headers,
        cells,
    }
}

impl Rendered {
    /// The nodes whose cell of `group` has role `role`.
    fn nodes_with_role(&self, group: u32, role: &str) -> Vec<&str> {
        self.cells
            .iter()
            .filter(|td| td["data-group"] == group.to_string() && td["data-role"] == role)
            .map(|td| td["data-node"].as_str())
            .collect()
    }
}

#[test]
fn dashboard_renders_the_grid_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let cluster = start_cluster();
    let leaders = agreed_leaders(&cluster);
    assert_eq!(leaders, (0..GROUPS).map(planned_leader).collect::<Vec<_>>());
    let (s, _) = request_as(&cluster.node(2).api, "GET", "/", None, None).unwrap();
    assert_eq!(s, 200, "GET / must not need a token");

    let page = render(&chromium, &cluster, 2, "dashboard");
    let context = &page.context;
    let header_nodes: Vec<&str> = page.headers.iter().map(|th| th["data-node"].as_str()).collect();
    assert_eq!(
        header_nodes,
        ["1", "2", "3"],
        "one column header per node {context}"
    );
    assert!(
        page.headers.iter().all(|th| th["data-reachable"] == "true"),
        "{context}"
    );
    assert!(page.dom.contains(env!("CARGO_PKG_VERSION")), "{context}");
    // Each node's bodies: nothing missing, nothing owed on an idle cluster.
    assert_eq!(
        page.dom
            .matches(r#"class="meta bodies" data-missing="0" data-owed="0""#)
            .count(),
        NODES as usize,
        "{context}"
    );
    // Each node's mail line: no IMAP or LMTP listener here, so all 0.
    assert_eq!(
        page.dom
            .matches(
                r#"class="meta mail" data-imap="0" data-lmtp="0" data-delivered="0" data-login-failures="0""#
            )
            .count(),
        NODES as usize,
        "{context}"
    );
    assert_eq!(page.cells.len(), (GROUPS * NODES as u32) as usize, "{context}");
    for (g, leader) in leaders.iter().enumerate() {
        assert_eq!(
            page.nodes_with_role(g as u32, "leader"),
            [leader.to_string()],
            "group {g}: leader cells {context}"
        );
    }
    // The leaders did not move while the browser looked (rebalancing is off; no faults).
    assert_eq!(agreed_leaders(&cluster), leaders);

    // A paused node's column is still drawn, marked unreachable, its cells without a role.
    cluster.signal(3, libc::SIGSTOP);
    let paused = render(&chromium, &cluster, 1, "dashboard-node3-paused");
    cluster.signal(3, libc::SIGCONT);
    let context = &paused.context;
    let reachable: Vec<(&str, &str)> = paused
        .headers
        .iter()
        .map(|th| (th["data-node"].as_str(), th["data-reachable"].as_str()))
        .collect();
    assert_eq!(
        reachable,
        [("1", "true"), ("2", "true"), ("3", "false")],
        "{context}"
    );
    for g in 0..GROUPS {
        assert_eq!(paused.nodes_with_role(g, "unknown"), ["3"], "group {g} {context}");
    }
}
