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
    /// Grows (never shrinks) the region to `len` bytes; new bytes are zero. On an error the
    /// region is as it was (a full disk changes nothing).
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

/// Gives `file` real blocks for its first `len` bytes and makes it at least that long.
///
/// A file grown with `set_len` is sparse, and a write through the mapping into a hole needs a
/// block from the file system at the moment of the page fault: on a full disk the process gets
/// SIGBUS instead of an error. With the blocks allocated first, a full disk is an error here,
/// before anything is written. File systems without `fallocate` fall back to `set_len`.
fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len_arg =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain syscall on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_arg) };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(len.max(file.metadata()?.len())),
        _ => Err(error),
    }
}

/// A file mapped shared and writable: reads and writes go straight to the page cache, and
/// `flush` is an `msync`. Every byte of the file has a block on disk (see [`allocate`]).
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
    /// Creates `path` (which must not exist) with `initial` as its content and maps it. On an
    /// error (a full disk) the file is removed again.
    pub fn create(path: &Path, initial: &[u8]) -> Result<MmapStorage, IndexError> {
        assert!(!initial.is_empty(), "an index file is never empty");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| IndexError::io(path, "creating", e))?;
        let sized = allocate(&file, initial.len() as u64)
            .map_err(|e| IndexError::io(path, "allocating", e))
            .and_then(|()| MmapStorage::map(path, file));
        match sized {
            Ok(mut storage) => {
                storage.map.copy_from_slice(initial);
                Ok(storage)
            }
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
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
        // Files written by releases before allocation may have holes; give them blocks now if
        // the disk has room (best effort: a full disk must not keep a group from opening).
        if let Err(e) = allocate(&file, len) {
            tracing::warn!(file = %path.display(), error = %e, "could not allocate the blocks of an index file");
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

impl MmapStorage {
    /// A second handle to the file, to sync it without borrowing the storage: on Linux an
    /// `fsync` of the file writes back the pages dirtied through its shared mapping too, so
    /// `sync_all` on this handle makes every write made through the mapping before the call
    /// durable (writes made during it may or may not be).
    pub fn sync_handle(&self) -> Result<File, IndexError> {
        self.file
            .try_clone()
            .map_err(|e| IndexError::io(&self.path, "duplicating the handle of", e))
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
        let old_len = self.map.len();
        if len <= old_len {
            return Ok(());
        }
        let grown = allocate(&self.file, len as u64)
            .map_err(|e| IndexError::io(&self.path, "growing", e))
            .and_then(|()| {
                // SAFETY: as in `map`; the old mapping is replaced (and unmapped) on success.
                unsafe { MmapMut::map_mut(&self.file) }
                    .map_err(|e| IndexError::io(&self.path, "remapping", e))
            });
        match grown {
            Ok(map) => {
                self.map = map;
                Ok(())
            }
            Err(e) => {
                // A failed allocation may have extended the file partly: back to the length the
                // header describes, so the file still opens.
                let _ = self.file.set_len(old_len as u64);
                Err(e)
            }
        }
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
