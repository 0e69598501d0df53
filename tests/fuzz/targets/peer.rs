//! The peer protocol (`dovetail_raft::transport`) and the Raft log's values: what another node,
//! or anything that reaches the peer port, can send, and what the log store reads back from sled.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use dovetail::txn::encoding::{decode_entry, CURRENT_ENCODING};
use dovetail_raft::log_store::codec;
use dovetail_raft::state_machine::ConsensusMeta;
use dovetail_raft::transport::auth::{client_handshake, server_handshake, ConnectionKind};
use dovetail_raft::transport::handler::Handler;
use dovetail_raft::transport::wire::{self, RequestBody, RequestFrame, ResponseFrame, SnapshotHeader};
use dovetail_raft::transport::{ClusterSecret, RemoteError};
use dovetail_raft::{Entry, GroupId, LogId, Snapshot, TypeConfig, Vote};
use openraft::raft::SnapshotResponse;
use openraft::EntryPayload;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose peer sent `input` and then closed; what is written to it is dropped.
pub struct Replay<'a> {
    input: &'a [u8],
}

impl<'a> Replay<'a> {
    pub fn new(input: &'a [u8]) -> Replay<'a> {
        Replay { input }
    }
}

impl AsyncRead for Replay<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.input.len().min(buf.remaining());
        buf.put_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs a future over in-memory I/O, which never waits, to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a read from memory waited"),
    }
}

/// Decodes every frame of the stream as `T`, as a connection's reader does, until the stream
/// ends or fails; and the whole input as one frame's payload.
fn frames<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) -> Vec<T> {
    let mut decoded: Vec<T> = wire::decode(data).into_iter().collect();
    let mut reader = data;
    while let Ok(Some(payload)) = ready(wire::read_frame(&mut reader)) {
        match wire::decode::<T>(&payload) {
            Ok(value) => decoded.push(value),
            // A connection closes at its first bad frame.
            Err(_) => break,
        }
    }
    for value in &decoded {
        let frame = wire::encode(value).expect("a decoded frame re-encodes");
        let again = ready(wire::read_value::<_, T>(&mut &frame[..])).expect("a re-encoded frame decodes");
        assert_eq!(
            wire::encode(&again).unwrap(),
            frame,
            "a frame survives a round trip"
        );
    }
    decoded
}

/// A peer connection after the handshake: the frames an RPC server reads (requests), an RPC
/// client reads (responses), and a snapshot connection opens with (its header). A request's
/// forwarded proposal is then decoded as the leader's application would.
pub fn peer_frames(data: &[u8]) {
    for frame in frames::<RequestFrame>(data) {
        match frame.body {
            RequestBody::Forward(request) => {
                let _ = decode_entry(&request.0, CURRENT_ENCODING);
            }
            RequestBody::AppendEntries(append) => {
                for entry in &append.entries {
                    requests_of(entry);
                }
            }
            _ => {}
        }
    }
    let _ = frames::<ResponseFrame>(data);
    let _ = frames::<SnapshotHeader>(data);
}

fn requests_of(entry: &Entry) {
    if let EntryPayload::Normal(batch) = &entry.payload {
        for request in &batch.0 {
            let _ = decode_entry(&request.0, CURRENT_ENCODING);
        }
    }
}

/// The cluster secret both handshake sides use here.
const SECRET: &[u8] = b"fuzz-cluster-secret";

/// A connection before the handshake: a server reading a client's answer to its challenge, and
/// a client reading a server's challenge and proof. Neither may accept: the nonces are fresh
/// and random, so no input can carry a proof of the secret.
pub fn peer_handshake(data: &[u8]) {
    let secret = ClusterSecret::new(SECRET);
    let server = ready(server_handshake(&mut Replay::new(data), &secret));
    assert!(
        server.is_err(),
        "a server accepted a client that cannot know the secret"
    );
    for kind in [ConnectionKind::Rpc, ConnectionKind::Snapshot] {
        let client = ready(client_handshake(&mut Replay::new(data), &secret, 7, kind));
        assert!(
            client.is_err(),
            "a client accepted a server that cannot know the secret"
        );
    }
}

/// Receives snapshots into a staging directory and accepts each one whole.
struct Staging {
    dir: tempfile::TempDir,
}

impl Handler for Staging {
    async fn handle(
        &self,
        group_id: GroupId,
        _: RequestBody,
    ) -> Result<dovetail_raft::transport::wire::ResponseBody, RemoteError> {
        Err(RemoteError::UnknownGroup { group_id })
    }

    async fn install_snapshot(
        &self,
        _: GroupId,
        vote: Vote,
        snapshot: Snapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, RemoteError> {
        // What the node's application then reads: the stream inside.
        let _ = dovetail::state_machine::GroupState::import_snapshot(snapshot.snapshot.reader());
        Ok(SnapshotResponse::new(vote))
    }

    fn staging_dir(&self) -> &Path {
        self.dir.path()
    }
}

thread_local! {
    /// The runtime (`receive` bounds its reads with tokio timers) and staging directory, kept
    /// across executions.
    static RECEIVER: RefCell<Option<(tokio::runtime::Runtime, Staging)>> = const { RefCell::new(None) };
}

/// A snapshot connection after the handshake: the header frame, the chunks (length, CRC32C,
/// bytes) and the end marker, received into a staging file and, if whole, handed to the
/// handler, which imports the snapshot as the node would.
pub fn snapshot_chunks(data: &[u8]) {
    RECEIVER.with(|receiver| {
        let mut receiver = receiver.borrow_mut();
        let (runtime, staging) = receiver.get_or_insert_with(|| {
            super::setup(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a runtime");
                let dir = super::temp_dir();
                (runtime, Staging { dir })
            })
        });
        let _ = runtime.block_on(dovetail_raft::transport::snapshot::receive(
            &mut Replay::new(data),
            &*staging,
            2,
        ));
    });
}

/// What the log store reads back from sled (an entry, a vote, a log id; the log id at the front
/// of an entry) and the consensus metadata a state machine stores: a value that decodes is
/// used as the node would use it.
pub fn raft_log_values(data: &[u8]) {
    if let Ok(entry) = codec::decode::<Entry>(data) {
        requests_of(&entry);
        assert_eq!(codec::decode_log_id_prefix(data).ok(), Some(entry.log_id));
    }
    let _ = codec::decode_log_id_prefix(data);
    let _ = codec::decode::<Vote>(data);
    let _ = codec::decode::<LogId>(data);
    if let Ok(meta) = ConsensusMeta::decode(data) {
        assert_eq!(ConsensusMeta::decode(&meta.encode()).expect("re-encoded"), meta);
    }
}
