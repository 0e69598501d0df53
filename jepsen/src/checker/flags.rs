//! The `flags` checker: each message's flags are a linearizable register with compare-and-set by
//! UNCHANGEDSINCE (ARCHITECTURE.md §6 invariants 5 and 9; RFC 7162).
//!
//! # Operations read
//! - `append`: invoke `{"mailbox", "messages": [{"guid", "flags": [..]}]}`, ok `{"uid_validity",
//!   "first_uid", "last_uid", "modseq"}`: creates registers `(mailbox, first_uid + i)`.
//! - `read`: invoke `{"mailbox", "uids": [..], "consistency"}`, ok `{"messages": [{"uid",
//!   "flags", "modseq"}]}`. Each UID of `uids` is one read of its register; a UID missing from
//!   the answer reads "no such message". `local` reads are skipped (they may lag).
//! - `write`: invoke `{"mailbox", "uid", "flags": [..]}` (STORE replace), ok `{"modseq": m|null,
//!   "changed", "modified"}`.
//! - `cas`: invoke `{"mailbox", "uid", "flags": [..], "unchanged_since": M}`, ok as `write`,
//!   `fail` `{"error": "condition_failed"}` on 409. Other `fail`s are dropped (no effect).
//!
//! Flags compare as sets, case-insensitively (IMAP flags are). Registers are only those created
//! by acknowledged appends; operations on other UIDs are ignored (reads) or make the verdict
//! unknown (stores).
//!
//! # The model
//! The state of a register is its flag set (or "no such message") and its MODSEQ. The system
//! assigns MODSEQs when it applies a change, so the state keeps the MODSEQ as an interval
//! `[low, high]` of values still possible: exact after an observed result, and `[low + 1, ∞)`
//! after an uncertain store changed the flags (a fresh, unknown value above the previous one).
//! Exactly as `src/state_machine/apply.rs` applies a STORE:
//! - append: "no such message" → `(flags, [modseq, modseq])`.
//! - read `(F, m)`: flags equal `F` and `m` within the interval; the interval becomes `[m, m]`.
//! - write/cas precondition: none for `write`; for `cas(M)` the record's MODSEQ `<= M`.
//! - ok with `modseq: m` (changed): precondition possible, flags differ from `F`, `m` above the
//!   current MODSEQ (MODSEQ grows in log order) → `(F, [m, m])`.
//! - ok with `modseq: null` (unchanged): precondition possible and flags already `F`; for cas
//!   the interval is cut to `<= M`.
//! - `fail` condition_failed: the MODSEQ can be `> M`; the interval is cut to `> M`.
//! - `info`: may take effect anywhere after its invocation, or never; if it does, its
//!   precondition held: unchanged flags cut the interval as above, others give `(F, [low+1, ∞))`.
//! - a store on "no such message" changes nothing (the server answers `modseq: null`).
//!
//! A history is linearizable per register iff some order of its operations, respecting real
//! time, is accepted ([`super::wgl`]). Each register is searched alone with a step budget: a
//! spent budget makes that register, and the verdict, `unknown`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::wgl::{search, Call, Model, Outcome};
use super::{op_json, op_label, CheckResult, Findings};
use crate::history::{EventType, Operation};
use crate::schema::{
    parse, AppendArgs, AppendResult, Consistency, Failure, MessagesResult, ReadArgs, StoreArgs, StoreResult,
    CONDITION_FAILED,
};

pub const NAME: &str = "flags";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagsOptions {
    /// Model steps allowed per register before its verdict is `unknown`.
    pub max_steps_per_key: u64,
}

impl Default for FlagsOptions {
    fn default() -> FlagsOptions {
        FlagsOptions {
            max_steps_per_key: 1_000_000,
        }
    }
}

/// An interned flag set; [`ABSENT`] is "no such message".
type FlagSetId = u32;
const ABSENT: FlagSetId = 0;

/// A register's possible states. Invariant: `modseq_low <= modseq_high`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegisterState {
    flags: FlagSetId,
    modseq_low: u64,
    modseq_high: u64,
}

impl RegisterState {
    fn exact(flags: FlagSetId, modseq: u64) -> RegisterState {
        RegisterState {
            flags,
            modseq_low: modseq,
            modseq_high: modseq,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// ok with this new MODSEQ.
    Changed(u64),
    /// ok with `modseq: null`: the flags already were the requested ones.
    Unchanged,
    /// 409 condition_failed.
    ConditionFailed,
    /// info: unknown.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    Create {
        flags: FlagSetId,
        modseq: u64,
    },
    /// `modseq: None` when the record carried none: only the flags are compared.
    Read {
        flags: FlagSetId,
        modseq: Option<u64>,
    },
    Store {
        flags: FlagSetId,
        unchanged_since: Option<u64>,
        outcome: StoreOutcome,
    },
}

/// The sequential specification of one message's flags (see the module docs).
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = RegisterState;
    type Op = RegisterOp;

    fn step(&self, s: &RegisterState, op: &RegisterOp) -> Option<RegisterState> {
        match *op {
            RegisterOp::Create { flags, modseq } => {
                (s.flags == ABSENT).then(|| RegisterState::exact(flags, modseq))
            }
            RegisterOp::Read { flags: ABSENT, .. } => (s.flags == ABSENT).then(|| s.clone()),
            RegisterOp::Read { flags, modseq: None } => (s.flags == flags).then(|| s.clone()),
            RegisterOp::Read {
                flags,
                modseq: Some(m),
            } => (s.flags == flags && s.modseq_low <= m && m <= s.modseq_high)
                .then(|| RegisterState::exact(flags, m)),
            RegisterOp::Store { outcome, .. } if s.flags == ABSENT => {
                matches!(outcome, StoreOutcome::Unchanged | StoreOutcome::Unknown).then(|| s.clone())
            }
            RegisterOp::Store {
                flags,
                unchanged_since,
                outcome,
            } => {
                // The precondition holds for some possible MODSEQ, and then the MODSEQ is <= M.
                let (may_pass, passed_high) = match unchanged_since {
                    None => (true, s.modseq_high),
                    Some(since) => (s.modseq_low <= since, s.modseq_high.min(since)),
                };
                let passed = RegisterState {
                    modseq_high: passed_high,
                    ..s.clone()
                };
                match outcome {
                    StoreOutcome::Changed(m) => (may_pass && s.flags != flags && m > s.modseq_low)
                        .then(|| RegisterState::exact(flags, m)),
                    StoreOutcome::Unchanged => (may_pass && s.flags == flags).then_some(passed),
                    StoreOutcome::ConditionFailed => {
                        let since = unchanged_since?;
                        (s.modseq_high > since).then(|| RegisterState {
                            modseq_low: s.modseq_low.max(since + 1),
                            ..s.clone()
                        })
                    }
                    StoreOutcome::Unknown if !may_pass => None,
                    StoreOutcome::Unknown if s.flags == flags => Some(passed),
                    StoreOutcome::Unknown => Some(RegisterState {
                        flags,
                        modseq_low: s.modseq_low + 1,
                        modseq_high: u64::MAX,
                    }),
                }
            }
        }
    }
}

/// Flag sets by id, normalized (lower case, sorted, no repeats).
struct FlagSets {
    ids: HashMap<Vec<String>, FlagSetId>,
    sets: Vec<Vec<String>>,
}

impl FlagSets {
    fn new() -> FlagSets {
        FlagSets {
            ids: HashMap::new(),
            sets: vec![Vec::new()], // ABSENT's slot
        }
    }

    fn intern(&mut self, flags: &[String]) -> FlagSetId {
        let mut set: Vec<String> = flags.iter().map(|f| f.to_lowercase()).collect();
        set.sort_unstable();
        set.dedup();
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as FlagSetId;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    fn state_json(&self, s: &RegisterState) -> Value {
        let flags = if s.flags == ABSENT {
            json!("no such message")
        } else {
            json!(self.sets[s.flags as usize])
        };
        let modseq = if s.modseq_low == s.modseq_high {
            json!(s.modseq_low)
        } else {
            json!({"at_least": s.modseq_low, "at_most": (s.modseq_high != u64::MAX).then_some(s.modseq_high)})
        };
        json!({ "flags": flags, "modseq": modseq })
    }
}

type Key<'a> = (&'a str, u32);

/// One register's history, with the operation each call came from.
#[derive(Default)]
struct KeyHistory<'a> {
    calls: Vec<Call<RegisterOp>>,
    sources: Vec<&'a Operation<'a>>,
}

impl<'a> KeyHistory<'a> {
    fn push(&mut self, source: &'a Operation<'a>, op: RegisterOp) {
        self.calls.push(Call {
            invoked_ns: source.invoked_ns(),
            completed_ns: source.completed_ns(),
            op,
        });
        self.sources.push(source);
    }
}

pub fn check(operations: &[Operation], options: FlagsOptions) -> CheckResult {
    let mut f = Findings::new(NAME);
    let mut flag_sets = FlagSets::new();
    let mut keys: BTreeMap<Key, KeyHistory> = BTreeMap::new();
    for op in operations.iter().filter(|op| op.invoke.f == "append") {
        create_keys(op, &mut flag_sets, &mut keys, &mut f);
    }
    for op in operations {
        match op.invoke.f.as_str() {
            "read" => add_read(op, &mut flag_sets, &mut keys, &mut f),
            "write" | "cas" => add_store(op, &mut flag_sets, &mut keys, &mut f),
            _ => {}
        }
    }
    for ((mailbox, uid), history) in &keys {
        f.count("keys", 1);
        f.count("operations", history.calls.len() as u64);
        let initial = RegisterState::exact(ABSENT, 0);
        match search(&RegisterModel, initial, &history.calls, options.max_steps_per_key) {
            Outcome::Linearizable { steps, .. } => f.count("steps", steps),
            Outcome::Unknown { steps } => {
                f.count("steps", steps);
                f.count("keys_unknown", 1);
                f.unknown(format!(
                    "{mailbox} UID {uid}: the search budget ({} steps or the memo limit) ran out on {} operations",
                    options.max_steps_per_key,
                    history.calls.len()
                ));
            }
            Outcome::NotLinearizable {
                steps,
                prefix,
                state,
                stuck,
            } => {
                f.count("steps", steps);
                let stuck_op = history.sources[stuck];
                let tail: Vec<Value> = prefix
                    .iter()
                    .rev()
                    .take(10)
                    .rev()
                    .map(|&i| op_json(history.sources[i]))
                    .collect();
                f.anomaly(
                    "nonlinearizable",
                    format!(
                        "{mailbox} UID {uid}: no order of its {} operations explains them; after the longest \
                         explainable prefix ({} operations) the flags are {}, and {} cannot take effect",
                        history.calls.len(),
                        prefix.len(),
                        flag_sets.state_json(&state),
                        op_label(stuck_op)
                    ),
                    json!({"mailbox": mailbox, "uid": uid, "operations": history.calls.len(),
                           "state": flag_sets.state_json(&state), "stuck": op_json(stuck_op),
                           "prefix_length": prefix.len(), "prefix_tail": tail}),
                );
            }
        }
    }
    f.finish()
}

fn create_keys<'a>(
    op: &'a Operation<'a>,
    flag_sets: &mut FlagSets,
    keys: &mut BTreeMap<Key<'a>, KeyHistory<'a>>,
    f: &mut Findings,
) {
    let (Some(result), Some(mailbox)) = (op.ok_value(), op.invoke.value["mailbox"].as_str()) else {
        return;
    };
    let (Ok(args), Ok(r)) = (
        parse::<AppendArgs>(&op.invoke.value),
        parse::<AppendResult>(result),
    ) else {
        f.unknown(format!("{}: unreadable arguments or result", op_label(op)));
        return;
    };
    let Some(modseq) = r
        .modseq
        .filter(|_| r.first_uid as usize + args.messages.len() == r.last_uid as usize + 1)
    else {
        f.unknown(format!("{}: no MODSEQ or not one UID per message", op_label(op)));
        return;
    };
    for (i, message) in args.messages.iter().enumerate() {
        let flags = flag_sets.intern(&message.flags);
        let history = keys.entry((mailbox, r.first_uid + i as u32)).or_default();
        history.push(op, RegisterOp::Create { flags, modseq });
    }
}

fn add_read<'a>(
    op: &'a Operation<'a>,
    flag_sets: &mut FlagSets,
    keys: &mut BTreeMap<Key<'a>, KeyHistory<'a>>,
    f: &mut Findings,
) {
    let (Some(result), Some(mailbox)) = (op.ok_value(), op.invoke.value["mailbox"].as_str()) else {
        return; // a read that failed or timed out observed nothing
    };
    let Ok(args) = parse::<ReadArgs>(&op.invoke.value) else {
        f.unknown(format!(
            "{}: unreadable arguments {}",
            op_label(op),
            op.invoke.value
        ));
        return;
    };
    if args.consistency == Consistency::Local {
        f.count("reads_local_skipped", 1);
        return;
    }
    let Ok(answer) = parse::<MessagesResult>(result) else {
        f.anomaly(
            "malformed-result",
            format!("{} answered without messages", op_label(op)),
            op_json(op),
        );
        return;
    };
    let records: HashMap<u32, _> = answer.messages.iter().map(|m| (m.uid, m)).collect();
    for uid in args.uids.unwrap_or_default() {
        let Some(history) = keys.get_mut(&(mailbox, uid)) else {
            continue;
        };
        let read = match records.get(&uid) {
            None => RegisterOp::Read {
                flags: ABSENT,
                modseq: None,
            },
            Some(record) => match &record.flags {
                Some(flags) => RegisterOp::Read {
                    flags: flag_sets.intern(flags),
                    modseq: record.modseq,
                },
                None => {
                    f.anomaly(
                        "malformed-result",
                        format!("{} returned UID {uid} without flags", op_label(op)),
                        op_json(op),
                    );
                    continue;
                }
            },
        };
        history.push(op, read);
    }
}

fn add_store<'a>(
    op: &'a Operation<'a>,
    flag_sets: &mut FlagSets,
    keys: &mut BTreeMap<Key<'a>, KeyHistory<'a>>,
    f: &mut Findings,
) {
    let (Ok(args), Some(mailbox)) = (
        parse::<StoreArgs>(&op.invoke.value),
        op.invoke.value["mailbox"].as_str(),
    ) else {
        f.unknown(format!(
            "{}: unreadable arguments {}",
            op_label(op),
            op.invoke.value
        ));
        return;
    };
    if op.invoke.f == "cas" && args.unchanged_since.is_none() {
        f.unknown(format!("{}: a cas without unchanged_since", op_label(op)));
        return;
    }
    let outcome = match op.outcome() {
        EventType::Ok => match op.ok_value().map(parse::<StoreResult>) {
            Some(Ok(r)) => r.modseq.map_or(StoreOutcome::Unchanged, StoreOutcome::Changed),
            _ => {
                f.anomaly(
                    "malformed-result",
                    format!("{} answered without modseq", op_label(op)),
                    op_json(op),
                );
                return;
            }
        },
        EventType::Fail => {
            let failure = op.complete.as_ref().and_then(|c| parse::<Failure>(&c.value).ok());
            if failure.is_some_and(|e| e.error == CONDITION_FAILED) {
                StoreOutcome::ConditionFailed
            } else {
                f.count("stores_failed_dropped", 1);
                return;
            }
        }
        _ => StoreOutcome::Unknown,
    };
    let Some(history) = keys.get_mut(&(mailbox, args.uid)) else {
        f.unknown(format!(
            "{}: UID {} was never created by an acknowledged append",
            op_label(op),
            args.uid
        ));
        return;
    };
    let flags = flag_sets.intern(&args.flags);
    history.push(
        op,
        RegisterOp::Store {
            flags,
            unchanged_since: args.unchanged_since,
            outcome,
        },
    );
}

#[cfg(test)]
mod tests;
