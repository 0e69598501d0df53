//! `MailGroup`: one group's `GroupStateMachine` as the raft layer's `Application`.
//!
//! Log entries carry bincode-2-encoded `Txn`s; responses are bincode-2-encoded `Outcome`s. An
//! entry that does not decode (a newer client, a bug) is applied as a deterministic rejection:
//! every replica advances over it alike and nothing in the index changes.

use std::io;
use std::time::Duration;

use dovetail_raft::{Application, Request, SnapshotFile, SnapshotInfo, SnapshotJob};

use crate::index::LogPosition;
use crate::state_machine::snapshot::read_snapshot_manifest;
use crate::state_machine::{GroupStateMachine, SmError};
use crate::txn::{Outcome, Rejection, Txn};

/// Encodes a transaction as a log entry payload.
pub fn encode_txn(txn: &Txn) -> Vec<u8> {
    bincode::serde::encode_to_vec(txn, bincode::config::standard()).expect("encoding into memory cannot fail")
}

/// Why a log entry payload or an outcome does not decode. Its message becomes part of an outcome
/// (the rejection of an undecodable entry), which every replica computes on its own, so it
/// depends on the bytes only.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{count} trailing bytes after the transaction")]
    TrailingBytes { count: usize },
    #[error(transparent)]
    Bincode(#[from] bincode::error::DecodeError),
}

/// Decodes a log entry payload.
pub fn decode_txn(bytes: &[u8]) -> Result<Txn, DecodeError> {
    let (txn, used) = bincode::serde::decode_from_slice::<Txn, _>(bytes, bincode::config::standard())?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            count: bytes.len() - used,
        });
    }
    Ok(txn)
}

pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    bincode::serde::encode_to_vec(outcome, bincode::config::standard())
        .expect("encoding into memory cannot fail")
}

pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, DecodeError> {
    let (outcome, _) = bincode::serde::decode_from_slice::<Outcome, _>(bytes, bincode::config::standard())?;
    Ok(outcome)
}

fn io_error(e: SmError) -> io::Error {
    io::Error::other(e.to_string())
}

/// A group that keeps changing is flushed at most this often (see [`MailGroup::periodic_flush`]).
pub const BUSY_GROUP_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// A group's state machine, replicated.
#[derive(Debug)]
pub struct MailGroup {
    machine: GroupStateMachine,
    /// Snapshots received from a leader and installed since this process started: tells a
    /// follower that caught up by snapshot from one that caught up from the log.
    snapshots_installed: u64,
    /// The applied position at the previous periodic flush offer.
    applied_at_last_offer: Option<LogPosition>,
}

impl MailGroup {
    pub fn new(machine: GroupStateMachine) -> MailGroup {
        MailGroup {
            machine,
            snapshots_installed: 0,
            applied_at_last_offer: None,
        }
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    pub fn machine(&self) -> &GroupStateMachine {
        &self.machine
    }

    /// For local maintenance only (see `RaftNode::with_app_mut`): never to change replicated
    /// state.
    pub fn machine_mut(&mut self) -> &mut GroupStateMachine {
        &mut self.machine
    }
}

/// The snapshot in the checkpoint file at `path`, described by its own manifest.
fn snapshot_info_at(path: &std::path::Path) -> io::Result<SnapshotInfo> {
    let file = SnapshotFile::open(path)?;
    let manifest = read_snapshot_manifest(file.reader()).map_err(io_error)?;
    Ok(SnapshotInfo {
        file,
        position: manifest.applied.unwrap_or_default(),
        consensus_meta: manifest.consensus_meta,
    })
}

impl Application for MailGroup {
    fn applied_state(&self) -> Option<(LogPosition, Vec<u8>)> {
        let applied = self.machine.applied()?;
        Some((applied, self.machine.state().manifest().consensus_meta.clone()))
    }

    fn apply(
        &mut self,
        position: LogPosition,
        consensus_meta: &[u8],
        requests: &[Request],
    ) -> io::Result<Vec<Vec<u8>>> {
        let txns: Vec<Result<Txn, Rejection>> = requests
            .iter()
            .map(|request| {
                decode_txn(&request.0).map_err(|reason| Rejection::Invalid {
                    message: format!("undecodable log entry: {reason}"),
                })
            })
            .collect();
        let outcomes = self.machine.apply_batch(position, &txns).map_err(io_error)?;
        let outcomes = outcomes.unwrap_or_else(|| {
            let already = Outcome::Rejected(Rejection::Invalid {
                message: format!("log entry {position} was already applied"),
            });
            vec![already; requests.len()]
        });
        self.machine
            .set_consensus_meta(consensus_meta)
            .map_err(io_error)?;
        Ok(outcomes.iter().map(encode_outcome).collect())
    }

    fn apply_blank(&mut self, position: LogPosition, consensus_meta: &[u8]) -> io::Result<()> {
        self.machine.apply_blank(position).map_err(io_error)?;
        self.machine.set_consensus_meta(consensus_meta).map_err(io_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.machine.flush().map_err(io_error)
    }

    /// Flushes a group that has gone quiet (nothing applied since the previous offer, one
    /// `app_flush_interval` ago) or that has been dirty for [`BUSY_GROUP_FLUSH_INTERVAL`]; a
    /// group still busy is left alone. Why: a flush is what makes `live/` trusted after a crash
    /// (no `DIRTY` mark: no restore from the checkpoint), and a busy group is marked dirty again
    /// by its next write, microseconds later, so flushing it buys nothing while it costs a sync
    /// per changed mailbox file, four more for the manifest and the mark, and two in the next
    /// apply to set the mark again (about 200 syncs a second per node with 16 busy groups every
    /// 500 ms). A group that stops changing is still clean within two intervals.
    fn periodic_flush(&mut self) -> io::Result<()> {
        let applied = self.machine.applied();
        let quiet = applied == self.applied_at_last_offer;
        self.applied_at_last_offer = applied;
        let overdue = self
            .machine
            .dirty_for()
            .is_some_and(|dirty| dirty >= BUSY_GROUP_FLUSH_INTERVAL);
        if quiet || overdue {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn build_snapshot(&mut self) -> io::Result<SnapshotInfo> {
        let info = self.machine.checkpoint().map_err(io_error)?;
        Ok(SnapshotInfo {
            file: SnapshotFile::open(&info.path)?,
            position: info.applied.unwrap_or_default(),
            consensus_meta: self.machine.state().manifest().consensus_meta.clone(),
        })
    }

    /// The group's state is written to the checkpoint's new file here, with the group locked
    /// (about a sixth of the time for a large group, `cargo bench --bench index -- checkpoint`);
    /// the `fsync` and the rename run without the lock, while the group goes on applying.
    fn begin_snapshot(&mut self) -> io::Result<SnapshotJob> {
        let pending = self.machine.begin_checkpoint().map_err(io_error)?;
        Ok(SnapshotJob::Pending(Box::new(move || {
            let info = pending.finish().map_err(io_error)?;
            // Position and metadata from the file opened: the one in place now.
            snapshot_info_at(&info.path)
        })))
    }

    fn current_snapshot(&self) -> io::Result<Option<SnapshotInfo>> {
        let Some(path) = self.machine.checkpoint_path() else {
            return Ok(None);
        };
        snapshot_info_at(&path).map(Some)
    }

    fn install_snapshot(&mut self, snapshot: &SnapshotFile) -> io::Result<LogPosition> {
        let position = self
            .machine
            .install_snapshot(snapshot.reader())
            .map_err(io_error)?;
        self.snapshots_installed += 1;
        Ok(position.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::test_txns::{append, create_inbox};

    #[test]
    fn entries_round_trip_and_garbage_is_a_deterministic_rejection() {
        let txn = create_inbox();
        assert_eq!(decode_txn(&encode_txn(&txn)).unwrap(), txn);
        let mut longer = encode_txn(&txn);
        longer.push(0);
        assert!(matches!(
            decode_txn(&longer),
            Err(DecodeError::TrailingBytes { count: 1 })
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap());
        let response = group
            .apply(
                LogPosition::new(1, 1),
                b"meta-1",
                &[Request(b"\xff\xff garbage".to_vec())],
            )
            .unwrap();
        assert!(matches!(
            decode_outcome(&response[0]).unwrap(),
            Outcome::Rejected(Rejection::Invalid { .. })
        ));
        let response = group
            .apply(LogPosition::new(1, 2), b"meta-2", &[Request(encode_txn(&txn))])
            .unwrap();
        assert!(matches!(
            decode_outcome(&response[0]).unwrap(),
            Outcome::Created { .. }
        ));
        assert_eq!(
            group.applied_state(),
            Some((LogPosition::new(1, 2), b"meta-2".to_vec()))
        );
        let snapshot = group.build_snapshot().unwrap();
        assert_eq!(snapshot.position, LogPosition::new(1, 2));
        assert_eq!(snapshot.consensus_meta, b"meta-2");
        let current = group.current_snapshot().unwrap().unwrap();
        assert_eq!(
            (current.position, current.consensus_meta),
            (LogPosition::new(1, 2), b"meta-2".to_vec())
        );

        let other = tempfile::tempdir().unwrap();
        let mut follower = MailGroup::new(GroupStateMachine::open(other.path()).unwrap());
        assert_eq!(
            follower.install_snapshot(&snapshot.file).unwrap(),
            LogPosition::new(1, 2)
        );
        assert_eq!(follower.applied_state(), group.applied_state());
        assert_eq!(
            follower.machine().state().digest(),
            group.machine().state().digest()
        );

        // The raft crate's way: begun with the group locked, finished without it, after which
        // the group has applied more; the snapshot is of the state it began with.
        let SnapshotJob::Pending(finish) = group.begin_snapshot().unwrap() else {
            panic!("a mail group writes its snapshot outside the lock");
        };
        group
            .apply(
                LogPosition::new(1, 3),
                b"meta-3",
                &[Request(encode_txn(&append("c", 3, 7)))],
            )
            .unwrap();
        let pending = finish().unwrap();
        assert_eq!(
            (pending.position, pending.consensus_meta),
            (LogPosition::new(1, 2), b"meta-2".to_vec())
        );
        assert_eq!(
            group.current_snapshot().unwrap().unwrap().position,
            LogPosition::new(1, 2)
        );
    }

    /// The periodic flush leaves a busy group dirty and flushes it once it is quiet for one
    /// offer; a shutdown flush is unconditional.
    #[test]
    fn periodic_flush_waits_for_a_quiet_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap());
        let dirty_mark = dir.path().join("live").join("DIRTY");
        group
            .apply(
                LogPosition::new(1, 1),
                b"m",
                &[Request(encode_txn(&create_inbox()))],
            )
            .unwrap();
        assert!(group.machine().is_dirty() && dirty_mark.exists());
        // Changed since the previous offer: busy, left dirty.
        group.periodic_flush().unwrap();
        assert!(group.machine().is_dirty() && dirty_mark.exists());
        for seq in 1..=3 {
            let txn = append("a", seq, seq as u8);
            group
                .apply(LogPosition::new(1, 1 + seq), b"m", &[Request(encode_txn(&txn))])
                .unwrap();
            group.periodic_flush().unwrap();
            assert!(group.machine().is_dirty(), "still busy after write {seq}");
        }
        // Nothing applied since the previous offer: quiet, flushed.
        group.periodic_flush().unwrap();
        assert!(!group.machine().is_dirty() && !dirty_mark.exists());
        // A clean group stays clean; a shutdown flush of a busy group flushes.
        group.periodic_flush().unwrap();
        group
            .apply(
                LogPosition::new(1, 5),
                b"m",
                &[Request(encode_txn(&append("a", 4, 9)))],
            )
            .unwrap();
        assert!(group.machine().is_dirty());
        group.flush().unwrap();
        assert!(!group.machine().is_dirty() && !dirty_mark.exists());
        // Reopened after the flush: trusted as is (no restore), at the flushed position.
        drop(group);
        let reopened = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap());
        assert_eq!(
            reopened.applied_state().map(|(p, _)| p),
            Some(LogPosition::new(1, 5))
        );
    }

    /// A coalesced entry answers each request as if it had had an entry of its own: its own
    /// outcome, sessions per request (a retry inside the same entry is answered with the first
    /// outcome), a request that does not decode rejected alone; and re-delivery changes nothing.
    #[test]
    fn a_batch_entry_applies_each_request_on_its_own() {
        let create = create_inbox();
        let requests = [
            Request(encode_txn(&create)),
            Request(encode_txn(&append("a", 1, 2))),
            Request(b"garbage".to_vec()),
            Request(encode_txn(&append("b", 1, 3))),
            Request(encode_txn(&append("a", 1, 2))),
            Request(encode_txn(&append("a", 2, 4))),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap());
        let position = LogPosition::new(1, 1);
        let outcomes: Vec<Outcome> = group
            .apply(position, b"meta", &requests)
            .unwrap()
            .iter()
            .map(|bytes| decode_outcome(bytes).unwrap())
            .collect();
        let appended = |first_uid, modseq| Outcome::Appended {
            uid_validity: 9,
            first_uid,
            last_uid: first_uid,
            modseq,
        };
        assert_eq!(outcomes.len(), 6);
        assert!(matches!(outcomes[0], Outcome::Created { .. }));
        assert_eq!(outcomes[1], appended(1, 2));
        assert!(matches!(
            outcomes[2],
            Outcome::Rejected(Rejection::Invalid { .. })
        ));
        assert_eq!(outcomes[3], appended(2, 3));
        assert_eq!(outcomes[4], appended(1, 2), "a retry gets the first outcome");
        assert_eq!(outcomes[5], appended(3, 4));
        assert_eq!(group.applied_state(), Some((position, b"meta".to_vec())));

        // The same requests one entry each end in the same mailbox (apart from positions).
        let other = tempfile::tempdir().unwrap();
        let mut single = MailGroup::new(GroupStateMachine::open(other.path()).unwrap());
        for (i, request) in requests.iter().enumerate() {
            let one = single
                .apply(
                    LogPosition::new(1, i as u64 + 1),
                    b"meta",
                    std::slice::from_ref(request),
                )
                .unwrap();
            assert_eq!(decode_outcome(&one[0]).unwrap(), outcomes[i]);
        }

        let digest = group.machine().state().digest();
        let again = group.apply(position, b"meta", &requests).unwrap();
        assert_eq!(again.len(), requests.len());
        assert_eq!(
            group.machine().state().digest(),
            digest,
            "re-delivery changed the state"
        );
    }
}
