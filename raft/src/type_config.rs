//! The openraft type configuration for Dovetail, and the small value types it names.
//!
//! Every Raft group of a node uses the same [`TypeConfig`]. Its application payloads are opaque
//! bytes ([`Request`], [`Response`]): the domain crate encodes its transactions and results
//! itself, so this crate never learns what a mailbox is, and a change to the domain's encoding
//! never touches the Raft log format.
//!
//! # Snapshot data
//!
//! openraft 0.10 moved the snapshot data type out of the type configuration: it is now the
//! associated type `RaftStateMachine::SnapshotData` (and `NetSnapshot::SnapshotData` on the
//! network side, which must be the same type). Dovetail's state machines use
//! [`SnapshotFile`](crate::SnapshotFile): a group snapshot is one file on disk, read by position.
//! A group's index files can be large, so a snapshot is never held in memory whole, and an open
//! handle keeps the bytes readable while they are streamed to a follower even if the state
//! machine replaces its snapshot meanwhile.

use std::fmt;

use openraft::RaftTypeConfig;
use serde::{Deserialize, Serialize};

/// Identifies a node for the lifetime of the cluster. Invariant: never reused (ARCHITECTURE.md §10).
pub type NodeId = u64;

/// Identifies a Raft group (one log, one state machine) within the cluster. Groups are numbered
/// `0..group_count`, fixed at cluster creation.
pub type GroupId = u32;

openraft::declare_raft_types!(
    /// The openraft type configuration shared by every Dovetail Raft group. Unnamed types keep
    /// openraft's defaults: `u64` terms, the "advanced" leader id (several leaders may share a
    /// term), `openraft::Entry` and the tokio runtime.
    pub TypeConfig:
        D = Batch,
        R = Responses,
        NodeId = NodeId,
        Node = Node,
);

/// The leader id of a vote: (term, node). Once granted by a quorum it is also the leader part of
/// every [`LogId`] that leader writes.
pub type LeaderId = <TypeConfig as RaftTypeConfig>::LeaderId;
/// The leader part of a [`LogId`]: a leader id granted by a quorum. For openraft's "advanced"
/// leader id this is the same type as [`LeaderId`].
pub type CommittedLeaderId = <LeaderId as openraft::vote::RaftLeaderId>::Committed;
/// A log entry of a Dovetail group, as stored and replicated.
pub type Entry = <TypeConfig as RaftTypeConfig>::Entry;
/// The payload of an [`Entry`]: blank, membership change, or an application [`Request`].
pub type Payload = <TypeConfig as RaftTypeConfig>::Payload;
/// A vote as persisted by the log store.
pub type Vote = <TypeConfig as RaftTypeConfig>::Vote;
/// A (leader, index) position in a group's log as openraft names it.
pub type LogId = openraft::LogId<CommittedLeaderId>;
/// openraft's storage error for this configuration.
pub type StorageError = openraft::StorageError<TypeConfig>;
/// A group's membership: voter sets and every member's [`Node`] record.
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership together with the log id of the entry that introduced it.
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, NodeId, Node>;
/// Metadata of a snapshot: the last log id it covers and the membership at that point.
pub type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, NodeId, Node>;
/// A snapshot as Dovetail state machines build and install it: metadata plus a
/// [`SnapshotFile`](crate::SnapshotFile).
pub type Snapshot = openraft::Snapshot<CommittedLeaderId, NodeId, Node, crate::SnapshotFile>;

/// Where a node can be reached. Stored in membership entries, so it is part of the log format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Address of the node's peer (Raft RPC) listener, `host:port`.
    pub peer_addr: String,
    /// Address of the node's client API listener, `host:port`; used to forward writes.
    pub api_addr: String,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{peer: {}, api: {}}}", self.peer_addr, self.api_addr)
    }
}

/// An application request as it travels through the log: bytes the domain encoded. The state
/// machine decodes them at apply time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Request(pub Vec<u8>);

/// An application response as the state machine returns it: bytes the domain encoded.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Response(pub Vec<u8>);

/// The application payload of one log entry: the requests its leader proposed together, applied
/// in order at the entry's position. One request when a group is quiet; under load the leader
/// coalesces the requests that wait for the group into one entry (`node::proposals`), so one
/// log write, one replication round and one apply pass carry them all.
///
/// Part of the log format: bincode writes the request count, then each request's length and bytes.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Request>);

/// A [`Batch`] stops growing once its requests reach this many bytes (a larger single request
/// still goes, alone; the domain refuses requests over 64 KiB encoded). Keeps openraft's
/// AppendEntries of up to 300 entries under the transport's frame limit (`transport::wire` tests).
/// The leader's proposer (`node::proposals`) fills batches up to it.
pub const MAX_BATCH_BYTES: usize = 64 << 10;

/// The responses to a [`Batch`], one per request and in the same order (empty for entries
/// without requests).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responses(pub Vec<Response>);

impl Batch {
    /// Total request bytes.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|r| r.0.len()).sum()
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Batch({} requests, {} bytes)", self.0.len(), self.bytes())
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Debug for Responses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Responses({})", self.0.len())
    }
}

macro_rules! opaque_bytes {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({} bytes)"), self.0.len())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(bytes: Vec<u8>) -> Self {
                $name(bytes)
            }
        }

        // Serialized as a byte string, not a sequence of `u8`: bincode then writes a length and
        // the raw bytes in one go, and JSON still reads an array of numbers back.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_byte_buf(BytesVisitor).map($name)
            }
        }
    };
}

opaque_bytes!(Request);
opaque_bytes!(Response);

/// Reads a byte string, whether the format hands it over borrowed, owned, or as a sequence.
struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;

    fn bincode_round_trip<T>(value: &T) -> T
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap();
        let (decoded, read) =
            bincode::serde::decode_from_slice::<T, _>(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(read, bytes.len(), "trailing bytes after decoding");
        decoded
    }

    fn log_id(term: u64, node_id: NodeId, index: u64) -> LogId {
        LogId::new(LeaderId::new_committed(term, node_id), index)
    }

    /// bincode 2's serde path rejects `deserialize_any` (untagged and internally tagged enums);
    /// every openraft type the log store persists must round-trip through it.
    #[test]
    fn openraft_types_round_trip_through_bincode() {
        let node = |n: u64| Node {
            peer_addr: format!("127.0.0.{n}:7000"),
            api_addr: format!("127.0.0.{n}:8000"),
        };
        let membership = Membership::new(
            vec![[1, 2, 3].into_iter().collect()],
            [(1, node(1)), (2, node(2)), (3, node(3)), (4, node(4))]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();

        let entries = [
            Entry::new_blank(log_id(1, 1, 1)),
            Entry::new_normal(
                log_id(2, 3, 2),
                Batch(vec![Request(vec![0, 1, 2, 250, 251, 255]), Request(vec![])]),
            ),
            Entry::new_membership(log_id(3, 2, 3), membership.clone()),
        ];
        for entry in &entries {
            assert_eq!(&bincode_round_trip(entry), entry);
        }

        let vote = Vote::new(7, 3);
        assert_eq!(bincode_round_trip(&vote), vote);
        let committed = Vote::new_committed(7, 3);
        assert_eq!(bincode_round_trip(&committed), committed);

        let some_log_id = Some(log_id(5, 2, 40));
        assert_eq!(bincode_round_trip(&some_log_id), some_log_id);
        assert_eq!(bincode_round_trip(&None::<LogId>), None);

        let stored = StoredMembership::new(Some(log_id(3, 2, 3)), membership);
        assert_eq!(bincode_round_trip(&stored), stored);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(3, 2, 9)),
            last_membership: stored,
        };
        assert_eq!(bincode_round_trip(&meta), meta);
    }

    #[test]
    fn payload_bytes_are_written_raw() {
        let payload = Request(vec![255; 300]);
        let bytes = bincode::serde::encode_to_vec(&payload, bincode::config::standard()).unwrap();
        // A varint length (3 bytes for 300) and the bytes themselves, not 3 bytes per element.
        assert_eq!(bytes.len(), 3 + 300);
        assert_eq!(bincode_round_trip(&payload), payload);

        let json = serde_json::to_string(&Response(vec![1, 2])).unwrap();
        assert_eq!(json, "[1,2]");
        assert_eq!(
            serde_json::from_str::<Response>(&json).unwrap(),
            Response(vec![1, 2])
        );
        assert_eq!(Request(vec![1, 2, 3]).to_string(), "Request(3 bytes)");
    }
}
