//! Verify and repair of a node's message bodies (ARCHITECTURE.md §8, "Bodies"; README,
//! "Verify and repair").
//!
//! - **Check** ([`check_bodies`], `POST /admin/bodies/check`): the bodies this node's applied
//!   indexes reference that its store lacks — a stat per body, cheap — and, only when asked
//!   (`hash`), those whose stored bytes no longer hash to their id. Hashing reads every
//!   referenced body, so it is an option of verify (`ctl verify --hash-bodies`), not its
//!   default. The check reads only: a damaged copy is reported, not moved aside. Verify asks
//!   every member and compares their answers (`node::verify::compare_bodies`): no body crosses
//!   the network.
//! - **Repair** ([`repair_bodies`], `POST /admin/bodies/repair`): with `check`, every referenced
//!   body held is read through the store's checked read, which moves a damaged copy aside; then
//!   every referenced body the store lacks is fetched from a member on the background
//!   connections, as the sweep does (but without collecting anything).

use std::collections::{BTreeMap, BTreeSet};

use dovetail_raft::{NodeId, RaftNode};
use serde::{Deserialize, Serialize};

use super::bodies::NodeBodies;
use super::mail_group::MailGroup;
use crate::bodies::store::hash_reader;
use crate::bodies::{BodyError, BodyId, BodyStore};

/// What a referenced body's copy on a node is wrong with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyProblem {
    /// The store has no copy (never received, deleted, or moved aside by a failed check).
    Missing,
    /// The stored bytes do not hash to the body's id (found only by a check with `hash`).
    Damaged,
}

/// One referenced body that is not right on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyFault {
    /// A group whose applied index references the body.
    pub group: u32,
    /// The body's id, 32 hex digits.
    pub body_id: String,
    pub problem: BodyProblem,
}

/// What to check: the groups (default all), whether to hash, and only these bodies (default
/// every referenced one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[serde(default)]
    pub groups: Option<Vec<u32>>,
    #[serde(default)]
    pub hash: bool,
    #[serde(default)]
    pub body_ids: Option<Vec<String>>,
}

/// A node's answer to a check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BodyCheck {
    pub node_id: NodeId,
    /// The groups checked (those this node has a replica of, among those asked).
    pub groups: Vec<u32>,
    /// Referenced bodies checked.
    pub checked: u64,
    /// Whether the stored bytes were hashed.
    pub hashed: bool,
    pub faults: Vec<BodyFault>,
}

/// What a repair of a node's bodies did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BodyRepair {
    pub node_id: NodeId,
    pub referenced: u64,
    /// Copies hashed (with `check`), and those of them that failed and were moved aside.
    pub hashed: u64,
    pub damaged: u64,
    /// Referenced bodies the store lacked, those fetched, and those no member could give.
    pub missing: u64,
    pub fetched: u64,
    pub left: Vec<String>,
}

/// Every body the applied indexes of `groups` (default all) reference on this node, with a
/// group that references it, and the groups read.
fn references(raft: &RaftNode<MailGroup>, groups: Option<&[u32]>) -> (BTreeMap<BodyId, u32>, Vec<u32>) {
    let all: Vec<u32> = (0..raft.group_count()).collect();
    let mut out = BTreeMap::new();
    let mut read = Vec::new();
    for &group in groups.unwrap_or(&all) {
        if let Ok(ids) = raft.with_app(group, |app| app.machine().referenced_bodies()) {
            read.push(group);
            for id in ids {
                out.entry(id).or_insert(group);
            }
        }
    }
    (out, read)
}

/// Whether the stored copy of `id` hashes to `id` (unchecked open: nothing is moved aside).
fn hashes_right(store: &BodyStore, id: &BodyId) -> Result<Option<bool>, BodyError> {
    let Some((mut file, _)) = store.open_unchecked(id)? else {
        return Ok(None);
    };
    let actual = hash_reader(&mut file).map_err(|source| BodyError::Io {
        path: store.path_of(id),
        action: "hashing",
        source,
    })?;
    Ok(Some(actual == *id))
}

/// Checks this node's referenced bodies (see the module docs). Blocking: run it off the runtime.
pub fn check_bodies(
    raft: &RaftNode<MailGroup>,
    store: &BodyStore,
    request: &CheckRequest,
) -> Result<BodyCheck, BodyError> {
    let (mut referenced, groups) = references(raft, request.groups.as_deref());
    if let Some(only) = &request.body_ids {
        let only: BTreeSet<BodyId> = only.iter().filter_map(|h| BodyId::parse(h)).collect();
        referenced.retain(|id, _| only.contains(id));
    }
    let mut faults = Vec::new();
    for (id, group) in &referenced {
        let problem = if request.hash {
            match hashes_right(store, id)? {
                None => Some(BodyProblem::Missing),
                Some(false) => Some(BodyProblem::Damaged),
                Some(true) => None,
            }
        } else {
            (!store.has(id)).then_some(BodyProblem::Missing)
        };
        if let Some(problem) = problem {
            faults.push(BodyFault {
                group: *group,
                body_id: id.hex(),
                problem,
            });
        }
    }
    Ok(BodyCheck {
        node_id: raft.node_id(),
        groups,
        checked: referenced.len() as u64,
        hashed: request.hash,
        faults,
    })
}

/// Repairs this node's referenced bodies (see the module docs).
pub async fn repair_bodies(
    raft: &RaftNode<MailGroup>,
    bodies: &NodeBodies,
    check: bool,
) -> Result<BodyRepair, BodyError> {
    let (raft2, store) = (raft.clone(), bodies.store().clone());
    let task = tokio::task::spawn_blocking(move || {
        let (referenced, _) = references(&raft2, None);
        let (mut hashed, mut damaged) = (0, 0);
        if check {
            for id in referenced.keys().filter(|id| store.has(id)) {
                hashed += 1;
                match store.read(id) {
                    Ok(_) => {}
                    Err(BodyError::Damaged { .. }) => damaged += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((referenced, hashed, damaged))
    });
    let (referenced, hashed, damaged) = task.await.map_err(|e| BodyError::Input {
        source: std::io::Error::other(format!("the body check failed: {e}")),
    })??;
    let mut report = BodyRepair {
        node_id: raft.node_id(),
        referenced: referenced.len() as u64,
        hashed,
        damaged,
        ..BodyRepair::default()
    };
    for (id, group) in referenced {
        if bodies.store().has(&id) {
            continue;
        }
        report.missing += 1;
        if bodies.fetch_in_background(group, id).await {
            report.fetched += 1;
        } else {
            report.left.push(id.hex());
        }
    }
    if damaged > 0 || report.missing > 0 {
        tracing::warn!(
            damaged,
            missing = report.missing,
            fetched = report.fetched,
            left = report.left.len(),
            "repaired this node's bodies"
        );
    }
    Ok(report)
}
