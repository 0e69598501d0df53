//! `View`: a selected mailbox as one session sees it — the UIDs in sequence order — and the
//! changes seen in the index that the session has not been told yet.
//!
//! Sequence numbers are per session (RFC 3501 §2.3.1.2, §7.4.1): the view moves only when the
//! session is allowed to send EXPUNGE (never during FETCH, STORE or SEARCH without UID). Changes
//! read from the index at other points are buffered here ([`View::note_expunged`],
//! [`View::note_appended`]) and applied at the next allowed point ([`View::take_expunges`],
//! [`View::take_appended`]). Pure: no I/O.

use std::collections::BTreeSet;

/// One session's sequence ↔ UID map of its selected mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// UIDs by sequence number (`uids[seq - 1]`). Invariant: strictly ascending.
    uids: Vec<u32>,
    /// UIDs the index no longer has, not yet announced with EXPUNGE. Invariant: each is in `uids`.
    expunged: BTreeSet<u32>,
    /// UIDs the index has, above every UID of `uids`, not yet announced with EXISTS.
    /// Invariant: each is above the last of `uids`.
    appended: BTreeSet<u32>,
    /// The highest MODSEQ of the mailbox the session has caught up with.
    pub highest_modseq: u64,
    /// While `expunged` is not empty: `highest_modseq` when the first of them was noted, below
    /// the MODSEQ of every buffered expunge (they came from changes after it).
    expunged_below: Option<u64>,
}

impl View {
    /// A view of `uids` (ascending) at `highest_modseq`.
    pub fn new(mut uids: Vec<u32>, highest_modseq: u64) -> View {
        uids.sort_unstable();
        uids.dedup();
        View {
            uids,
            expunged: BTreeSet::new(),
            appended: BTreeSet::new(),
            highest_modseq,
            expunged_below: None,
        }
    }

    /// Messages the session knows of (what its last EXISTS said, minus its EXPUNGEs).
    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// The UID of sequence number `seq` (1-based).
    pub fn uid_of(&self, seq: u32) -> Option<u32> {
        self.uids.get((seq as usize).checked_sub(1)?).copied()
    }

    /// The sequence number of `uid`, if the session knows it.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// The highest UID the session knows (0 when empty).
    pub fn last_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }

    /// Every UID the session knows, in sequence order.
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// Whether `uid` is known to be gone from the index (not yet announced).
    pub fn is_expunged(&self, uid: u32) -> bool {
        self.expunged.contains(&uid)
    }

    /// Records that the index no longer has `uids`; those the session does not know are ignored.
    /// Call it before raising `highest_modseq` to the changes that told of them.
    pub fn note_expunged(&mut self, uids: impl IntoIterator<Item = u32>) {
        for uid in uids {
            if self.seq_of(uid).is_some() {
                self.expunged.insert(uid);
            }
            self.appended.remove(&uid);
        }
        if !self.expunged.is_empty() {
            self.expunged_below.get_or_insert(self.highest_modseq);
        }
    }

    /// While expunges wait to be announced: a MODSEQ below each of theirs, the safe point for a
    /// client to resynchronize from if the connection ends now (RFC 7162 erratum 1810, to be
    /// sent as `OK [HIGHESTMODSEQ]` when MODSEQs above it may have been sent meanwhile).
    pub fn expunged_below(&self) -> Option<u64> {
        self.expunged_below.filter(|_| !self.expunged.is_empty())
    }

    /// Records that the index has `uids`; those the session knows already are ignored.
    pub fn note_appended(&mut self, uids: impl IntoIterator<Item = u32>) {
        let last = self.last_uid();
        self.appended.extend(uids.into_iter().filter(|&uid| uid > last));
    }

    /// Applies the buffered expunges: the sequence numbers to announce, in the order to send
    /// them (each EXPUNGE renumbers the messages after it, so they are sent highest first and
    /// every number stays valid as sent).
    pub fn take_expunges(&mut self) -> Vec<u32> {
        let mut seqs = Vec::with_capacity(self.expunged.len());
        self.expunged_below = None;
        for uid in std::mem::take(&mut self.expunged).into_iter().rev() {
            let seq = self
                .seq_of(uid)
                .expect("invariant: buffered expunges are in the view");
            self.uids.remove(seq as usize - 1);
            seqs.push(seq);
        }
        debug_assert!(self.uids.windows(2).all(|w| w[0] < w[1]));
        seqs
    }

    /// Applies the buffered expunges as QRESYNC tells them (`* VANISHED`, RFC 7162 §3.2.10): the
    /// UIDs, ascending. One response covers them all; the client renumbers as EXPUNGE would.
    pub fn take_vanished(&mut self) -> Vec<u32> {
        let gone = std::mem::take(&mut self.expunged);
        self.expunged_below = None;
        self.uids.retain(|uid| !gone.contains(uid));
        debug_assert!(self.uids.windows(2).all(|w| w[0] < w[1]));
        gone.into_iter().collect()
    }

    /// Applies the buffered appends; whether EXISTS must be sent.
    pub fn take_appended(&mut self) -> bool {
        if self.appended.is_empty() {
            return false;
        }
        let last = self.last_uid();
        debug_assert!(self.appended.iter().all(|&uid| uid > last));
        self.uids.extend(std::mem::take(&mut self.appended));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_uids_and_sequence_numbers_both_ways() {
        let view = View::new(vec![3, 7, 9], 5);
        assert_eq!(view.exists(), 3);
        assert_eq!(view.uid_of(1), Some(3));
        assert_eq!(view.uid_of(3), Some(9));
        assert_eq!(view.uid_of(0), None);
        assert_eq!(view.uid_of(4), None);
        assert_eq!(view.seq_of(7), Some(2));
        assert_eq!(view.seq_of(8), None);
        assert_eq!(view.last_uid(), 9);
    }

    #[test]
    fn expunges_wait_for_an_allowed_point_and_renumber_highest_first() {
        let mut view = View::new(vec![1, 2, 3, 4, 5], 1);
        view.note_expunged([2, 4, 42]);
        // Buffered: numbering unchanged until the session may send EXPUNGE.
        assert_eq!(view.seq_of(4), Some(4));
        assert_eq!(view.exists(), 5);
        assert!(view.is_expunged(2));
        assert_eq!(view.take_expunges(), vec![4, 2]);
        assert_eq!(view.uids(), &[1, 3, 5]);
        assert_eq!(view.seq_of(5), Some(3));
        assert!(view.take_expunges().is_empty());
    }

    /// The safe MODSEQ is the view's before the first buffered expunge was noted; later ones do
    /// not raise it, and taking the expunges clears it.
    #[test]
    fn buffered_expunges_keep_a_modseq_below_theirs() {
        let mut view = View::new(vec![1, 2, 3], 10);
        assert_eq!(view.expunged_below(), None);
        view.note_expunged([2]);
        view.highest_modseq = 12;
        view.note_expunged([3]);
        view.highest_modseq = 15;
        assert_eq!(view.expunged_below(), Some(10));
        view.take_vanished();
        assert_eq!(view.expunged_below(), None);
        view.note_expunged([9]); // unknown UID: nothing buffered
        assert_eq!(view.expunged_below(), None);
        view.note_expunged([1]);
        assert_eq!(view.expunged_below(), Some(15));
        view.take_expunges();
        assert_eq!(view.expunged_below(), None);
    }

    #[test]
    fn vanished_takes_the_same_expunges_as_uids() {
        let mut view = View::new(vec![1, 2, 3, 4, 5], 1);
        view.note_expunged([4, 2, 42]);
        assert_eq!(view.seq_of(5), Some(5));
        assert_eq!(view.take_vanished(), vec![2, 4]);
        assert_eq!(view.uids(), &[1, 3, 5]);
        assert!(view.take_vanished().is_empty());
    }

    #[test]
    fn appends_are_announced_once_and_a_gone_append_never() {
        let mut view = View::new(vec![1], 1);
        view.note_appended([1, 2, 3]);
        view.note_expunged([3]);
        assert_eq!(view.exists(), 1);
        assert!(view.take_appended());
        assert_eq!(view.uids(), &[1, 2]);
        assert!(!view.take_appended());
    }

    /// Against a model: after any mix of notes, taking both leaves exactly the index's UIDs.
    #[test]
    fn after_taking_everything_the_view_is_the_index() {
        let mut index: BTreeSet<u32> = (1..=20).collect();
        let mut view = View::new(index.iter().copied().collect(), 1);
        let mut next = 21;
        for step in 0..200u32 {
            if step % 3 == 0 {
                index.insert(next);
                view.note_appended([next]);
                next += 1;
            } else if let Some(&uid) = index.iter().nth((step as usize * 7) % index.len().max(1)) {
                index.remove(&uid);
                view.note_expunged([uid]);
            }
            if step % 5 == 0 {
                view.take_expunges();
                view.take_appended();
                assert_eq!(view.uids(), index.iter().copied().collect::<Vec<_>>().as_slice());
            }
        }
    }
}
