//! Differential test of the IMAP server against Dovecot 2.3 (issue 18): the same scripted
//! sessions against both answer the same, once what each server picks for itself is normalized
//! (UIDVALIDITY, MODSEQ values, dates set at APPEND, greeting and human text, capability lists,
//! orders the RFCs leave open), except for the differences listed, each with the RFC text that
//! decides it, in `tests/imap/differential.py`'s allowlist and README's IMAP part. Provocation:
//! a 3-node cluster of real processes (`--imap-listen` on each, plaintext logins) and a
//! throwaway Dovecot on loopback (`scripts/dovecot_ref.py`, started by the script), each user of
//! the scenarios in both; raw command lines, literals and malformed input sent by
//! `tests/imap/diff_wire.py` (no client library between the test and the servers). Checks: the
//! normalizer on hand-made transcripts (`--self-test`: quoted and literal strings, human text and
//! orders read alike, other flags or codes do not); every scenario's normalized transcript from
//! node 1 equals Dovecot's after the allowlist; the read-only scenarios (EXAMINE, FETCH of the
//! MIME fixtures, SEARCH, STATUS) read the same on nodes 2 and 3 once they have applied the
//! setup; every allowlist entry is needed by some scenario (a stale entry fails the test). Without root or Dovecot it skips, saying why,
//! unless `DOVETAIL_REQUIRE_DOVECOT=1` (scripts/test.sh sets it as root): then it fails.

mod support;

use std::path::Path;

use dovetail::users::Cost;
use support::imap;

/// The password of every scenario user (an IMAP atom: the scripts send it unquoted).
const PASSWORD: &str = "differential-secret";
/// differential.py's exit code when Dovecot cannot be started here.
const SKIP: i32 = 77;

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/differential.py")
}

/// Why Dovecot cannot run here, if it cannot.
fn dovecot_missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the reference Dovecot needs root (it switches to the dovecot user)".into());
    }
    [
        "/usr/sbin/dovecot",
        "/usr/lib/dovecot/imap",
        "/usr/lib/dovecot/lmtp",
    ]
    .iter()
    .find(|p| !Path::new(p).exists())
    .map(|p| format!("{p} is missing (Debian packages dovecot-imapd, dovecot-lmtpd)"))
}

fn skip_or_fail(reason: &str) {
    if std::env::var("DOVETAIL_REQUIRE_DOVECOT").as_deref() == Ok("1") {
        panic!("DOVETAIL_REQUIRE_DOVECOT=1 but {reason}");
    }
    println!("skipped: {reason}");
}

#[test]
fn imap_answers_as_dovecot_does_but_for_the_listed_differences() {
    // The normalizer and the allowlist first, on hand-made transcripts (no server needed).
    let self_test = std::process::Command::new("python3")
        .args([script(), "--self-test"])
        .output()
        .expect("python3 runs");
    assert!(
        self_test.status.success(),
        "differential.py --self-test: {self_test:?}"
    );
    if let Some(reason) = dovecot_missing() {
        return skip_or_fail(&reason);
    }
    let dir = tempfile::tempdir().unwrap();
    let users = std::process::Command::new("python3")
        .args([script(), "users"])
        .output()
        .expect("python3 runs");
    assert!(users.status.success(), "differential.py users: {users:?}");
    // One cheap hash for all (the tests check the protocol, not the KDF).
    let hash = dovetail::users::command::hash_field(PASSWORD.as_bytes(), Cost::Sha512Crypt { rounds: 1_000 })
        .unwrap();
    let passwd: String = String::from_utf8(users.stdout)
        .unwrap()
        .lines()
        .map(|user| format!("{user}:{hash}\n"))
        .collect();
    let passwd_path = dir.path().join("users");
    std::fs::write(&passwd_path, passwd).unwrap();
    // COPY, MOVE and SUBSCRIBE are log encoding 4.
    let (cluster, imap_addrs) = imap::start_plaintext_cluster(passwd_path.to_str().unwrap(), 4);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let started = std::time::Instant::now();
    let output = std::process::Command::new("python3")
        .arg(script())
        .arg("compare")
        .arg(&work)
        .arg(PASSWORD)
        .args(&imap_addrs)
        .output()
        .expect("python3 runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!("differential.py compare took {:?}", started.elapsed());
    if output.status.code() == Some(SKIP) {
        return skip_or_fail("differential.py could not start Dovecot (its output above says why)");
    }
    if !output.status.success() {
        for node in cluster.running() {
            let log = cluster.log(node);
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("imap")).collect();
            eprintln!("--- node {node} log, IMAP lines\n{}", lines.join("\n"));
        }
        let dovecot_log = std::fs::read_to_string(work.join("dovecot/dovecot.log")).unwrap_or_default();
        eprintln!("--- Dovecot's log\n{dovecot_log}");
    }
    assert!(
        output.status.success(),
        "Dovetail's answers differ from Dovecot's beyond the allowlist (diffs above): {}",
        output.status
    );
}
