//! `GET /metrics` reports, in the Prometheus text format, what the cluster really did. A 3-node
//! cluster with `--snapshot-interval 20`, `--log-retention 10` and rebalancing off: the test
//! picks a group, creates a mailbox and sends every append to the group's leader while one
//! follower is stopped, until the leader's log no longer holds what that follower has; then it
//! restarts the follower, which catches up by snapshot. Once every node applied the same index,
//! it scrapes every node and checks values, not just names: the applied-index gauge of every
//! group equals `/admin/status`, terms agree, exactly one node leads each group, the leader's
//! replication lag is 0 for both followers; the log append and fsync histograms counted
//! something; the leader counted exactly the appends it answered under the route *pattern*
//! (the user's name appears nowhere); every node holds 1 mailbox and all appended messages in
//! the group (the restarted follower through the snapshot it installed); the leader sent at least
//! the snapshot bytes the follower received.
//!
//! A second test covers the bodies' series: on a 3-node cluster at log encoding 3, two
//! deliveries reach every node, one body is deleted on node 2 and read through it (a fetch on a
//! miss), and every node is asked for a body sweep; then each node's `dovetail_bod*` series equal
//! its `node.bodies` in `/admin/status` (stored, bytes, referenced, missing, fetches) and node 2's
//! fetch latency histogram counted the one fetch.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dovetail::placement::group_of;
use serde_json::json;
use support::{get, post, raw_request, token_for, wait_until, TestCluster};

const GROUPS: u32 = 3;
const USER: &str = "metrics-user@example.com";
/// Appends sent, one message each, while the follower is down: several snapshots' worth.
const APPENDS: u64 = 60;
const APPEND_ROUTE: &str = "/v1/users/{user}/mailboxes/{mailbox}/messages";

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A parsed scrape of `/metrics`.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the series `name` whose labels include `labels` (none: the only series
    /// without labels, or the first one).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, value)| *value)
    }

    fn group_value(&self, name: &str, group: u32) -> Option<f64> {
        self.value(name, &[("group", &group.to_string())])
    }

    /// Every series of `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |(n, _, _)| n == name)
    }
}

/// Parses the text format's sample lines (`name{k="v",...} value`); comments are skipped.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line ends with its value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("labels of {line}"));
                (name.to_string(), parse_labels(body))
            }
        };
        samples.push((name, labels, value));
    }
    samples
}

/// `k="v",k2="v2"`; values may hold `{`, `}`, `,` and escaped quotes.
fn parse_labels(mut body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => value.push(chars.next().expect("escaped char").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        body = rest[end + 1..].strip_prefix(',').unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// `GET /metrics` with the admin token; asserts 200 and the text format's content type.
fn scrape(api: &str) -> Scrape {
    let mut stream = TcpStream::connect(api).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token_for("/metrics")
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .expect("a content type");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape {
        text: body.to_string(),
        samples: parse(body),
    }
}

#[test]
fn metrics_report_raft_storage_api_and_mail_state() {
    let mut cluster = TestCluster::start(
        3,
        GROUPS,
        &[
            "--snapshot-interval",
            "20",
            "--log-retention",
            "10",
            "--rebalance-interval-ms",
            "0",
        ],
    );
    let group = group_of(USER, GROUPS);
    let leader = cluster.leader_of(group, 1).expect("a leader");
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let stopped = (1..=3).find(|&n| n != leader && n != follower).unwrap();
    let api = cluster.node(leader).api.clone();

    let (s, v) = post(
        &api,
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let created = cluster.wait_applied_equal(group, 1, Duration::from_secs(20));
    assert!(cluster.stop(stopped).success(), "{}", cluster.log(stopped));
    for seq in 1..=APPENDS {
        let body = json!({"messages": [{"guid": format!("{seq:032x}"), "size": seq}]});
        let (s, v) = post(&api, &format!("/v1/users/{USER}/mailboxes/INBOX/messages"), &body).unwrap();
        assert_eq!(s, 200, "append {seq}: {v}");
    }
    wait_until(
        Duration::from_secs(20),
        "the leader purged entries the stopped follower misses",
        || {
            cluster
                .group_status(leader, group)
                .and_then(|g| g["purged"].as_u64())
                .is_some_and(|p| p > created + 1)
        },
    );
    cluster.restart(stopped);
    let applied = cluster.wait_applied_equal(group, created + APPENDS, Duration::from_secs(30));

    // The gauges are sampled every second: wait until every node's gauges show the state that
    // /admin/status shows (nothing is written any more, so both stand still).
    let mut scrapes: BTreeMap<u64, Scrape> = BTreeMap::new();
    wait_until(Duration::from_secs(20), "the gauges match /admin/status", || {
        scrapes = (1..=3).map(|n| (n, scrape(&cluster.node(n).api))).collect();
        (1..=3).all(|n| {
            (0..GROUPS).all(|g| {
                let status = cluster.group_status(n, g).expect("status");
                let applied = status["applied"].as_u64().unwrap_or(0) as f64;
                scrapes[&n].group_value("dovetail_group_applied_index", g) == Some(applied)
            })
        }) && [follower, stopped].iter().all(|f| {
            let labels = [("group", group.to_string()), ("follower", f.to_string())];
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            scrapes[&leader].value("dovetail_group_replication_lag_entries", &labels) == Some(0.0)
        }) && scrapes[&stopped].group_value("dovetail_group_messages", group) == Some(APPENDS as f64)
    });

    // Raft state per group: one leader each, terms as /admin/status says, applied <= committed.
    for g in 0..GROUPS {
        let leaders: f64 = (1..=3)
            .map(|n| scrapes[&n].group_value("dovetail_group_is_leader", g).unwrap())
            .sum();
        assert_eq!(leaders, 1.0, "group {g} has one leader");
        for n in 1..=3 {
            let m = &scrapes[&n];
            let status = cluster.group_status(n, g).unwrap();
            assert_eq!(
                m.group_value("dovetail_group_term", g),
                status["term"].as_f64(),
                "node {n} group {g}"
            );
            assert!(
                m.group_value("dovetail_group_committed_index", g)
                    >= m.group_value("dovetail_group_applied_index", g),
                "node {n} group {g}: committed >= applied"
            );
            assert!(
                m.group_value("dovetail_group_leader_changes_total", g) >= Some(1.0),
                "node {n} saw group {g} get a leader\n{}",
                m.text
            );
        }
    }
    for n in 1..=3 {
        let m = &scrapes[&n];
        assert_eq!(
            m.group_value("dovetail_group_applied_index", group),
            Some(applied as f64)
        );
        assert_eq!(
            m.group_value("dovetail_group_is_leader", group),
            Some(f64::from(n == leader))
        );
        if n != leader {
            assert!(
                m.all("dovetail_group_replication_lag_entries")
                    .all(|(_, _, lag)| *lag == 0.0),
                "node {n} leads nothing it lags on\n{}",
                m.text
            );
        }
        // Mail state held by every node, the restarted one through the snapshot it installed.
        assert_eq!(
            m.group_value("dovetail_group_mailboxes", group),
            Some(1.0),
            "node {n}"
        );
        assert_eq!(
            m.group_value("dovetail_group_messages", group),
            Some(APPENDS as f64),
            "node {n}"
        );
        let mailboxes: f64 = m.all("dovetail_group_mailboxes").map(|(_, _, v)| v).sum();
        assert_eq!(mailboxes, 1.0, "node {n}: the other groups hold no mailbox");
        assert!(
            !m.text.contains("metrics-user"),
            "a user name became a label\n{}",
            m.text
        );
    }

    // The log store of the nodes that received every entry through the log (the restarted one
    // may have appended nothing after its snapshot): appends and fsyncs were timed, as true
    // histograms.
    for n in [leader, follower] {
        let m = &scrapes[&n];
        for histogram in ["dovetail_log_append_seconds", "dovetail_log_fsync_seconds"] {
            let count = m.value(&format!("{histogram}_count"), &[]).unwrap_or(0.0);
            assert!(count > 0.0, "node {n}: {histogram} counted nothing\n{}", m.text);
            let infinite = m.value(&format!("{histogram}_bucket"), &[("le", "+Inf")]);
            assert_eq!(infinite, Some(count), "node {n}: {histogram} +Inf bucket");
            assert!(
                m.text.contains(&format!("# TYPE {histogram} histogram")),
                "{}",
                m.text
            );
        }
        // Every flush completes at least one request.
        let flushes = m.value("dovetail_log_fsync_batch_requests_count", &[]);
        let requests = m.value("dovetail_log_fsync_batch_requests_sum", &[]);
        assert!(
            flushes > Some(0.0) && requests >= flushes,
            "node {n}: {flushes:?} flushes, {requests:?} requests"
        );
    }

    // The API, by route pattern: the leader answered every append, the follower none.
    let appends = |n: u64| {
        scrapes[&n].value(
            "dovetail_api_requests_total",
            &[("route", APPEND_ROUTE), ("method", "POST"), ("status", "200")],
        )
    };
    assert_eq!(appends(leader), Some(APPENDS as f64), "{}", scrapes[&leader].text);
    assert_eq!(appends(follower), None);
    let creates = scrapes[&leader].value(
        "dovetail_api_requests_total",
        &[
            ("route", "/v1/users/{user}/mailboxes"),
            ("method", "POST"),
            ("status", "201"),
        ],
    );
    assert_eq!(creates, Some(1.0));
    let timed = scrapes[&leader].value(
        "dovetail_api_request_duration_seconds_count",
        &[("route", APPEND_ROUTE), ("method", "POST")],
    );
    assert_eq!(timed, Some(APPENDS as f64));

    // Snapshots: the restarted follower received one (its counters start at its restart); the
    // leader sent at least that.
    let g = group.to_string();
    let labels = [("group", g.as_str())];
    let received = scrapes[&stopped].value("dovetail_snapshots_received_total", &labels);
    let received_bytes = scrapes[&stopped].value("dovetail_snapshots_received_bytes_total", &labels);
    let sent = scrapes[&leader].value("dovetail_snapshots_sent_total", &labels);
    let sent_bytes = scrapes[&leader].value("dovetail_snapshots_sent_bytes_total", &labels);
    assert!(received >= Some(1.0), "{}", scrapes[&stopped].text);
    assert!(received_bytes > Some(0.0));
    assert!(sent >= received, "sent {sent:?}, received {received:?}");
    assert!(
        sent_bytes >= received_bytes,
        "sent {sent_bytes:?}, received {received_bytes:?}"
    );
}

#[test]
fn body_metrics_match_status_after_deliveries_and_a_fetch() {
    let cluster = TestCluster::start(3, GROUPS, &[]);
    let api = |n: u64| cluster.node(n).api.clone();
    wait_until(Duration::from_secs(30), "every group at log encoding 3", || {
        get(&api(1), "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    let (s, v) = post(
        &api(1),
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let mut uids = Vec::new();
    let mut paths = Vec::new();
    for i in 0..2 {
        let bytes = format!("Subject: metrics {i}\r\n\r\n{}", "y".repeat(3000)).into_bytes();
        let answer = raw_request(
            &api(1),
            "POST",
            &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
            &[("Content-Type", "message/rfc822")],
            &bytes,
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.json());
        uids.push(answer.json()["first_uid"].as_u64().unwrap());
        let id: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        paths.push(
            (1..=3)
                .map(|n| cluster.node(n).dir.join("blobs").join(&id[..2]).join(&id))
                .collect::<Vec<_>>(),
        );
    }
    wait_until(Duration::from_secs(30), "every node holds both bodies", || {
        paths.iter().flatten().all(|p| p.is_file())
    });
    // A fetch on a miss on node 2.
    std::fs::remove_file(&paths[0][1]).unwrap();
    wait_until(
        Duration::from_secs(30),
        "node 2 serves the body it lacked",
        || {
            raw_request(
                &api(2),
                "GET",
                &format!("/v1/users/{USER}/mailboxes/INBOX/messages/{}/body", uids[0]),
                &[],
                b"",
            )
            .is_ok_and(|a| a.status == 200)
        },
    );
    let bodies = |n: u64| get(&api(n), "/admin/status").unwrap().1["node"]["bodies"].clone();
    for n in 1..=3 {
        let (s, v) = post(&api(n), "/admin/bodies/sweep", &json!({})).unwrap();
        assert_eq!(s, 202, "{v}");
    }
    let mut scrapes: BTreeMap<u64, Scrape> = BTreeMap::new();
    let mut statuses: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    wait_until(
        Duration::from_secs(30),
        "the body series match /admin/status",
        || {
            statuses = (1..=3).map(|n| (n, bodies(n))).collect();
            scrapes = (1..=3).map(|n| (n, scrape(&api(n)))).collect();
            (1..=3).all(|n| {
                let (b, m) = (&statuses[&n], &scrapes[&n]);
                b["sweeps"].as_u64() >= Some(1)
                    && [
                        ("dovetail_bodies_stored", "stored"),
                        ("dovetail_bodies_stored_bytes", "stored_bytes"),
                        ("dovetail_bodies_referenced", "referenced"),
                        ("dovetail_bodies_missing", "missing"),
                        ("dovetail_bodies_damaged_total", "damaged"),
                        ("dovetail_bodies_collected_total", "collected"),
                    ]
                    .iter()
                    .all(|(series, field)| m.value(series, &[]) == b[field].as_f64())
            })
        },
    );
    for n in 1..=3 {
        let (b, m) = (&statuses[&n], &scrapes[&n]);
        assert_eq!(b["stored"], json!(2), "node {n}: {b}");
        assert_eq!(b["referenced"], json!(2), "node {n}: {b}");
        assert_eq!(b["missing"], json!(0), "node {n}: {b}");
        let fetched = if n == 2 { 1.0 } else { 0.0 };
        assert_eq!(
            m.value("dovetail_body_fetches_total", &[("result", "ok")]),
            Some(fetched),
            "node {n}\n{}",
            m.text
        );
        assert_eq!(
            m.value("dovetail_body_fetches_total", &[("result", "failed")]),
            Some(0.0)
        );
        let timed = m.value("dovetail_body_fetch_seconds_count", &[]).unwrap_or(0.0);
        assert_eq!(timed, fetched, "node {n}\n{}", m.text);
        assert!(
            !m.text.contains("body-ops") && !m.text.contains(USER),
            "{}",
            m.text
        );
    }
    assert!(
        scrapes[&2]
            .text
            .contains("# TYPE dovetail_body_fetch_seconds histogram"),
        "{}",
        scrapes[&2].text
    );
}
