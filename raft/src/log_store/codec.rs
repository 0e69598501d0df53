//! How the log store lays values out in sled: keys, meta key names, and the bincode encoding.
//!
//! This is the on-disk format of the Raft log, a contract between versions of this crate:
//!
//! - Default tree, key [`FORMAT_KEY`]: the format tag [`FORMAT`]; checked on open.
//! - Tree `raft/group/{group_id}/log`: one entry per key. Key: the log index as 8 big-endian
//!   bytes, so sled's byte order is numeric order. Value: the openraft entry, bincode 2
//!   (`config::standard()`: little-endian, varint integers) through serde, decoded with a limit
//!   set by the value's length (`crate::decode`). sled checks a CRC32 of every record it reads
//!   back; the reader checks that a key holds the entry of its index.
//! - Tree `raft/group/{group_id}/meta`: keys [`VOTE_KEY`], [`COMMITTED_KEY`],
//!   [`LAST_PURGED_KEY`]; values bincode 2 as above. An absent key means `None`.
//!
//! An entry serializes as `(log_id, payload)` in that order, so the log id can be read from the
//! front of a value without decoding the payload.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::type_config::LogId;

/// Key of the format tag in sled's default tree.
pub const FORMAT_KEY: &[u8] = b"raft/format";
/// Current format tag. Bump it (and keep a reader for the old one) on any layout change.
///
/// v2: a normal entry carries a [`Batch`](crate::type_config::Batch) of requests (v1: one
/// request). v1 was never released; a v1 log is refused by name (`LogStoreError::Format`).
pub const FORMAT: &[u8] = b"dovetail-raft-log-v2";

/// Meta key of the last saved vote.
pub const VOTE_KEY: &[u8] = b"vote";
/// Meta key of the last saved committed log id (written without waiting for an fsync).
pub const COMMITTED_KEY: &[u8] = b"committed";
/// Meta key of the log id of the last purged entry. Invariant: no entry at or below it remains.
pub const LAST_PURGED_KEY: &[u8] = b"last_purged_log_id";

/// Name of the sled tree holding group `group_id`'s entries.
pub fn entries_tree_name(group_id: crate::GroupId) -> String {
    format!("raft/group/{group_id}/log")
}

/// Name of the sled tree holding group `group_id`'s vote, committed and purge state.
pub fn meta_tree_name(group_id: crate::GroupId) -> String {
    format!("raft/group/{group_id}/meta")
}

/// The sled key of the entry at `index`.
pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index an entry key names; `None` if the key is not 8 bytes long.
pub fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value as the log store writes it. Public for the fuzz corpus (`tests/fuzz/targets/seeds.rs`).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, config())
}

/// Decodes a whole value; trailing bytes are an error, since they mean the value is not what
/// the reader thinks it is. Public for the fuzz targets (`tests/fuzz/targets/peer.rs`).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    let (value, read) = crate::decode::decode_from_slice(bytes)?;
    if read != bytes.len() {
        return Err(bincode::error::DecodeError::OtherString(format!(
            "{} trailing bytes after a {}-byte value",
            bytes.len() - read,
            read
        )));
    }
    Ok(value)
}

/// Reads the log id at the front of an encoded entry, leaving the payload undecoded. Public for
/// the fuzz targets.
pub fn decode_log_id_prefix(entry_bytes: &[u8]) -> Result<LogId, bincode::error::DecodeError> {
    let (log_id, _) = crate::decode::decode_from_slice(entry_bytes)?;
    Ok(log_id)
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::type_config::{Batch, Entry, LeaderId, Request, Vote};

    /// term 3, node 2, index 300 (varint: 251 then u16 LE), variant 1 = Normal, 2 bytes.
    const GOLDEN_ENTRY: &[u8] = &[3, 2, 251, 44, 1, 1, 1, 2, 0xAB, 0xCD];
    /// term 5, node 1, committed.
    const GOLDEN_VOTE: &[u8] = &[5, 1, 1];

    #[test]
    fn keys_order_numerically() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 256, 1, u64::MAX, 0]
            .iter()
            .map(|i| index_key(*i))
            .collect();
        keys.sort();
        let indexes: Vec<u64> = keys.iter().map(|k| key_index(k).unwrap()).collect();
        assert_eq!(indexes, [0, 1, 2, 256, 300, u64::MAX]);
        assert_eq!(key_index(b"short"), None);
    }

    /// Pins the on-disk encoding: if this changes, the format tag must change with it.
    #[test]
    fn entry_encoding_is_stable() {
        let entry = Entry::new_normal(
            LogId::new(LeaderId::new_committed(3, 2), 300),
            Batch(vec![Request(vec![0xAB, 0xCD])]),
        );
        let encoded = encode(&entry).unwrap();
        assert_eq!(encoded, GOLDEN_ENTRY);
        assert_eq!(encode(&Vote::new_committed(5, 1)).unwrap(), GOLDEN_VOTE);
    }

    /// Regression (fuzz target `raft_log_values`): a stored entry whose request length claims
    /// 2^40 bytes made the decoder allocate it before reading (an abort at startup, reading the
    /// log). It is a decode error, for the whole entry and for the log id at its front alike.
    #[test]
    fn an_entry_claiming_a_huge_request_is_a_decode_error() {
        let mut bytes = GOLDEN_ENTRY[..7].to_vec();
        bytes.push(253);
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(&[0xAB, 0xCD]);
        assert!(decode::<Entry>(&bytes).is_err());
        assert_eq!(decode_log_id_prefix(&bytes).unwrap().index, 300);
        // A batch claiming 2^40 requests: each is 24 bytes in memory.
        let mut batch = GOLDEN_ENTRY[..6].to_vec();
        batch.push(253);
        batch.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode::<Entry>(&batch).is_err());
    }

    #[test]
    fn log_id_is_readable_from_the_front_of_an_entry() {
        let log_id = LogId::new(LeaderId::new_committed(9, 4), 1234);
        let entry = Entry::new_normal(log_id, Batch(vec![Request(vec![7; 1000])]));
        let bytes = encode(&entry).unwrap();
        assert_eq!(decode_log_id_prefix(&bytes).unwrap(), log_id);
        assert_eq!(decode::<Entry>(&bytes).unwrap(), entry);

        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            decode::<Entry>(&longer).is_err(),
            "trailing bytes must be rejected"
        );
        assert!(
            decode::<Entry>(&bytes[..bytes.len() - 1]).is_err(),
            "truncated value must be rejected"
        );
    }
}
