//! This node's replica of a group, as verify and repair read it: its digests
//! ([`local_digests`]), a copy of one mailbox file ([`mailbox_image`]), and [`on_group`], which
//! runs maintenance on a group's state machine off the runtime threads.

use std::time::Instant;

use dovetail_raft::{ProposeError, RaftNode};

use super::mail_group::MailGroup;
use super::verify::GroupDigests;
use crate::index::IndexError;
use crate::txn::Guid;

/// The header of an image answer: the group position the copy was taken at.
pub const APPLIED_HEADER: &str = "x-dovetail-applied";

/// Why this node could not read or change its replica of a group.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The group is unknown, stopped, or did not apply far enough before the deadline.
    #[error(transparent)]
    Group(#[from] ProposeError),
    /// The blocking task running the maintenance panicked or was cancelled.
    #[error("maintenance task failed: {reason}")]
    TaskFailed { reason: String },
    /// This node's copy fails its own checks, so it must not be handed out.
    #[error("this node's copy fails its own checks: {0}")]
    Damaged(IndexError),
    /// The mailbox was deleted between the check and the copy.
    #[error("the mailbox vanished while being read")]
    Vanished,
}

/// Runs `f` on the group's application on the blocking pool (it may read whole files).
pub async fn on_group<R: Send + 'static>(
    raft: &RaftNode<MailGroup>,
    group: u32,
    f: impl FnOnce(&mut MailGroup) -> R + Send + 'static,
) -> Result<R, ReplicaError> {
    let raft = raft.clone();
    let answer = tokio::task::spawn_blocking(move || raft.with_app_mut(group, f))
        .await
        .map_err(|e| ReplicaError::TaskFailed {
            reason: e.to_string(),
        })?;
    Ok(answer?)
}

/// This replica's digests of `group`: its applied index, its manifest's digest and one digest per
/// mailbox.
pub async fn local_digests(raft: &RaftNode<MailGroup>, group: u32) -> Result<GroupDigests, ReplicaError> {
    let node_id = raft.node_id();
    on_group(raft, group, move |app| {
        let machine = app.machine();
        GroupDigests {
            node_id,
            group,
            applied: machine.applied().map_or(0, |a| a.index),
            manifest_digest: machine.manifest_digest(),
            mailboxes: machine.mailbox_digests(),
        }
    })
    .await
}

/// This replica's copy of a mailbox file and the group position it was taken at, once the
/// group has applied `min_applied` (waiting until `deadline` at most); `None` if the group has no
/// such mailbox here. A copy that fails its own checks is refused.
pub async fn mailbox_image(
    raft: &RaftNode<MailGroup>,
    group: u32,
    mailbox_guid: Guid,
    min_applied: u64,
    deadline: Instant,
) -> Result<Option<(u64, Vec<u8>)>, ReplicaError> {
    raft.wait_applied(group, min_applied, deadline).await?;
    let copy = on_group(raft, group, move |app| {
        let machine = app.machine();
        let index = machine.state().mailboxes().get(&mailbox_guid)?;
        Some(index.verify().map(|()| machine.mailbox_image(&mailbox_guid)))
    })
    .await?;
    match copy {
        None => Ok(None),
        Some(Err(e)) => Err(ReplicaError::Damaged(e)),
        Some(Ok(None)) => Err(ReplicaError::Vanished),
        Some(Ok(Some(image))) => Ok(Some(image)),
    }
}
