//! A linearizability search: Wing & Gong's algorithm with Lowe's memoization ("Testing for
//! linearizability", 2017), the same search as Knossos's `linear` and Porcupine.
//!
//! The history is a doubly linked list of call and return entries in time order. The search
//! walks it depth-first: at a call it tries to let that operation take effect now (the model
//! accepts it in the current state), lifts it out of the list and starts again from the head; at
//! a return whose operation has not taken effect yet it backtracks, since that operation had to
//! take effect before it returned. A configuration (set of operations taken effect, model state)
//! already explored is never explored again, which turns the exponential search into one bounded
//! by the number of distinct configurations.
//!
//! Uncertain operations (`info`, [`Call::completed_ns`] = `None`) return at the end of time: they
//! may take effect anywhere after their invocation, and the search succeeds as soon as every
//! certain operation has taken effect, so they may also never take effect.
//!
//! The search stops after `max_steps` model steps, or once its memo would pass
//! [`MEMO_BYTES_MAX`], with [`Outcome::Unknown`]: a budget, not a verdict. Histories should be
//! split into independent keys first (P-compositionality).

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: the state after `op` takes effect in `state`, or `None` if `op`
/// (with the result it recorded) cannot take effect there.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Op: Debug;
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation of the history: its interval and its arguments plus recorded result.
#[derive(Debug, Clone)]
pub struct Call<O> {
    pub invoked_ns: u64,
    /// `None`: uncertain, may take effect at any point after `invoked_ns`, or never.
    pub completed_ns: Option<u64>,
    pub op: O,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<S> {
    /// `order` lists the operations (indexes into the calls) in an order that explains the history.
    Linearizable { steps: u64, order: Vec<usize> },
    /// No order explains it. The deepest configuration reached: the operations in `prefix` took
    /// effect, leaving `state`, and then `stuck` returned without any way to take effect.
    NotLinearizable {
        steps: u64,
        prefix: Vec<usize>,
        state: S,
        stuck: usize,
    },
    /// The step budget ran out before a verdict.
    Unknown { steps: u64 },
}

/// The most memory the explored configurations may take (estimated), per search.
pub const MEMO_BYTES_MAX: usize = 512 << 20;

const NONE: usize = usize::MAX;
const HEAD: usize = 0;

/// The list of call and return entries; entry 0 is the head sentinel.
struct Entries {
    /// `(operation, is_call)` per entry.
    entry: Vec<(usize, bool)>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// The return entry of each operation.
    return_of: Vec<usize>,
}

impl Entries {
    fn new<O>(calls: &[Call<O>]) -> Entries {
        let mut timeline: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * calls.len());
        for (i, c) in calls.iter().enumerate() {
            // Calls sort before returns at equal times: equal times are concurrent.
            timeline.push((c.invoked_ns, false, i));
            timeline.push((c.completed_ns.unwrap_or(u64::MAX), true, i));
        }
        timeline.sort_unstable();
        let len = timeline.len() + 1;
        let mut entry = vec![(NONE, false)];
        let mut return_of = vec![NONE; calls.len()];
        for &(_, is_return, op) in &timeline {
            if is_return {
                return_of[op] = entry.len();
            }
            entry.push((op, !is_return));
        }
        Entries {
            entry,
            prev: (0..len).map(|i| i.wrapping_sub(1)).collect(),
            next: (0..len).map(|i| if i + 1 < len { i + 1 } else { NONE }).collect(),
            return_of,
        }
    }

    fn remove(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }

    fn restore(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NONE {
            self.prev[n] = e;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.remove(call);
        self.remove(self.return_of[self.entry[call].0]);
    }

    /// Undoes [`Entries::lift`] (in reverse order, so the links come back exactly).
    fn unlift(&mut self, call: usize) {
        self.restore(self.return_of[self.entry[call].0]);
        self.restore(call);
    }
}

/// Searches for an order of `calls`, starting from `initial`, that `model` accepts and that
/// respects real time.
pub fn search<M: Model>(
    model: &M,
    initial: M::State,
    calls: &[Call<M::Op>],
    max_steps: u64,
) -> Outcome<M::State> {
    let required_total = calls.iter().filter(|c| c.completed_ns.is_some()).count();
    let mut required_done = 0;
    let mut list = Entries::new(calls);
    let mut taken: Vec<u64> = vec![0; calls.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    // The call entries that took effect, with the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = initial;
    let mut entry = list.next[HEAD];
    let mut steps = 0u64;
    let mut deepest: Option<(Vec<usize>, M::State, usize)> = None;
    let memo_entries_max = MEMO_BYTES_MAX / (taken.len() * 8 + std::mem::size_of::<M::State>() + 48);
    let ops = |stack: &[(usize, M::State)], list: &Entries| -> Vec<usize> {
        stack.iter().map(|&(e, _)| list.entry[e].0).collect()
    };
    loop {
        if required_done == required_total {
            return Outcome::Linearizable {
                steps,
                order: ops(&stack, &list),
            };
        }
        let (op, is_call) = if entry == NONE {
            (NONE, false)
        } else {
            list.entry[entry]
        };
        if is_call {
            steps += 1;
            if steps > max_steps || seen.len() > memo_entries_max {
                return Outcome::Unknown { steps };
            }
            if let Some(next_state) = model.step(&state, &calls[op].op) {
                taken[op / 64] |= 1 << (op % 64);
                if seen.insert((taken.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    required_done += usize::from(calls[op].completed_ns.is_some());
                    list.lift(entry);
                    entry = list.next[HEAD];
                    continue;
                }
                taken[op / 64] &= !(1 << (op % 64));
            }
            entry = list.next[entry];
        } else {
            // `op` returned (or the list ended) before taking effect: undo the last choice.
            if deepest.as_ref().is_none_or(|d| stack.len() > d.0.len()) {
                deepest = Some((ops(&stack, &list), state.clone(), op));
            }
            let Some((call, before)) = stack.pop() else {
                let (prefix, state, stuck) = deepest.expect("recorded before the stack emptied");
                return Outcome::NotLinearizable {
                    steps,
                    prefix,
                    state,
                    stuck,
                };
            };
            let undone = list.entry[call].0;
            taken[undone / 64] &= !(1 << (undone % 64));
            required_done -= usize::from(calls[undone].completed_ns.is_some());
            state = before;
            list.unlift(call);
            entry = list.next[call];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain read/write register of integers.
    struct Register;

    #[derive(Debug)]
    enum RegisterOp {
        Write(u32),
        Read(u32),
    }

    impl Model for Register {
        type State = u32;
        type Op = RegisterOp;
        fn step(&self, state: &u32, op: &RegisterOp) -> Option<u32> {
            match *op {
                RegisterOp::Write(v) => Some(v),
                RegisterOp::Read(v) => (v == *state).then_some(v),
            }
        }
    }

    fn call(invoked_ns: u64, completed_ns: Option<u64>, op: RegisterOp) -> Call<RegisterOp> {
        Call {
            invoked_ns,
            completed_ns,
            op,
        }
    }

    #[test]
    fn finds_an_order_for_overlapping_operations() {
        // Two overlapping writes; reads after both see 2, so write(1) must come first.
        let calls = [
            call(0, Some(10), RegisterOp::Write(2)),
            call(1, Some(9), RegisterOp::Write(1)),
            call(11, Some(12), RegisterOp::Read(2)),
        ];
        match search(&Register, 0, &calls, 1000) {
            Outcome::Linearizable { order, .. } => assert_eq!(order, vec![1, 0, 2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_a_stale_read_and_names_the_stuck_operation() {
        let calls = [
            call(0, Some(10), RegisterOp::Write(1)),
            call(11, Some(12), RegisterOp::Read(0)),
        ];
        match search(&Register, 0, &calls, 1000) {
            Outcome::NotLinearizable {
                prefix, state, stuck, ..
            } => {
                assert_eq!((prefix, state, stuck), (vec![0], 1, 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uncertain_operations_may_take_effect_late_or_never() {
        let late = [
            call(0, None, RegisterOp::Write(5)),
            call(1, Some(2), RegisterOp::Read(0)),
            call(3, Some(4), RegisterOp::Read(5)),
        ];
        assert!(matches!(
            search(&Register, 0, &late, 100),
            Outcome::Linearizable { .. }
        ));
        let never = [
            call(0, None, RegisterOp::Write(5)),
            call(1, Some(2), RegisterOp::Read(0)),
        ];
        assert!(matches!(
            search(&Register, 0, &never, 100),
            Outcome::Linearizable { .. }
        ));
        // But not before it was invoked.
        let early = [
            call(0, Some(1), RegisterOp::Read(5)),
            call(2, None, RegisterOp::Write(5)),
        ];
        assert!(matches!(
            search(&Register, 0, &early, 100),
            Outcome::NotLinearizable { .. }
        ));
    }

    #[test]
    fn a_spent_budget_is_unknown() {
        let mut calls: Vec<_> = (0..12).map(|v| call(0, None, RegisterOp::Write(v))).collect();
        calls.push(call(1, Some(2), RegisterOp::Read(99)));
        assert_eq!(search(&Register, 0, &calls, 50), Outcome::Unknown { steps: 51 });
    }
}
