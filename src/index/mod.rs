//! The on-disk mailbox index: one file per mailbox, memory-mapped, in format v1.
//!
//! - [`format`]: layout, constants, header/record/tombstone encoding and checksums (pure).
//! - [`storage`]: the bytes behind an index: an mmap'd file or a `Vec`.
//! - [`mailbox_index`]: reading and changing one index through its storage.
//! - [`changes`]: pages of "changes since MODSEQ m" with a cursor that neither skips nor repeats.
//! - [`error`]: the `IndexError` type.

pub mod changes;
pub mod error;
pub mod format;
pub mod mailbox_index;
pub mod storage;

pub use changes::{ChangesCursor, ChangesPage};
pub use error::IndexError;
pub use format::{flag_bits, Header, LogPosition, Record, Tombstone};
pub use mailbox_index::MailboxIndex;
pub use storage::{MmapStorage, Storage, VecStorage};
