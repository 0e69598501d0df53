//! `Manifest`: a group's state outside the mailbox files — which mailboxes each user has, the
//! UIDVALIDITY high-water mark, the exactly-once session table, the applied log position.
//!
//! Encoded with bincode 2 (standard configuration: little-endian varints; `BTreeMap`s make the
//! bytes a pure function of the content) inside a frame: magic, version, length, CRC32C.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

use super::error::SmError;
use crate::index::LogPosition;
use crate::txn::{Guid, Outcome};

const MAGIC: [u8; 8] = *b"DVTLMFST";
const VERSION: u32 = 1;
const FRAME_HEADER: usize = 8 + 4 + 8 + 4;

/// Most client sessions a group remembers; past it the least recently used is forgotten, and a
/// retry from that client would be applied again. Part of the replicated behaviour: changing it
/// is a format change.
pub const MAX_SESSIONS: usize = 100_000;

/// Largest manifest payload decoded (256 MiB): bounds allocations when decoding damaged input.
pub const MAX_MANIFEST_BYTES: usize = 256 << 20;

/// Most mailboxes one user may have.
pub const MAX_MAILBOXES_PER_USER: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The last log entry applied to the group. Invariant: every file's `applied` is at or below.
    pub applied: Option<LogPosition>,
    /// The largest UIDVALIDITY ever handed out in this group; the next one is above it, so a
    /// re-created mailbox name always gets a strictly greater UIDVALIDITY (invariant 3).
    pub uid_validity_max: u32,
    /// user -> mailbox name -> mailbox GUID.
    pub users: BTreeMap<String, BTreeMap<String, Guid>>,
    pub sessions: SessionTable,
    /// Opaque to the state machine: the consensus layer's record of the last applied log id and
    /// membership, stored here so that it is exactly as durable as `applied` and travels inside
    /// snapshots.
    pub consensus_meta: Vec<u8>,
}

/// The last request of each client and its outcome (Raft thesis §6.3 client sessions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "BTreeMap<String, Session>")]
pub struct SessionTable {
    sessions: BTreeMap<String, Session>,
    /// Derived: log index of each session's last request -> client id, for LRU eviction.
    by_index: BTreeMap<u64, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub request_seq: u64,
    pub log_index: u64,
    pub outcome: Outcome,
}

/// What the session table says about an incoming request.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCheck<'a> {
    /// Not seen: apply it.
    New,
    /// A retry of the client's last request: answer with its outcome.
    Duplicate(&'a Outcome),
    /// Older than the client's last request.
    Stale { last_seq: u64 },
}

impl SessionTable {
    pub fn check(&self, client_id: &str, request_seq: u64) -> SessionCheck<'_> {
        match self.sessions.get(client_id) {
            None => SessionCheck::New,
            Some(s) if request_seq > s.request_seq => SessionCheck::New,
            Some(s) if request_seq == s.request_seq => SessionCheck::Duplicate(&s.outcome),
            Some(s) => SessionCheck::Stale {
                last_seq: s.request_seq,
            },
        }
    }

    pub fn record(&mut self, client_id: &str, request_seq: u64, log_index: u64, outcome: Outcome) {
        if let Some(old) = self.sessions.get(client_id) {
            self.by_index.remove(&old.log_index);
        }
        self.sessions.insert(
            client_id.to_string(),
            Session {
                request_seq,
                log_index,
                outcome,
            },
        );
        self.by_index.insert(log_index, client_id.to_string());
        while self.sessions.len() > MAX_SESSIONS {
            let (_, oldest) = self.by_index.pop_first().expect("by_index mirrors sessions");
            self.sessions.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Session)> {
        self.sessions.iter()
    }
}

impl From<BTreeMap<String, Session>> for SessionTable {
    fn from(sessions: BTreeMap<String, Session>) -> Self {
        let by_index = sessions.iter().map(|(c, s)| (s.log_index, c.clone())).collect();
        SessionTable { sessions, by_index }
    }
}

impl Serialize for SessionTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sessions.serialize(serializer)
    }
}

impl Manifest {
    /// The mailbox GUID of (user, canonical name).
    pub fn mailbox(&self, user: &str, name: &str) -> Option<Guid> {
        self.users.get(user)?.get(name).copied()
    }

    /// The framed encoding written to `live/manifest` and into snapshots.
    pub fn encode(&self) -> Vec<u8> {
        let payload = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("encoding a manifest into memory cannot fail");
        let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    pub fn decode(file: &Path, bytes: &[u8]) -> Result<Manifest, SmError> {
        let corrupt = |reason: String| SmError::CorruptManifest {
            file: file.to_path_buf(),
            reason,
        };
        if bytes.len() < FRAME_HEADER {
            return Err(corrupt(format!(
                "truncated: {} bytes, frame header needs {FRAME_HEADER}",
                bytes.len()
            )));
        }
        if bytes[..8] != MAGIC {
            return Err(corrupt("not a Dovetail manifest (bad magic)".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(corrupt(format!(
                "manifest version {version} is not supported (this build reads {VERSION})"
            )));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        if len > MAX_MANIFEST_BYTES as u64 {
            return Err(corrupt(format!(
                "payload length {len} exceeds the limit of {MAX_MANIFEST_BYTES}"
            )));
        }
        let stored_crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
        let payload = &bytes[FRAME_HEADER..];
        if payload.len() as u64 != len {
            return Err(corrupt(format!(
                "payload is {} bytes, frame says {len}",
                payload.len()
            )));
        }
        let crc = crc32c::crc32c(payload);
        if crc != stored_crc {
            return Err(corrupt(format!(
                "checksum mismatch: stored {stored_crc:#x}, computed {crc:#x}"
            )));
        }
        let (manifest, used): (Manifest, usize) =
            // The limit bounds what a checksum-valid but hostile payload can make the decoder
            // allocate; a real manifest is far smaller than the frame that carries it.
            bincode::serde::decode_from_slice(payload, bincode::config::standard().with_limit::<MAX_MANIFEST_BYTES>())
                .map_err(|e| corrupt(format!("undecodable payload: {e}")))?;
        if used != payload.len() {
            return Err(corrupt(format!(
                "{} bytes after the payload",
                payload.len() - used
            )));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Rejection;

    #[test]
    fn round_trip_and_damage_is_named() {
        let mut m = Manifest {
            applied: Some(LogPosition::new(2, 9)),
            ..Manifest::default()
        };
        m.users
            .entry("u".into())
            .or_default()
            .insert("INBOX".into(), [3; 16]);
        m.sessions
            .record("c", 4, 9, Outcome::Rejected(Rejection::UidSpaceExhausted));
        let bytes = m.encode();
        let back = Manifest::decode(Path::new("m"), &bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.sessions.check("c", 4),
            SessionCheck::Duplicate(&m.sessions.sessions["c"].outcome)
        );
        for cut in [0, 10, FRAME_HEADER, bytes.len() - 1] {
            assert!(matches!(
                Manifest::decode(Path::new("m"), &bytes[..cut]),
                Err(SmError::CorruptManifest { .. })
            ));
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(Manifest::decode(Path::new("m"), &flipped).is_err());
    }

    #[test]
    fn sessions_evict_least_recent() {
        let mut t = SessionTable::default();
        for i in 0..(MAX_SESSIONS as u64 + 2) {
            t.record(&format!("c{i}"), 1, i + 1, Outcome::Renamed { mailboxes: 1 });
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        assert_eq!(t.check("c0", 1), SessionCheck::New);
        assert_eq!(t.check("c1", 1), SessionCheck::New);
        assert!(matches!(t.check("c2", 1), SessionCheck::Duplicate(_)));
        assert_eq!(t.check("c2", 0), SessionCheck::Stale { last_seq: 1 });
    }
}
