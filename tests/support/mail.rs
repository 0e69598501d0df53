//! What the real-client tests share (t67 mbsync and offlineimap, t68 swaks and smtplib): whether
//! a client is installed (skip or fail), a passwd file of several users, a 3-node cluster with
//! IMAP (plaintext logins) and LMTP on every node, a mailbox model keyed by Message-ID, and a
//! user's mailboxes as IMAP shows them on one node (`tests/imap/mailbox.py`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use dovetail::node::dev::Start;
use dovetail::users::Cost;
use serde_json::Value;
use sha2::Digest;

use super::{free_node_addr, imap, TestCluster};

/// Whether the command `command` (Debian package `package`) is on PATH. When it is not, the
/// test skips with a printed reason, unless `DOVETAIL_REQUIRE_MAIL_CLIENTS=1` (which
/// `scripts/test.sh` exports as root, where it installs the clients): then it fails.
pub fn client_installed(test: &str, command: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()));
    if !found {
        let why = format!(
            "`{command}` is not on PATH (Debian: apt-get install {package}; scripts/test.sh does this as root)"
        );
        assert!(
            std::env::var("DOVETAIL_REQUIRE_MAIL_CLIENTS").as_deref() != Ok("1"),
            "DOVETAIL_REQUIRE_MAIL_CLIENTS=1 but {why}"
        );
        eprintln!("{test}: SKIPPING: {why}");
    }
    found
}

/// Writes `dir/users` with each `(user, password)` (a cheap hash: the tests check the
/// protocols, not the KDF) and returns its path.
pub fn passwd_file(dir: &Path, users: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for (user, password) in users {
        let hash =
            dovetail::users::command::hash_field(password.as_bytes(), Cost::Sha512Crypt { rounds: 1_000 })
                .unwrap();
        text += &format!("{user}:{hash}\n");
    }
    let passwd = dir.join("users");
    std::fs::write(&passwd, text).unwrap();
    passwd.to_str().unwrap().to_string()
}

/// A cluster's mail listeners, node 1's first.
pub struct MailAddrs {
    pub imap: Vec<String>,
    pub lmtp: Vec<String>,
}

/// A 3-node cluster (2 groups, `extra` flags after the usual ones) of `passwd`'s users, each
/// node serving IMAP with plaintext logins and LMTP, every group at log encoding 4 or later.
pub fn start_mail_cluster(passwd: &str, extra: &[&str]) -> (TestCluster, MailAddrs) {
    let mut flags = vec!["--passwd-file", passwd, "--request-timeout-ms", "3000"];
    flags.extend_from_slice(extra);
    let mut cluster = TestCluster::prepare(3, 2, &flags, super::secrets());
    let addrs = MailAddrs {
        imap: (1..=3).map(free_node_addr).collect(),
        lmtp: (1..=3).map(free_node_addr).collect(),
    };
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        node.own_flags = [
            "--imap-listen",
            &addrs.imap[i],
            "--imap-allow-plaintext",
            "--lmtp-listen",
            &addrs.lmtp[i],
        ]
        .map(String::from)
        .to_vec();
    }
    cluster.start_all(Start::Fresh);
    imap::wait_for_encoding(&cluster.nodes[0].api, 4);
    (cluster, addrs)
}

/// One message as a client sees it: its flags (IMAP names, without `\Recent`) and the SHA-256
/// of its bytes (hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub flags: BTreeSet<String>,
    pub sha256: String,
}

/// A mailbox by Message-ID; mailboxes by name.
pub type Mailbox = BTreeMap<String, Message>;
pub type Mailboxes = BTreeMap<String, Mailbox>;

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `bytes` as a Maildir client keeps them: every CRLF turned into LF, and without `X-TUID`
/// header lines (mbsync adds one to every message it uploads, to find it again). The same as
/// `maildir_form` in `tests/imap/mailbox.py`.
pub fn maildir_form(bytes: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            text.push(b);
        }
    }
    let head_len = text.windows(2).position(|w| w == b"\n\n").unwrap_or(text.len());
    let (head, rest) = text.split_at(head_len);
    let mut out: Vec<u8> = head
        .split(|&b| b == b'\n')
        .filter(|line| !line.to_ascii_lowercase().starts_with(b"x-tuid:"))
        .collect::<Vec<_>>()
        .join(&b'\n');
    out.extend_from_slice(rest);
    out
}

/// `bytes` with every bare LF turned into CRLF: how IMAP carries a message.
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Runs `tests/imap/mailbox.py` with `args`; its JSON output, or the failure as text.
pub fn mailbox_script(args: &[&str]) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/mailbox.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "mailbox.py {} failed ({}): {}",
            args.first().unwrap_or(&""),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("mailbox.py output: {e}"))
}

/// Every message of every selectable mailbox of `user` (or of `only`) through IMAP at `addr`,
/// hashing the bytes as stored (`maildir` false) or their [`maildir_form`] (true); an error
/// names a message without a Message-ID, or a Message-ID twice in one mailbox.
pub fn imap_mailboxes(
    addr: &str,
    user: &str,
    password: &str,
    only: &[&str],
    maildir: bool,
) -> Result<Mailboxes, String> {
    let mut args = vec!["dump", addr, user, password];
    args.extend_from_slice(only);
    let dump = mailbox_script(&args)?;
    let hash = if maildir { "sha256_maildir" } else { "sha256" };
    let mut out = Mailboxes::new();
    for (name, messages) in dump["mailboxes"].as_object().ok_or("no mailboxes")? {
        let mut mailbox = Mailbox::new();
        for m in messages.as_array().ok_or("not a list")? {
            let id = m["message_id"]
                .as_str()
                .ok_or_else(|| format!("{name}: UID {} has no Message-ID", m["uid"]))?;
            let message = Message {
                flags: m["flags"]
                    .as_array()
                    .ok_or("no flags")?
                    .iter()
                    .map(|f| f.as_str().unwrap_or_default().to_string())
                    .collect(),
                sha256: m[hash].as_str().ok_or("no hash")?.to_string(),
            };
            if mailbox.insert(id.to_string(), message).is_some() {
                return Err(format!("{name}: Message-ID {id} twice (UID {})", m["uid"]));
            }
        }
        out.insert(name.clone(), mailbox);
    }
    Ok(out)
}

/// What differs between `expected` and `found`, one line each (at most 20, then a count);
/// empty when they agree.
pub fn differences(expected: &Mailboxes, found: &Mailboxes) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = expected.keys().chain(found.keys()).collect();
    for name in names {
        let (Some(e), Some(f)) = (expected.get(name), found.get(name)) else {
            let side = if expected.contains_key(name) {
                "missing"
            } else {
                "unexpected"
            };
            out.push(format!("mailbox {name}: {side}"));
            continue;
        };
        let ids: BTreeSet<&String> = e.keys().chain(f.keys()).collect();
        for id in ids {
            match (e.get(id), f.get(id)) {
                (Some(_), None) => out.push(format!("{name} {id}: missing")),
                (None, Some(_)) => out.push(format!("{name} {id}: unexpected")),
                (Some(a), Some(b)) if a.flags != b.flags => out.push(format!(
                    "{name} {id}: flags {:?}, expected {:?}",
                    b.flags, a.flags
                )),
                (Some(a), Some(b)) if a.sha256 != b.sha256 => out.push(format!("{name} {id}: other bytes")),
                _ => {}
            }
        }
    }
    if out.len() > 20 {
        let more = out.len() - 20;
        out.truncate(20);
        out.push(format!("... and {more} more"));
    }
    out
}

/// Polls `read` until what it reads equals `expected`, or panics after `limit` naming `what`
/// and the last differences (or error). A node applies others' writes a little after they are
/// acknowledged, so reads through it converge rather than agree at once.
pub fn wait_agree(
    limit: Duration,
    what: &str,
    expected: &Mailboxes,
    mut read: impl FnMut() -> Result<Mailboxes, String>,
) {
    let deadline = Instant::now() + limit;
    loop {
        let last = match read() {
            Ok(found) => {
                let diff = differences(expected, &found);
                if diff.is_empty() {
                    return;
                }
                diff.join("\n  ")
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, {what} still differs from the expected state:\n  {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
