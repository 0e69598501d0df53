//! Property tests: random transaction sequences applied to the state machine and to a plain
//! reference model (`BTreeMap`s, no index files) must agree on every outcome and every read;
//! two replicas — in memory and on disk — must end byte-identical; and ARCHITECTURE.md §6 invariants
//! 1, 2, 3, 5 and 6 must hold after every step. Failing cases shrink and print their input;
//! proptest records failing seeds beside this file for replay. Each run draws its cases from a
//! printed seed (`tests/support/rng.rs`): `DOVETAIL_SEED=<seed> cargo test -p dovetail --lib
//! model_tests` replays it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

use super::{GroupState, GroupStateMachine, MemoryFiles};
use crate::index::{flag_bits, LogPosition};
use crate::txn::validate::{canonical_mailbox_name, parse_flags, validate_in};
use crate::txn::{Guid, NewMessage, Op, Outcome, Rejection, StoreMode, Txn, UidMap, UidSet};

use crate::test_rng as rng;

const USERS: &[&str] = &["alice", "bob"];
const NAMES: &[&str] = &["INBOX", "inbox", "A", "A/B", "A/B/C", "B", "INBOX/x", "Été"];
const FLAGS: &[&str] = &[
    "\\Seen",
    "\\Answered",
    "\\Flagged",
    "\\Deleted",
    "\\Draft",
    "$Junk",
    "$junk",
    "Work",
];

// ---------------------------------------------------------------------------------------------
// The reference model: the same semantics, written as plainly as possible.

#[derive(Debug, Clone)]
struct ModelMessage {
    flags: u8,
    /// Keyword positions in the mailbox's table.
    keywords: BTreeSet<usize>,
    modseq: u64,
    guid: Guid,
    size: u64,
    date: i64,
    /// The body id a delivery gave it.
    body: Option<Guid>,
}

#[derive(Debug, Clone)]
struct ModelMailbox {
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    keywords: Vec<String>,
    messages: BTreeMap<u32, ModelMessage>,
    /// (uid, modseq) of every expunge.
    vanished: Vec<(u32, u64)>,
}

impl ModelMailbox {
    fn keyword(&self, name: &str) -> Option<usize> {
        self.keywords.iter().position(|k| k.eq_ignore_ascii_case(name))
    }

    /// Registers keywords if they fit; false if the table would overflow.
    fn register(&mut self, names: &[String]) -> bool {
        let mut new: Vec<&String> = Vec::new();
        for n in names {
            if self.keyword(n).is_none() && !new.iter().any(|x| x.eq_ignore_ascii_case(n)) {
                new.push(n);
            }
        }
        if self.keywords.len() + new.len() > 128 {
            return false;
        }
        self.keywords.extend(new.into_iter().cloned());
        true
    }
}

#[derive(Debug, Default)]
struct Model {
    users: BTreeMap<String, BTreeMap<String, Guid>>,
    boxes: BTreeMap<Guid, ModelMailbox>,
    uid_validity_max: u32,
    sessions: BTreeMap<String, (u64, Outcome)>,
    encoding: u8,
    /// user -> subscribed names (canonical).
    subscriptions: BTreeMap<String, BTreeSet<String>>,
}

impl Model {
    fn apply(&mut self, txn: &Txn) -> Outcome {
        if let Some((seq, outcome)) = self.sessions.get(&txn.client_id) {
            if txn.request_seq == *seq {
                return outcome.clone();
            }
            if txn.request_seq < *seq {
                return Outcome::Rejected(Rejection::StaleRequest {
                    request_seq: txn.request_seq,
                    last_seq: *seq,
                });
            }
        }
        let outcome = match validate_in(txn, self.encoding) {
            Err(e) => Outcome::Rejected(Rejection::Invalid {
                message: e.to_string(),
            }),
            Ok(()) => self.apply_op(&txn.op),
        };
        self.sessions
            .insert(txn.client_id.clone(), (txn.request_seq, outcome.clone()));
        outcome
    }

    fn guid_of(&self, user: &str, name: &str) -> Option<Guid> {
        self.users.get(user)?.get(&canonical_mailbox_name(name)).copied()
    }

    fn apply_op(&mut self, op: &Op) -> Outcome {
        let no_such = |name: &str| {
            Outcome::Rejected(Rejection::NoSuchMailbox {
                mailbox: canonical_mailbox_name(name),
            })
        };
        match op {
            Op::CreateMailbox {
                user,
                mailbox,
                mailbox_guid,
                uid_validity,
            } => {
                let name = canonical_mailbox_name(mailbox);
                if self.guid_of(user, &name).is_some() {
                    return Outcome::Rejected(Rejection::MailboxExists { mailbox: name });
                }
                if self.boxes.contains_key(mailbox_guid) {
                    return Outcome::Rejected(Rejection::Invalid {
                        message: format!(
                            "mailbox GUID {} is already in use",
                            super::apply::hex(mailbox_guid)
                        ),
                    });
                }
                let uid_validity = (*uid_validity).max(self.uid_validity_max + 1);
                self.uid_validity_max = uid_validity;
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(name, *mailbox_guid);
                self.boxes.insert(
                    *mailbox_guid,
                    ModelMailbox {
                        uid_validity,
                        uid_next: 1,
                        highest_modseq: 1,
                        keywords: Vec::new(),
                        messages: BTreeMap::new(),
                        vanished: Vec::new(),
                    },
                );
                Outcome::Created {
                    mailbox_guid: *mailbox_guid,
                    uid_validity,
                }
            }
            Op::RenameMailbox { user, from, to } => {
                let (from, to) = (canonical_mailbox_name(from), canonical_mailbox_name(to));
                let Some(boxes) = self.users.get_mut(user) else {
                    return no_such(&from);
                };
                if !boxes.contains_key(&from) {
                    return no_such(&from);
                }
                if to.starts_with(&format!("{from}/")) {
                    return Outcome::Rejected(Rejection::RenameIntoSelf { from, to });
                }
                let sources: Vec<String> = boxes
                    .keys()
                    .filter(|n| **n == from || n.starts_with(&format!("{from}/")))
                    .cloned()
                    .collect();
                for s in &sources {
                    let target = format!("{to}{}", &s[from.len()..]);
                    if boxes.contains_key(&target) {
                        return Outcome::Rejected(Rejection::MailboxExists { mailbox: target });
                    }
                    if let Err(e) = crate::txn::validate::check_mailbox_name(&target) {
                        return Outcome::Rejected(Rejection::Invalid {
                            message: e.to_string(),
                        });
                    }
                }
                let moved: Vec<(String, Guid)> = sources
                    .iter()
                    .map(|s| (format!("{to}{}", &s[from.len()..]), boxes.remove(s).unwrap()))
                    .collect();
                boxes.extend(moved);
                Outcome::Renamed {
                    mailboxes: sources.len() as u32,
                }
            }
            Op::DeleteMailbox { user, mailbox } => {
                let name = canonical_mailbox_name(mailbox);
                let Some(guid) = self.guid_of(user, &name) else {
                    return no_such(&name);
                };
                let boxes = self.users.get_mut(user).unwrap();
                if boxes.keys().any(|n| n.starts_with(&format!("{name}/"))) {
                    return Outcome::Rejected(Rejection::HasChildren { mailbox: name });
                }
                boxes.remove(&name);
                if boxes.is_empty() {
                    self.users.remove(user);
                }
                self.boxes.remove(&guid);
                Outcome::Deleted { mailbox_guid: guid }
            }
            Op::Append {
                user,
                mailbox,
                messages,
            }
            | Op::Deliver {
                user,
                mailbox,
                messages,
                ..
            } => {
                let Some(guid) = self.guid_of(user, mailbox) else {
                    return no_such(mailbox);
                };
                let b = self.boxes.get_mut(&guid).unwrap();
                let parsed: Vec<_> = messages.iter().map(|m| parse_flags(&m.flags).unwrap()).collect();
                let all: Vec<String> = parsed.iter().flat_map(|p| p.keywords.clone()).collect();
                if !b.register(&all) {
                    return Outcome::Rejected(Rejection::KeywordLimit { max: 128 });
                }
                b.highest_modseq += 1;
                let first_uid = b.uid_next;
                let bodies: Vec<Option<Guid>> = match op {
                    Op::Deliver { bodies, .. } => bodies.iter().copied().map(Some).collect(),
                    _ => vec![None; messages.len()],
                };
                for ((m, p), body) in messages.iter().zip(&parsed).zip(bodies) {
                    let keywords = p.keywords.iter().map(|k| b.keyword(k).unwrap()).collect();
                    b.messages.insert(
                        b.uid_next,
                        ModelMessage {
                            flags: p.system,
                            keywords,
                            modseq: b.highest_modseq,
                            guid: m.guid,
                            size: m.size,
                            date: m.internal_date,
                            body,
                        },
                    );
                    b.uid_next += 1;
                }
                Outcome::Appended {
                    uid_validity: b.uid_validity,
                    first_uid,
                    last_uid: b.uid_next - 1,
                    modseq: b.highest_modseq,
                }
            }
            Op::Store {
                user,
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let Some(guid) = self.guid_of(user, mailbox) else {
                    return no_such(mailbox);
                };
                let b = self.boxes.get_mut(&guid).unwrap();
                let p = parse_flags(flags).unwrap();
                if *mode != StoreMode::Remove && !b.register(&p.keywords) {
                    return Outcome::Rejected(Rejection::KeywordLimit { max: 128 });
                }
                let given: BTreeSet<usize> = p.keywords.iter().filter_map(|k| b.keyword(k)).collect();
                let mut modified = Vec::new();
                let mut changes = Vec::new();
                for (&uid, m) in &b.messages {
                    if !uids.contains(uid) {
                        continue;
                    }
                    if unchanged_since.is_some_and(|u| m.modseq > u) {
                        modified.push(uid);
                        continue;
                    }
                    let (f, k): (u8, BTreeSet<usize>) = match mode {
                        StoreMode::Add => (m.flags | p.system, m.keywords.union(&given).copied().collect()),
                        StoreMode::Remove => (
                            m.flags & !p.system,
                            m.keywords.difference(&given).copied().collect(),
                        ),
                        StoreMode::Replace => (p.system, given.clone()),
                    };
                    if f != m.flags || k != m.keywords {
                        changes.push((uid, f, k));
                    }
                }
                let modseq = if changes.is_empty() {
                    None
                } else {
                    b.highest_modseq += 1;
                    Some(b.highest_modseq)
                };
                let changed = UidSet::from_ascending(changes.iter().map(|c| c.0));
                for (uid, f, k) in changes {
                    let m = b.messages.get_mut(&uid).unwrap();
                    m.flags = f;
                    m.keywords = k;
                    m.modseq = modseq.unwrap();
                }
                Outcome::Stored {
                    modseq,
                    changed,
                    modified: UidSet::from_ascending(modified),
                }
            }
            Op::Expunge {
                user,
                mailbox,
                uids,
                expected_guids,
            } => {
                let Some(guid) = self.guid_of(user, mailbox) else {
                    return no_such(mailbox);
                };
                let b = self.boxes.get_mut(&guid).unwrap();
                let guards: BTreeMap<u32, Guid> = expected_guids.iter().copied().collect();
                let (mut gone, mut mismatch) = (Vec::new(), Vec::new());
                for (&uid, m) in &b.messages {
                    if !uids.contains(uid) {
                        continue;
                    }
                    match guards.get(&uid) {
                        Some(g) if *g != m.guid => mismatch.push(uid),
                        _ => gone.push(uid),
                    }
                }
                let modseq = if gone.is_empty() {
                    None
                } else {
                    b.highest_modseq += 1;
                    Some(b.highest_modseq)
                };
                for &uid in &gone {
                    b.messages.remove(&uid);
                    b.vanished.push((uid, modseq.unwrap()));
                }
                Outcome::Expunged {
                    modseq,
                    expunged: UidSet::from_ascending(gone),
                    guid_mismatch: UidSet::from_ascending(mismatch),
                }
            }
            Op::SetEncoding { version } => {
                self.encoding = self.encoding.max(*version);
                Outcome::EncodingSet {
                    encoding: self.encoding,
                }
            }
            Op::Probe { .. } => Outcome::Probed,
            Op::Copy { user, from, to, uids } | Op::Move { user, from, to, uids } => {
                let moving = matches!(op, Op::Move { .. });
                let Some(source_guid) = self.guid_of(user, from) else {
                    return no_such(from);
                };
                let Some(target_guid) = self.guid_of(user, to) else {
                    return no_such(to);
                };
                let source = &self.boxes[&source_guid];
                // (uid, message, its keywords by name), in UID order.
                let picked: Vec<(u32, ModelMessage, Vec<String>)> = source
                    .messages
                    .iter()
                    .filter(|(uid, _)| uids.contains(**uid))
                    .map(|(uid, m)| {
                        let names = m.keywords.iter().map(|&k| source.keywords[k].clone()).collect();
                        (*uid, m.clone(), names)
                    })
                    .collect();
                let target = self.boxes.get_mut(&target_guid).unwrap();
                let uid_validity = target.uid_validity;
                if picked.is_empty() {
                    return if moving {
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
                    };
                }
                let names: Vec<String> = picked.iter().flat_map(|p| p.2.clone()).collect();
                if !target.register(&names) {
                    return Outcome::Rejected(Rejection::KeywordLimit { max: 128 });
                }
                target.highest_modseq += 1;
                let first_target = target.uid_next;
                for (_, m, names) in &picked {
                    let copy = ModelMessage {
                        keywords: names.iter().map(|k| target.keyword(k).unwrap()).collect(),
                        modseq: target.highest_modseq,
                        ..m.clone()
                    };
                    target.messages.insert(target.uid_next, copy);
                    target.uid_next += 1;
                }
                let modseq = Some(target.highest_modseq);
                let map = UidMap {
                    source: UidSet::from_ascending(picked.iter().map(|p| p.0)),
                    first_target,
                };
                if !moving {
                    return Outcome::Copied {
                        uid_validity,
                        uids: map,
                        modseq,
                    };
                }
                let source = self.boxes.get_mut(&source_guid).unwrap();
                source.highest_modseq += 1;
                for (uid, _, _) in &picked {
                    source.messages.remove(uid);
                    source.vanished.push((*uid, source.highest_modseq));
                }
                Outcome::Moved {
                    uid_validity,
                    expunged: map.source.clone(),
                    uids: map,
                    modseq,
                    source_modseq: Some(source.highest_modseq),
                }
            }
            Op::Subscribe { user, mailbox } => {
                let changed = self
                    .subscriptions
                    .entry(user.clone())
                    .or_default()
                    .insert(canonical_mailbox_name(mailbox));
                Outcome::Subscribed { changed }
            }
            Op::Unsubscribe { user, mailbox } => {
                let names = self.subscriptions.entry(user.clone()).or_default();
                let changed = names.remove(&canonical_mailbox_name(mailbox));
                if names.is_empty() {
                    self.subscriptions.remove(user);
                }
                Outcome::Unsubscribed { changed }
            }
        }
    }

    fn flag_names(b: &ModelMailbox, m: &ModelMessage) -> Vec<String> {
        let mut names: Vec<String> = [
            (flag_bits::SEEN, "\\Seen"),
            (flag_bits::ANSWERED, "\\Answered"),
            (flag_bits::FLAGGED, "\\Flagged"),
            (flag_bits::DELETED, "\\Deleted"),
            (flag_bits::DRAFT, "\\Draft"),
        ]
        .iter()
        .filter(|(bit, _)| m.flags & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
        names.extend(m.keywords.iter().map(|&k| b.keywords[k].clone()));
        names
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    (0..items.len()).prop_map(move |i| items[i].clone())
}

fn flags() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        30 => proptest::collection::vec(pick(FLAGS).prop_map(String::from), 1..4),
        // Many distinct keywords, to reach the 128-keyword table limit.
        1 => (0u32..200).prop_map(|start| (start..start + 40).map(|i| format!("kw{i}")).collect()),
    ]
}

fn uid_set() -> impl Strategy<Value = UidSet> {
    proptest::collection::vec((1u32..30, 0u32..12), 1..4)
        .prop_map(|r| UidSet::from_ranges(r.into_iter().map(|(s, l)| (s, s + l))).unwrap())
}

fn guid() -> impl Strategy<Value = Guid> {
    (1u8..=60).prop_map(|b| [b; 16])
}

/// Mailbox names, weighted towards the ones every run starts with (see `to_txns`).
fn mailbox_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("INBOX".to_string()),
        4 => Just("A".to_string()),
        3 => pick(NAMES).prop_map(String::from),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = || pick(USERS).prop_map(String::from);
    let name = mailbox_name;
    prop_oneof![
        3 => (user(), name(), guid(), 1u32..2_000_000_000).prop_map(|(user, mailbox, mailbox_guid, uid_validity)| {
            Op::CreateMailbox { user, mailbox, mailbox_guid, uid_validity }
        }),
        3 => (user(), pick(&["A", "B", "A/B", "Été", "INBOX/x"]), pick(NAMES))
            .prop_map(|(user, from, to)| Op::RenameMailbox { user, from: from.into(), to: to.into() }),
        2 => (user(), name()).prop_map(|(user, mailbox)| Op::DeleteMailbox { user, mailbox }),
        6 => (user(), name(), proptest::collection::vec((guid(), 0u64..100_000, 0i64..2_000_000_000, flags()), 1..10))
            .prop_map(|(user, mailbox, msgs)| Op::Append {
                user,
                mailbox,
                messages: msgs
                    .into_iter()
                    .map(|(guid, size, internal_date, flags)| NewMessage { guid, size, internal_date, flags })
                    .collect(),
            }),
        3 => (user(), name(), proptest::collection::vec((guid(), guid(), 0u64..100_000, flags()), 1..6))
            .prop_map(|(user, mailbox, msgs)| Op::Deliver {
                user,
                mailbox,
                bodies: msgs.iter().map(|(_, body, _, _)| *body).collect(),
                messages: msgs
                    .into_iter()
                    .map(|(guid, _, size, flags)| NewMessage { guid, size, internal_date: 1_700_000_000, flags })
                    .collect(),
            }),
        // The encoding gate: deliveries are refused until the group is in encoding 3, copies,
        // moves and subscriptions until 4, and mailbox files written before encoding 3 are
        // upgraded on their next write (by a copy or a move too).
        2 => prop_oneof![1u8..=3, Just(4u8)].prop_map(|version| Op::SetEncoding { version }),
        // Copies and moves, within a mailbox too (a move into itself is refused).
        3 => (user(), name(), prop_oneof![Just("A".to_string()), name()], uid_set(), any::<bool>())
            .prop_map(|(user, from, to, uids, moving)| {
            if moving {
                Op::Move { user, from, to, uids }
            } else {
                Op::Copy { user, from, to, uids }
            }
        }),
        // Subscriptions, of names that are mailboxes and of one that never is.
        1 => (user(), prop_oneof![name(), Just("Nowhere/Yet".to_string())], any::<bool>())
            .prop_map(|(user, mailbox, on)| {
                if on {
                    Op::Subscribe { user, mailbox }
                } else {
                    Op::Unsubscribe { user, mailbox }
                }
            }),
        5 => (user(), name(), uid_set(), pick(&[StoreMode::Add, StoreMode::Remove, StoreMode::Replace]), flags(),
              proptest::option::of(0u64..30))
            .prop_map(|(user, mailbox, uids, mode, flags, unchanged_since)| Op::Store {
                user, mailbox, uids, mode, flags, unchanged_since,
            }),
        2 => (user(), name(), uid_set(), proptest::collection::vec((1u32..40, guid()), 0..3))
            .prop_map(|(user, mailbox, uids, expected_guids)| Op::Expunge { user, mailbox, uids, expected_guids }),
    ]
}

/// A client request: which client, how its `request_seq` moves (0 next, 1 retry, 2 stale), op.
fn requests() -> impl Strategy<Value = Vec<(usize, u8, Op)>> {
    proptest::collection::vec(
        (
            0usize..3,
            prop_oneof![16 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
            op(),
        ),
        1..120,
    )
}

/// Client requests to transactions, after creating INBOX and A for every user.
fn to_txns(requests: &[(usize, u8, Op)]) -> Vec<Txn> {
    let mut seqs = [0u64; 3];
    let mut last: [Option<Txn>; 3] = [None, None, None];
    let setup = USERS.iter().enumerate().flat_map(|(u, user)| {
        ["INBOX", "A"]
            .into_iter()
            .enumerate()
            .map(move |(n, mailbox)| Txn {
                client_id: format!("setup-{u}-{n}"),
                request_seq: 1,
                op: Op::CreateMailbox {
                    user: user.to_string(),
                    mailbox: mailbox.to_string(),
                    mailbox_guid: [100 + (u * 2 + n) as u8; 16],
                    uid_validity: 1,
                },
            })
    });
    setup
        .collect::<Vec<_>>()
        .into_iter()
        .chain(requests.iter().map(|(client, kind, op)| {
            let txn = match (kind, &last[*client]) {
                (1, Some(previous)) => previous.clone(),
                (2, Some(_)) if seqs[*client] > 1 => Txn {
                    client_id: format!("client-{client}"),
                    request_seq: seqs[*client] - 1,
                    op: op.clone(),
                },
                _ => {
                    seqs[*client] += 1;
                    Txn {
                        client_id: format!("client-{client}"),
                        request_seq: seqs[*client],
                        op: op.clone(),
                    }
                }
            };
            last[*client] = Some(txn.clone());
            txn
        }))
        .collect()
}

fn position(i: usize) -> LogPosition {
    LogPosition::new(1 + i as u64 / 50, i as u64 + 1)
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// Every read of the state machine equals the model's.
fn assert_reads_agree(sm: &GroupState<MemoryFiles>, model: &Model) {
    for user in USERS {
        let listed: Vec<(String, Guid, u32)> = sm
            .list_mailboxes(user)
            .into_iter()
            .map(|m| (m.name, m.mailbox_guid, m.uid_validity))
            .collect();
        let expected: Vec<(String, Guid, u32)> = model
            .users
            .get(*user)
            .map(|b| {
                b.iter()
                    .map(|(n, g)| (n.clone(), *g, model.boxes[g].uid_validity))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(listed, expected, "mailbox list of {user}");
        let subscribed: Vec<String> = model
            .subscriptions
            .get(*user)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(sm.subscriptions(user), subscribed, "subscriptions of {user}");
        for (name, guid, _) in &expected {
            let b = &model.boxes[guid];
            let status = sm.status(user, name).unwrap();
            assert_eq!(
                (
                    status.uid_validity,
                    status.uid_next,
                    status.exists,
                    status.highest_modseq
                ),
                (
                    b.uid_validity,
                    b.uid_next,
                    b.messages.len() as u32,
                    b.highest_modseq
                ),
                "status of {user}/{name}"
            );
            let unseen = b
                .messages
                .values()
                .filter(|m| m.flags & flag_bits::SEEN == 0)
                .count();
            assert_eq!(status.unseen as usize, unseen);
            assert_eq!(status.keywords, b.keywords);
            let fetched = sm.fetch(user, name, 1, u32::MAX, usize::MAX).unwrap();
            let expected: Vec<_> = b
                .messages
                .iter()
                .map(|(uid, m)| {
                    (
                        *uid,
                        Model::flag_names(b, m),
                        m.modseq,
                        m.guid,
                        m.size,
                        m.date,
                        m.body,
                    )
                })
                .collect();
            let got: Vec<_> = fetched
                .iter()
                .map(|v| {
                    (
                        v.uid,
                        v.flags.clone(),
                        v.modseq,
                        v.guid,
                        v.size,
                        v.internal_date,
                        v.body,
                    )
                })
                .collect();
            assert_eq!(got, expected, "records of {user}/{name}");
            // Invariant 6: changes since every MODSEQ, and the vanished UIDs.
            for since in 0..=b.highest_modseq {
                let changes = sm.changes_since(user, name, since).unwrap();
                let changed: Vec<u32> = changes.changed.iter().map(|v| v.uid).collect();
                let expected: Vec<u32> = b
                    .messages
                    .iter()
                    .filter(|(_, m)| m.modseq > since)
                    .map(|(u, _)| *u)
                    .collect();
                assert_eq!(changed, expected, "changed since {since} in {user}/{name}");
                let vanished: Vec<u32> = changes.vanished.iter().collect();
                let mut expected: Vec<u32> = b
                    .vanished
                    .iter()
                    .filter(|(_, m)| *m > since)
                    .map(|(u, _)| *u)
                    .collect();
                expected.sort_unstable();
                assert_eq!(vanished, expected, "vanished since {since} in {user}/{name}");
            }
        }
    }
}

/// Invariants that must hold across a run, checked incrementally.
#[derive(Default)]
struct InvariantTracker {
    /// Invariant 1: (mailbox GUID, UIDVALIDITY, UID) -> message GUID, ever.
    bound: BTreeMap<(Guid, u32, u32), Guid>,
    /// Invariant 2 and 5: last seen (uid_next, highest_modseq) per (mailbox GUID, UIDVALIDITY)
    /// (a deleted mailbox's GUID may come back with a new UIDVALIDITY).
    last: BTreeMap<(Guid, u32), (u32, u64)>,
    /// Invariant 3: the largest UIDVALIDITY ever handed out per (user, name).
    uid_validity: BTreeMap<(String, String), u32>,
}

impl InvariantTracker {
    /// `fresh`: the outcome is new, not a retry's replayed answer.
    fn observe(&mut self, sm: &GroupState<MemoryFiles>, txn: &Txn, outcome: &Outcome, fresh: bool) {
        if let (true, Op::CreateMailbox { user, mailbox, .. }, Outcome::Created { uid_validity, .. }) =
            (fresh, &txn.op, outcome)
        {
            let key = (user.clone(), canonical_mailbox_name(mailbox));
            if let Some(previous) = self.uid_validity.get(&key) {
                assert!(
                    uid_validity > previous,
                    "invariant 3: UIDVALIDITY {uid_validity} after {previous}"
                );
            }
            self.uid_validity.insert(key, *uid_validity);
        }
        for (guid, index) in sm.mailboxes() {
            let h = index.header();
            if let Some(&(uid_next, modseq)) = self.last.get(&(*guid, h.uid_validity)) {
                assert!(h.uid_next >= uid_next, "invariant 2: uid_next went down");
                assert!(
                    h.highest_modseq >= modseq,
                    "invariant 5: highest_modseq went down"
                );
            }
            self.last
                .insert((*guid, h.uid_validity), (h.uid_next, h.highest_modseq));
            for p in 0..index.len() {
                let r = index.record_at(p);
                assert!(
                    r.uid < h.uid_next,
                    "invariant 2: UID {} not below uid_next",
                    r.uid
                );
                let key = (*guid, h.uid_validity, r.uid);
                let first = *self.bound.entry(key).or_insert(r.guid);
                assert_eq!(
                    first, r.guid,
                    "invariant 1: UID {} rebound to another message",
                    r.uid
                );
            }
            assert!(
                index.vanished_since(0).iter().all(|&u| u < h.uid_next),
                "invariant 2: vanished UID"
            );
        }
    }
}

/// The new MODSEQ of the mailbox `op_mailbox` names (a copy's or a move's: the target's).
fn modseq_of(outcome: &Outcome) -> Option<u64> {
    match outcome {
        Outcome::Appended { modseq, .. } => Some(*modseq),
        Outcome::Stored { modseq, .. }
        | Outcome::Expunged { modseq, .. }
        | Outcome::Copied { modseq, .. }
        | Outcome::Moved { modseq, .. } => *modseq,
        _ => None,
    }
}

proptest! {
    // Failing seeds are kept beside this file (model_tests.proptest-regressions) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        rng_seed: RngSeed::Fixed(rng::seed("state_machine::model_tests")),
        ..ProptestConfig::default()
    })]

    /// (a) state machine == reference model, on every outcome and read; (c) invariants.
    #[test]
    fn state_machine_agrees_with_model(requests in requests()) {
        let txns = to_txns(&requests);
        let mut sm = GroupState::in_memory();
        let mut model = Model::default();
        let mut tracker = InvariantTracker::default();
        let mut last_modseq: BTreeMap<(Guid, u32), u64> = BTreeMap::new();
        for (i, txn) in txns.iter().enumerate() {
            let outcome = sm.apply(position(i), txn).unwrap().expect("fresh position");
            let expected = model.apply(txn);
            prop_assert_eq!(&outcome, &expected, "outcome of entry {}: {:?}", i, txn);
            // Invariant 5: a new MODSEQ is above every earlier one of that mailbox.
            let mailbox = model.guid_of(txn.op.user(), op_mailbox(&txn.op));
            if let (Some(modseq), Some(guid), false) = (modseq_of(&outcome), mailbox, is_duplicate(&txns[..i], txn)) {
                let key = (guid, model.boxes[&guid].uid_validity);
                let previous = last_modseq.insert(key, modseq).unwrap_or(0);
                prop_assert!(modseq > previous, "invariant 5: MODSEQ {} after {}", modseq, previous);
            }
            tracker.observe(&sm, txn, &outcome, !is_duplicate(&txns[..i], txn));
            prop_assert_eq!(sm.counts(), sm.recount(), "counts kept on apply, after entry {}: {:?}", i, txn);
            prop_assert!(sm.apply(position(i), txn).unwrap().is_none(), "re-applying a position is a no-op");
        }
        assert_reads_agree(&sm, &model);
        for index in sm.mailboxes().values() {
            index.verify().unwrap();
        }
    }

    /// (b) two replicas fed the same log — one in memory, one on disk through mmap — end with
    /// byte-identical files, and a snapshot of one imports to the same bytes.
    #[test]
    fn replicas_are_byte_identical(requests in requests()) {
        let txns = to_txns(&requests);
        let mut memory = GroupState::in_memory();
        let dir = tempfile::tempdir().unwrap();
        let mut disk = GroupStateMachine::open(dir.path()).unwrap();
        for (i, txn) in txns.iter().enumerate() {
            let a = memory.apply(position(i), txn).unwrap();
            let b = disk.apply(position(i), txn).unwrap();
            prop_assert_eq!(a, b);
            if i % 37 == 0 {
                disk.flush().unwrap();
            }
        }
        prop_assert_eq!(memory.digest(), disk.state().digest());
        prop_assert_eq!(disk.state().counts(), disk.state().recount());
        prop_assert_eq!(memory.manifest().encode(), disk.state().manifest().encode());
        let images = |m: &BTreeMap<Guid, Vec<u8>>| m.clone();
        let a: BTreeMap<Guid, Vec<u8>> = memory.mailboxes().iter().map(|(g, i)| (*g, i.bytes().to_vec())).collect();
        let b: BTreeMap<Guid, Vec<u8>> = disk.state().mailboxes().iter().map(|(g, i)| (*g, i.bytes().to_vec())).collect();
        prop_assert!(images(&a) == b, "mailbox images differ");
        // Reopen from disk after a clean flush: the same bytes come back.
        disk.flush().unwrap();
        drop(disk);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        prop_assert_eq!(reopened.recovery(), &super::Recovery::Clean);
        prop_assert_eq!(reopened.state().digest(), memory.digest());
        prop_assert_eq!(memory.counts(), memory.recount());
        prop_assert_eq!(reopened.state().counts(), memory.counts());
        let mut stream = Vec::new();
        memory.export_snapshot(&mut stream).unwrap();
        let imported = GroupState::import_snapshot(stream.as_slice()).unwrap();
        prop_assert_eq!(imported.digest(), memory.digest());
        prop_assert_eq!(imported.counts(), memory.counts());
    }
}

fn op_mailbox(op: &Op) -> &str {
    match op {
        Op::CreateMailbox { mailbox, .. }
        | Op::DeleteMailbox { mailbox, .. }
        | Op::Append { mailbox, .. }
        | Op::Deliver { mailbox, .. }
        | Op::Store { mailbox, .. }
        | Op::Expunge { mailbox, .. } => mailbox,
        Op::RenameMailbox { from, .. } => from,
        Op::Copy { to, .. } | Op::Move { to, .. } => to,
        Op::SetEncoding { .. } | Op::Probe { .. } | Op::Subscribe { .. } | Op::Unsubscribe { .. } => "",
    }
}

fn is_duplicate(earlier: &[Txn], txn: &Txn) -> bool {
    earlier
        .iter()
        .any(|t| t.client_id == txn.client_id && t.request_seq == txn.request_seq)
}

/// The model and the checks above must themselves be able to fail: a state machine that reuses
/// a UID after an expunge is caught by invariant 1.
#[test]
#[should_panic(expected = "invariant 1")]
fn invariant_tracker_catches_a_reused_uid() {
    let mut tracker = InvariantTracker::default();
    let mut sm = GroupState::in_memory();
    let create = Txn {
        client_id: "c".into(),
        request_seq: 1,
        op: Op::CreateMailbox {
            user: "u".into(),
            mailbox: "INBOX".into(),
            mailbox_guid: [1; 16],
            uid_validity: 5,
        },
    };
    let outcome = sm.apply(position(0), &create).unwrap().unwrap();
    tracker.observe(&sm, &create, &outcome, true);
    let append = |seq, guid| Txn {
        client_id: "c".into(),
        request_seq: seq,
        op: Op::Append {
            user: "u".into(),
            mailbox: "INBOX".into(),
            messages: vec![NewMessage {
                guid,
                size: 1,
                internal_date: 0,
                flags: vec![],
            }],
        },
    };
    let first = append(2, [7; 16]);
    let outcome = sm.apply(position(1), &first).unwrap().unwrap();
    tracker.observe(&sm, &first, &outcome, true);
    // A second state machine that (wrongly) binds UID 1 to another message, observed by the
    // same tracker, as if it were the same replica later in time.
    let mut bad = GroupState::in_memory();
    bad.apply(position(0), &create).unwrap();
    let second = append(2, [8; 16]);
    let outcome = bad.apply(position(1), &second).unwrap().unwrap();
    tracker.observe(&bad, &second, &outcome, true);
}

/// The generator reaches the interesting paths: a run of the model test must include changing
/// stores that remove flags, expunges, renames and deletes, not only rejections.
#[test]
fn generator_covers_the_interesting_paths() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut rejections: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..32 {
        let requests = requests().new_tree(&mut runner).unwrap().current();
        let txns = to_txns(&requests);
        let mut sm = GroupState::in_memory();
        for (i, txn) in txns.iter().enumerate() {
            let outcome = sm.apply(position(i), txn).unwrap().unwrap();
            let kind = match (&txn.op, &outcome) {
                (_, Outcome::Rejected(r)) => {
                    *rejections
                        .entry(
                            format!("{r:?}")
                                .split([' ', '{', '('])
                                .next()
                                .unwrap()
                                .to_string(),
                        )
                        .or_default() += 1;
                    "rejected"
                }
                (
                    Op::Store {
                        mode: StoreMode::Remove,
                        ..
                    },
                    Outcome::Stored { modseq: Some(_), .. },
                ) => "store-remove",
                (_, Outcome::Stored { modseq: Some(_), .. }) => "store",
                (_, Outcome::Expunged { modseq: Some(_), .. }) => "expunge",
                (Op::Deliver { .. }, Outcome::Appended { .. }) => "deliver",
                (_, Outcome::Copied { modseq: Some(_), .. }) => "copy",
                (_, Outcome::Moved { modseq: Some(_), .. }) => "move",
                (_, Outcome::Subscribed { changed: true } | Outcome::Unsubscribed { changed: true }) => {
                    "subscription"
                }
                (_, Outcome::Appended { .. }) => "append",
                (_, Outcome::Renamed { .. }) => "rename",
                (_, Outcome::Deleted { .. }) => "delete",
                _ => "other",
            };
            *counts.entry(kind).or_default() += 1;
        }
    }
    println!("outcomes over 32 generated runs: {counts:?}; rejections: {rejections:?}");
    for kind in [
        "store-remove",
        "store",
        "expunge",
        "append",
        "deliver",
        "copy",
        "move",
        "subscription",
        "rename",
        "delete",
    ] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) >= 10,
            "generator rarely reaches {kind}: {counts:?}"
        );
    }
    assert!(
        counts["rejected"] * 2 < counts.values().sum::<u64>(),
        "mostly rejections: {counts:?}"
    );
}
