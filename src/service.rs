//! `MailService`: what the HTTP API needs from a node — propose a transaction in a user's group,
//! read a user's group at a chosen consistency. The replicated node implements it over Raft; API
//! tests implement it over local group directories. Keeping the API behind this seam means the
//! HTTP layer knows nothing of openraft.

use std::future::Future;

use serde::Deserialize;

use sha2::Digest;

use crate::bodies::BodyId;
use crate::index::LogPosition;
use crate::state_machine::GroupStateMachine;
use crate::txn::{Guid, NewMessage, Op, Outcome, Txn};

/// An applied write: where it landed and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAck {
    pub group: u32,
    /// The entry's log position; its index is the read-your-writes token.
    pub position: LogPosition,
    pub outcome: Outcome,
}

/// The result of a read, with the applied position it was served at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAck<R> {
    pub group: u32,
    pub applied: Option<LogPosition>,
    pub value: R,
}

/// How fresh a read must be (ARCHITECTURE.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Served from this node's index as it is; the response says how far it has applied.
    Local,
    /// The node learns the leader's commit index, waits until it has applied that far, and reads
    /// locally: no stale reads, also on followers.
    #[default]
    Linearizable,
}

/// A read's freshness requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOptions {
    pub consistency: Consistency,
    /// Read-your-writes: wait until the group has applied at least this log index (a token from
    /// an earlier write of the same user).
    pub min_applied: Option<u64>,
}

/// Why a node could not serve a request. Distinct from transaction rejections, which are
/// outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// No leader or no quorum answered before the deadline; the write may or may not apply later.
    #[error("no quorum before the deadline: {reason}")]
    Unavailable { reason: String },
    /// A bounded queue on the way to the group's leader was full: the write (or read index) was
    /// not taken and will never apply. The client should retry after a pause.
    #[error("busy: {reason}")]
    Busy { reason: String },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The encoded transaction is larger than one log entry may be.
    #[error("the transaction is {size} bytes encoded; at most {max} fit in one log entry (split the batch)")]
    TooLarge { size: usize, max: usize },
    /// The user's group stopped on this node (a storage failure, or a log encoding this node's
    /// release cannot apply): other nodes may still serve it.
    #[error("{reason}")]
    GroupStopped { reason: String },
    /// This node's disk is (nearly) full: it takes no writes until space returns (reads work).
    #[error("{reason}")]
    NoSpace { reason: String },
    /// This node was removed from the user's group: it serves neither reads nor writes of it
    /// (its copy stopped following the group); the group's members do.
    #[error("{reason}")]
    Removed { reason: String },
    /// A read's `min_applied` is above every log index the group's leader has committed: it is
    /// no token of an acknowledged write of this group (a client's mistake, not a reason to
    /// wait and retry).
    #[error("min_applied {min_applied} is beyond anything group {group} has committed ({committed}): not a token of this group's writes")]
    BeyondCommitted {
        group: u32,
        min_applied: u64,
        committed: u64,
    },
    /// The op needs a log encoding the group has not enabled yet (a rolling upgrade is not
    /// finished): a client mistake for now, not a reason to retry soon.
    #[error(transparent)]
    NotEnabled(#[from] crate::txn::encoding::NotEnabled),
    /// A delivery's message is larger than the node takes (`--max-message-bytes`).
    #[error("the message is larger than {max} bytes (--max-message-bytes)")]
    BodyTooLarge { max: u64 },
    /// A delivery's body could not be read to its end (the client's stream broke).
    #[error("the message could not be read: {reason}")]
    BadBody { reason: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

/// A delivery's body, stored durably on a majority of its group's voters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBody {
    pub id: BodyId,
    pub size: u64,
}

/// A new random GUID (a mailbox's, or a message's without a client session).
pub fn random_guid() -> Guid {
    let mut guid = [0u8; 16];
    getrandom::fill(&mut guid).expect("the OS random source is available");
    guid
}

/// The proposer's clock in seconds since the epoch (a message's default INTERNALDATE, a new
/// mailbox's suggested UIDVALIDITY).
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A delivered message's GUID: with a client session, derived from the session and the body,
/// so that a retry (through any node) is the same request; without one (`None`), random.
pub fn delivery_guid(client: Option<&(String, u64)>, body: &BodyId) -> Guid {
    let Some(client) = client else {
        return random_guid();
    };
    let mut hash = sha2::Sha256::new();
    hash.update(b"dovetail delivery guid\0");
    hash.update(client.0.as_bytes());
    hash.update(client.1.to_be_bytes());
    hash.update(body.0);
    hash.finalize()[..16].try_into().expect("16 of 32 bytes")
}

/// The entry of one delivery: the message `stored` (its body already on a majority of the
/// group's voters) into `mailbox`. Every way in (HTTP, LMTP) builds its deliveries here.
pub fn deliver_op(
    user: String,
    mailbox: String,
    stored: StoredBody,
    guid: Guid,
    internal_date: i64,
    flags: Vec<String>,
) -> Op {
    Op::Deliver {
        user,
        mailbox,
        messages: vec![NewMessage {
            guid,
            size: stored.size,
            internal_date,
            flags,
        }],
        bodies: vec![stored.id.0],
    }
}

/// What a delivery's bytes arrive as: any stream of byte chunks (an HTTP request's body, an
/// LMTP DATA reader's).
pub trait DeliveryBody:
    hyper::body::Body<Data = hyper::body::Bytes, Error: std::fmt::Display> + Unpin + Send + 'static
{
}

impl<B> DeliveryBody for B where
    B: hyper::body::Body<Data = hyper::body::Bytes, Error: std::fmt::Display> + Unpin + Send + 'static
{
}

/// What the HTTP API needs from a node.
pub trait MailService: Send + Sync + 'static {
    /// This node's id (for responses and logs).
    fn node_id(&self) -> u64;

    /// Whether a write of `user` would be refused as busy, as far as the node can tell before
    /// the request is read (`ServiceError::Busy` if so). Cheap; the API asks it before it reads
    /// a write's body. A write it admits may still be refused by [`MailService::write`].
    fn admit_write(&self, _user: &str) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Proposes `txn` in its user's group and answers once it is committed and applied.
    fn write(&self, txn: Txn) -> impl Future<Output = Result<WriteAck, ServiceError>> + Send;

    /// The group `user`'s mailboxes (and bodies) belong to: deliveries of one message to users
    /// of one group store its body once.
    fn group_of_user(&self, _user: &str) -> u32 {
        0
    }

    /// Largest message a delivery may carry.
    fn max_message_bytes(&self) -> u64 {
        0
    }

    /// Stores a delivery's body (what `body` yields, streamed) on this node and on a majority
    /// of the voters of `user`'s group, before the entry that names it is proposed.
    fn store_body<B: DeliveryBody>(
        &self,
        _user: &str,
        _body: B,
    ) -> impl Future<Output = Result<StoredBody, ServiceError>> + Send {
        async {
            Err(ServiceError::Internal {
                message: "this service stores no bodies".to_string(),
            })
        }
    }

    /// Opens body `id` of `user`'s group, checked: from this node's store, or fetched at once
    /// from a member that has a good copy.
    fn open_body(
        &self,
        _user: &str,
        _id: BodyId,
    ) -> impl Future<Output = Result<std::fs::File, ServiceError>> + Send {
        async {
            Err(ServiceError::Internal {
                message: "this service stores no bodies".to_string(),
            })
        }
    }

    /// The checked bytes of those of `ids` (bodies of `user`'s group) that this node's store
    /// holds, read in one go: `None` for each of the others, which [`MailService::open_body`]
    /// then gets (from a member, or with the reason it cannot). The default reads none.
    fn read_local_bodies(
        &self,
        _user: &str,
        ids: Vec<BodyId>,
    ) -> impl Future<Output = Vec<Option<Vec<u8>>>> + Send {
        let none = vec![None; ids.len()];
        async move { none }
    }

    /// A signal that changes whenever this node applies more of `user`'s group (its value: the
    /// applied log index, as far as the node tracks it). IMAP's IDLE and NOOP wake on it. The
    /// default sends nothing: its sender is gone at once, and the caller polls instead.
    fn watch(&self, _user: &str) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }

    /// Runs `read` against `user`'s group once it is as fresh as `options` asks.
    fn read<R, F>(
        &self,
        user: &str,
        options: ReadOptions,
        read: F,
    ) -> impl Future<Output = Result<ReadAck<R>, ServiceError>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&GroupStateMachine) -> R + Send + 'static;
}
