//! The IMAP server's metrics (Prometheus names), described once when the node installs its
//! recorder (`node::metrics::install`).

use metrics::{describe_counter, describe_gauge};

/// Gauge: IMAP sessions open, by protocol (`imap`: `--imap-listen`, `imaps`: `--imaps-listen`).
pub const SESSIONS_OPEN: &str = "dovetail_imap_sessions_open";
/// Counter: commands answered, by command name and result (`ok`, `no`, `bad`).
pub const COMMANDS_TOTAL: &str = "dovetail_imap_commands_total";
/// Counter: failed logins, by reason (`credentials`, `rate_limited`).
pub const LOGIN_FAILURES_TOTAL: &str = "dovetail_imap_login_failures_total";

pub fn describe() {
    describe_gauge!(SESSIONS_OPEN, "IMAP sessions open, by listener protocol");
    describe_counter!(COMMANDS_TOTAL, "IMAP commands answered, by command and result");
    describe_counter!(LOGIN_FAILURES_TOTAL, "Failed IMAP logins, by reason");
}

/// Counts one answered command.
pub fn record_command(name: &'static str, result: &'static str) {
    metrics::counter!(COMMANDS_TOTAL, "command" => name, "result" => result).increment(1);
}
