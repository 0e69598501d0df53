//! Backup and restore (`dovetail ctl backup`, `dovetail restore`): a backup taken while writes go
//! on holds, per group, exactly the state a linearizable read would have seen at the group's cut,
//! and a fresh cluster restored from it serves that state and goes on from it.
//!
//! Provoked: a 3-node cluster with 4 groups and 8 users (two per group), each user written by a
//! writer of its own through all three nodes in turn: mailboxes created, one created and then
//! renamed, appends, stores and expunges. `ctl backup` runs while the writers go on. The backup is
//! restored (`dovetail restore`, once per node) into a fresh 3-node cluster: new data directories,
//! new ports, new secrets.
//!
//! How the expected state at a cut is derived, exactly: each writer is serial and the only one to
//! write its user, and after each acknowledged write (log index `t`) it reads the user's whole
//! state (every mailbox's status, records and vanished UIDs) with `consistency=local&min_applied=t`
//! before it sends its next write. The user's state is then that snapshot at every log position
//! from `t` up to the next write's index, so the state at a group's cut `C` is the snapshot of the
//! last write with `t <= C` (or no mailboxes, before the first). No quiet period is needed and
//! nothing is modelled.
//!
//! Checked: every write acknowledged before the backup began is at or below its group's cut (and
//! its read index); every user's state in the restored cluster (linearizable reads) equals the
//! derived state at its group's cut: statuses (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts,
//! keywords), records and vanished UIDs; the restored groups elect leaders above the cut's term;
//! new writes there continue with UIDs from the backup's UIDNEXT, MODSEQs above its HIGHESTMODSEQ
//! and log indexes above the cut; `POST /admin/verify` is clean; the old cluster's tokens are
//! refused. And: a backup with one flipped byte, or one truncated file, is refused by `restore`
//! with a named error, and nothing is written.
//!
//! Message bodies: users of their own (one per group, apart from the writers, whose states are
//! derived exactly) get messages delivered with bodies (`message/rfc822`, log encoding 3), one
//! body to all of them, before the backup and while it is taken. The backup holds each body once
//! (`bodies/<id>`, named by its SHA-256); every message delivered before the backup began, and
//! every other one the restored cluster lists, reads back byte for byte through the restored
//! cluster, through its nodes in turn.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail::node::dev::{Secrets, Start};
use dovetail::placement::group_of;
use serde_json::{json, Value};
use sha2::Digest;
use support::{get, post, raw_request, request_as, wait_until, TestCluster, ADMIN_TOKEN};

const GROUPS: u32 = 4;
const USERS_PER_GROUP: usize = 2;

/// One acknowledged write: its group's log index, when its answer came, and the user's state
/// right after it.
struct Acked {
    token: u64,
    at: Instant,
    state: Value,
}

/// Users, two per group, found by hashing candidate names.
fn users() -> Vec<String> {
    let mut per_group: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let user = format!("user{i}@backup.test");
        let list = per_group.entry(group_of(&user, GROUPS)).or_default();
        if list.len() < USERS_PER_GROUP {
            list.push(user);
        }
        if per_group.len() == GROUPS as usize && per_group.values().all(|l| l.len() == USERS_PER_GROUP) {
            break;
        }
    }
    per_group.into_values().flatten().collect()
}

fn encode(name: &str) -> String {
    name.replace('/', "%2F")
}

/// A user's whole state as `query` reads it through `api`: per mailbox its summary, status,
/// records and vanished UIDs (`applied` and `group` left out: they say where it was read).
fn user_state(api: &str, token: &str, user: &str, query: &str) -> Value {
    let read = |path: String| {
        let (status, mut value) = request_as(api, "GET", &path, None, Some(token)).unwrap();
        assert_eq!(status, 200, "GET {path}: {value}");
        if let Value::Object(map) = &mut value {
            map.remove("applied");
            map.remove("group");
        }
        value
    };
    let list = read(format!("/v1/users/{user}/mailboxes?{query}"));
    let mut mailboxes = serde_json::Map::new();
    for summary in list["mailboxes"].as_array().unwrap() {
        let name = summary["name"].as_str().unwrap().to_string();
        let base = format!("/v1/users/{user}/mailboxes/{}", encode(&name));
        let changes = read(format!("{base}/changes?{query}&since=0"));
        mailboxes.insert(
            name,
            json!({
                "summary": summary,
                "status": read(format!("{base}?{query}")),
                "messages": read(format!("{base}/messages?{query}&limit=10000"))["messages"],
                "vanished": changes["vanished"],
            }),
        );
    }
    Value::Object(mailboxes)
}

/// A serial writer of one user through every node in turn until `stop`: each write is followed by
/// a read of the user's whole state at that write's index.
fn write_user(apis: Vec<String>, user: String, seed: usize, stop: Arc<AtomicBool>) -> Vec<Acked> {
    let mut acked: Vec<Acked> = Vec::new();
    let mut state = json!({});
    let mut seq = 0u64;
    let mut write = |step: usize, path: String, body: Value, acked: &mut Vec<Acked>| -> Value {
        seq += 1;
        let api = &apis[(seed + step) % apis.len()];
        let mut body = body;
        body["client_id"] = json!(format!("writer-{user}"));
        body["request_seq"] = json!(seq);
        let (status, answer) = post(api, &path, &body).unwrap();
        assert!(
            (200..300).contains(&status),
            "{user}: POST {path} {body} via {api}: {status} {answer}"
        );
        let token = answer["token"].as_u64().expect("a token");
        let at = Instant::now();
        let state = user_state(
            api,
            support::CLIENT_TOKEN,
            &user,
            &format!("consistency=local&min_applied={token}"),
        );
        acked.push(Acked {
            token,
            at,
            state: state.clone(),
        });
        state
    };
    let mailboxes = format!("/v1/users/{user}/mailboxes");
    for (step, name) in ["INBOX", "Drafts"].into_iter().enumerate() {
        state = write(step, mailboxes.clone(), json!({"name": name}), &mut acked);
    }
    let mut step = 2;
    while !stop.load(Ordering::SeqCst) {
        step += 1;
        let inbox = &state["INBOX"]["messages"];
        let uids: Vec<u64> = inbox
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["uid"].as_u64().unwrap())
            .collect();
        let (path, body) = match step % 7 {
            3 if !state.as_object().unwrap().contains_key("Work")
                && !state.as_object().unwrap().contains_key("Archive/2024") =>
            {
                (mailboxes.clone(), json!({"name": "Work"}))
            }
            4 if state.as_object().unwrap().contains_key("Work") => (
                format!("{mailboxes}/Work/rename"),
                json!({"to": format!("Archive/{}", 2024)}),
            ),
            5 if uids.len() > 2 => (
                format!("{mailboxes}/INBOX/store"),
                json!({"uids": format!("{}", uids[step % uids.len()]), "mode": "add",
                       "flags": if step % 2 == 0 { json!(["\\Flagged"]) } else { json!([format!("$Label{}", step % 4)]) }}),
            ),
            6 if uids.len() > 4 => (
                format!("{mailboxes}/INBOX/expunge"),
                json!({"uids": format!("{}", uids[0])}),
            ),
            _ => {
                let target = if step % 5 == 0 && state.as_object().unwrap().contains_key("Archive/2024") {
                    "Archive%2F2024"
                } else {
                    "INBOX"
                };
                let messages: Vec<Value> = (0..1 + step % 2)
                    .map(|i| {
                        json!({"guid": format!("{:032x}", (seed as u128) << 64 | (step * 2 + i) as u128),
                               "size": 100 + step, "internal_date": 1_700_000_000 + step as i64,
                               "flags": if step % 3 == 0 { json!(["\\Seen"]) } else { json!([]) }})
                    })
                    .collect();
                (
                    format!("{mailboxes}/{target}/messages"),
                    json!({"messages": messages}),
                )
            }
        };
        state = write(step, path, body, &mut acked);
    }
    acked
}

/// One user per group for the deliveries with bodies, found by hashing candidate names.
fn body_users() -> Vec<String> {
    let mut per_group: BTreeMap<u32, String> = BTreeMap::new();
    for i in 0.. {
        let user = format!("bodies{i}@backup.test");
        per_group.entry(group_of(&user, GROUPS)).or_insert(user);
        if per_group.len() == GROUPS as usize {
            break;
        }
    }
    per_group.into_values().collect()
}

/// A message's bytes: a header naming it, then a body of its own length.
fn message(tag: &str, len: usize) -> Vec<u8> {
    let mut bytes = format!("Subject: {tag}\r\n\r\n").into_bytes();
    let mut i = 0usize;
    while bytes.len() < len {
        bytes.push(b'a' + ((i * 7 + tag.len()) % 26) as u8);
        i += 1;
        if i.is_multiple_of(70) {
            bytes.extend_from_slice(b"\r\n");
        }
    }
    bytes
}

/// The body id the index names for `bytes`: 128 bits of their SHA-256, in hex.
fn body_id(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One delivered message: to whom, its UID, its bytes, and when its answer came.
struct Delivered {
    user: String,
    uid: u64,
    bytes: Vec<u8>,
    at: Instant,
}

/// Delivers `bytes` to `user`'s INBOX through `api` (the old cluster's client token).
fn deliver(api: &str, user: &str, bytes: Vec<u8>) -> Delivered {
    let answer = raw_request(
        api,
        "POST",
        &format!("/v1/users/{user}/mailboxes/INBOX/messages"),
        &[("Content-Type", "message/rfc822")],
        &bytes,
    )
    .unwrap();
    assert!(
        (200..300).contains(&answer.status),
        "deliver to {user}: {} {}",
        answer.status,
        answer.json()
    );
    Delivered {
        user: user.to_string(),
        uid: answer.json()["first_uid"].as_u64().expect("a first_uid"),
        bytes,
        at: Instant::now(),
    }
}

/// `GET path` with `token`; the answer's status and raw body (plain HTTP, `Connection: close`).
fn raw_get_as(api: &str, path: &str, token: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, response[split + 4..].to_vec())
}

/// Runs `dovetail` with `args`; returns the exit code, stdout and stderr.
fn dovetail(args: &[&str], admin_token: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .args(args)
        .env("DOVETAIL_ADMIN_TOKEN", admin_token)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir`, for "nothing was written".
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            found.extend(tree(&path));
            found.push(path);
        }
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("groups")).unwrap();
    std::fs::create_dir_all(to.join("bodies")).unwrap();
    for file in tree(from).into_iter().filter(|p| p.is_file()) {
        std::fs::copy(&file, to.join(file.strip_prefix(from).unwrap())).unwrap();
    }
}

#[test]
fn a_backup_taken_during_writes_restores_into_a_fresh_cluster_at_its_cuts() {
    let old = TestCluster::start(3, GROUPS, &["--rebalance-interval-ms", "0"]);
    let apis: Vec<String> = (1..=3).map(|id| old.node(id).api.clone()).collect();
    // Deliveries with bodies need log encoding 3: wait until every group's gate is there.
    wait_until(Duration::from_secs(30), "every group at log encoding 3", || {
        get(&apis[0], "/admin/status").is_ok_and(|(_, v)| {
            v["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().all(|g| g["encoding"].as_u64() >= Some(3)))
        })
    });
    let body_users = body_users();
    let mut delivered: Vec<Delivered> = Vec::new();
    let shared = message("to everyone", 3000);
    for (i, user) in body_users.iter().enumerate() {
        let (status, answer) = post(
            &apis[i % 3],
            &format!("/v1/users/{user}/mailboxes"),
            &json!({"name": "INBOX"}),
        )
        .unwrap();
        assert_eq!(status, 201, "{user}: {answer}");
        delivered.push(deliver(&apis[i % 3], user, shared.clone()));
        delivered.push(deliver(
            &apis[(i + 1) % 3],
            user,
            message(&format!("for {user}"), 500 + 700 * i),
        ));
    }
    let users = users();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(seed, user)| {
            let (apis, user, stop) = (apis.clone(), user.clone(), stop.clone());
            std::thread::spawn(move || write_user(apis, user, seed, stop))
        })
        .collect();
    // Deliveries go on while the backup is taken.
    let deliverer = {
        let (apis, body_users, stop) = (apis.clone(), body_users.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut delivered = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let user = &body_users[n % body_users.len()];
                delivered.push(deliver(
                    &apis[n % 3],
                    user,
                    message(&format!("during {n}"), 200 + 37 * n),
                ));
                std::thread::sleep(Duration::from_millis(50));
            }
            delivered
        })
    };
    std::thread::sleep(Duration::from_millis(1500));

    let work = tempfile::tempdir().unwrap();
    let backup_dir = work.path().join("backup");
    let began = Instant::now();
    let (code, out, err) = dovetail(
        &[
            "ctl",
            "backup",
            "--out",
            backup_dir.to_str().unwrap(),
            "--node",
            &format!("http://{}", apis[1]),
        ],
        ADMIN_TOKEN,
    );
    let backup_took = began.elapsed();
    let ended = Instant::now();
    assert_eq!(code, 0, "ctl backup: {out}{err}");
    println!("{out}{err}ctl backup took {backup_took:.2?}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let histories: Vec<Vec<Acked>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    delivered.extend(deliverer.join().unwrap());

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("backup.json")).unwrap()).unwrap();
    let cut = |group: u32| {
        let entry = &manifest["groups"][group as usize];
        (
            entry["cut"]["index"].as_u64().unwrap(),
            entry["cut"]["term"].as_u64().unwrap(),
            entry["read_index"].as_u64().unwrap(),
        )
    };
    assert_eq!(manifest["group_count"], GROUPS);
    assert_eq!(manifest["cluster"]["served_by"], 2);
    assert_eq!(manifest["groups"][0]["membership"]["voters"], json!([1, 2, 3]));
    // Every body delivered before the backup began is in it, once, named by its SHA-256; every
    // body file is one delivered.
    let body_files: BTreeMap<String, u64> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let name = f["path"].as_str()?.strip_prefix("bodies/")?;
            Some((name.to_string(), f["bytes"].as_u64()?))
        })
        .collect();
    let delivered_ids: BTreeMap<String, usize> = delivered
        .iter()
        .map(|d| (body_id(&d.bytes), d.bytes.len()))
        .collect();
    for d in delivered.iter().filter(|d| d.at < began) {
        assert_eq!(
            body_files.get(&body_id(&d.bytes)),
            Some(&(d.bytes.len() as u64)),
            "{}: uid {}",
            d.user,
            d.uid
        );
    }
    for (id, bytes) in &body_files {
        assert_eq!(
            delivered_ids.get(id).map(|&n| n as u64),
            Some(*bytes),
            "bodies/{id}: not delivered"
        );
        let on_disk = std::fs::read(backup_dir.join("bodies").join(id)).unwrap();
        assert_eq!(&body_id(&on_disk), id);
    }
    assert_eq!(
        manifest["bodies"],
        json!({"count": body_files.len(), "bytes": body_files.values().sum::<u64>()})
    );
    println!(
        "{} messages delivered with bodies ({} before the backup); the backup holds {} bodies",
        delivered.len(),
        delivered.iter().filter(|d| d.at < began).count(),
        body_files.len()
    );

    // The backup was taken during writes, and it has writes on both sides of its cuts.
    let acked = |f: &dyn Fn(&Acked, u32) -> bool| -> usize {
        users
            .iter()
            .zip(&histories)
            .map(|(user, history)| history.iter().filter(|a| f(a, group_of(user, GROUPS))).count())
            .sum()
    };
    let during = acked(&|a, _| a.at > began && a.at < ended);
    let after_cut = acked(&|a, g| a.token > cut(g).0);
    let before_backup = acked(&|a, _| a.at < began);
    println!("writes acknowledged: {before_backup} before the backup, {during} during it, {after_cut} after their group's cut");
    assert!(during > 0 && after_cut > 0 && before_backup > 0);
    // Every write acknowledged before the backup began is within its group's read index and cut.
    for (user, history) in users.iter().zip(&histories) {
        let (cut_index, _, read_index) = cut(group_of(user, GROUPS));
        for a in history.iter().filter(|a| a.at < began) {
            assert!(a.token <= read_index && read_index <= cut_index, "{user}: write at {} acknowledged before the backup, read index {read_index}, cut {cut_index}", a.token);
        }
    }

    // A damaged backup is refused by name, and nothing is written.
    for (what, damage, named) in [
        ("a flipped byte", "flip", "SHA-256 mismatch"),
        ("a truncated file", "truncate", "truncated"),
    ] {
        let damaged = work.path().join(format!("damaged-{damage}"));
        copy_dir(&backup_dir, &damaged);
        let file = damaged.join("groups/g0002.snap");
        let mut bytes = std::fs::read(&file).unwrap();
        if damage == "flip" {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
        } else {
            bytes.truncate(bytes.len() - 100);
        }
        std::fs::write(&file, bytes).unwrap();
        let target = work.path().join(format!("target-{damage}"));
        std::fs::create_dir_all(&target).unwrap();
        let data_dir = target.join("node1");
        let (code, out, err) = dovetail(
            &[
                "restore",
                "--from",
                damaged.to_str().unwrap(),
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--node-id",
                "1",
                "--peer",
                "1=127.0.0.1:1/127.0.0.1:2",
            ],
            "",
        );
        assert_ne!(code, 0, "{what}: restore succeeded: {out}{err}");
        assert!(err.contains(named) && err.contains("g0002.snap"), "{what}: {err}");
        assert!(tree(&target).is_empty(), "{what}: wrote {:?}", tree(&target));
    }

    // Restore into a fresh cluster: new directories, new ports, new secrets.
    let secrets = Secrets::random().unwrap();
    let mut new = TestCluster::prepare(3, GROUPS, &["--rebalance-interval-ms", "0"], secrets.clone());
    let peer_flags: Vec<String> = new
        .layout
        .nodes
        .iter()
        .map(|n| format!("{}={}/{}", n.id, n.peer, n.api))
        .collect();
    let restore_began = Instant::now();
    for id in 1..=3u64 {
        let data_dir = new.layout.node_dir(id);
        let mut args = vec![
            "restore".to_string(),
            "--from".into(),
            backup_dir.to_str().unwrap().into(),
            "--data-dir".into(),
            data_dir.to_str().unwrap().into(),
            "--node-id".into(),
            id.to_string(),
        ];
        for peer in &peer_flags {
            args.extend(["--peer".to_string(), peer.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = dovetail(&args, "");
        assert_eq!(code, 0, "restore node {id}: {out}{err}");
        if id == 1 {
            println!("{out}");
        }
    }
    let restore_took = restore_began.elapsed();
    new.start_all(Start::Restart);
    println!("3 restores took {restore_took:.2?}; the restored cluster elected every leader {:.2?} after the first restore began", restore_began.elapsed());

    // Every group elected a leader above the cut's term, with the new members.
    for group in 0..GROUPS {
        support::wait_until(
            Duration::from_secs(10),
            &format!("node 1 applies group {group}'s first new entry"),
            || {
                new.group_status(1, group)
                    .is_some_and(|status| status["applied"].as_u64() > Some(cut(group).0))
            },
        );
        let status = new.group_status(1, group).unwrap();
        assert!(
            status["term"].as_u64().unwrap() > cut(group).1,
            "group {group}: {status}"
        );
        assert_eq!(status["voters"], json!([1, 2, 3]));
    }
    // Every user's state equals the derived state at its group's cut.
    for (i, (user, history)) in users.iter().zip(&histories).enumerate() {
        let (cut_index, _, _) = cut(group_of(user, GROUPS));
        let expected = history
            .iter()
            .rev()
            .find(|a| a.token <= cut_index)
            .map_or(json!({}), |a| a.state.clone());
        let api = new.node(1 + i as u64 % 3).api.clone();
        let restored = user_state(&api, &secrets.client_token, user, "consistency=linearizable");
        assert_eq!(
            restored, expected,
            "{user}: restored state differs from the state at cut {cut_index}"
        );
        assert!(
            expected.as_object().unwrap().contains_key("INBOX"),
            "{user}: nothing written before the cut"
        );
    }
    // Every delivered message the restored cluster lists reads back byte for byte, through each
    // node in turn; those delivered before the backup began are all there.
    let mut read_back = 0;
    for (i, d) in delivered.iter().enumerate() {
        let node = new.node(1 + i as u64 % 3).api.clone();
        let base = format!("/v1/users/{}/mailboxes/INBOX/messages", d.user);
        let (status, listing) = request_as(
            &node,
            "GET",
            &format!("{base}?consistency=linearizable&limit=10000"),
            None,
            Some(&secrets.client_token),
        )
        .unwrap();
        assert_eq!(status, 200, "{listing}");
        let listed = listing["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["uid"].as_u64() == Some(d.uid));
        if !listed {
            assert!(
                d.at > began,
                "{}: uid {} delivered before the backup is not restored",
                d.user,
                d.uid
            );
            continue;
        }
        let (status, body) = raw_get_as(&node, &format!("{base}/{}/body", d.uid), &secrets.client_token);
        assert_eq!(
            status,
            200,
            "{}: uid {}: {}",
            d.user,
            d.uid,
            String::from_utf8_lossy(&body)
        );
        assert!(
            body == d.bytes,
            "{}: uid {}: the restored body differs from the delivered one",
            d.user,
            d.uid
        );
        read_back += 1;
    }
    assert!(read_back >= 2 * body_users.len(), "{read_back} bodies read back");

    // New writes go on above the backup's UIDs, MODSEQs and log positions.
    for (i, (user, history)) in users.iter().zip(&histories).enumerate() {
        let (cut_index, _, _) = cut(group_of(user, GROUPS));
        let at_cut = &history.iter().rev().find(|a| a.token <= cut_index).unwrap().state["INBOX"]["status"];
        let (status, answer) = request_as(
            &new.node(1 + (i as u64 + 1) % 3).api,
            "POST",
            &format!("/v1/users/{user}/mailboxes/INBOX/messages"),
            Some(&json!({"messages": [{"guid": format!("{:032x}", 0xfeed_0000 + i), "size": 1}]})),
            Some(&secrets.client_token),
        )
        .unwrap();
        assert_eq!(status, 200, "{user}: {answer}");
        assert_eq!(
            answer["first_uid"], at_cut["uid_next"],
            "{user}: {answer} after {at_cut}"
        );
        assert_eq!(answer["uid_validity"], at_cut["uid_validity"], "{user}");
        assert!(
            answer["modseq"].as_u64() > at_cut["highest_modseq"].as_u64(),
            "{user}: {answer} after {at_cut}"
        );
        assert!(answer["token"].as_u64().unwrap() > cut_index, "{user}: {answer}");
    }
    let (status, verify) = new.call(2, "POST", "/admin/verify", Some(&json!({}))).unwrap();
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["clean"], true, "{verify}");
    assert!(
        verify["mailboxes_checked"].as_u64().unwrap() >= 3 * users.len() as u64,
        "{verify}"
    );
    // A new identity: the old cluster's tokens are refused, and the old cluster goes on alone.
    let (status, _) = get(&new.node(1).api, "/admin/status").unwrap();
    assert_eq!(status, 401, "the old admin token was accepted by the new cluster");
    let (status, _) = get(&apis[0], &format!("/v1/users/{}/mailboxes", users[0])).unwrap();
    assert_eq!(status, 200);
}
