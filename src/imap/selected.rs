//! The selected state (RFC 3501 §6.4): CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, STORE.
//! FETCH is in [`super::fetch`]; what changed meanwhile and IDLE in [`super::refresh`].
//!
//! SEARCH is `Session::search` (with `super::search` and `super::searching`); COPY and MOVE are
//! in [`super::copy`].

use std::num::NonZeroU32;

use imap_next::imap_types::command::{CommandBody, StoreModifier};
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_next::imap_types::response::{Code, Data};
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::mailboxes::{flag, flag_text, nonzero};
use super::reply::{other_code, rejection_reply, Reply};
use super::session::Session;
use super::view::View;
use crate::service::MailService;
use crate::state_machine::read::{MessageView, ReadError};
use crate::txn::{Op, Outcome, StoreMode, UidSet};

/// The UIDs a sequence set names in `view`, ascending: sequence numbers (`uid` false; one
/// beyond the view is an error) or UIDs (`uid` true; those the view lacks are left out).
pub fn resolve(view: &View, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, Reply> {
    let largest = if uid { view.last_uid() } else { view.exists() };
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    };
    let mut uids = Vec::new();
    for sequence in set.0.as_ref() {
        let (a, b) = match sequence {
            Sequence::Single(v) => (value(v), value(v)),
            Sequence::Range(a, b) => (value(a), value(b)),
        };
        let (low, high) = (a.min(b), a.max(b));
        if uid {
            let known = view.uids();
            let start = known.partition_point(|&u| u < low);
            let end = known.partition_point(|&u| u <= high);
            uids.extend_from_slice(&known[start..end]);
        } else {
            if low == 0 || high > view.exists() {
                return Err(Reply::bad("Invalid message sequence number"));
            }
            uids.extend((low..=high).filter_map(|seq| view.uid_of(seq)));
        }
    }
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

/// A FETCH response item of a record's flags.
pub fn flags_item(record: &MessageView) -> MessageDataItem<'static> {
    MessageDataItem::Flags(
        record
            .flags
            .iter()
            .filter_map(|f| flag(f))
            .map(FlagFetch::Flag)
            .collect(),
    )
}

impl<S: MailService> Session<S> {
    /// The commands of the selected state.
    pub(super) async fn selected_command(&mut self, body: CommandBody<'static>) -> Reply {
        match body {
            CommandBody::Check => Reply::ok("CHECK completed"),
            CommandBody::Close => {
                let selected = self.selected.as_ref().expect("selected");
                if !selected.read_only {
                    // Silently: no EXPUNGE responses (RFC 3501 §6.4.2).
                    if let Err(reply) = self.expunge_deleted(None).await {
                        return reply;
                    }
                }
                self.selected = None;
                Reply::ok("CLOSE completed")
            }
            CommandBody::Unselect => {
                self.selected = None;
                Reply::ok("UNSELECT completed")
            }
            CommandBody::Expunge => match self.expunge_deleted(None).await {
                Ok(()) => Reply::ok("EXPUNGE completed"),
                Err(reply) => reply,
            },
            CommandBody::ExpungeUid { sequence_set } => {
                let view = &self.selected.as_ref().expect("selected").view;
                let uids = match resolve(view, &sequence_set, true) {
                    Ok(uids) => uids,
                    Err(reply) => return reply,
                };
                match self.expunge_deleted(Some(uids)).await {
                    Ok(()) => Reply::ok("UID EXPUNGE completed"),
                    Err(reply) => reply,
                }
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.fetch(sequence_set, macro_or_item_names, uid, modifiers)
                    .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                self.store(sequence_set, kind, response, flags, uid, modifiers)
                    .await
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(charset, criteria, uid).await,
            body @ (CommandBody::Copy { .. } | CommandBody::Move { .. }) => self.copy_or_move(body).await,
            other => Reply::bad(format!("{} is not supported", other.name())),
        }
    }

    /// SEARCH / UID SEARCH (RFC 3501 §6.4.4, MODSEQ of RFC 7162 §3.1.5) over the session's view:
    /// each key through `super::search::matches`, facts from this node's index; a message's body
    /// is read (one at a time) only when its keys cannot be decided without it. A body that
    /// cannot be read makes the whole SEARCH answer NO: a partial result would be a wrong one.
    /// `(MODSEQ n)`: the highest mod-sequence of the matches, when a MODSEQ key was used. A
    /// message the index no longer has, whose EXPUNGE the session has not been sent yet, keeps
    /// its sequence number but matches no key (`ALL` included): its record is gone.
    async fn search(
        &mut self,
        charset: Option<imap_next::imap_types::core::Charset<'static>>,
        criteria: Vec1<imap_next::imap_types::search::SearchKey<'static>>,
        uid: bool,
    ) -> Reply {
        use super::search::{matches, MessageFacts, SearchContext, SearchError};
        use super::searching::{check_charset, criteria_key, uses_modseq, Probe};
        if let Err(reply) = check_charset(charset.as_ref()) {
            return reply;
        }
        let key = criteria_key(criteria);
        let with_modseq = uses_modseq(&key);
        if with_modseq {
            self.condstore = true;
        }
        let selected = self.selected.as_ref().expect("selected");
        let uids = selected.view.uids().to_vec();
        let ctx = SearchContext {
            max_seq: selected.view.exists(),
            max_uid: selected.view.last_uid(),
        };
        let (user, name) = (self.user.clone().expect("logged in"), selected.name.clone());
        let records = if uids.is_empty() {
            Vec::new()
        } else {
            match self.records(&user, &name, &uids).await {
                Ok(records) => records,
                Err(reply) => return reply,
            }
        };
        let mut found = Vec::new();
        let mut highest_modseq = 0;
        for record in &records {
            let view = &self.selected.as_ref().expect("selected").view;
            let Some(seq) = view.seq_of(record.uid) else {
                continue;
            };
            let facts = MessageFacts {
                seq,
                uid: record.uid,
                flags: &record.flags,
                internal_date: record.internal_date,
                size: record.size,
                modseq: record.modseq,
            };
            let mut probe = Probe::default();
            let mut outcome = matches(&key, &facts, &mut probe, &ctx);
            if probe.asked && matches!(outcome, Err(SearchError::BodyUnavailable { .. })) {
                let bytes = match self.message_bytes(&user, record).await {
                    Ok(bytes) => bytes,
                    Err(reply) => {
                        return Reply {
                            text: format!("SEARCH failed: {}", reply.text),
                            ..reply
                        }
                    }
                };
                outcome = matches(&key, &facts, &mut bytes.as_slice(), &ctx);
            }
            match outcome {
                Ok(true) => {
                    found.push(nonzero(if uid { record.uid } else { seq }));
                    highest_modseq = highest_modseq.max(record.modseq);
                }
                Ok(false) => {}
                Err(SearchError::Unsupported { key }) => {
                    return Reply::no(format!("SEARCH key {key} is not supported")).code(other_code("CANNOT"))
                }
                Err(e @ SearchError::BodyUnavailable { .. }) => {
                    return Reply::no(format!("SEARCH failed: {e}")).code(other_code("UNAVAILABLE"))
                }
            }
        }
        found.sort_unstable();
        let modseq = if with_modseq {
            std::num::NonZeroU64::new(highest_modseq)
        } else {
            None
        };
        self.server.enqueue_data(Data::Search(found, modseq));
        Reply::ok(if uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        })
    }

    /// COPY / MOVE and their UID forms, over the replicated Copy/Move ops ([`super::copy`]).
    async fn copy_or_move(&mut self, body: CommandBody<'static>) -> Reply {
        match body {
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy_messages(sequence_set, mailbox, uid, false).await,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy_messages(sequence_set, mailbox, uid, true).await,
            other => Reply::bad(format!("{} is not COPY or MOVE", other.name())),
        }
    }

    /// Expunges the view's messages flagged `\Deleted` (of `only`, if given). The EXPUNGE
    /// responses follow from the refresh after the command.
    async fn expunge_deleted(&mut self, only: Option<Vec<u32>>) -> Result<(), Reply> {
        let selected = self.selected.as_ref().expect("selected");
        if selected.read_only {
            return Err(Reply::no("The mailbox is read-only (EXAMINE)").code(other_code("CANNOT")));
        }
        let (user, name) = (self.user.clone().expect("logged in"), selected.name.clone());
        let known: std::collections::BTreeSet<u32> = match &only {
            Some(uids) => uids.iter().copied().collect(),
            None => selected.view.uids().iter().copied().collect(),
        };
        let (u, n) = (user.clone(), name.clone());
        let records = self
            .read(move |g| g.state().fetch(&u, &n, 1, u32::MAX, usize::MAX))
            .await?
            .map_err(|e| self.gone_reply(e))?;
        let doomed: Vec<(u32, crate::txn::Guid)> = records
            .iter()
            .filter(|r| known.contains(&r.uid) && r.flags.iter().any(|f| f == "\\Deleted"))
            .map(|r| (r.uid, r.guid))
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let op = Op::Expunge {
            user,
            mailbox: name,
            uids: UidSet::from_ascending(doomed.iter().map(|(uid, _)| *uid)),
            expected_guids: doomed,
        };
        match self.propose(op).await? {
            Outcome::Expunged { .. } => Ok(()),
            Outcome::Rejected(rejection) => Err(rejection_reply(&rejection)),
            other => Err(Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG"))),
        }
    }

    fn gone_reply(&self, error: ReadError) -> Reply {
        Reply::no(format!("The selected mailbox is gone: {error}")).code(other_code("NONEXISTENT"))
    }

    async fn store(
        &mut self,
        set: SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<Flag<'static>>,
        uid: bool,
        modifiers: Vec<StoreModifier>,
    ) -> Reply {
        let selected = self.selected.as_ref().expect("selected");
        if selected.read_only {
            return Reply::no("The mailbox is read-only (EXAMINE)").code(other_code("CANNOT"));
        }
        let uids = match resolve(&selected.view, &set, uid) {
            Ok(uids) => uids,
            Err(reply) => return reply,
        };
        let flags = match flags.iter().map(flag_text).collect::<Result<Vec<_>, _>>() {
            Ok(flags) => flags,
            Err(reply) => return reply,
        };
        let mut unchanged_since = None;
        for modifier in modifiers {
            let StoreModifier::UnchangedSince(modseq) = modifier;
            unchanged_since = Some(modseq);
            self.condstore = true;
        }
        if uids.is_empty() {
            return Reply::ok("STORE completed (no messages)");
        }
        let (user, name) = (self.user.clone().expect("logged in"), selected.name.clone());
        let op = Op::Store {
            user: user.clone(),
            mailbox: name.clone(),
            uids: UidSet::from_ascending(uids.iter().copied()),
            mode: match kind {
                StoreType::Add => StoreMode::Add,
                StoreType::Remove => StoreMode::Remove,
                StoreType::Replace => StoreMode::Replace,
            },
            flags,
            unchanged_since,
        };
        let modified = match self.propose(op).await {
            Ok(Outcome::Stored { modified, modseq, .. }) => {
                self.note_own_modseq(modseq);
                modified
            }
            Ok(Outcome::Rejected(rejection)) => return rejection_reply(&rejection),
            Ok(other) => {
                return Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG"))
            }
            Err(reply) => return reply,
        };
        // RFC 7162 §3.1.3: once CONDSTORE is on, a FETCH with the new MODSEQ goes out even for
        // `.SILENT` (the client's cache needs the value); without it, `.SILENT` sends nothing.
        let silent = response == StoreResponse::Silent;
        if !silent || self.condstore {
            let (first, last) = (uids[0], uids[uids.len() - 1]);
            let records = match self
                .read(move |g| g.state().fetch(&user, &name, first, last, usize::MAX))
                .await
            {
                Ok(Ok(records)) => records,
                Ok(Err(e)) => return self.gone_reply(e),
                Err(reply) => return reply,
            };
            let wanted: std::collections::BTreeSet<u32> = uids.iter().copied().collect();
            for record in records
                .iter()
                .filter(|r| wanted.contains(&r.uid) && !modified.contains(r.uid))
            {
                if silent {
                    self.send_modseq(record, uid);
                } else {
                    self.send_flags(record, uid);
                }
            }
        }
        if modified.is_empty() {
            return Reply::ok("STORE completed");
        }
        let view = &self.selected.as_ref().expect("selected").view;
        let numbers: Vec<NonZeroU32> = modified
            .iter()
            .filter_map(|u| if uid { Some(u) } else { view.seq_of(u) })
            .map(nonzero)
            .collect();
        match SequenceSet::try_from(numbers) {
            Ok(set) => Reply::ok("Conditional STORE failed for some messages").code(Code::Modified(set)),
            Err(_) => Reply::ok("STORE completed"),
        }
    }

    /// Remembers a MODSEQ of this session's own STORE (see `Selected::own_modseqs`).
    pub(super) fn note_own_modseq(&mut self, modseq: Option<u64>) {
        if let (Some(selected), Some(modseq)) = (self.selected.as_mut(), modseq) {
            selected.own_modseqs.insert(modseq);
        }
    }

    /// A `.SILENT` STORE's `FETCH (MODSEQ (m))` of `record` (and its UID for UID STORE), if the
    /// view has it.
    fn send_modseq(&mut self, record: &MessageView, with_uid: bool) {
        let Some(selected) = &self.selected else {
            return;
        };
        let (Some(seq), Some(modseq)) = (
            selected.view.seq_of(record.uid),
            std::num::NonZeroU64::new(record.modseq),
        ) else {
            return;
        };
        let mut items = vec![MessageDataItem::ModSeq(modseq)];
        if with_uid {
            items.push(MessageDataItem::Uid(nonzero(record.uid)));
        }
        self.server.enqueue_data(Data::Fetch {
            seq: nonzero(seq),
            items: Vec1::try_from(items).expect("not empty"),
        });
    }

    /// An (unsolicited or STORE) `FETCH (FLAGS ...)` of `record`, if the view has it.
    pub(super) fn send_flags(&mut self, record: &MessageView, with_uid: bool) {
        let Some(selected) = &self.selected else {
            return;
        };
        let Some(seq) = selected.view.seq_of(record.uid) else {
            return;
        };
        let mut items = vec![flags_item(record)];
        if with_uid {
            items.push(MessageDataItem::Uid(nonzero(record.uid)));
        }
        if self.condstore {
            if let Some(modseq) = std::num::NonZeroU64::new(record.modseq) {
                items.push(MessageDataItem::ModSeq(modseq));
            }
        }
        self.server.enqueue_data(Data::Fetch {
            seq: nonzero(seq),
            items: Vec1::try_from(items).expect("not empty"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> SequenceSet {
        SequenceSet::try_from(text).unwrap()
    }

    #[test]
    fn sequence_numbers_resolve_through_the_view() {
        let view = View::new(vec![4, 7, 9, 12], 1);
        assert_eq!(resolve(&view, &set("1"), false).unwrap(), vec![4]);
        assert_eq!(resolve(&view, &set("2:*"), false).unwrap(), vec![7, 9, 12]);
        assert_eq!(resolve(&view, &set("*:3"), false).unwrap(), vec![9, 12]);
        assert_eq!(resolve(&view, &set("1,3,1"), false).unwrap(), vec![4, 9]);
        assert!(resolve(&view, &set("5"), false).is_err());
        assert!(resolve(&View::new(vec![], 1), &set("1:*"), false).is_err());
    }

    #[test]
    fn uids_outside_the_view_are_left_out_and_star_is_the_last_uid() {
        let view = View::new(vec![4, 7, 9, 12], 1);
        assert_eq!(resolve(&view, &set("5:10"), true).unwrap(), vec![7, 9]);
        assert_eq!(resolve(&view, &set("100"), true).unwrap(), Vec::<u32>::new());
        // RFC 3501: `n:*` always holds the last message, even with n above its UID.
        assert_eq!(resolve(&view, &set("100:*"), true).unwrap(), vec![12]);
        assert_eq!(resolve(&view, &set("1:*"), true).unwrap(), vec![4, 7, 9, 12]);
        assert!(resolve(&View::new(vec![], 1), &set("1:*"), true)
            .unwrap()
            .is_empty());
    }
}
