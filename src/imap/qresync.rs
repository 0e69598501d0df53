//! QRESYNC (RFC 7162 §3.2): what a session that sent `ENABLE QRESYNC` gets beyond CONDSTORE —
//! `SELECT`/`EXAMINE` with the `(QRESYNC (uidvalidity modseq [known-uids [seq-match-data]]))`
//! parameter, and `UID FETCH ... (CHANGEDSINCE m VANISHED)`, both answering `* VANISHED
//! (EARLIER)` from the mailbox's expunge tombstones before the FETCH lines of what changed. (The
//! other half of QRESYNC, `* VANISHED` instead of `* n EXPUNGE` wherever RFC 3501 §7.4.1 allows an
//! expunge, is in `super::refresh` and `super::copy`, from the session's view.)
//!
//! The tombstones (UID, MODSEQ of the expunge) are kept for the life of the mailbox: the index
//! never prunes them, and a snapshot or a restore copies the index byte for byte. So the UIDs
//! expunged after any MODSEQ are known exactly, and `seq-match-data` — the client's hint for a
//! server that forgot old expunges — is checked for syntax and otherwise not needed. Should
//! tombstones ever be pruned, a client MODSEQ older than the oldest one kept must be answered
//! with every known UID the mailbox no longer has (RFC 7162 §3.2.5 lets a server report UIDs
//! expunged before the client's MODSEQ too): always correct, merely longer. ARCHITECTURE.md §5
//! (the IMAP session) says the same from the outside.

use std::num::{NonZeroU32, NonZeroU64};

use imap_next::imap_types::command::SelectParameter;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::reply::{other_code, Reply};
use super::session::Session;
use crate::service::MailService;
use crate::state_machine::read::Changes;
use crate::txn::UidSet;

/// A checked `SELECT (QRESYNC (...))` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// The UIDVALIDITY the client's cache belongs to; another one means a plain SELECT.
    pub uid_validity: u32,
    /// The last MODSEQ the client's cache is in step with.
    pub modseq: u64,
    /// The UIDs the client knows (`None`: every UID, RFC 7162 `1:<UIDNEXT-1>`); VANISHED and the
    /// FETCH lines are limited to them.
    pub known_uids: Option<UidSet>,
}

impl Resync {
    /// Checks the parameter as imap-codec parsed it: `*` is not allowed in `known-uids` nor in
    /// `seq-match-data` (RFC 7162 §3.2.5 ABNF), which must pair sets of equal size.
    pub fn parse(
        uid_validity: NonZeroU32,
        modseq: NonZeroU64,
        known_uids: Option<&SequenceSet>,
        seq_match_data: Option<&(SequenceSet, SequenceSet)>,
    ) -> Result<Resync, Reply> {
        let known_uids = known_uids.map(|set| star_free("known-uids", set)).transpose()?;
        if let Some((seqs, uids)) = seq_match_data {
            let (seqs, uids) = (
                star_free("seq-match-data", seqs)?,
                star_free("seq-match-data", uids)?,
            );
            if seqs.len() != uids.len() {
                return Err(Reply::bad(
                    "QRESYNC seq-match-data must pair as many sequence numbers as UIDs",
                ));
            }
        }
        Ok(Resync {
            uid_validity: uid_validity.get(),
            modseq: modseq.get(),
            known_uids,
        })
    }

    /// Whether `uid` is one the client said it knows.
    pub fn knows(&self, uid: u32) -> bool {
        self.known_uids.as_ref().is_none_or(|known| known.contains(uid))
    }
}

/// `set` as UIDs, refused with BAD when it holds `*`.
fn star_free(what: &str, set: &SequenceSet) -> Result<UidSet, Reply> {
    let mut ranges = Vec::new();
    for sequence in set.0.as_ref() {
        let (a, b) = match sequence {
            Sequence::Single(SeqOrUid::Value(v)) => (v.get(), v.get()),
            Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => (a.get(), b.get()),
            _ => return Err(Reply::bad(format!("QRESYNC {what} must not contain *"))),
        };
        ranges.push((a.min(b), a.max(b)));
    }
    UidSet::from_ranges(ranges).map_err(|e| Reply::bad(format!("QRESYNC {what}: {e}")))
}

/// The UIDs a `UID FETCH` set names, for VANISHED: `*` is taken as the highest UID there can be,
/// not the highest one left, so `n:*` also covers UIDs expunged above the last message.
pub fn uid_set_unbounded(set: &SequenceSet) -> UidSet {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    let ranges = set.0.as_ref().iter().map(|sequence| {
        let (a, b) = match sequence {
            Sequence::Single(v) => (value(v), value(v)),
            Sequence::Range(a, b) => (value(a), value(b)),
        };
        (a.min(b), a.max(b))
    });
    UidSet::from_ranges(ranges).expect("imap-codec's numbers are not zero")
}

/// `* VANISHED [(EARLIER)] <uids>` of ascending `uids`, ranges joined; `None` when empty.
pub fn vanished(uids: impl IntoIterator<Item = u32>, earlier: bool) -> Option<Data<'static>> {
    let set = UidSet::from_ascending(uids);
    let value = |uid: u32| SeqOrUid::Value(NonZeroU32::new(uid).expect("UIDs are not zero"));
    let sequences: Vec<Sequence> = set
        .ranges()
        .iter()
        .map(|&(start, end)| match start == end {
            true => Sequence::Single(value(start)),
            false => Sequence::Range(value(start), value(end)),
        })
        .collect();
    let known_uids = SequenceSet(Vec1::try_from(sequences).ok()?);
    Some(Data::Vanished { earlier, known_uids })
}

impl<S: MailService> Session<S> {
    /// SELECT/EXAMINE's parameters: CONDSTORE turns CONDSTORE on; QRESYNC is checked
    /// ([`Resync::parse`]) and is BAD before `ENABLE QRESYNC` (RFC 7162 §3.2.5) or given twice.
    pub(super) fn select_parameters(
        &mut self,
        parameters: &[SelectParameter],
    ) -> Result<Option<Resync>, Reply> {
        let mut resync = None;
        for parameter in parameters {
            match parameter {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } if !self.qresync => {
                    return Err(Reply::bad("QRESYNC needs ENABLE QRESYNC first"))
                }
                SelectParameter::QResync { .. } if resync.is_some() => {
                    return Err(Reply::bad("QRESYNC given twice"))
                }
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    seq_match_data,
                } => {
                    resync = Some(Resync::parse(
                        *uid_validity,
                        *mod_sequence_value,
                        known_uids.as_ref(),
                        seq_match_data.as_ref(),
                    )?)
                }
            }
        }
        Ok(resync)
    }

    /// FETCH's VANISHED modifier (RFC 7162 §3.2.6): the MODSEQ after which to report expunges;
    /// BAD outside UID FETCH, without CHANGEDSINCE, or before `ENABLE QRESYNC`.
    pub(super) fn vanished_modifier(
        &self,
        vanished: bool,
        uid: bool,
        changed_since: Option<u64>,
    ) -> Result<Option<u64>, Reply> {
        match (vanished, changed_since) {
            (false, _) => Ok(None),
            (true, _) if !uid => Err(Reply::bad("VANISHED is allowed only in UID FETCH")),
            (true, _) if !self.qresync => Err(Reply::bad("VANISHED needs ENABLE QRESYNC first")),
            (true, None) => Err(Reply::bad("VANISHED needs CHANGEDSINCE")),
            (true, Some(since)) => Ok(Some(since)),
        }
    }

    /// The rest of a `SELECT (QRESYNC ...)` whose UIDVALIDITY matched (RFC 7162 §3.2.5), once
    /// the view is in place: `* VANISHED (EARLIER)` of the known UIDs expunged after the
    /// client's MODSEQ, then `* n FETCH (FLAGS UID MODSEQ)` of the known messages changed after
    /// it, in sequence order.
    pub(super) fn resync_selected(&mut self, resync: &Resync, changes: &Changes) {
        let gone = changes.vanished.iter().filter(|&uid| resync.knows(uid));
        if let Some(data) = vanished(gone, true) {
            self.server.enqueue_data(data);
        }
        let mut changed: Vec<_> = changes
            .changed
            .iter()
            .filter(|record| resync.knows(record.uid))
            .collect();
        changed.sort_by_key(|record| record.uid);
        for record in changed {
            self.send_flags(record, true);
        }
    }

    /// `UID FETCH <set> ... (CHANGEDSINCE since VANISHED)` (RFC 7162 §3.2.6): `* VANISHED
    /// (EARLIER)` of the UIDs of `set` expunged after `since`, sent before the FETCH lines.
    /// Expunges this session has not been told of yet are among them; the refresh after the
    /// command then tells them again as plain `* VANISHED`, which renumbers (EARLIER does not).
    pub(super) async fn vanished_earlier(&mut self, set: &SequenceSet, since: u64) -> Result<(), Reply> {
        let selected = self.selected.as_ref().expect("selected");
        let (user, name) = (self.user.clone().expect("logged in"), selected.name.clone());
        let gone = self
            .read(move |g| {
                g.state()
                    .mailbox_index(&user, &name)
                    .map(|index| index.vanished_since(since))
            })
            .await?
            .map_err(|e| {
                Reply::no(format!("The selected mailbox is gone: {e}")).code(other_code("NONEXISTENT"))
            })?;
        let wanted = uid_set_unbounded(set);
        if let Some(data) = vanished(gone.into_iter().filter(|&uid| wanted.contains(uid)), true) {
            self.server.enqueue_data(data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> SequenceSet {
        SequenceSet::try_from(text).unwrap()
    }

    fn nz32(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn nz64(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn known_uids_limit_what_is_reported_and_their_absence_means_all() {
        let resync = Resync::parse(nz32(7), nz64(20), Some(&set("1:3,9")), None).unwrap();
        assert_eq!((resync.uid_validity, resync.modseq), (7, 20));
        assert!(resync.knows(2) && resync.knows(9));
        assert!(!resync.knows(4) && !resync.knows(10));
        let all = Resync::parse(nz32(7), nz64(20), None, None).unwrap();
        assert!(all.knows(1) && all.knows(u32::MAX));
    }

    #[test]
    fn a_star_or_unequal_seq_match_data_is_bad() {
        let star = Resync::parse(nz32(7), nz64(1), Some(&set("1:*")), None).unwrap_err();
        assert!(star.text.contains("known-uids"), "{}", star.text);
        let pair = (set("1:3"), set("4,6"));
        let unequal = Resync::parse(nz32(7), nz64(1), None, Some(&pair)).unwrap_err();
        assert!(unequal.text.contains("seq-match-data"), "{}", unequal.text);
        let pair = (set("1:2"), set("4,6"));
        assert!(Resync::parse(nz32(7), nz64(1), Some(&set("4:6")), Some(&pair)).is_ok());
    }

    #[test]
    fn a_fetch_set_with_star_covers_uids_above_the_last_message() {
        let uids = uid_set_unbounded(&set("5:*,2"));
        assert_eq!(uids.ranges(), &[(2, 2), (5, u32::MAX)]);
    }

    #[test]
    fn vanished_joins_ranges_and_is_absent_when_empty() {
        assert_eq!(vanished(Vec::new(), true), None);
        let Some(Data::Vanished { earlier, known_uids }) = vanished([2, 3, 4, 7, 9, 10], false) else {
            panic!("a VANISHED response");
        };
        assert!(!earlier);
        assert_eq!(known_uids, set("2:4,7,9:10"));
    }
}
