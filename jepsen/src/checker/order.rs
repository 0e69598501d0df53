//! Real-time regressions in O(n log n): the shared core of "UIDs increase", "UIDNEXT never goes
//! down" and "reads never shrink".
//!
//! Each operation covers a range `[low, high]` of some monotonic quantity (an append covers the
//! UIDs it got, `first_uid..last_uid + 1`; a status read covers the single point `uid_next`; a list
//! read the point `length`). The property: if X completed before Y was invoked, then
//! `X.high <= Y.low`. For each Y it suffices to compare with the X of largest `high` among the
//! operations that completed before Y began: a prefix maximum over completion order.

/// One operation's place in time and in the quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub invoked_ns: u64,
    /// `None` for operations that never certainly completed (`info`): they precede nothing.
    pub completed_ns: Option<u64>,
    /// Invariant: `low <= high`.
    pub low: u64,
    pub high: u64,
}

/// Pairs `(earlier, later)` of indexes into `spans` such that `earlier` completed before `later`
/// was invoked and `earlier.high > later.low`. At most one pair per `later`: the earlier span
/// with the largest `high`, the clearest witness.
pub fn regressions(spans: &[Span]) -> Vec<(usize, usize)> {
    let mut completed: Vec<(u64, usize)> = spans
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.completed_ns.map(|done| (done, i)))
        .collect();
    completed.sort_unstable();
    // best[k] = index of the span with the largest `high` among the first k+1 completed.
    let mut best: Vec<usize> = Vec::with_capacity(completed.len());
    for &(_, i) in &completed {
        let keep = match best.last() {
            Some(&b) if spans[b].high >= spans[i].high => b,
            _ => i,
        };
        best.push(keep);
    }
    let mut found = Vec::new();
    for (later, span) in spans.iter().enumerate() {
        let before = completed.partition_point(|&(done, _)| done < span.invoked_ns);
        if before == 0 {
            continue;
        }
        let earlier = best[before - 1];
        if spans[earlier].high > span.low {
            found.push((earlier, later));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(invoked_ns: u64, completed_ns: Option<u64>, low: u64, high: u64) -> Span {
        Span {
            invoked_ns,
            completed_ns,
            low,
            high,
        }
    }

    #[test]
    fn concurrent_operations_may_interleave_but_sequential_ones_may_not_regress() {
        // 0 and 1 overlap, so 1's lower range is fine; 2 starts after both and is above both.
        let ok = [
            span(0, Some(10), 5, 6),
            span(5, Some(20), 3, 4),
            span(21, Some(30), 6, 7),
        ];
        assert!(regressions(&ok).is_empty());
        let bad = [span(0, Some(10), 5, 6), span(11, Some(20), 3, 4)];
        assert_eq!(regressions(&bad), vec![(0, 1)]);
    }

    #[test]
    fn the_witness_is_the_largest_earlier_span_and_info_spans_precede_nothing() {
        let spans = [
            span(0, Some(1), 1, 2),
            span(0, Some(2), 1, 9),
            span(0, None, 50, 60), // info: never completed, so it constrains nobody
            span(3, Some(4), 5, 5),
        ];
        assert_eq!(regressions(&spans), vec![(1, 3)]);
        // Equal times are concurrent: completing at 10 does not precede an invocation at 10.
        assert!(regressions(&[span(0, Some(10), 5, 9), span(10, Some(12), 1, 1)]).is_empty());
    }
}
