//! Users and their passwords: Dovecot's passwd-file, the same file on every node, re-read on
//! SIGHUP; failed logins limited per remote address. Not wired into a server yet: LMTP and IMAP
//! call [`Users::exists`], [`Users::verify_async`] and [`LoginLimiter`].
//!
//! - [`passwd`]: the file format, parsed (pure); user names normalized as the index wants them.
//! - [`scheme`]: `{ARGON2ID}`, `{SHA512-CRYPT}`, `{BLF-CRYPT}`: parse, check, hash.
//! - [`table`]: one loaded file; an unknown user is checked against a dummy hash of the file's
//!   most common cost, so a login's time does not say whether the user exists.
//! - [`store`]: [`Users`], swapped whole on a reload (a bad file keeps the old table), and
//!   [`spawn_sighup_reload`].
//! - [`limiter`]: [`LoginLimiter`], a token bucket per address (IPv6 per /64), bounded.
//! - [`command`]: `dovetail user hash`.
//!
//! Crates (all build with the workspace's rust-version 1.89 and add no second copy of a crate the
//! workspace already has; `cargo tree -d`):
//! - `argon2` 0.5.3 (RustCrypto): PHC strings, constant-time output comparison. 0.6 moves to
//!   `digest` 0.11 and would duplicate the RustCrypto stack `sha2` 0.10 already brings.
//! - `sha-crypt` 0.5.0 (RustCrypto): Drepper's SHA-crypt on `sha2` 0.10, without its default
//!   `simple` feature (which brings `rand` 0.8's generator): we salt from `getrandom` and compare
//!   in constant time ourselves (`subtle`), taking passwords as bytes, not only UTF-8.
//! - `bcrypt` 0.17.1 (on RustCrypto's `blowfish` 0.9): constant-time comparison, reads
//!   `$2y$`/`$2b$`/`$2a$`; 0.18 and later bring `blowfish` 0.10 and a second `cipher`,
//!   `crypto-common` and `base64`. Passwords past 72 bytes are truncated, as crypt(3) does.

pub mod command;
pub mod limiter;
pub mod passwd;
pub mod scheme;
pub mod store;
pub mod table;

use std::path::PathBuf;

pub use limiter::{Admission, LimiterConfig, LoginLimiter};
pub use scheme::{Cost, Scheme};
pub use store::{spawn_sighup_reload, Users};

/// Errors of loading a passwd-file or making a hash. No variant carries a password hash.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("passwd-file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("passwd-file line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("passwd-file line {line}: invalid user name: {reason}")]
    InvalidUser { line: usize, reason: String },
    #[error("passwd-file line {line}: user {user:?} already on line {first_line}")]
    DuplicateUser {
        line: usize,
        first_line: usize,
        user: String,
    },
    #[error(
        "passwd-file line {line}: unknown scheme {{{scheme}}} (known: ARGON2ID, SHA512-CRYPT, BLF-CRYPT)"
    )]
    UnknownScheme { line: usize, scheme: String },
    #[error("passwd-file line {line}: malformed {scheme} hash: {reason}")]
    BadHash {
        line: usize,
        scheme: &'static str,
        reason: &'static str,
    },
    #[error("cannot hash: {reason}")]
    Hash { reason: &'static str },
}
