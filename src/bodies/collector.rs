//! The collector: deletes the bodies that no record of this node's applied index references,
//! once they are at least the grace period old ([`DEFAULT_GRACE`], `--body-gc-grace`); never a
//! referenced one.
//!
//! A body is stored before the entry that names it is proposed (a delivery pushes it to a
//! majority first), so at any moment the store holds bodies that nothing references *yet*:
//! deliveries in flight, entries committed but not applied here. A body that never gets its
//! entry (a crash, a rejected append) is an orphan. The grace period tells them apart: a body's
//! age is that of its file's modification time, which [`BodyStore::put`] sets on every store,
//! also of a body already present (a re-delivery or COPY of an old, unreferenced body starts
//! its grace again).
//!
//! One pass ([`collect_once`]) is three steps, in this order:
//! 1. **list** the store (each body with its size and modification time), at `now`;
//! 2. take the **referenced** set: every body a record of every group's applied index names
//!    (`GroupState::referenced_bodies`, each group read under its lock);
//! 3. delete each listed body that is unreferenced and was modified at or before `now - grace`
//!    ([`plan`], pure), re-checking its time at the deletion ([`BodyStore::remove_if_stale`]).
//!
//! Why the order is safe, under one **assumption: an entry that names a body is applied on this
//! node within the grace period of that body's last `put` here** (1 h by default, against
//! seconds for a delivery in flight; a node cut off for longer may lose its copy of a body
//! delivered meanwhile and fetches it from a replica on the first read). Take a body B deleted
//! by a pass listed at `T`. B's last put before the listing was at or before `T - grace`, so by
//! the assumption every entry naming B from that put was applied by `T`, before step 2: had one
//! left a record, B would be referenced. A put after the listing refreshes B's time, which the
//! check at the deletion sees (it holds the lock `put` holds to refresh), so B is kept. Taking
//! the references first would be wrong: an entry applied between the two steps, at the end of
//! its body's grace, leaves a body that is referenced, yet old when listed.
//!
//! A node therefore runs its first pass only once its groups have replayed their logs after a
//! start (entries committed before a crash are applied again then), and none while a group is
//! stopped on this node (an apply error): its entries no longer apply, so the assumption fails.
//!
//! The references are the applied index only: an expunged message has no record left and a
//! deleted mailbox no index, so their bodies are collected once old; a body copied to another
//! mailbox is referenced by the copy.
//!
//! A copy or a move (`Op::Copy`, `Op::Move`, log encoding 4) puts nothing and names no body in
//! its entry: it copies records, body ids included, that the applied index holds when it is
//! applied. So it needs no assumption of its own: a body unreferenced at step 2 is named by no
//! applied record, and a later copy can only copy a record that some later-applied delivery
//! made, which the assumption above already covers. A move's copy and expunge are one entry,
//! applied under the group's lock, so step 2 sees the reference on one side or the other.
//!
//! Tests: [`plan`] and [`collect_once`] below; the property test over random deliveries,
//! copies, expunges, deletions, orphans, crashes and passes is `collector_tests.rs`
//! (ARCHITECTURE.md §6 invariant 11).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::store::{BodyError, BodyId, BodyStore, Removal};

/// The default grace period (`--body-gc-grace`): how old an unreferenced body must be before it
/// is deleted. It covers deliveries in flight and entries not yet applied (see the module doc).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Bodies in the store when it was listed, and their bytes.
    pub listed: u64,
    pub listed_bytes: u64,
    /// Listed bodies that a record references.
    pub referenced: u64,
    /// Bodies deleted, and their bytes.
    pub removed: u64,
    pub removed_bytes: u64,
    /// Candidates kept because they were put again after the listing.
    pub refreshed: u64,
    /// Candidates already gone at the deletion.
    pub absent: u64,
}

/// The latest modification time a body may have and still be deleted at `now`: `None` when
/// `now` is less than `grace` after the epoch (nothing is old enough).
pub fn cutoff(now: SystemTime, grace: Duration) -> Option<SystemTime> {
    now.checked_sub(grace)
}

/// The listed bodies to delete: those not in `referenced` and modified at or before
/// `now - grace` (a time after `now`, a clock step back, is young). Pure.
pub fn plan(
    listed: &[(BodyId, u64, SystemTime)],
    referenced: &BTreeSet<BodyId>,
    now: SystemTime,
    grace: Duration,
) -> Vec<BodyId> {
    let Some(cutoff) = cutoff(now, grace) else {
        return Vec::new();
    };
    listed
        .iter()
        .filter(|(id, _, modified)| *modified <= cutoff && !referenced.contains(id))
        .map(|(id, _, _)| *id)
        .collect()
}

/// One pass over `store`: lists it, then calls `referenced` for the bodies every group's applied
/// index names, then deletes the listed bodies [`plan`] picks, each only if still unmodified
/// since `now - grace`. `now` is the time of the listing: take it just before the call.
///
/// The order of the steps is what makes a pass safe against deliveries running beside it (see
/// the module doc); `referenced` must see each group's applied state as of some moment after
/// the listing began.
pub fn collect_once(
    store: &BodyStore,
    referenced: impl FnOnce() -> BTreeSet<BodyId>,
    now: SystemTime,
    grace: Duration,
) -> Result<CollectReport, BodyError> {
    let listed = store.list()?;
    let referenced = referenced();
    let doomed = plan(&listed, &referenced, now, grace);
    let mut report = CollectReport {
        listed: listed.len() as u64,
        listed_bytes: listed.iter().map(|(_, size, _)| size).sum(),
        referenced: listed.iter().filter(|(id, _, _)| referenced.contains(id)).count() as u64,
        ..CollectReport::default()
    };
    let Some(cutoff) = cutoff(now, grace) else {
        debug_assert!(doomed.is_empty(), "a plan with no cutoff deletes nothing");
        return Ok(report);
    };
    for id in &doomed {
        debug_assert!(
            !referenced.contains(id),
            "invariant: a referenced body is never deleted"
        );
        match store.remove_if_stale(id, cutoff)? {
            Removal::Removed { bytes } => {
                report.removed += 1;
                report.removed_bytes += bytes;
            }
            Removal::Fresh => report.refreshed += 1,
            Removal::Absent => report.absent += 1,
        }
    }
    if report.removed > 0 {
        tracing::info!(
            removed = report.removed,
            removed_bytes = report.removed_bytes,
            listed = report.listed,
            referenced = report.referenced,
            grace_s = grace.as_secs(),
            "collected unreferenced bodies"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn id(n: u8) -> BodyId {
        BodyId([n; 16])
    }

    #[test]
    fn plan_deletes_only_the_old_and_unreferenced() {
        let now = SystemTime::UNIX_EPOCH + 100 * HOUR;
        let listed = [
            (id(1), 10, now - 2 * HOUR),                      // old, unreferenced: deleted
            (id(2), 10, now - 2 * HOUR),                      // old, referenced: kept
            (id(3), 10, now - HOUR / 2),                      // young, unreferenced: kept
            (id(4), 10, now - HOUR),                          // exactly the grace old: deleted
            (id(5), 10, now - HOUR + Duration::from_secs(1)), // a second short: kept
            (id(6), 10, now + HOUR),                          // in the future (clock step): kept
        ];
        let referenced = BTreeSet::from([id(2), id(9)]);
        assert_eq!(plan(&listed, &referenced, now, HOUR), vec![id(1), id(4)]);
        assert_eq!(plan(&listed, &referenced, now, 3 * HOUR), vec![]);
        assert_eq!(plan(&[], &referenced, now, HOUR), vec![]);
    }

    #[test]
    fn plan_before_the_epoch_plus_grace_deletes_nothing() {
        let listed = [(id(1), 1, SystemTime::UNIX_EPOCH)];
        assert_eq!(
            plan(&listed, &BTreeSet::new(), SystemTime::UNIX_EPOCH, HOUR),
            vec![]
        );
    }

    /// Over a real store: the references are taken after the listing (a body referenced by then
    /// is kept although old when listed), and a body put again after the listing is kept.
    #[test]
    fn collect_once_lists_then_references_then_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path()).unwrap();
        let put = |bytes: &[u8], modified: SystemTime| {
            let stored = store.put(&mut &bytes[..], 1 << 20, None).unwrap();
            std::fs::File::options()
                .write(true)
                .open(store.path_of(&stored.id))
                .unwrap()
                .set_modified(modified)
                .unwrap();
            stored.id
        };
        let now = SystemTime::now();
        let orphan = put(b"orphan", now - 2 * HOUR);
        let referenced = put(b"referenced", now - 2 * HOUR);
        let applied_meanwhile = put(b"applied meanwhile", now - 2 * HOUR);
        let put_again = put(b"put again", now - 2 * HOUR);
        let young = put(b"young", now - HOUR / 2);
        let report = collect_once(
            &store,
            || {
                // Beside the pass, after its listing: one entry is applied, one body put again.
                put(b"put again", now);
                BTreeSet::from([referenced, applied_meanwhile])
            },
            now,
            HOUR,
        )
        .unwrap();
        assert!(!store.has(&orphan));
        for kept in [referenced, applied_meanwhile, put_again, young] {
            assert!(store.has(&kept), "{kept} kept");
        }
        assert_eq!(
            report,
            CollectReport {
                listed: 5,
                listed_bytes: (6 + 10 + 17 + 9 + 5),
                referenced: 2,
                removed: 1,
                removed_bytes: 6,
                refreshed: 1,
                absent: 0,
            }
        );
    }
}
