//! `Backlogs`: the bodies this node still owes each peer, in three tiers (the seeds' "writing
//! the changes to the disk until it reaches some limit").
//!
//! 1. **Memory**: up to `--body-backlog-memory` bytes of ids per peer ([`ENTRY_BYTES`] each; the
//!    bodies themselves are in the store).
//! 2. **Disk**: past that, ids are appended to `<data-dir>/body-backlog/<peer>.ids` (16 bytes
//!    each) up to `--body-backlog-disk` bytes. The file survives a restart of this node and is
//!    read back into memory as memory drains. (The memory tier does not survive a restart; the
//!    peer's periodic body sweep finds those bodies missing and fetches them.)
//! 3. **Resync**: past the disk limit both tiers are dropped and the peer is marked: it is asked
//!    for a full body resync (its sweep) once it answers.
//!
//! A body is sent at least once; sending one twice is harmless (a `PUT` of a body the peer holds
//! only refreshes its time). Order is not kept across tiers and does not matter.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use dovetail_raft::NodeId;
use serde::{Deserialize, Serialize};

use crate::bodies::BodyId;

/// What one id in the memory tier is counted as against `--body-backlog-memory`: the id, its
/// slot in the deque and its share of the bookkeeping.
pub const ENTRY_BYTES: u64 = 64;

/// Bytes of one id in a spill file.
const SPILLED_ID_BYTES: u64 = 16;

/// What the background sender does next for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Send this body.
    Push(BodyId),
    /// Ask the peer for a full body resync.
    Resync,
}

/// Where [`Backlogs::enqueue`] put a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Memory,
    Disk,
    /// Both tiers were full: the peer is now marked for a resync.
    Overflowed,
    /// The peer was already marked for a resync: nothing to keep.
    Resync,
}

/// One peer's backlog as `/admin/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BacklogStatus {
    pub node_id: NodeId,
    /// Ids in memory.
    pub queued: usize,
    /// Ids in the spill file not yet read back.
    pub spilled: u64,
    /// Marked for a full body resync.
    pub resync: bool,
}

#[derive(Debug, Default)]
struct Peer {
    queue: VecDeque<BodyId>,
    /// Ids written to the spill file, and how many of them were read back into memory.
    spilled: u64,
    read_back: u64,
    resync: bool,
    retry_at: Option<Instant>,
}

/// Every peer's backlog.
#[derive(Debug)]
pub struct Backlogs {
    dir: PathBuf,
    memory_ids: usize,
    disk_ids: u64,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
}

impl Backlogs {
    /// The backlogs of a node whose spill files live in `dir`, with the limits in bytes; the
    /// spill files a previous run left are taken up again.
    pub fn open(dir: impl Into<PathBuf>, memory_bytes: u64, disk_bytes: u64) -> io::Result<Backlogs> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut peers = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(peer) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".ids"))
                .and_then(|n| n.parse::<NodeId>().ok())
            else {
                continue;
            };
            // A torn last id (a crash mid-append) is cut off, so that appends stay aligned; the
            // peer's sweep covers that body.
            let spilled = entry.metadata()?.len() / SPILLED_ID_BYTES;
            OpenOptions::new()
                .write(true)
                .open(entry.path())?
                .set_len(spilled * SPILLED_ID_BYTES)?;
            if spilled > 0 {
                peers.insert(
                    peer,
                    Peer {
                        spilled,
                        ..Peer::default()
                    },
                );
            } else {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(Backlogs {
            dir,
            memory_ids: (memory_bytes / ENTRY_BYTES).max(1) as usize,
            disk_ids: disk_bytes / SPILLED_ID_BYTES,
            peers: Mutex::new(peers),
        })
    }

    fn path(&self, peer: NodeId) -> PathBuf {
        self.dir.join(format!("{peer}.ids"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts body `id` in `peer`'s backlog: memory, else the spill file, else a resync mark.
    pub fn enqueue(&self, peer: NodeId, id: BodyId) -> Enqueued {
        let mut peers = self.lock();
        let p = peers.entry(peer).or_default();
        if p.resync {
            return Enqueued::Resync;
        }
        if p.queue.len() < self.memory_ids && p.spilled == p.read_back {
            p.queue.push_back(id);
            return Enqueued::Memory;
        }
        if p.spilled < self.disk_ids {
            match append(&self.path(peer), &id) {
                Ok(()) => {
                    p.spilled += 1;
                    return Enqueued::Disk;
                }
                Err(e) => tracing::warn!(peer, error = %e, "cannot spill the body backlog to disk"),
            }
        }
        self.mark_resync(peer, p);
        Enqueued::Overflowed
    }

    fn mark_resync(&self, peer: NodeId, p: &mut Peer) {
        p.queue.clear();
        p.spilled = 0;
        p.read_back = 0;
        p.resync = true;
        let _ = fs::remove_file(self.path(peer));
        tracing::warn!(
            peer,
            "body backlog full in memory and on disk: the peer is marked for a full body resync"
        );
    }

    /// The next job for a peer not waiting out a failure, refilling memory from the spill file
    /// as it empties.
    pub fn next(&self, now: Instant) -> Option<(NodeId, Job)> {
        let mut peers = self.lock();
        let ready: Vec<NodeId> = peers
            .iter()
            .filter(|(_, p)| p.retry_at.is_none_or(|at| at <= now))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in ready {
            let p = peers.get_mut(&peer).expect("listed");
            if p.resync {
                return Some((peer, Job::Resync));
            }
            if p.queue.is_empty() && p.read_back < p.spilled {
                if let Err(e) = self.refill(peer, p) {
                    tracing::warn!(peer, error = %e, "cannot read the spilled body backlog");
                    self.mark_resync(peer, p);
                    return Some((peer, Job::Resync));
                }
            }
            if let Some(id) = p.queue.front() {
                return Some((peer, Job::Push(*id)));
            }
        }
        None
    }

    /// Reads the next ids of the spill file into memory; removes the file once all are read.
    fn refill(&self, peer: NodeId, p: &mut Peer) -> io::Result<()> {
        let path = self.path(peer);
        let mut file = File::open(&path)?;
        file.seek(SeekFrom::Start(p.read_back * SPILLED_ID_BYTES))?;
        let take = (p.spilled - p.read_back).min(self.memory_ids as u64);
        let mut buf = vec![0u8; (take * SPILLED_ID_BYTES) as usize];
        file.read_exact(&mut buf)?;
        for chunk in buf.chunks_exact(SPILLED_ID_BYTES as usize) {
            p.queue.push_back(BodyId(chunk.try_into().expect("16 bytes")));
        }
        p.read_back += take;
        if p.read_back == p.spilled {
            fs::remove_file(&path)?;
            p.spilled = 0;
            p.read_back = 0;
        }
        Ok(())
    }

    /// `job` for `peer` succeeded.
    pub fn done(&self, peer: NodeId, job: Job) {
        let mut peers = self.lock();
        let Some(p) = peers.get_mut(&peer) else {
            return;
        };
        p.retry_at = None;
        match job {
            Job::Push(id) => {
                if p.queue.front() == Some(&id) {
                    p.queue.pop_front();
                }
            }
            Job::Resync => p.resync = false,
        }
        if p.queue.is_empty() && p.spilled == 0 && !p.resync {
            peers.remove(&peer);
        }
    }

    /// A job for `peer` failed: try it again at `retry_at`.
    pub fn failed(&self, peer: NodeId, retry_at: Instant) {
        if let Some(p) = self.lock().get_mut(&peer) {
            p.retry_at = Some(retry_at);
        }
    }

    /// Drops `peer`'s backlog and spill file (it is no member any more).
    pub fn forget(&self, peer: NodeId) {
        self.lock().remove(&peer);
        let _ = fs::remove_file(self.path(peer));
    }

    pub fn status(&self) -> Vec<BacklogStatus> {
        self.lock()
            .iter()
            .map(|(peer, p)| BacklogStatus {
                node_id: *peer,
                queued: p.queue.len(),
                spilled: p.spilled - p.read_back,
                resync: p.resync,
            })
            .collect()
    }
}

fn append(path: &Path, id: &BodyId) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BodyId {
        BodyId([n; 16])
    }

    /// Drains `peer`'s pushes in order, as a sender whose every push succeeds.
    fn drain(b: &Backlogs, peer: NodeId) -> Vec<BodyId> {
        let mut out = Vec::new();
        while let Some((p, job)) = b.next(Instant::now()) {
            assert_eq!(p, peer);
            if let Job::Push(id) = job {
                out.push(id);
            }
            b.done(p, job);
        }
        out
    }

    #[test]
    fn memory_then_disk_then_resync() {
        let dir = tempfile::tempdir().unwrap();
        // Two ids in memory, three on disk.
        let b = Backlogs::open(dir.path(), 2 * ENTRY_BYTES, 3 * SPILLED_ID_BYTES).unwrap();
        let tiers: Vec<Enqueued> = (1..=5).map(|n| b.enqueue(7, id(n))).collect();
        assert_eq!(
            tiers,
            [
                Enqueued::Memory,
                Enqueued::Memory,
                Enqueued::Disk,
                Enqueued::Disk,
                Enqueued::Disk
            ]
        );
        assert_eq!(
            b.status()[0],
            BacklogStatus {
                node_id: 7,
                queued: 2,
                spilled: 3,
                resync: false
            }
        );
        let mut sent = drain(&b, 7);
        sent.sort();
        assert_eq!(sent, (1..=5).map(id).collect::<Vec<_>>());
        assert!(b.status().is_empty() && !dir.path().join("7.ids").exists());
        // Past both limits: a resync, and nothing is kept.
        for n in 1..=6 {
            b.enqueue(7, id(n));
        }
        assert_eq!(
            b.status()[0],
            BacklogStatus {
                node_id: 7,
                queued: 0,
                spilled: 0,
                resync: true
            }
        );
        assert_eq!(b.next(Instant::now()), Some((7, Job::Resync)));
        b.failed(7, Instant::now() + std::time::Duration::from_secs(60));
        assert_eq!(b.next(Instant::now()), None, "waits out the failure");
    }

    #[test]
    fn the_spill_file_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backlogs::open(dir.path(), ENTRY_BYTES, 10 * SPILLED_ID_BYTES).unwrap();
        for n in 1..=4 {
            b.enqueue(3, id(n));
        }
        drop(b);
        // A torn id at the end (a crash mid-append) is dropped.
        OpenOptions::new()
            .append(true)
            .open(dir.path().join("3.ids"))
            .unwrap()
            .write_all(&[9; 5])
            .unwrap();
        let b = Backlogs::open(dir.path(), ENTRY_BYTES, 10 * SPILLED_ID_BYTES).unwrap();
        assert_eq!(
            b.status()[0].spilled,
            3,
            "the memory tier is lost, the spilled ids are not"
        );
        b.enqueue(3, id(5));
        b.enqueue(3, id(6));
        assert_eq!(drain(&b, 3), vec![id(2), id(3), id(4), id(5), id(6)]);
    }
}
