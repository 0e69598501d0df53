//! `MailboxIndex`: one mailbox's index file, read and changed in place through its `Storage`.
//!
//! The index knows records, tombstones, keywords and counters. It does not decide UIDs or MODSEQs:
//! the state machine passes them in, and the index checks they keep its invariants (UIDs strictly
//! increasing, MODSEQs not above `highest_modseq`). Changes update the decoded header in memory;
//! `commit_header` writes it (with its checksum) into the file image at the end of a transaction.

use std::ops::Range;
use std::sync::OnceLock;

use super::error::IndexError;
use super::format::{
    self, flag_bits, grown_capacity, slot_digest, Header, LogPosition, Record, Tombstone, FIXED_HEADER_SIZE,
    HEADER_SIZE, KEYWORD_SLOT_SIZE, MAX_KEYWORDS, MAX_KEYWORD_LEN, TOMBSTONE_SIZE,
};
use super::storage::Storage;

/// Records per block of the in-memory MODSEQ summary used by `changed_since`.
const MODSEQ_BLOCK: usize = 256;

/// An open mailbox index file.
#[derive(Debug)]
pub struct MailboxIndex<S: Storage> {
    storage: S,
    header: Header,
    /// Keyword names in table order; keyword i is bit i of a record's bitmap.
    keywords: Vec<String>,
    /// Maximum MODSEQ of each block of `MODSEQ_BLOCK` records, built on the first `changed_since`
    /// and kept current by every change after that. Derived data: never written to the file.
    modseq_blocks: OnceLock<Vec<u64>>,
    /// The UID of every record, in order: 4 bytes per message instead of a 64-byte stride, so a
    /// lookup's binary search stays in cache instead of missing on ~20 records spread over the
    /// file. Built on the first lookup, kept current by every change. Derived data.
    uids: OnceLock<Vec<u32>>,
}

impl<S: Storage> MailboxIndex<S> {
    /// The file image of a new, empty mailbox in format v1 (as before log encoding 3).
    pub fn empty_image(mailbox_guid: [u8; 16], uid_validity: u32) -> Vec<u8> {
        Self::empty_image_in(mailbox_guid, uid_validity, format::FORMAT_VERSION_V1)
    }

    /// The file image of a new, empty mailbox in format `version`.
    pub fn empty_image_in(mailbox_guid: [u8; 16], uid_validity: u32, version: u32) -> Vec<u8> {
        let header = Header::new(mailbox_guid, uid_validity, version);
        let mut image = vec![0u8; HEADER_SIZE];
        image[..FIXED_HEADER_SIZE].copy_from_slice(&header.encode());
        image
    }

    /// Opens an index from its storage, checking the header (O(1); records are not scanned).
    pub fn open(storage: S) -> Result<MailboxIndex<S>, IndexError> {
        let header = Header::decode(storage.path(), storage.bytes())?;
        let keywords = decode_keywords(&storage, &header)?;
        Ok(MailboxIndex {
            storage,
            header,
            keywords,
            modseq_blocks: OnceLock::new(),
            uids: OnceLock::new(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The file image as it is now (header committed or not).
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    pub fn flush(&mut self) -> Result<(), IndexError> {
        self.storage.flush()
    }

    pub fn len(&self) -> usize {
        self.header.message_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// The table position of a keyword; keywords compare ASCII-case-insensitively (RFC 9051).
    pub fn keyword_position(&self, name: &str) -> Option<usize> {
        self.keywords.iter().position(|k| k.eq_ignore_ascii_case(name))
    }

    /// The bitmap of the named keywords the mailbox knows; unknown names are ignored.
    pub fn keyword_mask(&self, names: &[String]) -> u128 {
        names
            .iter()
            .filter_map(|n| self.keyword_position(n))
            .fold(0u128, |mask, i| mask | (1u128 << i))
    }

    /// Names of the keywords in `mask`, in table order.
    pub fn keyword_names(&self, mask: u128) -> Vec<String> {
        (0..self.keywords.len())
            .filter(|i| mask & (1u128 << i) != 0)
            .map(|i| self.keywords[i].clone())
            .collect()
    }

    /// How many of `names` the table does not hold yet (duplicates counted once).
    pub fn unknown_keyword_count(&self, names: &[String]) -> usize {
        let mut unknown: Vec<&String> = Vec::new();
        for n in names {
            if self.keyword_position(n).is_none() && !unknown.iter().any(|u| u.eq_ignore_ascii_case(n)) {
                unknown.push(n);
            }
        }
        unknown.len()
    }

    /// Adds the unknown names to the keyword table, in the order given, and returns the bitmap of
    /// all of `names`. The caller has checked with `unknown_keyword_count` that they fit.
    pub fn register_keywords(&mut self, names: &[String]) -> u128 {
        let mut changed = false;
        for name in names {
            if self.keyword_position(name).is_some() {
                continue;
            }
            assert!(
                self.keywords.len() < MAX_KEYWORDS,
                "keyword table overflow: caller must check"
            );
            assert!(
                name.len() <= MAX_KEYWORD_LEN && !name.is_empty(),
                "keyword not validated: {name:?}"
            );
            let slot = FIXED_HEADER_SIZE + self.keywords.len() * KEYWORD_SLOT_SIZE;
            let bytes = self.storage.bytes_mut();
            bytes[slot] = name.len() as u8;
            bytes[slot + 1..slot + 1 + name.len()].copy_from_slice(name.as_bytes());
            self.keywords.push(name.clone());
            changed = true;
        }
        if changed {
            self.header.keyword_count = self.keywords.len() as u32;
            self.header.keyword_table_crc =
                crc32c::crc32c(&self.storage.bytes()[FIXED_HEADER_SIZE..HEADER_SIZE]);
        }
        self.keyword_mask(names)
    }

    fn record_bytes(&self, position: usize) -> &[u8] {
        let size = self.header.record_size();
        let at = HEADER_SIZE + position * size;
        &self.storage.bytes()[at..at + size]
    }

    /// The record at `position` (0-based, in UID order). Panics if out of range.
    pub fn record_at(&self, position: usize) -> Record {
        assert!(position < self.len(), "record position {position} out of range");
        Record::decode(self.record_bytes(position), self.header.version)
    }

    /// The body ids the records name, in UID order, index-only records (zero id) left out; a
    /// body named by several records comes once per record. An expunge removes its records (the
    /// area is compacted; only a tombstone stays), so every id here is referenced. Reads the 16
    /// bytes of each record, nothing else; a v1 file yields nothing.
    pub fn body_ids(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        let (size, version) = (self.header.record_size(), self.header.version);
        let bytes = &self.storage.bytes()[HEADER_SIZE..HEADER_SIZE + self.len() * size];
        let all = if version >= 2 { self.len() } else { 0 };
        (0..all)
            .map(move |p| Record::body_of(&bytes[p * size..(p + 1) * size], version))
            .filter(|body| *body != [0; 16])
    }

    /// Finds a UID: `Ok(position)` if present, else `Err(insertion position)`. A binary search
    /// over the in-memory UID array (built on first use).
    pub fn position_of(&self, uid: u32) -> Result<usize, usize> {
        let uids = self.uids.get_or_init(|| {
            let size = self.header.record_size();
            let bytes = &self.storage.bytes()[HEADER_SIZE..];
            (0..self.len())
                .map(|p| Record::uid_of(&bytes[p * size..]))
                .collect()
        });
        uids.binary_search(&uid)
    }

    /// Looks up a record by UID.
    pub fn get(&self, uid: u32) -> Option<Record> {
        self.position_of(uid).ok().map(|p| self.record_at(p))
    }

    /// Positions of the records with `first <= uid <= last`.
    pub fn positions_in(&self, first: u32, last: u32) -> Range<usize> {
        if first > last {
            return 0..0;
        }
        let start = self.position_of(first).unwrap_or_else(|p| p);
        let end = match self.position_of(last) {
            Ok(p) => p + 1,
            Err(p) => p,
        };
        start..end.max(start)
    }

    /// Appends a record with a UID at or above `uid_next`, growing the file when needed.
    /// Updates counters and digests; `uid_next` becomes `record.uid + 1`.
    pub fn append(&mut self, record: &Record) -> Result<(), IndexError> {
        assert!(
            record.uid >= self.header.uid_next && record.uid < u32::MAX,
            "invariant: appended UID {} must be >= uid_next {}",
            record.uid,
            self.header.uid_next
        );
        assert!(
            record.modseq <= self.header.highest_modseq,
            "record MODSEQ above highest_modseq"
        );
        if self.header.message_count == self.header.record_capacity {
            self.grow_records(self.header.message_count + 1)?;
        }
        let position = self.len();
        let (size, version) = (self.header.record_size(), self.header.version);
        let at = HEADER_SIZE + position * size;
        let slot = &mut self.storage.bytes_mut()[at..at + size];
        record.encode(slot, version);
        let digest = slot_digest(slot);
        let h = &mut self.header;
        h.record_digest = h.record_digest.wrapping_add(digest);
        h.message_count += 1;
        h.uid_next = record.uid + 1;
        h.seen_count += u32::from(record.flags & flag_bits::SEEN != 0);
        h.deleted_count += u32::from(record.flags & flag_bits::DELETED != 0);
        if let Some(uids) = self.uids.get_mut() {
            uids.push(record.uid);
        }
        if let Some(blocks) = self.modseq_blocks.get_mut() {
            let block = position / MODSEQ_BLOCK;
            if block == blocks.len() {
                blocks.push(record.modseq);
            } else {
                blocks[block] = blocks[block].max(record.modseq);
            }
        }
        Ok(())
    }

    /// Sets the flags, keywords and MODSEQ of the record at `position`.
    pub fn update(&mut self, position: usize, flags: u8, keywords: u128, modseq: u64) {
        assert!(
            modseq <= self.header.highest_modseq,
            "record MODSEQ above highest_modseq"
        );
        let old = self.record_at(position);
        assert!(
            modseq >= old.modseq,
            "invariant: a record's MODSEQ never decreases"
        );
        let (size, version) = (self.header.record_size(), self.header.version);
        let at = HEADER_SIZE + position * size;
        let slot = &mut self.storage.bytes_mut()[at..at + size];
        let old_digest = slot_digest(slot);
        let new = Record {
            flags,
            keywords,
            modseq,
            ..old
        };
        new.encode(slot, version);
        let new_digest = slot_digest(slot);
        let h = &mut self.header;
        h.record_digest = h.record_digest.wrapping_sub(old_digest).wrapping_add(new_digest);
        let seen = |f: u8| u32::from(f & flag_bits::SEEN != 0);
        let deleted = |f: u8| u32::from(f & flag_bits::DELETED != 0);
        h.seen_count = h.seen_count - seen(old.flags) + seen(flags);
        h.deleted_count = h.deleted_count - deleted(old.flags) + deleted(flags);
        if let Some(blocks) = self.modseq_blocks.get_mut() {
            let block = position / MODSEQ_BLOCK;
            blocks[block] = blocks[block].max(modseq);
        }
    }

    /// Removes the records at `positions` (strictly increasing) and records a tombstone with
    /// `modseq` for each. O(messages) for the compaction, like Dovecot's expunge.
    pub fn expunge(&mut self, positions: &[usize], modseq: u64) -> Result<(), IndexError> {
        if positions.is_empty() {
            return Ok(());
        }
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "expunge positions not increasing"
        );
        assert!(
            *positions.last().expect("non-empty") < self.len(),
            "expunge position out of range"
        );
        assert!(
            modseq <= self.header.highest_modseq,
            "tombstone MODSEQ above highest_modseq"
        );
        let needed = self.header.tombstone_count as usize + positions.len();
        if needed > self.header.tombstone_capacity as usize {
            self.grow_tombstones(u32::try_from(needed).expect("tombstone count fits u32"))?;
        }
        let mut tombstones = Vec::with_capacity(positions.len());
        for &p in positions {
            let record = self.record_at(p);
            let digest = slot_digest(self.record_bytes(p));
            let h = &mut self.header;
            h.record_digest = h.record_digest.wrapping_sub(digest);
            h.seen_count -= u32::from(record.flags & flag_bits::SEEN != 0);
            h.deleted_count -= u32::from(record.flags & flag_bits::DELETED != 0);
            tombstones.push(Tombstone {
                uid: record.uid,
                modseq,
            });
        }
        // Compact: move each run of kept records left over the removed ones.
        let count = self.len();
        let size = self.header.record_size();
        let bytes = &mut self.storage.bytes_mut()[HEADER_SIZE..];
        let mut write = positions[0];
        for (i, &p) in positions.iter().enumerate() {
            let run_end = positions.get(i + 1).copied().unwrap_or(count);
            let run = p + 1..run_end;
            if !run.is_empty() {
                bytes.copy_within(run.start * size..run.end * size, write * size);
                write += run.len();
            }
        }
        bytes[write * size..count * size].fill(0);
        self.header.message_count = write as u32;
        for t in tombstones {
            self.push_tombstone(t);
        }
        if let Some(uids) = self.uids.get_mut() {
            let mut expunged = positions.iter().peekable();
            let mut position = 0;
            uids.retain(|_| {
                let gone = expunged.next_if_eq(&&position).is_some();
                position += 1;
                !gone
            });
        }
        if let Some(blocks) = self.modseq_blocks.get_mut() {
            let first_block = positions[0] / MODSEQ_BLOCK;
            blocks.truncate(first_block);
            let rebuilt = build_modseq_blocks(
                &self.storage,
                self.header.record_size(),
                first_block * MODSEQ_BLOCK,
                write,
            );
            blocks.extend(rebuilt);
        }
        Ok(())
    }

    fn push_tombstone(&mut self, tombstone: Tombstone) {
        let at = self.header.tombstones_offset() + self.header.tombstone_count as usize * TOMBSTONE_SIZE;
        let slot = &mut self.storage.bytes_mut()[at..at + TOMBSTONE_SIZE];
        tombstone.encode(slot);
        let digest = slot_digest(slot);
        self.header.tombstone_digest = self.header.tombstone_digest.wrapping_add(digest);
        self.header.tombstone_count += 1;
    }

    /// The tombstone at `position`, in expunge order.
    pub fn tombstone_at(&self, position: usize) -> Tombstone {
        assert!(
            position < self.header.tombstone_count as usize,
            "tombstone position out of range"
        );
        let at = self.header.tombstones_offset() + position * TOMBSTONE_SIZE;
        Tombstone::decode(&self.storage.bytes()[at..at + TOMBSTONE_SIZE])
    }

    /// Makes room for `additional` more records now, so that appending them cannot fail: the
    /// state machine calls it before it changes anything of a transaction, so a full disk fails
    /// the transaction whole. The capacity is the one appending them one by one would reach
    /// (the growth rule applied step by step), so the file's bytes do not depend on it.
    pub fn reserve_records(&mut self, additional: usize) -> Result<(), IndexError> {
        let needed = self.header.message_count as u64 + additional as u64;
        let mut capacity = self.header.record_capacity;
        while (capacity as u64) < needed && capacity < u32::MAX {
            capacity = grown_capacity(capacity, capacity.saturating_add(1));
        }
        if capacity > self.header.record_capacity {
            self.grow_records_to(capacity)?;
        }
        Ok(())
    }

    /// Makes room for `additional` more tombstones now, as `expunge` would (the same capacity).
    pub fn reserve_tombstones(&mut self, additional: usize) -> Result<(), IndexError> {
        let needed = self.header.tombstone_count as usize + additional;
        if needed > self.header.tombstone_capacity as usize {
            self.grow_tombstones(u32::try_from(needed).expect("tombstone count fits u32"))?;
        }
        Ok(())
    }

    /// Grows the record area to hold at least `needed` records, moving the tombstones after it.
    fn grow_records(&mut self, needed: u32) -> Result<(), IndexError> {
        self.grow_records_to(grown_capacity(self.header.record_capacity, needed))
    }

    /// Grows the record area to `capacity` records. On an error nothing changed.
    fn grow_records_to(&mut self, capacity: u32) -> Result<(), IndexError> {
        let old_tombstones = self.header.tombstones_offset();
        let tombstone_bytes = self.header.tombstone_count as usize * TOMBSTONE_SIZE;
        let mut grown = self.header;
        grown.record_capacity = capacity;
        self.storage.grow(grown.file_len())?;
        self.header = grown;
        let new_tombstones = self.header.tombstones_offset();
        let bytes = self.storage.bytes_mut();
        bytes.copy_within(old_tombstones..old_tombstones + tombstone_bytes, new_tombstones);
        bytes[old_tombstones..new_tombstones].fill(0);
        Ok(())
    }

    /// Grows the tombstone area to hold at least `needed` tombstones. On an error nothing
    /// changed.
    fn grow_tombstones(&mut self, needed: u32) -> Result<(), IndexError> {
        let mut grown = self.header;
        grown.tombstone_capacity = grown_capacity(self.header.tombstone_capacity, needed);
        self.storage.grow(grown.file_len())?;
        self.header = grown;
        Ok(())
    }

    /// Raises `highest_modseq`; returns the new value. The state machine calls this once per
    /// transaction that changes the mailbox, before writing records with the new MODSEQ.
    pub fn next_modseq(&mut self) -> u64 {
        self.header.highest_modseq = self
            .header
            .highest_modseq
            .checked_add(1)
            .expect("invariant: MODSEQ space exhausted");
        self.header.highest_modseq
    }

    /// This mailbox's file in format v2 (records widened with an empty body id), stamped with
    /// `applied`: what a v1 file becomes at the first change after its group's log encoding
    /// reached 3. Capacities, records, tombstones and keywords are kept; the record digest is
    /// recomputed over the wider slots. Already v2: the image as it is (restamped).
    pub fn upgraded_image(&self, applied: LogPosition) -> Vec<u8> {
        let mut header = self.header;
        header.version = format::FORMAT_VERSION;
        header.applied = applied;
        let mut image = vec![0u8; header.file_len()];
        image[FIXED_HEADER_SIZE..HEADER_SIZE]
            .copy_from_slice(&self.storage.bytes()[FIXED_HEADER_SIZE..HEADER_SIZE]);
        let size = header.record_size();
        let mut digest = 0u64;
        for p in 0..self.len() {
            let at = HEADER_SIZE + p * size;
            let slot = &mut image[at..at + size];
            self.record_at(p).encode(slot, header.version);
            digest = digest.wrapping_add(slot_digest(slot));
        }
        header.record_digest = digest;
        let tombstones = self.header.tombstone_capacity as usize * TOMBSTONE_SIZE;
        let (from, to) = (self.header.tombstones_offset(), header.tombstones_offset());
        image[to..to + tombstones].copy_from_slice(&self.storage.bytes()[from..from + tombstones]);
        image[..FIXED_HEADER_SIZE].copy_from_slice(&header.encode());
        image
    }

    /// Writes the in-memory header, stamped with the log position of the transaction that
    /// changed the file, into the file image.
    pub fn commit_header(&mut self, applied: LogPosition) {
        self.header.applied = applied;
        let encoded = self.header.encode();
        self.storage.bytes_mut()[..FIXED_HEADER_SIZE].copy_from_slice(&encoded);
    }

    /// Every record whose MODSEQ is above `modseq`, in UID order (RFC 7162 CHANGEDSINCE).
    /// Uses a per-block maximum so that few changes cost far less than a full scan.
    pub fn changed_since(&self, modseq: u64) -> Vec<Record> {
        let blocks = self
            .modseq_blocks
            .get_or_init(|| build_modseq_blocks(&self.storage, self.header.record_size(), 0, self.len()));
        let mut changed = Vec::new();
        for (b, &block_max) in blocks.iter().enumerate() {
            if block_max <= modseq {
                continue;
            }
            let start = b * MODSEQ_BLOCK;
            let end = (start + MODSEQ_BLOCK).min(self.len());
            for p in start..end {
                let bytes = self.record_bytes(p);
                if Record::modseq_of(bytes) > modseq {
                    changed.push(Record::decode(bytes, self.header.version));
                }
            }
        }
        changed
    }

    /// The records whose MODSEQ is at least `min_modseq`, as (position, MODSEQ, UID) in UID
    /// order, skipping the blocks whose highest MODSEQ is lower (the summary `changed_since`
    /// uses). Nothing is decoded but the two fields.
    pub fn changed_positions(&self, min_modseq: u64) -> impl Iterator<Item = (usize, u64, u32)> + '_ {
        let blocks = self
            .modseq_blocks
            .get_or_init(|| build_modseq_blocks(&self.storage, self.header.record_size(), 0, self.len()));
        blocks
            .iter()
            .enumerate()
            .filter(move |&(_, &block_max)| block_max >= min_modseq)
            .flat_map(move |(b, _)| b * MODSEQ_BLOCK..(b * MODSEQ_BLOCK + MODSEQ_BLOCK).min(self.len()))
            .filter_map(move |p| {
                let bytes = self.record_bytes(p);
                let modseq = Record::modseq_of(bytes);
                (modseq >= min_modseq).then(|| (p, modseq, Record::uid_of(bytes)))
            })
    }

    /// The position of the first tombstone with a MODSEQ of at least `min_modseq` (tombstones
    /// are in MODSEQ order: a bisection).
    pub fn first_tombstone_from(&self, min_modseq: u64) -> usize {
        let (mut lo, mut hi) = (0usize, self.header.tombstone_count as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.tombstone_at(mid).modseq >= min_modseq {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// UIDs expunged with a MODSEQ above `modseq`, ascending (QRESYNC VANISHED).
    pub fn vanished_since(&self, modseq: u64) -> Vec<u32> {
        let count = self.header.tombstone_count as usize;
        // Tombstones are appended in MODSEQ order, so the first newer one is found by bisection.
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.tombstone_at(mid).modseq > modseq {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let mut uids: Vec<u32> = (lo..count).map(|p| self.tombstone_at(p).uid).collect();
        uids.sort_unstable();
        uids
    }

    /// Checks the whole file against its header: digests, order, counters, bounds and that
    /// unused space is zero. O(file size). Returns the first problem found.
    pub fn verify(&self) -> Result<(), IndexError> {
        let file = self.storage.path();
        let h = &self.header;
        let bytes = self.storage.bytes();
        let corrupt = |offset: usize, reason: String| Err(IndexError::corrupt(file, offset as u64, reason));
        let mut digest = 0u64;
        let (mut seen, mut deleted) = (0u32, 0u32);
        let mut previous_uid = 0u32;
        let size = h.record_size();
        let keyword_bits = if h.keyword_count as usize == MAX_KEYWORDS {
            u128::MAX
        } else {
            (1u128 << h.keyword_count) - 1
        };
        for p in 0..self.len() {
            let at = HEADER_SIZE + p * size;
            let slot = &bytes[at..at + size];
            let r = Record::decode(slot, self.header.version);
            digest = digest.wrapping_add(slot_digest(slot));
            if r.uid <= previous_uid {
                return corrupt(
                    at,
                    format!("record {p}: UID {} not above previous {previous_uid}", r.uid),
                );
            }
            if r.uid >= h.uid_next {
                return corrupt(
                    at,
                    format!("record {p}: UID {} not below uid_next {}", r.uid, h.uid_next),
                );
            }
            if r.modseq > h.highest_modseq || r.modseq == 0 {
                return corrupt(at + 8, format!("record {p}: MODSEQ {} out of range", r.modseq));
            }
            if r.flags & !flag_bits::ALL != 0 || slot[5..8] != [0, 0, 0] {
                return corrupt(at + 4, format!("record {p}: unknown flag bits {:#x}", r.flags));
            }
            if r.keywords & !keyword_bits != 0 {
                return corrupt(at + 16, format!("record {p}: keyword bit beyond the table"));
            }
            seen += u32::from(r.flags & flag_bits::SEEN != 0);
            deleted += u32::from(r.flags & flag_bits::DELETED != 0);
            previous_uid = r.uid;
        }
        if digest != h.record_digest {
            return Err(IndexError::ChecksumMismatch {
                file: file.to_path_buf(),
                region: "records",
                stored: h.record_digest,
                computed: digest,
            });
        }
        if seen != h.seen_count || deleted != h.deleted_count {
            return corrupt(
                format::offsets::SEEN_COUNT,
                format!(
                    "counted {seen} seen / {deleted} deleted, header says {} / {}",
                    h.seen_count, h.deleted_count
                ),
            );
        }
        let live_end = HEADER_SIZE + self.len() * self.header.record_size();
        if let Some(p) = bytes[live_end..h.tombstones_offset()]
            .iter()
            .position(|&b| b != 0)
        {
            return corrupt(live_end + p, "non-zero byte in unused record space".into());
        }
        let mut digest = 0u64;
        let mut previous_modseq = 0u64;
        for p in 0..h.tombstone_count as usize {
            let at = h.tombstones_offset() + p * TOMBSTONE_SIZE;
            let slot = &bytes[at..at + TOMBSTONE_SIZE];
            let t = Tombstone::decode(slot);
            digest = digest.wrapping_add(slot_digest(slot));
            if t.uid == 0 || t.uid >= h.uid_next || slot[4..8] != [0; 4] {
                return corrupt(at, format!("tombstone {p}: UID {} out of range", t.uid));
            }
            if t.modseq < previous_modseq || t.modseq > h.highest_modseq {
                return corrupt(at + 8, format!("tombstone {p}: MODSEQ {} out of order", t.modseq));
            }
            previous_modseq = t.modseq;
        }
        if digest != h.tombstone_digest {
            return Err(IndexError::ChecksumMismatch {
                file: file.to_path_buf(),
                region: "tombstones",
                stored: h.tombstone_digest,
                computed: digest,
            });
        }
        let used_end = h.tombstones_offset() + h.tombstone_count as usize * TOMBSTONE_SIZE;
        if let Some(p) = bytes[used_end..h.file_len()].iter().position(|&b| b != 0) {
            return corrupt(used_end + p, "non-zero byte in unused tombstone space".into());
        }
        Ok(())
    }
}

fn build_modseq_blocks<S: Storage>(storage: &S, size: usize, start: usize, end: usize) -> Vec<u64> {
    let bytes = &storage.bytes()[HEADER_SIZE..];
    (start..end)
        .step_by(MODSEQ_BLOCK)
        .map(|block_start| {
            (block_start..(block_start + MODSEQ_BLOCK).min(end))
                .map(|p| Record::modseq_of(&bytes[p * size..]))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

fn decode_keywords<S: Storage>(storage: &S, header: &Header) -> Result<Vec<String>, IndexError> {
    let bytes = storage.bytes();
    let mut names = Vec::with_capacity(header.keyword_count as usize);
    for i in 0..MAX_KEYWORDS {
        let slot = FIXED_HEADER_SIZE + i * KEYWORD_SLOT_SIZE;
        let len = bytes[slot] as usize;
        let corrupt = |reason: String| IndexError::corrupt(storage.path(), slot as u64, reason);
        if i >= header.keyword_count as usize {
            if bytes[slot..slot + KEYWORD_SLOT_SIZE].iter().any(|&b| b != 0) {
                return Err(corrupt(format!("unused keyword slot {i} is not zero")));
            }
            continue;
        }
        if len == 0 || len > MAX_KEYWORD_LEN {
            return Err(corrupt(format!("keyword slot {i} has length {len}")));
        }
        let name = std::str::from_utf8(&bytes[slot + 1..slot + 1 + len])
            .map_err(|_| corrupt(format!("keyword slot {i} is not UTF-8")))?;
        if bytes[slot + 1 + len..slot + KEYWORD_SLOT_SIZE]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(corrupt(format!("keyword slot {i} has bytes after its name")));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::storage::VecStorage;

    fn new_index() -> MailboxIndex<VecStorage> {
        let image = MailboxIndex::<VecStorage>::empty_image([1; 16], 7);
        MailboxIndex::open(VecStorage::from_bytes(image)).unwrap()
    }

    fn record(uid: u32, modseq: u64) -> Record {
        Record {
            uid,
            modseq,
            guid: [uid as u8; 16],
            size: 100,
            ..Record::default()
        }
    }

    /// Storage whose growth fails once `full` is set, as on a full disk.
    struct FullDisk(VecStorage, bool);

    impl Storage for FullDisk {
        fn bytes(&self) -> &[u8] {
            self.0.bytes()
        }
        fn bytes_mut(&mut self) -> &mut [u8] {
            self.0.bytes_mut()
        }
        fn grow(&mut self, len: usize) -> Result<(), IndexError> {
            if !self.1 || len <= self.0.bytes().len() {
                return self.0.grow(len);
            }
            Err(IndexError::io(
                "<full>",
                "growing",
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ))
        }
        fn flush(&mut self) -> Result<(), IndexError> {
            Ok(())
        }
        fn path(&self) -> &std::path::Path {
            self.0.path()
        }
    }

    /// `body_ids` yields the body of every record that has one, in UID order, and nothing for
    /// an expunged record (gone from the area) or a v1 file (no body field).
    #[test]
    fn body_ids_are_those_of_the_remaining_records() {
        let image = MailboxIndex::<VecStorage>::empty_image_in([1; 16], 7, format::FORMAT_VERSION);
        let mut ix = MailboxIndex::open(VecStorage::from_bytes(image)).unwrap();
        let m = ix.next_modseq();
        for uid in 1..=40 {
            let body = if uid % 5 == 0 { [0; 16] } else { [uid as u8; 16] };
            ix.append(&Record {
                body,
                ..record(uid, m)
            })
            .unwrap();
        }
        let m = ix.next_modseq();
        ix.expunge(&[0, 3, 7], m).unwrap();
        let expected: Vec<[u8; 16]> = (1..=40u32)
            .filter(|uid| uid % 5 != 0 && ![1, 4, 8].contains(uid))
            .map(|uid| [uid as u8; 16])
            .collect();
        assert_eq!(ix.body_ids().collect::<Vec<_>>(), expected);

        let mut v1 = new_index();
        let m = v1.next_modseq();
        v1.append(&record(1, m)).unwrap();
        assert_eq!(v1.body_ids().count(), 0);
    }

    /// Reserving room for many records at once grows the file exactly as appending them one by
    /// one would: the bytes are the same, tombstones included.
    #[test]
    fn reserving_records_grows_like_appending_them_one_by_one() {
        for count in [1, 31, 32, 33, 100, 1000] {
            let mut one_by_one = new_index();
            let mut reserved = new_index();
            for ix in [&mut one_by_one, &mut reserved] {
                let m = ix.next_modseq();
                for uid in 1..=40 {
                    ix.append(&record(uid, m)).unwrap();
                }
                let m = ix.next_modseq();
                ix.expunge(&[0, 3, 7], m).unwrap();
            }
            reserved.reserve_records(count).unwrap();
            let m = one_by_one.next_modseq();
            assert_eq!(reserved.next_modseq(), m);
            for uid in 100..100 + count as u32 {
                one_by_one.append(&record(uid, m)).unwrap();
                reserved.append(&record(uid, m)).unwrap();
            }
            one_by_one.commit_header(LogPosition { term: 1, index: 9 });
            reserved.commit_header(LogPosition { term: 1, index: 9 });
            assert_eq!(one_by_one.header(), reserved.header(), "{count} records");
            assert!(one_by_one.bytes() == reserved.bytes(), "{count} records");
        }
    }

    /// A growth that fails (a full disk) leaves the index exactly as it was.
    #[test]
    fn a_failed_growth_changes_nothing() {
        let image = MailboxIndex::<VecStorage>::empty_image([1; 16], 7);
        let mut ix = MailboxIndex::open(FullDisk(VecStorage::from_bytes(image), false)).unwrap();
        let m = ix.next_modseq();
        for uid in 1..=32 {
            ix.append(&record(uid, m)).unwrap();
        }
        ix.commit_header(LogPosition { term: 1, index: 1 });
        ix.storage.1 = true;
        let (header, bytes) = (*ix.header(), ix.bytes().to_vec());
        assert!(ix.reserve_records(1).is_err());
        assert!(ix.append(&record(33, m)).is_err());
        assert_eq!(ix.header(), &header);
        assert!(ix.bytes() == bytes.as_slice());
        // Tombstones beyond the capacity fail the expunge before it changes anything.
        let m2 = ix.next_modseq();
        let expunged: Vec<usize> = (0..32).collect();
        assert!(ix.expunge(&expunged, m2).is_err());
        assert_eq!(ix.len(), 32);
        assert!(ix.bytes() == bytes.as_slice());
    }

    #[test]
    fn append_lookup_expunge_keep_invariants() {
        let mut ix = new_index();
        let m = ix.next_modseq();
        for uid in 1..=100 {
            ix.append(&record(uid * 2, m)).unwrap();
        }
        ix.commit_header(LogPosition { term: 1, index: 1 });
        assert_eq!(ix.get(40).unwrap().uid, 40);
        assert!(ix.get(41).is_none());
        assert_eq!(ix.positions_in(3, 9), 1..4);
        let m2 = ix.next_modseq();
        ix.expunge(&[0, 5, 99], m2).unwrap();
        ix.commit_header(LogPosition { term: 1, index: 2 });
        assert_eq!(ix.len(), 97);
        assert_eq!(ix.vanished_since(m), vec![2, 12, 200]);
        assert!(ix.vanished_since(m2).is_empty());
        ix.verify().unwrap();
        let reopened = MailboxIndex::open(VecStorage::from_bytes(ix.bytes().to_vec())).unwrap();
        reopened.verify().unwrap();
        assert_eq!(reopened.header(), ix.header());
        // The UID array built before the expunge was kept current: it agrees with a fresh one.
        let m3 = ix.next_modseq();
        ix.append(&record(500, m3)).unwrap();
        ix.commit_header(LogPosition { term: 1, index: 3 });
        let fresh = MailboxIndex::open(VecStorage::from_bytes(ix.bytes().to_vec())).unwrap();
        for uid in 0..=501 {
            assert_eq!(ix.position_of(uid), fresh.position_of(uid), "UID {uid}");
        }
    }

    #[test]
    fn growth_moves_tombstones_intact() {
        let mut ix = new_index();
        let m = ix.next_modseq();
        for uid in 1..=32 {
            ix.append(&record(uid, m)).unwrap();
        }
        let m = ix.next_modseq();
        ix.expunge(&[0, 1, 2], m).unwrap();
        let m = ix.next_modseq();
        for uid in 33..=200 {
            ix.append(&record(uid, m)).unwrap();
        }
        ix.commit_header(LogPosition { term: 1, index: 3 });
        ix.verify().unwrap();
        assert_eq!(ix.vanished_since(0), vec![1, 2, 3]);
    }

    #[test]
    fn changed_since_matches_a_scan() {
        let mut ix = new_index();
        let m = ix.next_modseq();
        for uid in 1..=2000 {
            ix.append(&record(uid, m)).unwrap();
        }
        assert!(ix.changed_since(m).is_empty());
        let m2 = ix.next_modseq();
        for p in [3usize, 700, 1999] {
            ix.update(p, flag_bits::SEEN, 0, m2);
        }
        let changed: Vec<u32> = ix.changed_since(m).iter().map(|r| r.uid).collect();
        assert_eq!(changed, vec![4, 701, 2000]);
        let m3 = ix.next_modseq();
        ix.expunge(&[0, 1], m3).unwrap();
        let changed: Vec<u32> = ix.changed_since(m).iter().map(|r| r.uid).collect();
        assert_eq!(changed, vec![4, 701, 2000]);
        assert_eq!(ix.header().seen_count, 3);
    }

    #[test]
    fn keywords_register_in_order_case_insensitively() {
        let mut ix = new_index();
        let names = vec!["$Junk".to_string(), "Work".to_string(), "$junk".to_string()];
        assert_eq!(ix.unknown_keyword_count(&names), 2);
        let mask = ix.register_keywords(&names);
        assert_eq!(mask, 0b11);
        assert_eq!(ix.keyword_names(0b10), vec!["Work".to_string()]);
        ix.commit_header(LogPosition::default());
        let reopened = MailboxIndex::open(VecStorage::from_bytes(ix.bytes().to_vec())).unwrap();
        assert_eq!(reopened.keywords(), ix.keywords());
    }
}
