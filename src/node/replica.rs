//! This node's replica of a group, as verify, repair and backups read it: its digests
//! ([`local_digests`]), a copy of one mailbox file ([`mailbox_image`]), a copy of the whole group
//! at a linearizable cut ([`group_copy`]), and [`on_group`], which runs maintenance on a group's
//! state machine off the runtime threads.

use std::time::Instant;

use dovetail_raft::{ProposeError, RaftNode};

use super::mail_group::MailGroup;
use super::verify::GroupDigests;
use crate::index::{IndexError, LogPosition};
use crate::txn::Guid;

/// The header of an image answer: the group position the copy was taken at.
pub const APPLIED_HEADER: &str = "x-dovetail-applied";
/// The header of a group copy's answer: the read index the copy had to reach.
pub const READ_INDEX_HEADER: &str = "x-dovetail-read-index";

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
    /// A copy of the group could not be written (`out_of_space`: a full disk, or an entry half
    /// applied for want of space; retry later).
    #[error("copying the group: {source}")]
    Copy {
        out_of_space: bool,
        #[source]
        source: std::io::Error,
    },
    /// A copy came out below the read index it had to reach: a broken invariant, never served.
    #[error("group {group}: copy at {cut:?} is below the read index {read_index}")]
    CutBelowReadIndex {
        group: u32,
        cut: Option<LogPosition>,
        read_index: u64,
    },
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

/// A copy of a whole group at a linearizable cut: the group's snapshot stream in a temporary
/// file that nothing else refers to (gone once closed).
#[derive(Debug)]
pub struct CutCopy {
    /// The read index obtained from the group's leader before the copy was taken.
    pub read_index: LogPosition,
    /// The applied position the copy holds. Invariant: `cut.index >= read_index.index`.
    pub cut: Option<LogPosition>,
    /// The snapshot stream, positioned at its end.
    pub file: std::fs::File,
    pub bytes: u64,
}

/// A copy of `group` that holds every write acknowledged before this call (ARCHITECTURE.md §5):
/// a read index from the group's leader, then, once this node has applied it, a copy of the group
/// at its applied position (at or above the read index: applied positions only grow). The copy is
/// written with the group locked, like a checkpoint's first half; the caller streams it out
/// while the group goes on.
pub async fn group_copy(
    raft: &RaftNode<MailGroup>,
    group: u32,
    deadline: Instant,
) -> Result<CutCopy, ReplicaError> {
    let read_index = raft.read_index(group, deadline).await?;
    raft.wait_applied(group, read_index.index, deadline).await?;
    let (file, cut, bytes) = on_group(raft, group, |app| app.export_copy())
        .await?
        .map_err(|source| ReplicaError::Copy {
            out_of_space: dovetail_raft::is_out_of_space(&source),
            source,
        })?;
    let at_or_above = cut.is_some_and(|cut| cut.index >= read_index.index);
    debug_assert!(
        at_or_above,
        "group {group}: copy at {cut:?} below the read index {read_index}"
    );
    if !at_or_above {
        return Err(ReplicaError::CutBelowReadIndex {
            group,
            cut,
            read_index: read_index.index,
        });
    }
    Ok(CutCopy {
        read_index,
        cut,
        file,
        bytes,
    })
}
