//! `dovetail restore`: seeds the data directory of one node of a new cluster from a backup; run
//! once per node of the new cluster, with the same backup and the same members.
//!
//! First the whole backup is checked (`verify::verify_backup`: the manifest's checksum, every
//! file's size and SHA-256, every group's stream read through); a damaged, truncated or missing
//! file is refused by name before anything is written. Then each group's directory is written as
//! if the node had installed a snapshot of the copy (`GroupStateMachine::install_snapshot`:
//! `live/` and `checkpoint.snap`), whose consensus metadata keeps the copy's last applied log id
//! `(T, I)` and names the new cluster's members (`dovetail_raft::restore::reseat_membership`), and
//! each group's Raft log is seeded empty, purged through `(T, I)`, with a vote of term `T`
//! (`dovetail_raft::restore::seed_node_logs`, whose docs show why openraft then starts every group
//! initialized with the new members and elects a leader above `T`). Every message body of the
//! backup goes into the node's body store (`blobs/`, through `BodyStore::put` with its id
//! expected, so the store's layout and durability rules apply). The mailboxes are the
//! backup's byte for byte, so UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ are the backup's, and new
//! writes continue above them. Everything is written to a staging directory beside the target and
//! renamed into place at the end: the data directory appears whole or not at all.
//!
//! The new cluster's identity is its members (these flags) and its secrets (the operator's, given
//! to `serve`); nothing of the old cluster's secrets is in a backup.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use dovetail_raft::restore::{reseat_membership, seed_node_logs, GroupMembers};
use dovetail_raft::{Node, NodeId};

use super::error::BackupError;
use super::verify::{verify_backup, VerifiedBackup};
use crate::bodies::BodyStore;
use crate::node::config::PeerSpec;
use crate::node::server::group_dir_in;
use crate::state_machine::snapshot::repack_snapshot;
use crate::state_machine::GroupStateMachine;
use crate::txn::encoding::CURRENT_ENCODING;

/// Flags of `dovetail restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory (what `ctl backup --out` wrote).
    #[arg(long)]
    pub from: PathBuf,
    /// The new node's data directory: must not exist, or be empty. Serve it afterwards with the
    /// same --node-id and the backup's --groups, without --bootstrap.
    #[arg(long, required_unless_present = "check_only")]
    pub data_dir: Option<PathBuf>,
    /// This node's id in the new cluster.
    #[arg(long, required_unless_present = "check_only", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: Option<u64>,
    /// Every member of the new cluster, this node included, `ID=PEER_ADDR/API_ADDR`; repeat for
    /// each. Give every node the same list.
    #[arg(long = "peer", required_unless_present = "check_only")]
    pub peers: Vec<PeerSpec>,
    /// The voters of the new cluster's groups, comma-separated node ids (default: every
    /// --peer); any other --peer starts as a learner.
    #[arg(long, value_delimiter = ',')]
    pub bootstrap_membership: Vec<u64>,
    /// Only check the backup (every checksum, every group's copy read through); write nothing.
    #[arg(long)]
    pub check_only: bool,
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub backup: VerifiedBackup,
    /// `None` for `--check-only`.
    pub data_dir: Option<PathBuf>,
    pub node_id: Option<NodeId>,
    pub members: GroupMembers,
    pub checked_in: Duration,
    pub written_in: Duration,
}

/// The new cluster's members from the flags: every `--peer`, voters as `--bootstrap-membership`
/// says (default all), and this node among them.
pub fn new_members(
    node_id: NodeId,
    peers: &[PeerSpec],
    voters: &[NodeId],
) -> Result<GroupMembers, BackupError> {
    let refused = |reason: String| BackupError::Members { reason };
    let mut nodes = BTreeMap::new();
    for peer in peers {
        let node = Node {
            peer_addr: peer.peer_addr.clone(),
            api_addr: peer.api_addr.clone(),
        };
        if nodes.insert(peer.node_id, node).is_some() {
            return Err(refused(format!("--peer: node {} is listed twice", peer.node_id)));
        }
    }
    if !nodes.contains_key(&node_id) {
        return Err(refused(format!(
            "--peer: this node ({node_id}) is not listed; list every member of the new cluster, this node included"
        )));
    }
    let all: BTreeSet<NodeId> = nodes.keys().copied().collect();
    let voters: BTreeSet<NodeId> = if voters.is_empty() {
        all.clone()
    } else {
        voters.iter().copied().collect()
    };
    if let Some(stranger) = voters.difference(&all).next() {
        return Err(refused(format!(
            "--bootstrap-membership: node {stranger} is not a --peer"
        )));
    }
    Ok(GroupMembers {
        learners: all.difference(&voters).copied().collect(),
        voters,
        nodes,
    })
}

/// Runs `dovetail restore` (see the module docs).
pub fn restore(args: &RestoreArgs) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let target = match (&args.data_dir, args.node_id, args.check_only) {
        (Some(dir), Some(node_id), false) => {
            let members = new_members(node_id, &args.peers, &args.bootstrap_membership)?;
            check_target(dir)?;
            Some((dir.clone(), node_id, members))
        }
        _ => None,
    };
    let backup = verify_backup(&args.from, CURRENT_ENCODING)?;
    let checked_in = started.elapsed();
    let Some((data_dir, node_id, members)) = target else {
        return Ok(RestoreReport {
            backup,
            data_dir: None,
            node_id: None,
            members: GroupMembers::default(),
            checked_in,
            written_in: Duration::ZERO,
        });
    };
    let staging = staging_dir(&data_dir)?;
    if let Err(e) = write_node(&backup, &staging, node_id, &members) {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // The target was checked empty (or absent) before: it gives way to the complete directory.
    if data_dir.exists() {
        fs::remove_dir(&data_dir).map_err(|e| BackupError::io(&data_dir, "replacing the empty", e))?;
    }
    fs::rename(&staging, &data_dir).map_err(|e| BackupError::io(&staging, "renaming", e))?;
    sync_dir(parent_of(&data_dir))?;
    Ok(RestoreReport {
        backup,
        data_dir: Some(data_dir),
        node_id: Some(node_id),
        members,
        checked_in,
        written_in: started.elapsed() - checked_in,
    })
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io(dir, "syncing directory", e))
}

/// The data directory must not exist, or be an empty directory.
fn check_target(dir: &Path) -> Result<(), BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::DataDirNotEmpty {
                path: dir.to_path_buf(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::io(dir, "listing", e)),
    }
}

/// `.<name>.restoring` beside the data directory, fresh (a leftover of an interrupted restore
/// into the same directory is removed).
fn staging_dir(data_dir: &Path) -> Result<PathBuf, BackupError> {
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Members {
            reason: format!("--data-dir {}: names no directory", data_dir.display()),
        })?
        .to_string_lossy();
    let staging = parent_of(data_dir).join(format!(".{name}.restoring"));
    match fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(BackupError::io(&staging, "removing the leftover", e))
        }
        _ => {}
    }
    fs::create_dir_all(&staging).map_err(|e| BackupError::io(&staging, "creating", e))?;
    Ok(staging)
}

/// Writes every group's directory and seeds every group's log in `staging`.
fn write_node(
    backup: &VerifiedBackup,
    staging: &Path,
    node_id: NodeId,
    members: &GroupMembers,
) -> Result<(), BackupError> {
    let mut seeds = Vec::with_capacity(backup.groups.len());
    for (copy, facts) in backup.manifest.groups.iter().zip(&backup.groups) {
        let consensus_meta = reseat_membership(&facts.consensus_meta, members)?;
        let dir = group_dir_in(staging, copy.group);
        let mut machine = GroupStateMachine::open(&dir)?;
        let source = backup.dir.join(&copy.file);
        let input = File::open(&source).map_err(|e| BackupError::io(&source, "opening", e))?;
        let mut repacked =
            tempfile::tempfile_in(&dir).map_err(|e| BackupError::io(&dir, "creating a file in", e))?;
        let mut out = BufWriter::with_capacity(1 << 20, &repacked);
        repack_snapshot(BufReader::with_capacity(1 << 20, input), &mut out, |manifest| {
            manifest.consensus_meta = consensus_meta.clone();
        })?;
        out.flush().map_err(|e| BackupError::io(&dir, "writing in", e))?;
        drop(out);
        repacked
            .rewind()
            .map_err(|e| BackupError::io(&dir, "reading in", e))?;
        let installed = machine.install_snapshot(BufReader::with_capacity(1 << 20, repacked))?;
        if installed != Some(copy.cut) {
            return Err(BackupError::CorruptGroup {
                path: source,
                group: copy.group,
                reason: format!("installed at {installed:?}, the manifest says {}", copy.cut),
            });
        }
        seeds.push((copy.group, consensus_meta));
    }
    sync_dir(&staging.join("groups"))?;
    let blobs = staging.join("blobs");
    let store = BodyStore::open(&blobs).map_err(|source| BackupError::BodyStore {
        what: "opening the new node's body store".into(),
        source,
    })?;
    for (id, file) in backup.manifest.body_files() {
        let path = backup.dir.join(&file.path);
        let mut input = File::open(&path).map_err(|e| BackupError::io(&path, "opening", e))?;
        store
            .put(&mut input, u64::MAX, Some(id))
            .map_err(|source| BackupError::BodyStore {
                what: format!("storing body {id}"),
                source,
            })?;
    }
    sync_dir(&blobs)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BackupError::io(staging, "starting a runtime to seed the log in", e))?;
    runtime.block_on(seed_node_logs(staging, node_id, &seeds))?;
    sync_dir(staging)
}

impl RestoreReport {
    /// What `dovetail restore` prints.
    pub fn describe(&self) -> String {
        let manifest = &self.backup.manifest;
        let mailboxes: u64 = manifest.groups.iter().map(|g| g.mailboxes).sum();
        let users: u64 = manifest.groups.iter().map(|g| g.users).sum();
        let bodies = manifest.body_files().len();
        let mut out = format!(
            "backup {}: taken {} through {} (node {}, release {}), {} groups, {users} users, {mailboxes} mailboxes, {bodies} message bodies, {} bytes: every checksum verified in {:.2?}\n",
            self.backup.dir.display(),
            manifest.started,
            manifest.cluster.via,
            manifest.cluster.served_by,
            manifest.release,
            manifest.group_count,
            self.backup.bytes,
            self.checked_in,
        );
        if let (Some(dir), Some(node_id)) = (&self.data_dir, self.node_id) {
            let ids = |set: &BTreeSet<NodeId>| set.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            out += &format!(
                "restored into {} as node {node_id} of a new cluster (voters {}{}) in {:.2?}\n",
                dir.display(),
                ids(&self.members.voters),
                if self.members.learners.is_empty() {
                    String::new()
                } else {
                    format!(", learners {}", ids(&self.members.learners))
                },
                self.written_in,
            );
            out += &format!(
                "start it with: dovetail serve --node-id {node_id} --data-dir {} --groups {} (its listeners as given in --peer, new secrets, no --bootstrap)\n",
                dir.display(),
                manifest.group_count
            );
        }
        out
    }
}
