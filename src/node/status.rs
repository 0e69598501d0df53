//! `NodeStatus`: what `GET /admin/status` answers — who this node is (id, version, uptime,
//! addresses, disk use) and its view of every group. `GET /admin/cluster` (`api::admin::cluster`,
//! merged by `overview`) reads the same type back from every member, so the two cannot drift
//! apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dovetail_raft::{GroupMetrics, NodeId, RaftNode};
use serde::{Deserialize, Serialize};

use super::bodies::{BodiesStatus, NodeBodies};
use super::mail_group::MailGroup;
use crate::index::LogPosition;

/// How long a measured disk use is reused. Walking a data directory of many mailboxes is not
/// free, and an open dashboard asks every node every second.
const DISK_USAGE_MAX_AGE: Duration = Duration::from_secs(5);

/// This node's answer to `GET /admin/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub node: NodeSummary,
    /// One entry per group, in group order.
    pub groups: Vec<GroupStatus>,
}

/// Who a node is and what it holds, independent of any group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub node_id: NodeId,
    /// The crate version of the running binary.
    pub version: String,
    /// Seconds since `run` started.
    pub uptime_s: u64,
    pub api_addr: String,
    pub peer_addr: String,
    pub disk: DiskUsage,
    /// The highest log encoding this node applies (`txn::encoding`); 0 from a node of a release
    /// before encodings, which does not report it.
    #[serde(default)]
    pub max_encoding: u8,
    /// The storage alarm and what the disk monitor last saw.
    #[serde(default)]
    pub storage: StorageReport,
    /// The groups this node holds it was removed from (`membership_watch`): it serves none of
    /// their requests (410 `removed`) and does not campaign in them.
    #[serde(default)]
    pub removed_groups: Vec<u32>,
    /// Removed from every group: the node serves nothing until it is added again (or stopped).
    #[serde(default)]
    pub removed: bool,
    /// Message bodies: checks failed, fetches on a miss, background transfers, backlogs.
    #[serde(default)]
    pub bodies: BodiesStatus,
    /// The mail front ends (IMAP, LMTP): sessions open, commands, failed logins, deliveries.
    #[serde(default)]
    pub mail: MailFrontStatus,
}

/// What a node's IMAP and LMTP listeners did since it started (`node.mail`), from the counts
/// kept beside their Prometheus series (`imap::metrics`, `lmtp::metrics`). All 0 on a node
/// without those listeners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailFrontStatus {
    pub imap_sessions_open: u64,
    pub imaps_sessions_open: u64,
    /// IMAP commands answered OK, NO and BAD.
    pub imap_commands_ok: u64,
    pub imap_commands_no: u64,
    pub imap_commands_bad: u64,
    /// Failed IMAP logins (wrong credentials or rate-limited).
    pub imap_login_failures: u64,
    pub lmtp_sessions_open: u64,
    /// LMTP recipients answered 250 after DATA.
    pub lmtp_delivered: u64,
    /// LMTP recipients answered 451 or 452 (the MTA retries).
    pub lmtp_deferred: u64,
    /// LMTP recipients answered 5xx, at `RCPT TO` or after DATA.
    pub lmtp_refused: u64,
}

impl MailFrontStatus {
    /// This process's counts now.
    pub fn now() -> MailFrontStatus {
        let imap = crate::imap::metrics::counts();
        let lmtp = crate::lmtp::metrics::counts();
        MailFrontStatus {
            imap_sessions_open: imap.imap_sessions_open,
            imaps_sessions_open: imap.imaps_sessions_open,
            imap_commands_ok: imap.commands_ok,
            imap_commands_no: imap.commands_no,
            imap_commands_bad: imap.commands_bad,
            imap_login_failures: imap.login_failures,
            lmtp_sessions_open: lmtp.sessions_open,
            lmtp_delivered: lmtp.delivered,
            lmtp_deferred: lmtp.deferred,
            lmtp_refused: lmtp.refused,
        }
    }
}

/// Bytes a node keeps on disk (apparent file sizes), measured at most `DISK_USAGE_MAX_AGE` ago.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Under `<data-dir>/raft-log`: the sled database holding every group's log.
    pub log_bytes: u64,
    /// Under `<data-dir>/groups`: index files, manifests and checkpoints of every group.
    pub index_bytes: u64,
    /// Under `<data-dir>/blobs`: message bodies (and copies moved aside).
    #[serde(default)]
    pub body_bytes: u64,
}

/// One group as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group: u32,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Invariant: `applied <= committed`.
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// When this node leads: the highest log index known to be on each member.
    pub matched: Option<BTreeMap<NodeId, Option<u64>>>,
    /// Set once the group stopped on an error.
    pub fatal: Option<String>,
    pub snapshots_installed: Option<u64>,
    /// The last error this node knows of for the group: the fatal error if the group stopped,
    /// else the last proposal or read index that failed here (`"<n> s ago: ..."`), if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The group's active log encoding as of what this node applied.
    #[serde(default)]
    pub encoding: Option<u8>,
    /// The log position of the entry that set `voters` and `learners` (this node's latest
    /// membership entry, which may be uncommitted); `None` before any.
    #[serde(default)]
    pub membership_log: Option<LogPosition>,
    /// Whether that membership is committed as far as this node knows: only then may another
    /// node conclude from it that it was removed (`removal`).
    #[serde(default)]
    pub membership_committed: bool,
    /// This node holds that it was removed from the group: it serves none of its requests.
    #[serde(default)]
    pub removed: bool,
    /// Names stored before log encoding 2 that it refuses (not NFC, invisible characters),
    /// as found when this node opened the group (`MailGroup::legacy_names`); absent if none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_names: Vec<String>,
}

impl GroupStatus {
    pub fn from_metrics(m: &GroupMetrics, snapshots_installed: Option<u64>) -> GroupStatus {
        GroupStatus {
            group: m.group_id,
            role: format!("{:?}", m.role).to_lowercase(),
            leader: m.current_leader,
            term: m.current_term,
            committed: m.committed_log_index,
            applied: m.applied.map(|a| a.index),
            snapshot: m.snapshot.map(|s| s.index),
            purged: m.purged_log_index,
            voters: m.voters.clone(),
            learners: m.learners.clone(),
            matched: m.matched_log_index.clone(),
            fatal: m.fatal.clone(),
            snapshots_installed,
            last_error: m.fatal.clone(),
            encoding: None,
            membership_log: m.membership_log,
            membership_committed: m.membership_committed,
            removed: m.removed,
            legacy_names: Vec::new(),
        }
    }
}

/// What `/admin/status` reports of the node's storage (`node.storage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageReport {
    /// Why the node refuses writes, if it does (the storage alarm).
    pub alarm: Option<String>,
    pub free_bytes: u64,
    pub log_bytes: u64,
    /// What the Raft log has written ahead of its segments in use.
    pub log_reserve_bytes: u64,
}

/// What a node knows about itself beyond Raft, fixed when `run` starts.
#[derive(Debug)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub api_addr: String,
    pub peer_addr: String,
    /// The highest log encoding this node applies.
    pub max_encoding: u8,
    /// Kept current by the disk monitor.
    pub storage: Arc<Mutex<StorageReport>>,
    data_dir: PathBuf,
    started: Instant,
    /// The last measurement and when it was taken.
    disk: Mutex<Option<(Instant, DiskUsage)>>,
}

impl NodeInfo {
    pub fn new(
        node_id: NodeId,
        api_addr: String,
        peer_addr: String,
        max_encoding: u8,
        data_dir: PathBuf,
        started: Instant,
    ) -> Self {
        NodeInfo {
            node_id,
            api_addr,
            peer_addr,
            max_encoding,
            storage: Arc::default(),
            data_dir,
            started,
            disk: Mutex::new(None),
        }
    }

    /// The disk use, measured again if the last measurement is older than `DISK_USAGE_MAX_AGE`.
    /// Blocking: walks directories.
    pub fn disk_usage(&self) -> DiskUsage {
        let mut cached = self.disk.lock().expect("disk usage cache lock");
        match *cached {
            Some((at, usage)) if at.elapsed() < DISK_USAGE_MAX_AGE => usage,
            _ => {
                let usage = DiskUsage {
                    log_bytes: dir_bytes(&self.data_dir.join("raft-log")),
                    index_bytes: dir_bytes(&self.data_dir.join("groups")),
                    body_bytes: dir_bytes(&self.data_dir.join("blobs")),
                };
                *cached = Some((Instant::now(), usage));
                usage
            }
        }
    }

    pub fn summary(&self, disk: DiskUsage) -> NodeSummary {
        NodeSummary {
            node_id: self.node_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            api_addr: self.api_addr.clone(),
            peer_addr: self.peer_addr.clone(),
            disk,
            max_encoding: self.max_encoding,
            storage: self
                .storage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            removed_groups: Vec::new(),
            removed: false,
            bodies: BodiesStatus::default(),
            mail: MailFrontStatus::now(),
        }
    }
}

/// This node's status: its summary and its view of every group.
pub async fn node_status(
    raft: &RaftNode<MailGroup>,
    info: &std::sync::Arc<NodeInfo>,
    bodies: &NodeBodies,
) -> NodeStatus {
    let walker = info.clone();
    // A failed walk (a panic in the blocking pool) is reported as zero rather than failing the
    // whole status: the groups matter more than the byte counts.
    let disk = tokio::task::spawn_blocking(move || walker.disk_usage())
        .await
        .unwrap_or_default();
    let groups = (0..raft.group_count())
        .map(|g| {
            let m = raft
                .metrics(g)
                .expect("every group below group_count exists for the node's lifetime");
            let mut status =
                GroupStatus::from_metrics(&m, raft.with_app(g, |app| app.snapshots_installed()).ok());
            status.encoding = raft.with_app(g, MailGroup::encoding).ok();
            status.legacy_names = raft
                .with_app(g, |app| app.legacy_names().to_vec())
                .unwrap_or_default();
            if status.last_error.is_none() {
                status.last_error = raft.last_error(g).ok().flatten().map(|(at, message)| {
                    let age = at.elapsed().unwrap_or_default().as_secs();
                    format!("{age} s ago: {message}")
                });
            }
            status
        })
        .collect::<Vec<GroupStatus>>();
    let mut node = info.summary(disk);
    node.removed_groups = groups.iter().filter(|g| g.removed).map(|g| g.group).collect();
    node.removed = !groups.is_empty() && node.removed_groups.len() == groups.len();
    node.bodies = bodies.status();
    NodeStatus {
        node_id: raft.node_id(),
        node,
        groups,
    }
}

/// The total size of the regular files under `dir` (symlinks are not followed). Files that
/// vanish during the walk (a checkpoint being replaced, sled rotating segments) are skipped;
/// a missing `dir` is 0 bytes.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_sums_files_recursively() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 20]).unwrap();
        std::fs::write(dir.path().join("sub/deeper/c"), [0u8; 3]).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("sub/link")).unwrap();
        assert_eq!(dir_bytes(dir.path()), 123);
    }

    #[test]
    fn disk_usage_measures_log_and_groups_apart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("raft-log")).unwrap();
        std::fs::create_dir_all(dir.path().join("groups/g0000/live")).unwrap();
        std::fs::write(dir.path().join("raft-log/db"), [0u8; 7]).unwrap();
        std::fs::write(dir.path().join("groups/g0000/live/manifest"), [0u8; 5]).unwrap();
        std::fs::write(dir.path().join("node.log"), [0u8; 1000]).unwrap();
        let info = NodeInfo::new(
            1,
            "a:1".into(),
            "a:2".into(),
            1,
            dir.path().into(),
            Instant::now(),
        );
        let usage = info.disk_usage();
        assert_eq!(
            usage,
            DiskUsage {
                log_bytes: 7,
                index_bytes: 5,
                body_bytes: 0
            }
        );
        // Within the cache age, a change is not seen yet.
        std::fs::write(dir.path().join("raft-log/db2"), [0u8; 1]).unwrap();
        assert_eq!(info.disk_usage(), usage);
        let summary = info.summary(usage);
        assert_eq!(summary.version, env!("CARGO_PKG_VERSION"));
        assert_eq!((summary.node_id, summary.api_addr.as_str()), (1, "a:1"));
    }
}
