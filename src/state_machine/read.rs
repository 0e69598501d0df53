//! Reads of a group's state: mailbox lists, status, records by UID, changes since a MODSEQ.
//! All served from the local index files; the caller decides how fresh they must be.

use std::collections::BTreeSet;

use serde::Serialize;

use super::apply::hex;
use super::group_state::{GroupState, MailboxFiles};
use crate::bodies::store::BodyId;
use crate::index::{flag_bits, ChangesCursor, MailboxIndex, Record, Storage};
use crate::txn::validate::{canonical_mailbox_name, check_mailbox_name, check_name_text};
use crate::txn::{quoted, Guid, TxnError, UidSet};

/// Why a read could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no mailbox {mailbox:?} for this user")]
    NoSuchMailbox { mailbox: String },
    #[error(transparent)]
    Invalid(#[from] TxnError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxSummary {
    pub name: String,
    #[serde(serialize_with = "as_hex")]
    pub mailbox_guid: Guid,
    pub uid_validity: u32,
}

/// IMAP STATUS and the CONDSTORE/QRESYNC header values of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxStatus {
    #[serde(serialize_with = "as_hex")]
    pub mailbox_guid: Guid,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub exists: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub highest_modseq: u64,
    pub keywords: Vec<String>,
}

/// A message record with flags spelled as IMAP does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    pub uid: u32,
    pub flags: Vec<String>,
    pub modseq: u64,
    #[serde(serialize_with = "as_hex")]
    pub guid: Guid,
    pub size: u64,
    pub internal_date: i64,
    /// The id of the message's body in the body store, when it was delivered with one
    /// (`Op::Deliver`); absent for a message appended by reference (`Op::Append`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_hex_opt")]
    pub body: Option<Guid>,
}

/// One page of what changed after a cursor ([`ChangesCursor`]: a MODSEQ, and the last UID
/// returned at it), in (MODSEQ, UID) order: see `index::changes` for why paging this way neither
/// skips nor repeats a change while writes go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangesPageView {
    pub uid_validity: u32,
    pub highest_modseq: u64,
    /// Records changed after the cursor, in (MODSEQ, UID) order.
    pub changed: Vec<MessageView>,
    /// UIDs expunged after the cursor (and up to the page's end).
    #[serde(serialize_with = "as_uid_set_text")]
    pub vanished: UidSet,
    /// Changes after this page exist already: ask again from `next`.
    pub more: bool,
    /// Where the next page starts.
    pub next: NextChanges,
}

/// The query parameters of the next page of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NextChanges {
    pub since: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_uid: Option<u32>,
}

/// Everything that changed after a MODSEQ (RFC 7162 CHANGEDSINCE + QRESYNC VANISHED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub uid_validity: u32,
    pub highest_modseq: u64,
    pub changed: Vec<MessageView>,
    pub vanished: UidSet,
}

impl<F: MailboxFiles> GroupState<F> {
    /// A user's mailboxes in name order.
    pub fn list_mailboxes(&self, user: &str) -> Vec<MailboxSummary> {
        let Some(boxes) = self.manifest.users.get(user) else {
            return Vec::new();
        };
        boxes
            .iter()
            .map(|(name, guid)| MailboxSummary {
                name: name.clone(),
                mailbox_guid: *guid,
                uid_validity: self.open_index(guid).header().uid_validity,
            })
            .collect()
    }

    /// The index of (user, mailbox).
    pub fn mailbox_index(&self, user: &str, mailbox: &str) -> Result<&MailboxIndex<F::Storage>, ReadError> {
        check_mailbox_name(mailbox)?;
        let name = canonical_mailbox_name(mailbox);
        let guid = self
            .manifest
            .mailbox(user, &name)
            .ok_or(ReadError::NoSuchMailbox { mailbox: name })?;
        Ok(self.open_index(&guid))
    }

    fn open_index(&self, guid: &Guid) -> &MailboxIndex<F::Storage> {
        self.mailboxes.get(guid).unwrap_or_else(|| {
            panic!(
                "invariant: manifest names mailbox {} but it is not open",
                hex(guid)
            )
        })
    }

    /// Adds to `out` every body a record of this group names (the collector's "referenced"
    /// set). Each mailbox's records are read once, 16 bytes each; an expunged message has no
    /// record left and a deleted mailbox no index, so neither references its body any more.
    /// The caller holds the group still meanwhile (its lock), so the set is one applied state.
    pub fn add_referenced_bodies(&self, out: &mut BTreeSet<BodyId>) {
        for index in self.mailboxes.values() {
            out.extend(index.body_ids().map(BodyId));
        }
    }

    /// The bodies the records of this group name (see [`GroupState::add_referenced_bodies`]).
    pub fn referenced_bodies(&self) -> BTreeSet<BodyId> {
        let mut out = BTreeSet::new();
        self.add_referenced_bodies(&mut out);
        out
    }

    pub fn status(&self, user: &str, mailbox: &str) -> Result<MailboxStatus, ReadError> {
        let index = self.mailbox_index(user, mailbox)?;
        let h = index.header();
        Ok(MailboxStatus {
            mailbox_guid: h.mailbox_guid,
            uid_validity: h.uid_validity,
            uid_next: h.uid_next,
            exists: h.message_count,
            unseen: h.message_count - h.seen_count,
            deleted: h.deleted_count,
            highest_modseq: h.highest_modseq,
            keywords: index.keywords().to_vec(),
        })
    }

    /// Records with `first <= uid <= last`, at most `limit` of them.
    pub fn fetch(
        &self,
        user: &str,
        mailbox: &str,
        first: u32,
        last: u32,
        limit: usize,
    ) -> Result<Vec<MessageView>, ReadError> {
        let index = self.mailbox_index(user, mailbox)?;
        Ok(index
            .positions_in(first, last)
            .take(limit)
            .map(|p| view(index, &index.record_at(p)))
            .collect())
    }

    /// The records of the UIDs in `uids` that the mailbox has, in UID order, at most `limit` of
    /// them: what a copy or a move of those UIDs would copy (`Op::Copy` skips the others).
    pub fn fetch_set(
        &self,
        user: &str,
        mailbox: &str,
        uids: &UidSet,
        limit: usize,
    ) -> Result<Vec<MessageView>, ReadError> {
        let index = self.mailbox_index(user, mailbox)?;
        Ok(uids
            .ranges()
            .iter()
            .flat_map(|&(first, last)| index.positions_in(first, last))
            .take(limit)
            .map(|p| view(index, &index.record_at(p)))
            .collect())
    }

    /// The mailbox names `user` is subscribed to, in name order (IMAP LSUB, or LIST
    /// (SUBSCRIBED)): names of mailboxes that may not exist (any more), as RFC 3501 allows.
    pub fn subscriptions(&self, user: &str) -> Vec<String> {
        self.manifest
            .subscriptions
            .get(user)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// At most `limit` changes after `cursor` (records changed, UIDs expunged), in (MODSEQ,
    /// UID) order, and where the next page starts.
    pub fn changes_page(
        &self,
        user: &str,
        mailbox: &str,
        cursor: ChangesCursor,
        limit: usize,
    ) -> Result<ChangesPageView, ReadError> {
        let index = self.mailbox_index(user, mailbox)?;
        let page = index.changes_page(cursor, limit);
        Ok(ChangesPageView {
            uid_validity: index.header().uid_validity,
            highest_modseq: index.header().highest_modseq,
            changed: page.changed.iter().map(|r| view(index, r)).collect(),
            vanished: UidSet::from_ascending(page.vanished),
            more: page.more,
            next: NextChanges {
                since: page.next.modseq,
                after_uid: page.next.after_uid,
            },
        })
    }

    /// The user and mailbox names of this group that log encoding 2 refuses in new writes: not
    /// in Unicode NFC, or holding a default-ignorable (invisible, bidi control) code point
    /// (`txn::validate::check_name_text`). Only names stored before encoding 2 can be such.
    /// Each as `user "…"` or `mailbox "…" of user "…"` with the reason, every name quoted at
    /// most 64 bytes, in name order. O(names): meant for a group's open, not for every request.
    pub fn legacy_names(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (user, mailboxes) in &self.manifest.users {
            if let Err(TxnError::InvalidName { reason, .. }) = check_name_text("user name", user) {
                found.push(format!("user {:?}: {reason}", quoted(user)));
            }
            for name in mailboxes.keys() {
                if let Err(TxnError::InvalidName { reason, .. }) = check_name_text("mailbox name", name) {
                    found.push(format!(
                        "mailbox {:?} of user {:?}: {reason}",
                        quoted(name),
                        quoted(user)
                    ));
                }
            }
        }
        found
    }

    /// Records changed and UIDs expunged after `modseq`, all of them.
    pub fn changes_since(&self, user: &str, mailbox: &str, modseq: u64) -> Result<Changes, ReadError> {
        let index = self.mailbox_index(user, mailbox)?;
        Ok(Changes {
            uid_validity: index.header().uid_validity,
            highest_modseq: index.header().highest_modseq,
            changed: index
                .changed_since(modseq)
                .iter()
                .map(|r| view(index, r))
                .collect(),
            vanished: UidSet::from_ascending(index.vanished_since(modseq)),
        })
    }
}

/// IMAP spellings of a record's system flags and keywords.
pub fn flag_names<S: Storage>(index: &MailboxIndex<S>, record: &Record) -> Vec<String> {
    let mut flags: Vec<String> = [
        (flag_bits::SEEN, "\\Seen"),
        (flag_bits::ANSWERED, "\\Answered"),
        (flag_bits::FLAGGED, "\\Flagged"),
        (flag_bits::DELETED, "\\Deleted"),
        (flag_bits::DRAFT, "\\Draft"),
    ]
    .iter()
    .filter(|(bit, _)| record.flags & bit != 0)
    .map(|(_, name)| name.to_string())
    .collect();
    flags.extend(index.keyword_names(record.keywords));
    flags
}

fn view<S: Storage>(index: &MailboxIndex<S>, record: &Record) -> MessageView {
    MessageView {
        uid: record.uid,
        flags: flag_names(index, record),
        modseq: record.modseq,
        guid: record.guid,
        size: record.size,
        internal_date: record.internal_date,
        body: (record.body != [0; 16]).then_some(record.body),
    }
}

fn as_uid_set_text<S: serde::Serializer>(set: &UidSet, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(set)
}

fn as_hex<S: serde::Serializer>(guid: &Guid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex(guid))
}

fn as_hex_opt<S: serde::Serializer>(id: &Option<Guid>, serializer: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.serialize_str(&hex(id)),
        None => serializer.serialize_none(),
    }
}
