//! Real LMTP clients against the cluster (issue "Speak mail", tests: swaks and smtplib.LMTP).
//! Property: an LMTP 250 is a promise — the message is readable, byte-identical, through IMAP on
//! every node, once per 250 — and an MTA gets one reply per accepted recipient, an unknown one
//! refused at RCPT while the others are delivered. Provocation, on a 3-node cluster of real
//! processes, each with `--lmtp-listen` and `--imap-listen` (plaintext logins), users from a
//! passwd file:
//! - `swaks --pipeline` through node 2 and `smtplib.LMTP` (`tests/imap/lmtp_client.py once`)
//!   through node 3, each one transaction to two users and an unknown one between them; the
//!   message has lines that need dot-stuffing and 8-bit bytes.
//! - `smtplib.LMTP` in three loops at once (`lmtp_client.py loop`) through a node that stays up,
//!   each delivering message after message to two users of one group, trying a recipient again
//!   after any 4xx or failed connection as an MTA does; the node leading that group is killed
//!   with SIGKILL mid-stream, deliveries go on, then the node restarts and catches up.
//!
//! Checks: swaks' and smtplib's replies (250, 550 5.1.1 at RCPT, 250, then one 250 per accepted
//! recipient naming it, in order); through IMAP on every node (the killed one after its restart
//! too) every message that got a 250 is there, its bytes exactly what the client sent, and every
//! message there is one a client sent with those bytes; a message is there twice only for a
//! recipient that was answered 4xx after DATA, or whose connection failed, before its 250 (the
//! first try may have been delivered after its deadline: an MTA's retry then delivers again,
//! which LMTP allows; a 250 on the first try must be there exactly once).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dovetail::placement::group_of;
use serde_json::{json, Value};
use support::mail::{self, sha256_hex, Mailboxes, Message};
use support::wait_until;

const PASSWORD: &str = "deliver me";
const GROUPS: u32 = 2;
/// Delivery loops (MTAs) at once in the leader-kill test.
const LOOPS: usize = 3;
/// How long every node gets to apply, or catch up on, what was delivered.
const CONVERGE: Duration = Duration::from_secs(60);

fn lmtp_client() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/lmtp_client.py")
}

/// A message of CRLF lines with a Message-ID, lines that need dot-stuffing and 8-bit bytes,
/// without its last CRLF (swaks ends the data with CRLF "." CRLF itself).
fn message(id: &str) -> Vec<u8> {
    format!(
        "From: mta@example.org\r\nTo: undisclosed-recipients:;\r\nSubject: one message, three recipients\r\n\
         Message-ID: {id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         .a leading dot\r\n.\r\n..\r\nété\r\nthe end"
    )
    .into_bytes()
}

/// The server's replies in a swaks transcript (`<-` and `<**` lines; a multi-line reply as its
/// last line): code and text.
fn swaks_replies(transcript: &str) -> Vec<(u16, String)> {
    transcript
        .lines()
        .filter_map(|l| l.strip_prefix("<-  ").or_else(|| l.strip_prefix("<** ")))
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .map(|l| (l[..3].parse().unwrap(), l[3..].trim().to_string()))
        .collect()
}

fn codes(replies: &Value) -> Vec<u64> {
    replies
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect()
}

#[test]
fn swaks_and_smtplib_get_one_reply_per_accepted_recipient() {
    if !mail::client_installed("t68 swaks", "swaks", "swaks") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwd = mail::passwd_file(dir.path(), &[("alice", PASSWORD), ("bob", PASSWORD)]);
    let (_cluster, addrs) = mail::start_mail_cluster(&passwd, &[]);
    let mut expected: Mailboxes = BTreeMap::new();

    // swaks through node 2, pipelined: alice, an unknown user, bob.
    let swaks_id = "<swaks-1@t68.example>";
    let swaks_file = dir.path().join("swaks.eml");
    std::fs::write(&swaks_file, message(swaks_id)).unwrap();
    let output = Command::new("swaks")
        .args(["--protocol", "LMTP", "--server", &addrs.lmtp[1], "--pipeline"])
        .args(["--from", "mta@example.org"])
        .args(["--to", "alice@example.com,nobody@example.com,bob@example.com"])
        .arg("--data")
        .arg(format!("@{}", swaks_file.display()))
        .output()
        .expect("swaks runs");
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "swaks: {}\n{transcript}", output.status);
    let replies = swaks_replies(&transcript);
    let reply_codes: Vec<u16> = replies.iter().map(|(c, _)| *c).collect();
    // Greeting, LHLO, MAIL, three RCPTs, DATA's 354, one reply per accepted recipient, QUIT.
    assert_eq!(
        reply_codes,
        [220, 250, 250, 250, 550, 250, 354, 250, 250, 221],
        "{transcript}"
    );
    assert!(
        replies[4].1.starts_with("5.1.1") && replies[4].1.contains("nobody"),
        "{transcript}"
    );
    assert!(replies[7].1.contains("<alice@example.com>"), "{transcript}");
    assert!(replies[8].1.contains("<bob@example.com>"), "{transcript}");
    // swaks sends the data with CRLF "." CRLF after it: the stored message ends with that CRLF.
    let mut swaks_bytes = message(swaks_id);
    swaks_bytes.extend_from_slice(b"\r\n");

    // smtplib.LMTP through node 3: bob, an unknown user, alice.
    let smtplib_id = "<smtplib-1@t68.example>";
    let mut smtplib_bytes = message(smtplib_id);
    smtplib_bytes.extend_from_slice(b"\r\n");
    let smtplib_file = dir.path().join("smtplib.eml");
    std::fs::write(&smtplib_file, &smtplib_bytes).unwrap();
    let output = Command::new("python3")
        .args([lmtp_client(), "once", &addrs.lmtp[2]])
        .arg(&smtplib_file)
        .args(["bob@example.com", "nobody@example.com", "alice@example.com"])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "lmtp_client.py once: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    for feature in ["8bitmime", "enhancedstatuscodes", "pipelining", "size"] {
        assert!(
            out["esmtp"].as_array().unwrap().contains(&json!(feature)),
            "{out}"
        );
    }
    assert_eq!(out["mail"][0], 250, "{out}");
    assert_eq!(codes(&out["rcpt"]), [250, 550, 250], "{out}");
    assert!(out["rcpt"][1][1].as_str().unwrap().starts_with("5.1.1"), "{out}");
    assert_eq!(codes(&out["data"]), [250, 250], "{out}");
    assert!(
        out["data"][0][1].as_str().unwrap().contains("<bob@example.com>"),
        "{out}"
    );
    assert!(
        out["data"][1][1]
            .as_str()
            .unwrap()
            .contains("<alice@example.com>"),
        "{out}"
    );

    // Both users hold both messages, byte for byte, through every node.
    for (id, bytes) in [(swaks_id, &swaks_bytes), (smtplib_id, &smtplib_bytes)] {
        let message = Message {
            flags: BTreeSet::new(),
            sha256: sha256_hex(bytes),
        };
        expected
            .entry("INBOX".to_string())
            .or_default()
            .insert(id.to_string(), message);
    }
    for user in ["alice", "bob"] {
        for (i, addr) in addrs.imap.iter().enumerate() {
            mail::wait_agree(
                CONVERGE,
                &format!("{user}'s INBOX on node {}", i + 1),
                &expected,
                || mail::imap_mailboxes(addr, user, PASSWORD, &["INBOX"], false),
            );
        }
    }
}

/// What the delivery loop's log says: the bytes sent per message, the recipients that got a
/// 250 after DATA, and those that may have been delivered more than once.
#[derive(Default, Debug)]
struct Deliveries {
    /// Message-ID -> SHA-256 of the bytes sent.
    sent: BTreeMap<String, String>,
    /// (Message-ID, user) answered 250 after DATA.
    acked: BTreeSet<(String, String)>,
    /// (Message-ID, user) answered 4xx after DATA, or pending when a try failed, at least once.
    uncertain: BTreeSet<(String, String)>,
    /// When each 250 after DATA came (seconds since the epoch).
    acked_at: Vec<f64>,
    /// Replies 4xx, failed tries, messages given up.
    deferred: usize,
    failed_tries: usize,
    gave_up: usize,
}

impl Deliveries {
    /// What the loops' logs say together.
    fn read(logs: &[PathBuf]) -> Deliveries {
        let mut out = Deliveries::default();
        for log in logs {
            out.read_log(log);
        }
        out
    }

    /// Adds what one loop's log says.
    fn read_log(&mut self, log: &Path) {
        let mut ids: BTreeMap<u64, String> = BTreeMap::new();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // The last line may be half written: only whole lines count.
        for line in text.lines().filter(|l| l.ends_with('}')) {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let user = |r: &Value| r.as_str().unwrap().split('@').next().unwrap().to_string();
            if let Some(n) = entry["sent"].as_u64() {
                let id = entry["message_id"].as_str().unwrap().to_string();
                self.sent
                    .insert(id.clone(), entry["sha256"].as_str().unwrap().to_string());
                ids.insert(n, id);
            } else if entry.get("gave_up").is_some() {
                self.gave_up += 1;
            } else if entry.get("error").is_some() {
                self.failed_tries += 1;
                let id = &ids[&entry["i"].as_u64().unwrap()];
                for r in entry["rcpts"].as_array().unwrap() {
                    self.uncertain.insert((id.clone(), user(r)));
                }
            } else {
                let id = ids[&entry["i"].as_u64().unwrap()].clone();
                let code = entry["code"].as_u64().unwrap();
                if (400..500).contains(&code) {
                    self.deferred += 1;
                }
                if entry["stage"] == "data" {
                    if code == 250 {
                        self.acked.insert((id, user(&entry["rcpt"])));
                        self.acked_at.push(entry["t"].as_f64().unwrap_or_default());
                    } else {
                        self.uncertain.insert((id, user(&entry["rcpt"])));
                    }
                }
            }
        }
    }

    /// The longest time without a 250, in seconds: how long deliveries stalled.
    fn longest_stall(&self) -> f64 {
        let mut times = self.acked_at.clone();
        times.sort_by(f64::total_cmp);
        times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    }

    /// Messages every one of `users` got a 250 for.
    fn complete(&self, users: &[String]) -> usize {
        self.sent
            .keys()
            .filter(|id| {
                users
                    .iter()
                    .all(|u| self.acked.contains(&((*id).clone(), u.clone())))
            })
            .count()
    }

    /// Checks `user`'s INBOX as one node serves it: (Message-ID, SHA-256) per message.
    fn check(&self, user: &str, found: &[(String, String)]) -> Result<(), String> {
        let mut count: BTreeMap<&String, usize> = BTreeMap::new();
        for (id, sha) in found {
            match self.sent.get(id) {
                None => return Err(format!("{id}: never sent")),
                Some(sent) if sent != sha => return Err(format!("{id}: other bytes than sent")),
                _ => *count.entry(id).or_default() += 1,
            }
        }
        for (id, who) in &self.acked {
            if who == user && !count.contains_key(id) {
                return Err(format!("{id}: answered 250 for {user}, not there"));
            }
        }
        for (id, n) in count {
            let key = (id.clone(), user.to_string());
            if n > 1 && !self.uncertain.contains(&key) {
                return Err(format!("{id}: there {n} times though {user}'s first try got 250"));
            }
        }
        Ok(())
    }
}

/// `user`'s INBOX through IMAP at `addr`: (Message-ID, SHA-256 of the bytes) per message.
fn inbox(addr: &str, user: &str) -> Result<Vec<(String, String)>, String> {
    let dump = mail::mailbox_script(&["dump", addr, user, PASSWORD, "INBOX"])?;
    let messages = dump["mailboxes"]["INBOX"].as_array().ok_or("no INBOX")?;
    Ok(messages
        .iter()
        .map(|m| {
            let id = m["message_id"].as_str().unwrap_or("(none)").to_string();
            (id, m["sha256"].as_str().unwrap_or_default().to_string())
        })
        .collect())
}

/// A child process killed when dropped: a failing test leaves no delivery loop behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_lmtp_250_survives_a_leader_kill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Two users of alice's group: every delivery needs that group's leader.
    let group = group_of("alice", GROUPS);
    let partner = (0..)
        .map(|k| format!("user{k}"))
        .find(|u| group_of(u, GROUPS) == group)
        .unwrap();
    let users = vec!["alice".to_string(), partner.clone()];
    let passwd = mail::passwd_file(dir.path(), &[("alice", PASSWORD), (&partner, PASSWORD)]);
    // No rebalancing: the leader found is the leader killed.
    let (mut cluster, addrs) = mail::start_mail_cluster(&passwd, &["--rebalance-interval-ms", "0"]);
    eprintln!("{:.1?}: the cluster is up", started.elapsed());
    let leader = cluster.leader_of(group, 1).expect("a leader");
    let client = (1..=3).find(|&n| n != leader).unwrap();

    // Several MTAs at once, so that deliveries are in flight when the leader dies.
    let stop = dir.path().join("stop");
    let rcpts: Vec<String> = users.iter().map(|u| format!("{u}@example.com")).collect();
    let logs: Vec<PathBuf> = (0..LOOPS)
        .map(|k| dir.path().join(format!("mta{k}.jsonl")))
        .collect();
    let mut loops: Vec<KillOnDrop> = logs
        .iter()
        .enumerate()
        .map(|(k, log)| {
            let child = Command::new("python3")
                .args([lmtp_client(), "loop", &addrs.lmtp[(client - 1) as usize]])
                .arg(format!("mta{k}"))
                .arg(log)
                .arg(&stop)
                .args(&rcpts)
                .spawn()
                .expect("python3 runs");
            KillOnDrop(child)
        })
        .collect();
    let complete = || Deliveries::read(&logs).complete(&users);
    wait_until(
        Duration::from_secs(60),
        "10 messages delivered before the kill",
        || complete() >= 10,
    );
    eprintln!("{:.1?}: 10 messages delivered", started.elapsed());

    // Kill whichever node leads the group now, unless it is the client's: then move the
    // leadership away from the client's node first (an election may have moved it there).
    let mut victim = leader;
    wait_until(
        Duration::from_secs(30),
        "the group led by a node other than the client's",
        || match cluster.leader_of(group, client) {
            Some(l) if l != client => {
                victim = l;
                true
            }
            Some(_) => {
                let to = (1..=3).find(|&n| n != client).unwrap();
                let path = format!("/admin/groups/{group}/transfer-leader");
                let _ = cluster.call(client, "POST", &path, Some(&json!({ "to": to })));
                false
            }
            None => false,
        },
    );
    let before = complete();
    eprintln!(
        "{:.1?}: killing node {victim}, the leader of group {group}, after {before} messages",
        started.elapsed()
    );
    cluster.kill(victim);
    wait_until(
        Duration::from_secs(120),
        "10 more messages delivered after the kill",
        || complete() >= before + 10,
    );
    std::fs::write(&stop, b"").unwrap();
    for (k, mta) in loops.iter_mut().enumerate() {
        let mut status = None;
        wait_until(
            Duration::from_secs(180),
            &format!("delivery loop {k} stopped"),
            || {
                status = mta.0.try_wait().unwrap();
                status.is_some()
            },
        );
        assert!(status.unwrap().success(), "delivery loop {k} failed: {status:?}");
    }
    let deliveries = Deliveries::read(&logs);
    eprintln!(
        "{} messages sent, {} recipient 250s, {} 4xx replies, {} failed tries, {} given up, {} \
         recipients answered 4xx or cut off before their 250; longest time without a 250: {:.1} s",
        deliveries.sent.len(),
        deliveries.acked.len(),
        deliveries.deferred,
        deliveries.failed_tries,
        deliveries.gave_up,
        deliveries.uncertain.len(),
        deliveries.longest_stall()
    );
    assert!(deliveries.complete(&users) >= before + 10, "{deliveries:?}");

    // The killed node comes back; every node, it too, serves every 250.
    eprintln!(
        "{:.1?}: the loops stopped; restarting node {victim}",
        started.elapsed()
    );
    cluster.restart(victim);
    for user in &users {
        for (i, addr) in addrs.imap.iter().enumerate() {
            let what = format!("{user}'s INBOX on node {} holds every 250", i + 1);
            let deadline = Instant::now() + CONVERGE;
            while let Err(e) = inbox(addr, user).and_then(|found| deliveries.check(user, &found)) {
                assert!(Instant::now() < deadline, "after {CONVERGE:?}, {what}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    eprintln!("t68 leader kill: {:.1?}", started.elapsed());
}
