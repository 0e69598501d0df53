//! Safe by default (issue 21): what a careless or hostile client or operator tried, row by row,
//! now gets the right answer. Property: client mistakes are 4xx at once with one status per kind
//! of mistake, never a wait and a 503; exactly-once looks at what a request asks; `/changes` is
//! paged without skipping or repeating a change while writes go on; names that look alike are one
//! name and invisible or path-like names are refused; names stored before that rule are reported
//! when a node opens their group; and sockets that never send a valid request cannot keep a
//! client with a token out. Provocation: a 3-node cluster (2 groups) gets each reproduction of
//! the issue's table (rows 4-8; rows 2, 3 and the first finding of row 8 are membership, tested
//! with the membership guards), then one node is stopped, a mailbox and a user of its manifest are
//! renamed the way a release before log encoding 2 could have stored them, and it is started
//! again. A 1-node cluster with `--max-connections 4 --max-pending-connections 4` has twice
//! `--max-connections` idle sockets held open against it (reopened as it closes them) while a
//! client with a token keeps asking (row 1), then gets half-sent and trickled request heads.
//! Checks: each reproduction's status and error code, that nothing a refused request named was
//! created, refusals answered before a wait could have ended, every answer to the token holder
//! within 1 s, the half-sent heads closed by the 10 s first-request deadline (not before it, and
//! before the 60 s keep-alive deadline), and the reopened node's warning and `/admin/status` entry
//! naming the old names.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dovetail::node::api_server::{FIRST_REQUEST_TIMEOUT, KEEP_ALIVE_TIMEOUT};
use dovetail::placement::group_of;
use dovetail::state_machine::Manifest;
use serde_json::{json, Value};
use support::{get, post, wait_until, TestCluster, CLIENT_TOKEN};

const GROUPS: u32 = 2;

/// The nodes' `--request-timeout-ms` in the table's test: how long a read would wait for a
/// `min_applied` it is not given up on. An answer sooner did not wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `name` as one percent-encoded path segment.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request with a body sent exactly as given (a JSON object may repeat a key, which a
/// `Value` cannot); the status and the JSON body.
fn raw_post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CLIENT_TOKEN}\r\n\
         Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn guid(n: u64) -> String {
    format!("{n:032x}")
}

#[test]
fn every_row_of_the_table_gets_the_right_answer() {
    let request_timeout_ms = REQUEST_TIMEOUT.as_millis().to_string();
    let mut cluster = TestCluster::start(
        3,
        GROUPS,
        &[
            "--rebalance-interval-ms",
            "0",
            "--request-timeout-ms",
            &request_timeout_ms,
        ],
    );
    let api = |n: u64| cluster.node(n).api.clone();
    let user = "rows@example.com";
    let m = format!("/v1/users/{user}/mailboxes");
    let (s, v) = post(&api(1), &m, &json!({"name": "INBOX"})).unwrap();
    assert_eq!(s, 201, "{v}");

    // Row 4: the same (client_id, request_seq) with another request is refused, and the second
    // request (a create) is not applied.
    let append = json!({"messages": [{"guid": guid(1), "size": 10}], "client_id": "eo", "request_seq": 5});
    let (s, first) = post(&api(1), &format!("{m}/INBOX/messages"), &append).unwrap();
    assert_eq!(s, 200, "{first}");
    let (s, retry) = post(&api(2), &format!("{m}/INBOX/messages"), &append).unwrap();
    assert_eq!(
        (s, &retry["first_uid"]),
        (200, &first["first_uid"]),
        "a true retry: {retry}"
    );
    let create = json!({"name": "Reused", "client_id": "eo", "request_seq": 5});
    let (s, v) = post(&api(3), &m, &create).unwrap();
    assert_eq!((s, code(&v)), (409, "request_reused"), "{v}");
    let (_, list) = get(&api(1), &m).unwrap();
    let names: Vec<&str> = list["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["INBOX"], "the refused create was applied");

    // Row 5: client mistakes are 4xx at once. A repair of a mailbox the group does not have is
    // 404, asked of the replica itself or of another node that passes it on.
    let group = group_of(user, GROUPS);
    let unknown = "00000000000000000000000000000bad";
    for (via, replica) in [(1, 1), (1, 2), (3, 2)] {
        let (s, v) = post(
            &api(via),
            &format!("/admin/groups/{group}/mailboxes/{unknown}/repair"),
            &json!({"replica": replica}),
        )
        .unwrap();
        assert_eq!(
            (s, code(&v)),
            (404, "no_such_mailbox"),
            "via {via} for {replica}: {v}"
        );
    }
    // ... and a token beyond anything the group committed is 400 at once, not a wait until the
    // request's deadline and a 503; a real token is still served, on every node.
    let token = first["token"].as_u64().unwrap();
    for n in 1..=3 {
        for query in ["", "consistency=local&"] {
            for beyond in [u64::MAX, token + 1_000_000] {
                let started = Instant::now();
                let (s, v) = get(&api(n), &format!("{m}/INBOX?{query}min_applied={beyond}")).unwrap();
                assert_eq!((s, code(&v)), (400, "invalid"), "node {n} {query}{beyond}: {v}");
                assert!(
                    started.elapsed() < REQUEST_TIMEOUT,
                    "node {n} {query}{beyond}: waited {:?} for a refusal",
                    started.elapsed()
                );
            }
            let (s, v) = get(&api(n), &format!("{m}/INBOX?{query}min_applied={token}")).unwrap();
            assert_eq!(s, 200, "node {n}: {v}");
            assert!(v["applied"].as_u64().unwrap() >= token, "{v}");
        }
    }

    // Row 6: /changes takes a limit and pages with a cursor; paging while stores, appends and
    // expunges go on neither skips nor repeats a change.
    let messages: Vec<Value> = (10..40).map(|i| json!({"guid": guid(i), "size": i})).collect();
    let (s, v) = post(
        &api(1),
        &format!("{m}/INBOX/messages"),
        &json!({"messages": messages}),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = get(&api(2), &format!("{m}/INBOX/changes?since=0&limit=1")).unwrap();
    assert_eq!(
        (s, v["changed"].as_array().map(Vec::len), &v["more"]),
        (200, Some(1), &json!(true)),
        "{v}"
    );
    let mut copy: BTreeMap<u64, Value> = BTreeMap::new();
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut query = "since=0".to_string();
    let mut writes = 0u64;
    loop {
        let (s, page) = get(
            &api(1 + writes % 3),
            &format!("{m}/INBOX/changes?{query}&limit=7"),
        )
        .unwrap();
        assert_eq!(s, 200, "{page}");
        for record in page["changed"].as_array().unwrap() {
            let (uid, modseq) = (
                record["uid"].as_u64().unwrap(),
                record["modseq"].as_u64().unwrap(),
            );
            assert!(seen.insert((uid, modseq)), "UID {uid} at MODSEQ {modseq} twice");
            copy.insert(uid, record.clone());
        }
        let vanished = page["vanished"].as_str().unwrap();
        for part in vanished.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once(':').unwrap_or((part, part));
            for uid in a.parse::<u64>().unwrap()..=b.parse().unwrap() {
                copy.remove(&uid);
            }
        }
        let next = &page["next"];
        query = match next["after_uid"].as_u64() {
            Some(after) => format!("since={}&after_uid={after}", next["since"]),
            None => format!("since={}", next["since"]),
        };
        if page["more"] == json!(false) && writes >= 6 {
            break;
        }
        // A write between two pages: a store behind the cursor, an append, an expunge.
        writes += 1;
        let uid = 1 + (writes * 7) % 30;
        let (path, body) = match writes % 3 {
            0 => (
                "store",
                json!({"uids": uid.to_string(), "mode": "add", "flags": ["\\Flagged"]}),
            ),
            1 => (
                "messages",
                json!({"messages": [{"guid": guid(100 + writes), "size": 1}]}),
            ),
            _ => ("expunge", json!({"uids": (uid + 1).to_string()})),
        };
        let (s, v) = post(&api(3), &format!("{m}/INBOX/{path}"), &body).unwrap();
        assert_eq!(s, 200, "{path}: {v}");
        assert!(writes < 200, "paging never caught up");
    }
    let (_, all) = get(&api(1), &format!("{m}/INBOX/messages?limit=10000")).unwrap();
    let current: BTreeMap<u64, Value> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["uid"].as_u64().unwrap(), r.clone()))
        .collect();
    assert_eq!(copy, current, "paging skipped a change");

    // Row 7: NFC and NFD `café` are one mailbox; U+202E is refused in mailbox and user names;
    // path-like and wildcard user names are refused.
    let (s, v) = post(&api(1), &m, &json!({"name": "caf\u{e9}"})).unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(&api(2), &m, &json!({"name": "cafe\u{301}"})).unwrap();
    assert_eq!((s, code(&v)), (409, "mailbox_exists"), "{v}");
    let (s, v) = get(&api(3), &format!("{m}/{}", segment("cafe\u{301}"))).unwrap();
    assert_eq!(s, 200, "the NFD spelling names the NFC mailbox: {v}");
    let (s, v) = post(&api(1), &m, &json!({"name": "a\u{202e}b"})).unwrap();
    assert_eq!((s, code(&v)), (400, "invalid"), "{v}");
    for bad_user in ["b\u{202e}ob", ".", "..", "a/b", "*"] {
        let (s, v) = post(
            &api(1),
            &format!("/v1/users/{}/mailboxes", segment(bad_user)),
            &json!({"name": "INBOX"}),
        )
        .unwrap();
        assert_eq!((s, code(&v)), (400, "invalid"), "user {bad_user:?}: {v}");
    }
    let (_, list) = get(&api(1), &m).unwrap();
    let names: Vec<&str> = list["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["INBOX", "caf\u{e9}"], "{list}");

    // Row 8: wrong JSON types are 400 on client routes; UID sets follow RFC 3501; expected_guids
    // names a UID once; a long bad name is quoted, not echoed; the append limit is what README
    // says.
    for (path, body) in [
        (m.clone(), json!({"name": 5})),
        (
            format!("{m}/INBOX/store"),
            json!({"uids": 1, "mode": "add", "flags": []}),
        ),
        (
            format!("{m}/INBOX/messages"),
            json!({"messages": [{"guid": guid(2), "size": "1"}]}),
        ),
        (
            format!("{m}/INBOX/expunge"),
            json!({"uids": "1", "expected_guids": []}),
        ),
    ] {
        let (s, v) = post(&api(1), &path, &body).unwrap();
        assert_eq!((s, code(&v)), (400, "invalid"), "{path} {body}: {v}");
    }
    for uids in ["+1", " 1", "01", "1:+2", "1 "] {
        let body = json!({"uids": uids, "mode": "add", "flags": ["\\Seen"]});
        let (s, v) = post(&api(1), &format!("{m}/INBOX/store"), &body).unwrap();
        assert_eq!((s, code(&v)), (400, "invalid"), "{uids:?}: {v}");
    }
    let (_, before) = get(&api(1), &format!("{m}/INBOX")).unwrap();
    let duplicate = format!(
        r#"{{"uids":"1","expected_guids":{{"1":"{}","1":"{}"}}}}"#,
        guid(2),
        guid(1)
    );
    let (s, v) = raw_post(&api(1), &format!("{m}/INBOX/expunge"), &duplicate);
    assert_eq!((s, code(&v)), (400, "invalid"), "{v}");
    let (_, after) = get(&api(1), &format!("{m}/INBOX")).unwrap();
    assert_eq!(after["exists"], before["exists"], "a refused expunge expunged");
    let long = "x".repeat(10_000);
    let (s, v) = post(&api(1), &m, &json!({"name": long})).unwrap();
    assert_eq!((s, code(&v)), (400, "invalid"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.len() < 300 && !message.contains(&"x".repeat(65)),
        "{message}"
    );
    let batch = |n: u64, from: u64| -> Value {
        let messages: Vec<Value> = (0..n)
            .map(|i| json!({"guid": guid(from + i), "size": 1}))
            .collect();
        json!({"messages": messages})
    };
    let (s, v) = post(&api(2), &format!("{m}/INBOX/messages"), &batch(2_000, 10_000)).unwrap();
    assert_eq!(s, 200, "2,000 messages fit one append: {}", v["error"]);
    let (s, v) = post(&api(2), &format!("{m}/INBOX/messages"), &batch(5_000, 20_000)).unwrap();
    assert_eq!((s, code(&v)), (413, "too_large"), "{}", v["error"]);

    // Names at open: a node started on a group that holds names from before log encoding 2 (one
    // not in NFC, one user name with U+202E) says so once in its log and in /admin/status; the
    // names stay.
    let (s, v) = post(&api(1), &m, &json!({"name": "Legacy"})).unwrap();
    assert_eq!(s, 201, "{v}");
    let applied = cluster.wait_applied_equal(group, 1, Duration::from_secs(30));
    assert!(applied > 0);
    let status = cluster.stop(3);
    assert!(status.success(), "node 3 exit {status}");
    let manifest_path = cluster.group_dir(3, group).join("live").join("manifest");
    let mut manifest = Manifest::decode(&manifest_path, &std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut mailboxes = manifest.users.remove(user).unwrap();
    let legacy = mailboxes.remove("Legacy").unwrap();
    mailboxes.insert("Lega\u{301}cy".into(), legacy);
    manifest
        .users
        .insert("rows\u{202e}@example.com".into(), mailboxes);
    std::fs::write(&manifest_path, manifest.encode()).unwrap();
    cluster.restart(3);
    wait_until(Duration::from_secs(60), "node 3 serves again", || {
        cluster
            .group_status(3, group)
            .is_some_and(|g| !g["leader"].is_null())
    });
    let listed = cluster.group_status(3, group).unwrap()["legacy_names"].clone();
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().any(|n| n.starts_with("mailbox \"Lega\\u{301}cy\"")),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|n| n.starts_with("user \"rows\\u{202e}@example.com\"")),
        "{listed:?}"
    );
    for n in 1..=2 {
        let entry = cluster.group_status(n, group).unwrap();
        assert!(entry.get("legacy_names").is_none(), "node {n}: {entry}");
    }
    let log = plain(&cluster.log(3));
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("names stored before log encoding 2"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for the one group: {warnings:?}");
    eprintln!("node 3 at start: {}", warnings[0]);
    assert!(
        warnings[0].contains(&format!("group={group}")) && warnings[0].contains("Lega\\u{301}cy"),
        "{}",
        warnings[0]
    );
}

/// `text` without ANSI escape sequences (the node's log colours field names).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An idle socket: connected, nothing sent.
fn idle_socket(addr: &str) -> TcpStream {
    let socket = TcpStream::connect(addr).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket
}

/// Whether the server has closed `socket` (EOF or reset), without waiting.
fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Row 1: sockets that never send a valid request cannot keep a client with a token out, and
/// half-sent heads are closed by the first-request deadline.
#[test]
fn slow_clients_cannot_lock_out_a_client_with_a_token() {
    const MAX_CONNECTIONS: usize = 4;
    let cluster = TestCluster::start(
        1,
        1,
        &["--max-connections", "4", "--max-pending-connections", "4"],
    );
    let api = cluster.node(1).api.clone();
    let (s, v) = post(&api, "/v1/users/slow/mailboxes", &json!({"name": "INBOX"})).unwrap();
    assert_eq!(s, 201, "{v}");
    let read = "/v1/users/slow/mailboxes/INBOX?consistency=local";

    // Twice --max-connections idle sockets, held open for 15 s (past the 10 s first-request
    // deadline): every one the node closes is opened again at once.
    let mut idle: Vec<TcpStream> = (0..2 * MAX_CONNECTIONS).map(|_| idle_socket(&api)).collect();
    let mut reopened = 0;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        for socket in &mut idle {
            if closed_by_server(socket) {
                *socket = idle_socket(&api);
                reopened += 1;
            }
        }
        let asked = Instant::now();
        let (s, v) = get(&api, read).unwrap();
        latencies.push(asked.elapsed());
        assert_eq!(s, 200, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    latencies.sort();
    let slowest = *latencies.last().unwrap();
    eprintln!(
        "{} answers with {} idle sockets held ({reopened} reopened after the node closed them): median {:?}, slowest {slowest:?}",
        latencies.len(),
        2 * MAX_CONNECTIONS,
        latencies[latencies.len() / 2],
    );
    assert!(slowest < Duration::from_secs(1), "an answer took {slowest:?}");
    assert!(
        reopened >= 2 * MAX_CONNECTIONS,
        "the node kept idle sockets open: {reopened} closed"
    );
    drop(idle);

    // Half-sent heads, one sent at once and one trickled a byte every 500 ms (it would take a
    // minute to complete), are closed by the first-request deadline: not before it (counted from
    // before the connects, so from before the node accepted them), and before the keep-alive
    // deadline, the next that could close them.
    let opened = Instant::now();
    let mut half = TcpStream::connect(&api).unwrap();
    half.write_all(b"GET /v1/users/slow/mailboxes HTTP/1.1\r\nHost: x\r\nAuthoriz")
        .unwrap();
    half.set_nonblocking(true).unwrap();
    let mut trickled = TcpStream::connect(&api).unwrap();
    let head = format!("GET {read} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_TOKEN}\r\n\r\n");
    let give_up = KEEP_ALIVE_TIMEOUT - Duration::from_secs(15);
    assert!(
        (head.len() - 4) as u32 * Duration::from_millis(500) > give_up,
        "the trickle ends first"
    );
    let mut sent = 0;
    let (mut half_closed, mut trickle_closed) = (None, None);
    while opened.elapsed() < give_up && (half_closed.is_none() || trickle_closed.is_none()) {
        if trickle_closed.is_none() && sent < head.len() - 4 {
            if trickled.write_all(&head.as_bytes()[sent..sent + 1]).is_err() {
                trickle_closed = Some(opened.elapsed());
            }
            sent += 1;
        }
        if half_closed.is_none() && closed_by_server(&mut half) {
            half_closed = Some(opened.elapsed());
        }
        trickled.set_nonblocking(true).unwrap();
        if trickle_closed.is_none() && closed_by_server(&mut trickled) {
            trickle_closed = Some(opened.elapsed());
        }
        trickled.set_nonblocking(false).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("half-sent head closed after {half_closed:?}, trickled head after {trickle_closed:?} ({sent} bytes sent)");
    for (what, closed) in [("half-sent", half_closed), ("trickled", trickle_closed)] {
        let closed = closed.unwrap_or_else(|| panic!("the {what} head is still open after {give_up:?}"));
        assert!(
            closed >= FIRST_REQUEST_TIMEOUT,
            "the {what} head was closed before its deadline: {closed:?}"
        );
    }
    // The node still serves.
    let (s, v) = get(&api, read).unwrap();
    assert_eq!(s, 200, "{v}");
}
