//! IMAP content (issue "Speak mail"; `src/imap/fetch.rs`, `src/imap/selected.rs` SEARCH).
//! Property: what a client reads of a message's content — ENVELOPE, BODYSTRUCTURE, sections —
//! and which messages a SEARCH finds are the same through any node, derived from the stored
//! bytes and the replicated index alone, and match what Dovecot answers for the same bytes.
//! Provocation, on a 3-node cluster of real processes with `--passwd-file` and
//! `--imap-listen --imap-allow-plaintext`, driven by Python's imaplib (`tests/imap/content.py`):
//! APPEND of fixture messages (`tests/fixtures/imap/`: a multipart with an attachment and an
//! enclosed message/rfc822, a plain one, one with encoded words) on node 1, then on node 2
//! FETCH of ENVELOPE, BODYSTRUCTURE, BODY, `BODY[1.MIME]`, `BODY[HEADER.FIELDS (...)]`,
//! `BODY.PEEK[2]<0.10>`, RFC822.HEADER, RFC822.TEXT, ALL, FULL, FAST, then ENVELOPE,
//! BODYSTRUCTURE and BODY again (answered from each node's MIME cache); SEARCH by flags, FROM,
//! SUBJECT, BODY, TEXT, HEADER, LARGER, SMALLER, SINCE, BEFORE, UID ranges, NOT/OR, CHARSET
//! UTF-8 with a non-ASCII literal, an unknown charset, MODSEQ after ENABLE CONDSTORE; node 1
//! expunging while node 2 SEARCHes. Checks (in the script): each FETCH answer byte-equal on
//! both nodes and equal to Dovecot's recorded one (BODY/BODYSTRUCTURE case-insensitively), a
//! cached answer byte-equal to the first; `\Seen` set by non-PEEK sections and RFC822.TEXT
//! only; the SEARCH results; `NO [BADCHARSET (US-ASCII UTF-8)]`; `(MODSEQ n)` the highest of the
//! matches, only when MODSEQ was asked; no EXPUNGE during a non-UID SEARCH, whose numbers stay
//! the session's. Then a message appended by reference through the HTTP API (an index record
//! without bytes): FETCH ENVELOPE answers the others and NO naming it; SEARCH FLAGGED finds it;
//! SEARCH BODY answers NO.

mod support;

use serde_json::json;
use support::{imap, post};

const USER: &str = "carol";
const PASSWORD: &str = "content test password";

#[test]
fn fetch_and_search_answer_the_same_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = imap::passwd_file(dir.path(), USER, PASSWORD);
    // APPEND stores through the body store: log encoding 3.
    let (cluster, imap_addrs) = imap::start_plaintext_cluster(&passwd, 3);
    let api = cluster.nodes[0].api.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/content.py");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imap");
    imap::run_script(
        &cluster,
        script,
        &[&imap_addrs[0], &imap_addrs[1], USER, PASSWORD, fixtures],
    );
    // A message appended by reference through the HTTP API: an index record, no bytes anywhere.
    let (status, answer) = post(
        &api,
        &format!("/v1/users/{USER}/mailboxes/INBOX/messages"),
        &json!({"messages": [{"guid": format!("{:032x}", 64), "size": 10, "flags": ["\\Flagged"]}],
                "client_id": "t64", "request_seq": 1}),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    imap::run_script(&cluster, script, &["nobody", &imap_addrs[1], USER, PASSWORD]);
}
