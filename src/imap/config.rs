//! `ImapConfig`: the IMAP listeners' limits and policy.

use std::time::Duration;

/// The limits and policy of the IMAP listeners (`--imap-*` flags).
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Connections served at once over both listeners; one more gets `* BYE` and is closed.
    pub max_connections: usize,
    /// Whether LOGIN and AUTHENTICATE PLAIN are taken on a connection without TLS
    /// (`--imap-allow-plaintext`); when not, LOGINDISABLED is advertised there.
    pub allow_plaintext: bool,
    /// Largest APPEND literal (the node's `--max-message-bytes`); a larger one is refused.
    pub max_message_bytes: u64,
    /// How long a connection that has not logged in may stay silent.
    pub login_timeout: Duration,
    /// How long a logged-in connection may stay silent, IDLE included (RFC 3501 §5.4: at least
    /// 30 minutes).
    pub autologout: Duration,
    /// Malformed commands in a row after which the connection is closed.
    pub max_bad_commands: u32,
}

impl ImapConfig {
    pub fn new(max_message_bytes: u64) -> ImapConfig {
        ImapConfig {
            max_connections: 1024,
            allow_plaintext: false,
            max_message_bytes,
            login_timeout: Duration::from_secs(60),
            autologout: Duration::from_secs(30 * 60),
            max_bad_commands: 20,
        }
    }
}
