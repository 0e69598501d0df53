//! IMAP COPY, MOVE, subscriptions and RENAME INBOX over the replicated ops of log encoding 4
//! (`src/imap/copy.rs`, `src/imap/subscriptions.rs`). Property: a copy or a move is one log
//! entry, so every node sees the same result — the copies with their flags and bytes, the UIDs
//! COPYUID named, a moved message gone from its source — and sessions elsewhere learn of a
//! move's expunges only where RFC 3501 §7.4.1 allows. Provocation, on a 3-node cluster of real
//! processes with `--passwd-file` and `--imap-listen` on each, driven by Python's imaplib
//! (`tests/imap/copy.py`): COPY and UID COPY on node 1, read back through node 2; MOVE and UID
//! MOVE on node 1 while a session on node 3 has the mailbox selected; COPY to a missing mailbox;
//! SUBSCRIBE/UNSUBSCRIBE on node 1 and LSUB on node 3; RENAME INBOX. Checks (in the script):
//! COPYUID's UID map, equal flags and `BODY[]` bytes of source and copy, MOVE's `* OK [COPYUID]`
//! then EXPUNGEs renumbering the mover's view, no EXPUNGE on node 3 during a FETCH and the
//! EXPUNGEs at its NOOP, `NO [TRYCREATE]`, LSUB `%` with an unsubscribed parent `\Noselect`,
//! INBOX empty after RENAME INBOX and the new mailbox holding its messages, a retried RENAME INBOX
//! (target created, nothing moved) finishing into the empty target; MOVE refused under EXAMINE
//! and into the selected mailbox itself.

mod support;

use support::imap;

const USER: &str = "carol";
const PASSWORD: &str = "copy and move";

#[test]
fn imap_copy_move_and_subscriptions_are_one_entry_seen_by_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = imap::passwd_file(dir.path(), USER, PASSWORD);
    // Copy, Move and Subscribe are log encoding 4.
    let (cluster, imap_addrs) = imap::start_plaintext_cluster(&passwd, 4);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/copy.py");
    let (a, b, c) = (&imap_addrs[0], &imap_addrs[1], &imap_addrs[2]);
    imap::run_script(&cluster, script, &[a, b, c, USER, PASSWORD]);
}
