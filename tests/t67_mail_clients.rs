//! Real synchronizing mail clients against the cluster (issue "Speak mail", tests: mbsync and
//! offlineimap). Property: what a client syncs through one node is what every node serves, and
//! changes made through another node, or in the client's Maildir, reach the other side on the
//! next sync — no message lost, duplicated, altered or left with stale flags. Provocation, on a
//! 3-node cluster of real processes (`--imap-listen` with plaintext logins on each):
//! - `mbsync` (isync), two-way (`Sync All`, `Create Both`, `Expunge Both`, every mailbox) with
//!   node 1: a Maildir of 1,000 messages in INBOX (flags of every kind, 8-bit bodies, lines with
//!   leading dots) and 20 in a folder the server lacks; then, through node 2, flags set and
//!   cleared, messages expunged and appended, a mailbox created and filled; then, in the Maildir,
//!   flags changed by renaming files, files deleted and added; a sync after each, and one more
//!   that must change nothing.
//! - `offlineimap`, one way (the server read-only) from node 1 into an empty Maildir: 1,000
//!   messages appended through node 1, then flags changed, messages expunged and appended
//!   through node 2, a sync after each.
//!
//! Checks after every sync, against a model the test keeps (Message-ID -> flags and bytes, per
//! mailbox): the Maildir's folders and files equal it, and so does IMAP on every node (each
//! node read until it has applied what node 1 acknowledged; bytes compared as the clients store
//! them: CRLF as LF, without the `X-TUID` header mbsync adds to what it uploads). The client must exit 0. A missing client skips the test with a
//! notice, or fails it under `DOVETAIL_REQUIRE_MAIL_CLIENTS=1`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::mail::{self, crlf, maildir_form, sha256_hex, Mailboxes, Message};
use support::maildir;

const USER: &str = "dana";
const PASSWORD: &str = "sync me twice";
/// How long every node gets to apply what the client's node acknowledged.
const CONVERGE: Duration = Duration::from_secs(60);

/// Message `i` of the set `tag`: its Message-ID and bytes (LF line ends, as in a Maildir).
/// Sizes vary; every tenth is 8-bit UTF-8; some lines start with a dot or "From ".
fn message(tag: &str, i: usize) -> (String, Vec<u8>) {
    let id = format!("<{tag}-{i}@t67.example>");
    let mut text = format!(
        "From: Sender {i} <sender{i}@example.org>\nTo: {USER}@example.com\nSubject: {tag} message {i}\n\
         Date: Mon, 1 Jan 2024 00:{:02}:00 +0000\nMessage-ID: {id}\n",
        i % 60
    );
    if i.is_multiple_of(10) {
        text += "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße, été, ßø\n";
    } else {
        text += "\n";
    }
    for line in 0..(i % 23) * 3 + 1 {
        text += &format!("line {line} of {tag} message {i}\n");
    }
    if i.is_multiple_of(5) {
        text += ".a line with a leading dot\n.\n";
    }
    if i.is_multiple_of(7) {
        text += "From the start of a line\n";
    }
    (id, text.into_bytes())
}

/// The flags message `i` starts with: most seen, some flagged, answered or drafts.
fn initial_flags(i: usize) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (on, flag) in [
        (!i.is_multiple_of(3), "\\Seen"),
        (i.is_multiple_of(11), "\\Flagged"),
        (i.is_multiple_of(13), "\\Answered"),
        (i.is_multiple_of(97), "\\Draft"),
    ] {
        if on {
            flags.insert(flag.to_string());
        }
    }
    flags
}

fn flag_set(flags: &[&str]) -> BTreeSet<String> {
    flags.iter().map(|f| f.to_string()).collect()
}

/// The INBOX changes both tests make through node 2: flags set and cleared on every 20th, 37th
/// and 41st of the 1,000 messages, 40 expunged, 10 appended (every other one seen).
fn inbox_changes(changes: &mut Changes) {
    changes.store(
        "INBOX",
        &ids("inbox", (0..1000).step_by(20)),
        true,
        &["\\Flagged"],
    );
    changes.store("INBOX", &ids("inbox", (1..1000).step_by(37)), false, &["\\Seen"]);
    changes.store(
        "INBOX",
        &ids("inbox", (2..1000).step_by(41)),
        true,
        &["\\Answered", "\\Seen"],
    );
    changes.expunge("INBOX", &ids("inbox", 500..540));
    for k in 0..10usize {
        let flags = if k.is_multiple_of(2) {
            flag_set(&["\\Seen"])
        } else {
            flag_set(&[])
        };
        changes.append("INBOX", message("server", k), flags);
    }
}

/// Changes made through IMAP (`tests/imap/mailbox.py change`), kept in step with the model.
struct Changes<'a> {
    model: &'a mut Mailboxes,
    ops: Vec<Value>,
}

impl<'a> Changes<'a> {
    fn new(model: &'a mut Mailboxes) -> Self {
        Changes {
            model,
            ops: Vec::new(),
        }
    }

    fn create(&mut self, mailbox: &str) {
        self.model.insert(mailbox.to_string(), Default::default());
        self.ops.push(json!({"op": "create", "mailbox": mailbox}));
    }

    fn append(&mut self, mailbox: &str, (id, body): (String, Vec<u8>), flags: BTreeSet<String>) {
        let hex: String = crlf(&body).iter().map(|b| format!("{b:02x}")).collect();
        self.ops
            .push(json!({"op": "append", "mailbox": mailbox, "flags": flags, "body_hex": hex}));
        let message = Message {
            flags,
            sha256: sha256_hex(&maildir_form(&body)),
        };
        self.model.get_mut(mailbox).unwrap().insert(id, message);
    }

    /// `+FLAGS` (`add`) or `-FLAGS` of `flags` on the messages `ids`.
    fn store(&mut self, mailbox: &str, ids: &[String], add: bool, flags: &[&str]) {
        let mode = if add { "+FLAGS" } else { "-FLAGS" };
        self.ops
            .push(json!({"op": "store", "mailbox": mailbox, "ids": ids, "mode": mode, "flags": flags}));
        for id in ids {
            let message = self.model.get_mut(mailbox).unwrap().get_mut(id).unwrap();
            for flag in flags {
                if add {
                    message.flags.insert(flag.to_string());
                } else {
                    message.flags.remove(*flag);
                }
            }
        }
    }

    fn expunge(&mut self, mailbox: &str, ids: &[String]) {
        self.ops
            .push(json!({"op": "expunge", "mailbox": mailbox, "ids": ids}));
        for id in ids {
            self.model.get_mut(mailbox).unwrap().remove(id).unwrap();
        }
    }

    /// Sends the changes through IMAP at `addr`.
    fn apply(self, dir: &Path, addr: &str) {
        let spec = dir.join("changes.json");
        std::fs::write(&spec, json!({"ops": self.ops}).to_string()).unwrap();
        mail::mailbox_script(&["change", addr, USER, PASSWORD, spec.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn ids(tag: &str, indexes: impl IntoIterator<Item = usize>) -> Vec<String> {
    indexes.into_iter().map(|i| message(tag, i).0).collect()
}

/// Runs a client command to its end; panics with its output unless it exits 0. Returns how long
/// it took.
fn run_client(what: &str, command: &mut Command) -> Duration {
    let started = Instant::now();
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{text}",
        output.status
    );
    eprintln!("{what}: {took:.1?}");
    took
}

/// The Maildir under `root` (folders by name; `only`: just those) equals `model`, and so
/// does IMAP on every node once it has applied the writes.
fn check_agree(what: &str, root: &Path, imap: &[String], model: &Mailboxes, only: &[&str]) {
    let local: Mailboxes = maildir::folders(root)
        .into_iter()
        .map(|name| {
            let folder = maildir::read(&root.join(&name)).unwrap_or_else(|e| panic!("{what}: {e}"));
            (name, folder)
        })
        .collect();
    let diff = mail::differences(model, &local);
    assert!(
        diff.is_empty(),
        "{what}: the Maildir differs:\n  {}",
        diff.join("\n  ")
    );
    for (i, addr) in imap.iter().enumerate() {
        mail::wait_agree(
            CONVERGE,
            &format!("{what}: IMAP on node {}", i + 1),
            model,
            || mail::imap_mailboxes(addr, USER, PASSWORD, only, true),
        );
    }
}

#[test]
fn mbsync_two_way_sync_agrees_with_every_node() {
    if !mail::client_installed("t67 mbsync", "mbsync", "isync") {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let passwd = mail::passwd_file(dir.path(), &[(USER, PASSWORD)]);
    let (_cluster, addrs) = mail::start_mail_cluster(&passwd, &[]);
    let imap = &addrs.imap;
    // The first login creates the special-use mailboxes: the model starts from them, empty.
    let mut model = mail::imap_mailboxes(&imap[0], USER, PASSWORD, &[], true).unwrap();
    assert!(model.values().all(|m| m.is_empty()), "{model:?}");
    assert!(
        model.contains_key("INBOX") && model.contains_key("Trash"),
        "{model:?}"
    );

    // The Maildir: 1,000 messages in INBOX, 20 in Archive (which the server lacks).
    let root = dir.path().join("Mail");
    model.insert("Archive".to_string(), Default::default());
    for (mailbox, tag, count) in [("INBOX", "inbox", 1000), ("Archive", "archive", 20)] {
        for i in 0..count {
            let (id, body) = message(tag, i);
            let flags = initial_flags(i);
            maildir::write(
                &root.join(mailbox),
                &format!("1700000000.{tag}{i}.t67"),
                &flags,
                &body,
            );
            let message = Message {
                flags,
                sha256: sha256_hex(&maildir_form(&body)),
            };
            model.get_mut(mailbox).unwrap().insert(id, message);
        }
    }
    // Every mailbox the server has gets a folder, and every folder a mailbox.
    for name in model.keys() {
        maildir::create(&root.join(name));
    }
    let (host, port) = imap[0].rsplit_once(':').unwrap();
    let rc = dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPStore dovetail\nHost {host}\nPort {port}\nUser {USER}\nPass \"{PASSWORD}\"\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             MaildirStore local\nPath {root}/\nInbox {root}/INBOX\nSubFolders Verbatim\n\n\
             Channel mail\nFar :dovetail:\nNear :local:\nPatterns *\nSync All\nCreate Both\n\
             Expunge Both\nSyncState *\n",
            root = root.display()
        ),
    )
    .unwrap();
    let mbsync = || {
        let mut command = Command::new("mbsync");
        command.arg("-c").arg(&rc).arg("-a");
        command
    };

    let first = run_client("mbsync, first sync (1,020 messages up)", &mut mbsync());
    check_agree("after the first sync", &root, imap, &model, &[]);

    // Through node 2: flags set and cleared, messages expunged and appended, a mailbox created.
    let mut changes = Changes::new(&mut model);
    inbox_changes(&mut changes);
    changes.expunge("Archive", &ids("archive", [3, 4]));
    changes.store("Archive", &ids("archive", [5, 6, 7]), true, &["\\Flagged"]);
    changes.append(
        "Archive",
        message("server-archive", 0),
        flag_set(&["\\Seen", "\\Draft"]),
    );
    changes.create("Projects");
    for k in 0..2 {
        changes.append("Projects", message("projects", k), flag_set(&["\\Flagged"]));
    }
    changes.apply(dir.path(), &imap[1]);
    // mbsync talks to node 1: wait until it has applied node 2's writes.
    mail::wait_agree(CONVERGE, "node 1 applies node 2's changes", &model, || {
        mail::imap_mailboxes(&imap[0], USER, PASSWORD, &[], true)
    });
    let second = run_client("mbsync, second sync (server changes down)", &mut mbsync());
    check_agree("after the server's changes", &root, imap, &model, &[]);

    // In the Maildir: flags changed by renaming, files deleted and added.
    let inbox = root.join("INBOX");
    for i in [3, 4, 5, 6, 7] {
        let (id, _) = message("inbox", i);
        let message = model.get_mut("INBOX").unwrap().get_mut(&id).unwrap();
        message.flags.insert("\\Flagged".to_string());
        message.flags.remove("\\Seen");
        maildir::set_flags(&inbox, &id, &message.flags);
    }
    for i in 700..705 {
        let (id, _) = message("inbox", i);
        maildir::delete(&inbox, &id);
        model.get_mut("INBOX").unwrap().remove(&id);
    }
    for k in 0..3 {
        let (id, body) = message("local", k);
        let flags = if k == 0 {
            maildir::write(
                &inbox,
                &format!("1800000000.local{k}.t67"),
                &flag_set(&["\\Seen"]),
                &body,
            );
            flag_set(&["\\Seen"])
        } else {
            maildir::write_new(&inbox, &format!("1800000000.local{k}.t67"), &body);
            flag_set(&[])
        };
        let message = Message {
            flags,
            sha256: sha256_hex(&maildir_form(&body)),
        };
        model.get_mut("INBOX").unwrap().insert(id, message);
    }
    let (id, _) = message("projects", 0);
    maildir::delete(&root.join("Projects"), &id);
    model.get_mut("Projects").unwrap().remove(&id);
    let (id, body) = message("local-archive", 0);
    maildir::write_new(&root.join("Archive"), "1800000000.localarchive.t67", &body);
    let message = Message {
        flags: flag_set(&[]),
        sha256: sha256_hex(&maildir_form(&body)),
    };
    model.get_mut("Archive").unwrap().insert(id, message);
    let third = run_client("mbsync, third sync (Maildir changes up)", &mut mbsync());
    check_agree("after the Maildir's changes", &root, imap, &model, &[]);

    // Nothing left to do: one more sync changes nothing on either side.
    run_client("mbsync, fourth sync (nothing to do)", &mut mbsync());
    check_agree("after a sync with nothing to do", &root, imap, &model, &[]);
    eprintln!(
        "t67 mbsync: syncs took {first:.1?}, {second:.1?}, {third:.1?}; the test {:.1?}",
        started.elapsed()
    );
}

#[test]
fn offlineimap_one_way_sync_agrees_with_every_node() {
    if !mail::client_installed("t67 offlineimap", "offlineimap", "offlineimap3") {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let passwd = mail::passwd_file(dir.path(), &[(USER, PASSWORD)]);
    let (_cluster, addrs) = mail::start_mail_cluster(&passwd, &[]);
    let imap = &addrs.imap;
    let synced = ["INBOX", "Archive"];
    let mut model = Mailboxes::new();
    model.insert("INBOX".to_string(), Default::default());

    // Through node 1: 1,000 messages in INBOX, 20 in a new mailbox Archive.
    let mut changes = Changes::new(&mut model);
    for i in 0..1000 {
        changes.append("INBOX", message("inbox", i), initial_flags(i));
    }
    changes.create("Archive");
    for i in 0..20 {
        changes.append("Archive", message("archive", i), initial_flags(i));
    }
    changes.apply(dir.path(), &imap[0]);

    let root = dir.path().join("Mail");
    let (host, port) = imap[0].rsplit_once(':').unwrap();
    let rc = dir.path().join("offlineimaprc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = dovetail\nmetadata = {meta}\nui = basic\n\n\
             [Account dovetail]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {root}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = {host}\nremoteport = {port}\n\
             remoteuser = {USER}\nremotepass = {PASSWORD}\nssl = no\nstarttls = no\n\
             readonly = True\nfolderfilter = lambda name: name in {synced:?}\n",
            meta = dir.path().join("offlineimap-meta").display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let offlineimap = || {
        let mut command = Command::new("offlineimap");
        command.arg("-c").arg(&rc).args(["-o", "-u", "basic"]);
        command
    };

    let first = run_client(
        "offlineimap, first sync (1,020 messages down)",
        &mut offlineimap(),
    );
    check_agree("after the first sync", &root, imap, &model, &synced);

    // Through node 2: flags set and cleared, messages expunged and appended.
    let mut changes = Changes::new(&mut model);
    inbox_changes(&mut changes);
    changes.expunge("Archive", &ids("archive", [3, 4]));
    changes.append("Archive", message("server-archive", 0), flag_set(&["\\Flagged"]));
    changes.apply(dir.path(), &imap[1]);
    mail::wait_agree(CONVERGE, "node 1 applies node 2's changes", &model, || {
        mail::imap_mailboxes(&imap[0], USER, PASSWORD, &synced, true)
    });
    let second = run_client(
        "offlineimap, second sync (server changes down)",
        &mut offlineimap(),
    );
    check_agree("after the server's changes", &root, imap, &model, &synced);
    eprintln!(
        "t67 offlineimap: syncs took {first:.1?}, {second:.1?}; the test {:.1?}",
        started.elapsed()
    );
}
