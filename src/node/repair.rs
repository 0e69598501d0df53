//! Repair: replaces this replica's file of one mailbox by a healthy replica's copy
//! ([`repair_mailbox`]), when that copy is exactly the mailbox at this replica's position, then
//! rewrites this replica's checkpoint so a crash recovery cannot bring the damaged copy back. The
//! rest of the group is not touched and the group keeps serving; its applies wait only while the
//! file is swapped.
//!
//! The copy is fetched from the source's `GET .../image`; a copy older than what this replica
//! has applied is asked for again at a newer position, and a copy newer than this replica waits
//! for this replica to apply that far (`state_machine::repair` decides which). The route,
//! `api::admin::repair`, passes a repair of another replica on to that node.

use std::time::{Duration, Instant};

use dovetail_raft::{NodeId, ProposeError, RaftNode};
use hyper::http::Method;

use super::mail_group::MailGroup;
use super::peer_api::{PeerApi, PeerApiError};
use super::replica::{on_group, ReplicaError, APPLIED_HEADER};
use crate::index::LogPosition;
use crate::state_machine::apply::hex;
use crate::state_machine::{RepairWait, SmError};
use crate::txn::Guid;

/// A repair that installed a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// The node whose copy was taken.
    pub source: NodeId,
    /// The position the installed copy records.
    pub position: LogPosition,
    /// The group position the source had applied when it took the copy.
    pub source_applied: u64,
    /// Copies fetched, the installed one included.
    pub attempts: u32,
}

/// Why a repair did not install a copy.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Group(#[from] ProposeError),
    #[error("the group has no other voter to copy from")]
    NoOtherVoter,
    #[error("a replica cannot be repaired from itself")]
    SourceIsReplica,
    #[error("node {node_id} is not a member of group {group}")]
    NotMember { node_id: NodeId, group: u32 },
    /// The group has no such mailbox on this replica, or on the source at this replica's
    /// position: a client's mistake (a GUID that verify did not name), not a reason to retry.
    #[error("group {group} has no mailbox {mailbox_guid} on node {node_id}")]
    NoSuchMailbox {
        group: u32,
        mailbox_guid: String,
        node_id: NodeId,
    },
    /// The mailbox kept changing: no copy matched this replica's position before the deadline.
    #[error("group {group}: no exact copy of {mailbox_guid} before the deadline ({attempts} attempts); the mailbox is busy, try again")]
    Busy {
        group: u32,
        mailbox_guid: String,
        attempts: u32,
    },
    /// The source did not answer, or refused.
    #[error("node {node_id}: {error}")]
    Peer { node_id: NodeId, error: PeerApiError },
    #[error("node {node_id} sent no {APPLIED_HEADER} header")]
    NoAppliedHeader { node_id: NodeId },
    /// The copy does not decode or check, or the checkpoint could not be rewritten.
    #[error("the copy from node {node_id} was not installed: {error}")]
    BadCopy { node_id: NodeId, error: SmError },
}

/// Replaces this node's copy of mailbox `mailbox_guid` in `group` by the copy of `source`
/// (default: the group's leader, or another voter if this node leads), within `timeout`.
pub async fn repair_mailbox(
    raft: &RaftNode<MailGroup>,
    peers: &PeerApi,
    group: u32,
    mailbox_guid: Guid,
    source: Option<NodeId>,
    timeout: Duration,
) -> Result<Repaired, RepairError> {
    let members = raft.member_nodes(group)?;
    let this_node = raft.node_id();
    let metrics = raft.metrics(group)?;
    let source = match source {
        Some(source) => source,
        None => match metrics.current_leader {
            Some(leader) if leader != this_node => leader,
            _ => *metrics
                .voters
                .iter()
                .find(|&&v| v != this_node)
                .ok_or(RepairError::NoOtherVoter)?,
        },
    };
    if source == this_node {
        return Err(RepairError::SourceIsReplica);
    }
    let source_addr = &members
        .get(&source)
        .ok_or(RepairError::NotMember {
            node_id: source,
            group,
        })?
        .api_addr;
    let guid_hex = hex(&mailbox_guid);
    let here = raft.with_app(group, move |app| {
        app.machine().state().mailboxes().contains_key(&mailbox_guid)
    })?;
    if !here {
        return Err(RepairError::NoSuchMailbox {
            group,
            mailbox_guid: guid_hex,
            node_id: this_node,
        });
    }
    let deadline = Instant::now() + timeout;
    let mut min_applied = metrics.applied.map_or(0, |a| a.index);
    let mut attempts = 0;
    loop {
        attempts += 1;
        if Instant::now() >= deadline {
            return Err(RepairError::Busy {
                group,
                mailbox_guid: guid_hex,
                attempts,
            });
        }
        let path = format!("/admin/groups/{group}/mailboxes/{guid_hex}/image?min_applied={min_applied}");
        let left = deadline.saturating_duration_since(Instant::now());
        let (headers, bytes) = peers
            .call(Method::GET, source_addr, &path, None, left)
            .await
            .map_err(|error| match error {
                PeerApiError::Status { status: 404, .. } => RepairError::NoSuchMailbox {
                    group,
                    mailbox_guid: guid_hex.clone(),
                    node_id: source,
                },
                error => RepairError::Peer {
                    node_id: source,
                    error,
                },
            })?;
        let source_applied: u64 = headers
            .get(APPLIED_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or(RepairError::NoAppliedHeader { node_id: source })?;
        let bytes = bytes.to_vec();
        let replaced = on_group(raft, group, move |app| {
            let machine = app.machine_mut();
            let replaced = machine.replace_mailbox(&mailbox_guid, bytes, source_applied)?;
            if replaced.is_ok() {
                machine.checkpoint()?;
            }
            Ok::<_, SmError>(replaced)
        })
        .await?
        .map_err(|error| RepairError::BadCopy {
            node_id: source,
            error,
        })?;
        match replaced {
            Ok(position) => {
                tracing::warn!(group, mailbox = %guid_hex, source, position = %position, "repaired a mailbox file from another replica");
                return Ok(Repaired {
                    source,
                    position,
                    source_applied,
                    attempts,
                });
            }
            Err(RepairWait::Target { needed, .. }) => {
                raft.wait_applied(group, needed, deadline).await?;
            }
            Err(RepairWait::Source { needed, .. }) => min_applied = needed,
        }
    }
}
