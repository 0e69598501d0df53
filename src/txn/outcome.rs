//! `Outcome`: what applying a transaction did. Stored in the session table, so a retried request
//! gets back exactly the first answer.

use serde::{Deserialize, Serialize};

use super::{Guid, UidSet};

/// The result of applying a transaction. Expected, state-dependent refusals are `Rejected`
/// values, not errors: they are as deterministic as successes and are replayed to retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created {
        mailbox_guid: Guid,
        uid_validity: u32,
    },
    Renamed {
        /// Mailboxes renamed, children included.
        mailboxes: u32,
    },
    Deleted {
        mailbox_guid: Guid,
    },
    Appended {
        uid_validity: u32,
        first_uid: u32,
        last_uid: u32,
        modseq: u64,
    },
    Stored {
        /// The new MODSEQ, if any message changed.
        modseq: Option<u64>,
        changed: UidSet,
        /// UIDs that failed UNCHANGEDSINCE (RFC 7162 `MODIFIED`).
        modified: UidSet,
    },
    Expunged {
        modseq: Option<u64>,
        expunged: UidSet,
        /// UIDs left alone because their GUID did not match `expected_guids`.
        guid_mismatch: UidSet,
    },
    Rejected(Rejection),
    /// The group's active encoding after an [`crate::txn::Op::SetEncoding`].
    EncodingSet {
        encoding: u8,
    },
    /// A [`crate::txn::Op::Probe`] was applied.
    Probed,
}

/// Why the state machine refused a transaction. Deterministic: every replica refuses alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[error("no mailbox {mailbox:?} for this user")]
    NoSuchMailbox { mailbox: String },
    #[error("mailbox {mailbox:?} already exists")]
    MailboxExists { mailbox: String },
    #[error("mailbox {mailbox:?} has children; delete them first")]
    HasChildren { mailbox: String },
    #[error("cannot rename {from:?} to {to:?}: the target is inside the source")]
    RenameIntoSelf { from: String, to: String },
    #[error("the mailbox keyword table is full ({max} keywords)")]
    KeywordLimit { max: usize },
    #[error("the mailbox has no UIDs left")]
    UidSpaceExhausted,
    #[error("no UIDVALIDITY values left in this group")]
    UidValidityExhausted,
    #[error("the user has the maximum of {max} mailboxes")]
    TooManyMailboxes { max: usize },
    #[error("request_seq {request_seq} of this client is older than its last request {last_seq}")]
    StaleRequest { request_seq: u64, last_seq: u64 },
    #[error("invalid transaction: {message}")]
    Invalid { message: String },
    /// From log encoding 2 on: the client's last request had this `request_seq` but other
    /// content (a client reusing a sequence number for a new request).
    #[error("request_seq {request_seq} of this client was used for another request")]
    RequestReused { request_seq: u64 },
}

impl Outcome {
    pub fn is_rejected(&self) -> bool {
        matches!(self, Outcome::Rejected(_))
    }
}
