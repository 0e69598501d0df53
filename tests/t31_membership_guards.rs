//! Membership changes that cannot wedge a group (issue 21, rows 2, 3 and 8), against a live
//! 3-node cluster of real processes.
//!
//! Property: a learner that is unreachable or behind is not promoted, and voters are not removed
//! below three, unless the caller says `force`; a forced promotion of an unreachable node into
//! three healthy voters is undone by the documented procedure (`ctl remove-node`), after which
//! every group has the three voters again and takes writes; adding a voter as learner changes
//! nothing and says so; a node removed from the groups stops serving them (410 `removed`, even
//! for `consistency=local` reads, which would otherwise be stale), says so in `/admin/status` and
//! its log, stops campaigning, still knows it after a restart, and serves again once added back.
//!
//! Provocation: learner 20 at 127.0.0.1:1 (nothing listens there) promoted through the API and
//! `ctl`, with and without `force`; node 3 removed (without, then with `force`) while writes go
//! on through node 1, then restarted, then added back and promoted.
//!
//! Checks: status codes and error codes, that the refusal messages name the group, the lag and
//! the threshold, every member's view of every group's voters and learners after each step, that
//! writes are acknowledged through every member, node 3's status (`/admin/status` and `ctl
//! status`), log and terms, and that node 3 serves the latest acknowledged write once it is back.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use dovetail::placement::group_of;
use serde_json::{json, Value};
use support::{get, post, request, wait_until, TestCluster, ADMIN_TOKEN};

const GROUPS: u32 = 4;
const USER: &str = "guards@example.com";

fn ctl(cluster: &TestCluster, via: u64, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("ctl")
        .args(args)
        .args(["--node", &format!("http://{}", cluster.node(via).api)])
        .env("DOVETAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Whether every group, as each of `nodes` sees it, has exactly these voters and learners.
fn membership_is(cluster: &TestCluster, nodes: &[u64], voters: &[u64], learners: &[u64]) -> bool {
    nodes.iter().all(|&n| {
        (0..GROUPS).all(|g| {
            cluster
                .group_status(n, g)
                .is_some_and(|s| ids(&s["voters"]) == voters && ids(&s["learners"]) == learners)
        })
    })
}

/// Appends one message through `api`, retrying on 503 (an election after a membership change);
/// returns the answer (with its `token`).
fn append(api: &str, seq: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = post(
            api,
            &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
            &json!({
                "messages": [{"guid": format!("{seq:032x}"), "size": seq}],
                "client_id": "t31",
                "request_seq": seq,
            }),
        )
        .unwrap();
        if s == 200 {
            return v;
        }
        assert!(
            s == 503 && Instant::now() < deadline,
            "append {seq} via {api}: {s} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Calls an admin endpoint until it answers 200, retrying on 503 and on a promotion's 409
/// `not_caught_up` (the learner is still catching up).
fn admin_ok(api: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = request(api, method, path, body).unwrap();
        if s == 200 {
            return v;
        }
        let retry = s == 503 || (s == 409 && v["error"]["code"] == "not_caught_up");
        assert!(retry && Instant::now() < deadline, "{method} {path}: {s} {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn promotions_and_removals_are_guarded_and_a_removed_node_stops_serving() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(3, GROUPS, &[]);
    let apis: Vec<String> = (1..=3).map(|n| cluster.node(n).api.clone()).collect();
    let api = |n: u64| apis[n as usize - 1].clone();
    let (s, v) = post(
        &api(1),
        &format!("/v1/users/{USER}/mailboxes"),
        &json!({"name": "INBOX"}),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let mut seq = 0;
    for n in [1, 2, 3] {
        seq += 1;
        append(&api(n), seq);
    }

    // Row 2: learner 20 at an address nobody serves.
    let learner = json!({"node_id": 20, "peer_addr": "127.0.0.1:1", "api_addr": "127.0.0.1:1"});
    let (s, v) = post(&api(2), "/admin/members/learners", &learner).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["role"].as_str(), v["changed"].as_u64()),
        (Some("learner"), Some(4)),
        "{v}"
    );
    wait_until(Duration::from_secs(10), "learner 20 everywhere", || {
        membership_is(&cluster, &[1, 2, 3], &[1, 2, 3], &[20])
    });
    let (s, v) = post(&api(3), "/admin/members/voters", &json!({"node_id": 20})).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_caught_up")),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    for needle in [
        "refused by the leader of 4 of 4 groups, nothing changed",
        "group 0: node 20 is not caught up: matched nothing",
        "entries behind (at most 300 allowed)",
        "last acknowledged never (at most 300 ms ago allowed)",
        "pass \"force\": true",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    for g in v["error"]["details"]["groups"].as_array().unwrap() {
        assert_eq!(
            (g["outcome"].as_str(), g["max_lag_entries"].as_u64()),
            (Some("refused"), Some(300)),
            "{g}"
        );
        assert!(g["lag_entries"].as_u64().unwrap() >= 3, "{g}");
    }
    let (code, out, err) = ctl(&cluster, 1, &["promote", "--id", "20"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("HTTP 409: not_caught_up"), "{err}");
    assert!(membership_is(&cluster, &[1, 2, 3], &[1, 2, 3], &[20]));

    // Forced: 20 becomes a voter; three healthy voters of four still commit.
    let (s, v) = post(
        &api(1),
        "/admin/members/voters",
        &json!({"node_id": 20, "force": true}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["role"].as_str(), v["changed"].as_u64()),
        (Some("voter"), Some(4)),
        "{v}"
    );
    wait_until(Duration::from_secs(10), "voter 20 everywhere", || {
        membership_is(&cluster, &[1, 2, 3], &[1, 2, 3, 20], &[])
    });
    for n in [1, 2, 3] {
        seq += 1;
        append(&api(n), seq);
    }
    // The documented undo (README, Operations → Membership): remove it again. Three healthy
    // voters remain, so no force is needed.
    let (code, out, err) = ctl(&cluster, 2, &["remove-node", "--id", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("remove node 20: 4 groups changed"), "{out}");
    wait_until(Duration::from_secs(10), "the three voters again", || {
        membership_is(&cluster, &[1, 2, 3], &[1, 2, 3], &[])
    });
    for n in [1, 2, 3] {
        seq += 1;
        append(&api(n), seq);
    }

    // Row 8: a voter added as learner stays a voter, and the answer says so.
    let again = json!({"node_id": 2, "peer_addr": cluster.node(2).peer, "api_addr": api(2)});
    let (s, v) = post(&api(1), "/admin/members/learners", &again).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["role"].as_str(), v["already"].as_str()),
        (Some("voter"), Some("voter")),
        "{v}"
    );
    assert_eq!(v["changed"], 0, "{v}");

    // Row 3: removing a voter of three needs force.
    let (s, v) = request(&api(1), "DELETE", "/admin/members/3", None).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("too_few_voters")),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("removing node 3 would leave voters {1,2} (fewer than 3)"),
        "{message}"
    );
    let (code, out, err) = ctl(&cluster, 2, &["remove-node", "--id", "3"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("too_few_voters"), "{err}");
    assert!(membership_is(&cluster, &[1, 2, 3], &[1, 2, 3], &[]));

    // Forced, node 3 goes; it is not told, and must find out for itself.
    let (s, v) = request(&api(1), "DELETE", "/admin/members/3?force=true", None).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["removed"].as_bool(), v["changed"].as_u64()),
        (Some(true), Some(4)),
        "{v}"
    );
    wait_until(Duration::from_secs(10), "voters 1 and 2", || {
        membership_is(&cluster, &[1, 2], &[1, 2], &[])
    });
    let mut last = Value::Null;
    for _ in 0..3 {
        seq += 1;
        last = append(&api(1), seq);
    }
    let status_of_3 = |cluster: &TestCluster| cluster.call(3, "GET", "/admin/status", None).unwrap().1;
    wait_until(Duration::from_secs(15), "node 3 knows it was removed", || {
        status_of_3(&cluster)["node"]["removed"] == true
    });
    let status = status_of_3(&cluster);
    assert_eq!(ids(&status["node"]["removed_groups"]), [0, 1, 2, 3], "{status}");
    let group = group_of(USER, GROUPS) as usize;
    assert_eq!(status["groups"][group]["removed"], true, "{status}");
    assert!(
        cluster.log(3).contains("removed from every group"),
        "{}",
        cluster.log(3)
    );
    let (_, out, err) = ctl(&cluster, 3, &["status"]);
    assert!(out.contains("REMOVED from every group"), "{out}{err}");
    let mailbox = format!("/v1/users/{USER}/mailboxes/INBOX");
    for path in [
        format!("{mailbox}?consistency=local"),
        mailbox.clone(),
        format!("{mailbox}/messages?first=1&last=100&consistency=local"),
    ] {
        let (s, v) = get(&api(3), &path).unwrap();
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (410, Some("removed")),
            "{path}: {v}"
        );
    }
    let (s, v) = post(
        &api(3),
        &format!("{mailbox}/messages"),
        &json!({"messages": [{"guid": format!("{:032x}", 999), "size": 1}]}),
    )
    .unwrap();
    assert_eq!((s, v["error"]["code"].as_str()), (410, Some("removed")), "{v}");
    // No campaigning: its terms stand still over several election timeouts.
    let terms = |s: &Value| -> Vec<u64> {
        s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["term"].as_u64().unwrap())
            .collect()
    };
    let before = terms(&status_of_3(&cluster));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        terms(&status_of_3(&cluster)),
        before,
        "node 3 campaigned after its removal"
    );

    // It still knows after a restart, from its first answer on.
    assert!(cluster.stop(3).success(), "{}", cluster.log(3));
    cluster.restart(3);
    wait_until(Duration::from_secs(20), "node 3 answers again", || {
        cluster.call(3, "GET", "/admin/status", None).is_ok()
    });
    assert_eq!(status_of_3(&cluster)["node"]["removed"], true);
    let (s, v) = get(&api(3), &format!("{mailbox}?consistency=local")).unwrap();
    assert_eq!((s, v["error"]["code"].as_str()), (410, Some("removed")), "{v}");

    // Added back, it serves again: first as a learner, then as a voter.
    let node3 = json!({"node_id": 3, "peer_addr": cluster.node(3).peer, "api_addr": api(3)});
    let v = admin_ok(&api(2), "POST", "/admin/members/learners", Some(&node3));
    assert_eq!(
        (v["role"].as_str(), v["changed"].as_u64()),
        (Some("learner"), Some(4)),
        "{v}"
    );
    wait_until(Duration::from_secs(15), "node 3 serves again", || {
        status_of_3(&cluster)["node"]["removed"] == false
            && status_of_3(&cluster)["node"]["removed_groups"] == json!([])
    });
    let token = last["token"].as_u64().unwrap();
    let (s, v) = get(
        &api(3),
        &format!("{mailbox}/messages?first=1&last=100&consistency=local&min_applied={token}"),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len() as u64, seq, "{v}");
    let v = admin_ok(
        &api(1),
        "POST",
        "/admin/members/voters",
        Some(&json!({"node_id": 3})),
    );
    assert_eq!(v["role"], "voter", "{v}");
    wait_until(Duration::from_secs(10), "three voters again", || {
        membership_is(&cluster, &[1, 2, 3], &[1, 2, 3], &[])
    });
    for n in [3, 2, 1] {
        seq += 1;
        append(&api(n), seq);
    }
    assert!(
        cluster.log(3).contains("a member of the group again"),
        "{}",
        cluster.log(3)
    );
    cluster.stop_all();
    eprintln!("t31_membership_guards: {:?}", started.elapsed());
}
