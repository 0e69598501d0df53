//! `ReplicatedNode`: the `MailService` of a cluster member. Writes become Raft entries of the
//! user's group (forwarded to the leader by the raft layer when this node does not lead);
//! reads are served from this node's own index files at the requested freshness.

use std::time::{Duration, Instant};

use dovetail_raft::{ProposeError, RaftNode};

use super::bodies::{BodiesError, NodeBodies};
use super::mail_group::{decode_outcome, MailGroup};
use crate::bodies::{BodyError, BodyId};
use crate::placement::group_of;
use crate::service::{
    Consistency, DeliveryBody, MailService, ReadAck, ReadOptions, ServiceError, StoredBody, WriteAck,
};
use crate::state_machine::GroupStateMachine;
use crate::txn::encoding::encode_entry;
use crate::txn::Txn;

/// Largest encoded transaction accepted as one log entry. Bounds the size of a Raft entry (and of
/// an AppendEntries batch); larger appends must be split by the client.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// A cluster member serving the client API.
pub struct ReplicatedNode {
    raft: RaftNode<MailGroup>,
    bodies: NodeBodies,
    groups: u32,
    timeout: Duration,
    /// Per group, a receiver of the "applied index changed" signal of [`MailService::watch`]
    /// (watchers get clones); its sender belongs to the group's `follow_applied` task, and a
    /// closed one (the task ended) is replaced at the next watch. Bounded by the number of groups.
    applied_watches: std::sync::Mutex<std::collections::BTreeMap<u32, tokio::sync::watch::Receiver<u64>>>,
}

impl ReplicatedNode {
    pub fn new(raft: RaftNode<MailGroup>, bodies: NodeBodies, timeout: Duration) -> ReplicatedNode {
        let groups = raft.group_count();
        ReplicatedNode {
            raft,
            bodies,
            groups,
            timeout,
            applied_watches: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    pub fn raft(&self) -> &RaftNode<MailGroup> {
        &self.raft
    }

    /// [`ServiceError::Removed`] if this node holds that it was removed from `group`.
    fn refuse_if_removed(&self, group: u32) -> Result<(), ServiceError> {
        if self.raft.is_removed(group) {
            return Err(service_error(ProposeError::Removed {
                group_id: group,
                node_id: self.raft.node_id(),
            }));
        }
        Ok(())
    }
}

fn service_error(e: ProposeError) -> ServiceError {
    match e {
        ProposeError::Timeout { .. } => ServiceError::Unavailable {
            reason: e.to_string(),
        },
        ProposeError::Busy { .. } => ServiceError::Busy {
            reason: e.to_string(),
        },
        ProposeError::Shutdown => ServiceError::ShuttingDown,
        ProposeError::NoSpace { .. } => ServiceError::NoSpace {
            reason: e.to_string(),
        },
        ProposeError::Fatal { .. } => ServiceError::GroupStopped {
            reason: e.to_string(),
        },
        ProposeError::UnknownGroup { .. } => ServiceError::Internal {
            message: e.to_string(),
        },
        ProposeError::Removed { .. } => ServiceError::Removed {
            reason: e.to_string(),
        },
    }
}

fn bodies_error(e: BodiesError) -> ServiceError {
    match e {
        BodiesError::Store(BodyError::TooLarge { max }) => ServiceError::BodyTooLarge { max },
        BodiesError::Store(BodyError::Input { source }) => ServiceError::BadBody {
            reason: source.to_string(),
        },
        BodiesError::Store(e) if e.is_out_of_space() => ServiceError::NoSpace {
            reason: format!("the body store: {e}"),
        },
        BodiesError::Store(e) => ServiceError::Internal {
            message: e.to_string(),
        },
        BodiesError::Raft(e) => service_error(e),
        e @ (BodiesError::NoQuorum { .. } | BodiesError::Unavailable { .. }) => ServiceError::Unavailable {
            reason: e.to_string(),
        },
    }
}

/// How long a group's apply watcher waits for the next entry before it looks whether anyone
/// still watches.
const WATCH_RECHECK: Duration = Duration::from_secs(5);

/// Follows `group`'s applied index on this node and sends it on `sender` until nobody but the
/// node's own template receiver watches (or the node stops serving the group). Its end closes
/// the channel: watchers see it and poll instead.
async fn follow_applied(raft: RaftNode<MailGroup>, group: u32, sender: tokio::sync::watch::Sender<u64>) {
    let mut applied = *sender.borrow();
    while sender.receiver_count() > 1 {
        match raft
            .wait_applied(group, applied + 1, Instant::now() + WATCH_RECHECK)
            .await
        {
            Ok(position) => {
                applied = position.index;
                sender.send_replace(applied);
            }
            Err(ProposeError::Timeout { .. }) => {}
            // Shut down, removed or stopped: the receivers see the sender gone and poll.
            Err(_) => return,
        }
    }
}

impl MailService for ReplicatedNode {
    fn node_id(&self) -> u64 {
        self.raft.node_id()
    }

    fn watch(&self, user: &str) -> tokio::sync::watch::Receiver<u64> {
        let group = group_of(user, self.groups);
        let mut watches = self.applied_watches.lock().unwrap_or_else(|e| e.into_inner());
        watches.retain(|_, receiver| receiver.has_changed().is_ok());
        if let Some(receiver) = watches.get(&group) {
            let mut receiver = receiver.clone();
            // Changes before this watch began are no news to this watcher.
            receiver.borrow_and_update();
            return receiver;
        }
        let applied = self
            .raft
            .with_app(group, |app| app.machine().applied())
            .ok()
            .flatten()
            .map_or(0, |a| a.index);
        let (sender, receiver) = tokio::sync::watch::channel(applied);
        watches.insert(group, receiver.clone());
        tokio::spawn(follow_applied(self.raft.clone(), group, sender));
        receiver
    }

    fn group_of_user(&self, user: &str) -> u32 {
        group_of(user, self.groups)
    }

    fn max_message_bytes(&self) -> u64 {
        self.bodies.max_message_bytes()
    }

    async fn store_body<B: DeliveryBody>(&self, user: &str, body: B) -> Result<StoredBody, ServiceError> {
        let group = group_of(user, self.groups);
        self.refuse_if_removed(group)?;
        // As a write: a node out of space, or whose group's leader is known busy, takes no body.
        if let Some(reason) = self.raft.storage_alarm() {
            return Err(ServiceError::NoSpace { reason });
        }
        self.raft.admit_write(group).map_err(service_error)?;
        let deadline = Instant::now() + self.timeout;
        let stored = self
            .bodies
            .deliver(group, body, deadline)
            .await
            .map_err(bodies_error)?;
        Ok(StoredBody {
            id: stored.id,
            size: stored.size,
        })
    }

    async fn open_body(&self, user: &str, id: BodyId) -> Result<std::fs::File, ServiceError> {
        let group = group_of(user, self.groups);
        self.refuse_if_removed(group)?;
        let deadline = Instant::now() + self.timeout;
        match self.bodies.open(group, id, deadline).await {
            Ok(Some(file)) => Ok(file),
            Ok(None) => Err(ServiceError::Unavailable {
                reason: format!("body {id}: no member has a copy"),
            }),
            Err(e) => Err(bodies_error(e)),
        }
    }

    async fn read_local_bodies(&self, user: &str, ids: Vec<BodyId>) -> Vec<Option<Vec<u8>>> {
        if self.refuse_if_removed(group_of(user, self.groups)).is_err() {
            // `open_body` gives each message the reason.
            return vec![None; ids.len()];
        }
        self.bodies.read_local(ids).await
    }

    fn admit_write(&self, user: &str) -> Result<(), ServiceError> {
        self.raft
            .admit_write(group_of(user, self.groups))
            .map_err(service_error)
    }

    async fn write(&self, txn: Txn) -> Result<WriteAck, ServiceError> {
        let group = group_of(txn.op.user(), self.groups);
        self.refuse_if_removed(group)?;
        // In the group's active encoding as this node has applied it: never ahead of the one
        // the log really has, so every member can apply the entry.
        let encoding = self
            .raft
            .with_app(group, MailGroup::encoding)
            .map_err(service_error)?;
        let entry = encode_entry(&txn, encoding)?;
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(ServiceError::TooLarge {
                size: entry.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        let deadline = Instant::now() + self.timeout;
        let proposed = self
            .raft
            .propose(group, entry, deadline)
            .await
            .map_err(service_error)?;
        let outcome = decode_outcome(&proposed.response).map_err(|e| ServiceError::Internal {
            message: e.to_string(),
        })?;
        Ok(WriteAck {
            group,
            position: proposed.position,
            outcome,
        })
    }

    async fn read<R, F>(&self, user: &str, options: ReadOptions, read: F) -> Result<ReadAck<R>, ServiceError>
    where
        R: Send + 'static,
        F: FnOnce(&GroupStateMachine) -> R + Send + 'static,
    {
        let group = group_of(user, self.groups);
        // A removed node's copy no longer follows the group: not even a local read may see it.
        self.refuse_if_removed(group)?;
        let deadline = Instant::now() + self.timeout;
        let mut read_index = None;
        if options.consistency == Consistency::Linearizable {
            let index = self
                .raft
                .read_index(group, deadline)
                .await
                .map_err(service_error)?;
            self.raft
                .wait_applied(group, index.index, deadline)
                .await
                .map_err(service_error)?;
            read_index = Some(index.index);
        }
        if let Some(min_applied) = options.min_applied {
            let applied = self
                .raft
                .with_app(group, |app| app.machine().applied())
                .map_err(service_error)?
                .map_or(0, |a| a.index);
            if min_applied > applied {
                // Either a token of a write this node has not applied yet (wait for it) or no
                // token at all (a client's mistake: refuse it now, not after the deadline). The
                // leader's read index covers every write acknowledged before this read began,
                // so a token above it came from no acknowledged write of this group.
                let committed = match read_index {
                    Some(index) => index,
                    None => {
                        self.raft
                            .read_index(group, deadline)
                            .await
                            .map_err(service_error)?
                            .index
                    }
                };
                if min_applied > committed {
                    return Err(ServiceError::BeyondCommitted {
                        group,
                        min_applied,
                        committed,
                    });
                }
                self.raft
                    .wait_applied(group, min_applied, deadline)
                    .await
                    .map_err(service_error)?;
            }
        }
        let (applied, value) = self
            .raft
            .with_app(group, |app| (app.machine().applied(), read(app.machine())))
            .map_err(service_error)?;
        Ok(ReadAck {
            group,
            applied,
            value,
        })
    }
}
