//! Snapshot transfer: each snapshot goes over a connection of its own, so a large transfer
//! never delays the heartbeats and appends of other groups on the shared RPC connection.
//!
//! ```text
//! client -> server   handshake (kind = Snapshot)
//! client -> server   frame: SnapshotHeader { group_id, vote, meta, len }
//! client -> server   chunks: len (u32 LE) | crc32c (u32 LE) | bytes ...; then len = 0, crc = 0
//! server -> client   frame: ResponseFrame { id: 0, body: Snapshot(SnapshotResponse) | error }
//! ```
//! The receiver writes chunks to a temporary file in its staging directory, checking each
//! chunk's CRC and the total length, syncs it, and only then hands it to
//! `Raft::install_full_snapshot`. A broken transfer leaves nothing behind: the temporary file is
//! unlinked when dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::SnapshotResponse;
use openraft::OptionalSend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::auth::ConnectionKind;
use super::connection::Connection;
use super::handler::Handler;
use super::wire::{self, ResponseBody, ResponseFrame, SnapshotHeader};
use super::{CallError, Router};
use crate::metrics::{
    SNAPSHOTS_RECEIVED_BYTES_TOTAL, SNAPSHOTS_RECEIVED_TOTAL, SNAPSHOTS_SENT_BYTES_TOTAL,
    SNAPSHOTS_SENT_TOTAL,
};
use crate::type_config::{GroupId, NodeId, Snapshot, TypeConfig, Vote};
use crate::SnapshotFile;

/// A chunk larger than this is refused by the receiver.
const MAX_CHUNK_BYTES: usize = 16 << 20;
/// Lower bound on the wait for any one chunk or frame, whatever openraft's RPC option says.
const MIN_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the sender waits for the receiver to install a completely sent snapshot.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);

fn streaming_error(error: CallError) -> StreamingError<TypeConfig> {
    match error {
        CallError::Unreachable(message) => StreamingError::Unreachable(Unreachable::from_string(message)),
        other => StreamingError::Network(NetworkError::from_string(other.to_string())),
    }
}

async fn io_timeout<T>(
    timeout: Duration,
    what: &str,
    work: impl Future<Output = std::io::Result<T>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(CallError::Network(format!("snapshot {what}: {e}"))),
        Err(_) => Err(CallError::Network(format!(
            "snapshot {what}: timed out after {timeout:?}"
        ))),
    }
}

/// Streams `snapshot` to `target` for `group_id`; see the module docs for the protocol.
pub async fn send(
    router: &Router,
    target: NodeId,
    group_id: GroupId,
    vote: Vote,
    snapshot: Snapshot,
    cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
    option: RPCOption,
) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
    let peer = router.peer(target).map_err(streaming_error)?;
    let io_wait = option.soft_ttl().max(MIN_IO_TIMEOUT);
    let chunk_bytes = router.snapshot_chunk_bytes();
    let snapshot_bytes = snapshot.snapshot.len();
    let transfer = async {
        let mut stream = Connection::open(
            &peer.addr,
            router.secret(),
            router.tls(),
            router.node_id(),
            ConnectionKind::Snapshot,
        )
        .await?;
        let len = snapshot.snapshot.len();
        let header = SnapshotHeader {
            group_id,
            vote,
            meta: snapshot.meta.clone(),
            len,
        };
        let frame = wire::encode(&header).map_err(|e| CallError::Network(e.to_string()))?;
        let (mut reader, writer) = tokio::io::split(&mut stream);
        let mut writer = BufWriter::new(writer);
        io_timeout(io_wait, "header", wire::write_frame(&mut writer, &frame)).await?;

        let file = Arc::new(snapshot.snapshot);
        let mut offset = 0u64;
        while offset < len {
            let chunk = read_chunk(file.clone(), offset, chunk_bytes).await?;
            let crc = crc32c::crc32c(&chunk);
            let mut prefix = [0u8; 8];
            prefix[..4].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
            prefix[4..].copy_from_slice(&crc.to_le_bytes());
            io_timeout(io_wait, "chunk", async {
                writer.write_all(&prefix).await?;
                writer.write_all(&chunk).await
            })
            .await?;
            offset += chunk.len() as u64;
        }
        io_timeout(io_wait, "end", async {
            writer.write_all(&[0u8; 8]).await?;
            writer.flush().await
        })
        .await?;

        let answer: ResponseFrame =
            io_timeout(INSTALL_TIMEOUT, "answer", wire::read_value(&mut reader)).await?;
        match answer.body {
            Ok(ResponseBody::Snapshot(response)) => Ok(response),
            Ok(other) => Err(CallError::Network(format!(
                "snapshot: unexpected answer {other:?}"
            ))),
            Err(remote) => Err(CallError::Remote(remote)),
        }
    };
    tokio::select! {
        result = transfer => {
            if let Ok(response) = &result {
                tracing::info!(group_id, target, "sent snapshot, answer {response}");
                let group = group_id.to_string();
                metrics::counter!(SNAPSHOTS_SENT_TOTAL, "group" => group.clone()).increment(1);
                metrics::counter!(SNAPSHOTS_SENT_BYTES_TOTAL, "group" => group).increment(snapshot_bytes);
            }
            result.map_err(streaming_error)
        }
        closed = cancel => Err(StreamingError::Closed(closed)),
    }
}

/// Reads up to `chunk_bytes` at `offset` on the blocking pool.
async fn read_chunk(file: Arc<SnapshotFile>, offset: u64, chunk_bytes: usize) -> Result<Vec<u8>, CallError> {
    let read = tokio::task::spawn_blocking(move || {
        let mut chunk = vec![0u8; chunk_bytes];
        let mut filled = 0;
        while filled < chunk.len() {
            let n = file.read_at(&mut chunk[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        chunk.truncate(filled);
        Ok::<_, std::io::Error>(chunk)
    });
    match read.await {
        Ok(Ok(chunk)) if !chunk.is_empty() => Ok(chunk),
        Ok(Ok(_)) => Err(CallError::Network(
            "snapshot file shorter than its length".to_string(),
        )),
        Ok(Err(e)) => Err(CallError::Network(format!("read snapshot: {e}"))),
        Err(e) => Err(CallError::Network(format!("read snapshot: {e}"))),
    }
}

/// Server side of a snapshot connection (after the handshake): receives, checks, installs,
/// answers. Errors end the connection; the sender sees them as network errors and retries.
pub async fn receive<S, H>(stream: &mut S, handler: &H, from: NodeId) -> Result<(), CallError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let header: SnapshotHeader = io_timeout(MIN_IO_TIMEOUT, "header", wire::read_value(stream)).await?;
    let group_id = header.group_id;
    if let Some(reason) = handler.refuses_writes() {
        return Err(CallError::Network(format!(
            "snapshot for group {group_id} refused: {reason}"
        )));
    }
    let temp = tempfile::NamedTempFile::new_in(handler.staging_dir())
        .map_err(|e| CallError::Network(format!("snapshot staging file: {e}")))?;
    let std_file = temp
        .as_file()
        .try_clone()
        .map_err(|e| CallError::Network(format!("snapshot staging file: {e}")))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut received = 0u64;
    loop {
        let mut prefix = [0u8; 8];
        io_timeout(MIN_IO_TIMEOUT * 6, "chunk", stream.read_exact(&mut prefix)).await?;
        let len = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(prefix[4..].try_into().expect("4 bytes"));
        if len == 0 {
            // The end marker is all zeros; anything else in it is damage, not to be ignored.
            if crc != 0 {
                return Err(CallError::Network(format!(
                    "snapshot for group {group_id}: end marker carries checksum {crc:#x}"
                )));
            }
            break;
        }
        if len > MAX_CHUNK_BYTES || received + len as u64 > header.len {
            return Err(CallError::Network(format!(
                "snapshot for group {group_id}: chunk of {len} bytes out of bounds"
            )));
        }
        let chunk = io_timeout(MIN_IO_TIMEOUT * 6, "chunk", wire::read_payload(stream, len)).await?;
        if crc32c::crc32c(&chunk) != crc {
            return Err(CallError::Network(format!(
                "snapshot for group {group_id}: CRC mismatch in chunk at offset {received}"
            )));
        }
        io_timeout(INSTALL_TIMEOUT, "write", file.write_all(&chunk)).await?;
        received += len as u64;
    }
    if received != header.len {
        return Err(CallError::Network(format!(
            "snapshot for group {group_id}: got {received} of {} bytes",
            header.len
        )));
    }
    io_timeout(INSTALL_TIMEOUT, "sync", async {
        file.flush().await?;
        file.sync_all().await
    })
    .await?;
    let snapshot_file = temp
        .reopen()
        .and_then(SnapshotFile::from_file)
        .map_err(|e| CallError::Network(format!("reopen staged snapshot: {e}")))?;
    tracing::info!(group_id, from, bytes = received, "received snapshot, installing");
    let snapshot = Snapshot {
        meta: header.meta,
        snapshot: snapshot_file,
    };
    let body = handler
        .install_snapshot(group_id, header.vote, snapshot)
        .await
        .map(ResponseBody::Snapshot);
    if body.is_ok() {
        let group = group_id.to_string();
        metrics::counter!(SNAPSHOTS_RECEIVED_TOTAL, "group" => group.clone()).increment(1);
        metrics::counter!(SNAPSHOTS_RECEIVED_BYTES_TOTAL, "group" => group).increment(received);
    }
    let frame =
        wire::encode(&ResponseFrame { id: 0, body }).map_err(|e| CallError::Network(e.to_string()))?;
    io_timeout(MIN_IO_TIMEOUT, "answer", async {
        wire::write_frame(stream, &frame).await?;
        stream.flush().await
    })
    .await?;
    drop(temp);
    Ok(())
}
