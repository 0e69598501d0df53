//! `LmtpConfig`: the LMTP listener's limits.

use std::path::PathBuf;
use std::time::Duration;

/// The limits of the LMTP listener.
#[derive(Debug, Clone)]
pub struct LmtpConfig {
    /// The name in the greeting and the LHLO reply.
    pub hostname: String,
    /// Largest message accepted (`SIZE` in LHLO, checked at MAIL FROM and while DATA arrives).
    pub max_message_bytes: u64,
    /// How long the server waits for the next command line (then 421 and close). RFC 5321
    /// §4.5.3.2.7 asks for at least 5 minutes.
    pub command_timeout: Duration,
    /// How long the server waits for the next bytes of DATA (then 421 and close).
    pub data_timeout: Duration,
    /// Connections served at once; one more is answered 421 and closed.
    pub max_connections: usize,
    /// Recipients per transaction; one more is refused 452 4.5.3 (the MTA sends it later).
    pub max_recipients: usize,
    /// Where DATA is spooled (unnamed files, gone when the transaction ends).
    pub spool_dir: PathBuf,
}

impl LmtpConfig {
    pub fn new(max_message_bytes: u64, spool_dir: PathBuf) -> LmtpConfig {
        LmtpConfig {
            hostname: "dovetail".to_string(),
            max_message_bytes,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_connections: 256,
            max_recipients: 1000,
            spool_dir,
        }
    }
}
