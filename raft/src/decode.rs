//! Decoding bincode 2 from bytes that may be damaged or hostile, without letting a length field
//! size an allocation.
//!
//! bincode's standard configuration has no limit: a `String` or `Vec<u8>` is allocated whole at
//! the length its length field claims, before a byte of it is read, so one varint claiming 2^40
//! bytes aborts the process (found by the fuzz targets `log_entry` and `raft_log_values`). With a
//! limit, bincode counts what each container claims and fails once the count passes it.
//! [`decode_from_slice`] sets the limit from the input: bytes can only be read from the input,
//! and a vector of values claims their size in memory up front (each element then gives its
//! share back before it is decoded), at most [`CLAIM_PER_INPUT_BYTE`] times the bytes of its
//! elements for the types this workspace decodes (an empty request: 24 bytes in memory, one on
//! the wire). So a decode may allocate at most about that multiple of its input, never more
//! than [`MIN_LIMIT`] for small inputs.
//!
//! Every decode of stored or received bytes in the workspace goes through it: log entries and
//! their requests, outcomes, manifests, consensus metadata, the Raft log's values, peer frames.

use bincode::config::Config;
use bincode::error::DecodeError;
use serde::de::DeserializeOwned;

/// What a decode may claim per byte of input.
pub const CLAIM_PER_INPUT_BYTE: usize = 32;
/// The smallest limit: small values decode as freely as ever.
pub const MIN_LIMIT: usize = 1 << 16;

/// bincode 2's standard configuration (little-endian, varint integers), with a size limit of at
/// least `CLAIM_PER_INPUT_BYTE` times the input (rounded up to a power of 16), so that a length
/// field can make the decoder allocate at most a multiple of the input it came with. Returns the
/// value and the bytes it used, as `bincode::serde::decode_from_slice`.
pub fn decode_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    fn with<T: DeserializeOwned, C: Config>(bytes: &[u8], config: C) -> Result<(T, usize), DecodeError> {
        bincode::serde::decode_from_slice(bytes, config)
    }
    let standard = bincode::config::standard();
    let needed = bytes.len().saturating_mul(CLAIM_PER_INPUT_BYTE).max(MIN_LIMIT);
    match needed {
        n if n <= 1 << 16 => with(bytes, standard.with_limit::<{ 1 << 16 }>()),
        n if n <= 1 << 20 => with(bytes, standard.with_limit::<{ 1 << 20 }>()),
        n if n <= 1 << 24 => with(bytes, standard.with_limit::<{ 1 << 24 }>()),
        n if n <= 1 << 28 => with(bytes, standard.with_limit::<{ 1 << 28 }>()),
        n if n <= 1 << 32 => with(bytes, standard.with_limit::<{ 1 << 32 }>()),
        _ => with(bytes, standard.with_limit::<{ 1 << 36 }>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string claiming 2^40 bytes (a varint: 253, then a u64) is refused, not allocated.
    #[test]
    fn a_huge_length_is_refused_not_allocated() {
        let mut bytes = vec![253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert!(matches!(
            decode_from_slice::<String>(&bytes),
            Err(DecodeError::LimitExceeded)
        ));
        // Also when the claim fits the smallest limit but not the input: bincode then reads
        // past the end.
        let mut short = vec![251];
        short.extend_from_slice(&60_000u16.to_le_bytes());
        assert!(decode_from_slice::<String>(&short).is_err());
    }

    /// Values decode as with the plain standard configuration, also those whose in-memory size
    /// is many times their encoding (vectors of empty vectors) up to the limit's multiple.
    #[test]
    fn values_decode_as_without_a_limit() {
        let standard = bincode::config::standard();
        let value: (String, Vec<Vec<u8>>, u64) = ("x".repeat(300_000), vec![Vec::new(); 2000], u64::MAX);
        let bytes = bincode::serde::encode_to_vec(&value, standard).unwrap();
        let (decoded, used): ((String, Vec<Vec<u8>>, u64), usize) = decode_from_slice(&bytes).unwrap();
        assert_eq!((decoded, used), (value, bytes.len()));
        let empties = vec![Vec::<u8>::new(); 100_000];
        let bytes = bincode::serde::encode_to_vec(&empties, standard).unwrap();
        assert_eq!(decode_from_slice::<Vec<Vec<u8>>>(&bytes).unwrap().0, empties);
    }
}
