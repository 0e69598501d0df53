//! The body journal: how a small body becomes durable with one shared `fdatasync` instead of
//! two `fsync`s of its own (ARCHITECTURE.md §3, "A delivery").
//!
//! [`BodyStore::put_small`](super::BodyStore::put_small) writes the body's file into place
//! without syncing it, then appends a record (the body's id, length and bytes) to the active
//! journal segment under `blobs/journal/` and syncs the segment: every append made while a sync
//! runs is covered by the next one, so concurrent puts share it (a group commit). Once the sync
//! returns, the body survives a crash: either its file made it to disk, or the journal replays
//! it into place when the store opens.
//!
//! Segments are written full of zeros and synced before their first record (the next one on a
//! thread of its own while the active one fills), so an append overwrites allocated blocks and
//! its `fdatasync` writes data, not the file's size and extents as well.
//!
//! A segment that reaches [`SEGMENT_BYTES`] is synced, replaced by the next, and *checkpointed*
//! by a thread of its own: the files its records named are synced (with their directories),
//! then the segment is deleted. A checkpoint cut short (a crash) leaves the segment, replayed
//! at the next open.
//!
//! **Replay** ([`replay`]) reads each segment in order; every whole record whose bytes hash to
//! its id is put in place durably unless a good copy is there already, then the segment goes.
//! The zeros after the last record end it quietly; a record cut short at a segment's end (a
//! crash during its append, so never acknowledged) ends that segment's replay too, logged with
//! the bytes it skipped.
//!
//! Record layout: `DVJ1` (4 bytes), the body's length (u32, little-endian), its id (16 bytes),
//! its bytes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::id::{hash_reader, BodyError, BodyId};

/// A segment's size: an append that would go past it goes to a new segment (one record longer
/// than this makes its segment longer).
pub const SEGMENT_BYTES: u64 = 4 << 20;

pub(super) const MAGIC: &[u8; 4] = b"DVJ1";
pub(super) const HEADER: usize = 4 + 4 + 16;

/// The active segment.
struct Active {
    seq: u64,
    file: Arc<File>,
    len: u64,
    /// The bodies its records name (their files, synced by the checkpoint).
    ids: Vec<BodyId>,
}

/// How far the journal is known durable.
#[derive(Default)]
struct Synced {
    seq: u64,
    upto: u64,
}

/// A store's journal (see the module's documentation).
pub struct Journal {
    dir: PathBuf,
    /// The store's directory (where the checkpoint finds the bodies' files).
    blobs: PathBuf,
    active: Mutex<Active>,
    synced: Mutex<Synced>,
    /// The next segment, zeroed and synced in advance (by a thread of its own).
    next: Arc<NextSlot>,
    /// The zeroing and checkpoint threads still running: joined when the journal is dropped,
    /// so none of them writes or deletes a segment of the journal opened after it.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Journal {
    fn drop(&mut self) {
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The next segment's preparation: set to `Zeroing` before its thread starts, so a rotation
/// waits for it rather than creating the same segment at the same time.
#[derive(Default)]
struct NextSlot {
    state: Mutex<Next>,
    ready: std::sync::Condvar,
}

#[derive(Default)]
enum Next {
    #[default]
    Idle,
    Zeroing(u64),
    Ready(u64, File),
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}"))
}

/// Where a segment is zeroed before it is renamed into place (removed at open if a crash left it).
fn preparing_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.zeroing"))
}

/// The segments in `dir`, oldest first.
pub(super) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, BodyError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| BodyError::io(dir, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BodyError::io(dir, "listing", e))?;
        let name = entry.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("seg-"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What [`replay`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub segments: u64,
    pub records: u64,
    /// Records whose file was missing or damaged and was rewritten from the journal.
    pub restored: u64,
    /// Bytes after a record cut short (never acknowledged), skipped.
    pub skipped_bytes: u64,
}

/// Replays every segment in `dir` into the store at `blobs` with `put` (a durable put of the
/// bytes, expecting the id), deletes the segments, and returns what it did.
pub fn replay(
    dir: &Path,
    blobs: &Path,
    mut put: impl FnMut(&[u8], BodyId) -> Result<(), BodyError>,
) -> Result<Replayed, BodyError> {
    let mut report = Replayed::default();
    for (_, path) in segments(dir)? {
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| BodyError::io(&path, "reading", e))?;
        let mut at = 0usize;
        while at < bytes.len() {
            let Some((id, body)) = record_at(&bytes[at..]) else {
                break;
            };
            at += HEADER + body.len();
            report.records += 1;
            let target = blobs.join(&id.hex()[..2]).join(id.hex());
            let good = File::open(&target)
                .and_then(|mut f| hash_reader(&mut f))
                .is_ok_and(|actual| actual == id);
            if good {
                sync_path(&target)?;
                if let Some(parent) = target.parent() {
                    sync_path(parent)?;
                }
            } else {
                // Missing, or what a crash left of an unsynced write: put the journal's copy.
                match fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(BodyError::io(&target, "removing", e)),
                }
                put(body, id)?;
                report.restored += 1;
            }
        }
        if bytes[at..].iter().any(|&b| b != 0) {
            report.skipped_bytes += (bytes.len() - at) as u64;
            tracing::warn!(
                segment = %path.display(),
                skipped_bytes = bytes.len() - at,
                "the body journal ends with a record cut short (an append a crash interrupted, never acknowledged); skipped"
            );
        }
        fs::remove_file(&path).map_err(|e| BodyError::io(&path, "removing", e))?;
        report.segments += 1;
    }
    sync_path(dir)?;
    Ok(report)
}

/// The whole record at the start of `bytes` whose body hashes to its id, if there is one.
fn record_at(bytes: &[u8]) -> Option<(BodyId, &[u8])> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let id = BodyId(bytes[8..HEADER].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (BodyId::of(body) == id).then_some((id, body))
}

impl Journal {
    /// Opens the journal in `dir` (which [`replay`] has emptied) with a new segment.
    pub fn open(dir: PathBuf, blobs: PathBuf) -> Result<Journal, BodyError> {
        fs::create_dir_all(&dir).map_err(|e| BodyError::io(&dir, "creating", e))?;
        for entry in fs::read_dir(&dir)
            .map_err(|e| BodyError::io(&dir, "listing", e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".zeroing") {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| BodyError::io(&path, "removing", e))?;
            }
        }
        let seq = segments(&dir)?.last().map_or(0, |(seq, _)| seq + 1);
        let file = create_segment(&dir, seq)?;
        let journal = Journal {
            dir,
            blobs,
            active: Mutex::new(Active {
                seq,
                file: Arc::new(file),
                len: 0,
                ids: Vec::new(),
            }),
            synced: Mutex::new(Synced { seq, upto: 0 }),
            next: Arc::default(),
            threads: Mutex::default(),
        };
        journal.prepare(seq + 1);
        Ok(journal)
    }

    /// Zeroes segment `seq` on a thread of its own, for the next rotation.
    fn prepare(&self, seq: u64) {
        *self.next.state.lock().unwrap_or_else(PoisonError::into_inner) = Next::Zeroing(seq);
        let (dir, next) = (self.dir.clone(), self.next.clone());
        let spawned = std::thread::Builder::new()
            .name("body-journal-zeroing".into())
            .spawn(move || {
                let created = create_segment(&dir, seq);
                let mut state = next.state.lock().unwrap_or_else(PoisonError::into_inner);
                *state = match created {
                    Ok(file) => Next::Ready(seq, file),
                    Err(e) => {
                        tracing::warn!(error = %e, "zeroing the next body journal segment failed; the rotation will create it");
                        Next::Idle
                    }
                };
                next.ready.notify_all();
            });
        match spawned {
            Ok(thread) => self.keep(thread),
            Err(e) => {
                tracing::warn!(error = %e, "could not start zeroing the next body journal segment");
                *self.next.state.lock().unwrap_or_else(PoisonError::into_inner) = Next::Idle;
            }
        }
    }

    /// Keeps `thread` to be joined on drop (forgetting those that have finished).
    fn keep(&self, thread: std::thread::JoinHandle<()>) {
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }

    /// Segment `seq`, zeroed in advance (waiting for its thread if it is still at it), or now.
    fn take_next(&self, seq: u64) -> Result<File, BodyError> {
        let mut state = self.next.state.lock().unwrap_or_else(PoisonError::into_inner);
        while matches!(*state, Next::Zeroing(s) if s == seq) {
            state = self
                .next
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match std::mem::take(&mut *state) {
            Next::Ready(s, file) if s == seq => Ok(file),
            _ => create_segment(&self.dir, seq),
        }
    }

    /// Appends body `id`'s record and returns once it is durable (synced by this call or by
    /// one that started after the append).
    pub fn append(&self, id: BodyId, body: &[u8]) -> Result<(), BodyError> {
        let len = u32::try_from(body.len()).map_err(|_| BodyError::TooLarge {
            max: u64::from(u32::MAX),
        })?;
        let mut record = Vec::with_capacity(HEADER + body.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&id.0);
        record.extend_from_slice(body);
        let (seq, end) = {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            if active.len > 0 && active.len + record.len() as u64 > SEGMENT_BYTES {
                self.rotate(&mut active)?;
            }
            let path = segment_path(&self.dir, active.seq);
            active
                .file
                .write_all_at(&record, active.len)
                .map_err(|e| BodyError::io(&path, "appending to", e))?;
            active.len += record.len() as u64;
            active.ids.push(id);
            (active.seq, active.len)
        };
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if synced.seq > seq || (synced.seq == seq && synced.upto >= end) {
            return Ok(()); // a sync that started after the append covered it
        }
        let (file, upto) = {
            let active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            if active.seq != seq {
                return Ok(()); // rotated: the rotation synced the segment
            }
            (active.file.clone(), active.len)
        };
        file.sync_data()
            .map_err(|e| BodyError::io(&segment_path(&self.dir, seq), "syncing", e))?;
        *synced = Synced { seq, upto };
        Ok(())
    }

    /// Syncs the active segment, starts the next and hands the old one to a checkpoint thread.
    fn rotate(&self, active: &mut Active) -> Result<(), BodyError> {
        let old_path = segment_path(&self.dir, active.seq);
        active
            .file
            .sync_data()
            .map_err(|e| BodyError::io(&old_path, "syncing", e))?;
        let seq = active.seq + 1;
        let file = self.take_next(seq)?;
        self.prepare(seq + 1);
        let ids = std::mem::take(&mut active.ids);
        active.seq += 1;
        active.file = Arc::new(file);
        active.len = 0;
        let (dir, blobs) = (self.dir.clone(), self.blobs.clone());
        let thread = std::thread::Builder::new()
            .name("body-journal-checkpoint".into())
            .spawn(move || {
                if let Err(e) = checkpoint(&dir, &blobs, &old_path, &ids) {
                    tracing::warn!(segment = %old_path.display(), error = %e, "body journal checkpoint failed; the segment stays and is replayed at the next open");
                }
            })
            .map_err(|e| BodyError::io(&self.dir, "starting the checkpoint of", e))?;
        self.keep(thread);
        Ok(())
    }
}

/// Syncs the files (and their directories) of the bodies `ids` named in segment `path`, then
/// deletes it. A body gone since (collected, or moved aside) is skipped.
fn checkpoint(dir: &Path, blobs: &Path, path: &Path, ids: &[BodyId]) -> Result<(), BodyError> {
    let mut parents = std::collections::BTreeSet::new();
    for id in ids {
        let hex = id.hex();
        let target = blobs.join(&hex[..2]).join(&hex);
        match File::open(&target) {
            Ok(file) => file
                .sync_all()
                .map_err(|e| BodyError::io(&target, "syncing", e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BodyError::io(&target, "opening", e)),
        }
        parents.insert(blobs.join(&hex[..2]));
    }
    for parent in parents {
        sync_path(&parent)?;
    }
    fs::remove_file(path).map_err(|e| BodyError::io(path, "removing", e))?;
    sync_path(dir)
}

/// Creates segment `seq`: [`SEGMENT_BYTES`] of zeros, synced, renamed into place; on a disk
/// too full for that, an empty one (its appends then grow it, each sync a little dearer).
fn create_segment(dir: &Path, seq: u64) -> Result<File, BodyError> {
    match create_zeroed(dir, seq) {
        Err(e) if e.is_out_of_space() => {
            let _ = fs::remove_file(preparing_path(dir, seq));
            tracing::warn!(error = %e, "no room to zero a body journal segment; starting an empty one");
            let path = segment_path(dir, seq);
            let file = File::options()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| BodyError::io(&path, "creating", e))?;
            sync_path(dir)?;
            Ok(file)
        }
        created => created,
    }
}

fn create_zeroed(dir: &Path, seq: u64) -> Result<File, BodyError> {
    let (preparing, path) = (preparing_path(dir, seq), segment_path(dir, seq));
    let zeros = vec![0u8; 1 << 20];
    let file = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&preparing)
        .and_then(|mut file| {
            for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()?;
            Ok(file)
        })
        .map_err(|e| BodyError::io(&preparing, "zeroing", e))?;
    fs::rename(&preparing, &path).map_err(|e| BodyError::io(&path, "renaming into place", e))?;
    sync_path(dir)?;
    Ok(file)
}

/// Syncs the file or directory at `path`.
fn sync_path(path: &Path) -> Result<(), BodyError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| BodyError::io(path, "syncing", e))
}
