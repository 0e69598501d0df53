//! `MimeCache`: the ENVELOPE, BODYSTRUCTURE and BODY a node has computed, by body id, shared by
//! all its IMAP sessions, so that a FETCH asking only these (and index facts such as FLAGS)
//! reads no body: no file read, no SHA-256 check, no header scan. Dovecot answers the same
//! FETCH from its cache file.
//!
//! **An entry is never stale.** A body id names its bytes (`BodyId::of`: the SHA-256 of the
//! bytes), and a body's bytes never change under its id; each cached value is exactly what
//! [`MimeItem::compute`] (`super::mime`) gives for those bytes, which is the same on every node
//! (the MIME items are pure functions of the stored bytes). So a hit is byte for byte the
//! answer a miss would have computed, nothing ever invalidates an entry, and an entry leaves
//! only to make room. A message stored by reference without bytes has no body id and is never
//! cached.
//!
//! **Bound.** At most `budget_bytes` of entries, each weighed as its item's length on the wire
//! plus [`ENTRY_OVERHEAD_BYTES`] (the heap an owned `Envelope` or `BodyStructure` holds is within
//! a small factor of its wire form). At the bound the least recently used entries are evicted
//! (a doubly-linked list over a slab, with a hash map: O(1) per lookup and per insert, plus the
//! evictions); an entry heavier than the whole budget is not kept.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use imap_codec::encode::Encoder;
use imap_codec::ResponseCodec;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::response::{Data, Response};

use super::mime::{self, ParsedMessage};
use crate::bodies::BodyId;

/// The node's budget for the cache: 32 MiB of entries, some 30,000 ENVELOPEs of ordinary mail.
pub const MIME_CACHE_BYTES: usize = 32 << 20;

/// What an entry costs beyond its item's wire length: the key, the list links, the map's slot,
/// the value's allocations.
pub const ENTRY_OVERHEAD_BYTES: usize = 128;

/// A FETCH item the cache holds: one computed from the message's bytes alone, costly enough to
/// keep (RFC822.SIZE and the like come from the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MimeItem {
    Envelope,
    BodyStructure,
    Body,
}

impl MimeItem {
    /// The cached item a FETCH item name asks for, if the cache holds that kind.
    pub fn of(name: &MessageDataItemName<'_>) -> Option<MimeItem> {
        match name {
            MessageDataItemName::Envelope => Some(MimeItem::Envelope),
            MessageDataItemName::BodyStructure => Some(MimeItem::BodyStructure),
            MessageDataItemName::Body => Some(MimeItem::Body),
            _ => None,
        }
    }

    /// The item's value for a message's stored `bytes`, as `super::mime` computes it: from
    /// `parsed` (the same bytes, cut once) when the FETCH cut them anyway; ENVELOPE needs only
    /// the top header, so without `parsed` it does not cut the body.
    pub fn compute(self, bytes: &[u8], parsed: Option<&ParsedMessage<'_>>) -> MessageDataItem<'static> {
        match (self, parsed) {
            (MimeItem::Envelope, Some(parsed)) => MessageDataItem::Envelope(parsed.envelope()),
            (MimeItem::Envelope, None) => MessageDataItem::Envelope(mime::envelope(bytes)),
            (MimeItem::BodyStructure, Some(parsed)) => {
                MessageDataItem::BodyStructure(parsed.body_structure(true))
            }
            (MimeItem::BodyStructure, None) => {
                MessageDataItem::BodyStructure(mime::body_structure(bytes, true))
            }
            (MimeItem::Body, Some(parsed)) => MessageDataItem::Body(parsed.body_structure(false)),
            (MimeItem::Body, None) => MessageDataItem::Body(mime::body_structure(bytes, false)),
        }
    }
}

/// The length of `item` inside a `* n FETCH (...)` response: an entry's weight.
pub fn wire_bytes(item: &MessageDataItem<'static>) -> usize {
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::from(item.clone()),
    });
    ResponseCodec::default().encode(&response).dump().len()
}

type Key = (BodyId, MimeItem);

/// One entry, a node of the recency list (`NIL`: no neighbour).
struct Entry {
    key: Key,
    value: Arc<MessageDataItem<'static>>,
    weight: usize,
    newer: usize,
    older: usize,
}

const NIL: usize = usize::MAX;

/// The LRU list and its index, behind [`MimeCache`]'s lock.
///
/// Invariant: `weight_bytes` is the sum of the live entries' weights and is at most
/// `budget_bytes`; `map` holds exactly the live entries' keys, each at its slot; the live slots
/// form one list from `newest` to `oldest`; `free` holds the other slots.
struct Lru {
    map: HashMap<Key, usize>,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    newest: usize,
    oldest: usize,
    weight_bytes: usize,
    budget_bytes: usize,
}

impl Lru {
    fn entry(&mut self, slot: usize) -> &mut Entry {
        self.slots[slot].as_mut().expect("a linked slot is live")
    }

    fn unlink(&mut self, slot: usize) {
        let (newer, older) = {
            let entry = self.entry(slot);
            (entry.newer, entry.older)
        };
        match newer {
            NIL => self.newest = older,
            newer => self.entry(newer).older = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => self.entry(older).newer = newer,
        }
    }

    fn push_newest(&mut self, slot: usize) {
        let newest = self.newest;
        {
            let entry = self.entry(slot);
            entry.newer = NIL;
            entry.older = newest;
        }
        match newest {
            NIL => self.oldest = slot,
            newest => self.entry(newest).newer = slot,
        }
        self.newest = slot;
    }

    fn get(&mut self, key: &Key) -> Option<Arc<MessageDataItem<'static>>> {
        let slot = *self.map.get(key)?;
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
        Some(Arc::clone(&self.entry(slot).value))
    }

    fn remove(&mut self, slot: usize) {
        self.unlink(slot);
        let entry = self.slots[slot].take().expect("a linked slot is live");
        self.map.remove(&entry.key);
        self.weight_bytes -= entry.weight;
        self.free.push(slot);
    }

    fn insert(&mut self, key: Key, value: Arc<MessageDataItem<'static>>, weight: usize) {
        if let Some(&slot) = self.map.get(&key) {
            // Computed twice (two sessions missed together): the values are equal (module doc).
            self.remove(slot);
        }
        if weight > self.budget_bytes {
            return;
        }
        while self.weight_bytes + weight > self.budget_bytes {
            let oldest = self.oldest;
            debug_assert_ne!(oldest, NIL, "entries weigh more than nothing");
            self.remove(oldest);
        }
        let entry = Entry {
            key,
            value,
            weight,
            newer: NIL,
            older: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.push_newest(slot);
        self.map.insert(key, slot);
        self.weight_bytes += weight;
        debug_assert!(self.weight_bytes <= self.budget_bytes);
        debug_assert_eq!(self.map.len() + self.free.len(), self.slots.len());
    }
}

/// ENVELOPE, BODYSTRUCTURE and BODY by body id, bounded, least recently used evicted first (the
/// module doc).
pub struct MimeCache {
    lru: Mutex<Lru>,
}

impl MimeCache {
    /// An empty cache holding at most `budget_bytes` of entries (weighed as the module doc says).
    pub fn new(budget_bytes: usize) -> MimeCache {
        MimeCache {
            lru: Mutex::new(Lru {
                map: HashMap::new(),
                slots: Vec::new(),
                free: Vec::new(),
                newest: NIL,
                oldest: NIL,
                weight_bytes: 0,
                budget_bytes,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // Nothing under the lock panics but a broken invariant of the list (`Lru`), after which
        // no answer from it can be trusted: stop, naming it, rather than serve from it.
        self.lru
            .lock()
            .expect("the MIME cache's list is intact (a panic under its lock broke it)")
    }

    /// The cached `item` of body `id`, made the most recently used; `None` on a miss.
    pub fn get(&self, id: BodyId, item: MimeItem) -> Option<Arc<MessageDataItem<'static>>> {
        self.lock().get(&(id, item))
    }

    /// Keeps `value` as body `id`'s `item`, which must be `item.compute(bytes, ..)` of the bytes
    /// named `id` (the only thing that makes a hit right); evicts the least recently used
    /// entries to stay within the budget.
    pub fn insert(&self, id: BodyId, item: MimeItem, value: MessageDataItem<'static>) {
        let weight = wire_bytes(&value) + ENTRY_OVERHEAD_BYTES;
        self.lock().insert((id, item), Arc::new(value), weight);
    }

    /// Entries held and their weight in bytes.
    pub fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.map.len(), lru.weight_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::mime_tests::fixtures;

    fn message(n: usize) -> Vec<u8> {
        format!("From: a{n}@example.org\r\nSubject: message {n}\r\nMessage-ID: <{n}@x>\r\n\r\nbody {n}\r\n")
            .into_bytes()
    }

    /// `* 1 FETCH (item)` as the server writes it.
    fn wire(item: MessageDataItem<'static>) -> Vec<u8> {
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(item),
        });
        ResponseCodec::default().encode(&response).dump()
    }

    #[test]
    fn cached_items_are_byte_identical_on_the_wire_for_every_fixture() {
        let fixtures = fixtures();
        assert!(fixtures.len() >= 15, "{} fixtures", fixtures.len());
        let items = [MimeItem::Envelope, MimeItem::BodyStructure, MimeItem::Body];
        // What the `mime` functions give, each message cut anew: the answers checked against
        // Dovecot's recordings (`mime_tests`).
        let uncached = |bytes: &[u8], item: MimeItem| match item {
            MimeItem::Envelope => MessageDataItem::Envelope(mime::envelope(bytes)),
            MimeItem::BodyStructure => MessageDataItem::BodyStructure(mime::body_structure(bytes, true)),
            MimeItem::Body => MessageDataItem::Body(mime::body_structure(bytes, false)),
        };
        let cache = MimeCache::new(MIME_CACHE_BYTES);
        // Filled as FETCH fills it, half from a message cut once, half from the bytes alone.
        for (i, (_, bytes)) in fixtures.iter().enumerate() {
            let parsed = ParsedMessage::parse(bytes);
            for item in items {
                let value = item.compute(bytes, (i % 2 == 0).then_some(&parsed));
                cache.insert(BodyId::of(bytes), item, value);
            }
        }
        assert_eq!(cache.usage().0, fixtures.len() * items.len());
        for (name, bytes) in &fixtures {
            for item in items {
                let hit = cache
                    .get(BodyId::of(bytes), item)
                    .unwrap_or_else(|| panic!("{name} {item:?}"));
                let expected = wire(uncached(bytes, item));
                assert_eq!(
                    wire(Arc::unwrap_or_clone(hit)),
                    expected,
                    "{name} {item:?}: cached {} and computed {} differ",
                    String::from_utf8_lossy(&wire((*cache.get(BodyId::of(bytes), item).unwrap()).clone())),
                    String::from_utf8_lossy(&expected),
                );
                let parsed = ParsedMessage::parse(bytes);
                assert_eq!(
                    wire(item.compute(bytes, Some(&parsed))),
                    expected,
                    "{name} {item:?}"
                );
                assert_eq!(wire(item.compute(bytes, None)), expected, "{name} {item:?}");
            }
        }
    }

    fn envelope_of(bytes: &[u8]) -> MessageDataItem<'static> {
        MimeItem::Envelope.compute(bytes, None)
    }

    #[test]
    fn a_hit_is_the_value_inserted_for_that_body_and_item() {
        let cache = MimeCache::new(MIME_CACHE_BYTES);
        let (one, two) = (message(1), message(2));
        let (id_one, id_two) = (BodyId::of(&one), BodyId::of(&two));
        assert!(cache.get(id_one, MimeItem::Envelope).is_none());
        cache.insert(id_one, MimeItem::Envelope, envelope_of(&one));
        cache.insert(id_two, MimeItem::Envelope, envelope_of(&two));
        cache.insert(
            id_one,
            MimeItem::BodyStructure,
            MimeItem::BodyStructure.compute(&one, None),
        );
        assert_eq!(*cache.get(id_one, MimeItem::Envelope).unwrap(), envelope_of(&one));
        assert_eq!(*cache.get(id_two, MimeItem::Envelope).unwrap(), envelope_of(&two));
        assert_eq!(
            *cache.get(id_one, MimeItem::BodyStructure).unwrap(),
            MimeItem::BodyStructure.compute(&one, None)
        );
        assert!(cache.get(id_two, MimeItem::BodyStructure).is_none());
        assert!(cache.get(id_one, MimeItem::Body).is_none());
        assert_eq!(cache.usage().0, 3);
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let weight = wire_bytes(&envelope_of(&message(10))) + ENTRY_OVERHEAD_BYTES;
        // Room for about four entries of this size (the messages' numbers have two digits).
        let cache = MimeCache::new(4 * weight + weight / 2);
        let ids: Vec<BodyId> = (10..30).map(|n| BodyId::of(&message(n))).collect();
        for (i, n) in (10..14).enumerate() {
            cache.insert(ids[i], MimeItem::Envelope, envelope_of(&message(n)));
        }
        assert_eq!(cache.usage(), (4, 4 * weight));
        // Message 10 used again: 11 is now the least recently used, and goes first.
        assert!(cache.get(ids[0], MimeItem::Envelope).is_some());
        cache.insert(ids[4], MimeItem::Envelope, envelope_of(&message(14)));
        assert!(cache.get(ids[1], MimeItem::Envelope).is_none());
        for i in [0, 2, 3, 4] {
            assert!(cache.get(ids[i], MimeItem::Envelope).is_some(), "entry {i}");
        }
        for (i, n) in (10..30).enumerate() {
            cache.insert(ids[i], MimeItem::Envelope, envelope_of(&message(n)));
            let (entries, bytes) = cache.usage();
            assert!(
                entries <= 4 && bytes <= 4 * weight + weight / 2,
                "{entries} entries, {bytes} bytes"
            );
        }
        // The last four in, each still the value of its own body.
        for (i, n) in (26..30).enumerate() {
            assert_eq!(
                *cache.get(ids[16 + i], MimeItem::Envelope).unwrap(),
                envelope_of(&message(n))
            );
        }
    }

    #[test]
    fn an_entry_heavier_than_the_budget_is_not_kept_and_a_second_insert_replaces() {
        let bytes = message(1);
        let id = BodyId::of(&bytes);
        let tiny = MimeCache::new(ENTRY_OVERHEAD_BYTES);
        tiny.insert(id, MimeItem::Envelope, envelope_of(&bytes));
        assert_eq!(tiny.usage(), (0, 0));
        assert!(tiny.get(id, MimeItem::Envelope).is_none());
        let cache = MimeCache::new(MIME_CACHE_BYTES);
        cache.insert(id, MimeItem::Envelope, envelope_of(&bytes));
        cache.insert(id, MimeItem::Envelope, envelope_of(&bytes));
        let weight = wire_bytes(&envelope_of(&bytes)) + ENTRY_OVERHEAD_BYTES;
        assert_eq!(cache.usage(), (1, weight));
    }
}
