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
    /// A [`crate::txn::Op::Copy`]: what UIDPLUS's COPYUID needs (RFC 4315).
    Copied {
        /// The target mailbox's UIDVALIDITY.
        uid_validity: u32,
        /// Which source UIDs were copied, and the UIDs their copies got.
        uids: UidMap,
        /// The target's new MODSEQ; `None` when nothing was copied (no UID was in the source).
        modseq: Option<u64>,
    },
    /// A [`crate::txn::Op::Move`]: the copy's answer, and the expunge of the source messages.
    Moved {
        uid_validity: u32,
        uids: UidMap,
        modseq: Option<u64>,
        /// The source UIDs expunged. Invariant: equal to `uids.source` (every message moved
        /// left its source, in the same entry).
        expunged: UidSet,
        /// The source's new MODSEQ (the expunge's); `None` when nothing was moved.
        source_modseq: Option<u64>,
    },
    /// A [`crate::txn::Op::Subscribe`]; `changed` is false if the name was subscribed already.
    Subscribed {
        changed: bool,
    },
    /// A [`crate::txn::Op::Unsubscribe`]; `changed` is false if the name was not subscribed.
    Unsubscribed {
        changed: bool,
    },
}

/// The source UIDs of a copy and the target UIDs of their copies, compactly: the copies got
/// consecutive target UIDs in source-UID order, so the i-th source UID (ascending) was copied to
/// `first_target + i`. Stored in the session table, so its size follows the source set's ranges,
/// not the number of messages. Invariant: `first_target == 0` exactly when `source` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidMap {
    pub source: UidSet,
    pub first_target: u32,
}

impl UidMap {
    /// The map of no copy.
    pub fn empty() -> UidMap {
        UidMap {
            source: UidSet::new(),
            first_target: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// The target UIDs (one range, or none).
    pub fn target(&self) -> UidSet {
        if self.source.is_empty() {
            return UidSet::new();
        }
        let last = self.first_target + (self.source.len() - 1) as u32;
        UidSet::from_ranges([(self.first_target, last)]).expect("one ascending range")
    }

    /// (source UID, target UID) pairs in source-UID order.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.source.iter().zip(self.first_target..)
    }
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
    /// From log encoding 4 on: the user has as many subscriptions as a user may have.
    #[error("the user has the maximum of {max} subscriptions")]
    TooManySubscriptions { max: usize },
}

impl Outcome {
    pub fn is_rejected(&self) -> bool {
        matches!(self, Outcome::Rejected(_))
    }
}
