//! IMAP4rev1 (RFC 3501) with its extensions, on `--imap-listen` / `--imaps-listen` (issue 18;
//! being built). Each part in its own file:
//!
//! - [`mime`]: ENVELOPE, BODYSTRUCTURE / BODY, RFC822.SIZE and `BODY[section]<partial>` from a
//!   message's stored bytes, the same on every node; pure functions over `&[u8]`, checked
//!   against answers recorded from Dovecot 2.3 (`tests/fixtures/imap/`, `mime_tests.rs`).
//! - [`search`]: evaluating a SEARCH key against one message: the server fills
//!   [`search::MessageFacts`] from the index and passes the body lazily; RECENT never matches
//!   (no `\Recent` in a cluster).
pub mod mime;
pub mod search;

#[cfg(test)]
mod mime_tests;
#[cfg(test)]
mod search_tests;
