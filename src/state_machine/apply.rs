//! The per-op apply logic: where UIDs, UIDVALIDITY and MODSEQ are assigned.
//!
//! Determinism rules (ARCHITECTURE.md §7): everything written is a function of the op and the state
//! before it. UID = `uid_next` at apply time; one new MODSEQ (`highest_modseq + 1`) per op that
//! changes a mailbox, none for an op that changes nothing; UIDVALIDITY = max(proposed, group
//! high-water mark + 1); internal dates come from the op. Maps are `BTreeMap`s.

use std::collections::BTreeMap;

use super::error::SmError;
use super::group_state::{GroupState, MailboxFiles};
use super::manifest::{MAX_MAILBOXES_PER_USER, MAX_SUBSCRIPTIONS_PER_USER};
use crate::index::format::MAX_KEYWORDS;
use crate::index::{LogPosition, MailboxIndex, Record};
use crate::txn::validate::{canonical_mailbox_name, check_mailbox_name, parse_flags, HIERARCHY_SEPARATOR};
use crate::txn::{Guid, NewMessage, Op, Outcome, Rejection, StoreMode, UidSet};

impl<F: MailboxFiles> GroupState<F> {
    /// Applies a validated op. Rejections are outcomes; errors are I/O failures only.
    pub(super) fn apply_op(&mut self, position: LogPosition, op: &Op) -> Result<Outcome, SmError> {
        match op {
            Op::CreateMailbox {
                user,
                mailbox,
                mailbox_guid,
                uid_validity,
            } => self.create_mailbox(
                position,
                user,
                &canonical_mailbox_name(mailbox),
                mailbox_guid,
                *uid_validity,
            ),
            Op::RenameMailbox { user, from, to } => {
                Ok(self.rename_mailbox(user, &canonical_mailbox_name(from), &canonical_mailbox_name(to)))
            }
            Op::DeleteMailbox { user, mailbox } => {
                self.delete_mailbox(user, &canonical_mailbox_name(mailbox))
            }
            Op::Append {
                user,
                mailbox,
                messages,
            } => self.with_mailbox(position, user, mailbox, |index| {
                append(index, position, messages, None)
            }),
            Op::Deliver {
                user,
                mailbox,
                messages,
                bodies,
            } => self.with_mailbox(position, user, mailbox, |index| {
                append(index, position, messages, Some(bodies))
            }),
            Op::Store {
                user,
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => self.with_mailbox(position, user, mailbox, |index| {
                Ok(store(index, position, uids, *mode, flags, *unchanged_since))
            }),
            Op::Expunge {
                user,
                mailbox,
                uids,
                expected_guids,
            } => self.with_mailbox(position, user, mailbox, |index| {
                expunge(index, position, uids, expected_guids)
            }),
            Op::SetEncoding { version } => {
                self.manifest.encoding = self.manifest.encoding.max(*version);
                Ok(Outcome::EncodingSet {
                    encoding: self.manifest.encoding,
                })
            }
            Op::Probe { .. } => Ok(Outcome::Probed),
            Op::Copy { user, from, to, uids } => self.copy(position, user, from, to, uids, false),
            Op::Move { user, from, to, uids } => self.copy(position, user, from, to, uids, true),
            Op::Subscribe { user, mailbox } => Ok(self.subscribe(user, &canonical_mailbox_name(mailbox))),
            Op::Unsubscribe { user, mailbox } => Ok(self.unsubscribe(user, &canonical_mailbox_name(mailbox))),
        }
    }

    fn subscribe(&mut self, user: &str, name: &str) -> Outcome {
        let names = self.manifest.subscriptions.get(user);
        if names.is_some_and(|n| n.contains(name)) {
            return Outcome::Subscribed { changed: false };
        }
        if names.is_some_and(|n| n.len() >= MAX_SUBSCRIPTIONS_PER_USER) {
            return Outcome::Rejected(Rejection::TooManySubscriptions {
                max: MAX_SUBSCRIPTIONS_PER_USER,
            });
        }
        let names = self.manifest.subscriptions.entry(user.to_string()).or_default();
        names.insert(name.to_string());
        debug_assert!(
            names.len() <= MAX_SUBSCRIPTIONS_PER_USER,
            "invariant: at most MAX_SUBSCRIPTIONS_PER_USER names per user"
        );
        Outcome::Subscribed { changed: true }
    }

    fn unsubscribe(&mut self, user: &str, name: &str) -> Outcome {
        let Some(names) = self.manifest.subscriptions.get_mut(user) else {
            return Outcome::Unsubscribed { changed: false };
        };
        let changed = names.remove(name);
        // Invariant (manifest): no user keeps an empty list.
        if names.is_empty() {
            self.manifest.subscriptions.remove(user);
        }
        Outcome::Unsubscribed { changed }
    }

    /// The open index of a mailbox the manifest names.
    pub(super) fn index(&self, guid: &Guid) -> &MailboxIndex<F::Storage> {
        self.mailboxes.get(guid).unwrap_or_else(|| {
            panic!(
                "invariant: manifest names mailbox {} but it is not open",
                hex(guid)
            )
        })
    }

    pub(super) fn index_mut(&mut self, guid: &Guid) -> &mut MailboxIndex<F::Storage> {
        self.mailboxes.get_mut(guid).unwrap_or_else(|| {
            panic!(
                "invariant: manifest names mailbox {} but it is not open",
                hex(guid)
            )
        })
    }

    /// From log encoding 3 on, rewrites a mailbox file still in index format v1 in v2, stamped
    /// with `position` (every replica does so at the same entry), before its first change.
    pub(super) fn upgrade_if_older(&mut self, position: LogPosition, guid: &Guid) -> Result<(), SmError> {
        let wanted = index_version(self.manifest.encoding);
        if self.index(guid).header().version < wanted {
            let image = self.index(guid).upgraded_image(position);
            let storage = self.files.replace(guid, &image)?;
            *self.index_mut(guid) = MailboxIndex::open(storage)?;
            self.touched.insert(*guid);
        }
        Ok(())
    }

    /// Runs `f` on the index of (user, mailbox), or rejects with `NoSuchMailbox`. From log
    /// encoding 3 on, a mailbox file still in index format v1 is first rewritten in v2, stamped
    /// with `position` (every replica does so at the same entry).
    fn with_mailbox(
        &mut self,
        position: LogPosition,
        user: &str,
        mailbox: &str,
        f: impl FnOnce(&mut MailboxIndex<F::Storage>) -> Result<Outcome, SmError>,
    ) -> Result<Outcome, SmError> {
        let name = canonical_mailbox_name(mailbox);
        let Some(guid) = self.manifest.mailbox(user, &name) else {
            return Ok(Outcome::Rejected(Rejection::NoSuchMailbox { mailbox: name }));
        };
        self.upgrade_if_older(position, &guid)?;
        let index = self.index_mut(&guid);
        let before = index.header().applied;
        let outcome = f(index)?;
        if index.header().applied != before {
            self.touched.insert(guid);
        }
        Ok(outcome)
    }

    fn create_mailbox(
        &mut self,
        position: LogPosition,
        user: &str,
        name: &str,
        mailbox_guid: &Guid,
        proposed_uid_validity: u32,
    ) -> Result<Outcome, SmError> {
        let boxes = self.manifest.users.get(user);
        if boxes.is_some_and(|b| b.contains_key(name)) {
            return Ok(Outcome::Rejected(Rejection::MailboxExists {
                mailbox: name.into(),
            }));
        }
        if boxes.is_some_and(|b| b.len() >= MAX_MAILBOXES_PER_USER) {
            return Ok(Outcome::Rejected(Rejection::TooManyMailboxes {
                max: MAX_MAILBOXES_PER_USER,
            }));
        }
        if self.mailboxes.contains_key(mailbox_guid) {
            return Ok(Outcome::Rejected(Rejection::Invalid {
                message: format!("mailbox GUID {} is already in use", hex(mailbox_guid)),
            }));
        }
        let Some(floor) = self.manifest.uid_validity_max.checked_add(1) else {
            return Ok(Outcome::Rejected(Rejection::UidValidityExhausted));
        };
        let uid_validity = proposed_uid_validity.max(floor);
        let image = MailboxIndex::<F::Storage>::empty_image_in(
            *mailbox_guid,
            uid_validity,
            index_version(self.manifest.encoding),
        );
        let storage = self.files.create(mailbox_guid, &image)?;
        let mut index = MailboxIndex::open(storage)?;
        index.commit_header(position);
        self.mailboxes.insert(*mailbox_guid, index);
        self.touched.insert(*mailbox_guid);
        self.manifest.uid_validity_max = uid_validity;
        self.manifest
            .users
            .entry(user.to_string())
            .or_default()
            .insert(name.to_string(), *mailbox_guid);
        Ok(Outcome::Created {
            mailbox_guid: *mailbox_guid,
            uid_validity,
        })
    }

    fn rename_mailbox(&mut self, user: &str, from: &str, to: &str) -> Outcome {
        let Some(boxes) = self.manifest.users.get_mut(user) else {
            return Outcome::Rejected(Rejection::NoSuchMailbox { mailbox: from.into() });
        };
        if !boxes.contains_key(from) {
            return Outcome::Rejected(Rejection::NoSuchMailbox { mailbox: from.into() });
        }
        let prefix = format!("{from}{HIERARCHY_SEPARATOR}");
        if to.starts_with(&prefix) {
            return Outcome::Rejected(Rejection::RenameIntoSelf {
                from: from.into(),
                to: to.into(),
            });
        }
        // The mailbox and its children, with their new names.
        let moves: Vec<(String, String)> = boxes
            .keys()
            .filter(|name| name.as_str() == from || name.starts_with(&prefix))
            .map(|name| (name.clone(), format!("{to}{}", &name[from.len()..])))
            .collect();
        for (_, target) in &moves {
            if boxes.contains_key(target) {
                return Outcome::Rejected(Rejection::MailboxExists {
                    mailbox: target.clone(),
                });
            }
            if let Err(e) = check_mailbox_name(target) {
                return Outcome::Rejected(Rejection::Invalid {
                    message: e.to_string(),
                });
            }
        }
        let moved: BTreeMap<String, Guid> = moves
            .iter()
            .map(|(source, target)| (target.clone(), boxes.remove(source).expect("listed above")))
            .collect();
        boxes.extend(moved);
        Outcome::Renamed {
            mailboxes: moves.len() as u32,
        }
    }

    fn delete_mailbox(&mut self, user: &str, name: &str) -> Result<Outcome, SmError> {
        let Some(boxes) = self.manifest.users.get_mut(user) else {
            return Ok(Outcome::Rejected(Rejection::NoSuchMailbox {
                mailbox: name.into(),
            }));
        };
        let Some(&guid) = boxes.get(name) else {
            return Ok(Outcome::Rejected(Rejection::NoSuchMailbox {
                mailbox: name.into(),
            }));
        };
        let prefix = format!("{name}{HIERARCHY_SEPARATOR}");
        if boxes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix))
        {
            return Ok(Outcome::Rejected(Rejection::HasChildren { mailbox: name.into() }));
        }
        boxes.remove(name);
        if boxes.is_empty() {
            self.manifest.users.remove(user);
        }
        self.mailboxes.remove(&guid);
        self.touched.remove(&guid);
        self.files.remove(&guid)?;
        Ok(Outcome::Deleted { mailbox_guid: guid })
    }
}

/// Makes room for `keywords` in the mailbox's table, or says it is full.
pub(super) fn keywords_fit<S: crate::index::Storage>(index: &MailboxIndex<S>, keywords: &[String]) -> bool {
    index.keywords().len() + index.unknown_keyword_count(keywords) <= MAX_KEYWORDS
}

/// The index format of files written in log encoding `encoding`: v2 (records name their body)
/// from encoding 3 on.
pub fn index_version(encoding: u8) -> u32 {
    if encoding >= 3 {
        crate::index::format::FORMAT_VERSION
    } else {
        crate::index::format::FORMAT_VERSION_V1
    }
}

/// Appends `messages` (with their body ids for a delivery).
fn append<S: crate::index::Storage>(
    index: &mut MailboxIndex<S>,
    position: LogPosition,
    messages: &[NewMessage],
    bodies: Option<&[[u8; 16]]>,
) -> Result<Outcome, SmError> {
    let parsed: Vec<_> = messages
        .iter()
        .map(|m| parse_flags(&m.flags).expect("validated before apply"))
        .collect();
    let all_keywords: Vec<String> = parsed.iter().flat_map(|p| p.keywords.iter().cloned()).collect();
    if !keywords_fit(index, &all_keywords) {
        return Ok(Outcome::Rejected(Rejection::KeywordLimit { max: MAX_KEYWORDS }));
    }
    let first_uid = index.header().uid_next;
    if u64::from(first_uid) + messages.len() as u64 > u64::from(u32::MAX) {
        return Ok(Outcome::Rejected(Rejection::UidSpaceExhausted));
    }
    // Every byte the append needs, before any is written: a full disk fails the op whole.
    index.reserve_records(messages.len())?;
    if !all_keywords.is_empty() {
        index.register_keywords(&all_keywords);
    }
    let modseq = index.next_modseq();
    for (offset, (message, flags)) in messages.iter().zip(&parsed).enumerate() {
        let keywords = if flags.keywords.is_empty() {
            0
        } else {
            index.keyword_mask(&flags.keywords)
        };
        index.append(&Record {
            uid: first_uid + offset as u32,
            flags: flags.system,
            modseq,
            keywords,
            guid: message.guid,
            size: message.size,
            internal_date: message.internal_date,
            body: bodies.map_or([0; 16], |bodies| bodies[offset]),
        })?;
    }
    index.commit_header(position);
    Ok(Outcome::Appended {
        uid_validity: index.header().uid_validity,
        first_uid,
        last_uid: first_uid + messages.len() as u32 - 1,
        modseq,
    })
}

fn store<S: crate::index::Storage>(
    index: &mut MailboxIndex<S>,
    position: LogPosition,
    uids: &UidSet,
    mode: StoreMode,
    flags: &[String],
    unchanged_since: Option<u64>,
) -> Outcome {
    let parsed = parse_flags(flags).expect("validated before apply");
    let registers = mode != StoreMode::Remove && !parsed.keywords.is_empty();
    if registers && !keywords_fit(index, &parsed.keywords) {
        return Outcome::Rejected(Rejection::KeywordLimit { max: MAX_KEYWORDS });
    }
    let keywords_before = index.keywords().len();
    let mask = if registers {
        index.register_keywords(&parsed.keywords)
    } else {
        index.keyword_mask(&parsed.keywords)
    };
    let mut modified = UidSet::new();
    let mut changes: Vec<(usize, u8, u128)> = Vec::new();
    for &(first, last) in uids.ranges() {
        for p in index.positions_in(first, last) {
            let record = index.record_at(p);
            if unchanged_since.is_some_and(|since| record.modseq > since) {
                modified.push_ascending(record.uid);
                continue;
            }
            let (flags, keywords) = match mode {
                StoreMode::Add => (record.flags | parsed.system, record.keywords | mask),
                StoreMode::Remove => (record.flags & !parsed.system, record.keywords & !mask),
                StoreMode::Replace => (parsed.system, mask),
            };
            if (flags, keywords) != (record.flags, record.keywords) {
                changes.push((p, flags, keywords));
            }
        }
    }
    let mut changed = UidSet::new();
    let modseq = if changes.is_empty() {
        None
    } else {
        let modseq = index.next_modseq();
        for &(p, flags, keywords) in &changes {
            changed.push_ascending(index.record_at(p).uid);
            index.update(p, flags, keywords, modseq);
        }
        Some(modseq)
    };
    if modseq.is_some() || index.keywords().len() != keywords_before {
        index.commit_header(position);
    }
    Outcome::Stored {
        modseq,
        changed,
        modified,
    }
}

fn expunge<S: crate::index::Storage>(
    index: &mut MailboxIndex<S>,
    position: LogPosition,
    uids: &UidSet,
    expected_guids: &[(u32, Guid)],
) -> Result<Outcome, SmError> {
    let guards: BTreeMap<u32, Guid> = expected_guids.iter().copied().collect();
    let mut positions = Vec::new();
    let mut expunged = UidSet::new();
    let mut guid_mismatch = UidSet::new();
    for &(first, last) in uids.ranges() {
        for p in index.positions_in(first, last) {
            let record = index.record_at(p);
            match guards.get(&record.uid) {
                Some(expected) if *expected != record.guid => guid_mismatch.push_ascending(record.uid),
                _ => {
                    positions.push(p);
                    expunged.push_ascending(record.uid);
                }
            }
        }
    }
    let modseq = if positions.is_empty() {
        None
    } else {
        // Room for the tombstones before anything changes: a full disk fails the op whole
        // (the MODSEQ included, which a retry must not see raised twice).
        index.reserve_tombstones(positions.len())?;
        let modseq = index.next_modseq();
        index.expunge(&positions, modseq)?;
        index.commit_header(position);
        Some(modseq)
    };
    Ok(Outcome::Expunged {
        modseq,
        expunged,
        guid_mismatch,
    })
}

/// Lower-case hex of a GUID (file names, messages).
pub fn hex(guid: &Guid) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * guid.len());
    for b in guid {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hex;
    use crate::index::LogPosition;
    use crate::state_machine::manifest::MAX_SUBSCRIPTIONS_PER_USER;
    use crate::state_machine::{GroupState, GroupStateMachine};
    use crate::txn::{Op, Outcome, Rejection, Txn};

    /// A group on disk and one in memory, fed the same entries.
    struct Replicas {
        disk: GroupStateMachine,
        memory: GroupState<crate::state_machine::MemoryFiles>,
        index: u64,
    }

    impl Replicas {
        fn apply(&mut self, op: Op) -> Outcome {
            self.index += 1;
            let txn = Txn {
                client_id: format!("c{}", self.index),
                request_seq: 1,
                op,
            };
            let position = LogPosition::new(1, self.index);
            let outcome = self.memory.apply(position, &txn).unwrap().unwrap();
            assert_eq!(self.disk.apply(position, &txn).unwrap().unwrap(), outcome);
            outcome
        }
    }

    fn subscribe(mailbox: &str) -> Op {
        Op::Subscribe {
            user: "u".into(),
            mailbox: mailbox.into(),
        }
    }

    fn unsubscribe(mailbox: &str) -> Op {
        Op::Unsubscribe {
            user: "u".into(),
            mailbox: mailbox.into(),
        }
    }

    /// Subscriptions (encoding 4): a name is stored canonically (`inbox` is INBOX), need not be
    /// a mailbox, stays when its mailbox is deleted and is not renamed with it (RFC 3501);
    /// (un)subscribing twice changes nothing the second time; a user without any keeps no
    /// entry; they are refused below encoding 4; they are bounded per user; they survive a
    /// flush and reopen and a checkpoint, and replicas on disk and in memory write the same
    /// bytes.
    #[test]
    fn subscriptions_are_replicated_names_kept_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Replicas {
            disk: GroupStateMachine::open(dir.path()).unwrap(),
            memory: GroupState::in_memory(),
            index: 0,
        };
        assert!(matches!(
            r.apply(subscribe("INBOX")),
            Outcome::Rejected(Rejection::Invalid { message }) if message.contains("needs log encoding 4")
        ));
        r.apply(Op::SetEncoding { version: 4 });
        let create = |mailbox: &str, guid: u8| Op::CreateMailbox {
            user: "u".into(),
            mailbox: mailbox.into(),
            mailbox_guid: [guid; 16],
            uid_validity: 1,
        };
        r.apply(create("INBOX", 1));
        r.apply(create("Lists", 2));
        assert_eq!(r.apply(subscribe("inbox")), Outcome::Subscribed { changed: true });
        assert_eq!(
            r.apply(subscribe("INBOX")),
            Outcome::Subscribed { changed: false }
        );
        assert_eq!(r.apply(subscribe("Lists")), Outcome::Subscribed { changed: true });
        assert_eq!(
            r.apply(subscribe("Nowhere/Yet")),
            Outcome::Subscribed { changed: true }
        );
        assert_eq!(
            r.apply(unsubscribe("Nowhere/Yet")),
            Outcome::Unsubscribed { changed: true }
        );
        assert_eq!(
            r.apply(unsubscribe("Nowhere/Yet")),
            Outcome::Unsubscribed { changed: false }
        );
        assert_eq!(
            r.apply(unsubscribe("Never")),
            Outcome::Unsubscribed { changed: false }
        );
        r.apply(Op::RenameMailbox {
            user: "u".into(),
            from: "Lists".into(),
            to: "Old/Lists".into(),
        });
        r.apply(Op::DeleteMailbox {
            user: "u".into(),
            mailbox: "Old/Lists".into(),
        });
        assert_eq!(r.disk.subscriptions("u"), ["INBOX", "Lists"]);
        assert_eq!(r.memory.subscriptions("u"), ["INBOX", "Lists"]);
        assert!(r.memory.subscriptions("someone else").is_empty());
        assert_eq!(
            r.apply(unsubscribe("INBOX")),
            Outcome::Unsubscribed { changed: true }
        );
        assert_eq!(
            r.apply(unsubscribe("Lists")),
            Outcome::Unsubscribed { changed: true }
        );
        assert!(
            !r.memory.manifest().subscriptions.contains_key("u"),
            "no empty list is kept"
        );
        assert_eq!(r.apply(subscribe("Lists")), Outcome::Subscribed { changed: true });
        assert_eq!(r.memory.manifest().encode(), r.disk.state().manifest().encode());
        r.disk.flush().unwrap();
        let memory = r.memory;
        drop(r.disk);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.subscriptions("u"), ["Lists"]);
        assert_eq!(reopened.state().digest(), memory.digest());
        let mut stream = Vec::new();
        memory.export_snapshot(&mut stream).unwrap();
        let imported = GroupState::import_snapshot(&stream[..]).unwrap();
        assert_eq!(imported.subscriptions("u"), ["Lists"]);
    }

    /// At most [`MAX_SUBSCRIPTIONS_PER_USER`] names per user; another user has its own.
    #[test]
    fn subscriptions_are_bounded_per_user() {
        let mut group = GroupState::in_memory();
        let mut index = 0;
        let mut apply = |user: &str, op: Op| {
            index += 1;
            let op = match op {
                Op::Subscribe { mailbox, .. } => Op::Subscribe {
                    user: user.into(),
                    mailbox,
                },
                op => op,
            };
            let txn = Txn {
                client_id: "c".into(),
                request_seq: index,
                op,
            };
            group.apply(LogPosition::new(1, index), &txn).unwrap().unwrap()
        };
        apply("u", Op::SetEncoding { version: 4 });
        for i in 0..MAX_SUBSCRIPTIONS_PER_USER {
            assert_eq!(
                apply("u", subscribe(&format!("m{i}"))),
                Outcome::Subscribed { changed: true }
            );
        }
        assert_eq!(
            apply("u", subscribe("one more")),
            Outcome::Rejected(Rejection::TooManySubscriptions {
                max: MAX_SUBSCRIPTIONS_PER_USER
            })
        );
        assert_eq!(
            apply("u", subscribe("m0")),
            Outcome::Subscribed { changed: false }
        );
        assert_eq!(apply("v", subscribe("m0")), Outcome::Subscribed { changed: true });
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte_in_order() {
        let mut guid = [0u8; 16];
        for (i, b) in guid.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0xa5;
        }
        let expected: String = guid.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&guid), expected);
        assert_eq!(hex(&[0; 16]), "0".repeat(32));
        assert_eq!(hex(&[0xff; 16]), "f".repeat(32));
        assert_eq!(
            hex(&[0x0f, 0xf0, 0x01, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])[..8],
            *"0ff00110"
        );
    }
}
