//! `GroupState`: a group's mailboxes and manifest, and the deterministic `apply` of transactions.
//!
//! Generic over where mailbox files live (`MailboxFiles`): the node uses memory-mapped files in a
//! group directory (`GroupStateMachine`), tests and benchmarks use memory. Given the same log,
//! every `GroupState` ends with the same manifest and byte-identical mailbox images.

use std::collections::{BTreeMap, BTreeSet};

use super::error::SmError;
use super::manifest::{request_digest, Manifest, SessionCheck};
use crate::index::{LogPosition, MailboxIndex, Storage, VecStorage};
use crate::txn::validate::{canonical_mailbox_name, validate_in};
use crate::txn::{Guid, Op, Outcome, Rejection, Txn};

/// Creates and removes the storage of mailbox files.
pub trait MailboxFiles {
    type Storage: Storage;
    /// Creates the file of a new mailbox with `image` as its content.
    fn create(&mut self, mailbox_guid: &Guid, image: &[u8]) -> Result<Self::Storage, SmError>;
    /// Removes a deleted mailbox's file.
    fn remove(&mut self, mailbox_guid: &Guid) -> Result<(), SmError>;
    /// Replaces a mailbox's file by `image` (the upgrade to a newer index format); on an error
    /// the old file is as it was.
    fn replace(&mut self, mailbox_guid: &Guid, image: &[u8]) -> Result<Self::Storage, SmError>;
}

/// Mailbox files held in memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryFiles;

impl MailboxFiles for MemoryFiles {
    type Storage = VecStorage;
    fn create(&mut self, _: &Guid, image: &[u8]) -> Result<VecStorage, SmError> {
        Ok(VecStorage::from_bytes(image.to_vec()))
    }
    fn remove(&mut self, _: &Guid) -> Result<(), SmError> {
        Ok(())
    }
    fn replace(&mut self, _: &Guid, image: &[u8]) -> Result<VecStorage, SmError> {
        Ok(VecStorage::from_bytes(image.to_vec()))
    }
}

/// The state of one group.
#[derive(Debug)]
pub struct GroupState<F: MailboxFiles> {
    pub(super) files: F,
    pub(super) manifest: Manifest,
    pub(super) mailboxes: BTreeMap<Guid, MailboxIndex<F::Storage>>,
    /// Mailboxes written since the last `take_touched` (the disk layer flushes these).
    pub(super) touched: BTreeSet<Guid>,
    /// How many mailboxes and messages the group holds: counted in full when the state is
    /// built (open, restore, snapshot install), then kept as ops are applied, so reading it
    /// (the metrics gauges, every second) costs nothing per mailbox. Invariant: equal to
    /// [`recount`](Self::recount) between applies.
    pub(super) counts: GroupCounts,
}

/// How many mailboxes a group's manifest names and how many messages their indexes hold (the
/// sum of their headers' `message_count`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupCounts {
    pub mailboxes: u64,
    pub messages: u64,
}

impl GroupState<MemoryFiles> {
    /// An empty group held in memory.
    pub fn in_memory() -> GroupState<MemoryFiles> {
        GroupState::new(MemoryFiles, Manifest::default(), BTreeMap::new())
    }
}

impl<F: MailboxFiles> GroupState<F> {
    pub fn new(files: F, manifest: Manifest, mailboxes: BTreeMap<Guid, MailboxIndex<F::Storage>>) -> Self {
        let mut state = GroupState {
            files,
            manifest,
            mailboxes,
            touched: BTreeSet::new(),
            counts: GroupCounts::default(),
        };
        state.counts = state.recount();
        state
    }

    /// The group's mailbox and message counts, as kept on apply (O(1)).
    pub fn counts(&self) -> GroupCounts {
        self.counts
    }

    /// The counts by walking the manifest and every mailbox header (O(mailboxes)): what
    /// [`counts`](Self::counts) must equal.
    pub fn recount(&self) -> GroupCounts {
        GroupCounts {
            mailboxes: self.manifest.users.values().map(|names| names.len() as u64).sum(),
            messages: self
                .mailboxes
                .values()
                .map(|index| u64::from(index.header().message_count))
                .sum(),
        }
    }

    /// The counts of the mailboxes `guids` alone: whether each is open (1 mailbox) and its
    /// header's message count. A GUID named twice counts once.
    fn counts_of(&self, guids: &[Option<Guid>; 2]) -> GroupCounts {
        let mut counts = GroupCounts::default();
        let second = if guids[1] == guids[0] { None } else { guids[1] };
        for guid in [guids[0], second].iter().flatten() {
            if let Some(index) = self.mailboxes.get(guid) {
                counts.mailboxes += 1;
                counts.messages += u64::from(index.header().message_count);
            }
        }
        counts
    }

    /// Moves the counts from `before` to `after` (of the same mailboxes).
    pub(super) fn recount_from(&mut self, before: GroupCounts, after: GroupCounts) {
        let moved = |total: u64, before: u64, after: u64| {
            (total + after).checked_sub(before).unwrap_or_else(|| {
                panic!("invariant: the group counts at least the {before} of the mailboxes changed")
            })
        };
        self.counts.mailboxes = moved(self.counts.mailboxes, before.mailboxes, after.mailboxes);
        self.counts.messages = moved(self.counts.messages, before.messages, after.messages);
    }

    /// The mailboxes whose existence or message count `op` may change: the ones it names
    /// (resolved before it is applied) and the GUID a create gives. A rename changes neither
    /// count.
    fn mailboxes_counted_by(&self, op: &Op) -> [Option<Guid>; 2] {
        let named = |user: &str, mailbox: &str| self.manifest.mailbox(user, &canonical_mailbox_name(mailbox));
        match op {
            Op::CreateMailbox { mailbox_guid, .. } => [Some(*mailbox_guid), None],
            Op::DeleteMailbox { user, mailbox }
            | Op::Append { user, mailbox, .. }
            | Op::Deliver { user, mailbox, .. }
            | Op::Store { user, mailbox, .. }
            | Op::Expunge { user, mailbox, .. } => [named(user, mailbox), None],
            Op::Copy { user, from, to, .. } | Op::Move { user, from, to, .. } => {
                [named(user, from), named(user, to)]
            }
            Op::RenameMailbox { .. }
            | Op::SetEncoding { .. }
            | Op::Probe { .. }
            | Op::Subscribe { .. }
            | Op::Unsubscribe { .. } => [None, None],
        }
    }

    /// [`apply_op`](Self::apply_op), keeping the counts: those of the mailboxes the op can
    /// change, before and after (also after an error, which may leave a change half made).
    fn apply_counted(&mut self, position: LogPosition, op: &Op) -> Result<Outcome, SmError> {
        let changed = self.mailboxes_counted_by(op);
        let before = self.counts_of(&changed);
        let outcome = self.apply_op(position, op);
        let after = self.counts_of(&changed);
        self.recount_from(before, after);
        outcome
    }

    /// The last log entry applied.
    pub fn applied(&self) -> Option<LogPosition> {
        self.manifest.applied
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Open mailbox indexes by GUID.
    pub fn mailboxes(&self) -> &BTreeMap<Guid, MailboxIndex<F::Storage>> {
        &self.mailboxes
    }

    /// Applies the transaction at log position `position`.
    ///
    /// Returns `None` if the group has already applied `position` (replay after a restart), else
    /// the outcome: a retried `(client_id, request_seq)` returns its first outcome without being
    /// applied again. An entry that skips a log index is an error: a replica never has gaps.
    pub fn apply(&mut self, position: LogPosition, txn: &Txn) -> Result<Option<Outcome>, SmError> {
        if !self.advance_to(position)? {
            return Ok(None);
        }
        let outcome = self.apply_txn(position, txn)?;
        self.manifest.applied = Some(position);
        Ok(Some(outcome))
    }

    /// Applies the transactions of one log entry, in order, at `position`: a leader coalesces
    /// the requests waiting for a group into one entry. Each is checked, applied and recorded
    /// in the session table on its own, exactly as if it had an entry of its own; an `Err`
    /// item (a request that did not decode) becomes that rejection and changes nothing.
    /// Returns `None` if `position` was already applied.
    pub fn apply_batch(
        &mut self,
        position: LogPosition,
        txns: &[Result<Txn, Rejection>],
    ) -> Result<Option<Vec<Outcome>>, SmError> {
        if !self.advance_to(position)? {
            return Ok(None);
        }
        let mut outcomes = Vec::with_capacity(txns.len());
        for txn in txns {
            outcomes.push(match txn {
                Ok(txn) => self.apply_txn(position, txn)?,
                Err(rejection) => Outcome::Rejected(rejection.clone()),
            });
        }
        self.manifest.applied = Some(position);
        debug_assert_eq!(
            outcomes.len(),
            txns.len(),
            "invariant: one outcome per request of a batch"
        );
        self.debug_assert_files_not_ahead();
        Ok(Some(outcomes))
    }

    /// One transaction at `position`, which `advance_to` accepted: the session check, then
    /// validation and the operation.
    fn apply_txn(&mut self, position: LogPosition, txn: &Txn) -> Result<Outcome, SmError> {
        // From log encoding 2 on, a session remembers what its last request was: the same
        // (client_id, request_seq) with other content is refused, not answered as a retry.
        let digest = (self.manifest.encoding >= 2).then(|| request_digest(&txn.op));
        let stored_digest = self.manifest.sessions.digest(&txn.client_id);
        let outcome = match self.manifest.sessions.check(&txn.client_id, txn.request_seq) {
            SessionCheck::Duplicate(_)
                if digest.is_some() && stored_digest.is_some() && digest != stored_digest =>
            {
                Outcome::Rejected(Rejection::RequestReused {
                    request_seq: txn.request_seq,
                })
            }
            SessionCheck::Duplicate(first) => first.clone(),
            SessionCheck::Stale { last_seq } => Outcome::Rejected(Rejection::StaleRequest {
                request_seq: txn.request_seq,
                last_seq,
            }),
            SessionCheck::New => {
                let outcome = match validate_in(txn, self.manifest.encoding) {
                    Err(e) => Outcome::Rejected(Rejection::Invalid {
                        message: e.to_string(),
                    }),
                    Ok(()) => self.apply_counted(position, &txn.op)?,
                };
                self.manifest.sessions.record(
                    &txn.client_id,
                    txn.request_seq,
                    position.index,
                    outcome.clone(),
                );
                if let Some(digest) = digest {
                    self.manifest.sessions.set_digest(&txn.client_id, digest);
                }
                outcome
            }
        };
        Ok(outcome)
    }

    /// Records a log entry that carries no transaction (a Raft blank or membership entry).
    /// Returns false if it was already applied.
    pub fn apply_blank(&mut self, position: LogPosition) -> Result<bool, SmError> {
        if !self.advance_to(position)? {
            return Ok(false);
        }
        self.manifest.applied = Some(position);
        Ok(true)
    }

    /// The manifest's invariant: no file records a position past the group's (debug builds,
    /// over the files changed since the last flush).
    fn debug_assert_files_not_ahead(&self) {
        if cfg!(debug_assertions) {
            let applied = self.manifest.applied.map_or(0, |a| a.index);
            for guid in &self.touched {
                if let Some(index) = self.mailboxes.get(guid) {
                    debug_assert!(
                        index.header().applied.index <= applied,
                        "invariant: mailbox file at {} past the group's {applied}",
                        index.header().applied
                    );
                }
            }
        }
    }

    /// Checks that `position` is the next entry: false if already applied, an error on a gap.
    fn advance_to(&self, position: LogPosition) -> Result<bool, SmError> {
        match self.manifest.applied {
            Some(applied) if position.index <= applied.index => Ok(false),
            Some(applied) if position.index == applied.index + 1 => Ok(true),
            // Raft logs start at index 0 or 1.
            None if position.index <= 1 => Ok(true),
            _ => Err(SmError::Gap {
                applied: self.manifest.applied,
                entry: position,
            }),
        }
    }

    /// The mailboxes changed since the last call, and forgets them.
    pub fn take_touched(&mut self) -> BTreeSet<Guid> {
        std::mem::take(&mut self.touched)
    }

    /// A digest of the whole group state: the manifest encoding and every mailbox image.
    /// Equal digests at the same applied position mean byte-identical replicas.
    pub fn digest(&self) -> u64 {
        let mut crc = crc32c::crc32c(&self.manifest.encode());
        let mut digest = u64::from(crc);
        for (guid, index) in &self.mailboxes {
            crc = crc32c::crc32c_append(crc32c::crc32c(guid), index.bytes());
            digest = digest.rotate_left(17) ^ u64::from(crc);
        }
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::test_txns::{append, create_inbox};
    use crate::txn::Op;

    fn gate(version: u8) -> Txn {
        Txn {
            client_id: "anon-1-encoding".into(),
            request_seq: u64::from(version),
            op: Op::SetEncoding { version },
        }
    }

    /// From log encoding 2 on, the same `(client_id, request_seq)` with another request is
    /// refused (`RequestReused`) instead of answered with the first request's outcome; a true
    /// retry still gets that outcome, applied once. Before encoding 2 the content is not looked
    /// at (sessions recorded then carry no digest).
    #[test]
    fn a_reused_request_seq_with_other_content_is_refused_from_encoding_2() {
        for encoding in [0, 2] {
            let mut sm = GroupState::in_memory();
            let mut index = 0;
            let mut at = |sm: &mut GroupState<MemoryFiles>, txn: &Txn| {
                index += 1;
                sm.apply(LogPosition::new(1, index), txn).unwrap().unwrap()
            };
            if encoding > 0 {
                assert_eq!(at(&mut sm, &gate(encoding)), Outcome::EncodingSet { encoding });
            }
            at(&mut sm, &create_inbox());
            let first = at(&mut sm, &append("eo", 5, 1));
            assert!(
                matches!(first, Outcome::Appended { first_uid: 1, .. }),
                "{first:?}"
            );
            // The same pair, another request (another message).
            let reused = at(&mut sm, &append("eo", 5, 2));
            if encoding >= 2 {
                assert_eq!(
                    reused,
                    Outcome::Rejected(Rejection::RequestReused { request_seq: 5 })
                );
            } else {
                assert_eq!(reused, first, "before encoding 2, a duplicate by its pair alone");
            }
            // A true retry is still answered with the first outcome, and nothing is applied twice,
            // also when the node that took it chose another internal date.
            assert_eq!(at(&mut sm, &append("eo", 5, 1)), first);
            let mut later = append("eo", 5, 1);
            if let Op::Append { messages, .. } = &mut later.op {
                messages[0].internal_date += 60;
            }
            assert_eq!(at(&mut sm, &later), first);
            let inbox = sm.mailbox_index("u", "INBOX").unwrap();
            assert_eq!(inbox.len(), 1);
        }
    }

    /// Names stored before log encoding 2 that it refuses (not NFC, invisible characters) are
    /// found, named once each, quoted at most 64 bytes; NFC names are not listed.
    #[test]
    fn legacy_names_are_found() {
        let mut sm = GroupState::in_memory();
        let long = format!("e{}", "\u{301}".repeat(100));
        let creates = [
            ("alice", "caf\u{e9}"),
            ("alice", "cafe\u{301}"),
            ("b\u{202e}ob", "INBOX"),
            ("carol", long.as_str()),
        ];
        for (seq, (user, mailbox)) in creates.into_iter().enumerate() {
            let txn = Txn {
                client_id: "c".into(),
                request_seq: seq as u64 + 1,
                op: Op::CreateMailbox {
                    user: user.into(),
                    mailbox: mailbox.into(),
                    mailbox_guid: [seq as u8 + 1; 16],
                    uid_validity: 9,
                },
            };
            let outcome = sm
                .apply(LogPosition::new(1, seq as u64 + 1), &txn)
                .unwrap()
                .unwrap();
            assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}");
        }
        let names = sm.legacy_names();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(
            names[0].starts_with("mailbox \"cafe\\u{301}\" of user \"alice\": is not in Unicode NFC"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("user \"b\\u{202e}ob\": contains an invisible"),
            "{names:?}"
        );
        assert!(names[2].contains("... (201 bytes)"), "{names:?}");
        assert!(names[2].matches("\\u{301}").count() <= 32, "{names:?}");
    }
}
