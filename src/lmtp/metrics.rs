//! The LMTP server's metrics (Prometheus names), described once when the node installs its
//! recorder (`node::metrics::install`), and the same counts kept in atomics for
//! `/admin/status` (`node.mail`, [`counts`]). Both are process-wide, like the recorder: real
//! nodes are one process each.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{describe_counter, describe_gauge};

/// Gauge: LMTP sessions open.
pub const SESSIONS_OPEN: &str = "dovetail_lmtp_sessions_open";
/// Counter: recipients answered for good, by reply class (`250`; `451`, `452`: the MTA
/// retries; `5xx`: refused), at `RCPT TO` (refused there) or after DATA (one reply each).
pub const RECIPIENTS_TOTAL: &str = "dovetail_lmtp_recipients_total";

pub fn describe() {
    describe_gauge!(SESSIONS_OPEN, "LMTP sessions open");
    describe_counter!(
        RECIPIENTS_TOTAL,
        "LMTP recipients answered, by reply class (250, 451, 452, 5xx)"
    );
}

static OPEN: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static DEFERRED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The LMTP counts of this process, for `/admin/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LmtpCounts {
    pub sessions_open: u64,
    /// Recipients answered 250 after DATA.
    pub delivered: u64,
    /// Recipients answered 4xx (451, 452), at `RCPT TO` or after DATA.
    pub deferred: u64,
    /// Recipients answered 5xx, at `RCPT TO` or after DATA.
    pub refused: u64,
}

pub fn counts() -> LmtpCounts {
    LmtpCounts {
        sessions_open: OPEN.load(Ordering::Relaxed),
        delivered: DELIVERED.load(Ordering::Relaxed),
        deferred: DEFERRED.load(Ordering::Relaxed),
        refused: REFUSED.load(Ordering::Relaxed),
    }
}

/// Counts a session open until the returned guard is dropped.
#[must_use]
pub fn session_opened() -> OpenSession {
    metrics::gauge!(SESSIONS_OPEN).increment(1.0);
    OPEN.fetch_add(1, Ordering::Relaxed);
    OpenSession(())
}

/// One session counted open; closed when dropped.
pub struct OpenSession(());

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics::gauge!(SESSIONS_OPEN).decrement(1.0);
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one recipient's final reply (`250 ...`, `451 ...`, `550 ...`): 2xx delivered, 4xx
/// deferred, 5xx refused.
pub fn record_recipient(reply: &str) {
    let (class, counter) = match reply.as_bytes().first() {
        Some(b'2') => ("250", &DELIVERED),
        Some(b'4') if reply.starts_with("452") => ("452", &DEFERRED),
        Some(b'4') => ("451", &DEFERRED),
        _ => ("5xx", &REFUSED),
    };
    metrics::counter!(RECIPIENTS_TOTAL, "reply" => class).increment(1);
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_count_by_class() {
        // Process-wide counters, shared with other tests running at once: deltas, at least.
        let before = counts();
        for reply in [
            "250 2.0.0 <a@x> Delivered",
            "451 4.4.3 no quorum",
            "452 4.3.1 full",
            "550 5.1.1 no",
        ] {
            record_recipient(reply);
        }
        let after = counts();
        assert!(after.delivered > before.delivered);
        assert!(after.deferred >= before.deferred + 2);
        assert!(after.refused > before.refused);
    }
}
