//! Index transactions: what a client may ask for (`Txn`, `Op`), their validation, their results.
//!
//! A `Txn` is one Raft entry and is applied atomically. Everything an op needs to be applied
//! deterministically travels inside it: the proposed UIDVALIDITY and mailbox GUID of a create, the
//! internal dates of appended messages. UIDs and MODSEQs are *not* in the op: the state machine
//! assigns them at apply time.
//!
//! - [`encoding`]: how a `Txn` becomes a log entry; the encodings a build can apply.
//! - [`uid_set`]: `UidSet`, compact sets of UIDs.
//! - [`validate`]: the checks every op passes before it is proposed (and again when applied).
//! - [`outcome`]: `Outcome` and `Rejection`, the result of applying an op.

pub mod encoding;
pub mod outcome;
pub mod uid_set;
pub mod validate;

#[cfg(test)]
pub(crate) mod test_txns;

use serde::{Deserialize, Serialize};

pub use outcome::{Outcome, Rejection, UidMap};
pub use uid_set::{UidSet, UidSetError};
pub use validate::TxnError;

/// Longest client id, in bytes (a legacy log entry starts with the id's length, so it is also
/// below `encoding::ENTRY_MAGIC`).
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Most bytes of a client's input an error message or a log line quotes: a 10 KB bad name is
/// not echoed.
pub const MAX_QUOTED_BYTES: usize = 64;

/// `input` cut to at most [`MAX_QUOTED_BYTES`] (on a character boundary), marked when cut.
pub fn quoted(input: &str) -> String {
    if input.len() <= MAX_QUOTED_BYTES {
        return input.to_string();
    }
    let mut end = MAX_QUOTED_BYTES;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &input[..end], input.len())
}

/// A 16-byte GUID (mailbox GUID, or a message's content id).
pub type Guid = [u8; 16];

/// One index transaction: an op plus the client session fields that make retries exactly-once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Identifies the client session; one request at a time per client id.
    pub client_id: String,
    /// Increases by one per new request of this client; a retry reuses it.
    pub request_seq: u64,
    pub op: Op,
}

/// What a transaction does. Every variant names its user and mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create a mailbox. `uid_validity` is the proposer's suggestion (its clock); the state machine
    /// raises it if needed so it is strictly greater than any earlier one.
    CreateMailbox {
        user: String,
        mailbox: String,
        mailbox_guid: Guid,
        uid_validity: u32,
    },
    /// Rename a mailbox and its children (`from/...` becomes `to/...`). UIDVALIDITY is kept.
    RenameMailbox { user: String, from: String, to: String },
    /// Delete a mailbox that has no children.
    DeleteMailbox { user: String, mailbox: String },
    /// Append messages; they get consecutive UIDs and one new MODSEQ.
    Append {
        user: String,
        mailbox: String,
        messages: Vec<NewMessage>,
    },
    /// Change flags and keywords of the given UIDs (UIDs not present are ignored, as in IMAP).
    Store {
        user: String,
        mailbox: String,
        uids: UidSet,
        mode: StoreMode,
        /// System flags (`\Seen`, ...) and keywords, as IMAP spells them.
        flags: Vec<String>,
        /// RFC 7162: messages whose MODSEQ is above this are left alone and reported.
        unchanged_since: Option<u64>,
    },
    /// Expunge the given UIDs. A UID listed in `expected_guids` is expunged only if its message
    /// GUID matches (Dovecot's EXPUNGE_GUID), so a replayed expunge never hits another message.
    Expunge {
        user: String,
        mailbox: String,
        uids: UidSet,
        #[serde(default)]
        expected_guids: Vec<(u32, Guid)>,
    },
    /// The encoding gate: from this entry on, the group's log uses encoding `version`
    /// ([`encoding`]). Proposed by a group's leader once every member can apply it; never lowers
    /// the active encoding. Names no user.
    SetEncoding { version: u8 },
    /// Changes nothing but the session table; exists only in [`encoding::TEST_NEXT_ENCODING`], the
    /// encoding a test build pretends is the next release's (the rolling-upgrade test).
    Probe { user: String },
    /// Append messages whose bodies are in the body store (log encoding 3): as `Append`, and
    /// each record names its message's body, `bodies[i]` the id of message i's body (128 bits
    /// of its SHA-256, `bodies::BodyId`), stored on a majority of the group's voters before
    /// this was proposed.
    Deliver {
        user: String,
        mailbox: String,
        messages: Vec<NewMessage>,
        bodies: Vec<[u8; 16]>,
    },
    /// Copy the messages of `from` with these UIDs into `to`, a mailbox of the same user (so of
    /// the same group) (log encoding 4; IMAP COPY, RFC 3501 §6.4.7). The copies get consecutive
    /// new UIDs in `to` in source-UID order and one new MODSEQ of `to`; flags, keywords, message
    /// GUID, size, internal date and body id are kept (a body is stored once, however many
    /// records name it). UIDs not in `from` are skipped. `from == to` copies within a mailbox.
    Copy {
        user: String,
        from: String,
        to: String,
        uids: UidSet,
    },
    /// As [`Op::Copy`], and the copied messages are expunged from `from` in the same entry
    /// (log encoding 4; RFC 6851 MOVE, atomic: one entry). `from == to` is refused.
    Move {
        user: String,
        from: String,
        to: String,
        uids: UidSet,
    },
    /// Add `mailbox` to the user's subscriptions (log encoding 4; RFC 3501 SUBSCRIBE). The name
    /// need not be a mailbox: a subscription outlives a deletion and is not renamed with one.
    Subscribe { user: String, mailbox: String },
    /// Remove `mailbox` from the user's subscriptions (log encoding 4; RFC 3501 UNSUBSCRIBE).
    Unsubscribe { user: String, mailbox: String },
}

/// A message to append: its body lives elsewhere, identified by `guid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub guid: Guid,
    pub size: u64,
    /// Seconds since the Unix epoch, chosen by the proposer.
    pub internal_date: i64,
    #[serde(default)]
    pub flags: Vec<String>,
}

/// How a store combines the given flags with a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreMode {
    Add,
    Remove,
    Replace,
}

impl Op {
    /// The user the op belongs to (it picks the group).
    pub fn user(&self) -> &str {
        match self {
            Op::CreateMailbox { user, .. }
            | Op::RenameMailbox { user, .. }
            | Op::DeleteMailbox { user, .. }
            | Op::Append { user, .. }
            | Op::Store { user, .. }
            | Op::Expunge { user, .. }
            | Op::Deliver { user, .. }
            | Op::Copy { user, .. }
            | Op::Move { user, .. }
            | Op::Subscribe { user, .. }
            | Op::Unsubscribe { user, .. }
            | Op::Probe { user } => user,
            Op::SetEncoding { .. } => "",
        }
    }

    /// A short name for logs and metrics.
    pub fn describe(&self) -> &'static str {
        match self {
            Op::CreateMailbox { .. } => "create_mailbox",
            Op::RenameMailbox { .. } => "rename_mailbox",
            Op::DeleteMailbox { .. } => "delete_mailbox",
            Op::Append { .. } => "append",
            Op::Store { .. } => "store",
            Op::Expunge { .. } => "expunge",
            Op::SetEncoding { .. } => "set_encoding",
            Op::Probe { .. } => "probe",
            Op::Deliver { .. } => "deliver",
            Op::Copy { .. } => "copy",
            Op::Move { .. } => "move",
            Op::Subscribe { .. } => "subscribe",
            Op::Unsubscribe { .. } => "unsubscribe",
        }
    }
}
