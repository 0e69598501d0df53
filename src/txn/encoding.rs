//! Log entry encodings: how a `Txn` becomes the bytes of a Raft request, and which encodings a
//! build can apply.
//!
//! An *encoding* names the wire layout and the set of ops a log entry may use. Every group has
//! an active encoding, changed only by a committed [`Op::SetEncoding`] (the encoding gate), so
//! every replica knows which one applies at every log position. A node proposes in its group's
//! active encoding; a leader moves the gate up only once every member of the group reports that
//! it can apply the new encoding (`src/node/encoding_gate.rs`). A node that meets an entry in an
//! encoding it cannot apply (it was downgraded, or joined with an old build) stops applying that
//! group and says why; it never turns the entry into a rejection, which would diverge from the
//! replicas that applied it.
//!
//! - Encoding 0 (legacy): the bare bincode 2 of a `Txn`, as written before encodings existed. A
//!   group without a gate entry is in it; every build keeps applying it, since logs and
//!   snapshots of older clusters hold it.
//! - Encoding 1: [`ENTRY_MAGIC`], the encoding number, then the bincode 2 of the `Txn`. Adds the
//!   gate op itself and the manifest layout with the active encoding (`state_machine/manifest.rs`).
//! - Encoding 2: the same wire layout. Exactly-once sessions remember a digest of each request
//!   (a reused `(client_id, request_seq)` with other content is rejected, `RequestReused`;
//!   manifest layout 3), and names follow stricter rules on apply (NFC, no invisible or bidi
//!   control characters, no path-like user names: `validate::validate_in`).
//! - Encoding 3: the same wire layout. Adds `Deliver` (messages with bodies in the body store),
//!   and mailbox files in index format v2 (records name their body): new mailboxes are created
//!   in v2, and a v1 file is rewritten as v2 by the first change to it.
//! - Encoding 4: the same wire layout. Adds `Copy` and `Move` (IMAP COPY and MOVE: records
//!   copied with their body ids, a move's expunge in the same entry), `Subscribe` and
//!   `Unsubscribe` (IMAP subscriptions, kept in the manifest: its layout 4).
//!
//! A legacy entry starts with the length of its client id (1 to 64, a one-byte varint), so it can
//! never start with [`ENTRY_MAGIC`]; an entry starting with anything else is garbage, rejected
//! alike by every replica.

use super::{Op, Txn};

/// First byte of every entry in encoding 1 or later.
pub const ENTRY_MAGIC: u8 = 0xD7;

/// The highest encoding this build can apply and propose.
pub const CURRENT_ENCODING: u8 = 4;

/// The encoding a test build pretends to be the next release's (`--test-next-encoding`): it
/// adds [`Op::Probe`]. Lets the rolling-upgrade test move a cluster from this build to a
/// "newer" one without building a second binary.
pub const TEST_NEXT_ENCODING: u8 = CURRENT_ENCODING + 1;

const _: () = assert!(super::MAX_CLIENT_ID_LEN < ENTRY_MAGIC as usize);

/// Why an op cannot be proposed in a group's active encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} needs log encoding {needs}, and the group's active encoding is {active}: it is enabled once every member of the group runs a release that applies encoding {needs}")]
pub struct NotEnabled {
    pub op: &'static str,
    pub needs: u8,
    pub active: u8,
}

/// Why a log entry could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// An encoding this build cannot apply: the group must stop on this node.
    #[error(
        "log entry in encoding {encoding}, and this build applies encodings up to {max}: upgrade this node"
    )]
    Unsupported { encoding: u8, max: u8 },
    /// Bytes that are no entry of any encoding, or an op the entry's encoding does not have:
    /// every replica rejects it alike.
    #[error("{0}")]
    Garbage(String),
}

/// The lowest encoding in which `op` may appear.
pub fn required_encoding(op: &Op) -> u8 {
    match op {
        Op::CreateMailbox { .. }
        | Op::RenameMailbox { .. }
        | Op::DeleteMailbox { .. }
        | Op::Append { .. }
        | Op::Store { .. }
        | Op::Expunge { .. } => 0,
        Op::SetEncoding { .. } => 1,
        Op::Deliver { .. } => 3,
        Op::Copy { .. } | Op::Move { .. } | Op::Subscribe { .. } | Op::Unsubscribe { .. } => 4,
        Op::Probe { .. } => TEST_NEXT_ENCODING,
    }
}

/// Encodes `txn` as a log entry in `encoding` (a group's active encoding).
pub fn encode_entry(txn: &Txn, encoding: u8) -> Result<Vec<u8>, NotEnabled> {
    let needs = required_encoding(&txn.op);
    if needs > encoding {
        return Err(NotEnabled {
            op: txn.op.describe(),
            needs,
            active: encoding,
        });
    }
    let mut out = Vec::new();
    if encoding > 0 {
        out.extend_from_slice(&[ENTRY_MAGIC, encoding]);
    }
    bincode::serde::encode_into_std_write(txn, &mut out, bincode::config::standard())
        .expect("encoding into memory cannot fail");
    Ok(out)
}

/// Decodes a log entry, by a build that applies encodings up to `max`: its encoding and its txn.
pub fn decode_entry(bytes: &[u8], max: u8) -> Result<(u8, Txn), EntryError> {
    let (encoding, payload) = match bytes {
        // Encoding 0 has no header: `ENTRY_MAGIC, 0` is no entry of any encoding (a second way
        // to write an encoding-0 entry, which no build writes).
        [ENTRY_MAGIC, 0, ..] => {
            return Err(EntryError::Garbage("encoding 0 after the entry magic".into()));
        }
        [ENTRY_MAGIC, encoding, payload @ ..] => (*encoding, payload),
        [first, ..] if (1..=super::MAX_CLIENT_ID_LEN as u8).contains(first) => (0, bytes),
        _ => return Err(EntryError::Garbage("not a log entry of any encoding".into())),
    };
    if encoding > max {
        return Err(EntryError::Unsupported { encoding, max });
    }
    // Bounded by the entry's length: a length field claiming more than the entry holds is
    // garbage, never an allocation of its size (`dovetail_raft::decode`).
    let (txn, used): (Txn, usize) =
        dovetail_raft::decode::decode_from_slice(payload).map_err(|e| EntryError::Garbage(e.to_string()))?;
    if used != payload.len() {
        return Err(EntryError::Garbage(format!(
            "{} trailing bytes after the transaction",
            payload.len() - used
        )));
    }
    let needs = required_encoding(&txn.op);
    if needs > encoding {
        return Err(EntryError::Garbage(format!(
            "{} is not part of encoding {encoding} (it needs {needs})",
            txn.op.describe()
        )));
    }
    Ok((encoding, txn))
}

/// Whether an entry in `encoding` may be applied to a group whose active encoding is `active`:
/// only the gate entry that raises the group to its own encoding may be above it. Anything else
/// above it (no proposer of a correct node writes one) is rejected alike by every replica.
pub fn admissible(encoding: u8, txn: &Txn, active: u8) -> bool {
    encoding <= active || txn.op == (Op::SetEncoding { version: encoding })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::test_txns::create_inbox;

    fn set_encoding(version: u8) -> Txn {
        Txn {
            client_id: "anon-1-encoding".into(),
            request_seq: u64::from(version),
            op: Op::SetEncoding { version },
        }
    }

    #[test]
    fn legacy_entries_are_bare_bincode_and_still_decode() {
        let txn = create_inbox();
        let legacy = encode_entry(&txn, 0).unwrap();
        let bare = bincode::serde::encode_to_vec(&txn, bincode::config::standard()).unwrap();
        assert_eq!(legacy, bare, "encoding 0 is what earlier releases wrote");
        assert_eq!(decode_entry(&legacy, CURRENT_ENCODING).unwrap(), (0, txn.clone()));
        assert_eq!(decode_entry(&legacy, 0).unwrap(), (0, txn));
    }

    #[test]
    fn versioned_entries_say_their_encoding() {
        let txn = create_inbox();
        let bytes = encode_entry(&txn, 1).unwrap();
        assert_eq!(&bytes[..2], &[ENTRY_MAGIC, 1]);
        assert_eq!(decode_entry(&bytes, 1).unwrap(), (1, txn.clone()));
        assert_eq!(decode_entry(&bytes, TEST_NEXT_ENCODING).unwrap(), (1, txn));
    }

    #[test]
    fn an_encoding_above_the_builds_is_unsupported_not_garbage() {
        let bytes = encode_entry(&set_encoding(TEST_NEXT_ENCODING), TEST_NEXT_ENCODING).unwrap();
        match decode_entry(&bytes, CURRENT_ENCODING) {
            Err(EntryError::Unsupported { encoding, max }) => {
                assert_eq!((encoding, max), (TEST_NEXT_ENCODING, CURRENT_ENCODING))
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        assert!(decode_entry(&bytes, TEST_NEXT_ENCODING).is_ok());
    }

    #[test]
    fn ops_need_their_encoding() {
        let gate = set_encoding(1);
        assert_eq!(
            encode_entry(&gate, 0),
            Err(NotEnabled {
                op: "set_encoding",
                needs: 1,
                active: 0
            })
        );
        let probe = Txn {
            client_id: "c".into(),
            request_seq: 1,
            op: Op::Probe { user: "alice".into() },
        };
        assert!(encode_entry(&probe, CURRENT_ENCODING).is_err());
        assert!(encode_entry(&probe, TEST_NEXT_ENCODING).is_ok());
        // An entry that claims an encoding without its op is garbage, the same on every replica.
        let mut smuggled = vec![ENTRY_MAGIC, 1];
        smuggled.extend(bincode::serde::encode_to_vec(&probe, bincode::config::standard()).unwrap());
        assert!(matches!(
            decode_entry(&smuggled, TEST_NEXT_ENCODING),
            Err(EntryError::Garbage(_))
        ));
    }

    /// Encoding 4's ops: a group at encoding 3 cannot take them (`NotEnabled`, what the API
    /// answers 409 `not_enabled`); an entry claiming encoding 3 with one is garbage; a build of
    /// encoding 3 meeting an encoding-4 entry stops instead of rejecting it.
    #[test]
    fn copies_moves_and_subscriptions_need_encoding_4() {
        let uids = crate::txn::UidSet::parse("1:5").unwrap();
        let ops = [
            Op::Copy {
                user: "u".into(),
                from: "INBOX".into(),
                to: "Archive".into(),
                uids: uids.clone(),
            },
            Op::Move {
                user: "u".into(),
                from: "INBOX".into(),
                to: "Archive".into(),
                uids,
            },
            Op::Subscribe {
                user: "u".into(),
                mailbox: "INBOX".into(),
            },
            Op::Unsubscribe {
                user: "u".into(),
                mailbox: "INBOX".into(),
            },
        ];
        for op in ops {
            let txn = Txn {
                client_id: "c".into(),
                request_seq: 1,
                op,
            };
            let name = txn.op.describe();
            assert_eq!(
                encode_entry(&txn, 3),
                Err(NotEnabled {
                    op: name,
                    needs: 4,
                    active: 3
                })
            );
            let entry = encode_entry(&txn, 4).unwrap();
            assert_eq!(&entry[..2], &[ENTRY_MAGIC, 4]);
            assert_eq!(decode_entry(&entry, CURRENT_ENCODING).unwrap(), (4, txn.clone()));
            assert!(
                matches!(
                    decode_entry(&entry, 3),
                    Err(EntryError::Unsupported { encoding: 4, max: 3 })
                ),
                "{name}"
            );
            let mut smuggled = entry.clone();
            smuggled[1] = 3;
            assert!(
                matches!(
                    decode_entry(&smuggled, CURRENT_ENCODING),
                    Err(EntryError::Garbage(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn only_the_gate_entry_may_be_above_the_active_encoding() {
        assert!(admissible(1, &set_encoding(1), 0));
        assert!(
            !admissible(2, &set_encoding(1), 0),
            "a gate entry in another encoding"
        );
        assert!(!admissible(1, &create_inbox(), 0));
        assert!(admissible(1, &create_inbox(), 1));
        assert!(admissible(0, &create_inbox(), 1), "older encodings stay readable");
    }

    #[test]
    fn garbage_is_garbage() {
        for bytes in [&b""[..], b"\x00", b"\xff\xff", b"\x41", &[ENTRY_MAGIC]] {
            assert!(
                matches!(decode_entry(bytes, CURRENT_ENCODING), Err(EntryError::Garbage(_))),
                "{bytes:?}"
            );
        }
        let mut longer = encode_entry(&create_inbox(), 1).unwrap();
        longer.push(0);
        assert!(matches!(decode_entry(&longer, 1), Err(EntryError::Garbage(_))));
    }

    /// Regression (fuzz target `log_entry`, whose round trip of every entry that decodes found
    /// it): `ENTRY_MAGIC, 0` then a transaction decoded as an encoding-0 entry, a second
    /// spelling of encoding 0 that no build writes (encoding 0 is the bare transaction).
    #[test]
    fn the_entry_magic_never_introduces_encoding_0() {
        let mut bytes = vec![ENTRY_MAGIC, 0];
        bytes.extend(encode_entry(&create_inbox(), 0).unwrap());
        assert!(matches!(
            decode_entry(&bytes, CURRENT_ENCODING),
            Err(EntryError::Garbage(_))
        ));
        let found = b"\xd7\x00\x00\x00\x00\x00\x00\x01\x00\x00\x02\x09fuzz-s\x00\x02eed\x10\x06\x01";
        assert!(matches!(
            decode_entry(found, CURRENT_ENCODING),
            Err(EntryError::Garbage(_))
        ));
    }

    /// Regression (fuzz target `log_entry`): an entry whose string or list length claims far
    /// more than the entry holds — client id "c", request 1, a create whose user name claims
    /// 2^40 bytes (varint 253, then a u64) — made the decoder allocate the claimed length before
    /// reading it, aborting the process on every replica that applied the entry. It is garbage,
    /// rejected alike everywhere.
    #[test]
    fn a_length_claiming_more_than_the_entry_is_garbage_not_an_allocation() {
        let mut bytes = vec![1, b'c', 1, 0, 253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(b"alice");
        assert!(matches!(
            decode_entry(&bytes, CURRENT_ENCODING),
            Err(EntryError::Garbage(_))
        ));
        // The same claim in a list of messages (the input the fuzzer found has one of 3.4e9).
        let mut append = encode_entry(&crate::txn::test_txns::append("c", 2, 7), 1).unwrap();
        let messages_at = append.len() - (16 + 1 + 5 + 1) - 1;
        assert_eq!(append[messages_at], 1, "the message count");
        append.splice(messages_at..=messages_at, [252, 0x78, 0xe2, 0xa7, 0xca]);
        assert!(matches!(
            decode_entry(&append, CURRENT_ENCODING),
            Err(EntryError::Garbage(_))
        ));
    }
}
