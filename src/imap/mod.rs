//! IMAP4rev1 (RFC 3501) with LITERAL+, SASL-IR, ID, ENABLE, IDLE, NAMESPACE, UNSELECT, UIDPLUS,
//! CONDSTORE, QRESYNC and MOVE, on `--imap-listen` (STARTTLS) and `--imaps-listen` (implicit TLS), built on
//! imap-next's sans-I/O server. Each part in its own file:
//!
//! - [`server`]: the listeners, the connection limit, TLS; one task per session; [`shared`]:
//!   what the sessions share (users, login limiter, limits).
//! - [`transport`]: drives imap-next's `Server` over TCP or TLS; the STARTTLS upgrade.
//! - [`session`]: one connection's state and command loop; CAPABILITY, NOOP, LOGOUT, ID,
//!   STARTTLS; reads and writes with the session's read-your-writes token.
//! - [`login`]: LOGIN and AUTHENTICATE PLAIN against `--passwd-file`, rate-limited per address;
//!   ENABLE; the default mailboxes. [`reply`]: tagged answers, CAPABILITY.
//! - [`mailboxes`]: the authenticated commands (LIST, CREATE, DELETE, RENAME, STATUS,
//!   SELECT/EXAMINE, APPEND through the body store).
//! - [`selected`]: the selected state (STORE, EXPUNGE, CLOSE, UNSELECT, SEARCH with
//!   [`searching`]: facts from this node's index, bodies through the body store only when a key
//!   needs them); [`fetch`]: FETCH, the MIME items cut once per message by [`mime`];
//!   [`mime_cache`]: ENVELOPE, BODYSTRUCTURE and BODY kept per body id for every session, so
//!   a FETCH of only those reads no body; [`refresh`]: what changed meanwhile, told only where RFC 3501 §7.4.1 allows, and IDLE.
//! - [`view`]: a selected mailbox's per-session sequence ↔ UID map, expunges buffered.
//! - [`qresync`]: SELECT/EXAMINE (QRESYNC ...) and UID FETCH (CHANGEDSINCE ... VANISHED):
//!   `* VANISHED (EARLIER)` from the index's expunge tombstones, then what changed.
//! - [`copy`]: COPY, MOVE (COPYUID; MOVE's EXPUNGEs) and RENAME INBOX over the replicated
//!   Copy/Move ops (log encoding 4); [`subscriptions`]: SUBSCRIBE, UNSUBSCRIBE, LSUB.
//! - [`list`]: LIST's patterns and attributes (special-use mailboxes).
//! - [`config`]: the listeners' limits and policy; [`metrics`]: sessions, commands, failed logins.
//! - [`mime`]: ENVELOPE, BODYSTRUCTURE / BODY, RFC822.SIZE and `BODY[section]<partial>` from a
//!   message's stored bytes, the same on every node; pure functions over `&[u8]`, checked
//!   against answers recorded from Dovecot 2.3 (`tests/fixtures/imap/`, `mime_tests.rs`).
//! - [`search`]: evaluating a SEARCH key against one message: the server fills
//!   [`search::MessageFacts`] from the index and passes the body lazily; RECENT never matches
//!   (no `\Recent` in a cluster).
pub mod config;
pub mod copy;
pub mod fetch;
pub mod list;
pub mod login;
pub mod mailboxes;
pub mod metrics;
pub mod mime;
pub mod mime_cache;
pub mod qresync;
pub mod refresh;
pub mod reply;
pub mod search;
pub mod searching;
pub mod selected;
pub mod server;
pub mod session;
pub mod shared;
pub mod subscriptions;
pub mod transport;
pub mod view;

pub use self::config::ImapConfig;
pub use self::server::{ImapServer, ListenerKind};

#[cfg(test)]
mod mime_tests;
#[cfg(test)]
mod search_tests;
