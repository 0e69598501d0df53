//! The body sweep: one periodic pass over this node's store against what its applied index
//! references (ARCHITECTURE.md §8, "Bodies"). It
//! - **collects** the bodies no record references once they are older than `--body-gc-grace`
//!   (`bodies::collector`: listed first, references second, each deletion re-checked), and
//! - **fetches** the referenced bodies the store lacks, on the background connections: what a
//!   node missed while it was down, partitioned or behind a full backlog, and what a new member
//!   (a learner) has never had — the full body resync. A member whose backlog overflowed asks
//!   for a pass at once (`POST /admin/bodies/sweep`), as does `repair`.
//!
//! A pass runs only while every group on the node is running, not removed, and has applied what
//! it knows to be committed: references read from an index that is behind could miss an entry
//! that names an old body.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dovetail_raft::RaftNode;

use super::bodies::NodeBodies;
use super::mail_group::MailGroup;
use crate::bodies::collector::collect_once;
use crate::bodies::BodyId;

/// Longest pause between two passes, whatever the grace.
const MAX_INTERVAL: Duration = Duration::from_secs(300);

/// The pause between passes for a grace of `grace`: half of it (a body is collected at most
/// half a grace late), at least a second and at most [`MAX_INTERVAL`].
pub fn interval_for(grace: Duration) -> Duration {
    (grace / 2).clamp(Duration::from_secs(1), MAX_INTERVAL)
}

/// Why a pass did not run now.
fn not_ready(raft: &RaftNode<MailGroup>) -> Option<String> {
    for group in 0..raft.group_count() {
        let m = raft.metrics(group).ok()?;
        if m.fatal.is_some() || m.removed {
            return Some(format!("group {group} is stopped or removed on this node"));
        }
        if m.applied.map(|a| a.index) < m.committed_log_index {
            return Some(format!("group {group} has not applied what it committed"));
        }
    }
    None
}

/// Every body the node's applied indexes reference, with a group that references it.
fn references(raft: &RaftNode<MailGroup>) -> BTreeMap<BodyId, u32> {
    let mut out = BTreeMap::new();
    for group in 0..raft.group_count() {
        if let Ok(ids) = raft.with_app(group, |app| app.machine().referenced_bodies()) {
            for id in ids {
                out.entry(id).or_insert(group);
            }
        }
    }
    out
}

/// One pass: collect, then fetch what is missing. Returns the missing bodies it could not
/// fetch, or why it did not run.
pub async fn sweep_once(
    raft: &RaftNode<MailGroup>,
    bodies: &NodeBodies,
    grace: Duration,
) -> Result<usize, String> {
    if let Some(reason) = not_ready(raft) {
        return Err(reason);
    }
    let store = bodies.store().clone();
    let referenced: Arc<Mutex<BTreeMap<BodyId, u32>>> = Arc::default();
    let (raft2, referenced2) = (raft.clone(), referenced.clone());
    let now = SystemTime::now();
    let report = tokio::task::spawn_blocking(move || {
        collect_once(
            &store,
            || {
                let map = references(&raft2);
                let set = map.keys().copied().collect();
                *referenced2.lock().unwrap_or_else(|e| e.into_inner()) = map;
                set
            },
            now,
            grace,
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if report.removed > 0 {
        tracing::info!(
            removed = report.removed,
            bytes = report.removed_bytes,
            "collected bodies no record references"
        );
    }
    let referenced = std::mem::take(&mut *referenced.lock().unwrap_or_else(|e| e.into_inner()));
    let missing: Vec<(BodyId, u32)> = referenced
        .into_iter()
        .filter(|(id, _)| !bodies.store().has(id))
        .collect();
    bodies.record_sweep(report, missing.len() as u64);
    let mut left = 0;
    for (id, group) in missing {
        if !bodies.fetch_in_background(group, id).await {
            left += 1;
        }
    }
    bodies.set_missing(left as u64);
    Ok(left)
}

/// Runs a pass every [`interval_for`] the grace, and at once when asked (`NodeBodies::wake_sweep`).
pub async fn run_body_sweep(raft: RaftNode<MailGroup>, bodies: NodeBodies, grace: Duration) {
    let interval = interval_for(grace);
    loop {
        bodies.sweep_requested(interval).await;
        match sweep_once(&raft, &bodies, grace).await {
            Ok(0) => {}
            Ok(left) => tracing::warn!(left, "referenced bodies this node could not fetch yet"),
            Err(reason) => tracing::debug!(%reason, "body sweep skipped"),
        }
    }
}
