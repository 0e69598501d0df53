//! The membership watch: how a node finds out that it was removed from a group, and that it was
//! added again (the rules are in `removal`, pure).
//!
//! Every [`WATCH_INTERVAL`] the task looks at each group on this node:
//! - a group it holds it was removed from is given back as soon as its own log holds a later
//!   membership that lists it (`removal::readmitted`): a leader replicates to it again once it is
//!   added again;
//! - a group it does not lead, that no leader has reached for `probe_after` (the maximum election
//!   timeout: a follower of a live leader hears from it far more often), and that it has not
//!   asked about for as long, is asked about: every member its membership names (voters and learners, at their API
//!   addresses) is asked for `GET /admin/status`, all at once and each within
//!   [`STATUS_TIMEOUT`], and each answer goes through `removal::removal_evidence`.
//!
//! A group found removed is marked on the raft node (`RaftNode::set_removed`: its requests answer
//! 410 `removed`, it stops campaigning), logged, and written to `<data-dir>/removed-groups.json`
//! (`removal::RemovedGroups`), which [`restore`] reads at start so that a restarted node does not
//! serve such a group before it has asked again. A node removed from every group says so in its
//! log and in `/admin/status` (`node.removed`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use dovetail_raft::{GroupRole, NodeId, RaftNode};

use super::mail_group::MailGroup;
use super::peer_api::PeerApi;
use super::removal::{readmitted, removal_evidence, MembershipView, RecordError, Removal, RemovedGroups};
use super::status::{GroupStatus, NodeStatus};

/// How often the watch looks at this node's groups (locally; members are asked far less often).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// How long a member's status may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// The record's file name under the data directory.
pub const RECORD_FILE: &str = "removed-groups.json";

/// Why the record of removed groups cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a record of this node; it holds only derived knowledge, so an
    /// operator may delete it (the node asks its members again).
    #[error("{}: {source} (it may be deleted: the node then asks its members again)", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
}

/// This node's view of `group`, as it would report it.
fn own_view(raft: &RaftNode<MailGroup>, group: u32) -> Option<MembershipView> {
    let metrics = raft.metrics(group).ok()?;
    Some(MembershipView::of(&GroupStatus::from_metrics(&metrics, None)))
}

/// Reads the record of removed groups (none if the file does not exist) and marks each group in
/// it removed on the raft node, except those its log already shows it was added to again. Call
/// before the API serves.
pub fn restore(raft: &RaftNode<MailGroup>, data_dir: &Path) -> Result<RemovedGroups, WatchError> {
    let path = data_dir.join(RECORD_FILE);
    let mut record = match std::fs::read(&path) {
        Ok(bytes) => RemovedGroups::decode(&bytes, raft.node_id()).map_err(|source| WatchError::Record {
            path: path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RemovedGroups::new(raft.node_id())),
        Err(source) => return Err(WatchError::Io { path, source }),
    };
    let before = record.groups.len();
    let node_id = raft.node_id();
    record.groups.retain(|&group, removal| {
        group < raft.group_count()
            && !own_view(raft, group).is_some_and(|own| readmitted(node_id, &own, removal.membership_log))
    });
    for (&group, removal) in &record.groups {
        let _ = raft.set_removed(group, true);
        tracing::warn!(
            group,
            membership = %removal.membership_log,
            reported_by = removal.reported_by,
            "removed from the group (recorded before the restart): not serving or campaigning for it"
        );
    }
    if record.groups.len() != before {
        save(data_dir, &record)?;
    }
    if !record.groups.is_empty() && record.groups.len() == raft.group_count() as usize {
        tracing::error!("this node was removed from every group: it serves nothing until it is added again");
    }
    Ok(record)
}

/// Writes the record atomically (a temporary file, synced, renamed, the directory synced).
fn save(data_dir: &Path, record: &RemovedGroups) -> Result<(), WatchError> {
    let path = data_dir.join(RECORD_FILE);
    let temporary = data_dir.join(format!("{RECORD_FILE}.tmp"));
    let io = |source| WatchError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&record.encode()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Runs the watch until aborted; `record` is what [`restore`] returned.
pub async fn run_membership_watch(
    raft: RaftNode<MailGroup>,
    peers: PeerApi,
    data_dir: PathBuf,
    mut record: RemovedGroups,
    probe_after: Duration,
) {
    let node_id = raft.node_id();
    let mut asked: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut changed = false;
        // Added again?
        let readmissions: Vec<u32> = record
            .groups
            .iter()
            .filter(|(&group, removal)| {
                own_view(&raft, group).is_some_and(|own| readmitted(node_id, &own, removal.membership_log))
            })
            .map(|(&group, _)| group)
            .collect();
        for group in readmissions {
            record.groups.remove(&group);
            let _ = raft.set_removed(group, false);
            changed = true;
            tracing::info!(group, "a member of the group again: serving it again");
        }
        // Removed without being told?
        let now = Instant::now();
        let mut unsure: BTreeMap<u32, MembershipView> = BTreeMap::new();
        for group in 0..raft.group_count() {
            if record.groups.contains_key(&group)
                || asked.get(&group).is_some_and(|at| now - *at < probe_after)
            {
                continue;
            }
            // Most groups hear from their leader: those cost a look at one clock, no metrics.
            if !raft
                .since_leader_contact(group)
                .is_ok_and(|since| since >= probe_after)
            {
                continue;
            }
            let Ok(metrics) = raft.metrics(group) else {
                continue;
            };
            if metrics.role == GroupRole::Leader || metrics.since_leader_contact < probe_after {
                continue;
            }
            let own = MembershipView::of(&GroupStatus::from_metrics(&metrics, None));
            if own.membership_log.is_some() {
                unsure.insert(group, own);
            }
        }
        if !unsure.is_empty() {
            let answers = ask_members(&raft, &peers, unsure.keys().copied()).await;
            for (group, own) in &unsure {
                asked.insert(*group, now);
                let evidence = answers.iter().find_map(|(member, status)| {
                    let view = MembershipView::of(status.groups.iter().find(|g| g.group == *group)?);
                    removal_evidence(node_id, own, &view).map(|at| (*member, at))
                });
                if let Some((reported_by, membership_log)) = evidence {
                    record.groups.insert(
                        *group,
                        Removal {
                            membership_log,
                            reported_by,
                            at_unix_ms: SystemTime::now()
                                .duration_since(SystemTime::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as u64),
                        },
                    );
                    let _ = raft.set_removed(*group, true);
                    changed = true;
                    tracing::warn!(
                        group = *group,
                        membership = %membership_log,
                        reported_by,
                        "removed from the group (node {reported_by}'s committed membership at {membership_log} does not list this node): no longer serving or campaigning for it"
                    );
                    if record.groups.len() == raft.group_count() as usize {
                        tracing::error!(
                            "this node was removed from every group: it serves nothing until it is added again"
                        );
                    }
                }
            }
        }
        if changed {
            let dir = data_dir.clone();
            let copy = record.clone();
            match tokio::task::spawn_blocking(move || save(&dir, &copy)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not record the removed groups"),
                Err(e) => tracing::error!(error = %e, "could not record the removed groups"),
            }
        }
    }
}

/// The statuses of the members (other than this node) of `groups`, asked all at once; members
/// that do not answer as themselves within [`STATUS_TIMEOUT`] are left out.
async fn ask_members(
    raft: &RaftNode<MailGroup>,
    peers: &PeerApi,
    groups: impl Iterator<Item = u32>,
) -> BTreeMap<NodeId, NodeStatus> {
    let mut members: BTreeMap<NodeId, String> = BTreeMap::new();
    for group in groups {
        for (member, node) in raft.member_nodes(group).unwrap_or_default() {
            if member != raft.node_id() && !node.api_addr.is_empty() {
                members.entry(member).or_insert(node.api_addr);
            }
        }
    }
    let mut asks = tokio::task::JoinSet::new();
    for (member, api_addr) in members {
        let peers = peers.clone();
        asks.spawn(async move {
            let status = peers
                .get_json::<NodeStatus>(&api_addr, "/admin/status", STATUS_TIMEOUT)
                .await;
            (member, status)
        });
    }
    let mut answers = BTreeMap::new();
    let mut silent = BTreeSet::new();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((member, Ok(status))) if status.node_id == member => {
                answers.insert(member, status);
            }
            Ok((member, _)) => {
                silent.insert(member);
            }
            Err(_) => {}
        }
    }
    if !silent.is_empty() {
        tracing::debug!(
            ?silent,
            "members that did not answer about the group's membership"
        );
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_saved_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = RemovedGroups::new(3);
        record.groups.insert(
            1,
            Removal {
                membership_log: crate::index::LogPosition::new(2, 21),
                reported_by: 1,
                at_unix_ms: 5,
            },
        );
        save(dir.path(), &record).unwrap();
        let bytes = std::fs::read(dir.path().join(RECORD_FILE)).unwrap();
        assert_eq!(RemovedGroups::decode(&bytes, 3).unwrap(), record);
        assert!(!dir.path().join(format!("{RECORD_FILE}.tmp")).exists());
    }
}
