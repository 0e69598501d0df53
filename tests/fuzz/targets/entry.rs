//! `log_entry`: one request of a committed log entry, as every replica decodes and applies it.

use dovetail::index::LogPosition;
use dovetail::state_machine::GroupState;
use dovetail::txn::encoding::{admissible, decode_entry, encode_entry, CURRENT_ENCODING, TEST_NEXT_ENCODING};
use dovetail::txn::{NewMessage, Op, Txn};

/// A group as the entries find it: user "u" has an INBOX with three messages and one keyword.
fn base_group() -> GroupState<dovetail::state_machine::MemoryFiles> {
    let mut group = GroupState::in_memory();
    let txn = |seq, op| Txn {
        client_id: "fuzz".into(),
        request_seq: seq,
        op,
    };
    let ops = [
        Op::CreateMailbox {
            user: "u".into(),
            mailbox: "INBOX".into(),
            mailbox_guid: [1; 16],
            uid_validity: 9,
        },
        Op::Append {
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: (1..=3u8)
                .map(|i| NewMessage {
                    guid: [i; 16],
                    size: 10,
                    internal_date: 1_700_000_000,
                    flags: if i == 2 { vec!["$Work".into()] } else { vec![] },
                })
                .collect(),
        },
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let outcome = group
            .apply(LogPosition::new(1, i as u64 + 1), &txn(i as u64 + 1, op))
            .expect("the base group applies");
        assert!(!outcome.expect("new").is_rejected());
    }
    group
}

/// Decodes the request as a node of this build does (and as one of the next, test-only
/// encoding), and applies what decodes as `MailGroup::apply` does: an admissible entry goes
/// through `GroupState::apply` (session check, validation, the op). An entry that decodes
/// re-encodes to the same transaction.
pub fn log_entry(data: &[u8]) {
    for max in [CURRENT_ENCODING, TEST_NEXT_ENCODING] {
        let Ok((encoding, txn)) = decode_entry(data, max) else {
            continue;
        };
        let again = encode_entry(&txn, encoding).expect("a decoded entry is in its own encoding");
        assert_eq!(decode_entry(&again, max).expect("re-encoded").1, txn);
        if max == CURRENT_ENCODING && admissible(encoding, &txn, encoding) {
            let mut group = base_group();
            let _ = group.apply(LogPosition::new(2, 3), &txn);
            let _ = group.digest();
        }
    }
}
