//! The `logs` checker: no node panicked. A panic is a broken invariant (STYLE.md: it stops the
//! process with a message naming it), so any line mentioning one fails the run even when the
//! histories look fine.
//!
//! A line counts when it contains a word starting with "panic", in any case (`panicked at`,
//! `PANIC`, `panic:`), not "nopanic"-like words. The caller reads the log files; this takes texts.

use serde_json::json;

use super::{CheckResult, Findings};

pub const NAME: &str = "logs";

/// Longest excerpt of a line kept in an anomaly.
const LINE_EXCERPT_CHARS: usize = 300;

fn mentions_panic(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.match_indices("panic").any(|(at, _)| {
        lower[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// `logs`: `(node, text)` pairs.
pub fn check<'a>(logs: impl IntoIterator<Item = (&'a str, &'a str)>) -> CheckResult {
    let mut f = Findings::new(NAME);
    for (node, text) in logs {
        f.count("logs", 1);
        for (number, line) in text.lines().enumerate() {
            f.count("lines", 1);
            if mentions_panic(line) {
                let excerpt: String = line.chars().take(LINE_EXCERPT_CHARS).collect();
                f.anomaly(
                    "panic",
                    format!("{node} log line {}: {excerpt}", number + 1),
                    json!({"node": node, "line": number + 1, "text": excerpt}),
                );
            }
        }
    }
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    #[test]
    fn quiet_logs_pass_and_a_panic_anywhere_fails() {
        let quiet = "INFO started\nWARN peer 2 unreachable\nINFO nopanic mode off\n";
        let r = check([("n1", quiet), ("n2", "")]);
        assert_eq!(r.valid, Validity::True, "{r:#?}");
        assert_eq!(r.stats["lines"], 3);
        let panicked =
            "INFO started\nthread 'tokio-runtime-worker' panicked at src/state_machine/apply.rs:12:5:\n";
        let r = check([("n1", quiet), ("n3", panicked)]);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.anomalies[0].detail["node"], "n3");
        assert_eq!(r.anomalies[0].detail["line"], 2);
        assert_eq!(
            check([("n1", "ERROR PANIC: invariant 1 broken")]).valid,
            Validity::False
        );
        assert_eq!(check([("n1", "{\"msg\":\"panic: x\"}")]).valid, Validity::False);
    }
}
