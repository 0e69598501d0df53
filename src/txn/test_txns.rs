//! Transactions the unit tests of several modules build: user "u"'s INBOX and appends to it.

use super::{NewMessage, Op, Txn};

/// Creates user "u"'s INBOX (mailbox GUID `[1; 16]`, UIDVALIDITY 9), as client "c", request 1.
pub(crate) fn create_inbox() -> Txn {
    Txn {
        client_id: "c".into(),
        request_seq: 1,
        op: Op::CreateMailbox {
            user: "u".into(),
            mailbox: "INBOX".into(),
            mailbox_guid: [1; 16],
            uid_validity: 9,
        },
    }
}

/// Appends one 10-byte message with GUID `[guid; 16]` to that INBOX.
pub(crate) fn append(client: &str, seq: u64, guid: u8) -> Txn {
    Txn {
        client_id: client.into(),
        request_seq: seq,
        op: Op::Append {
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: vec![NewMessage {
                guid: [guid; 16],
                size: 10,
                internal_date: 1_700_000_000,
                flags: Vec::new(),
            }],
        },
    }
}
