//! `GroupStateMachine`: a group's state in a directory of memory-mapped files, with crash recovery.
//!
//! ```text
//! <group dir>/
//!   LOCK             held (flock) by the process that has the group open
//!   live/            the current state: `manifest` and one `<guid>.idx` per mailbox
//!   live/DIRTY       exists while live/ may hold changes not yet flushed
//!   checkpoint.snap  the last checkpoint: a snapshot stream (see `snapshot`)
//!   incoming/        a snapshot being unpacked; `incoming/COMPLETE` once whole and synced
//! ```
//!
//! **Recovery protocol.** The Raft log is the write-ahead log; index files are derived state,
//! changed in place through their mappings. Before the first change after a flush, `live/DIRTY`
//! is created and synced. `flush` syncs every changed file and the manifest, then removes `DIRTY`.
//! A flush may be split so that the syncs run while the group goes on applying
//! ([`begin_flush`](GroupStateMachine::begin_flush), [`PendingFlush::sync`],
//! [`finish_flush`](GroupStateMachine::finish_flush)): `DIRTY` is then removed only if nothing
//! changed since the flush began (the syncs cover the state as it was then, not later changes).
//! So after a crash — kill -9 or power loss, torn pages included — `live/` is either clean at the
//! manifest's applied position, or marked dirty. A dirty `live/` is never trusted: it is replaced
//! by the checkpoint (or by an empty group if there is none), and the caller replays the log after
//! `applied()`. A checkpoint newer than a clean `live/` (a snapshot install cut short) also wins.
//! Callers must keep the log from the checkpoint's position on: that is all recovery needs.
//!
//! Replacing `live/` is two renames (`live` -> `retired`, `incoming` -> `live`) after `incoming/`
//! is complete and synced; `open` finishes or discards a switch that a crash interrupted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::SmError;
use super::group_state::{GroupState, MailboxFiles};
use super::manifest::Manifest;
use super::snapshot::{
    check_files_match, check_index_against_manifest, index_file_name, parse_index_file_name, SnapshotReader,
    StreamCheck, MANIFEST_FILE,
};
use crate::index::{LogPosition, MailboxIndex, MmapStorage};
use crate::txn::{Guid, Outcome, Rejection, Txn};

pub(super) const LIVE: &str = "live";
const INCOMING: &str = "incoming";
const RETIRED: &str = "retired";
const DIRTY: &str = "DIRTY";
const COMPLETE: &str = "COMPLETE";
const CHECKPOINT: &str = "checkpoint.snap";
const CHECKPOINT_TMP: &str = "checkpoint.snap.tmp";
/// A checkpoint being written by a [`PendingCheckpoint`]: `checkpoint.snap.build-<stamp>`.
const CHECKPOINT_BUILD_PREFIX: &str = "checkpoint.snap.build-";
/// The manifest a [`PendingFlush`] writes in `live/`: `manifest.flush-<seq>`.
const MANIFEST_FLUSH_PREFIX: &str = "manifest.flush-";

/// Mailbox files in a `live/` directory, memory-mapped.
#[derive(Debug)]
pub struct DirFiles {
    live: PathBuf,
}

impl MailboxFiles for DirFiles {
    type Storage = MmapStorage;
    fn create(&mut self, mailbox_guid: &Guid, image: &[u8]) -> Result<MmapStorage, SmError> {
        Ok(MmapStorage::create(
            &self.live.join(index_file_name(mailbox_guid)),
            image,
        )?)
    }
    fn remove(&mut self, mailbox_guid: &Guid) -> Result<(), SmError> {
        let path = self.live.join(index_file_name(mailbox_guid));
        fs::remove_file(&path).map_err(|e| SmError::io(path, "removing", e))
    }
    /// Writes the new image beside the file (allocated, synced), then renames it over the old
    /// one: the old file stays whole until the rename. `live/` is dirty meanwhile (a change is
    /// being applied), so a crash restores the checkpoint and replays the log.
    fn replace(&mut self, mailbox_guid: &Guid, image: &[u8]) -> Result<MmapStorage, SmError> {
        let path = self.live.join(index_file_name(mailbox_guid));
        let beside = path.with_extension("idx.upgrade");
        let _ = fs::remove_file(&beside);
        let mut storage = MmapStorage::create(&beside, image)?;
        if let Err(e) = crate::index::Storage::flush(&mut storage) {
            let _ = fs::remove_file(&beside);
            return Err(e.into());
        }
        drop(storage);
        rename(&beside, &path)?;
        Ok(MmapStorage::open(&path)?)
    }
}

/// What `open` found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// A new, empty group.
    Fresh,
    /// `live/` was clean; nothing to do.
    Clean,
    /// `live/` was replaced by the checkpoint (or emptied, if there was none).
    Restored {
        checkpoint: Option<LogPosition>,
        reason: String,
    },
}

/// What `open` decided to do with `live/`.
enum Plan {
    Clean,
    Fresh,
    Restore(&'static str),
}

/// Where a checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    pub applied: Option<LogPosition>,
    pub bytes: u64,
    pub path: PathBuf,
}

/// One group's state machine on disk.
#[derive(Debug)]
pub struct GroupStateMachine {
    pub(super) dir: PathBuf,
    pub(super) state: GroupState<DirFiles>,
    /// Invariant: `Some` iff `live/DIRTY` exists; when it was created.
    dirty: Option<Instant>,
    recovery: Recovery,
    /// Stamps order checkpoint writes by the state they hold: every [`begin_checkpoint`] and
    /// snapshot install takes the next one, with the state borrowed mutably, so a larger stamp
    /// means a state at least as new (a repair at the same applied position included).
    ///
    /// [`begin_checkpoint`]: GroupStateMachine::begin_checkpoint
    next_stamp: u64,
    /// The stamp of the checkpoint file in place (0: the one found at open, or none). Its
    /// lock serializes the renames onto `checkpoint.snap`; a pending checkpoint replaces the
    /// file only with a larger stamp, so the checkpoint never goes back to an older state.
    in_place: Arc<Mutex<u64>>,
    /// Counts changes: taken by every [`mark_dirty`](Self::mark_dirty) (which comes before
    /// every change) and snapshot install. A [`PendingFlush`] clears the dirty mark only if it
    /// is still the one it began at.
    generation: u64,
    /// Names the manifest files of pending flushes apart.
    flush_seq: u64,
    _lock: File,
}

/// A checkpoint whose file is written but not yet synced or in place: the slow half of
/// [`GroupStateMachine::checkpoint`], which needs no access to the group and so runs while the
/// group goes on applying. Dropped unfinished, it removes its file.
#[derive(Debug)]
pub struct PendingCheckpoint {
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    /// Set once the file is `checkpoint.snap`: from then on it is not this one's to remove.
    in_place_now: bool,
    applied: Option<LogPosition>,
    bytes: u64,
    stamp: u64,
    in_place: Arc<Mutex<u64>>,
}

impl PendingCheckpoint {
    /// Syncs the file and renames it into place as the group's checkpoint, unless a checkpoint
    /// of a newer state (a later build, or an installed snapshot) took the place meanwhile:
    /// then this one is removed. Returns the checkpoint in place either way.
    pub fn finish(mut self) -> Result<CheckpointInfo, SmError> {
        let file = self.file.take().expect("a pending checkpoint finishes once");
        file.sync_all()
            .map_err(|e| SmError::io(&self.tmp, "syncing", e))?;
        drop(file);
        let path = self.dir.join(CHECKPOINT);
        let mut in_place = self.in_place.lock().unwrap_or_else(PoisonError::into_inner);
        if self.stamp > *in_place {
            rename(&self.tmp, &path)?;
            *in_place = self.stamp;
            self.in_place_now = true;
            sync_dir(&self.dir)?;
            return Ok(CheckpointInfo {
                applied: self.applied,
                bytes: self.bytes,
                path,
            });
        }
        fs::remove_file(&self.tmp).map_err(|e| SmError::io(&self.tmp, "removing", e))?;
        let header = read_checkpoint_header(&path)?.ok_or_else(|| {
            SmError::io(
                &path,
                "opening",
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "a newer checkpoint took its place, then vanished",
                ),
            )
        })?;
        let bytes = fs::metadata(&path)
            .map_err(|e| SmError::io(&path, "reading the size of", e))?
            .len();
        Ok(CheckpointInfo {
            applied: header.applied,
            bytes,
            path,
        })
    }
}

impl Drop for PendingCheckpoint {
    fn drop(&mut self) {
        // Unfinished, failed, or already removed as superseded (then this finds nothing).
        if !self.in_place_now {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A flush whose syncs run without borrowing the group: [`GroupStateMachine::begin_flush`]
/// takes, with the group borrowed, a handle to every changed index file, the manifest as it
/// stands and the group's change count; [`sync`](Self::sync) syncs the files and writes and
/// syncs the manifest beside the live one (the slow part, while the group goes on applying);
/// [`GroupStateMachine::finish_flush`], with the group borrowed again, puts the manifest in
/// place and removes the dirty mark if nothing changed meanwhile. Dropped unfinished, it
/// removes its manifest file.
#[derive(Debug)]
pub struct PendingFlush {
    live: PathBuf,
    /// The changed index files (their pages dirtied through the mappings included).
    files: Vec<(PathBuf, File)>,
    manifest: Vec<u8>,
    tmp: PathBuf,
    generation: u64,
    synced: bool,
    /// Set once the file is renamed onto `manifest`: not this one's to remove any more.
    in_place_now: bool,
}

impl PendingFlush {
    /// Syncs every changed index file and writes and syncs the manifest beside the live one.
    /// Needs no access to the group.
    pub fn sync(&mut self) -> Result<(), SmError> {
        for (path, file) in &self.files {
            file.sync_all().map_err(|e| SmError::io(path, "syncing", e))?;
        }
        write_file_synced(&self.tmp, &self.manifest)?;
        self.synced = true;
        Ok(())
    }
}

impl Drop for PendingFlush {
    fn drop(&mut self) {
        if !self.in_place_now {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl GroupStateMachine {
    /// Opens (creating if needed) the group in `dir`, recovering from any crash. The caller then
    /// replays the log after `applied()`.
    pub fn open(dir: &Path) -> Result<GroupStateMachine, SmError> {
        fs::create_dir_all(dir).map_err(|e| SmError::io(dir, "creating", e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SmError::io(&lock_path, "opening", e))?;
        lock.try_lock().map_err(|_| SmError::Locked {
            dir: dir.to_path_buf(),
        })?;
        let live = dir.join(LIVE);
        let incoming = dir.join(INCOMING);
        remove_dir_if_exists(&dir.join(RETIRED))?;
        if incoming.exists() {
            if !live.exists() && incoming.join(COMPLETE).exists() {
                rename(&incoming, &live)?;
                sync_dir(dir)?;
            } else {
                remove_dir_if_exists(&incoming)?;
            }
        }
        // A switch cut short after its renames (or finished just above) leaves its marker in
        // `live/`, which then holds the complete, synced directory: drop the marker to finish it.
        let complete = live.join(COMPLETE);
        if complete.exists() {
            fs::remove_file(&complete).map_err(|e| SmError::io(&complete, "removing", e))?;
            sync_dir(&live)?;
        }
        let _ = fs::remove_file(dir.join(CHECKPOINT_TMP));
        remove_unfinished_builds(dir)?;
        if live.exists() {
            // A pending flush's manifest, never put in place: nothing refers to it.
            remove_files_named(&live, |name| name.starts_with(MANIFEST_FLUSH_PREFIX))?;
        }
        let checkpoint = read_checkpoint_header(&dir.join(CHECKPOINT))?;
        let plan = if !live.exists() && checkpoint.is_none() {
            Plan::Fresh
        } else if !live.exists() {
            Plan::Restore("no live directory")
        } else if live.join(DIRTY).exists() {
            Plan::Restore("unclean shutdown: live/DIRTY present")
        } else {
            let manifest = read_manifest(&live)?;
            match checkpoint {
                Some(ck) if ck.applied > manifest.applied => Plan::Restore("checkpoint is newer than live/"),
                _ => Plan::Clean,
            }
        };
        let recovery = match plan {
            Plan::Clean => Recovery::Clean,
            Plan::Fresh => {
                replace_live(dir, |incoming| {
                    write_file_synced(&incoming.join(MANIFEST_FILE), &Manifest::default().encode())
                })?;
                Recovery::Fresh
            }
            Plan::Restore(reason) => {
                let checkpoint = restore_checkpoint(dir)?;
                tracing::warn!(dir = %dir.display(), reason, ?checkpoint, "restored group from its checkpoint");
                Recovery::Restored {
                    checkpoint,
                    reason: reason.to_string(),
                }
            }
        };
        let state = load_live(&live)?;
        Ok(GroupStateMachine {
            dir: dir.to_path_buf(),
            state,
            dirty: None,
            recovery,
            next_stamp: 1,
            in_place: Arc::new(Mutex::new(0)),
            generation: 0,
            flush_seq: 0,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `open` had to do.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The state, for reads.
    pub fn state(&self) -> &GroupState<DirFiles> {
        &self.state
    }

    pub fn applied(&self) -> Option<LogPosition> {
        self.state.applied()
    }

    /// The bodies the group's applied records name (`GroupState::referenced_bodies`).
    pub fn referenced_bodies(&self) -> std::collections::BTreeSet<crate::bodies::BodyId> {
        self.state.referenced_bodies()
    }

    /// The mailbox names `user` is subscribed to, in name order ([`GroupState::subscriptions`]).
    pub fn subscriptions(&self, user: &str) -> Vec<String> {
        self.state.subscriptions(user)
    }

    /// True while changes since the last flush are not yet durable in the files.
    pub fn is_dirty(&self) -> bool {
        self.dirty.is_some()
    }

    /// How long `live/` has been dirty (changed since the last flush); `None` if it is clean.
    pub fn dirty_for(&self) -> Option<Duration> {
        self.dirty.map(|since| since.elapsed())
    }

    /// Applies a committed transaction (see `GroupState::apply`).
    pub fn apply(&mut self, position: LogPosition, txn: &Txn) -> Result<Option<Outcome>, SmError> {
        if self.state.applied().is_some_and(|a| position.index <= a.index) {
            return Ok(None);
        }
        self.mark_dirty()?;
        self.state.apply(position, txn)
    }

    /// Applies the transactions of one log entry (see `GroupState::apply_batch`).
    pub fn apply_batch(
        &mut self,
        position: LogPosition,
        txns: &[Result<Txn, Rejection>],
    ) -> Result<Option<Vec<Outcome>>, SmError> {
        if self.state.applied().is_some_and(|a| position.index <= a.index) {
            return Ok(None);
        }
        self.mark_dirty()?;
        self.state.apply_batch(position, txns)
    }

    /// Applies a log entry without a transaction.
    pub fn apply_blank(&mut self, position: LogPosition) -> Result<bool, SmError> {
        if self.state.applied().is_some_and(|a| position.index <= a.index) {
            return Ok(false);
        }
        self.mark_dirty()?;
        self.state.apply_blank(position)
    }

    /// Stores the consensus layer's metadata for the position just applied; it becomes durable
    /// with the state it describes.
    pub fn set_consensus_meta(&mut self, consensus_meta: &[u8]) -> Result<(), SmError> {
        if self.state.manifest.consensus_meta != consensus_meta {
            self.mark_dirty()?;
            self.state.manifest.consensus_meta = consensus_meta.to_vec();
        }
        Ok(())
    }

    /// Called before every change of the state (it counts them: see `generation`).
    pub(super) fn mark_dirty(&mut self) -> Result<(), SmError> {
        self.generation += 1;
        if self.dirty.is_none() {
            let live = self.dir.join(LIVE);
            write_file_synced(&live.join(DIRTY), b"")?;
            sync_dir(&live)?;
            self.dirty = Some(Instant::now());
        }
        self.debug_assert_dirty_mark();
        Ok(())
    }

    /// `dirty`'s invariant: `Some` exactly when `live/DIRTY` exists (debug builds: a `stat`).
    fn debug_assert_dirty_mark(&self) {
        debug_assert_eq!(
            self.dirty.is_some(),
            self.dir.join(LIVE).join(DIRTY).exists(),
            "invariant: the dirty mark in memory and live/DIRTY agree ({})",
            self.dir.display()
        );
    }

    /// Makes everything applied so far durable in `live/`, and clears the dirty mark.
    pub fn flush(&mut self) -> Result<(), SmError> {
        let Some(mut pending) = self.begin_flush()? else {
            return Ok(());
        };
        pending.sync()?;
        let cleared = self.finish_flush(pending)?;
        debug_assert!(cleared, "nothing can change while the group is borrowed");
        Ok(())
    }

    /// The part of [`flush`](Self::flush) that reads the state: `None` if `live/` is clean,
    /// else what [`PendingFlush::sync`] needs (handles to the changed index files, the manifest
    /// as it stands, the change count). Cheap: no I/O but a `dup` per changed file.
    pub fn begin_flush(&mut self) -> Result<Option<PendingFlush>, SmError> {
        if self.dirty.is_none() {
            return Ok(None);
        }
        let live = self.dir.join(LIVE);
        let mut files = Vec::with_capacity(self.state.touched.len());
        for guid in &self.state.touched {
            if let Some(index) = self.state.mailboxes.get(guid) {
                let storage = index.storage();
                files.push((
                    crate::index::Storage::path(storage).to_path_buf(),
                    storage.sync_handle()?,
                ));
            }
        }
        self.flush_seq += 1;
        Ok(Some(PendingFlush {
            tmp: live.join(format!("{MANIFEST_FLUSH_PREFIX}{}", self.flush_seq)),
            live,
            files,
            manifest: self.state.manifest.encode(),
            generation: self.generation,
            synced: false,
            in_place_now: false,
        }))
    }

    /// The last part of a split flush: if nothing changed since [`begin_flush`](Self::begin_flush)
    /// (and `live/` is still dirty), puts the synced manifest in place, syncs the directory and
    /// removes the dirty mark (two directory syncs), and returns true. Otherwise the changes
    /// since are not known to be durable: the mark and the set of changed files stay for the
    /// next flush, the pending manifest is removed, and it returns false.
    pub fn finish_flush(&mut self, mut pending: PendingFlush) -> Result<bool, SmError> {
        if self.dirty.is_none() || pending.generation != self.generation || !pending.synced {
            return Ok(false);
        }
        let live = pending.live.clone();
        rename(&pending.tmp, &live.join(MANIFEST_FILE))?;
        pending.in_place_now = true;
        // The manifest durably in place (and created or removed index files durably there or
        // gone) before the mark is durably gone.
        sync_dir(&live)?;
        self.state.touched.clear();
        let dirty = live.join(DIRTY);
        fs::remove_file(&dirty).map_err(|e| SmError::io(dirty, "removing", e))?;
        sync_dir(&live)?;
        self.dirty = None;
        self.debug_assert_dirty_mark();
        Ok(true)
    }

    /// Writes the current state as the group's checkpoint (atomically replacing the last one).
    /// The log before the checkpoint's position is no longer needed for recovery.
    pub fn checkpoint(&mut self) -> Result<CheckpointInfo, SmError> {
        self.begin_checkpoint()?.finish()
    }

    /// The part of [`checkpoint`](Self::checkpoint) that reads the state: writes it to a file
    /// of its own (not yet synced). [`PendingCheckpoint::finish`] does the rest (the `fsync`,
    /// most of the time for a large group, and the rename) without borrowing the group.
    pub fn begin_checkpoint(&mut self) -> Result<PendingCheckpoint, SmError> {
        let stamp = self.take_stamp();
        let tmp = self.dir.join(format!("{CHECKPOINT_BUILD_PREFIX}{stamp}"));
        let file = File::create(&tmp).map_err(|e| SmError::io(&tmp, "creating", e))?;
        // From here on a failure drops `pending`, which removes the file.
        let mut pending = PendingCheckpoint {
            dir: self.dir.clone(),
            tmp,
            file: Some(file),
            in_place_now: false,
            applied: self.state.applied(),
            bytes: 0,
            stamp,
            in_place: self.in_place.clone(),
        };
        let mut out = BufWriter::with_capacity(1 << 20, pending.file.as_ref().expect("just set"));
        pending.bytes = self
            .state
            .export_snapshot(&mut out)
            .map_err(|e| SmError::io(&pending.tmp, "writing", e))?;
        out.flush().map_err(|e| SmError::io(&pending.tmp, "writing", e))?;
        drop(out);
        Ok(pending)
    }

    /// Writes the group as it stands, as a snapshot stream, to a file of its own that nothing else
    /// refers to: an unnamed temporary file in the group directory (`O_TMPFILE`), gone once
    /// closed, also after a crash. Returns the file (at its end), the position it covers and its
    /// length. For a backup, which streams it out while the group goes on applying; like
    /// [`begin_checkpoint`](Self::begin_checkpoint) it is written with the group borrowed.
    pub fn export_to_temp_file(&self) -> Result<(File, Option<LogPosition>, u64), SmError> {
        let file = tempfile::tempfile_in(&self.dir)
            .map_err(|e| SmError::io(&self.dir, "creating a temporary file in", e))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let bytes = self
            .state
            .export_snapshot(&mut out)
            .map_err(|e| SmError::io(&self.dir, "writing a copy of the group in", e))?;
        drop(out);
        Ok((file, self.state.applied(), bytes))
    }

    fn take_stamp(&mut self) -> u64 {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        stamp
    }

    /// The last checkpoint's path, if there is one.
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        let path = self.dir.join(CHECKPOINT);
        path.exists().then_some(path)
    }

    /// Replaces the whole group with the snapshot read from `input`: the stream becomes the new
    /// checkpoint and `live/`. Every file is checked before anything is switched; on error the
    /// group is unchanged.
    pub fn install_snapshot<R: Read>(&mut self, input: R) -> Result<Option<LogPosition>, SmError> {
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let file = File::create(&tmp).map_err(|e| SmError::io(&tmp, "creating", e))?;
        let mut tee = TeeReader {
            input,
            copy: BufWriter::with_capacity(1 << 20, file),
        };
        let unpacked = unpack_into(&self.dir.join(INCOMING), &mut tee);
        let unpacked = match unpacked {
            Ok(header) => header,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                remove_dir_if_exists(&self.dir.join(INCOMING))?;
                return Err(e);
            }
        };
        let file = tee
            .copy
            .into_inner()
            .map_err(|e| SmError::io(&tmp, "writing", e.into_error()))?;
        file.sync_all().map_err(|e| SmError::io(&tmp, "syncing", e))?;
        {
            // Newer than any checkpoint still being written: those are of the replaced state.
            let stamp = self.take_stamp();
            let mut in_place = self.in_place.lock().unwrap_or_else(PoisonError::into_inner);
            rename(&tmp, &self.dir.join(CHECKPOINT))?;
            sync_dir(&self.dir)?;
            *in_place = stamp;
        }
        switch_incoming(&self.dir)?;
        self.state = load_live(&self.dir.join(LIVE))?;
        self.dirty = None;
        // A flush pending on the replaced state must not clear a mark set after this.
        self.generation += 1;
        Ok(unpacked)
    }
}

/// Copies everything read from `input` into `copy`.
struct TeeReader<R: Read, W: Write> {
    input: R,
    copy: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn read_checkpoint_header(path: &Path) -> Result<Option<super::snapshot::SnapshotHeader>, SmError> {
    match File::open(path) {
        Ok(file) => Ok(Some(SnapshotReader::new(BufReader::new(file))?.header())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SmError::io(path, "opening", e)),
    }
}

/// Removes the files of checkpoints whose writing a crash cut short.
fn remove_unfinished_builds(dir: &Path) -> Result<(), SmError> {
    remove_files_named(dir, |name| name.starts_with(CHECKPOINT_BUILD_PREFIX))
}

/// Removes the files in `dir` whose names `matches`.
fn remove_files_named(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<(), SmError> {
    let entries = fs::read_dir(dir).map_err(|e| SmError::io(dir, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SmError::io(dir, "listing", e))?;
        if matches(&entry.file_name().to_string_lossy()) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| SmError::io(&path, "removing", e))?;
        }
    }
    Ok(())
}

/// Replaces `live/` with the checkpoint, or with an empty group if there is none.
fn restore_checkpoint(dir: &Path) -> Result<Option<LogPosition>, SmError> {
    let path = dir.join(CHECKPOINT);
    match File::open(&path) {
        Ok(file) => {
            let header = unpack_into(&dir.join(INCOMING), &mut BufReader::new(file))?;
            switch_incoming(dir)?;
            Ok(header)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            replace_live(dir, |incoming| {
                write_file_synced(&incoming.join(MANIFEST_FILE), &Manifest::default().encode())
            })?;
            Ok(None)
        }
        Err(e) => Err(SmError::io(path, "opening", e)),
    }
}

/// Unpacks a snapshot stream into a fresh `incoming` directory, checking every file, syncing
/// them, and marking the directory complete. Returns the snapshot's applied position.
fn unpack_into<R: Read>(incoming: &Path, input: &mut R) -> Result<Option<LogPosition>, SmError> {
    remove_dir_if_exists(incoming)?;
    fs::create_dir_all(incoming).map_err(|e| SmError::io(incoming, "creating", e))?;
    let mut reader = SnapshotReader::new(input)?;
    let header = reader.header();
    let mut check = StreamCheck::new(header);
    while let Some((name, bytes)) = reader.next_file()? {
        let file = check.file(&name, bytes)?;
        write_file_synced(&incoming.join(&name), file.bytes())?;
    }
    check.finish()?;
    write_file_synced(&incoming.join(COMPLETE), b"")?;
    sync_dir(incoming)?;
    Ok(header.applied)
}

/// Builds `incoming/` with `fill`, then switches it in as `live/`.
fn replace_live(dir: &Path, fill: impl FnOnce(&Path) -> Result<(), SmError>) -> Result<(), SmError> {
    let incoming = dir.join(INCOMING);
    remove_dir_if_exists(&incoming)?;
    fs::create_dir_all(&incoming).map_err(|e| SmError::io(&incoming, "creating", e))?;
    fill(&incoming)?;
    write_file_synced(&incoming.join(COMPLETE), b"")?;
    sync_dir(&incoming)?;
    switch_incoming(dir)
}

/// `live` -> `retired`, `incoming` -> `live`, then drops `retired`.
fn switch_incoming(dir: &Path) -> Result<(), SmError> {
    let live = dir.join(LIVE);
    let retired = dir.join(RETIRED);
    if live.exists() {
        rename(&live, &retired)?;
    }
    rename(&dir.join(INCOMING), &live)?;
    sync_dir(dir)?;
    remove_dir_if_exists(&retired)?;
    let complete = live.join(COMPLETE);
    fs::remove_file(&complete).map_err(|e| SmError::io(complete, "removing", e))?;
    sync_dir(&live)
}

fn read_manifest(live: &Path) -> Result<Manifest, SmError> {
    let path = live.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(|e| SmError::io(&path, "reading", e))?;
    Manifest::decode(&path, &bytes)
}

/// Opens every file of a clean `live/` directory.
fn load_live(live: &Path) -> Result<GroupState<DirFiles>, SmError> {
    let manifest = read_manifest(live)?;
    let mut mailboxes = BTreeMap::new();
    let entries = fs::read_dir(live).map_err(|e| SmError::io(live, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SmError::io(live, "listing", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == MANIFEST_FILE
            || name == DIRTY
            || name == "manifest.tmp"
            || name.starts_with(MANIFEST_FLUSH_PREFIX)
        {
            continue;
        }
        let guid = parse_index_file_name(&name).ok_or_else(|| SmError::Inconsistent {
            dir: live.to_path_buf(),
            reason: format!("unexpected file {name:?}"),
        })?;
        let index = MailboxIndex::open(MmapStorage::open(&entry.path())?)?;
        if index.header().mailbox_guid != guid {
            return Err(SmError::Inconsistent {
                dir: live.to_path_buf(),
                reason: format!("{name} holds the index of another mailbox"),
            });
        }
        check_index_against_manifest(index.header(), &manifest).map_err(|reason| SmError::Inconsistent {
            dir: live.to_path_buf(),
            reason: format!("{name}: {reason}"),
        })?;
        mailboxes.insert(guid, index);
    }
    check_files_match(&manifest, mailboxes.keys().copied().collect()).map_err(|e| SmError::Inconsistent {
        dir: live.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(GroupState::new(
        DirFiles {
            live: live.to_path_buf(),
        },
        manifest,
        mailboxes,
    ))
}

pub(super) fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), SmError> {
    let mut file = File::create(path).map_err(|e| SmError::io(path, "creating", e))?;
    file.write_all(bytes)
        .map_err(|e| SmError::io(path, "writing", e))?;
    file.sync_all().map_err(|e| SmError::io(path, "syncing", e))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), SmError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SmError::io(dir, "syncing directory", e))
}

pub(super) fn rename(from: &Path, to: &Path) -> Result<(), SmError> {
    fs::rename(from, to).map_err(|e| SmError::io(from, "renaming", e))
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), SmError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SmError::io(dir, "removing", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::test_txns::{append, create_inbox};

    /// A group with INBOX created at index 1 and `appends` messages at 2, 3, ...
    fn group(dir: &Path, appends: u64) -> GroupStateMachine {
        let mut machine = GroupStateMachine::open(dir).unwrap();
        machine.apply(LogPosition::new(1, 1), &create_inbox()).unwrap();
        for i in 0..appends {
            machine
                .apply(LogPosition::new(1, 2 + i), &append("c", 2 + i, (2 + i) as u8))
                .unwrap();
        }
        machine
    }

    fn applied_index(info: &CheckpointInfo) -> u64 {
        info.applied.unwrap().index
    }

    fn build_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(CHECKPOINT_BUILD_PREFIX))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_pending_checkpoint_holds_the_state_it_began_with_while_the_group_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 2);
        let pending = machine.begin_checkpoint().unwrap();
        // The group is not borrowed by the pending checkpoint: it applies on meanwhile.
        machine.apply(LogPosition::new(1, 4), &append("c", 4, 4)).unwrap();
        let info = pending.finish().unwrap();
        assert_eq!(applied_index(&info), 3);
        assert_eq!(
            read_checkpoint_header(&info.path).unwrap().unwrap().applied,
            info.applied
        );
        assert_eq!(info.bytes, fs::metadata(&info.path).unwrap().len());
        assert!(build_files(dir.path()).is_empty());
        // After a crash the group restores from it and would replay the log from index 4.
        drop(machine);
        fs::write(dir.path().join(LIVE).join(DIRTY), b"").unwrap();
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert!(matches!(reopened.recovery(), Recovery::Restored { .. }));
        assert_eq!(reopened.applied(), Some(LogPosition::new(1, 3)));
    }

    #[test]
    fn an_older_pending_checkpoint_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        let older = machine.begin_checkpoint().unwrap();
        machine.apply(LogPosition::new(1, 3), &append("c", 3, 3)).unwrap();
        let newer = machine.begin_checkpoint().unwrap();
        assert_eq!(build_files(dir.path()).len(), 2);
        assert_eq!(applied_index(&newer.finish().unwrap()), 3);
        // The older one finishes last: it is dropped and reports the checkpoint in place.
        let info = older.finish().unwrap();
        assert_eq!(applied_index(&info), 3);
        assert_eq!(
            read_checkpoint_header(&info.path)
                .unwrap()
                .unwrap()
                .applied
                .unwrap()
                .index,
            3
        );
        assert!(build_files(dir.path()).is_empty());
    }

    #[test]
    fn a_checkpoint_begun_before_an_install_does_not_replace_the_installed_state() {
        let source = tempfile::tempdir().unwrap();
        let leader = group(source.path(), 5);
        let mut snapshot = Vec::new();
        leader.state().export_snapshot(&mut snapshot).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        let stale = machine.begin_checkpoint().unwrap();
        assert_eq!(
            machine.install_snapshot(&snapshot[..]).unwrap(),
            Some(LogPosition::new(1, 6))
        );
        let info = stale.finish().unwrap();
        assert_eq!(
            applied_index(&info),
            6,
            "the installed snapshot stays the checkpoint"
        );
        assert!(build_files(dir.path()).is_empty());
        // A checkpoint begun after the install replaces it, as usual.
        machine.apply(LogPosition::new(1, 7), &append("c", 7, 7)).unwrap();
        assert_eq!(applied_index(&machine.checkpoint().unwrap()), 7);
    }

    #[test]
    fn a_later_checkpoint_at_the_same_position_wins() {
        // A repair changes a mailbox without a new applied position; the checkpoint taken after
        // it must not be replaced by one begun before it.
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        // (Here the change is the consensus metadata, which the snapshot carries too.)
        let before = machine.begin_checkpoint().unwrap();
        machine
            .set_consensus_meta(b"changed at the same position")
            .unwrap();
        let after = machine.begin_checkpoint().unwrap();
        let after_file = fs::read(&after.tmp).unwrap();
        assert_ne!(fs::read(&before.tmp).unwrap(), after_file);
        after.finish().unwrap();
        before.finish().unwrap();
        assert_eq!(fs::read(dir.path().join(CHECKPOINT)).unwrap(), after_file);
    }

    #[test]
    fn unfinished_checkpoint_files_are_removed_when_dropped_and_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        let pending = machine.begin_checkpoint().unwrap();
        assert_eq!(build_files(dir.path()).len(), 1);
        drop(pending);
        assert!(build_files(dir.path()).is_empty());
        assert!(machine.checkpoint_path().is_none());
        // A crash in the middle of a build leaves its file: the next open removes it.
        machine.flush().unwrap();
        let pending = machine.begin_checkpoint().unwrap();
        std::mem::forget(pending);
        drop(machine);
        assert_eq!(build_files(dir.path()).len(), 1);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert!(build_files(dir.path()).is_empty());
        assert_eq!(reopened.applied(), Some(LogPosition::new(1, 2)));
    }

    /// The mailbox and message counts kept on apply equal a full recount after every op of a
    /// mixed sequence (creates, appends, deliveries, expunges, copies, moves, a rename of a
    /// mailbox with a child, deletes of full mailboxes, refused ops), on disk; and after the
    /// group is reopened, and after a snapshot of it is installed over another group's state
    /// or imported in memory.
    #[test]
    fn counts_kept_on_apply_equal_a_recount() {
        use crate::state_machine::{GroupCounts, GroupState};
        use crate::txn::encoding::CURRENT_ENCODING;
        use crate::txn::{NewMessage, UidSet};
        use crate::txn::{Op, Txn};

        let user = || "u".to_string();
        let uids = |text: &str| UidSet::parse(text).unwrap();
        let messages = |first: u8, n: u8| -> Vec<NewMessage> {
            (first..first + n)
                .map(|g| NewMessage {
                    guid: [g; 16],
                    size: 10,
                    internal_date: 1_700_000_000,
                    flags: Vec::new(),
                })
                .collect()
        };
        let create = |mailbox: &str, guid: u8| Op::CreateMailbox {
            user: user(),
            mailbox: mailbox.into(),
            mailbox_guid: [guid; 16],
            uid_validity: 9,
        };
        // (op, mailboxes and messages after it)
        let ops: Vec<(Op, GroupCounts)> = vec![
            (
                Op::SetEncoding {
                    version: CURRENT_ENCODING,
                },
                (0, 0),
            ),
            (create("INBOX", 1), (1, 0)),
            (create("A", 2), (2, 0)),
            (create("A/B", 3), (3, 0)),
            (create("INBOX", 4), (3, 0)), // refused: exists
            (
                Op::Append {
                    user: user(),
                    mailbox: "INBOX".into(),
                    messages: messages(10, 3),
                },
                (3, 3),
            ),
            (
                Op::Deliver {
                    user: user(),
                    mailbox: "A".into(),
                    messages: messages(20, 2),
                    bodies: vec![[7; 16], [8; 16]],
                },
                (3, 5),
            ),
            (
                Op::Append {
                    user: user(),
                    mailbox: "Nowhere".into(),
                    messages: messages(30, 1),
                },
                (3, 5),
            ),
            (
                Op::Expunge {
                    user: user(),
                    mailbox: "INBOX".into(),
                    uids: uids("2"),
                    expected_guids: Vec::new(),
                },
                (3, 4),
            ),
            (
                Op::Copy {
                    user: user(),
                    from: "INBOX".into(),
                    to: "A".into(),
                    uids: uids("1:3"),
                },
                (3, 6),
            ),
            (
                Op::Copy {
                    user: user(),
                    from: "INBOX".into(),
                    to: "INBOX".into(),
                    uids: uids("1:3"),
                },
                (3, 8),
            ),
            (
                Op::Move {
                    user: user(),
                    from: "A".into(),
                    to: "A/B".into(),
                    uids: uids("1:2"),
                },
                (3, 8),
            ),
            (
                Op::Store {
                    user: user(),
                    mailbox: "INBOX".into(),
                    uids: uids("1:10"),
                    mode: crate::txn::StoreMode::Add,
                    flags: vec!["\\Seen".into()],
                    unchanged_since: None,
                },
                (3, 8),
            ),
            (
                Op::RenameMailbox {
                    user: user(),
                    from: "A".into(),
                    to: "C".into(),
                },
                (3, 8),
            ),
            (
                Op::DeleteMailbox {
                    user: user(),
                    mailbox: "C".into(),
                },
                (3, 8),
            ), // refused: a child
            (
                Op::DeleteMailbox {
                    user: user(),
                    mailbox: "C/B".into(),
                },
                (2, 6),
            ),
            (
                Op::DeleteMailbox {
                    user: user(),
                    mailbox: "C".into(),
                },
                (1, 4),
            ),
            (create("D", 5), (2, 4)),
            (
                Op::Expunge {
                    user: user(),
                    mailbox: "INBOX".into(),
                    uids: uids("1:20"),
                    expected_guids: Vec::new(),
                },
                (2, 0),
            ),
            (
                Op::Append {
                    user: user(),
                    mailbox: "D".into(),
                    messages: messages(40, 4),
                },
                (2, 4),
            ),
        ]
        .into_iter()
        .map(|(op, (mailboxes, messages))| (op, GroupCounts { mailboxes, messages }))
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut sm = GroupStateMachine::open(dir.path()).unwrap();
        for (i, (op, expected)) in ops.into_iter().enumerate() {
            let txn = Txn {
                client_id: "c".into(),
                request_seq: i as u64 + 1,
                op,
            };
            let outcome = sm
                .apply(LogPosition::new(1, i as u64 + 1), &txn)
                .unwrap()
                .unwrap();
            let counts = sm.state().counts();
            assert_eq!(counts, sm.state().recount(), "after {txn:?}: {outcome:?}");
            assert_eq!(counts, expected, "after {txn:?}: {outcome:?}");
        }
        let counts = sm.state().counts();
        sm.flush().unwrap();
        drop(sm);
        let mut sm = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.state().counts(), counts, "reopened");
        let mut stream = Vec::new();
        sm.state().export_snapshot(&mut stream).unwrap();
        assert_eq!(
            GroupState::import_snapshot(stream.as_slice()).unwrap().counts(),
            counts
        );
        // Installed over a group holding something else.
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = GroupStateMachine::open(other_dir.path()).unwrap();
        other.apply(LogPosition::new(1, 1), &create_inbox()).unwrap();
        other.apply(LogPosition::new(1, 2), &append("c", 2, 1)).unwrap();
        assert_eq!(
            other.state().counts(),
            GroupCounts {
                mailboxes: 1,
                messages: 1
            }
        );
        other.install_snapshot(stream.as_slice()).unwrap();
        assert_eq!(other.state().counts(), counts, "installed");
        assert_eq!(other.state().recount(), counts);
        // And it goes on counting from there.
        let next = LogPosition::new(1, sm.state().applied().unwrap().index + 1);
        let txn = Txn {
            client_id: "d".into(),
            request_seq: 1,
            op: Op::DeleteMailbox {
                user: user(),
                mailbox: "D".into(),
            },
        };
        other.apply(next, &txn).unwrap().unwrap();
        assert_eq!(
            other.state().counts(),
            GroupCounts {
                mailboxes: 1,
                messages: 0
            }
        );
        sm.apply(next, &txn).unwrap().unwrap();
        assert_eq!(sm.state().counts(), other.state().counts());
    }

    /// A group's applied position, encoded manifest, and every index file's bytes.
    type Image = (Option<LogPosition>, Vec<u8>, Vec<(Guid, Vec<u8>)>);

    /// What a group holds: its applied position, manifest and every index file's bytes.
    fn image(machine: &GroupStateMachine) -> Image {
        (
            machine.applied(),
            machine.state.manifest.encode(),
            machine
                .state
                .mailboxes
                .iter()
                .map(|(guid, index)| (*guid, index.bytes().to_vec()))
                .collect(),
        )
    }

    fn dirty_mark(dir: &Path) -> bool {
        dir.join(LIVE).join(DIRTY).exists()
    }

    fn flush_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join(LIVE))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(MANIFEST_FLUSH_PREFIX))
            .collect();
        names.sort();
        names
    }

    /// A split flush of a group that nothing changes meanwhile clears the mark; the group then
    /// reopens clean, as it was.
    #[test]
    fn a_split_flush_of_a_quiet_group_clears_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 2);
        assert!(machine.is_dirty() && dirty_mark(dir.path()));
        let mut pending = machine.begin_flush().unwrap().expect("dirty");
        pending.sync().unwrap();
        assert_eq!(flush_files(dir.path()).len(), 1);
        assert!(machine.finish_flush(pending).unwrap());
        assert!(!machine.is_dirty() && !dirty_mark(dir.path()));
        assert!(machine.state.touched.is_empty());
        assert!(flush_files(dir.path()).is_empty());
        assert!(
            machine.begin_flush().unwrap().is_none(),
            "clean: nothing to flush"
        );
        let before = image(&machine);
        drop(machine); // a crash now: nothing is lost
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.recovery(), &Recovery::Clean);
        assert_eq!(image(&reopened), before);
    }

    /// An apply between the start of a split flush and its end: the syncs may have missed it,
    /// so the mark and the changed files stay; a crash then restores the checkpoint (never a
    /// `live/` that holds the newer change under the older manifest). The next flush clears it.
    #[test]
    fn an_apply_during_a_split_flush_keeps_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 2);
        machine.checkpoint().unwrap();
        let mut pending = machine.begin_flush().unwrap().expect("dirty");
        pending.sync().unwrap();
        // Not borrowed by the pending flush: the group applies meanwhile (the lock is free).
        machine.apply(LogPosition::new(1, 4), &append("c", 4, 4)).unwrap();
        assert!(!machine.finish_flush(pending).unwrap());
        assert!(machine.is_dirty() && dirty_mark(dir.path()));
        assert!(!machine.state.touched.is_empty());
        assert!(flush_files(dir.path()).is_empty());
        // A crash now: restored from the checkpoint (index 3); the log replays index 4.
        drop(machine);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert!(matches!(reopened.recovery(), Recovery::Restored { .. }));
        assert_eq!(reopened.applied(), Some(LogPosition::new(1, 3)));
        drop(reopened);
        // Without the crash, the next flush makes it all durable.
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 2);
        let mut pending = machine.begin_flush().unwrap().expect("dirty");
        pending.sync().unwrap();
        machine.apply(LogPosition::new(1, 4), &append("c", 4, 4)).unwrap();
        assert!(!machine.finish_flush(pending).unwrap());
        let mut pending = machine.begin_flush().unwrap().expect("still dirty");
        pending.sync().unwrap();
        assert!(machine.finish_flush(pending).unwrap());
        let before = image(&machine);
        drop(machine);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.recovery(), &Recovery::Clean);
        assert_eq!(image(&reopened), before);
        assert_eq!(reopened.applied(), Some(LogPosition::new(1, 4)));
    }

    /// Only the consensus metadata changes during the flush: also a change (the manifest it
    /// synced is stale), so the mark stays.
    #[test]
    fn a_metadata_change_during_a_split_flush_keeps_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        let mut pending = machine.begin_flush().unwrap().expect("dirty");
        pending.sync().unwrap();
        machine.set_consensus_meta(b"newer").unwrap();
        assert!(!machine.finish_flush(pending).unwrap());
        assert!(machine.is_dirty() && dirty_mark(dir.path()));
    }

    /// A whole flush (at shutdown) while a split one is pending: the pending one then finds
    /// the group clean and changes nothing, also after a later change marked it dirty again.
    #[test]
    fn a_split_flush_overtaken_by_a_whole_flush_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        let mut pending = machine.begin_flush().unwrap().expect("dirty");
        machine.flush().unwrap();
        pending.sync().unwrap();
        assert!(!machine.finish_flush(pending).unwrap());
        assert!(!machine.is_dirty() && !dirty_mark(dir.path()));
        let mut pending = machine.begin_flush().unwrap();
        assert!(pending.is_none());
        machine.apply(LogPosition::new(1, 3), &append("c", 3, 3)).unwrap();
        pending = machine.begin_flush().unwrap();
        machine.flush().unwrap();
        machine.apply(LogPosition::new(1, 4), &append("c", 4, 4)).unwrap();
        let mut pending = pending.unwrap();
        pending.sync().unwrap();
        assert!(!machine.finish_flush(pending).unwrap());
        assert!(machine.is_dirty() && dirty_mark(dir.path()));
        let before = image(&machine);
        machine.flush().unwrap();
        drop(machine);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.recovery(), &Recovery::Clean);
        assert_eq!(image(&reopened), before);
    }

    /// A crash at each point of a split flush: after `begin_flush`, after `sync` (its manifest
    /// file left in `live/`), after `finish_flush`. Reopened, the group is the applied state
    /// (clean) or restored from the checkpoint (dirty), never anything else.
    #[test]
    fn a_crash_at_any_step_of_a_split_flush_recovers() {
        for crash_after in ["begin", "sync", "finish"] {
            let dir = tempfile::tempdir().unwrap();
            let mut machine = group(dir.path(), 2);
            machine.checkpoint().unwrap();
            machine.apply(LogPosition::new(1, 4), &append("c", 4, 4)).unwrap();
            let applied = image(&machine);
            let mut pending = machine.begin_flush().unwrap().expect("dirty");
            if crash_after != "begin" {
                pending.sync().unwrap();
            }
            if crash_after == "finish" {
                assert!(machine.finish_flush(pending).unwrap());
            } else {
                std::mem::forget(pending); // a crash: its file stays
            }
            drop(machine);
            let reopened = GroupStateMachine::open(dir.path()).unwrap();
            assert!(flush_files(dir.path()).is_empty(), "{crash_after}");
            if crash_after == "finish" {
                assert_eq!(reopened.recovery(), &Recovery::Clean);
                assert_eq!(image(&reopened), applied);
            } else {
                assert!(
                    matches!(reopened.recovery(), Recovery::Restored { .. }),
                    "{crash_after}"
                );
                assert_eq!(reopened.applied(), Some(LogPosition::new(1, 3)), "{crash_after}");
            }
        }
    }

    /// A pending flush's manifest left by a crash in a `live/` that another flush made clean:
    /// the group opens clean (the file is ignored and removed).
    #[test]
    fn a_stray_pending_manifest_in_a_clean_group_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = group(dir.path(), 1);
        let mut pending = machine.begin_flush().unwrap().expect("dirty");
        pending.sync().unwrap();
        std::mem::forget(pending);
        machine.flush().unwrap();
        let before = image(&machine);
        drop(machine);
        assert_eq!(flush_files(dir.path()).len(), 1);
        let reopened = GroupStateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.recovery(), &Recovery::Clean);
        assert!(flush_files(dir.path()).is_empty());
        assert_eq!(image(&reopened), before);
    }
}
