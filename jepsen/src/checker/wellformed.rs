//! The `history` checker: the history is one the other checkers can judge. A runner bug is not a
//! system bug, so everything found here makes the verdict `unknown`, never `false`:
//! events out of time order, completions without an invocation, a process invoking while its
//! operation is open or after an `info` retired it, a completion whose `f` differs.

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckResult, Findings};
use crate::history::{Event, EventType};

pub const NAME: &str = "history";

pub fn check(events: &[Event]) -> CheckResult {
    let mut f = Findings::new(NAME);
    f.count("events", events.len() as u64);
    if let Some(i) = (1..events.len()).find(|&i| events[i].time_ns < events[i - 1].time_ns) {
        f.unknown(format!(
            "event {i} is earlier ({} ns) than the one before it",
            events[i].time_ns
        ));
    }
    // The same pairing as `history::pair`, without copying the events.
    let mut retired: BTreeSet<u64> = BTreeSet::new();
    let mut open: BTreeMap<u64, &str> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if e.kind == EventType::Invoke {
            f.count("operations", 1);
            if retired.contains(&e.process) {
                f.unknown(format!(
                    "event {i}: process {} invokes after an info retired it",
                    e.process
                ));
            }
            if open.insert(e.process, &e.f).is_some() {
                f.unknown(format!(
                    "event {i}: process {} invokes while its operation is open",
                    e.process
                ));
            }
            continue;
        }
        match open.remove(&e.process) {
            None => f.unknown(format!(
                "event {i}: process {} completes an operation it never invoked",
                e.process
            )),
            Some(invoked) if invoked != e.f => f.unknown(format!(
                "event {i}: process {} completes {} but invoked {invoked}",
                e.process, e.f
            )),
            Some(_) => {}
        }
        let stat = match e.kind {
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            _ => "info",
        };
        f.count(stat, 1);
        if e.kind == EventType::Info {
            retired.insert(e.process);
        }
    }
    f.count("open_at_end", open.len() as u64);
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::tests::event;
    use serde_json::json;

    #[test]
    fn a_tidy_history_is_valid_and_runner_mistakes_are_unknown() {
        let tidy = vec![
            event(1, 0, EventType::Invoke, "append", json!({})),
            event(2, 1, EventType::Invoke, "read", json!({})),
            event(3, 0, EventType::Info, "append", json!({})),
            event(4, 1, EventType::Ok, "read", json!({})),
            event(5, 2, EventType::Invoke, "read", json!({})),
        ];
        let r = check(&tidy);
        assert_eq!(r.valid, Validity::True, "{r:#?}");
        assert_eq!(
            (r.stats["info"], r.stats["ok"], r.stats["open_at_end"]),
            (1, 1, 1)
        );
        let mut reused = tidy.clone();
        reused.push(event(6, 0, EventType::Invoke, "read", json!({})));
        assert_eq!(check(&reused).valid, Validity::Unknown);
        let unmatched = vec![event(1, 5, EventType::Ok, "read", json!({}))];
        assert_eq!(check(&unmatched).valid, Validity::Unknown);
        let mismatched = vec![
            event(1, 0, EventType::Invoke, "read", json!({})),
            event(2, 0, EventType::Ok, "append", json!({})),
        ];
        assert_eq!(check(&mismatched).valid, Validity::Unknown);
        let unordered = vec![
            event(2, 0, EventType::Invoke, "read", json!({})),
            event(1, 0, EventType::Ok, "read", json!({})),
        ];
        assert_eq!(check(&unordered).valid, Validity::Unknown);
    }
}
