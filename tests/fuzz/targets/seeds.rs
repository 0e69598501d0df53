//! The seed corpus: real encodings made by the code that writes them — a group's index files,
//! manifest and snapshot stream, log entries of every op, peer frames of every message type, a
//! snapshot transfer, the Raft log's values, a request to every API route, and IMAP and LMTP
//! sessions — written to `tests/fuzz/corpus/<target>/seed-*` by `DOVETAIL_BLESS=1 cargo test
//! --test fuzz_stable corpus_is_current`, which otherwise checks that the checked-in seeds are
//! still what the code writes. Everything here is deterministic (fixed GUIDs, dates, nonces).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dovetail::index::LogPosition;
use dovetail::state_machine::{GroupState, Manifest, MemoryFiles};
use dovetail::txn::encoding::{encode_entry, CURRENT_ENCODING, TEST_NEXT_ENCODING};
use dovetail::txn::{NewMessage, Op, StoreMode, Txn, UidSet};
use dovetail_raft::log_store::codec;
use dovetail_raft::state_machine::ConsensusMeta;
use dovetail_raft::transport::wire::{
    self, AdminRequest, ForwardReply, ReadIndexReply, RemoteError, RequestBody, RequestFrame, ResponseBody,
    ResponseFrame, SnapshotHeader,
};
use dovetail_raft::{
    Batch, Entry, LeaderId, LogId, MemberRole, Membership, MembershipChange, MembershipOutcome, Node,
    Refusal, Request, Response, SnapshotMeta, StoredMembership, Vote,
};
use openraft::entry::RaftEntry;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, VoteRequest,
    VoteResponse,
};
use openraft::vote::RaftLeaderIdExt;

use super::api::{ADMIN_TOKEN, CLIENT_TOKEN};

/// Every seed: (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut all = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        all.push((target, format!("seed-{name}"), bytes));
    };
    let group = sample_group(0);
    let delivered = sample_group(CURRENT_ENCODING);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1");

    // Index files: the sample's two mailboxes, an empty one, and the golden files.
    for (guid, index) in group.mailboxes() {
        add("index", &format!("{:02x}.idx", guid[0]), index.bytes().to_vec());
    }
    for (guid, index) in delivered.mailboxes() {
        add(
            "index",
            &format!("{:02x}-v2.idx", guid[0]),
            index.bytes().to_vec(),
        );
    }
    add(
        "index",
        "empty.idx",
        dovetail::index::MailboxIndex::<dovetail::index::VecStorage>::empty_image([7; 16], 42),
    );
    for name in [
        "d07e7a11000000000000000000000001.idx",
        "d07e7a11000000000000000000000002.idx",
    ] {
        add(
            "index",
            &format!("golden-{}", &name[30..]),
            std::fs::read(golden.join(name)).unwrap(),
        );
    }

    // Manifests: the sample's (layout 1), the same group in log encoding 1 (layout 2), the
    // delivered one (layout 4, with subscriptions) and it in encoding 3 (layout 3), empty.
    let manifest = group.manifest().clone();
    add("manifest", "layout1", manifest.encode());
    add(
        "manifest",
        "layout2",
        Manifest {
            encoding: 1,
            ..manifest.clone()
        }
        .encode(),
    );
    add("manifest", "delivered", delivered.manifest().encode());
    add(
        "manifest",
        "layout3",
        Manifest {
            encoding: 3,
            subscriptions: Default::default(),
            ..delivered.manifest().clone()
        }
        .encode(),
    );
    add("manifest", "empty", Manifest::default().encode());
    add(
        "manifest",
        "golden",
        std::fs::read(golden.join("manifest")).unwrap(),
    );

    // Snapshot streams and checkpoints.
    let stream = export(&group);
    let empty = export(&GroupState::in_memory());
    let golden_checkpoint = std::fs::read(golden.join("checkpoint.snap")).unwrap();
    for target in ["snapshot", "checkpoint"] {
        add(target, "sample", stream.clone());
        add(target, "delivered", export(&delivered));
        add(target, "empty", empty.clone());
        add(target, "golden", golden_checkpoint.clone());
    }

    // Log entries: every op in every encoding that has it.
    for (i, txn) in entry_txns().iter().enumerate() {
        let op = txn.op.describe();
        for encoding in [0, 1, 2, 3, CURRENT_ENCODING, TEST_NEXT_ENCODING] {
            if let Ok(entry) = encode_entry(txn, encoding) {
                add("log_entry", &format!("{i:02}-{op}-e{encoding}"), entry);
            }
        }
    }

    // Peer frames: each request and response body, and a snapshot header.
    for (name, frame) in request_frames() {
        add(
            "peer_frames",
            &format!("request-{name}"),
            wire::encode(&frame).unwrap(),
        );
    }
    for (name, frame) in response_frames() {
        add(
            "peer_frames",
            &format!("response-{name}"),
            wire::encode(&frame).unwrap(),
        );
    }
    add(
        "peer_frames",
        "snapshot-header",
        wire::encode(&snapshot_header(10)).unwrap(),
    );
    let mut pipelined = Vec::new();
    for (_, frame) in request_frames().into_iter().take(4) {
        pipelined.extend(wire::encode(&frame).unwrap());
    }
    add("peer_frames", "pipelined", pipelined);

    // The handshake: a server's challenge and proof, a client's answer (fixed nonces; the
    // proofs are the right length, not right: no input can know the nonce it answers).
    let mut hello = b"DVTL\x01".to_vec();
    hello.extend([0x5a; 32]);
    let mut challenge_and_proof = hello.clone();
    challenge_and_proof.extend([0xa5; 32]);
    add(
        "peer_handshake",
        "server-challenge-and-proof",
        challenge_and_proof,
    );
    for (kind, name) in [(0u8, "rpc"), (1, "snapshot")] {
        let mut answer = vec![kind];
        answer.extend(7u64.to_le_bytes());
        answer.extend([0x3c; 32]);
        answer.extend([0xc3; 32]);
        add("peer_handshake", &format!("client-answer-{name}"), answer);
    }

    // A snapshot transfer: the header frame, the sample stream in chunks, the end marker.
    for (name, chunk) in [("one-chunk", stream.len()), ("chunks", 1000)] {
        let mut transfer = wire::encode(&snapshot_header(stream.len() as u64)).unwrap();
        for piece in stream.chunks(chunk) {
            transfer.extend((piece.len() as u32).to_le_bytes());
            transfer.extend(crc32c::crc32c(piece).to_le_bytes());
            transfer.extend(piece);
        }
        transfer.extend([0u8; 8]);
        add("snapshot_chunks", name, transfer);
    }

    // The Raft log's values.
    for (name, entry) in entries() {
        add(
            "raft_log_values",
            &format!("entry-{name}"),
            codec::encode(&entry).unwrap(),
        );
    }
    add("raft_log_values", "vote", codec::encode(&vote()).unwrap());
    add("raft_log_values", "log-id", codec::encode(&log_id(9)).unwrap());
    add("raft_log_values", "consensus-meta", consensus_meta().encode());

    // API requests.
    for (name, request) in client_requests() {
        add("client_api", name, request.into_bytes());
    }
    for (name, request) in admin_requests() {
        add("admin_api", name, request.into_bytes());
    }

    // IMAP and LMTP sessions (`imap.rs`, `lmtp.rs`).
    for (name, session) in super::imap::seeds() {
        add("imap_session", name, session);
    }
    for (name, session) in super::lmtp::seeds() {
        add("lmtp_session", name, session);
    }
    all
}

fn export(group: &GroupState<MemoryFiles>) -> Vec<u8> {
    let mut stream = Vec::new();
    group.export_snapshot(&mut stream).unwrap();
    stream
}

// ---------------------------------------------------------------------------------------------
// The mail side.

const USER: &str = "alice@example.org";

fn txn(request_seq: u64, op: Op) -> Txn {
    Txn {
        client_id: "fuzz-seed".into(),
        request_seq,
        op,
    }
}

fn message(i: u32) -> NewMessage {
    let mut flags = Vec::new();
    for (every, flag) in [(3, "\\Seen"), (5, "$Junk"), (7, "Work"), (11, "\\Deleted")] {
        if i.is_multiple_of(every) {
            flags.push(flag.to_string());
        }
    }
    NewMessage {
        guid: [i as u8; 16],
        size: 1000 + u64::from(i) * 37,
        internal_date: 1_700_000_000 + i64::from(i) * 60,
        flags,
    }
}

fn uids(text: &str) -> UidSet {
    UidSet::parse(text).unwrap()
}

/// A group with two mailboxes, keywords, flags, expunge tombstones, unused slots.
/// A group with two mailboxes and some history; from log encoding 3 its messages are delivered
/// with bodies (index format v2).
fn sample_group(encoding: u8) -> GroupState<MemoryFiles> {
    let create = |mailbox: &str, guid: u8, uid_validity| Op::CreateMailbox {
        user: USER.into(),
        mailbox: mailbox.into(),
        mailbox_guid: [guid; 16],
        uid_validity,
    };
    let append = |mailbox: &str, range: std::ops::RangeInclusive<u32>| {
        if encoding >= 3 {
            Op::Deliver {
                user: USER.into(),
                mailbox: mailbox.into(),
                bodies: range.clone().map(|i| [i as u8 | 0x80; 16]).collect(),
                messages: range.map(message).collect(),
            }
        } else {
            Op::Append {
                user: USER.into(),
                mailbox: mailbox.into(),
                messages: range.map(message).collect(),
            }
        }
    };
    let mut ops = Vec::new();
    if encoding > 0 {
        ops.push(Op::SetEncoding { version: encoding });
    }
    ops.extend([
        create("INBOX", 0x11, 1_700_000_000),
        create("Archive", 0x22, 1_700_000_001),
        append("INBOX", 1..=40),
        Op::Store {
            user: USER.into(),
            mailbox: "INBOX".into(),
            uids: uids("5:9"),
            mode: StoreMode::Add,
            flags: vec!["\\Answered".into(), "$Important".into()],
            unchanged_since: None,
        },
        Op::Expunge {
            user: USER.into(),
            mailbox: "INBOX".into(),
            uids: uids("2:3,17,30,33"),
            expected_guids: Vec::new(),
        },
        append("Archive", 100..=102),
    ]);
    if encoding >= 4 {
        ops.extend([
            Op::Subscribe {
                user: USER.into(),
                mailbox: "INBOX".into(),
            },
            Op::Subscribe {
                user: USER.into(),
                mailbox: "Lists/Not yet".into(),
            },
            Op::Copy {
                user: USER.into(),
                from: "INBOX".into(),
                to: "Archive".into(),
                uids: uids("1:5"),
            },
            Op::Move {
                user: USER.into(),
                from: "INBOX".into(),
                to: "Archive".into(),
                uids: uids("6:7"),
            },
        ]);
    }
    let mut group = GroupState::in_memory();
    for (i, op) in ops.into_iter().enumerate() {
        let outcome = group
            .apply(LogPosition::new(1, i as u64 + 1), &txn(i as u64 + 1, op))
            .unwrap()
            .unwrap();
        assert!(!outcome.is_rejected(), "{outcome:?}");
    }
    group
}

/// One transaction of every op.
fn entry_txns() -> Vec<Txn> {
    let ops = vec![
        Op::CreateMailbox {
            user: "u".into(),
            mailbox: "Archive/2024".into(),
            mailbox_guid: [0x33; 16],
            uid_validity: 1_700_000_000,
        },
        Op::RenameMailbox {
            user: "u".into(),
            from: "INBOX".into(),
            to: "Old".into(),
        },
        Op::DeleteMailbox {
            user: "u".into(),
            mailbox: "INBOX".into(),
        },
        Op::Append {
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: (1..=3).map(message).collect(),
        },
        Op::Store {
            user: "u".into(),
            mailbox: "INBOX".into(),
            uids: uids("1:2,3"),
            mode: StoreMode::Replace,
            flags: vec!["\\Seen".into(), "$Work".into()],
            unchanged_since: Some(2),
        },
        Op::Expunge {
            user: "u".into(),
            mailbox: "INBOX".into(),
            uids: uids("1,3"),
            expected_guids: vec![(1, [1; 16])],
        },
        Op::SetEncoding { version: 1 },
        Op::Probe { user: "u".into() },
        Op::Deliver {
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: (4..=5).map(message).collect(),
            bodies: vec![[0xb4; 16], [0xb5; 16]],
        },
        Op::Copy {
            user: "u".into(),
            from: "INBOX".into(),
            to: "Archive/2024".into(),
            uids: uids("1:5,7"),
        },
        Op::Move {
            user: "u".into(),
            from: "INBOX".into(),
            to: "Trash".into(),
            uids: uids("2"),
        },
        Op::Subscribe {
            user: "u".into(),
            mailbox: "Archive/2024".into(),
        },
        Op::Unsubscribe {
            user: "u".into(),
            mailbox: "Archive/2024".into(),
        },
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| txn(i as u64 + 10, op))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The Raft side.

fn log_id(index: u64) -> LogId {
    LogId::new(LeaderId::new_committed(3, 1), index)
}

fn vote() -> Vote {
    Vote::new_committed(3, 1)
}

fn membership() -> Membership {
    let nodes: BTreeMap<u64, Node> = (1..=3)
        .map(|id| {
            (
                id,
                Node {
                    peer_addr: format!("127.0.0.{id}:7101"),
                    api_addr: format!("127.0.0.{id}:7001"),
                },
            )
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).unwrap()
}

fn consensus_meta() -> ConsensusMeta {
    ConsensusMeta {
        last_applied: log_id(9),
        membership: StoredMembership::new(Some(log_id(2)), membership()),
    }
}

/// Log entries of each payload: a batch of real requests, a blank, a membership change.
fn entries() -> Vec<(&'static str, Entry)> {
    let requests: Vec<Request> = entry_txns()
        .iter()
        .take(4)
        .map(|t| Request(encode_entry(t, 0).unwrap()))
        .collect();
    vec![
        ("normal", Entry::new_normal(log_id(7), Batch(requests))),
        ("blank", Entry::new_blank(log_id(8))),
        ("membership", Entry::new_membership(log_id(2), membership())),
    ]
}

fn request_frames() -> Vec<(&'static str, RequestFrame)> {
    let frame = |id, body| RequestFrame {
        id,
        group_id: 3,
        body,
    };
    let forward = Request(encode_entry(&entry_txns()[3], 0).unwrap());
    vec![
        (
            "append-entries",
            frame(
                1,
                RequestBody::AppendEntries(AppendEntriesRequest {
                    vote: vote(),
                    prev_log_id: Some(log_id(6)),
                    entries: entries().into_iter().map(|(_, e)| e).collect(),
                    leader_commit: Some(log_id(6)),
                }),
            ),
        ),
        (
            "heartbeat",
            frame(
                2,
                RequestBody::AppendEntries(AppendEntriesRequest {
                    vote: vote(),
                    prev_log_id: Some(log_id(9)),
                    entries: vec![],
                    leader_commit: Some(log_id(9)),
                }),
            ),
        ),
        (
            "vote",
            frame(3, RequestBody::Vote(VoteRequest::new(vote(), Some(log_id(9))))),
        ),
        (
            "pre-vote",
            frame(4, RequestBody::PreVote(VoteRequest::new(vote(), Some(log_id(9))))),
        ),
        (
            "transfer-leader",
            frame(
                5,
                RequestBody::TransferLeader(TransferLeaderRequest::new(vote(), 2, Some(log_id(9)))),
            ),
        ),
        ("forward", frame(6, RequestBody::Forward(forward))),
        ("read-index", frame(7, RequestBody::ReadIndex)),
        (
            "admin-add-learner",
            frame(
                8,
                RequestBody::Admin(AdminRequest::AddLearner {
                    node_id: 4,
                    node: Node {
                        peer_addr: "127.0.0.4:7101".into(),
                        api_addr: "127.0.0.4:7001".into(),
                    },
                }),
            ),
        ),
        (
            "admin-change-membership",
            frame(
                9,
                RequestBody::Admin(AdminRequest::ChangeMembership {
                    voters: BTreeSet::from([1, 2, 4]),
                }),
            ),
        ),
        (
            "admin-transfer-leader",
            frame(10, RequestBody::Admin(AdminRequest::TransferLeader { to: 2 })),
        ),
        (
            "admin-add-voter",
            frame(11, RequestBody::Admin(AdminRequest::AddVoter { node_id: 4 })),
        ),
        (
            "admin-remove-node",
            frame(12, RequestBody::Admin(AdminRequest::RemoveNode { node_id: 3 })),
        ),
        (
            "admin-membership-promote",
            frame(
                13,
                RequestBody::Admin(AdminRequest::Membership {
                    change: MembershipChange::Promote {
                        node_id: 4,
                        force: false,
                    },
                    check_only: true,
                }),
            ),
        ),
        (
            "admin-membership-remove",
            frame(
                14,
                RequestBody::Admin(AdminRequest::Membership {
                    change: MembershipChange::Remove {
                        node_id: 3,
                        force: true,
                    },
                    check_only: false,
                }),
            ),
        ),
    ]
}

fn response_frames() -> Vec<(&'static str, ResponseFrame)> {
    let frame = |id, body| ResponseFrame { id, body };
    vec![
        (
            "append-entries",
            frame(1, Ok(ResponseBody::AppendEntries(AppendEntriesResponse::Success))),
        ),
        (
            "append-entries-partial",
            frame(
                1,
                Ok(ResponseBody::AppendEntries(
                    AppendEntriesResponse::PartialSuccess(Some(log_id(8))),
                )),
            ),
        ),
        (
            "append-entries-higher-vote",
            frame(
                1,
                Ok(ResponseBody::AppendEntries(AppendEntriesResponse::HigherVote(
                    vote(),
                ))),
            ),
        ),
        (
            "vote",
            frame(
                3,
                Ok(ResponseBody::Vote(VoteResponse::new(
                    vote(),
                    Some(log_id(9)),
                    true,
                ))),
            ),
        ),
        (
            "transfer-leader",
            frame(5, Ok(ResponseBody::TransferLeader(Ok(())))),
        ),
        (
            "forward-applied",
            frame(
                6,
                Ok(ResponseBody::Forward(ForwardReply::Applied {
                    position: LogPosition::new(3, 10),
                    response: Response(vec![0, 1, 2, 3]),
                })),
            ),
        ),
        (
            "forward-not-leader",
            frame(
                6,
                Ok(ResponseBody::Forward(ForwardReply::NotLeader { leader: Some(2) })),
            ),
        ),
        (
            "forward-failed",
            frame(
                6,
                Ok(ResponseBody::Forward(ForwardReply::Failed {
                    reason: "stepped down".into(),
                })),
            ),
        ),
        (
            "membership-changed",
            frame(
                13,
                Ok(ResponseBody::Forward(ForwardReply::Membership(
                    MembershipOutcome::Changed {
                        position: LogPosition::new(3, 11),
                        role: MemberRole::Voter,
                    },
                ))),
            ),
        ),
        (
            "membership-refused",
            frame(
                14,
                Ok(ResponseBody::Forward(ForwardReply::Membership(
                    MembershipOutcome::Refused(Refusal::TooFewVoters {
                        node_id: 3,
                        voters_after: BTreeSet::from([1, 2]),
                        unreachable_after: BTreeSet::new(),
                        min_voters: 3,
                    }),
                ))),
            ),
        ),
        (
            "read-index",
            frame(
                7,
                Ok(ResponseBody::ReadIndex(ReadIndexReply::Ready {
                    position: LogPosition::new(3, 9),
                })),
            ),
        ),
        (
            "read-index-no-quorum",
            frame(
                7,
                Ok(ResponseBody::ReadIndex(ReadIndexReply::NoQuorum {
                    reason: "timeout".into(),
                })),
            ),
        ),
        (
            "snapshot",
            frame(0, Ok(ResponseBody::Snapshot(SnapshotResponse::new(vote())))),
        ),
        (
            "unknown-group",
            frame(8, Err(RemoteError::UnknownGroup { group_id: 99 })),
        ),
        (
            "fatal",
            frame(
                9,
                Err(RemoteError::Fatal {
                    group_id: 3,
                    reason: "storage error".into(),
                }),
            ),
        ),
    ]
}

fn snapshot_header(len: u64) -> SnapshotHeader {
    SnapshotHeader {
        group_id: 3,
        vote: vote(),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(6)),
            last_membership: StoredMembership::new(Some(log_id(2)), membership()),
        },
        len,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP requests (the text form of `api.rs`).

fn request(line: &str, body: Option<&str>) -> String {
    match body {
        Some(body) => format!("{line}\ncontent-type: application/json\n\n{body}"),
        None => line.to_string(),
    }
}

fn client_requests() -> Vec<(&'static str, String)> {
    let b = "/v1/users/alice/mailboxes";
    vec![
        ("list", request(&format!("GET {b}?consistency=local"), None)),
        (
            "create",
            request(&format!("POST {b}"), Some(r#"{"name":"Drafts"}"#)),
        ),
        (
            "create-child",
            request(
                &format!("POST {b}?client_id=c1&request_seq=1"),
                Some(r#"{"name":"Archive/2025"}"#),
            ),
        ),
        (
            "status",
            request(&format!("GET {b}/INBOX?consistency=linearizable"), None),
        ),
        (
            "status-child",
            request(&format!("GET {b}/Archive%2F2024?min_applied=1"), None),
        ),
        ("delete", request(&format!("DELETE {b}/Archive%2F2024"), None)),
        (
            "rename",
            request(
                &format!("POST {b}/Archive/rename"),
                Some(r#"{"to":"Old/Archive"}"#),
            ),
        ),
        (
            "append",
            request(
                &format!("POST {b}/INBOX/messages?client_id=c2&request_seq=7"),
                Some(
                    r#"{"messages":[{"guid":"00112233445566778899aabbccddeeff","size":1234,"internal_date":1700000000,"flags":["\\Seen","$Work"]},{"guid":"ffeeddccbbaa99887766554433221100","size":1}]}"#,
                ),
            ),
        ),
        (
            "fetch",
            request(&format!("GET {b}/INBOX/messages?first=1&last=10&limit=5"), None),
        ),
        (
            "store",
            request(
                &format!("POST {b}/INBOX/store"),
                Some(r#"{"uids":"1:*","mode":"add","flags":["\\Flagged","$Junk"],"unchanged_since":3}"#),
            ),
        ),
        (
            "store-replace",
            request(
                &format!("POST {b}/INBOX/store"),
                Some(r#"{"uids":"2,5","mode":"replace","flags":[]}"#),
            ),
        ),
        (
            "expunge",
            request(
                &format!("POST {b}/INBOX/expunge"),
                Some(r#"{"uids":"1:2","expected_guids":{"1":"01010101010101010101010101010101"}}"#),
            ),
        ),
        (
            "changes",
            request(&format!("GET {b}/INBOX/changes?since=2&consistency=local"), None),
        ),
        (
            "copy",
            request(
                &format!("POST {b}/INBOX/copy?client_id=c3&request_seq=1"),
                Some(r#"{"uids":"1:5,7","to":"Archive/2024"}"#),
            ),
        ),
        (
            "move",
            request(
                &format!("POST {b}/INBOX/copy"),
                Some(r#"{"uids":"2","to":"Trash","move":true}"#),
            ),
        ),
        (
            "subscriptions",
            request("GET /v1/users/alice/subscriptions?consistency=local", None),
        ),
        (
            "subscribe",
            request("PUT /v1/users/alice/subscriptions/Archive%2F2024", None),
        ),
        (
            "unsubscribe",
            request(
                "DELETE /v1/users/alice/subscriptions/INBOX?client_id=c4&request_seq=2",
                None,
            ),
        ),
        (
            "probe",
            request("POST /v1/users/alice/probe?client_id=p&request_seq=1", None),
        ),
        (
            "wrong-token",
            format!("GET {b}\nauthorization: Bearer {ADMIN_TOKEN}"),
        ),
        ("bad-json", request(&format!("POST {b}"), Some(r#"{"name":"#))),
        ("no-route", request("GET /v1/users", None)),
    ]
}

fn admin_requests() -> Vec<(&'static str, String)> {
    vec![
        ("status", request("GET /admin/status", None)),
        ("cluster", request("GET /admin/cluster", None)),
        (
            "add-learner",
            request(
                "POST /admin/members/learners",
                Some(r#"{"node_id":4,"peer_addr":"127.0.0.1:1","api_addr":"127.0.0.1:1"}"#),
            ),
        ),
        (
            "add-voter",
            request("POST /admin/members/voters", Some(r#"{"node_id":4}"#)),
        ),
        ("remove-member", request("DELETE /admin/members/4", None)),
        (
            "transfer-leader",
            request("POST /admin/groups/0/transfer-leader", Some(r#"{"to":1}"#)),
        ),
        ("rebalance", request("POST /admin/rebalance", None)),
        ("verify", request("POST /admin/verify", Some(r#"{"groups":[0]}"#))),
        ("verify-all", request("POST /admin/verify", None)),
        (
            "repair",
            request(
                "POST /admin/groups/0/mailboxes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/repair",
                Some(r#"{"replica":1,"source":1}"#),
            ),
        ),
        ("snapshot-group", request("POST /admin/groups/0/snapshot", None)),
        ("snapshot-all", request("POST /admin/snapshot", None)),
        ("digests", request("GET /admin/groups/0/digests", None)),
        (
            "image",
            request(
                "GET /admin/groups/0/mailboxes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/image?min_applied=2",
                None,
            ),
        ),
        ("metrics", request("GET /metrics", None)),
        ("dashboard", request("GET /", None)),
        (
            "wrong-token",
            format!("GET /admin/status\nauthorization: Bearer {CLIENT_TOKEN}"),
        ),
    ]
}
