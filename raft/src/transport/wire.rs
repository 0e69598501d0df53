//! The peer protocol's messages and their framing.
//!
//! After the handshake ([`super::auth`]) a connection carries frames: a `u32` little-endian
//! length, then that many bytes of bincode 2 (standard config, serde path). On an RPC connection
//! the client sends [`RequestFrame`]s and the server answers with [`ResponseFrame`]s carrying
//! the same `id`, in any order (pipelining). A snapshot connection carries one
//! [`SnapshotHeader`] frame, raw chunks ([`super::snapshot`]), and one [`ResponseFrame`].

use std::collections::BTreeSet;
use std::io;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, SnapshotResponse,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::membership::{MembershipChange, MembershipOutcome};
use crate::state_machine::position_of;
use crate::type_config::{GroupId, Node, NodeId, Request, Response, SnapshotMeta, TypeConfig, Vote};
use crate::LogPosition;

/// Frames larger than this are refused: a peer sending one is broken or hostile.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// One request on an RPC connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client, unique among its outstanding requests on this connection.
    pub id: u64,
    pub group_id: GroupId,
    pub body: RequestBody,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RequestBody {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// An application request to propose on the receiver, which should be the group's leader.
    Forward(Request),
    /// Asks the receiver, which should be the group's leader, for a linearizable read index.
    ReadIndex,
    /// A membership or leadership operation to run on the receiver, which should be the
    /// group's leader. Answered with a [`ForwardReply`].
    Admin(AdminRequest),
}

/// Cluster management operations, run by a group's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    AddLearner {
        node_id: NodeId,
        node: Node,
    },
    /// Replaces the voter set; nodes dropped from it leave the group.
    ChangeMembership {
        voters: BTreeSet<NodeId>,
    },
    TransferLeader {
        to: NodeId,
    },
    /// Makes a learner a voter, keeping the other voters (the leader's own membership decides).
    AddVoter {
        node_id: NodeId,
    },
    /// Removes a node from the group, whether voter or learner; a node already gone is a no-op.
    RemoveNode {
        node_id: NodeId,
    },
    /// A membership change under the guards of `crate::membership` (what this release sends;
    /// `AddLearner`, `AddVoter` and `RemoveNode` above are unguarded and still answered for
    /// nodes of earlier releases). `check_only`: apply the rules, change nothing. Answered with
    /// [`ForwardReply::Membership`].
    Membership {
        change: MembershipChange,
        check_only: bool,
    },
}

impl RequestBody {
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::AppendEntries(_) => "append_entries",
            RequestBody::Vote(_) => "vote",
            RequestBody::PreVote(_) => "pre_vote",
            RequestBody::TransferLeader(_) => "transfer_leader",
            RequestBody::Forward(_) => "forward",
            RequestBody::ReadIndex => "read_index",
            RequestBody::Admin(_) => "admin",
        }
    }
}

/// One response on an RPC or snapshot connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: u64,
    /// `Err` when the receiver could not handle the request at all (unknown group, group
    /// stopped); expected outcomes such as "not leader" are inside the body.
    pub body: Result<ResponseBody, RemoteError>,
}

/// Why the receiver of a request could not serve it at all, as a [`ResponseFrame`] carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The receiver has no group `group_id` (its `group_count` differs from the sender's).
    #[error("unknown group {group_id}")]
    UnknownGroup { group_id: GroupId },
    /// The group stopped on the receiver (a storage or application failure, or shutdown), so
    /// its Raft refused the request; `reason` is openraft's fatal error.
    #[error("{reason}")]
    Fatal { group_id: GroupId, reason: String },
    /// The receiver's disk is full: it takes no entries now (heartbeats and votes still work).
    #[error("group {group_id}: the receiver refuses entries: {reason}")]
    NoSpace { group_id: GroupId, reason: String },
    /// The receiver already serves `limit` forwarded requests (proposals, read indexes,
    /// membership operations) from this connection: this one was not started
    /// (`transport::server`).
    #[error("group {group_id}: {in_flight} forwarded requests in flight on this connection (limit {limit})")]
    Busy {
        group_id: GroupId,
        in_flight: u64,
        limit: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ResponseBody {
    AppendEntries(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Forward(ForwardReply),
    ReadIndex(ReadIndexReply),
    Snapshot(SnapshotResponse<TypeConfig>),
}

/// The outcome of a forwarded proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardReply {
    /// Committed and applied on the receiver at `position`.
    Applied {
        position: LogPosition,
        response: Response,
    },
    /// The receiver is not the leader; `leader` is its best guess.
    NotLeader { leader: Option<NodeId> },
    /// The receiver accepted the request but could not finish it (e.g. it stepped down before
    /// commit, or the group stopped). The request may or may not commit later.
    Failed { reason: String },
    /// The receiver leads the group but its proposal queue was full (`queued` requests, at its
    /// `limit`): the request was not queued and will never commit. Sent to the caller at once;
    /// not retried before the caller's client comes back (`node::proposals`).
    Busy { queued: u64, limit: u64 },
    /// What the leader did with an `AdminRequest::Membership`: changed, nothing to do, or
    /// refused by a guard.
    Membership(MembershipOutcome),
}

impl ForwardReply {
    /// What a caller is told about a write (a proposal or a membership change), from openraft's
    /// answer. Membership changes carry no requests, so their reply carries an empty response.
    pub(crate) fn from_write(
        result: Result<ClientWriteResponse<TypeConfig>, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>,
    ) -> ForwardReply {
        match result {
            Ok(written) => ForwardReply::Applied {
                position: position_of(&written.log_id),
                response: written.data.0.into_iter().next().unwrap_or_default(),
            },
            // Not appended, or appended and then overwritten by a new leader: never committed.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))
            | Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(to))) => {
                ForwardReply::NotLeader { leader: to.leader_id }
            }
            Err(e) => ForwardReply::Failed {
                reason: e.to_string(),
            },
        }
    }
}

/// The outcome of a read-index request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadIndexReply {
    /// Leadership was confirmed by a quorum; a replica that has applied `position` may serve a
    /// linearizable read.
    Ready {
        position: LogPosition,
    },
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The receiver could not confirm its leadership (no quorum answered).
    NoQuorum {
        reason: String,
    },
}

/// Opens a snapshot connection: which group, the sender's vote, and what follows.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub group_id: GroupId,
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// Total bytes of snapshot data that follow, in chunks.
    pub len: u64,
}

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    // Leaves room for the length prefix so a frame is written with one call.
    let mut bytes = vec![0u8; 4];
    bincode::serde::encode_into_std_write(value, &mut bytes, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encode frame: {e}")))?;
    let len = bytes.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is too large"),
        ));
    }
    bytes[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(bytes)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let (value, read) = crate::decode::decode_from_slice::<T>(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("decode frame: {e}")))?;
    if read != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes in frame",
        ));
    }
    Ok(value)
}

/// Writes an already [`encode`]d frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> io::Result<()> {
    writer.write_all(frame).await
}

/// Reads one frame's payload; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is too large"),
        ));
    }
    read_payload(reader, len).await.map(Some)
}

/// Payloads up to this length are read into a buffer allocated at once; a longer one's buffer
/// grows as its bytes arrive. A length prefix is checked against the protocol's maximum only,
/// so without this four bytes from a peer would make the reader allocate that maximum.
pub const PREALLOCATED_PAYLOAD_BYTES: usize = 1 << 20;

/// Reads exactly `len` bytes (a frame's payload, a snapshot chunk), allocating as they arrive
/// beyond [`PREALLOCATED_PAYLOAD_BYTES`]. A stream that ends first is `UnexpectedEof`.
pub async fn read_payload<R: AsyncRead + Unpin>(reader: &mut R, len: usize) -> io::Result<Vec<u8>> {
    if len <= PREALLOCATED_PAYLOAD_BYTES {
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await?;
        return Ok(payload);
    }
    let mut payload = Vec::with_capacity(PREALLOCATED_PAYLOAD_BYTES);
    AsyncReadExt::take(&mut *reader, len as u64)
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("stream ends after {} of {len} bytes", payload.len()),
        ));
    }
    Ok(payload)
}

/// Reads and decodes one frame; end of stream is an error here.
pub async fn read_value<R: AsyncRead + Unpin, T: DeserializeOwned>(reader: &mut R) -> io::Result<T> {
    match read_frame(reader).await? {
        Some(payload) => decode(&payload),
        None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")),
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::type_config::{Batch, Entry, LeaderId, LogId, Request, MAX_BATCH_BYTES};

    fn append_entries_of(entries: u64) -> RequestFrame {
        let log_id = |index| LogId::new(LeaderId::new_committed(3, 1), index);
        RequestFrame {
            id: 1,
            group_id: 0,
            body: RequestBody::AppendEntries(AppendEntriesRequest {
                vote: Vote::new_committed(3, 1),
                prev_log_id: Some(log_id(0)),
                entries: (1..=entries)
                    .map(|i| Entry::new_normal(log_id(i), Batch(vec![Request(vec![0xEE; MAX_BATCH_BYTES])])))
                    .collect(),
                leader_commit: Some(log_id(0)),
            }),
        }
    }

    /// The largest AppendEntries openraft builds (its default of 300 entries) from the largest
    /// entries fits one frame: an entry is a batch of at most `MAX_BATCH_BYTES`, or one request
    /// alone, and the domain refuses requests over 64 KiB encoded (`MAX_ENTRY_BYTES` in
    /// `src/node/replicated.rs`). A frame that did not fit would fail to encode on every retry
    /// and the follower would never catch up; four times as many entries would not fit.
    #[test]
    fn the_largest_append_entries_fits_one_frame() {
        let default_entries = openraft::Config::default().max_payload_entries;
        assert_eq!(default_entries, 300);
        assert!(encode(&append_entries_of(default_entries)).is_ok());
        let error = encode(&append_entries_of(4 * default_entries)).unwrap_err();
        assert!(error.to_string().contains("too large"), "{error}");
    }

    /// Regression (fuzz target `peer_frames`): a frame whose string length claims 2^40 bytes
    /// (here the reason of a `Fatal` answer) made the decoder allocate it; and a length prefix
    /// of 32 MiB with nothing behind it made the reader allocate 32 MiB (four bytes from a peer
    /// per connection). Both are errors now, the second allocating only as bytes arrive.
    #[tokio::test]
    async fn lengths_claiming_more_than_the_peer_sent_are_errors() {
        let frame = ResponseFrame {
            id: 8,
            body: Err(RemoteError::Fatal {
                group_id: 2,
                reason: "x".to_string(),
            }),
        };
        let bytes = encode(&frame).unwrap();
        assert_eq!(&bytes[bytes.len() - 2..], &[1, b'x']);
        let mut huge = bytes[4..bytes.len() - 2].to_vec();
        huge.push(253);
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        huge.push(b'x');
        assert_eq!(
            decode::<ResponseFrame>(&huge).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );

        let prefix = (32u32 << 20).to_le_bytes();
        let error = read_frame(&mut &prefix[..]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let mut short = (3u32 << 20).to_le_bytes().to_vec();
        short.extend_from_slice(&[7; 1000]);
        assert_eq!(
            read_frame(&mut &short[..]).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        // A long frame that is all there still reads whole.
        let mut long = (3u32 << 20).to_le_bytes().to_vec();
        long.extend(std::iter::repeat_n(9u8, 3 << 20));
        assert_eq!(read_frame(&mut &long[..]).await.unwrap().unwrap().len(), 3 << 20);
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let frame = ResponseFrame {
            id: 7,
            body: Ok(ResponseBody::Forward(ForwardReply::Applied {
                position: LogPosition::new(2, 9),
                response: Response(vec![1, 2, 3]),
            })),
        };
        let bytes = encode(&frame).unwrap();
        let mut reader = &bytes[..];
        let decoded: ResponseFrame = read_value(&mut reader).await.unwrap();
        assert_eq!(decoded.id, 7);
        match decoded.body {
            Ok(ResponseBody::Forward(reply)) => assert_eq!(
                reply,
                ForwardReply::Applied {
                    position: LogPosition::new(2, 9),
                    response: Response(vec![1, 2, 3])
                }
            ),
            other => panic!("unexpected {other:?}"),
        }
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty).await.unwrap().is_none());

        for error in [
            RemoteError::UnknownGroup { group_id: 9 },
            RemoteError::Fatal {
                group_id: 2,
                reason: "stopped".to_string(),
            },
            RemoteError::Busy {
                group_id: 4,
                in_flight: 1024,
                limit: 1024,
            },
        ] {
            let frame = ResponseFrame {
                id: 8,
                body: Err(error.clone()),
            };
            let bytes = encode(&frame).unwrap();
            let decoded: ResponseFrame = read_value(&mut &bytes[..]).await.unwrap();
            assert_eq!(decoded.body.unwrap_err(), error);
        }
    }
}
