//! `Manifest`: a group's state outside the mailbox files — which mailboxes each user has, the
//! UIDVALIDITY high-water mark, the exactly-once session table, the applied log position, and
//! (from log encoding 4 on) each user's IMAP subscriptions.
//!
//! Encoded with bincode 2 (standard configuration: little-endian varints; `BTreeMap`s make the
//! bytes a pure function of the content) inside a frame: magic, version, length, CRC32C.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

use super::error::SmError;
use crate::index::LogPosition;
use crate::txn::validate::{canonical_mailbox_name, check_mailbox_name};
use crate::txn::{quoted, Guid, Outcome};

const MAGIC: [u8; 8] = *b"DVTLMFST";
/// The layout of a group in log encoding 0: the fields of [`Manifest`] but `encoding`.
const VERSION_1: u32 = 1;
/// The layout of a group in log encoding 1: version 1's fields, then `encoding`.
const VERSION_2: u32 = 2;
/// The layout of a group in log encoding 2 or later: version 2's fields, then the sessions'
/// request digests (client id -> digest, for the sessions that have one).
const VERSION_3: u32 = 3;
/// The layout of a group in log encoding 4 or later: version 3's fields, then the users'
/// subscriptions (user -> subscribed mailbox names). Subscriptions live here rather than in a
/// file of their own because they are small per-user name lists like the mailbox names beside
/// them, change only by log entries, and must travel in snapshots, checkpoints and backups and
/// be checked and written atomically with the rest of the group's names: the manifest already
/// is that file (CRC'd, versioned by the log encoding, rewritten whole at every flush).
const VERSION_4: u32 = 4;
const FRAME_HEADER: usize = 8 + 4 + 8 + 4;

/// Most named client sessions (a `client_id` the client chose) a group remembers; past it the
/// least recently used is forgotten, and a retry from that client would be applied again. Part
/// of the replicated behaviour: changing it is a format change.
pub const MAX_SESSIONS: usize = 100_000;

/// Client ids that start with this are the one-off ids a node makes for a write that came
/// without `client_id` (the API refuses it from clients). Only that node's own retries of that
/// write ever use one again, within its request timeout.
pub const ANONYMOUS_CLIENT_PREFIX: &str = "anon-";

/// Most anonymous sessions a group remembers, apart from the named ones; past it the least
/// recently used is forgotten. They only guard a node's own retries of a write whose answer it
/// did not get (a lost connection, a leader that stepped down after replicating it): the retry
/// follows within 200 ms of the failure, and a group applies nothing while it elects, so the
/// anonymous writes applied between the first attempt and the retry are about the group's
/// writes in flight plus 200 ms of its traffic, far below this bound at the rates measured
/// here (under 2,500 writes a second per group). Without the bound every anonymous write left a
/// session behind, up to [`MAX_SESSIONS`], and each group's manifest, re-encoded and rewritten
/// at every flush (500 ms), grew by about 55 bytes per write, towards 5 MB (in 80 s of 64
/// appending clients it reached 660 KB, and encoding it was the top CPU cost). With the bound
/// it stays near 230 KB. Part of the replicated behaviour, like [`MAX_SESSIONS`].
pub const MAX_ANONYMOUS_SESSIONS: usize = 4_096;

/// Largest manifest payload decoded (256 MiB): a frame claiming more is refused unread.
pub const MAX_MANIFEST_BYTES: usize = 256 << 20;

/// Most mailboxes one user may have.
pub const MAX_MAILBOXES_PER_USER: usize = 10_000;

/// Most subscriptions one user may have (a subscription may name a mailbox that does not exist,
/// so they are bounded on their own). Part of the replicated behaviour, like
/// [`MAX_MAILBOXES_PER_USER`].
pub const MAX_SUBSCRIPTIONS_PER_USER: usize = 10_000;

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
    /// The group's active log encoding (`txn::encoding`), raised only by a committed
    /// `SetEncoding`. Not a field of the version 1 layout: a manifest of a group in encoding 0 is
    /// written in layout 1, byte for byte as releases before encodings wrote it, and one in
    /// encoding 1 or later in layout 2, which adds this field. So the layout follows the log,
    /// and replicas at one position write the same bytes whatever build they run.
    #[serde(skip)]
    pub encoding: u8,
    /// user -> subscribed mailbox names (canonical, as mailbox names are stored), from log
    /// encoding 4 on (IMAP SUBSCRIBE, RFC 3501 §6.3.6). A name need not be a mailbox: deleting
    /// a mailbox does not unsubscribe it, and renaming one does not rename its subscription
    /// (RFC 3501's rule; clients that want it re-subscribe). Not part of layouts 1 to 3, so
    /// empty in every group below encoding 4. Invariant: no user has an empty set, and none
    /// more than [`MAX_SUBSCRIPTIONS_PER_USER`] names.
    #[serde(skip)]
    pub subscriptions: BTreeMap<String, BTreeSet<String>>,
}

/// The last request of each client and its outcome (Raft thesis §6.3 client sessions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "BTreeMap<String, Session>")]
pub struct SessionTable {
    sessions: BTreeMap<String, Session>,
    /// Derived, for LRU eviction: (log index of the session's last request, client id) of every
    /// named session, least recent first. The client id is part of the key because the requests
    /// of one log entry (a batch) share its index; the order among them is by client id, a
    /// function of the persisted table alone, so a replica that reloaded its manifest evicts
    /// exactly as one that did not.
    named_order: BTreeSet<(u64, String)>,
    /// The same for the anonymous sessions ([`ANONYMOUS_CLIENT_PREFIX`]).
    anonymous_order: BTreeSet<(u64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub request_seq: u64,
    pub log_index: u64,
    pub outcome: Outcome,
    /// From log encoding 2 on: a digest of the request ([`request_digest`]), so that a retry
    /// with the same `(client_id, request_seq)` but another request is refused instead of
    /// answered with this outcome. Not part of layouts 1 and 2 (the manifest's layout 3 carries
    /// the digests beside the table).
    #[serde(skip)]
    pub digest: Option<RequestDigest>,
}

/// 128 bits of the SHA-256 of what a client asked for (see [`request_digest`]).
pub type RequestDigest = [u8; 16];

/// The digest of `op` that sessions remember from log encoding 2 on: of what the client asked
/// for, not of what the node that took the request chose for it — a retry through another node
/// (or later) is the same request though it gets another proposed mailbox GUID and UIDVALIDITY
/// (a create) or internal date (an append without one). So those fields are zeroed first.
pub fn request_digest(op: &crate::txn::Op) -> RequestDigest {
    use sha2::Digest;

    use crate::txn::Op;
    let mut asked = op.clone();
    match &mut asked {
        Op::CreateMailbox {
            mailbox_guid,
            uid_validity,
            ..
        } => {
            *mailbox_guid = [0; 16];
            *uid_validity = 0;
        }
        Op::Append { messages, .. } | Op::Deliver { messages, .. } => {
            messages.iter_mut().for_each(|m| m.internal_date = 0)
        }
        _ => {}
    }
    let encoded = bincode::serde::encode_to_vec(&asked, bincode::config::standard())
        .expect("encoding into memory cannot fail");
    let hash = sha2::Sha256::digest(&encoded);
    hash[..16].try_into().expect("16 of 32 bytes")
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
        let (order, limit) = if is_anonymous(client_id) {
            (&mut self.anonymous_order, MAX_ANONYMOUS_SESSIONS)
        } else {
            (&mut self.named_order, MAX_SESSIONS)
        };
        let previous = self.sessions.insert(
            client_id.to_string(),
            Session {
                request_seq,
                log_index,
                outcome,
                digest: None,
            },
        );
        if let Some(old) = previous {
            order.remove(&(old.log_index, client_id.to_string()));
        }
        order.insert((log_index, client_id.to_string()));
        while order.len() > limit {
            if let Some((_, oldest)) = order.pop_first() {
                self.sessions.remove(&oldest);
            }
        }
    }

    /// How many of the sessions are anonymous.
    pub fn anonymous_len(&self) -> usize {
        self.anonymous_order.len()
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

    pub fn contains(&self, client_id: &str) -> bool {
        self.sessions.contains_key(client_id)
    }

    /// The digest of `client_id`'s last request, if it was recorded with one.
    pub fn digest(&self, client_id: &str) -> Option<RequestDigest> {
        self.sessions.get(client_id)?.digest
    }

    /// Records the digest of `client_id`'s last request (just recorded).
    pub fn set_digest(&mut self, client_id: &str, digest: RequestDigest) {
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.digest = Some(digest);
        }
    }

    /// Every recorded digest, by client id (what layout 3 stores beside the table).
    fn digests(&self) -> BTreeMap<&str, RequestDigest> {
        self.sessions
            .iter()
            .filter_map(|(client_id, session)| Some((client_id.as_str(), session.digest?)))
            .collect()
    }
}

/// Whether `client_id` is one a node made for a write without `client_id`.
pub fn is_anonymous(client_id: &str) -> bool {
    client_id.starts_with(ANONYMOUS_CLIENT_PREFIX)
}

impl From<BTreeMap<String, Session>> for SessionTable {
    fn from(sessions: BTreeMap<String, Session>) -> Self {
        let (mut named_order, mut anonymous_order) = (BTreeSet::new(), BTreeSet::new());
        for (client_id, session) in &sessions {
            let order = if is_anonymous(client_id) {
                &mut anonymous_order
            } else {
                &mut named_order
            };
            order.insert((session.log_index, client_id.clone()));
        }
        SessionTable {
            sessions,
            named_order,
            anonymous_order,
        }
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
        let standard = bincode::config::standard();
        let (version, payload) = match self.encoding {
            0 => (VERSION_1, bincode::serde::encode_to_vec(self, standard)),
            1 => (
                VERSION_2,
                bincode::serde::encode_to_vec((self, self.encoding), standard),
            ),
            2 | 3 => (
                VERSION_3,
                bincode::serde::encode_to_vec((self, self.encoding, self.sessions.digests()), standard),
            ),
            _ => (
                VERSION_4,
                bincode::serde::encode_to_vec(
                    (self, self.encoding, self.sessions.digests(), &self.subscriptions),
                    standard,
                ),
            ),
        };
        debug_assert!(
            self.encoding >= 4 || self.subscriptions.is_empty(),
            "invariant: subscriptions only from log encoding 4 on"
        );
        let payload = payload.expect("encoding a manifest into memory cannot fail");
        let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
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
        if !(VERSION_1..=VERSION_4).contains(&version) {
            return Err(corrupt(format!(
                "manifest version {version} is not supported (this build reads {VERSION_1} to {VERSION_4})"
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
        // A checksum-valid but hostile payload (a length field claiming 2^40 bytes) must not
        // size an allocation: the decode is bounded by the payload's length.
        let undecodable = |e: bincode::error::DecodeError| corrupt(format!("undecodable payload: {e}"));
        let (manifest, used) = match version {
            VERSION_1 => {
                dovetail_raft::decode::decode_from_slice::<Manifest>(payload).map_err(undecodable)?
            }
            VERSION_2 => {
                let ((mut manifest, encoding), used) =
                    dovetail_raft::decode::decode_from_slice::<(Manifest, u8)>(payload)
                        .map_err(undecodable)?;
                if encoding != 1 {
                    return Err(corrupt(format!(
                        "layout 2 with log encoding {encoding} (it is written in layout 1 or 3)"
                    )));
                }
                manifest.encoding = encoding;
                (manifest, used)
            }
            VERSION_3 => {
                type Layout3 = (Manifest, u8, BTreeMap<String, RequestDigest>);
                let ((mut manifest, encoding, digests), used) =
                    dovetail_raft::decode::decode_from_slice::<Layout3>(payload).map_err(undecodable)?;
                if !(2..=3).contains(&encoding) {
                    return Err(corrupt(format!(
                        "layout 3 with log encoding {encoding} (it is written in encodings 2 and 3)"
                    )));
                }
                set_digests(&mut manifest, digests).map_err(corrupt)?;
                manifest.encoding = encoding;
                (manifest, used)
            }
            _ => {
                type Layout4 = (
                    Manifest,
                    u8,
                    BTreeMap<String, RequestDigest>,
                    BTreeMap<String, BTreeSet<String>>,
                );
                let ((mut manifest, encoding, digests, subscriptions), used) =
                    dovetail_raft::decode::decode_from_slice::<Layout4>(payload).map_err(undecodable)?;
                if encoding < 4 {
                    return Err(corrupt(format!(
                        "layout 4 with log encoding {encoding} (it is written from encoding 4 on)"
                    )));
                }
                set_digests(&mut manifest, digests).map_err(corrupt)?;
                check_subscriptions(&subscriptions).map_err(corrupt)?;
                manifest.subscriptions = subscriptions;
                manifest.encoding = encoding;
                (manifest, used)
            }
        };
        if used != payload.len() {
            return Err(corrupt(format!(
                "{} bytes after the payload",
                payload.len() - used
            )));
        }
        Ok(manifest)
    }
}

/// Puts the request digests of layouts 3 and 4 beside their sessions; a digest of a client
/// without a session, or given twice, is damage.
fn set_digests(manifest: &mut Manifest, digests: BTreeMap<String, RequestDigest>) -> Result<(), String> {
    for (client_id, digest) in digests {
        if manifest.sessions.digest(&client_id).is_some() || !manifest.sessions.contains(&client_id) {
            return Err(format!(
                "a request digest for client {client_id:?}, which has no session"
            ));
        }
        manifest.sessions.set_digest(&client_id, digest);
    }
    Ok(())
}

/// The subscriptions of layout 4 as the state machine writes them: no user without one, no
/// user over the bound, every name one a subscription may have (a checksum-valid file that
/// says otherwise was not written by a correct build: named, not taken in).
fn check_subscriptions(subscriptions: &BTreeMap<String, BTreeSet<String>>) -> Result<(), String> {
    for (user, names) in subscriptions {
        if names.is_empty() {
            return Err(format!("user {:?} has an empty subscription list", quoted(user)));
        }
        if names.len() > MAX_SUBSCRIPTIONS_PER_USER {
            return Err(format!(
                "user {:?} has {} subscriptions, over the bound of {MAX_SUBSCRIPTIONS_PER_USER}",
                quoted(user),
                names.len()
            ));
        }
        if let Some(bad) = names
            .iter()
            .find(|name| check_mailbox_name(name).is_err() || canonical_mailbox_name(name) != name.as_str())
        {
            return Err(format!(
                "user {:?} is subscribed to {:?}, which is no mailbox name",
                quoted(user),
                quoted(bad)
            ));
        }
    }
    Ok(())
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

    /// The layout follows the group's log encoding: layout 1 in encoding 0 (the bytes earlier
    /// releases wrote), layout 2 — layout 1's fields, then the encoding — from encoding 1 on.
    #[test]
    fn the_layout_follows_the_log_encoding() {
        let mut m = Manifest {
            applied: Some(LogPosition::new(2, 9)),
            uid_validity_max: 7,
            ..Manifest::default()
        };
        let legacy = m.encode();
        assert_eq!(&legacy[8..12], &VERSION_1.to_le_bytes());
        let layout_1 = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
        assert_eq!(
            &legacy[FRAME_HEADER..],
            &layout_1[..],
            "layout 1 has no encoding field"
        );
        assert_eq!(Manifest::decode(Path::new("m"), &legacy).unwrap(), m);

        m.encoding = 1;
        let current = m.encode();
        assert_eq!(&current[8..12], &VERSION_2.to_le_bytes());
        assert_eq!(current.len(), legacy.len() + 1);
        assert_eq!(Manifest::decode(Path::new("m"), &current).unwrap(), m);

        // Layout 2 saying encoding 0 is not something this build writes.
        let mut zero = current.clone();
        let last = zero.len() - 1;
        zero[last] = 0;
        let crc = crc32c::crc32c(&zero[FRAME_HEADER..]);
        zero[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Manifest::decode(Path::new("m"), &zero),
            Err(SmError::CorruptManifest { .. })
        ));
        let mut unknown = current;
        unknown[8..12].copy_from_slice(&5u32.to_le_bytes());
        assert!(Manifest::decode(Path::new("m"), &unknown)
            .unwrap_err()
            .to_string()
            .contains("version 5 is not supported"));

        // Encoding 2: layout 3, the sessions' request digests beside them.
        m.encoding = 2;
        m.sessions.record("c", 4, 9, Outcome::Probed);
        m.sessions.record("d", 1, 9, Outcome::Probed);
        m.sessions.set_digest("c", [7; 16]);
        let with_digests = m.encode();
        assert_eq!(&with_digests[8..12], &VERSION_3.to_le_bytes());
        let back = Manifest::decode(Path::new("m"), &with_digests).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            (back.sessions.digest("c"), back.sessions.digest("d")),
            (Some([7; 16]), None)
        );
        // A digest is part of the state: a manifest that differs only in one differs in bytes.
        m.sessions.set_digest("c", [8; 16]);
        assert_ne!(m.encode(), with_digests);
        // Encoding 3 is still layout 3, byte for byte what the previous release wrote.
        m.encoding = 3;
        let layout_3 = m.encode();
        assert_eq!(&layout_3[8..12], &VERSION_3.to_le_bytes());
        assert_eq!(Manifest::decode(Path::new("m"), &layout_3).unwrap(), m);
    }

    /// Rewrites the frame around `payload` with a right CRC: damage that the checksum cannot
    /// catch, which the decoder must.
    fn reframed(version: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn subscribed(m: &mut Manifest, user: &str, names: &[&str]) {
        m.subscriptions
            .insert(user.into(), names.iter().map(|n| n.to_string()).collect());
    }

    /// Encoding 4: layout 4, the subscriptions after layout 3's fields. They round-trip, are
    /// part of the bytes, and every kind of damage is a named `CorruptManifest`: truncations,
    /// each flipped bit, a layout-4 frame claiming an older encoding, a checksum-valid payload
    /// with an empty subscription list, a name no mailbox can have, or one not canonical.
    #[test]
    fn layout_4_carries_subscriptions_and_damage_is_named() {
        let mut m = Manifest {
            applied: Some(LogPosition::new(4, 30)),
            uid_validity_max: 9,
            encoding: 4,
            ..Manifest::default()
        };
        m.users
            .entry("alice".into())
            .or_default()
            .insert("INBOX".into(), [3; 16]);
        m.sessions
            .record("c", 4, 30, Outcome::Subscribed { changed: true });
        m.sessions.set_digest("c", [7; 16]);
        subscribed(&mut m, "alice", &["Archive/2024", "INBOX", "Not yet created"]);
        subscribed(&mut m, "bob", &["Été"]);
        let bytes = m.encode();
        assert_eq!(&bytes[8..12], &VERSION_4.to_le_bytes());
        let back = Manifest::decode(Path::new("m"), &bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.subscriptions["alice"].len(), 3);
        // Without the subscriptions, other bytes: replicas that differ in them differ in files.
        let mut fewer = m.clone();
        fewer.subscriptions.remove("bob");
        assert_ne!(fewer.encode(), bytes);
        // Every truncation and every flipped bit is named, never a panic, never taken in.
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    Manifest::decode(Path::new("m"), &bytes[..cut]),
                    Err(SmError::CorruptManifest { .. })
                ),
                "cut at {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    Manifest::decode(Path::new("m"), &flipped),
                    Err(SmError::CorruptManifest { .. })
                ),
                "bit {bit}"
            );
        }
        // Checksum-valid payloads that no correct build writes.
        let standard = bincode::config::standard();
        let encode = |encoding: u8, subscriptions: &BTreeMap<String, BTreeSet<String>>| {
            bincode::serde::encode_to_vec((&m, encoding, m.sessions.digests(), subscriptions), standard)
                .unwrap()
        };
        let old_encoding = reframed(VERSION_4, &encode(3, &m.subscriptions));
        let error = Manifest::decode(Path::new("m"), &old_encoding)
            .unwrap_err()
            .to_string();
        assert!(error.contains("layout 4 with log encoding 3"), "{error}");
        let mut empty = m.subscriptions.clone();
        empty.insert("carol".into(), BTreeSet::new());
        let error = Manifest::decode(Path::new("m"), &reframed(VERSION_4, &encode(4, &empty)))
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty subscription list"), "{error}");
        for bad in ["a//b", "x*", "inbox/Sub"] {
            let mut named = m.subscriptions.clone();
            named.get_mut("alice").unwrap().insert(bad.into());
            let error = Manifest::decode(Path::new("m"), &reframed(VERSION_4, &encode(4, &named)))
                .unwrap_err()
                .to_string();
            assert!(error.contains("which is no mailbox name"), "{bad}: {error}");
        }
        // Layout 3 claiming encoding 4 (it would lose the subscriptions) is refused too.
        let layout_3 = bincode::serde::encode_to_vec((&m, 4u8, m.sessions.digests()), standard).unwrap();
        let error = Manifest::decode(Path::new("m"), &reframed(VERSION_3, &layout_3))
            .unwrap_err()
            .to_string();
        assert!(error.contains("layout 3 with log encoding 4"), "{error}");
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

    /// The requests of one batch entry share its log index. Every one keeps its session, the
    /// table stays within its bound past it (it used to lose track of all but one per index and
    /// then fail an `expect` once over the bound), and eviction goes by (index, client id).
    #[test]
    fn sessions_of_one_entry_are_all_kept_and_evicted_in_order() {
        let mut t = SessionTable::default();
        let outcome = Outcome::Renamed { mailboxes: 1 };
        for i in 0..(MAX_SESSIONS as u64 + 4) {
            // Four requests per entry, recorded in an order that is not the client ids' order.
            t.record(&format!("c{:07}", 1_000_000 - i), 1, i / 4 + 1, outcome.clone());
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        assert_eq!(t.named_order.len(), MAX_SESSIONS);
        // Four over the bound: exactly entry 1's four sessions are gone.
        for gone in ["c1000000", "c0999999", "c0999998", "c0999997"] {
            assert_eq!(t.check(gone, 1), SessionCheck::New, "{gone}");
        }
        assert!(matches!(t.check("c0999996", 1), SessionCheck::Duplicate(_)));
        // One more: the least recent is entry 2's smallest client id.
        t.record("new", 1, 1_000_000, outcome.clone());
        assert_eq!(t.check("c0999993", 1), SessionCheck::New);
        assert!(matches!(t.check("c0999994", 1), SessionCheck::Duplicate(_)));
        // A client's newer request moves it to the back without leaving a stale order entry.
        t.record("c0999994", 2, 1_000_001, outcome.clone());
        assert_eq!(t.len(), MAX_SESSIONS);
        assert_eq!(t.named_order.len(), MAX_SESSIONS);
    }

    #[test]
    fn anonymous_sessions_have_their_own_smaller_bound() {
        let mut t = SessionTable::default();
        let outcome = Outcome::Renamed { mailboxes: 1 };
        t.record("named", 7, 1, outcome.clone());
        for i in 0..(MAX_ANONYMOUS_SESSIONS as u64 + 10) {
            t.record(
                &format!("{ANONYMOUS_CLIENT_PREFIX}{i}"),
                1,
                i + 2,
                outcome.clone(),
            );
        }
        assert_eq!(t.anonymous_len(), MAX_ANONYMOUS_SESSIONS);
        assert_eq!(t.len(), MAX_ANONYMOUS_SESSIONS + 1);
        // The named session, older than all of them, is untouched.
        assert!(matches!(t.check("named", 7), SessionCheck::Duplicate(_)));
        assert_eq!(
            t.check(&format!("{ANONYMOUS_CLIENT_PREFIX}9"), 1),
            SessionCheck::New
        );
        assert!(matches!(
            t.check(&format!("{ANONYMOUS_CLIENT_PREFIX}10"), 1),
            SessionCheck::Duplicate(_)
        ));
    }

    /// A table decoded from its persisted form evicts exactly as the one it was saved from
    /// (replicas that restarted and replicas that did not must stay identical).
    #[test]
    fn a_reloaded_table_evicts_like_the_original() {
        let mut live = SessionTable::default();
        let outcome = Outcome::Renamed { mailboxes: 1 };
        for i in 0..(MAX_ANONYMOUS_SESSIONS as u64) {
            // Three per entry, and some named ones among them.
            live.record(
                &format!("{ANONYMOUS_CLIENT_PREFIX}{}", i * 7919 % 100_003),
                1,
                i / 3 + 1,
                outcome.clone(),
            );
            if i % 1000 == 0 {
                live.record(&format!("n{i}"), 1, i / 3 + 1, outcome.clone());
            }
        }
        let m = Manifest {
            sessions: live.clone(),
            ..Manifest::default()
        };
        let mut reloaded = Manifest::decode(Path::new("m"), &m.encode()).unwrap().sessions;
        assert_eq!(reloaded, live);
        for i in 0..5000u64 {
            for t in [&mut live, &mut reloaded] {
                t.record(
                    &format!("{ANONYMOUS_CLIENT_PREFIX}x{i}"),
                    1,
                    1_000_000 + i / 2,
                    outcome.clone(),
                );
            }
        }
        assert_eq!(reloaded, live);
    }
}
