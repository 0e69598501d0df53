//! Paging through "changes since MODSEQ m" (CONDSTORE `CHANGEDSINCE`, QRESYNC `VANISHED`) so
//! that a client that pages while writes go on neither skips nor repeats a change.
//!
//! A change is a record's current state (its UID and MODSEQ) or an expunge tombstone (the UID
//! and the MODSEQ of the expunge). Pages follow the order of (MODSEQ, UID), not of UID alone:
//! a cursor "UIDs above u" would miss a record below u changed between two pages. In (MODSEQ,
//! UID) order every write lands after any cursor, because a write gives what it touches the
//! next MODSEQ of the mailbox, above every MODSEQ that exists. A [`ChangesCursor`] (m, u) says
//! "every change up to (m, u) was returned"; a page holds the first `limit` changes after it.
//!
//! - No skip: a change after the cursor is either still there (a later page returns it) or was
//!   overwritten by a newer write (a store, or the expunge that replaced the record by its
//!   tombstone), whose MODSEQ is above the cursor: the newer change is returned instead, and
//!   it is the state the client needs.
//! - No repeat: a page returns only changes after its cursor and its `next` cursor is its last
//!   change, so cursors only grow and one (UID, MODSEQ) is returned once. A record changed again
//!   after it was returned comes back with its new MODSEQ: a new change.
//! - A page with `more == false` returned everything up to the mailbox's HIGHESTMODSEQ at that
//!   read: the client is in sync with it, and `next` is "since HIGHESTMODSEQ".
//!
//! The property test below pages against a reference model while appends, stores and expunges
//! interleave, and checks both.

use std::collections::BinaryHeap;

use super::format::Record;
use super::mailbox_index::MailboxIndex;
use super::storage::Storage;

/// A position in a mailbox's changes, ordered by (MODSEQ, UID): every change at or before it
/// has been returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangesCursor {
    pub modseq: u64,
    /// The last UID returned at `modseq`; `None`: every change at `modseq` was (a cursor made
    /// from a client's `since`).
    pub after_uid: Option<u32>,
}

impl ChangesCursor {
    /// Every change after MODSEQ `modseq`.
    pub fn since(modseq: u64) -> ChangesCursor {
        ChangesCursor {
            modseq,
            after_uid: None,
        }
    }

    /// The cursor as a (MODSEQ, UID) position: `None` sorts after every UID (UIDs are below
    /// 2³²−1: `MailboxIndex::append` asserts it).
    fn position(self) -> (u64, u32) {
        (self.modseq, self.after_uid.unwrap_or(u32::MAX))
    }
}

/// One page of changes after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesPage {
    /// Records changed after the cursor, in (MODSEQ, UID) order.
    pub changed: Vec<Record>,
    /// UIDs expunged after the cursor, ascending.
    pub vanished: Vec<u32>,
    /// Changes after this page exist already: ask again from `next`.
    pub more: bool,
    /// Where the next page starts. Invariant: not before the page's cursor; with `more`, the
    /// page's last change; without, the mailbox's HIGHESTMODSEQ (or the cursor, if later).
    pub next: ChangesCursor,
}

/// A change in the page being gathered: (MODSEQ, UID, the record's position or `None` for a
/// tombstone). Ordered as changes are paged.
type Change = (u64, u32, Option<usize>);

impl<S: Storage> MailboxIndex<S> {
    /// The first `limit` (at least 1) changes after `cursor`: records by their current MODSEQ
    /// and tombstones by the MODSEQ of their expunge, in (MODSEQ, UID) order. Memory is bounded
    /// by `limit`; the scan skips the 256-record blocks with no newer MODSEQ and starts the
    /// tombstones at the cursor's MODSEQ (they are in MODSEQ order).
    pub fn changes_page(&self, cursor: ChangesCursor, limit: usize) -> ChangesPage {
        assert!(limit > 0, "a page of changes holds at least one");
        let after = cursor.position();
        let highest = ChangesCursor::since(self.header().highest_modseq);
        let done = |cursor: ChangesCursor| ChangesPage {
            changed: Vec::new(),
            vanished: Vec::new(),
            more: false,
            next: if highest.position() > cursor.position() {
                highest
            } else {
                cursor
            },
        };
        // The smallest MODSEQ a change after the cursor can have.
        let min_modseq = if after.1 == u32::MAX {
            match after.0.checked_add(1) {
                Some(m) => m,
                None => return done(cursor),
            }
        } else {
            after.0
        };
        // The `limit` first changes seen so far, the greatest on top.
        let mut page: BinaryHeap<Change> = BinaryHeap::with_capacity(limit + 1);
        let mut more = false;
        let mut offer = |page: &mut BinaryHeap<Change>, change: Change| {
            if page.len() == limit {
                more = true;
                if change >= *page.peek().expect("a full page") {
                    return;
                }
                page.pop();
            }
            page.push(change);
        };
        for (position, modseq, uid) in self.changed_positions(min_modseq) {
            if (modseq, uid) > after {
                offer(&mut page, (modseq, uid, Some(position)));
            }
        }
        for t in self.first_tombstone_from(min_modseq)..self.header().tombstone_count as usize {
            let tombstone = self.tombstone_at(t);
            if page.len() == limit && tombstone.modseq > page.peek().expect("a full page").0 {
                // Every later tombstone has a MODSEQ at least this one's: none fits the page.
                more = true;
                break;
            }
            if (tombstone.modseq, tombstone.uid) > after {
                offer(&mut page, (tombstone.modseq, tombstone.uid, None));
            }
        }
        let changes = page.into_sorted_vec();
        let Some(&(modseq, uid, _)) = changes.last() else {
            return done(cursor);
        };
        let mut vanished = Vec::new();
        let changed = changes
            .iter()
            .filter_map(|&(_, uid, position)| match position {
                Some(position) => Some(self.record_at(position)),
                None => {
                    vanished.push(uid);
                    None
                }
            })
            .collect();
        vanished.sort_unstable();
        if more {
            ChangesPage {
                changed,
                vanished,
                more,
                next: ChangesCursor {
                    modseq,
                    after_uid: Some(uid),
                },
            }
        } else {
            ChangesPage {
                changed,
                vanished,
                ..done(cursor)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::index::format::flag_bits;
    use crate::index::VecStorage;

    use crate::test_rng as rng;

    fn record(uid: u32, modseq: u64) -> Record {
        Record {
            uid,
            flags: 0,
            modseq,
            keywords: 0,
            guid: [uid as u8; 16],
            size: 1,
            internal_date: 0,
            body: [0; 16],
        }
    }

    fn new_index() -> MailboxIndex<VecStorage> {
        MailboxIndex::open(VecStorage::from_bytes(MailboxIndex::<VecStorage>::empty_image(
            [9; 16], 1,
        )))
        .unwrap()
    }

    /// The mailbox as a client keeps it: UID -> (MODSEQ, flags).
    type View = BTreeMap<u32, (u64, u8)>;

    fn view_of(index: &MailboxIndex<VecStorage>) -> View {
        (0..index.len())
            .map(|p| index.record_at(p))
            .map(|r| (r.uid, (r.modseq, r.flags)))
            .collect()
    }

    /// Pages in (MODSEQ, UID) order; `next` continues after the last change; a page that holds
    /// everything says so and points at HIGHESTMODSEQ; `since` past everything is an empty,
    /// last page.
    #[test]
    fn pages_follow_modseq_then_uid() {
        let mut ix = new_index();
        let m1 = ix.next_modseq();
        for uid in 1..=5 {
            ix.append(&record(uid, m1)).unwrap();
        }
        let m2 = ix.next_modseq();
        ix.update(0, flag_bits::SEEN, 0, m2); // UID 1
        let m3 = ix.next_modseq();
        ix.expunge(&[2], m3).unwrap(); // UID 3
        let uids = |page: &ChangesPage| page.changed.iter().map(|r| r.uid).collect::<Vec<_>>();
        let first = ix.changes_page(ChangesCursor::since(0), 3);
        assert_eq!(
            (uids(&first), first.vanished.as_slice(), first.more),
            (vec![2, 4, 5], &[][..], true)
        );
        assert_eq!(
            first.next,
            ChangesCursor {
                modseq: m1,
                after_uid: Some(5)
            }
        );
        let second = ix.changes_page(first.next, 3);
        assert_eq!(
            (uids(&second), second.vanished.as_slice(), second.more),
            (vec![1], &[3][..], false)
        );
        assert_eq!(second.next, ChangesCursor::since(m3));
        let all = ix.changes_page(ChangesCursor::since(0), 10);
        assert_eq!(
            (uids(&all), all.vanished.as_slice(), all.more),
            (vec![2, 4, 5, 1], &[3][..], false)
        );
        // Exactly `limit` changes left: the page is the last one.
        let exact = ix.changes_page(ChangesCursor::since(0), 5);
        assert!(!exact.more, "{exact:?}");
        for past in [
            ChangesCursor::since(m3),
            ChangesCursor::since(99),
            ChangesCursor::since(u64::MAX),
        ] {
            let page = ix.changes_page(past, 1);
            assert!(page.changed.is_empty() && page.vanished.is_empty() && !page.more);
            assert_eq!(page.next, past);
        }
        // Within one MODSEQ, a cursor in the middle goes on with the next UID.
        let middle = ix.changes_page(
            ChangesCursor {
                modseq: m1,
                after_uid: Some(2),
            },
            1,
        );
        assert_eq!((uids(&middle), middle.more), (vec![4], true));
    }

    /// A tombstone run longer than the page (one expunge of many UIDs, one MODSEQ) is paged by
    /// UID within its MODSEQ.
    #[test]
    fn one_large_expunge_is_paged_by_uid() {
        let mut ix = new_index();
        let m = ix.next_modseq();
        for uid in 1..=700 {
            ix.append(&record(uid, m)).unwrap();
        }
        let m2 = ix.next_modseq();
        ix.expunge(&(0..700).rev().step_by(2).rev().collect::<Vec<_>>(), m2)
            .unwrap();
        let mut cursor = ChangesCursor::since(m);
        let mut vanished: Vec<u32> = Vec::new();
        loop {
            let page = ix.changes_page(cursor, 64);
            assert!(page.vanished.len() <= 64 && page.changed.is_empty());
            vanished.extend(&page.vanished);
            cursor = page.next;
            if !page.more {
                break;
            }
        }
        assert_eq!(vanished, (1..=700).filter(|u| u % 2 == 0).collect::<Vec<u32>>());
        assert_eq!(cursor, ChangesCursor::since(m2));
    }

    type Pager = fn(&MailboxIndex<VecStorage>, ChangesCursor, usize) -> ChangesPage;

    /// The property, checked over `runs` random histories: a client pages through the changes
    /// of a mailbox with `pager` while appends, stores and expunges interleave with its pages.
    /// Against a reference model (the records and tombstones as plain maps), no (UID, MODSEQ)
    /// may be returned twice, every page must be in order and after its cursor, and whenever a
    /// page says it is the last, the client's copy (each page applied in turn) must equal the
    /// mailbox exactly: nothing was skipped. The first violation, or `Ok`.
    fn check_paging(seed: u64, runs: u32, pager: Pager) -> Result<(), String> {
        let mut rng = rng::Rng::new(seed);
        for run in 0..runs {
            let mut ix = new_index();
            // The reference model: live records and tombstones.
            let mut live: View = BTreeMap::new();
            let mut tombstones: BTreeMap<u32, u64> = BTreeMap::new();
            let mut uid_next = 1u32;
            // The client: its copy, its cursor, everything it was given.
            let mut copy: View = BTreeMap::new();
            let mut cursor = ChangesCursor::since(0);
            let mut returned: BTreeSet<(u32, u64)> = BTreeSet::new();
            let limit = rng.range(1, 6) as usize;
            let steps = rng.range(20, 120);
            let mut caught_up = false;
            // After `steps`, the client only pages, until it has caught up.
            for step in 0..steps + 100_000 {
                let context = format!("seed {seed} run {run} step {step} limit {limit}");
                let write = if step < steps { rng.below(6) } else { 9 };
                match write {
                    0 => {
                        let m = ix.next_modseq();
                        for _ in 0..rng.range(1, 8) {
                            ix.append(&record(uid_next, m)).unwrap();
                            live.insert(uid_next, (m, 0));
                            uid_next += 1;
                        }
                    }
                    1 if !live.is_empty() => {
                        let m = ix.next_modseq();
                        for p in 0..ix.len() {
                            if rng.chance(0.3) {
                                let r = ix.record_at(p);
                                let flags = r.flags ^ flag_bits::SEEN;
                                ix.update(p, flags, 0, m);
                                live.insert(r.uid, (m, flags));
                            }
                        }
                    }
                    2 if !live.is_empty() => {
                        let m = ix.next_modseq();
                        let positions: Vec<usize> = (0..ix.len()).filter(|_| rng.chance(0.25)).collect();
                        for &p in &positions {
                            let uid = ix.record_at(p).uid;
                            live.remove(&uid);
                            tombstones.insert(uid, m);
                        }
                        ix.expunge(&positions, m).unwrap();
                    }
                    _ => {
                        let page = pager(&ix, cursor, limit);
                        let changes: Vec<(u64, u32)> = page
                            .changed
                            .iter()
                            .map(|r| (r.modseq, r.uid))
                            .chain(page.vanished.iter().map(|u| (tombstones[u], *u)))
                            .collect();
                        if changes.len() > limit {
                            return Err(format!("{context}: {} changes in a page", changes.len()));
                        }
                        if !page
                            .changed
                            .windows(2)
                            .all(|w| (w[0].modseq, w[0].uid) < (w[1].modseq, w[1].uid))
                        {
                            return Err(format!("{context}: out of order: {page:?}"));
                        }
                        for &(modseq, uid) in &changes {
                            if (modseq, uid) <= cursor.position() || (modseq, uid) > page.next.position() {
                                return Err(format!(
                                    "{context}: UID {uid} at {modseq} outside {cursor:?}..{:?}",
                                    page.next
                                ));
                            }
                            if !returned.insert((uid, modseq)) {
                                return Err(format!(
                                    "{context}: UID {uid} at MODSEQ {modseq} returned twice"
                                ));
                            }
                        }
                        for r in &page.changed {
                            if live.get(&r.uid) != Some(&(r.modseq, r.flags)) {
                                return Err(format!("{context}: UID {} is not in its current state", r.uid));
                            }
                            copy.insert(r.uid, (r.modseq, r.flags));
                        }
                        for uid in &page.vanished {
                            copy.remove(uid);
                        }
                        if page.next.position() < cursor.position() {
                            return Err(format!("{context}: the cursor went back"));
                        }
                        cursor = page.next;
                        if !page.more {
                            if copy != live {
                                return Err(format!("{context}: a change was skipped: the client has {copy:?}, the mailbox {live:?}"));
                            }
                            if cursor != ChangesCursor::since(ix.header().highest_modseq) {
                                return Err(format!("{context}: a last page's next is {cursor:?}"));
                            }
                            if step >= steps {
                                caught_up = true;
                                break;
                            }
                        }
                    }
                }
                assert_eq!(
                    view_of(&ix),
                    live,
                    "{context}: the model disagrees with the index"
                );
            }
            if !caught_up {
                return Err(format!("seed {seed} run {run}: never caught up"));
            }
        }
        Ok(())
    }

    /// The property of [`check_paging`] holds for `changes_page`: 300 random histories from a
    /// printed seed (`DOVETAIL_SEED` replays).
    #[test]
    fn paging_while_writes_go_on_never_skips_or_repeats() {
        let seed = rng::seed("index::changes::paging_while_writes_go_on_never_skips_or_repeats");
        check_paging(seed, 300, |ix, cursor, limit| ix.changes_page(cursor, limit)).unwrap();
    }

    /// The checker is trusted only after it rejects a bad pager: one in UID order with a
    /// "UIDs above u" continuation (what `/messages` does) skips a record changed behind its
    /// cursor, and the check says so.
    #[test]
    fn the_check_catches_a_uid_order_pager() {
        fn uid_order(ix: &MailboxIndex<VecStorage>, cursor: ChangesCursor, limit: usize) -> ChangesPage {
            let after_uid = cursor.after_uid.unwrap_or(0);
            let mut changes: Vec<(u32, Option<Record>)> = ix
                .changed_since(cursor.modseq)
                .into_iter()
                .map(|r| (r.uid, Some(r)))
                .chain(ix.vanished_since(cursor.modseq).into_iter().map(|u| (u, None)))
                .filter(|&(uid, _)| uid > after_uid)
                .collect();
            changes.sort_unstable_by_key(|&(uid, _)| uid);
            let more = changes.len() > limit;
            changes.truncate(limit);
            let next = match changes.last() {
                Some(&(uid, _)) if more => ChangesCursor {
                    modseq: cursor.modseq,
                    after_uid: Some(uid),
                },
                _ => ChangesCursor::since(ix.header().highest_modseq),
            };
            let vanished = changes
                .iter()
                .filter(|(_, r)| r.is_none())
                .map(|&(uid, _)| uid)
                .collect();
            let mut changed: Vec<Record> = changes.into_iter().filter_map(|(_, r)| r).collect();
            changed.sort_unstable_by_key(|r| (r.modseq, r.uid));
            ChangesPage {
                changed,
                vanished,
                more,
                next,
            }
        }
        let seed = rng::seed_or("index::changes::the_check_catches_a_uid_order_pager", 47);
        let error = check_paging(seed, 300, uid_order).unwrap_err();
        assert!(
            error.contains("skipped") || error.contains("twice") || error.contains("outside"),
            "{error}"
        );
    }
}
