//! [`BodyStore`]: a node's message bodies, content-addressed, under `<data-dir>/blobs/`.
//!
//! A body is named by its [`BodyId`], the first 128 bits of the SHA-256 of its exact bytes
//! (what an index record carries). Layout: `blobs/<2 hex>/<32 hex>` (256 fan-out directories, so
//! no directory holds millions of entries), `blobs/tmp/` for writes in progress and
//! `blobs/quarantine/` for copies that failed their check.
//!
//! - **Writing** ([`BodyStore::put`]) streams into a temporary file while hashing (never the
//!   whole message in memory), syncs it, renames it into place and syncs the directory: once it
//!   returns, the body survives a crash. A body already present is not written again (one
//!   delivery to many recipients, a COPY: single-instance storage); the temporary file goes, and
//!   the copy's modification time is set to now, so the collector's grace period starts again
//!   for a body about to be referenced anew (`collector`).
//! - **Deleting** is the collector's ([`BodyStore::remove_if_stale`]): it re-checks the copy's
//!   modification time under the same lock as `put`'s refresh, so a body put again after the
//!   collector listed it is kept.
//! - **Reading** ([`BodyStore::read`] a file, [`BodyStore::read_bytes`] the bytes in memory)
//!   checks the whole body against its name before handing it out: a copy that fails is never
//!   served; it is moved to `quarantine/` and counted, and the caller fetches it again from a
//!   peer.
//! - **Small bodies** ([`BodyStore::put_small`], at most a delivery's `SMALL_BODY`) are made
//!   durable by the journal (`journal`: one append and an `fdatasync` shared by concurrent
//!   puts) rather than by syncing their file and directory; the journal is replayed when the
//!   store opens.
//! - Leftovers of a crash in `tmp/` are removed when the store opens.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub use super::id::{hash_reader, BodyError, BodyId};
use super::journal::{replay, Journal, Replayed};

/// A body written by [`BodyStore::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: BodyId,
    pub size: u64,
    /// False when the store already held the body (nothing was written).
    pub written: bool,
}

/// What [`BodyStore::remove_if_stale`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The copy was deleted; it had `bytes` bytes.
    Removed { bytes: u64 },
    /// The copy was modified after the cutoff (put again since it was listed): kept.
    Fresh,
    /// There was no copy.
    Absent,
}

/// A node's body store.
#[derive(Debug)]
pub struct BodyStore {
    dir: PathBuf,
    /// Copies that failed their check since the store opened.
    damaged: AtomicU64,
    /// Temporary file names: unique within the process.
    next_tmp: AtomicU64,
    /// Held by `put` while it finds a body present and refreshes its modification time, and by
    /// [`BodyStore::remove_if_stale`] while it checks that time and deletes: so a put that
    /// returns `written: false` always leaves a copy whose time is its own.
    refresh: Mutex<()>,
    /// Where [`BodyStore::put_small`] makes bodies durable (`None` only while the store opens).
    journal: Option<Journal>,
    replayed: Replayed,
}

impl BodyStore {
    /// Opens (creating) the store in `dir`, removing what a crash left in `tmp/`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<BodyStore, BodyError> {
        let dir = dir.into();
        let tmp = dir.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| BodyError::io(&tmp, "clearing", e))?;
        }
        let journal = dir.join("journal");
        for sub in [dir.join("tmp"), dir.join("quarantine"), journal.clone()] {
            fs::create_dir_all(&sub).map_err(|e| BodyError::io(&sub, "creating", e))?;
        }
        let mut store = BodyStore {
            dir,
            damaged: AtomicU64::new(0),
            next_tmp: AtomicU64::new(0),
            refresh: Mutex::new(()),
            journal: None,
            replayed: Replayed::default(),
        };
        store.replayed = replay(&journal, &store.dir, |bytes, id| {
            store.put(&mut &bytes[..], u64::MAX, Some(id)).map(|_| ())
        })?;
        if store.replayed.records > 0 {
            tracing::info!(replayed = ?store.replayed, "replayed the body journal");
        }
        store.journal = Some(Journal::open(journal, store.dir.clone())?);
        Ok(store)
    }

    /// Where body `id` lives.
    pub fn path_of(&self, id: &BodyId) -> PathBuf {
        let hex = id.hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Whether the store holds a copy of `id` (unchecked: [`BodyStore::read`] checks it).
    pub fn has(&self, id: &BodyId) -> bool {
        self.path_of(id).is_file()
    }

    /// Copies that failed their check since the store opened.
    pub fn damaged_count(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Stores the body read from `input` (at most `max_bytes`), durably. If `expected` is given
    /// (a transfer from a peer), bytes hashing to another id are refused and nothing is stored.
    pub fn put(
        &self,
        input: &mut impl Read,
        max_bytes: u64,
        expected: Option<BodyId>,
    ) -> Result<Stored, BodyError> {
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.put_via(&tmp, input, max_bytes, expected);
        if result.as_ref().map_or(true, |stored| !stored.written) {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn put_via(
        &self,
        tmp: &Path,
        input: &mut impl Read,
        max_bytes: u64,
        expected: Option<BodyId>,
    ) -> Result<Stored, BodyError> {
        let mut file = File::create(tmp).map_err(|e| BodyError::io(tmp, "creating", e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(BodyError::Input { source }),
            };
            size += n as u64;
            if size > max_bytes {
                return Err(BodyError::TooLarge { max: max_bytes });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| BodyError::io(tmp, "writing", e))?;
        }
        let id = BodyId::from_digest(&hasher.finalize());
        if let Some(expected) = expected {
            if expected != id {
                return Err(BodyError::Mismatch { expected, actual: id });
            }
        }
        let target = self.path_of(&id);
        if let Some(present) = self.refresh_if_present(&target, id, size)? {
            return Ok(present);
        }
        file.sync_all().map_err(|e| BodyError::io(tmp, "syncing", e))?;
        drop(file);
        let parent = target.parent().expect("a fan-out directory");
        fs::create_dir_all(parent).map_err(|e| BodyError::io(parent, "creating", e))?;
        fs::rename(tmp, &target).map_err(|e| BodyError::io(&target, "renaming into place", e))?;
        sync_dir(parent)?;
        Ok(Stored {
            id,
            size,
            written: true,
        })
    }

    /// If the store holds body `id` already, sets its copy's time to now, as if written, so
    /// the collector counts its grace from this put (the body is about to be referenced again);
    /// synced, so a crash does not take the refresh back while the entry is pending.
    fn refresh_if_present(&self, target: &Path, id: BodyId, size: u64) -> Result<Option<Stored>, BodyError> {
        let _refresh = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        if !target.is_file() {
            return Ok(None);
        }
        File::options()
            .write(true)
            .open(target)
            .and_then(|f| f.set_modified(SystemTime::now()).and_then(|()| f.sync_all()))
            .map_err(|e| BodyError::io(target, "refreshing the modification time of", e))?;
        Ok(Some(Stored {
            id,
            size,
            written: false,
        }))
    }

    /// Stores `bytes` (at most `max_bytes`; if `expected` is given, they must hash to it), as
    /// [`BodyStore::put`] does, durably once it returns, with one `fdatasync` of the journal
    /// shared with every concurrent put instead of two `fsync`s of its own (`journal`): the
    /// file goes into place unsynced, then its record is appended to the journal and synced.
    pub fn put_small(
        &self,
        bytes: &[u8],
        max_bytes: u64,
        expected: Option<BodyId>,
    ) -> Result<Stored, BodyError> {
        let size = bytes.len() as u64;
        if size > max_bytes {
            return Err(BodyError::TooLarge { max: max_bytes });
        }
        let id = BodyId::of(bytes);
        if let Some(expected) = expected {
            if expected != id {
                return Err(BodyError::Mismatch { expected, actual: id });
            }
        }
        let Some(journal) = &self.journal else {
            return self.put(&mut &bytes[..], max_bytes, expected);
        };
        let target = self.path_of(&id);
        if let Some(present) = self.refresh_if_present(&target, id, size)? {
            return Ok(present);
        }
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::write(&tmp, bytes).map_err(|e| BodyError::io(&tmp, "writing", e));
        let parent = target.parent().expect("a fan-out directory");
        let placed = written
            .and_then(|()| fs::create_dir_all(parent).map_err(|e| BodyError::io(parent, "creating", e)))
            .and_then(|()| {
                fs::rename(&tmp, &target).map_err(|e| BodyError::io(&target, "renaming into place", e))
            });
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        journal.append(id, bytes)?;
        Ok(Stored {
            id,
            size,
            written: true,
        })
    }

    /// What the journal's replay did when the store opened.
    pub fn replayed(&self) -> Replayed {
        self.replayed
    }

    /// Opens body `id` after checking every byte against its name, rewound to its start; `None`
    /// if the store has no copy. A copy that fails is moved to `quarantine/` (so it is never
    /// served and the next read fetches it anew) and reported as [`BodyError::Damaged`].
    pub fn read(&self, id: &BodyId) -> Result<Option<File>, BodyError> {
        let path = self.path_of(id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BodyError::io(&path, "opening", e)),
        };
        let actual = hash_reader(&mut file).map_err(|e| BodyError::io(&path, "reading", e))?;
        if actual != *id {
            self.quarantine(id)?;
            return Err(BodyError::Damaged { id: *id, actual });
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| BodyError::io(&path, "rewinding", e))?;
        Ok(Some(file))
    }

    /// Body `id`'s bytes, checked as [`BodyStore::read`] checks a file, but read once (the check
    /// hashes the bytes read); `None` if the store has no copy. For a caller that wants the
    /// bytes in memory anyway (IMAP FETCH), rather than a file to stream.
    pub fn read_bytes(&self, id: &BodyId) -> Result<Option<Vec<u8>>, BodyError> {
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BodyError::io(&path, "reading", e)),
        };
        let actual = BodyId::of(&bytes);
        if actual != *id {
            self.quarantine(id)?;
            return Err(BodyError::Damaged { id: *id, actual });
        }
        Ok(Some(bytes))
    }

    /// Opens body `id` without checking it, with its size; `None` if the store has no copy. For
    /// a transfer to a peer, which checks every byte it receives.
    pub fn open_unchecked(&self, id: &BodyId) -> Result<Option<(File, u64)>, BodyError> {
        let path = self.path_of(id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BodyError::io(&path, "opening", e)),
        };
        let size = file
            .metadata()
            .map_err(|e| BodyError::io(&path, "reading the size of", e))?
            .len();
        Ok(Some((file, size)))
    }

    /// Moves body `id`'s copy aside, counted.
    pub fn quarantine(&self, id: &BodyId) -> Result<(), BodyError> {
        let path = self.path_of(id);
        let aside = self.dir.join("quarantine").join(format!(
            "{}-{}",
            id.hex(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        fs::rename(&path, &aside).map_err(|e| BodyError::io(&path, "moving aside", e))?;
        self.damaged.fetch_add(1, Ordering::Relaxed);
        tracing::error!(body = %id, moved_to = %aside.display(), "a stored body failed its check; moved aside");
        Ok(())
    }

    /// Deletes body `id` (the collector's job).
    pub fn remove(&self, id: &BodyId) -> Result<(), BodyError> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BodyError::io(&path, "removing", e)),
        }
    }

    /// Deletes body `id` if its copy was last modified at or before `cutoff` (the collector's
    /// job: a copy put again since it was listed is newer and kept). The check and the
    /// deletion hold the lock `put` holds to refresh a present copy, so neither slips between
    /// the other's steps.
    pub fn remove_if_stale(&self, id: &BodyId, cutoff: SystemTime) -> Result<Removal, BodyError> {
        let path = self.path_of(id);
        let _refresh = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Absent),
            Err(e) => return Err(BodyError::io(&path, "reading the metadata of", e)),
        };
        let modified = meta
            .modified()
            .map_err(|e| BodyError::io(&path, "reading the modification time of", e))?;
        if modified > cutoff {
            return Ok(Removal::Fresh);
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(Removal::Removed { bytes: meta.len() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Absent),
            Err(e) => Err(BodyError::io(&path, "removing", e)),
        }
    }

    /// Every body the store holds, with its size and modification time (unchecked).
    pub fn list(&self) -> Result<Vec<(BodyId, u64, std::time::SystemTime)>, BodyError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| BodyError::io(&self.dir, "listing", e))?;
        for fan in entries.flatten() {
            let name = fan.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !fan.path().is_dir() {
                continue;
            }
            let Ok(files) = fs::read_dir(fan.path()) else {
                continue;
            };
            for file in files.flatten() {
                let Some(id) = BodyId::parse(&file.file_name().to_string_lossy()) else {
                    continue;
                };
                if let Ok(meta) = file.metadata() {
                    out.push((id, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)));
                }
            }
        }
        out.sort_by_key(|(id, _, _)| *id);
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> Result<(), BodyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BodyError::io(dir, "syncing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_stored_once_by_content_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path()).unwrap();
        let body = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n".repeat(3000);
        let stored = store.put(&mut &body[..], 1 << 20, None).unwrap();
        assert_eq!(
            (stored.id, stored.size, stored.written),
            (BodyId::of(&body), body.len() as u64, true)
        );
        // The same bytes again: stored once.
        let again = store.put(&mut &body[..], 1 << 20, None).unwrap();
        assert_eq!((again.id, again.written), (stored.id, false));
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temporary file left"
        );
        let mut read = Vec::new();
        store
            .read(&stored.id)
            .unwrap()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, body);
        assert!(store.read(&BodyId([9; 16])).unwrap().is_none());
    }

    #[test]
    fn a_flipped_byte_is_never_served_and_the_copy_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path()).unwrap();
        let stored = store.put(&mut &b"a body"[..], 100, None).unwrap();
        let path = store.path_of(&stored.id);
        let mut bytes = fs::read(&path).unwrap();
        bytes[2] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(store.read(&stored.id), Err(BodyError::Damaged { .. })));
        assert!(!store.has(&stored.id), "moved aside");
        assert_eq!(store.damaged_count(), 1);
        assert_eq!(fs::read_dir(dir.path().join("quarantine")).unwrap().count(), 1);
    }

    #[test]
    fn bytes_read_whole_are_checked_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path()).unwrap();
        let good = store.put(&mut &b"a good body"[..], 100, None).unwrap();
        let bad = store.put(&mut &b"a bad body"[..], 100, None).unwrap();
        assert_eq!(
            store.read_bytes(&good.id).unwrap().as_deref(),
            Some(&b"a good body"[..])
        );
        assert!(store.read_bytes(&BodyId([9; 16])).unwrap().is_none());
        let path = store.path_of(&bad.id);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            store.read_bytes(&bad.id),
            Err(BodyError::Damaged { .. })
        ));
        assert!(!store.has(&bad.id), "moved aside");
        assert_eq!(store.damaged_count(), 1);
    }

    #[test]
    fn too_large_and_mismatched_bodies_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.put(&mut &[7u8; 101][..], 100, None),
            Err(BodyError::TooLarge { max: 100 })
        ));
        let wrong = BodyId([1; 16]);
        assert!(matches!(
            store.put(&mut &b"x"[..], 100, Some(wrong)),
            Err(BodyError::Mismatch { .. })
        ));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    /// A put of a body already present refreshes its modification time (else a re-delivery of
    /// an old, unreferenced body could be collected right after it was acknowledged), and a
    /// removal with a cutoff before that time keeps it.
    #[test]
    fn a_put_again_refreshes_the_time_and_stale_removal_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = BodyStore::open(dir.path()).unwrap();
        let stored = store.put(&mut &b"old body"[..], 100, None).unwrap();
        let path = store.path_of(&stored.id);
        let old = SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(store.list().unwrap()[0].2, old);
        let cutoff = SystemTime::now() - std::time::Duration::from_secs(3600);

        let again = store.put(&mut &b"old body"[..], 100, None).unwrap();
        assert!(!again.written);
        let refreshed = store.list().unwrap()[0].2;
        assert!(refreshed > cutoff, "refreshed to now: {refreshed:?}");
        assert_eq!(store.remove_if_stale(&stored.id, cutoff).unwrap(), Removal::Fresh);
        assert!(store.has(&stored.id));

        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(
            store.remove_if_stale(&stored.id, cutoff).unwrap(),
            Removal::Removed { bytes: 8 }
        );
        assert!(!store.has(&stored.id));
        assert_eq!(
            store.remove_if_stale(&stored.id, cutoff).unwrap(),
            Removal::Absent
        );
    }

    #[test]
    fn ids_print_and_parse() {
        let id = BodyId::of(b"x");
        assert_eq!(BodyId::parse(&id.hex()), Some(id));
        assert_eq!(BodyId::parse("xyz"), None);
        assert_eq!(BodyId::parse(&"g".repeat(32)), None);
    }
}
