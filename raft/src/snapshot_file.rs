//! [`SnapshotFile`]: the snapshot data type of Dovetail's state machines.
//!
//! openraft leaves the snapshot representation to the state machine (`RaftStateMachine::
//! SnapshotData`). A Dovetail group snapshot is its index files plus its session table, packed by
//! the domain into one file (ARCHITECTURE.md §8). Keeping it a file rather than a `Vec<u8>` bounds memory
//! no matter how large a group grows, and an open handle keeps the bytes alive while they are
//! streamed to a follower, even if the state machine meanwhile replaces (unlinks) its snapshot.
//!
//! Reads are positional (`pread`), so several handles to one file — the current snapshot and
//! the transfers in flight — never disturb each other's position.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A complete, immutable snapshot held as an open file.
///
/// Invariant: the file is complete when wrapped and is not written through any handle
/// afterwards, so `len` stays the length of the snapshot.
#[derive(Debug)]
pub struct SnapshotFile {
    file: File,
    len: u64,
}

impl SnapshotFile {
    /// Opens a finished snapshot file for reading.
    pub fn open(path: impl AsRef<Path>) -> io::Result<SnapshotFile> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open snapshot {}: {e}", path.display())))?;
        SnapshotFile::from_file(file)
    }

    /// Wraps a handle to a finished snapshot (e.g. one just written and synced). The current
    /// position of `file` does not matter: reads are positional.
    pub fn from_file(file: File) -> io::Result<SnapshotFile> {
        let len = file.metadata()?.len();
        Ok(SnapshotFile { file, len })
    }

    /// The snapshot's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A second handle to the same bytes, e.g. to answer `get_current_snapshot` while keeping
    /// the snapshot installed.
    pub fn try_clone(&self) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: self.file.try_clone()?,
            len: self.len,
        })
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at the end of the snapshot.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let available = usize::try_from(self.len - offset).unwrap_or(usize::MAX);
        let wanted = buf.len().min(available);
        self.file.read_at(&mut buf[..wanted], offset)
    }

    /// A reader over the whole snapshot from its first byte, independent of other readers.
    pub fn reader(&self) -> SnapshotReader<'_> {
        SnapshotReader {
            snapshot: self,
            offset: 0,
        }
    }

    /// Reads the whole snapshot into memory; for small snapshots and tests.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.reader().read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The underlying handle, e.g. to hand to a sender that uses `sendfile`.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Sequential reader over a [`SnapshotFile`], with a position of its own.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    snapshot: &'a SnapshotFile,
    offset: u64,
}

impl Read for SnapshotReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.snapshot.read_at(buf, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn handles_read_independently_and_survive_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"0123456789").unwrap();
        file.sync_all().unwrap();

        let first = SnapshotFile::open(&path).unwrap();
        let second = first.try_clone().unwrap();
        std::fs::remove_file(&path).unwrap();

        let mut reader = first.reader();
        let mut head = [0u8; 4];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"0123");
        assert_eq!(second.read_to_vec().unwrap(), b"0123456789");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"456789");

        let mut buf = [0u8; 8];
        assert_eq!(first.read_at(&mut buf, 8).unwrap(), 2);
        assert_eq!(first.read_at(&mut buf, 10).unwrap(), 0);
        assert_eq!(first.len(), 10);
    }
}
