//! `MailGroup`: one group's `GroupStateMachine` as the raft layer's `Application`.
//!
//! Log entries carry bincode-2-encoded `Txn`s; responses are bincode-2-encoded `Outcome`s. An
//! entry that does not decode (a newer client, a bug) is applied as a deterministic rejection:
//! every replica advances over it alike and nothing in the index changes.

use std::io;

use dovetail_raft::{Application, SnapshotFile, SnapshotInfo};

use crate::index::LogPosition;
use crate::state_machine::snapshot::read_snapshot_manifest;
use crate::state_machine::{GroupStateMachine, SmError};
use crate::txn::{Outcome, Rejection, Txn};

/// Encodes a transaction as a log entry payload.
pub fn encode_txn(txn: &Txn) -> Vec<u8> {
    bincode::serde::encode_to_vec(txn, bincode::config::standard()).expect("encoding into memory cannot fail")
}

/// Decodes a log entry payload.
pub fn decode_txn(bytes: &[u8]) -> Result<Txn, String> {
    match bincode::serde::decode_from_slice::<Txn, _>(bytes, bincode::config::standard()) {
        Ok((txn, used)) if used == bytes.len() => Ok(txn),
        Ok((_, used)) => Err(format!(
            "{} trailing bytes after the transaction",
            bytes.len() - used
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    bincode::serde::encode_to_vec(outcome, bincode::config::standard())
        .expect("encoding into memory cannot fail")
}

pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, String> {
    bincode::serde::decode_from_slice::<Outcome, _>(bytes, bincode::config::standard())
        .map(|(outcome, _)| outcome)
        .map_err(|e| e.to_string())
}

fn io_error(e: SmError) -> io::Error {
    io::Error::other(e.to_string())
}

/// A group's state machine, replicated.
#[derive(Debug)]
pub struct MailGroup {
    machine: GroupStateMachine,
    /// Snapshots received from a leader and installed since this process started: tells a
    /// follower that caught up by snapshot from one that caught up from the log.
    snapshots_installed: u64,
}

impl MailGroup {
    pub fn new(machine: GroupStateMachine) -> MailGroup {
        MailGroup {
            machine,
            snapshots_installed: 0,
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

impl Application for MailGroup {
    fn applied_state(&self) -> Option<(LogPosition, Vec<u8>)> {
        let applied = self.machine.applied()?;
        Some((applied, self.machine.state().manifest().consensus_meta.clone()))
    }

    fn apply(&mut self, position: LogPosition, consensus_meta: &[u8], request: &[u8]) -> io::Result<Vec<u8>> {
        let outcome = match decode_txn(request) {
            Ok(txn) => self.machine.apply(position, &txn).map_err(io_error)?,
            Err(reason) => {
                self.machine.apply_blank(position).map_err(io_error)?;
                Some(Outcome::Rejected(Rejection::Invalid {
                    message: format!("undecodable log entry: {reason}"),
                }))
            }
        };
        let outcome = outcome.unwrap_or(Outcome::Rejected(Rejection::Invalid {
            message: format!("log entry {position} was already applied"),
        }));
        self.machine
            .set_consensus_meta(consensus_meta)
            .map_err(io_error)?;
        Ok(encode_outcome(&outcome))
    }

    fn apply_blank(&mut self, position: LogPosition, consensus_meta: &[u8]) -> io::Result<()> {
        self.machine.apply_blank(position).map_err(io_error)?;
        self.machine.set_consensus_meta(consensus_meta).map_err(io_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.machine.flush().map_err(io_error)
    }

    fn build_snapshot(&mut self) -> io::Result<SnapshotInfo> {
        let info = self.machine.checkpoint().map_err(io_error)?;
        Ok(SnapshotInfo {
            file: SnapshotFile::open(&info.path)?,
            position: info.applied.unwrap_or_default(),
            consensus_meta: self.machine.state().manifest().consensus_meta.clone(),
        })
    }

    fn current_snapshot(&self) -> io::Result<Option<SnapshotInfo>> {
        let Some(path) = self.machine.checkpoint_path() else {
            return Ok(None);
        };
        let file = SnapshotFile::open(&path)?;
        let manifest = read_snapshot_manifest(file.reader()).map_err(io_error)?;
        Ok(Some(SnapshotInfo {
            file,
            position: manifest.applied.unwrap_or_default(),
            consensus_meta: manifest.consensus_meta,
        }))
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
    use crate::txn::Op;

    #[test]
    fn entries_round_trip_and_garbage_is_a_deterministic_rejection() {
        let txn = Txn {
            client_id: "c".into(),
            request_seq: 1,
            op: Op::CreateMailbox {
                user: "u".into(),
                mailbox: "INBOX".into(),
                mailbox_guid: [1; 16],
                uid_validity: 9,
            },
        };
        assert_eq!(decode_txn(&encode_txn(&txn)).unwrap(), txn);
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap());
        let response = group
            .apply(LogPosition::new(1, 1), b"meta-1", b"\xff\xff garbage")
            .unwrap();
        assert!(matches!(
            decode_outcome(&response).unwrap(),
            Outcome::Rejected(Rejection::Invalid { .. })
        ));
        let response = group
            .apply(LogPosition::new(1, 2), b"meta-2", &encode_txn(&txn))
            .unwrap();
        assert!(matches!(
            decode_outcome(&response).unwrap(),
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
    }
}
