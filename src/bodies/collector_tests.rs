//! Property test of the collector (ARCHITECTURE.md §6 invariant 11), over a real [`BodyStore`]
//! and a real [`GroupStateMachine`] in a temporary directory, with a fake clock (each body
//! file's modification time is set to it when the body is put).
//!
//! Random sequences of: deliveries of a new body or of one stored already (single-instance),
//! re-deliveries (a referenced body delivered into another mailbox, put again first), copies and
//! moves of records (`Op::Copy`, `Op::Move`: the copy names the same body, nothing is put, and a
//! move expunges its sources in the same entry), expunges, mailbox deletions and
//! creations, orphans (a body stored whose entry never comes), deliveries in flight (the body
//! stored now, its entry applied later, within the grace: the collector's assumption), crashes
//! (the state machine and the store dropped and opened again from disk, the log replayed after
//! what survived), clock advances and collector passes. A pass takes time: between its steps,
//! work runs beside it as it would on a node — deliveries in flight are applied (those at the
//! end of their grace always), and an old, unreferenced body may be delivered again.
//!
//! Checked after every step: every body a record references is in the store (the references
//! read through the read path, `fetch`, and compared with the collector's own walk,
//! `referenced_bodies`). After every pass also: each referenced body reads back byte-identical;
//! every body unreferenced and last put at least the grace before the pass's listing is gone;
//! every younger one is kept; the store holds nothing else.
//!
//! The check is trusted because it catches three wrong collectors: one that ignores the
//! references, one that takes them before listing, one that deletes without checking the time
//! again. Each run prints its seed: `DOVETAIL_SEED=<seed> cargo test --lib collector_tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::time::{Duration, SystemTime};

use super::collector::{collect_once, cutoff, plan, DEFAULT_GRACE};
use super::store::{BodyId, BodyStore};
use crate::index::LogPosition;
use crate::state_machine::GroupStateMachine;
use crate::txn::{NewMessage, Op, Outcome, Txn, UidSet};

use crate::test_rng as rng;
use rng::Rng;

const USER: &str = "alice";
const MAILBOXES: &[&str] = &["INBOX", "A", "B", "C"];
const GRACE: Duration = DEFAULT_GRACE;
const MINUTE: Duration = Duration::from_secs(60);
/// Distinct contents a delivery picks from: few, so one body is often delivered again.
const CONTENTS: u64 = 12;
const CASES: usize = 24;
const STEPS: usize = 150;

/// Which collector a run uses: the real one, or one of the wrong ones the check must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collector {
    Correct,
    /// Deletes every old body, referenced or not.
    IgnoresReferences,
    /// Takes the references, then lists (and measures ages at the listing).
    ReferencesFirst,
    /// Deletes what the plan says without checking the time again (a put after the listing
    /// goes unseen).
    NoRecheck,
}

/// A delivery whose body is stored and whose entry is not applied yet.
#[derive(Debug, Clone)]
struct InFlight {
    mailbox: &'static str,
    body: BodyId,
    size: u64,
    /// When its body was put: the entry applies by `stored_at + GRACE`.
    stored_at: SystemTime,
}

/// Everything but the store, so a pass can borrow the store while the work beside it changes
/// the rest.
struct Node {
    dir: std::path::PathBuf,
    /// `None` only while a crash swaps it.
    sm: Option<GroupStateMachine>,
    /// The committed log: entry `i` is at index `i + 1`.
    log: Vec<Txn>,
    now: SystemTime,
    /// The bodies the store holds, as the test knows them: bytes and the time of the last put.
    stored: BTreeMap<BodyId, (Vec<u8>, SystemTime)>,
    in_flight: Vec<InFlight>,
    rng: Rng,
    next_guid: u64,
    /// Copies and moves that copied at least one record.
    copies: u64,
}

struct World {
    store: BodyStore,
    node: Node,
    /// Bodies the passes of the real collector deleted, and the candidates they kept because
    /// the bodies were put again after the listing.
    removed: u64,
    refreshed: u64,
    _dir: tempfile::TempDir,
}

fn content(k: u64) -> Vec<u8> {
    let mut rng = Rng::new(k.wrapping_mul(0x9e37_79b9) + 1);
    let len = rng.range(1, 3000);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn set_time(store: &BodyStore, id: &BodyId, at: SystemTime) {
    File::options()
        .write(true)
        .open(store.path_of(id))
        .and_then(|f| f.set_modified(at))
        .unwrap();
}

impl Node {
    fn sm(&self) -> &GroupStateMachine {
        self.sm.as_ref().expect("open")
    }

    fn guid(&mut self) -> [u8; 16] {
        self.next_guid += 1;
        let mut guid = [0x5a; 16];
        guid[..8].copy_from_slice(&self.next_guid.to_le_bytes());
        guid
    }

    fn apply(&mut self, op: Op) -> Outcome {
        let index = self.log.len() as u64 + 1;
        let txn = Txn {
            client_id: "collector-test".into(),
            request_seq: index,
            op,
        };
        self.log.push(txn.clone());
        let sm = self.sm.as_mut().expect("open");
        sm.apply(LogPosition::new(1, index), &txn)
            .unwrap()
            .expect("a fresh position")
    }

    /// Stores `bytes` at the fake now, as a delivery or a transfer would.
    fn put(&mut self, store: &BodyStore, bytes: Vec<u8>) -> (BodyId, u64) {
        let stored = store.put(&mut &bytes[..], 1 << 20, None).unwrap();
        set_time(store, &stored.id, self.now);
        self.stored.insert(stored.id, (bytes, self.now));
        (stored.id, stored.size)
    }

    fn deliver(&mut self, mailbox: &str, body: BodyId, size: u64) -> Outcome {
        let guid = self.guid();
        self.apply(Op::Deliver {
            user: USER.into(),
            mailbox: mailbox.into(),
            messages: vec![NewMessage {
                guid,
                size,
                internal_date: 0,
                flags: vec![],
            }],
            bodies: vec![body.0],
        })
    }

    /// Applies (or, now and then, abandons: an orphan) every delivery in flight whose grace
    /// ends by `until`, and the others with probability `others`.
    fn settle_in_flight(&mut self, until: SystemTime, others: f64) {
        let in_flight = std::mem::take(&mut self.in_flight);
        for delivery in in_flight {
            let due = delivery.stored_at + GRACE <= until;
            if due || self.rng.chance(others) {
                if !self.rng.chance(0.15) {
                    self.deliver(delivery.mailbox, delivery.body, delivery.size);
                }
            } else {
                self.in_flight.push(delivery);
            }
        }
    }

    /// The work beside a pass, between its steps: time passes, deliveries in flight apply (all
    /// those whose grace ends meanwhile), an old body may be delivered again.
    fn beside_a_pass(&mut self, store: &BodyStore, until: SystemTime) {
        if self.rng.chance(0.4) {
            let old: Vec<BodyId> = self
                .stored
                .iter()
                .filter(|(_, (_, at))| *at + GRACE <= self.now)
                .map(|(id, _)| *id)
                .collect();
            if !old.is_empty() {
                let id = *self.rng.pick(&old);
                self.now = until;
                let bytes = self.stored[&id].0.clone();
                let (body, size) = self.put(store, bytes);
                let mailbox = *self.rng.pick(MAILBOXES);
                self.in_flight.push(InFlight {
                    mailbox,
                    body,
                    size,
                    stored_at: self.now,
                });
            }
        }
        self.now = until;
        self.settle_in_flight(until, 0.3);
    }

    /// The bodies the applied index references, read through the read path; a difference from
    /// the collector's walk (`referenced_bodies`) is a violation too.
    fn references(&self) -> Result<BTreeSet<BodyId>, String> {
        let state = self.sm().state();
        let mut read = BTreeSet::new();
        for mailbox in state.list_mailboxes(USER) {
            let messages = state.fetch(USER, &mailbox.name, 1, u32::MAX, usize::MAX).unwrap();
            read.extend(messages.iter().filter_map(|m| m.body.map(BodyId)));
        }
        let walked = self.sm().referenced_bodies();
        if walked != read {
            return Err(format!(
                "referenced_bodies {walked:?} differs from the bodies read {read:?}"
            ));
        }
        Ok(read)
    }

    /// The drop of both and their opening from disk, the log replayed after what survived.
    fn crash(&mut self, store: &mut BodyStore) {
        match self.rng.below(3) {
            0 => self.sm.as_mut().unwrap().flush().unwrap(),
            1 => drop(self.sm.as_mut().unwrap().checkpoint().unwrap()),
            _ => {}
        }
        self.sm = None;
        let mut sm = GroupStateMachine::open(&self.dir.join("group")).unwrap();
        let applied = sm.applied().map_or(0, |p| p.index) as usize;
        for (i, txn) in self.log.iter().enumerate().skip(applied) {
            sm.apply(LogPosition::new(1, i as u64 + 1), txn).unwrap();
        }
        self.sm = Some(sm);
        *store = BodyStore::open(self.dir.join("blobs")).unwrap();
    }
}

impl World {
    fn new(seed: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path().join("blobs")).unwrap();
        let sm = GroupStateMachine::open(&dir.path().join("group")).unwrap();
        let mut node = Node {
            dir: dir.path().to_path_buf(),
            sm: Some(sm),
            log: Vec::new(),
            now: SystemTime::now(),
            stored: BTreeMap::new(),
            in_flight: Vec::new(),
            rng: Rng::new(seed),
            next_guid: 0,
            copies: 0,
        };
        node.apply(Op::SetEncoding {
            version: crate::txn::encoding::CURRENT_ENCODING,
        });
        for mailbox in &MAILBOXES[..2] {
            node.apply(create(mailbox, node.next_guid + 1000));
            node.next_guid += 1;
        }
        World {
            store,
            node,
            removed: 0,
            refreshed: 0,
            _dir: dir,
        }
    }

    /// One random step; a violation found after it is returned.
    fn step(&mut self, collector: Collector) -> Result<(), String> {
        let choice = self.node.rng.below(100);
        if (68..=70).contains(&choice) {
            self.node.crash(&mut self.store);
        }
        let (node, store) = (&mut self.node, &self.store);
        match choice {
            // A delivery of a body, new or stored already (single-instance), applied now.
            0..=24 => {
                let bytes = content(node.rng.below(CONTENTS));
                let (body, size) = node.put(store, bytes);
                let mailbox = *node.rng.pick(MAILBOXES);
                node.deliver(mailbox, body, size);
            }
            // A delivery in flight: stored now, applied later (within the grace).
            25..=32 => {
                let bytes = content(node.rng.below(CONTENTS));
                let (body, size) = node.put(store, bytes);
                let mailbox = *node.rng.pick(MAILBOXES);
                let stored_at = node.now;
                node.in_flight.push(InFlight {
                    mailbox,
                    body,
                    size,
                    stored_at,
                });
            }
            // A re-delivery: a referenced body delivered into another mailbox (put again
            // first, as the delivery path does on every node that stores it).
            33..=35 => {
                let referenced: Vec<BodyId> = node.references()?.into_iter().collect();
                if !referenced.is_empty() {
                    let id = *node.rng.pick(&referenced);
                    let bytes = node.stored[&id].0.clone();
                    let (body, size) = node.put(store, bytes);
                    let mailbox = *node.rng.pick(MAILBOXES);
                    node.deliver(mailbox, body, size);
                }
            }
            // A copy or a move of some of a mailbox's records into another (or, for a copy,
            // the same) mailbox: the copies name the same bodies and nothing is put, so a
            // body's only reference may now be a copy, its source expunged in the same entry.
            36..=40 => {
                let from = *node.rng.pick(MAILBOXES);
                let to = *node.rng.pick(MAILBOXES);
                let moving = from != to && node.rng.chance(0.5);
                let uids: Vec<u32> = match node.sm().state().fetch(USER, from, 1, u32::MAX, usize::MAX) {
                    Ok(messages) => messages.iter().map(|m| m.uid).collect(),
                    Err(_) => Vec::new(),
                };
                let mut chosen: Vec<u32> = uids.into_iter().filter(|_| node.rng.chance(0.5)).collect();
                // Now and then a UID the source does not have: skipped.
                chosen.push(10_000);
                let uids = UidSet::from_ascending(chosen);
                let (from, to) = (from.to_string(), to.to_string());
                let op = if moving {
                    Op::Move {
                        user: USER.into(),
                        from,
                        to,
                        uids,
                    }
                } else {
                    Op::Copy {
                        user: USER.into(),
                        from,
                        to,
                        uids,
                    }
                };
                let outcome = node.apply(op);
                if !matches!(
                    outcome,
                    Outcome::Copied { .. }
                        | Outcome::Moved { .. }
                        | Outcome::Rejected(crate::txn::Rejection::NoSuchMailbox { .. })
                ) {
                    return Err(format!("a copy or move was answered {outcome:?}"));
                }
                if matches!(
                    outcome,
                    Outcome::Copied { modseq: Some(_), .. } | Outcome::Moved { modseq: Some(_), .. }
                ) {
                    node.copies += 1;
                }
            }
            // An expunge of some of a mailbox's messages.
            41..=52 => {
                let mailbox = *node.rng.pick(MAILBOXES);
                let uids: Vec<u32> = match node.sm().state().fetch(USER, mailbox, 1, u32::MAX, usize::MAX) {
                    Ok(messages) => messages.iter().map(|m| m.uid).collect(),
                    Err(_) => Vec::new(),
                };
                let chosen: Vec<u32> = uids.into_iter().filter(|_| node.rng.chance(0.4)).collect();
                if !chosen.is_empty() {
                    node.apply(Op::Expunge {
                        user: USER.into(),
                        mailbox: mailbox.into(),
                        uids: UidSet::from_ascending(chosen),
                        expected_guids: vec![],
                    });
                }
            }
            53..=55 => {
                let mailbox = *node.rng.pick(MAILBOXES);
                node.apply(Op::DeleteMailbox {
                    user: USER.into(),
                    mailbox: mailbox.into(),
                });
            }
            56..=61 => {
                let mailbox = *node.rng.pick(MAILBOXES);
                let guid = node.next_guid + 1000;
                node.next_guid += 1;
                node.apply(create(mailbox, guid));
            }
            // An orphan: a body stored whose entry never comes.
            62..=67 => {
                let bytes = content(node.rng.below(CONTENTS * 2));
                node.put(store, bytes);
            }
            68..=70 => {} // the crash, above
            71..=80 => {
                let until = node.now + MINUTE * node.rng.range(1, 90) as u32;
                node.settle_in_flight(until, 0.0);
                node.now = until;
            }
            81..=85 => node.settle_in_flight(node.now, 0.5),
            _ => return self.pass(collector),
        }
        self.node.references()?.iter().try_for_each(|id| {
            if self.store.has(id) {
                Ok(())
            } else {
                Err(format!("referenced body {id} is not in the store"))
            }
        })
    }

    /// A collector pass by `collector`, the work beside it, and the checks after it.
    fn pass(&mut self, collector: Collector) -> Result<(), String> {
        let (node, store) = (&mut self.node, &self.store);
        let start = node.now;
        let until = start + MINUTE * node.rng.below(31) as u32;
        // The time the pass measures ages at: its listing's.
        let listed_at = match collector {
            Collector::Correct => {
                let report = collect_once(
                    store,
                    || {
                        node.beside_a_pass(store, until);
                        node.sm().referenced_bodies()
                    },
                    start,
                    GRACE,
                )
                .unwrap();
                self.removed += report.removed;
                self.refreshed += report.refreshed;
                start
            }
            Collector::IgnoresReferences => {
                collect_once(
                    store,
                    || {
                        node.beside_a_pass(store, until);
                        BTreeSet::new()
                    },
                    start,
                    GRACE,
                )
                .unwrap();
                start
            }
            Collector::ReferencesFirst => {
                let referenced = node.sm().referenced_bodies();
                node.beside_a_pass(store, until);
                let listed = store.list().unwrap();
                for id in plan(&listed, &referenced, until, GRACE) {
                    store.remove_if_stale(&id, cutoff(until, GRACE).unwrap()).unwrap();
                }
                until
            }
            Collector::NoRecheck => {
                let listed = store.list().unwrap();
                node.beside_a_pass(store, until);
                let referenced = node.sm().referenced_bodies();
                for id in plan(&listed, &referenced, start, GRACE) {
                    store.remove(&id).unwrap();
                }
                start
            }
        };
        self.check_after_pass(listed_at)
    }

    fn check_after_pass(&mut self, listed_at: SystemTime) -> Result<(), String> {
        let referenced = self.node.references()?;
        for id in &referenced {
            let mut bytes = Vec::new();
            match self.store.read(id) {
                Ok(Some(mut file)) => drop(file.read_to_end(&mut bytes)),
                Ok(None) => return Err(format!("referenced body {id} was deleted")),
                Err(e) => return Err(format!("referenced body {id}: {e}")),
            }
            if bytes != self.node.stored[id].0 {
                return Err(format!("referenced body {id} reads back other bytes"));
            }
        }
        let cutoff = cutoff(listed_at, GRACE).unwrap();
        let mut gone = Vec::new();
        for (id, (_, last_put)) in &self.node.stored {
            let present = self.store.has(id);
            if referenced.contains(id) {
                continue;
            }
            if *last_put <= cutoff {
                if present {
                    return Err(format!(
                        "body {id}, unreferenced, put last {:?} before the listing, was kept",
                        listed_at.duration_since(*last_put).unwrap()
                    ));
                }
                gone.push(*id);
            } else if !present {
                return Err(format!("body {id}, within its grace, was deleted"));
            }
        }
        for id in gone {
            self.node.stored.remove(&id);
        }
        let listed: BTreeSet<BodyId> = self
            .store
            .list()
            .unwrap()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        let known: BTreeSet<BodyId> = self.node.stored.keys().copied().collect();
        if listed != known {
            return Err(format!("the store holds {listed:?}, expected {known:?}"));
        }
        Ok(())
    }
}

fn create(mailbox: &str, guid: u64) -> Op {
    let mut mailbox_guid = [0xc3; 16];
    mailbox_guid[..8].copy_from_slice(&guid.to_le_bytes());
    Op::CreateMailbox {
        user: USER.into(),
        mailbox: mailbox.into(),
        mailbox_guid,
        uid_validity: 1,
    }
}

/// Runs `STEPS` random steps from `seed` with `collector`: bodies deleted, candidates kept as
/// put again, entries applied; or the first violation, with its step.
fn run(seed: u64, collector: Collector) -> Result<[u64; 4], String> {
    let mut world = World::new(seed);
    for step in 0..STEPS {
        world.step(collector).map_err(|e| format!("step {step}: {e}"))?;
    }
    Ok([
        world.removed,
        world.refreshed,
        world.node.log.len() as u64,
        world.node.copies,
    ])
}

#[test]
fn no_referenced_body_is_deleted_and_every_stale_one_is() {
    let mut seeds = Rng::new(rng::seed(
        "collector_tests::no_referenced_body_is_deleted_and_every_stale_one_is",
    ));
    let mut totals = [0u64; 4];
    for case in 0..CASES {
        let seed = seeds.next_u64();
        match run(seed, Collector::Correct) {
            Ok(counts) => (0..4).for_each(|i| totals[i] += counts[i]),
            Err(e) => panic!("case {case} (case seed {seed}): {e}"),
        }
    }
    let [removed, refreshed, entries, copies] = totals;
    eprintln!("{CASES} cases of {STEPS} steps: {entries} entries, {copies} copies and moves, {removed} bodies deleted, {refreshed} kept as put again after the listing");
    assert!(
        copies >= CASES as u64,
        "only {copies} copies and moves copied anything"
    );
    // The sequences must exercise what they check: bodies deleted, the re-check at the
    // deletion used, entries applied.
    assert!(removed >= CASES as u64, "only {removed} bodies deleted");
    assert!(refreshed >= 1, "no pass kept a body put again after its listing");
    assert!(entries >= (CASES * STEPS / 3) as u64, "only {entries} entries");
}

/// Each wrong collector is caught within a few cases.
#[test]
fn the_check_catches_wrong_collectors() {
    let mut seeds = Rng::new(rng::seed("collector_tests::the_check_catches_wrong_collectors"));
    for collector in [
        Collector::IgnoresReferences,
        Collector::ReferencesFirst,
        Collector::NoRecheck,
    ] {
        let caught = (0..4 * CASES).find_map(|_| run(seeds.next_u64(), collector).err());
        let Some(violation) = caught else {
            panic!("{collector:?} was never caught in {} cases", 4 * CASES)
        };
        eprintln!("{collector:?} caught: {violation}");
    }
}
