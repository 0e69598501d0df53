//! Reads of a group's state: mailbox lists, status, records by UID, changes since a MODSEQ.
//! All served from the local index files; the caller decides how fresh they must be.

use std::collections::BTreeSet;

use serde::Serialize;

use super::apply::hex;
use super::group_state::{GroupState, MailboxFiles};
use crate::bodies::store::BodyId;
use crate::index::{flag_bits, MailboxIndex, Record, Storage};
use crate::txn::validate::{canonical_mailbox_name, check_mailbox_name};
use crate::txn::{Guid, TxnError, UidSet};

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

    /// Records changed and UIDs expunged after `modseq`.
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

fn as_hex<S: serde::Serializer>(guid: &Guid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex(guid))
}

fn as_hex_opt<S: serde::Serializer>(id: &Option<Guid>, serializer: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.serialize_str(&hex(id)),
        None => serializer.serialize_none(),
    }
}
