//! [`GroupLogStore`]: one group's Raft log and vote, implementing openraft's `RaftLogStorage`
//! and `RaftLogReader` on top of the node's shared [`LogDb`](super::LogDb).
//!
//! Durability contract (ARCHITECTURE.md §8, openraft's storage docs):
//! - `append` applies the entries to sled (readable at once) and returns; the `IOFlushed`
//!   callback fires only after a group-commit fsync that started after the write.
//! - `save_vote`, `truncate_after` and `purge` return only after such an fsync.
//! - `save_committed` does not wait: a lost committed id is recovered as an older one, which
//!   openraft tolerates; it rides on the next fsync of any group or sled's 500 ms flush.
//!
//! All writes of a group take its lock exclusively while they touch sled, and reads take it
//! shared, so writes apply in call order and a read never sees half of a truncate or purge.
//! The lock is never held across an await: waiting for an fsync blocks neither readers nor the
//! runtime.
//!
//! The lock also guards the group's [`Tail`] (`tail.rs`): the last entries written, decoded.
//! Every entry is read back soon after it is written — by the leader once per follower to
//! replicate it, and by every replica to apply it — and the tail answers those reads without a
//! sled lookup and a decode per entry. Reads that start before the tail (a lagging follower) go
//! to sled.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::Transactional;

use super::codec;
use super::error::LogStoreError;
use super::flusher::{Flusher, LogWrite, Waiter};
use super::tail::Tail;
use crate::type_config::{Entry, LogId, TypeConfig, Vote};
use crate::GroupId;

/// `limited_get_log_entries` stops adding entries once it holds this many encoded bytes, so one
/// replication message stays bounded however large the backlog is.
const LIMITED_READ_BYTES: usize = 4 << 20;

/// Most entries one purge step removes. Each step is a sled transaction, and a sled transaction
/// holds sled's database-wide exclusive lock: every group's appends wait for it. Measured here
/// (5,000 entries of 200 bytes purged while another group appended and waited for durability,
/// three rounds): in one transaction the purge took 104-168 ms and the other group's slowest
/// append 88-144 ms (4-12 appends got through); in steps of 256 the purge took 121-176 ms and the
/// slowest append 10-18 ms (43-55 got through).
pub(crate) const PURGE_STEP: usize = 256;

/// The Raft log storage of one group. Cheap to clone; all clones share the group's lock.
#[derive(Clone)]
pub struct GroupLogStore {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    group_id: GroupId,
    /// Entries by index; see [`codec`] for the layout.
    entries: sled::Tree,
    /// Vote, committed and last purged log id.
    meta: sled::Tree,
    flusher: Arc<Flusher>,
    /// Exclusive for writes, shared for reads; held only around synchronous sled calls.
    /// Guards the tail, which every write keeps in step with sled.
    lock: RwLock<Tail>,
}

impl Debug for GroupLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLogStore")
            .field("group_id", &self.inner.group_id)
            .finish_non_exhaustive()
    }
}

impl GroupLogStore {
    pub(crate) fn new(
        group_id: GroupId,
        entries: sled::Tree,
        meta: sled::Tree,
        flusher: Arc<Flusher>,
    ) -> Self {
        GroupLogStore {
            inner: Arc::new(GroupInner {
                group_id,
                entries,
                meta,
                flusher,
                lock: RwLock::new(Tail::default()),
            }),
        }
    }

    pub fn group_id(&self) -> GroupId {
        self.inner.group_id
    }

    /// A handle on the same sled trees with a tail of its own, empty: its reads go to sled
    /// (until it writes itself). For tests comparing reads through the tail with sled's.
    #[cfg(test)]
    pub(crate) fn without_tail(&self) -> GroupLogStore {
        let inner = &self.inner;
        GroupLogStore::new(
            inner.group_id,
            inner.entries.clone(),
            inner.meta.clone(),
            inner.flusher.clone(),
        )
    }

    /// How many entries the tail holds, and their encoded bytes.
    #[cfg(test)]
    pub(crate) fn tail_size(&self) -> (usize, usize) {
        self.read_lock().size()
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Tail> {
        self.inner.lock.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Tail> {
        self.inner.lock.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wraps a sled error with the group and the action; `action` runs only on failure.
    fn sled_error(&self, action: impl FnOnce() -> String) -> impl FnOnce(sled::Error) -> LogStoreError {
        let group_id = self.inner.group_id;
        move |source| LogStoreError::Sled {
            group_id,
            action: action(),
            source,
        }
    }

    fn encode<T: Serialize>(
        &self,
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, LogStoreError> {
        codec::encode(value).map_err(|source| LogStoreError::Encode {
            group_id: self.inner.group_id,
            what: what(),
            source,
        })
    }

    fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<T, LogStoreError> {
        codec::decode(bytes).map_err(|source| LogStoreError::Decode {
            group_id: self.inner.group_id,
            what: what(),
            source,
        })
    }

    /// Reads one meta value; `None` if the key is absent.
    fn read_meta<T: DeserializeOwned>(&self, key: &'static [u8]) -> Result<Option<T>, LogStoreError> {
        let name = || String::from_utf8_lossy(key).into_owned();
        let bytes = self
            .inner
            .meta
            .get(key)
            .map_err(self.sled_error(|| format!("read {}", name())))?;
        bytes.map(|bytes| self.decode(&bytes, name)).transpose()
    }

    /// Reads entries with index in `range`, in order, stopping early once `byte_budget` is
    /// spent (always returning at least one entry if there is one). Errors on a hole.
    fn read_entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
        byte_budget: usize,
    ) -> Result<Vec<Entry>, LogStoreError> {
        let group_id = self.inner.group_id;
        let keys = (range.0.map(codec::index_key), range.1.map(codec::index_key));
        if range_is_empty(&range) {
            return Ok(Vec::new());
        }
        let read = self.read_lock();
        if let Some(entries) = read.read(&range, byte_budget) {
            return Ok(entries);
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes_read = 0usize;
        for item in self.inner.entries.range(keys) {
            let (key, value) = item.map_err(self.sled_error(|| format!("read entries {range:?}")))?;
            let index = codec::key_index(&key).ok_or_else(|| LogStoreError::Corrupt {
                group_id,
                reason: format!("entry key {key:?}"),
            })?;
            let entry: Entry = self.decode(&value, || format!("entry {index}"))?;
            if entry.index() != index {
                let reason = format!("key {index} holds entry {}", entry.log_id());
                return Err(LogStoreError::Corrupt { group_id, reason });
            }
            if let Some(previous) = entries.last() {
                if previous.index() + 1 != index {
                    let reason = format!("hole between entries {} and {index}", previous.index());
                    return Err(LogStoreError::Corrupt { group_id, reason });
                }
            }
            entries.push(entry);
            bytes_read += value.len();
            if bytes_read >= byte_budget {
                break;
            }
        }
        Ok(entries)
    }

    /// Removes the entries up to `upto` and records `upto` as the last purged log id, in steps
    /// of [`PURGE_STEP`] entries, oldest first. Each step removes its entries and records the log
    /// id of its last one as the last purged in one sled transaction, so whenever a crash
    /// interrupts it the log is still contiguous from the recorded last purged id on (the purge
    /// only went less far).
    fn purge_entries(&self, upto: LogId, action: &str) -> Result<(), LogStoreError> {
        let mut tail = self.write_lock();
        let result = self.purge_steps(upto, action);
        match &result {
            Ok(()) => tail.remove_upto(upto.index()),
            Err(_) => tail.clear(),
        }
        result
    }

    /// The steps of [`purge_entries`](Self::purge_entries); the caller holds the write lock.
    fn purge_steps(&self, upto: LogId, action: &str) -> Result<(), LogStoreError> {
        let end = Bound::Included(codec::index_key(upto.index()));
        loop {
            let mut step: Vec<sled::IVec> = Vec::with_capacity(PURGE_STEP);
            let mut last_value = None;
            for item in self.inner.entries.range((Bound::Unbounded, end)).take(PURGE_STEP) {
                let (key, value) = item.map_err(self.sled_error(|| action.to_owned()))?;
                step.push(key);
                last_value = Some(value);
            }
            let done = step.len() < PURGE_STEP;
            let purged = match (&last_value, done) {
                (Some(value), false) => {
                    codec::decode_log_id_prefix(value).map_err(|source| LogStoreError::Decode {
                        group_id: self.inner.group_id,
                        what: format!(
                            "log id of entry {:?} while purging",
                            step.last().map(|k| codec::key_index(k))
                        ),
                        source,
                    })?
                }
                _ => upto,
            };
            let value = self.encode(&purged, || format!("last purged log id {purged}"))?;
            self.remove_keys(&step, Some((codec::LAST_PURGED_KEY, value)), action)?;
            if done {
                return Ok(());
            }
        }
    }

    /// Removes entries with index in `range` in one sled transaction.
    fn remove_entries(&self, range: (Bound<u64>, Bound<u64>), action: &str) -> Result<(), LogStoreError> {
        let mut tail = self.write_lock();
        let result = self.remove_from_sled(range, action);
        match &result {
            Ok(()) => tail.remove_range(&range),
            Err(_) => tail.clear(),
        }
        result
    }

    /// The removal of [`remove_entries`](Self::remove_entries); the caller holds the write lock.
    fn remove_from_sled(&self, range: (Bound<u64>, Bound<u64>), action: &str) -> Result<(), LogStoreError> {
        let keys = (range.0.map(codec::index_key), range.1.map(codec::index_key));
        let doomed: Vec<sled::IVec> = if range_is_empty(&range) {
            Vec::new()
        } else {
            self.inner
                .entries
                .range(keys)
                .keys()
                .collect::<Result<_, _>>()
                .map_err(self.sled_error(|| action.to_owned()))?
        };
        self.remove_keys(&doomed, None, action)
    }

    /// Removes `doomed` and applies `meta_update` to the meta tree in one sled transaction, so a
    /// crash keeps both or neither.
    fn remove_keys(
        &self,
        doomed: &[sled::IVec],
        meta_update: Option<(&'static [u8], Vec<u8>)>,
        action: &str,
    ) -> Result<(), LogStoreError> {
        let result: sled::transaction::TransactionResult<(), ()> = (&self.inner.entries, &self.inner.meta)
            .transaction(|(entries, meta)| {
                if let Some((key, value)) = &meta_update {
                    meta.insert(*key, value.as_slice())?;
                }
                for key in doomed {
                    entries.remove(key)?;
                }
                Ok(())
            });
        result.map_err(|error| match error {
            sled::transaction::TransactionError::Storage(source) => {
                self.sled_error(|| action.to_owned())(source)
            }
            sled::transaction::TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
        })
    }

    async fn append_entries<I>(
        &self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), LogStoreError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let started = Instant::now();
        let mut writes: Vec<([u8; 8], Vec<u8>)> = Vec::new();
        let mut written: Vec<(Entry, usize)> = Vec::new();
        let mut first_last: Option<(u64, u64)> = None;
        for entry in entries {
            let index = entry.index();
            let value = self.encode(&entry, || format!("entry {}", entry.log_id()))?;
            written.push((entry, value.len()));
            writes.push((codec::index_key(index), value));
            first_last = Some((first_last.map_or(index, |(first, _)| first), index));
        }
        let count = writes.len() as u64;
        let Some((first, last)) = first_last else {
            // Nothing to write; still answer only after every earlier write is durable.
            self.inner
                .flusher
                .request(self.inner.group_id, LogWrite::Sync, Waiter::Callback(callback))
                .await;
            return Ok(());
        };
        let write = LogWrite::Append { first, last };
        {
            let mut tail = self.write_lock();
            match self.write_entries(writes) {
                Ok(()) => tail.extend(written, || self.last_index_in_sled()),
                Err(source) => {
                    tail.clear();
                    return Err(self.sled_error(|| write.to_string())(source));
                }
            }
        }
        self.inner.flusher.count_append(count);
        self.inner
            .flusher
            .request_since(started, self.inner.group_id, write, Waiter::Callback(callback))
            .await;
        Ok(())
    }

    /// Writes encoded entries, atomically: a crash keeps all of them or none.
    ///
    /// One entry (the common case: a leader appends one proposal at a time, a follower usually
    /// receives one) is a plain sled `insert`, atomic by itself. Several go through a sled
    /// `Batch`, whose atomicity costs more than the write: sled takes its database-wide
    /// exclusive lock and rolls its IO buffer before and after the batch's manifest, so each
    /// batch costs two more buffer writes, each with its own `sync_file_range`.
    fn write_entries(&self, mut writes: Vec<([u8; 8], Vec<u8>)>) -> Result<(), sled::Error> {
        if writes.len() == 1 {
            let (key, value) = writes.pop().expect("one write");
            self.inner.entries.insert(key, value)?;
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            batch.insert(&key, value);
        }
        self.inner.entries.apply_batch(batch)
    }

    /// The index of the last entry in sled; `None` if there is none or it cannot be read.
    fn last_index_in_sled(&self) -> Option<u64> {
        match self.inner.entries.last() {
            Ok(Some((key, _))) => codec::key_index(&key),
            _ => None,
        }
    }

    async fn write_vote(&self, vote: &Vote) -> Result<(), LogStoreError> {
        let value = self.encode(vote, || format!("vote {vote}"))?;
        {
            let _write = self.write_lock();
            self.inner
                .meta
                .insert(codec::VOTE_KEY, value)
                .map_err(self.sled_error(|| format!("save vote {vote}")))?;
        }
        self.inner
            .flusher
            .flush(self.inner.group_id, LogWrite::Vote)
            .await
    }

    /// Seeds an empty group's log as a node's log stands after it installed a snapshot covering
    /// everything up to `last_applied` and purged the entries it replaces: `last_applied` is the
    /// last purged log id (so also the last log id, with no entry in the tree) and the committed
    /// one, and `vote` is the saved vote. For the first start of a node restored from a backup
    /// (`crate::restore`). Returns once durable. A log that holds anything (an entry, a vote, a
    /// committed or purged id) is refused: seeding never overwrites a node's own history.
    pub(crate) async fn seed(&self, last_applied: LogId, vote: Vote) -> Result<(), LogStoreError> {
        let group_id = self.inner.group_id;
        let write = LogWrite::Seed {
            upto: last_applied.index(),
        };
        let action = || write.to_string();
        let purged = self.encode(&last_applied, || format!("last purged log id {last_applied}"))?;
        let vote_bytes = self.encode(&vote, || format!("vote {vote}"))?;
        {
            let _write = self.write_lock();
            let empty = self.inner.entries.is_empty() && self.inner.meta.is_empty();
            if !empty {
                return Err(LogStoreError::NotEmpty { group_id });
            }
            let result: sled::transaction::TransactionResult<(), ()> = self.inner.meta.transaction(|meta| {
                meta.insert(codec::LAST_PURGED_KEY, purged.as_slice())?;
                meta.insert(codec::COMMITTED_KEY, purged.as_slice())?;
                meta.insert(codec::VOTE_KEY, vote_bytes.as_slice())?;
                Ok(())
            });
            result.map_err(|error| match error {
                sled::transaction::TransactionError::Storage(source) => self.sled_error(action)(source),
                sled::transaction::TransactionError::Abort(()) => {
                    unreachable!("the transaction never aborts")
                }
            })?;
        }
        self.inner.flusher.flush(group_id, write).await
    }

    fn write_committed(&self, committed: Option<LogId>) -> Result<(), LogStoreError> {
        let action = || format!("save committed {committed:?}");
        let _write = self.write_lock();
        match committed {
            Some(log_id) => {
                let value = self.encode(&log_id, action)?;
                self.inner
                    .meta
                    .insert(codec::COMMITTED_KEY, value)
                    .map_err(self.sled_error(action))?;
            }
            None => {
                self.inner
                    .meta
                    .remove(codec::COMMITTED_KEY)
                    .map_err(self.sled_error(action))?;
            }
        }
        Ok(())
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, LogStoreError> {
        let _read = self.read_lock();
        let last_purged_log_id: Option<LogId> = self.read_meta(codec::LAST_PURGED_KEY)?;
        let last = self
            .inner
            .entries
            .last()
            .map_err(self.sled_error(|| "read last entry".to_owned()))?;
        let last_log_id = match last {
            Some((key, value)) => {
                Some(
                    codec::decode_log_id_prefix(&value).map_err(|source| LogStoreError::Decode {
                        group_id: self.inner.group_id,
                        what: format!("log id of last entry {:?}", codec::key_index(&key)),
                        source,
                    })?,
                )
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }
}

/// Whether an index range is empty (so it must not be turned into a sled range, which panics
/// when start > end).
fn range_is_empty(range: &(Bound<u64>, Bound<u64>)) -> bool {
    let start = match range.0 {
        Bound::Included(start) => start,
        Bound::Excluded(start) => match start.checked_add(1) {
            Some(start) => start,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match range.1 {
        Bound::Included(end) => start > end,
        Bound::Excluded(end) => start >= end,
        Bound::Unbounded => false,
    }
}

fn owned_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.read_entries(owned_bounds(&range), usize::MAX)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let _read = self.read_lock();
        Ok(self.read_meta(codec::VOTE_KEY)?)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        Ok(self.read_entries((Bound::Included(start), Bound::Excluded(end)), LIMITED_READ_BYTES)?)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = GroupLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        Ok(self.log_state()?)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        Ok(self.write_vote(vote).await?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        Ok(self.write_committed(committed)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let _read = self.read_lock();
        Ok(self.read_meta(codec::COMMITTED_KEY)?)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        Ok(self.append_entries(entries, callback).await?)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let after = last_log_id.map(|log_id| log_id.index());
        let write = LogWrite::Truncate { after };
        let range = match after {
            Some(index) => (Bound::Excluded(index), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        self.remove_entries(range, &write.to_string())?;
        Ok(self.inner.flusher.flush(self.inner.group_id, write).await?)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let write = LogWrite::Purge { upto: log_id.index() };
        self.purge_entries(log_id, &write.to_string())?;
        Ok(self.inner.flusher.flush(self.inner.group_id, write).await?)
    }
}
