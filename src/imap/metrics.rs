//! The IMAP server's metrics (Prometheus names), described once when the node installs its
//! recorder (`node::metrics::install`), and the same counts kept in atomics for
//! `/admin/status` (`node.mail`, [`counts`]). Both are process-wide, like the recorder: real
//! nodes are one process each.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{describe_counter, describe_gauge};

/// Gauge: IMAP sessions open, by protocol (`imap`: `--imap-listen`, `imaps`: `--imaps-listen`).
pub const SESSIONS_OPEN: &str = "dovetail_imap_sessions_open";
/// Counter: commands answered, by command name and result (`ok`, `no`, `bad`).
pub const COMMANDS_TOTAL: &str = "dovetail_imap_commands_total";
/// Counter: failed logins, by reason (`credentials`, `rate_limited`).
pub const LOGIN_FAILURES_TOTAL: &str = "dovetail_imap_login_failures_total";
/// Counter: ENVELOPE, BODYSTRUCTURE and BODY items FETCH took from the node's MIME cache
/// (`super::mime_cache`), and those it computed from a body (then kept).
pub const MIME_CACHE_HITS_TOTAL: &str = "dovetail_imap_mime_cache_hits_total";
pub const MIME_CACHE_MISSES_TOTAL: &str = "dovetail_imap_mime_cache_misses_total";

pub fn describe() {
    describe_gauge!(SESSIONS_OPEN, "IMAP sessions open, by listener protocol");
    describe_counter!(COMMANDS_TOTAL, "IMAP commands answered, by command and result");
    describe_counter!(LOGIN_FAILURES_TOTAL, "Failed IMAP logins, by reason");
    describe_counter!(
        MIME_CACHE_HITS_TOTAL,
        "FETCH items (ENVELOPE, BODYSTRUCTURE, BODY) answered from the node's MIME cache"
    );
    describe_counter!(
        MIME_CACHE_MISSES_TOTAL,
        "FETCH items (ENVELOPE, BODYSTRUCTURE, BODY) computed from a body and then cached"
    );
}

/// What [`counts`] reads: sessions open (`imap`, `imaps`), commands by result, failed logins.
static IMAP_OPEN: AtomicU64 = AtomicU64::new(0);
static IMAPS_OPEN: AtomicU64 = AtomicU64::new(0);
static COMMANDS_OK: AtomicU64 = AtomicU64::new(0);
static COMMANDS_NO: AtomicU64 = AtomicU64::new(0);
static COMMANDS_BAD: AtomicU64 = AtomicU64::new(0);
static LOGIN_FAILURES: AtomicU64 = AtomicU64::new(0);

/// The IMAP counts of this process, for `/admin/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImapCounts {
    pub imap_sessions_open: u64,
    pub imaps_sessions_open: u64,
    pub commands_ok: u64,
    pub commands_no: u64,
    pub commands_bad: u64,
    pub login_failures: u64,
}

pub fn counts() -> ImapCounts {
    ImapCounts {
        imap_sessions_open: IMAP_OPEN.load(Ordering::Relaxed),
        imaps_sessions_open: IMAPS_OPEN.load(Ordering::Relaxed),
        commands_ok: COMMANDS_OK.load(Ordering::Relaxed),
        commands_no: COMMANDS_NO.load(Ordering::Relaxed),
        commands_bad: COMMANDS_BAD.load(Ordering::Relaxed),
        login_failures: LOGIN_FAILURES.load(Ordering::Relaxed),
    }
}

fn open_sessions(protocol: &'static str) -> &'static AtomicU64 {
    if protocol == "imaps" {
        &IMAPS_OPEN
    } else {
        &IMAP_OPEN
    }
}

/// Counts a session opened on the `protocol` listener (`imap` or `imaps`) until the returned
/// guard is dropped (the session ended, or its task was dropped).
#[must_use]
pub fn session_opened(protocol: &'static str) -> OpenSession {
    metrics::gauge!(SESSIONS_OPEN, "protocol" => protocol).increment(1.0);
    open_sessions(protocol).fetch_add(1, Ordering::Relaxed);
    OpenSession { protocol }
}

/// One session counted open; closed when dropped.
pub struct OpenSession {
    protocol: &'static str,
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics::gauge!(SESSIONS_OPEN, "protocol" => self.protocol).decrement(1.0);
        open_sessions(self.protocol).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one answered command.
pub fn record_command(name: &'static str, result: &'static str) {
    metrics::counter!(COMMANDS_TOTAL, "command" => name, "result" => result).increment(1);
    match result {
        "ok" => &COMMANDS_OK,
        "no" => &COMMANDS_NO,
        _ => &COMMANDS_BAD,
    }
    .fetch_add(1, Ordering::Relaxed);
}

/// Counts one failed login (`credentials` or `rate_limited`).
pub fn record_login_failure(reason: &'static str) {
    metrics::counter!(LOGIN_FAILURES_TOTAL, "reason" => reason).increment(1);
    LOGIN_FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// Counts one FETCH's MIME cache lookups (once per FETCH, not per message: a counter lookup per
/// message would cost a noticeable part of a cached answer).
pub fn record_mime_cache(hits: u64, misses: u64) {
    if hits > 0 {
        metrics::counter!(MIME_CACHE_HITS_TOTAL).increment(hits);
    }
    if misses > 0 {
        metrics::counter!(MIME_CACHE_MISSES_TOTAL).increment(misses);
    }
}
