//! IMAP QRESYNC (RFC 7162 §3.2; `src/imap/qresync.rs`, the VANISHED of `src/imap/refresh.rs`).
//! Property: a client that enabled QRESYNC learns of every expunge as `* VANISHED` — at the
//! points RFC 3501 §7.4.1 allows, never during FETCH — with its sequence numbers following, and
//! a client that comes back to any node with its cache's (UIDVALIDITY, HIGHESTMODSEQ, UIDs) gets
//! exactly the UIDs expunged since (`* VANISHED (EARLIER)`) and the FETCH lines of what changed,
//! from the expunge tombstones every replica's index keeps. Provocation, on a 3-node cluster of
//! real processes with `--passwd-file` and `--imap-listen` on each, driven by a raw-socket client
//! in Python (`tests/imap/qresync.py`; imaplib knows no VANISHED): ENABLE QRESYNC; sessions on
//! nodes 1 and 2 while node 1 runs UID EXPUNGE, EXPUNGE, APPEND and STORE; node 2's session
//! records its cache and logs out, node 1 expunges, flags and appends, and the client reconnects
//! to node 3 with SELECT (QRESYNC ...) (with and without known UIDs, another UIDVALIDITY, MODSEQ
//! 1); UID FETCH (CHANGEDSINCE m VANISHED) over several sets; UID MOVE; the refused forms.
//! Checks (in the script, exact line by line): `* ENABLED QRESYNC`; the UID sets of every VANISHED
//! and VANISHED (EARLIER); no `* n EXPUNGE` anywhere; no VANISHED during a FETCH on node 2, then
//! one at its NOOP; sequence ↔ UID maps after each step; which UIDs get FETCH lines, at which
//! sequence numbers, with which flags and MODSEQs; `[CLOSED]` before a SELECT's new mailbox;
//! BAD for QRESYNC before ENABLE, VANISHED without CHANGEDSINCE or outside UID FETCH, `*` in
//! known-uids, unequal seq-match-data, UIDVALIDITY 0 — each followed by a command that works.

mod support;

use support::imap;

const USER: &str = "dora";
const PASSWORD: &str = "quick resync";

#[test]
fn imap_qresync_reports_exactly_what_vanished_on_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = imap::passwd_file(dir.path(), USER, PASSWORD);
    // UID MOVE is log encoding 4.
    let (cluster, imap_addrs) = imap::start_plaintext_cluster(&passwd, 4);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/qresync.py");
    let (a, b, c) = (&imap_addrs[0], &imap_addrs[1], &imap_addrs[2]);
    imap::run_script(&cluster, script, &[a, b, c, USER, PASSWORD]);
}
