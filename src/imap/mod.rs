//! IMAP4rev1 (RFC 3501) with its extensions, on `--imap-listen` / `--imaps-listen` (issue 18;
//! being built). Each part in its own file:
//!
//! - [`mime`]: ENVELOPE, BODYSTRUCTURE, RFC822.SIZE and `BODY[section]<partial>` from a message's
//!   stored bytes, the same on every node.
//! - [`search`]: evaluating SEARCH keys against one message.
pub mod mime;
pub mod search;
