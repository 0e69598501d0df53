//! `Storage`: the bytes behind a `MailboxIndex` — a memory-mapped file, or a `Vec` in tests and
//! benchmarks. The index logic sees only a byte slice it may grow; all file I/O is here.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::error::IndexError;

/// A growable byte region holding one index file image.
pub trait Storage {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Grows (never shrinks) the region to `len` bytes; new bytes are zero.
    fn grow(&mut self, len: usize) -> Result<(), IndexError>;
    /// Makes every write so far durable.
    fn flush(&mut self) -> Result<(), IndexError>;
    /// Where the bytes live, for error messages.
    fn path(&self) -> &Path;
}

/// In-memory storage: for tests, benchmarks and building files before they are written out.
#[derive(Debug, Clone)]
pub struct VecStorage {
    bytes: Vec<u8>,
    path: PathBuf,
}

impl VecStorage {
    pub fn from_bytes(bytes: Vec<u8>) -> VecStorage {
        VecStorage::with_path(bytes, PathBuf::from("<memory>"))
    }

    /// Bytes read from `path` (errors name the file).
    pub fn with_path(bytes: Vec<u8>, path: PathBuf) -> VecStorage {
        VecStorage { bytes, path }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl Storage for VecStorage {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn grow(&mut self, len: usize) -> Result<(), IndexError> {
        if len > self.bytes.len() {
            self.bytes.resize(len, 0);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IndexError> {
        Ok(())
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// A file mapped shared and writable: reads and writes go straight to the page cache, and
/// `flush` is an `msync`.
///
/// Safety of the mapping: the file lives in a group directory that one process holds an
/// exclusive lock on (`GroupStateMachine::open`), and nothing else in that process truncates it,
/// so the mapped length stays valid for the mapping's lifetime.
#[derive(Debug)]
pub struct MmapStorage {
    path: PathBuf,
    file: File,
    map: MmapMut,
}

impl MmapStorage {
    /// Creates `path` (which must not exist) with `initial` as its content and maps it.
    pub fn create(path: &Path, initial: &[u8]) -> Result<MmapStorage, IndexError> {
        assert!(!initial.is_empty(), "an index file is never empty");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| IndexError::io(path, "creating", e))?;
        file.set_len(initial.len() as u64)
            .map_err(|e| IndexError::io(path, "sizing", e))?;
        let mut storage = MmapStorage::map(path, file)?;
        storage.map.copy_from_slice(initial);
        Ok(storage)
    }

    /// Opens and maps an existing file. The caller decodes and checks it.
    pub fn open(path: &Path) -> Result<MmapStorage, IndexError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| IndexError::io(path, "opening", e))?;
        let len = file
            .metadata()
            .map_err(|e| IndexError::io(path, "reading metadata of", e))?
            .len();
        if len == 0 {
            return Err(IndexError::Truncated {
                file: path.to_path_buf(),
                what: "magic",
                needed: 8,
                actual: 0,
            });
        }
        MmapStorage::map(path, file)
    }

    fn map(path: &Path, file: File) -> Result<MmapStorage, IndexError> {
        // SAFETY: see the type's docs: the file is exclusively ours and never truncated while
        // mapped.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| IndexError::io(path, "mapping", e))?;
        Ok(MmapStorage {
            path: path.to_path_buf(),
            file,
            map,
        })
    }
}

impl Storage for MmapStorage {
    fn bytes(&self) -> &[u8] {
        &self.map
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
    fn grow(&mut self, len: usize) -> Result<(), IndexError> {
        if len <= self.map.len() {
            return Ok(());
        }
        self.file
            .set_len(len as u64)
            .map_err(|e| IndexError::io(&self.path, "growing", e))?;
        // SAFETY: as in `map`; the old mapping is replaced (and unmapped) here.
        self.map = unsafe { MmapMut::map_mut(&self.file) }
            .map_err(|e| IndexError::io(&self.path, "remapping", e))?;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IndexError> {
        self.map
            .flush()
            .map_err(|e| IndexError::io(&self.path, "flushing", e))?;
        // msync writes the pages; the size change of a grown file needs the inode too.
        self.file
            .sync_all()
            .map_err(|e| IndexError::io(&self.path, "syncing", e))
    }
    fn path(&self) -> &Path {
        &self.path
    }
}
