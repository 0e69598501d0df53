//! `index`: an index file, as `dovetail dump` and a group's open read it.

use std::path::Path;

use dovetail::index::{Header, MailboxIndex, VecStorage};

/// Decodes the header, opens (O(1) checks), verifies (O(n) checks), and if the file passes,
/// reads it every way the node does; a file that verified must answer every read consistently.
pub fn index(data: &[u8]) {
    let _ = Header::decode(Path::new("fuzz.idx"), data);
    let Ok(index) = MailboxIndex::open(VecStorage::from_bytes(data.to_vec())) else {
        return;
    };
    // An open index answers header reads and lookups without a verify (the node does so).
    let _ = index.keywords();
    let _ = index.position_of(1);
    if index.verify().is_err() {
        return;
    }
    let _ = index.changed_since(0);
    let _ = index.changed_since(index.header().highest_modseq / 2);
    let _ = index.vanished_since(0);
    for position in 0..index.len() {
        let record = index.record_at(position);
        assert_eq!(
            index.get(record.uid),
            Some(record),
            "a verified index finds its own records"
        );
        let _ = index.keyword_names(record.keywords);
    }
    for position in 0..index.header().tombstone_count as usize {
        let _ = index.tombstone_at(position);
    }
    let _ = index.positions_in(1, u32::MAX);
}
