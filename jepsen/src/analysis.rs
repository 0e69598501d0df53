//! Which checkers judge which workload: `analyze` takes a run's history and final reads (already
//! read from `history.jsonl` and `final.json` by the caller) and returns one [`CheckResult`] per
//! checker, in the order they appear in `results.json`.
//!
//! | workload | checkers |
//! | --- | --- |
//! | `uid` | history, uid |
//! | `set` | history, uid, set |
//! | `list` | history, uid, set, list |
//! | `flags` | history, uid, flags |
//! | `bodies` | history, uid, bodies |
//!
//! plus `replicas` when `final.json` has `verify`, and `logs` when it has `logs`. The `uid`
//! checker runs on every workload because every workload appends (a delivery's UIDs are judged
//! by `bodies`; `uid` still judges the final reads). The run passes iff
//! [`verdict`] is `True`.

use serde_json::Value;

use crate::checker::flags::FlagsOptions;
use crate::checker::set::SetOptions;
use crate::checker::{
    bodies, flags, list, logs, replicas, set, uid, wellformed, CheckResult, Findings, Validity,
};
use crate::history::{pair, Event};
use crate::schema::{parse, Finals};

/// The workloads `analyze` knows.
pub const WORKLOADS: [&str; 5] = ["uid", "set", "list", "flags", "bodies"];

/// Runs every checker that applies to `workload` with default options.
pub fn analyze(workload: &str, history: &[Event], finals: &Value) -> Vec<CheckResult> {
    let mut results = vec![wellformed::check(history)];
    let Ok(operations) = pair(history) else {
        return results; // `history` already says why: nothing else can be judged
    };
    let finals: Finals = if finals.is_null() {
        Finals::default()
    } else {
        parse(finals).unwrap_or_else(|e| {
            results.push(unknown("finals", format!("final.json does not parse: {e}")));
            Finals::default()
        })
    };
    if !WORKLOADS.contains(&workload) {
        results.push(unknown(
            "analysis",
            format!("unknown workload {workload:?}; known: {WORKLOADS:?}"),
        ));
        return results;
    }
    results.push(uid::check(&operations, &finals));
    if matches!(workload, "set" | "list") {
        results.push(set::check(&operations, &finals, SetOptions::default()));
    }
    if workload == "list" {
        results.push(list::check(&operations, &finals));
    }
    if workload == "flags" {
        results.push(flags::check(&operations, FlagsOptions::default()));
    }
    if workload == "bodies" {
        results.push(bodies::check(&operations, &finals));
    }
    if let Some(report) = &finals.verify {
        results.push(replicas::check(report));
    }
    if let Some(texts) = &finals.logs {
        results.push(logs::check(
            texts.iter().map(|(node, text)| (node.as_str(), text.as_str())),
        ));
    }
    results
}

/// The verdict of a whole run: `False` if any checker found an anomaly, else `Unknown` if any
/// could not decide, else `True`.
pub fn verdict(results: &[CheckResult]) -> Validity {
    results.iter().fold(Validity::True, |v, r| v.and(r.valid))
}

fn unknown(checker: &'static str, reason: String) -> CheckResult {
    let mut f = Findings::new(checker);
    f.unknown(reason);
    f.finish()
}

#[cfg(test)]
mod tests;
