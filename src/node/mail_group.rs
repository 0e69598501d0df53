//! `MailGroup`: one group's `GroupStateMachine` as the raft layer's `Application`.
//!
//! Log entries carry `Txn`s in the group's log encoding (`txn::encoding`); responses are
//! bincode-2-encoded `Outcome`s. An entry that is no entry of any encoding (a bug) is applied as
//! a deterministic rejection: every replica advances over it alike and nothing in the index
//! changes. An entry in an encoding this build cannot apply stops the group on this node with an
//! error that says so (the raft layer stops the group): turning it into a rejection would make
//! this replica diverge from the ones that applied it.

use std::io;
use std::time::{Duration, Instant};

use dovetail_raft::{Application, FlushFinish, FlushJob, Request, SnapshotFile, SnapshotInfo, SnapshotJob};

use crate::index::LogPosition;
use crate::state_machine::snapshot::read_snapshot_manifest;
use crate::state_machine::{GroupStateMachine, PendingFlush, SmError};
use crate::txn::encoding::{admissible, decode_entry, EntryError};
use crate::txn::{Outcome, Rejection, Txn};

/// Why an outcome does not decode.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DecodeError(#[from] bincode::error::DecodeError);

pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    bincode::serde::encode_to_vec(outcome, bincode::config::standard())
        .expect("encoding into memory cannot fail")
}

pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, DecodeError> {
    let (outcome, _) = dovetail_raft::decode::decode_from_slice::<Outcome>(bytes)?;
    Ok(outcome)
}

/// The raft layer's view of a state machine failure: a full disk keeps its kind
/// (`StorageFull`), which the raft layer waits out instead of stopping the group.
fn io_error(e: SmError) -> io::Error {
    if e.is_out_of_space() {
        io::Error::new(io::ErrorKind::StorageFull, e.to_string())
    } else {
        io::Error::other(e.to_string())
    }
}

/// Why a flush or snapshot waits: an entry is half applied.
fn apply_incomplete() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "an entry is half applied, waiting for disk space: no flush or snapshot until it is done",
    )
}

/// A group that keeps changing is offered a flush at most this often (see
/// [`MailGroup::begin_periodic_flush`]).
pub const BUSY_GROUP_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// A group's state machine, replicated.
#[derive(Debug)]
pub struct MailGroup {
    machine: GroupStateMachine,
    /// The highest log encoding this node applies (`txn::encoding::CURRENT_ENCODING`, or the
    /// test build's next one).
    max_encoding: u8,
    /// Snapshots received from a leader and installed since this process started: tells a
    /// follower that caught up by snapshot from one that caught up from the log.
    snapshots_installed: u64,
    /// The applied position at the previous periodic flush offer.
    applied_at_last_offer: Option<LogPosition>,
    /// When the last periodic flush began (see [`BUSY_GROUP_FLUSH_INTERVAL`]).
    last_flush_begun: Option<Instant>,
    /// Periodic flushes that cleared the dirty mark, and those that found the group changed
    /// by the time their syncs were done (the mark stays).
    flushes_cleared: u64,
    flushes_overtaken: u64,
    /// Set while the last entry's apply failed for want of disk space part way (the raft layer
    /// retries it): the requests before the failing one are applied and in the session table,
    /// the applied position is not advanced. Nothing of that in-between state may be written
    /// out (a flush or a checkpoint would record changes of an entry beyond the position it
    /// names); the retry finishes it (the applied requests answer from the session table).
    apply_incomplete: bool,
    /// The names log encoding 2 refuses that the group held when this process opened it
    /// (`GroupState::legacy_names`: not NFC, or with invisible characters), at most
    /// [`MAX_LISTED_LEGACY_NAMES`] and then how many more. Reported once in the log and in
    /// `/admin/status`; they stay, since renaming them would change replicated state.
    legacy_names: Vec<String>,
}

/// Most legacy names a group lists (in the log and `/admin/status`) before "and N more".
pub const MAX_LISTED_LEGACY_NAMES: usize = 20;

impl MailGroup {
    /// A group of a node that applies log encodings up to `max_encoding`.
    pub fn new(machine: GroupStateMachine, max_encoding: u8) -> MailGroup {
        let mut legacy_names = machine.state().legacy_names();
        if legacy_names.len() > MAX_LISTED_LEGACY_NAMES {
            let more = legacy_names.len() - MAX_LISTED_LEGACY_NAMES;
            legacy_names.truncate(MAX_LISTED_LEGACY_NAMES);
            legacy_names.push(format!("and {more} more"));
        }
        MailGroup {
            machine,
            max_encoding,
            snapshots_installed: 0,
            applied_at_last_offer: None,
            last_flush_begun: None,
            flushes_cleared: 0,
            flushes_overtaken: 0,
            apply_incomplete: false,
            legacy_names,
        }
    }

    /// The names log encoding 2 refuses that the group held when it was opened.
    pub fn legacy_names(&self) -> &[String] {
        &self.legacy_names
    }

    /// The group's active log encoding, as of what this node applied.
    pub fn encoding(&self) -> u8 {
        self.machine.state().manifest().encoding
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// Periodic flushes that cleared the dirty mark, and those that found the group changed
    /// after their syncs (the mark stays), since this process opened the group.
    pub fn periodic_flushes(&self) -> (u64, u64) {
        (self.flushes_cleared, self.flushes_overtaken)
    }

    /// Whether a periodic flush is due; notes the offer. See [`Self::begin_periodic_flush`].
    fn periodic_flush_due(&mut self) -> bool {
        let applied = self.machine.applied();
        let quiet = applied == self.applied_at_last_offer;
        self.applied_at_last_offer = applied;
        let overdue = self
            .machine
            .dirty_for()
            .is_some_and(|dirty| dirty >= BUSY_GROUP_FLUSH_INTERVAL)
            && self
                .last_flush_begun
                .is_none_or(|begun| begun.elapsed() >= BUSY_GROUP_FLUSH_INTERVAL);
        quiet || overdue
    }

    /// The last part of a periodic flush, with the group locked again.
    fn finish_periodic_flush(&mut self, pending: PendingFlush) -> io::Result<()> {
        // An apply that failed part way (`apply_incomplete`) changed the group first: the
        // flush then leaves the mark, as for any change since it began.
        if self.machine.finish_flush(pending).map_err(io_error)? {
            self.flushes_cleared += 1;
        } else {
            self.flushes_overtaken += 1;
            tracing::debug!(dir = %self.machine.dir().display(), "periodic flush overtaken by an apply: the group stays dirty");
        }
        Ok(())
    }

    pub fn machine(&self) -> &GroupStateMachine {
        &self.machine
    }

    /// For local maintenance only (see `RaftNode::with_app_mut`): never to change replicated
    /// state.
    pub fn machine_mut(&mut self) -> &mut GroupStateMachine {
        &mut self.machine
    }

    /// A copy of the group as it stands, for a backup (see
    /// `GroupStateMachine::export_to_temp_file`): the snapshot stream in a temporary file, the
    /// position it covers and its length. Refused (as a full disk, which passes) while an entry
    /// is half applied: the copy would hold changes of an entry beyond the position it names.
    pub fn export_copy(&self) -> io::Result<(std::fs::File, Option<LogPosition>, u64)> {
        if self.apply_incomplete {
            return Err(apply_incomplete());
        }
        self.machine.export_to_temp_file().map_err(io_error)
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
        let mut txns: Vec<Result<Txn, Rejection>> = Vec::with_capacity(requests.len());
        // The active encoding as the requests before this one leave it (a gate entry may come
        // first in a batch): a function of the state and the entry, the same on every replica.
        let mut active = self.encoding();
        for request in requests {
            match decode_entry(&request.0, self.max_encoding) {
                Ok((encoding, txn)) if admissible(encoding, &txn, active) => {
                    if let crate::txn::Op::SetEncoding { version } = txn.op {
                        active = active.max(version);
                    }
                    txns.push(Ok(txn));
                }
                Ok((encoding, txn)) => txns.push(Err(Rejection::Invalid {
                    message: format!(
                        "{} in log encoding {encoding}, above the group's active encoding {active}",
                        txn.op.describe()
                    ),
                })),
                Err(EntryError::Garbage(reason)) => txns.push(Err(Rejection::Invalid {
                    message: format!("undecodable log entry: {reason}"),
                })),
                Err(unsupported @ EntryError::Unsupported { .. }) => {
                    // Before anything of the entry is applied: the group stops at this position.
                    tracing::error!(
                        position = %position,
                        error = %unsupported,
                        "this node cannot apply the group's log: the group stops here until the node runs a newer release"
                    );
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("log entry {position}: {unsupported}"),
                    ));
                }
            }
        }
        let outcomes = match self.machine.apply_batch(position, &txns) {
            Ok(outcomes) => {
                self.apply_incomplete = false;
                outcomes
            }
            Err(e) => {
                self.apply_incomplete = e.is_out_of_space();
                return Err(io_error(e));
            }
        };
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
        if self.apply_incomplete {
            // Left dirty: recovery restores the checkpoint and replays the log.
            return Ok(());
        }
        self.machine.flush().map_err(io_error)
    }

    /// Runs [`begin_periodic_flush`](Self::begin_periodic_flush)'s job all at once.
    fn periodic_flush(&mut self) -> io::Result<()> {
        match self.begin_periodic_flush()? {
            FlushJob::Done => Ok(()),
            FlushJob::Pending(slow) => slow()?(self),
        }
    }

    /// Flushes a group that has gone quiet (nothing applied since the previous offer, one
    /// `app_flush_interval` ago) or that has been dirty for [`BUSY_GROUP_FLUSH_INTERVAL`] (and
    /// had no flush begun for as long); a group still busy is left alone. Why: a flush is what
    /// makes `live/` trusted after a crash (no `DIRTY` mark: no restore from the checkpoint),
    /// and a busy group is marked dirty again by its next write, microseconds later, so
    /// flushing it buys little while it costs a sync per changed mailbox file, four more for the
    /// manifest and the mark, and two in the next apply to set the mark again.
    ///
    /// The flush is split (`GroupStateMachine::begin_flush`): here, with the group locked, only
    /// handles to the changed files and the manifest's bytes are taken; the syncs run without
    /// the lock while the group goes on applying; with the lock again, the manifest is put in
    /// place and the mark removed (two directory syncs) only if nothing was applied meanwhile.
    /// A group that never pauses for as long as the syncs take is then never marked clean by a
    /// periodic flush. That is correct, and costs only recovery time: after a crash it restores
    /// its checkpoint and replays the log from there (which the log keeps anyway), as it would
    /// have had to a moment after any flush of it (its next write sets the mark again). Its
    /// pages are still written back every [`BUSY_GROUP_FLUSH_INTERVAL`] by the syncs; once it
    /// pauses, the next offer finds it quiet and clears the mark; the shutdown flush
    /// ([`flush`](Application::flush)) is whole, with the group locked.
    fn begin_periodic_flush(&mut self) -> io::Result<FlushJob<Self>> {
        if !self.periodic_flush_due() || self.apply_incomplete {
            return Ok(FlushJob::Done);
        }
        let Some(mut pending) = self.machine.begin_flush().map_err(io_error)? else {
            return Ok(FlushJob::Done);
        };
        self.last_flush_begun = Some(Instant::now());
        Ok(FlushJob::Pending(Box::new(move || {
            pending.sync().map_err(io_error)?;
            let finish: FlushFinish<MailGroup> =
                Box::new(move |group: &mut MailGroup| group.finish_periodic_flush(pending));
            Ok(finish)
        })))
    }

    fn build_snapshot(&mut self) -> io::Result<SnapshotInfo> {
        if self.apply_incomplete {
            return Err(apply_incomplete());
        }
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
        if self.apply_incomplete {
            return Err(apply_incomplete());
        }
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
        // A group already past this node's encodings: installing it would leave the node with
        // a group it cannot apply the next entry of. Stop here, as `apply` does.
        let encoding = read_snapshot_manifest(snapshot.reader())
            .map_err(io_error)?
            .encoding;
        if encoding > self.max_encoding {
            tracing::error!(
                encoding,
                max = self.max_encoding,
                "a snapshot of this group is in a log encoding this node cannot apply: the group stops here until the node runs a newer release"
            );
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "snapshot in log encoding {encoding}, and this build applies encodings up to {}: upgrade this node",
                    self.max_encoding
                ),
            ));
        }
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
    use crate::txn::encoding::{encode_entry, CURRENT_ENCODING};
    use crate::txn::test_txns::{append, create_inbox};

    /// An outcome (the leader's answer, forwarded between nodes) whose message length claims
    /// 2^40 bytes is a decode error, not an allocation of that size.
    #[test]
    fn an_outcome_claiming_a_huge_length_is_an_error() {
        let outcome = Outcome::Rejected(Rejection::NoSuchMailbox { mailbox: "x".into() });
        let bytes = encode_outcome(&outcome);
        assert_eq!(decode_outcome(&bytes).unwrap(), outcome);
        assert_eq!(
            &bytes[bytes.len() - 2..],
            &[1, b'x'],
            "the name's length and byte"
        );
        let mut huge = bytes[..bytes.len() - 2].to_vec();
        huge.push(253);
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        huge.push(b'x');
        assert!(decode_outcome(&huge).is_err());
    }

    /// A request carrying `txn` in the legacy encoding, the active one of a new group.
    fn entry(txn: &Txn) -> Request {
        Request(encode_entry(txn, 0).unwrap())
    }

    /// The gate entry that raises a group to `version`, in that encoding.
    fn gate(version: u8) -> Request {
        let txn = Txn {
            client_id: "anon-1-encoding".into(),
            request_seq: u64::from(version),
            op: crate::txn::Op::SetEncoding { version },
        };
        Request(encode_entry(&txn, version).unwrap())
    }

    #[test]
    fn entries_round_trip_and_garbage_is_a_deterministic_rejection() {
        let txn = create_inbox();
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap(), CURRENT_ENCODING);
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
            .apply(
                LogPosition::new(1, 2),
                b"meta-2",
                &[Request(encode_entry(&txn, 0).unwrap())],
            )
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
        let mut follower = MailGroup::new(GroupStateMachine::open(other.path()).unwrap(), CURRENT_ENCODING);
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
                &[Request(encode_entry(&append("c", 3, 7), 1).unwrap())],
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

    /// The gate moves a group's encoding up entry by entry; an op above the active encoding is
    /// rejected alike everywhere; and an entry in an encoding above the node's own stops the
    /// group there (an error, which the raft layer turns into a stopped group), before anything
    /// of it is applied, where a node that knows the encoding applies it.
    #[test]
    fn an_entry_in_an_unknown_encoding_stops_the_group_instead_of_being_rejected() {
        use crate::txn::encoding::TEST_NEXT_ENCODING;
        let probe = |seq| Txn {
            client_id: "c".into(),
            request_seq: seq,
            op: crate::txn::Op::Probe { user: "u".into() },
        };
        let probe_in = |seq, encoding| Request(encode_entry(&probe(seq), encoding).unwrap());
        for (max, newer) in [(CURRENT_ENCODING, false), (TEST_NEXT_ENCODING, true)] {
            let dir = tempfile::tempdir().unwrap();
            let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap(), max);
            let at = |index| LogPosition::new(1, index);
            group.apply(at(1), b"m", &[entry(&create_inbox())]).unwrap();
            let raised = group.apply(at(2), b"m", &[gate(1)]).unwrap();
            assert_eq!(
                decode_outcome(&raised[0]).unwrap(),
                Outcome::EncodingSet { encoding: 1 }
            );
            assert_eq!(group.encoding(), 1);
            if newer {
                // Above the active encoding: the same rejection on every replica.
                let early = group
                    .apply(at(3), b"m", &[probe_in(2, TEST_NEXT_ENCODING)])
                    .unwrap();
                assert!(decode_outcome(&early[0]).unwrap().is_rejected());
                let outcomes = group
                    .apply(
                        at(4),
                        b"m",
                        &[gate(TEST_NEXT_ENCODING), probe_in(3, TEST_NEXT_ENCODING)],
                    )
                    .unwrap();
                assert_eq!(decode_outcome(&outcomes[1]).unwrap(), Outcome::Probed);
                assert_eq!(group.encoding(), TEST_NEXT_ENCODING);
                // Nor does a node of the older build install a snapshot of the group now.
                let snapshot = group.build_snapshot().unwrap();
                let other = tempfile::tempdir().unwrap();
                let mut older =
                    MailGroup::new(GroupStateMachine::open(other.path()).unwrap(), CURRENT_ENCODING);
                let error = older.install_snapshot(&snapshot.file).unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::Unsupported);
                assert_eq!(older.applied_state(), None, "nothing installed");
            } else {
                let error = group.apply(at(3), b"m", &[gate(TEST_NEXT_ENCODING)]).unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::Unsupported);
                assert!(error.to_string().contains("upgrade this node"), "{error}");
                assert_eq!(group.applied_state().unwrap().0, at(2), "nothing of it applied");
                assert_eq!(group.encoding(), 1);
            }
        }
    }

    /// The periodic flush as the raft layer runs it: begun with the group locked, synced
    /// without the lock (an apply may come in meanwhile), finished with the lock again. An
    /// apply in between keeps the dirty mark; the next quiet offer clears it.
    #[test]
    fn a_periodic_flush_overtaken_by_an_apply_leaves_the_group_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap(), CURRENT_ENCODING);
        let dirty_mark = dir.path().join("live").join("DIRTY");
        group
            .apply(LogPosition::new(1, 1), b"m", &[entry(&create_inbox())])
            .unwrap();
        group.periodic_flush().unwrap(); // busy: changed since the previous offer
        let FlushJob::Pending(slow) = group.begin_periodic_flush().unwrap() else {
            panic!("quiet and dirty: a flush is due");
        };
        let finish = slow().unwrap();
        group
            .apply(LogPosition::new(1, 2), b"m", &[entry(&append("a", 1, 1))])
            .unwrap();
        finish(&mut group).unwrap();
        assert!(group.machine().is_dirty() && dirty_mark.exists());
        assert_eq!(group.periodic_flushes(), (0, 1));
        // The next offer finds it changed: left alone; the one after, quiet: flushed.
        assert!(matches!(group.begin_periodic_flush().unwrap(), FlushJob::Done));
        let FlushJob::Pending(slow) = group.begin_periodic_flush().unwrap() else {
            panic!("quiet and dirty: a flush is due");
        };
        slow().unwrap()(&mut group).unwrap();
        assert!(!group.machine().is_dirty() && !dirty_mark.exists());
        assert_eq!(group.periodic_flushes(), (1, 1));
        let applied = group.applied_state();
        drop(group);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.recovery(), &crate::state_machine::Recovery::Clean);
        assert_eq!(reopened.applied(), applied.map(|(position, _)| position));
    }

    /// The periodic flush leaves a busy group dirty and flushes it once it is quiet for one
    /// offer; a shutdown flush is unconditional.
    #[test]
    fn periodic_flush_waits_for_a_quiet_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap(), CURRENT_ENCODING);
        let dirty_mark = dir.path().join("live").join("DIRTY");
        group
            .apply(LogPosition::new(1, 1), b"m", &[entry(&create_inbox())])
            .unwrap();
        assert!(group.machine().is_dirty() && dirty_mark.exists());
        // Changed since the previous offer: busy, left dirty.
        group.periodic_flush().unwrap();
        assert!(group.machine().is_dirty() && dirty_mark.exists());
        for seq in 1..=3 {
            let txn = append("a", seq, seq as u8);
            group
                .apply(
                    LogPosition::new(1, 1 + seq),
                    b"m",
                    &[Request(encode_entry(&txn, 0).unwrap())],
                )
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
            .apply(LogPosition::new(1, 5), b"m", &[entry(&append("a", 4, 9))])
            .unwrap();
        assert!(group.machine().is_dirty());
        group.flush().unwrap();
        assert!(!group.machine().is_dirty() && !dirty_mark.exists());
        // Reopened after the flush: trusted as is (no restore), at the flushed position.
        drop(group);
        let reopened = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap(), CURRENT_ENCODING);
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
            entry(&create),
            entry(&append("a", 1, 2)),
            Request(b"garbage".to_vec()),
            entry(&append("b", 1, 3)),
            entry(&append("a", 1, 2)),
            entry(&append("a", 2, 4)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut group = MailGroup::new(GroupStateMachine::open(dir.path()).unwrap(), CURRENT_ENCODING);
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
        let mut single = MailGroup::new(GroupStateMachine::open(other.path()).unwrap(), CURRENT_ENCODING);
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
