//! Copy and move (log encoding 4): records copied from one mailbox of a user into another with
//! their flags, keywords, GUIDs, sizes, internal dates and body ids, and for a move expunged
//! from the source in the same entry. Determinism as in `apply.rs`: UIDs from the target's
//! UIDNEXT in source-UID order, one new MODSEQ per mailbox changed, nothing from a clock.

use super::apply::keywords_fit;
use super::error::SmError;
use super::group_state::{GroupState, MailboxFiles};
use crate::index::format::MAX_KEYWORDS;
use crate::index::{LogPosition, Record};
use crate::txn::validate::canonical_mailbox_name;
use crate::txn::{Outcome, Rejection, UidMap, UidSet};

impl<F: MailboxFiles> GroupState<F> {
    /// Copies (and for a move, expunges) the messages of `from` with UIDs in `uids` into `to`.
    ///
    /// Everything that can refuse the op (a missing mailbox, the target's keyword table or UID
    /// space) is decided, and every byte it needs reserved, before anything is written: a
    /// rejection or a full disk leaves both mailboxes as they were, so a move is one change or
    /// none. The copies get consecutive UIDs from the target's UIDNEXT in source-UID order and
    /// one new target MODSEQ; a move's expunge takes one new source MODSEQ. A copy within a
    /// mailbox (`from == to`, never a move: validation) reads the records before it appends.
    pub(super) fn copy(
        &mut self,
        position: LogPosition,
        user: &str,
        from: &str,
        to: &str,
        uids: &UidSet,
        moving: bool,
    ) -> Result<Outcome, SmError> {
        let (from, to) = (canonical_mailbox_name(from), canonical_mailbox_name(to));
        let Some(source_guid) = self.manifest.mailbox(user, &from) else {
            return Ok(Outcome::Rejected(Rejection::NoSuchMailbox { mailbox: from }));
        };
        let Some(target_guid) = self.manifest.mailbox(user, &to) else {
            return Ok(Outcome::Rejected(Rejection::NoSuchMailbox { mailbox: to }));
        };
        debug_assert!(
            !moving || source_guid != target_guid,
            "validated: no move into itself"
        );
        // The source's records, with their keywords by name (the target's table numbers them
        // its own way).
        let (positions, records, keywords) = {
            let source = self.index(&source_guid);
            let mut positions = Vec::new();
            let mut records = Vec::new();
            let mut keywords: Vec<String> = Vec::new();
            for &(first, last) in uids.ranges() {
                for p in source.positions_in(first, last) {
                    let record = source.record_at(p);
                    let names = source.keyword_names(record.keywords);
                    for name in &names {
                        if !keywords.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                            keywords.push(name.clone());
                        }
                    }
                    positions.push(p);
                    records.push((record, names));
                }
            }
            (positions, records, keywords)
        };
        let (uid_validity, uid_next) = {
            let target = self.index(&target_guid).header();
            (target.uid_validity, target.uid_next)
        };
        let empty = || {
            if moving {
                Outcome::Moved {
                    uid_validity,
                    uids: UidMap::empty(),
                    modseq: None,
                    expunged: UidSet::new(),
                    source_modseq: None,
                }
            } else {
                Outcome::Copied {
                    uid_validity,
                    uids: UidMap::empty(),
                    modseq: None,
                }
            }
        };
        if records.is_empty() {
            // Nothing to copy: nothing changes, no MODSEQ is spent, no file is rewritten.
            return Ok(empty());
        }
        if !keywords_fit(self.index(&target_guid), &keywords) {
            return Ok(Outcome::Rejected(Rejection::KeywordLimit { max: MAX_KEYWORDS }));
        }
        if u64::from(uid_next) + records.len() as u64 > u64::from(u32::MAX) {
            return Ok(Outcome::Rejected(Rejection::UidSpaceExhausted));
        }
        // From here on the op happens: files still in v1 are rewritten in v2 first (the source
        // only when it changes, i.e. for a move), then the room for records and tombstones.
        self.upgrade_if_older(position, &target_guid)?;
        if moving {
            self.upgrade_if_older(position, &source_guid)?;
            self.index_mut(&source_guid).reserve_tombstones(positions.len())?;
        }
        let target = self.index_mut(&target_guid);
        target.reserve_records(records.len())?;
        target.register_keywords(&keywords);
        let modseq = target.next_modseq();
        let mut source_uids = UidSet::new();
        for (offset, (record, names)) in records.iter().enumerate() {
            let keywords = if names.is_empty() {
                0
            } else {
                target.keyword_mask(names)
            };
            target.append(&Record {
                uid: uid_next + offset as u32,
                modseq,
                keywords,
                ..*record
            })?;
            source_uids.push_ascending(record.uid);
        }
        target.commit_header(position);
        self.touched.insert(target_guid);
        let uids = UidMap {
            source: source_uids,
            first_target: uid_next,
        };
        debug_assert!(
            uids.first_target != 0 && uids.source.len() == records.len() as u64,
            "invariant: a UidMap pairs every copy with a target UID"
        );
        if !moving {
            return Ok(Outcome::Copied {
                uid_validity,
                uids,
                modseq: Some(modseq),
            });
        }
        let source = self.index_mut(&source_guid);
        let source_modseq = source.next_modseq();
        source.expunge(&positions, source_modseq)?;
        source.commit_header(position);
        self.touched.insert(source_guid);
        // Invariant (Outcome::Moved): every message copied left its source.
        let expunged = uids.source.clone();
        debug_assert_eq!(expunged.len(), positions.len() as u64);
        Ok(Outcome::Moved {
            uid_validity,
            uids,
            modseq: Some(modseq),
            expunged,
            source_modseq: Some(source_modseq),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::index::LogPosition;
    use crate::state_machine::{GroupState, GroupStateMachine, MemoryFiles, MessageView};
    use crate::txn::{NewMessage, Op, Outcome, Rejection, StoreMode, Txn, UidMap, UidSet};

    const USER: &str = "u";

    /// A group in memory and the next log index; every request has a session of its own.
    struct Group {
        state: GroupState<MemoryFiles>,
        index: u64,
        /// Every entry applied, for a replay elsewhere.
        log: Vec<(LogPosition, Txn)>,
    }

    impl Group {
        /// A group at log encoding `encoding` with user "u"'s INBOX and Archive.
        fn at(encoding: u8) -> Group {
            let mut group = Group {
                state: GroupState::in_memory(),
                index: 0,
                log: Vec::new(),
            };
            if encoding > 0 {
                group.ok(Op::SetEncoding { version: encoding });
            }
            for (name, guid) in [("INBOX", 1), ("Archive", 2)] {
                group.ok(Op::CreateMailbox {
                    user: USER.into(),
                    mailbox: name.into(),
                    mailbox_guid: [guid; 16],
                    uid_validity: 100 * u32::from(guid),
                });
            }
            group
        }

        fn apply_as(&mut self, client: &str, seq: u64, op: Op) -> Outcome {
            self.index += 1;
            let txn = Txn {
                client_id: client.into(),
                request_seq: seq,
                op,
            };
            let position = LogPosition::new(1, self.index);
            self.log.push((position, txn.clone()));
            self.state
                .apply(position, &txn)
                .unwrap()
                .expect("a fresh position")
        }

        fn apply(&mut self, op: Op) -> Outcome {
            let seq = self.index + 1;
            self.apply_as(&format!("c{seq}"), 1, op)
        }

        fn ok(&mut self, op: Op) -> Outcome {
            let outcome = self.apply(op);
            assert!(!outcome.is_rejected(), "{outcome:?}");
            outcome
        }

        fn records(&self, mailbox: &str) -> Vec<MessageView> {
            self.state.fetch(USER, mailbox, 1, u32::MAX, usize::MAX).unwrap()
        }

        fn highest_modseq(&self, mailbox: &str) -> u64 {
            self.state.status(USER, mailbox).unwrap().highest_modseq
        }

        fn image(&self, guid: u8) -> Vec<u8> {
            self.state.mailboxes()[&[guid; 16]].bytes().to_vec()
        }
    }

    fn message(n: u8, flags: &[&str]) -> NewMessage {
        NewMessage {
            guid: [0x40 + n; 16],
            size: 1_000 + u64::from(n),
            internal_date: 1_700_000_000 + i64::from(n),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// INBOX gets four delivered messages (UIDs 1-4, with flags, keywords and bodies), then an
    /// expunge of UID 1; Archive one appended message of its own (UID 1, a keyword INBOX's
    /// table does not have first).
    fn filled(encoding: u8) -> Group {
        let mut group = Group::at(encoding);
        group.ok(Op::Append {
            user: USER.into(),
            mailbox: "Archive".into(),
            messages: vec![message(9, &["Old"])],
        });
        let messages = vec![
            message(1, &[]),
            message(2, &["\\Seen", "$Work"]),
            message(3, &["\\Flagged"]),
            message(4, &["\\Answered", "Old", "$Work"]),
        ];
        let deliver = if encoding >= 3 {
            Op::Deliver {
                user: USER.into(),
                mailbox: "INBOX".into(),
                bodies: (1..=4).map(|n| [0xb0 + n; 16]).collect(),
                messages,
            }
        } else {
            Op::Append {
                user: USER.into(),
                mailbox: "INBOX".into(),
                messages,
            }
        };
        group.ok(deliver);
        group.ok(Op::Expunge {
            user: USER.into(),
            mailbox: "INBOX".into(),
            uids: UidSet::from_ascending([1]),
            expected_guids: Vec::new(),
        });
        group
    }

    fn copy(from: &str, to: &str, uids: &str) -> Op {
        Op::Copy {
            user: USER.into(),
            from: from.into(),
            to: to.into(),
            uids: UidSet::parse(uids).unwrap(),
        }
    }

    fn moving(from: &str, to: &str, uids: &str) -> Op {
        Op::Move {
            user: USER.into(),
            from: from.into(),
            to: to.into(),
            uids: UidSet::parse(uids).unwrap(),
        }
    }

    /// A copy gives the existing source UIDs consecutive target UIDs from the target's UIDNEXT
    /// in source order, one new target MODSEQ for all, and keeps everything else of each record:
    /// flags, keywords (renumbered in the target's table), GUID, size, internal date and body
    /// id. UIDs the source lacks (1: expunged; 7:9: never were) are skipped, and the source is
    /// left byte for byte as it was.
    #[test]
    fn a_copy_gets_new_uids_and_one_modseq_and_keeps_the_rest() {
        let mut group = filled(4);
        let source_before = group.image(1);
        let modseq_before = group.highest_modseq("Archive");
        let outcome = group.ok(copy("INBOX", "Archive", "1:3,4,7:9"));
        let expected_map = UidMap {
            source: UidSet::parse("2:4").unwrap(),
            first_target: 2,
        };
        assert_eq!(
            outcome,
            Outcome::Copied {
                uid_validity: 200,
                uids: expected_map.clone(),
                modseq: Some(modseq_before + 1),
            }
        );
        assert_eq!(expected_map.pairs().collect::<Vec<_>>(), [(2, 2), (3, 3), (4, 4)]);
        assert_eq!(expected_map.target().to_string(), "2:4");
        assert_eq!(group.image(1), source_before, "the source is not written");
        let sources = group.records("INBOX");
        let copies = group.records("Archive");
        assert_eq!(copies.len(), 4);
        assert_eq!(copies[0].guid, [0x49; 16], "Archive's own message stays first");
        for (source, copy) in sources.iter().zip(&copies[1..]) {
            assert_eq!(copy.uid, source.uid, "UIDNEXT was 2, the sources are 2:4");
            assert_eq!(copy.modseq, modseq_before + 1);
            // The same flags and keywords; the keywords listed in the target's table order.
            let sorted = |flags: &[String]| {
                let mut flags = flags.to_vec();
                flags.sort();
                flags
            };
            assert_eq!(
                (
                    sorted(&copy.flags),
                    copy.guid,
                    copy.size,
                    copy.internal_date,
                    copy.body
                ),
                (
                    sorted(&source.flags),
                    source.guid,
                    source.size,
                    source.internal_date,
                    source.body
                )
            );
            assert!(
                copy.body.is_some(),
                "single-instance: the copy names the same body"
            );
        }
        // "Old" was Archive's keyword 0 already; "$Work" is new there.
        assert_eq!(
            group.state.status(USER, "Archive").unwrap().keywords,
            ["Old", "$Work"]
        );
        assert_eq!(group.state.status(USER, "Archive").unwrap().uid_next, 5);
        // A second copy goes on from UIDNEXT, in source order.
        let again = group.ok(copy("INBOX", "Archive", "4,2"));
        assert!(
            matches!(
                again,
                Outcome::Copied {
                    uids: UidMap { first_target: 5, .. },
                    ..
                }
            ),
            "{again:?}"
        );
        group.state.mailboxes()[&[2; 16]].verify().unwrap();
    }

    /// A copy within one mailbox duplicates the records under new UIDs (IMAP allows it).
    #[test]
    fn a_copy_within_a_mailbox_appends_duplicates() {
        let mut group = filled(4);
        let outcome = group.ok(copy("inbox", "INBOX", "2:3"));
        assert!(
            matches!(
                outcome,
                Outcome::Copied {
                    uid_validity: 100,
                    uids: UidMap { first_target: 5, .. },
                    ..
                }
            ),
            "{outcome:?}"
        );
        let records = group.records("INBOX");
        let uids: Vec<u32> = records.iter().map(|r| r.uid).collect();
        assert_eq!(uids, [2, 3, 4, 5, 6]);
        assert_eq!(
            (records[3].guid, records[3].body),
            (records[0].guid, records[0].body)
        );
    }

    /// No UID of the set in the source: an answer, not an error, and nothing changes (no MODSEQ
    /// spent, no file touched). A missing source or target is refused by name, as other ops
    /// refuse a missing mailbox.
    #[test]
    fn missing_uids_change_nothing_and_missing_mailboxes_are_refused() {
        let mut group = filled(4);
        let images = (group.image(1), group.image(2));
        for op in [
            copy("INBOX", "Archive", "1,50:60"),
            moving("INBOX", "Archive", "1"),
        ] {
            let outcome = group.ok(op);
            let (uids, modseq) = match &outcome {
                Outcome::Copied { uids, modseq, .. } => (uids, modseq),
                Outcome::Moved {
                    uids,
                    modseq,
                    expunged,
                    source_modseq,
                    ..
                } => {
                    assert!(expunged.is_empty() && source_modseq.is_none(), "{outcome:?}");
                    (uids, modseq)
                }
                other => panic!("{other:?}"),
            };
            assert_eq!((uids, *modseq), (&UidMap::empty(), None));
        }
        assert_eq!((group.image(1), group.image(2)), images);
        for (op, missing) in [
            (copy("Nope", "Archive", "2"), "Nope"),
            (copy("INBOX", "Gone", "2"), "Gone"),
            (moving("INBOX", "Gone", "2"), "Gone"),
        ] {
            assert_eq!(
                group.apply(op),
                Outcome::Rejected(Rejection::NoSuchMailbox {
                    mailbox: missing.into()
                })
            );
        }
        assert_eq!((group.image(1), group.image(2)), images);
        assert!(matches!(
            group.apply(moving("INBOX", "inbox", "2")),
            Outcome::Rejected(Rejection::Invalid { .. })
        ));
    }

    /// A move is the copy and the expunge of the sources in one entry: the target as a copy
    /// would leave it, the sources gone with one new source MODSEQ, reported as vanished since
    /// the MODSEQ before, and the expunged UIDs in the outcome.
    #[test]
    fn a_move_copies_and_expunges_in_one_entry() {
        let mut copied = filled(4);
        let mut moved = filled(4);
        let source_modseq = moved.highest_modseq("INBOX");
        let copy_outcome = copied.ok(copy("INBOX", "Archive", "2,4"));
        let outcome = moved.ok(moving("INBOX", "Archive", "2,4"));
        let Outcome::Copied {
            uid_validity,
            uids,
            modseq,
        } = copy_outcome
        else {
            panic!("{copy_outcome:?}")
        };
        assert_eq!(
            outcome,
            Outcome::Moved {
                uid_validity,
                uids: uids.clone(),
                modseq,
                expunged: UidSet::parse("2,4").unwrap(),
                source_modseq: Some(source_modseq + 1),
            }
        );
        assert_eq!(moved.image(2), copied.image(2), "the target as the copy left it");
        let left: Vec<u32> = moved.records("INBOX").iter().map(|r| r.uid).collect();
        assert_eq!(left, [3]);
        let changes = moved.state.changes_since(USER, "INBOX", source_modseq).unwrap();
        assert_eq!(changes.vanished.to_string(), "2,4");
        assert_eq!(changes.highest_modseq, source_modseq + 1);
        moved.state.mailboxes()[&[1; 16]].verify().unwrap();
    }

    /// A move the target cannot take (its keyword table is full) changes neither mailbox: the
    /// refusal is decided before anything is written.
    #[test]
    fn a_refused_move_leaves_both_mailboxes_as_they_were() {
        let mut group = filled(4);
        group.ok(Op::Store {
            user: USER.into(),
            mailbox: "Archive".into(),
            uids: UidSet::parse("1").unwrap(),
            mode: StoreMode::Add,
            flags: (0..127).map(|i| format!("kw{i}")).collect(),
            unchanged_since: None,
        });
        let images = (group.image(1), group.image(2));
        assert_eq!(
            group.apply(moving("INBOX", "Archive", "2:4")),
            Outcome::Rejected(Rejection::KeywordLimit { max: 128 })
        );
        assert_eq!((group.image(1), group.image(2)), images);
        // A message without keywords still moves.
        let outcome = group.ok(moving("INBOX", "Archive", "3"));
        assert!(matches!(outcome, Outcome::Moved { .. }), "{outcome:?}");
    }

    /// Copies and moves are exactly-once like every write: a retry (same client and
    /// `request_seq`, same op) is answered with the first outcome and applied once; the same
    /// pair with another op is refused (`RequestReused`); an entry applied again after a
    /// restart's replay is skipped.
    #[test]
    fn a_retried_copy_or_move_is_applied_once() {
        let mut group = filled(4);
        let first = group.apply_as("imap-1", 7, moving("INBOX", "Archive", "2:3"));
        assert!(matches!(first, Outcome::Moved { .. }), "{first:?}");
        let images = (group.image(1), group.image(2));
        assert_eq!(
            group.apply_as("imap-1", 7, moving("INBOX", "Archive", "2:3")),
            first
        );
        assert_eq!(
            group.apply_as("imap-1", 7, copy("INBOX", "Archive", "4")),
            Outcome::Rejected(Rejection::RequestReused { request_seq: 7 })
        );
        assert_eq!((group.image(1), group.image(2)), images);
        let replayed = Txn {
            client_id: "imap-2".into(),
            request_seq: 1,
            op: copy("INBOX", "Archive", "4"),
        };
        let position = LogPosition::new(1, group.index + 1);
        assert!(group.state.apply(position, &replayed).unwrap().is_some());
        let images = (group.image(1), group.image(2));
        assert_eq!(group.state.apply(position, &replayed).unwrap(), None);
        assert_eq!((group.image(1), group.image(2)), images);
    }

    /// The encoding gate: a group below encoding 4 refuses a copy (alike on every replica),
    /// changing nothing.
    #[test]
    fn a_group_below_encoding_4_refuses_copies() {
        let mut group = filled(3);
        let images = (group.image(1), group.image(2));
        for op in [copy("INBOX", "Archive", "2"), moving("INBOX", "Archive", "2")] {
            let outcome = group.apply(op);
            assert!(
                matches!(&outcome, Outcome::Rejected(Rejection::Invalid { message }) if message.contains("needs log encoding 4")),
                "{outcome:?}"
            );
        }
        assert_eq!((group.image(1), group.image(2)), images);
    }

    /// Files written before encoding 3 are index format v1: a copy rewrites its target in v2
    /// first (stamped with the copy's entry) and leaves a source it only reads in v1; a move
    /// rewrites both. Records of v1 name no body, and their copies do not either.
    #[test]
    fn copies_upgrade_the_files_they_write_and_only_those() {
        let mut group = filled(0);
        group.ok(Op::SetEncoding { version: 4 });
        let version = |group: &Group, guid: u8| group.state.mailboxes()[&[guid; 16]].header().version;
        assert_eq!((version(&group, 1), version(&group, 2)), (1, 1));
        group.ok(copy("INBOX", "Archive", "2"));
        assert_eq!((version(&group, 1), version(&group, 2)), (1, 2));
        assert_eq!(group.records("Archive")[1].body, None);
        group.ok(moving("INBOX", "Archive", "3"));
        assert_eq!((version(&group, 1), version(&group, 2)), (2, 2));
        for guid in [1, 2] {
            group.state.mailboxes()[&[guid; 16]].verify().unwrap();
        }
    }

    /// On disk as in memory: the same log gives byte-identical files, also after a flush
    /// and a reopen (the replicas of invariant 7).
    #[test]
    fn copies_on_disk_equal_copies_in_memory() {
        let mut memory = filled(4);
        memory.ok(copy("INBOX", "Archive", "2:4"));
        memory.ok(moving("Archive", "INBOX", "1:2"));
        memory.ok(moving("INBOX", "Archive", "5"));
        let dir = tempfile::tempdir().unwrap();
        let mut disk = GroupStateMachine::open(dir.path()).unwrap();
        for (position, txn) in &memory.log {
            let outcome = disk.apply(*position, txn).unwrap().unwrap();
            assert!(!outcome.is_rejected(), "{outcome:?}");
        }
        assert_eq!(disk.state().digest(), memory.state.digest());
        disk.flush().unwrap();
        drop(disk);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.state().digest(), memory.state.digest());
    }
}
