//! The incoming side of the peer transport: an accept loop with a connection limit, the
//! handshake, and per-connection dispatch to a [`Handler`] (the node's table of groups).
//!
//! On an RPC connection every request is handled in a task of its own and answered as soon as
//! it is done, so a slow request (a forwarded proposal waiting for commit) never delays the
//! heartbeats behind it.
//!
//! **Bounds.** At most `max_connections` peer connections are served (beyond: closed at once).
//! At most [`MAX_INCOMING_SNAPSHOTS`] of them receive a snapshot at once; one more is closed
//! right after its handshake, before anything is staged, and its sender (openraft's replication
//! to this node) tries again later. Each transfer holds one chunk in memory (at most 16 MiB,
//! `snapshot::MAX_CHUNK_BYTES`) and a staging file on disk.
//! On one connection at most [`MAX_FORWARDS_IN_FLIGHT`] forwarded requests (proposals, read
//! indexes, membership operations: what clients cause) are served at once; one beyond is
//! answered [`RemoteError::Busy`] at once, without running. Raft's own RPCs are not counted:
//! they must never be refused for client load, and openraft bounds them (per group and peer,
//! one replication request and one vote at a time, plus heartbeats). Answers wait for the
//! connection's writer in a queue of [`ANSWER_QUEUE_FRAMES`]; a handler that finds it full waits.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// Forwarded requests served at once per peer connection. A node forwards at most what its own
/// clients have in flight, which its API connection cap bounds (1,024 by default), so a
/// well-configured peer meets this only when it allows more connections than that.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 1024;
/// Encoded answers queued for a connection's writer.
pub const ANSWER_QUEUE_FRAMES: usize = 1024;
/// Snapshots received at once. A node needs a snapshot per group only when it fell behind by
/// more than the log keeps; four at once keep a catch-up going without letting 256 peer
/// connections stage 256 transfers (and hold 256 chunks) together.
pub const MAX_INCOMING_SNAPSHOTS: usize = 4;

use super::auth::{server_handshake, ClusterSecret, ConnectionKind, HANDSHAKE_TIMEOUT};
use super::handler::Handler;
use super::snapshot;
use super::tls::{PeerStream, PeerTls};
use super::wire::{self, RemoteError, RequestBody, RequestFrame, ResponseFrame};
use crate::type_config::NodeId;

/// Accepts peer connections until `shutdown` turns true.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    secret: ClusterSecret,
    tls: Option<PeerTls>,
    handler: Arc<H>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let snapshots = Arc::new(Semaphore::new(MAX_INCOMING_SNAPSHOTS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%remote, max_connections, "peer connection limit reached; refusing");
            continue;
        };
        let secret = secret.clone();
        let tls = tls.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) =
                serve_connection(stream, &secret, tls.as_ref(), handler, snapshots, shutdown).await
            {
                tracing::debug!(%remote, error = %e, "peer connection ended");
            }
        });
    }
}

async fn serve_connection<H: Handler>(
    tcp: TcpStream,
    secret: &ClusterSecret,
    tls: Option<&PeerTls>,
    handler: Arc<H>,
    snapshots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    super::tune_peer_socket(&tcp)?;
    let remote = tcp.peer_addr().ok();
    let mut stream = match tls {
        None => PeerStream::Plain(tcp),
        Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::warn!(peer = ?remote, error = %e, "peer failed the TLS handshake; closing");
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(peer = ?remote, "peer TLS handshake timed out; closing");
                return Ok(());
            }
        },
    };
    let (from, kind) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, server_handshake(&mut stream, secret))
        .await
    {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            tracing::warn!(peer = ?stream.peer_addr().ok(), error = %e, "peer failed authentication; closing");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(peer = ?stream.peer_addr().ok(), "peer handshake timed out; closing");
            return Ok(());
        }
    };
    match kind {
        ConnectionKind::Snapshot => {
            let Ok(_transfer) = snapshots.try_acquire() else {
                tracing::warn!(
                    from,
                    limit = MAX_INCOMING_SNAPSHOTS,
                    "snapshot transfers at their limit; refusing one"
                );
                return Ok(());
            };
            tokio::select! {
                result = snapshot::receive(&mut stream, &*handler, from) => {
                    result.map_err(|e| std::io::Error::other(e.to_string()))
                }
                _ = shutdown.wait_for(|stop| *stop) => Ok(()),
            }
        }
        ConnectionKind::Rpc => serve_rpc(stream, handler, from, shutdown).await,
    }
}

async fn serve_rpc<H: Handler>(
    stream: PeerStream,
    handler: Arc<H>,
    from: NodeId,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (read_half, write_half) = tokio::io::split(stream);
    let (answers, mut queued) = mpsc::channel::<Vec<u8>>(ANSWER_QUEUE_FRAMES);
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
    let writer = tokio::spawn(async move {
        let mut writer = BufWriter::new(write_half);
        while let Some(frame) = queued.recv().await {
            let mut result = writer.write_all(&frame).await;
            while result.is_ok() {
                match queued.try_recv() {
                    Ok(frame) => result = writer.write_all(&frame).await,
                    Err(_) => break,
                }
            }
            if result.and(writer.flush().await).is_err() {
                break;
            }
        }
    });

    let mut reader = tokio::io::BufReader::new(read_half);
    let result = loop {
        let payload = tokio::select! {
            payload = wire::read_frame(&mut reader) => payload,
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
        };
        let frame: RequestFrame = match payload {
            Ok(Some(payload)) => match wire::decode(&payload) {
                Ok(frame) => frame,
                Err(e) => break Err(e),
            },
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let RequestFrame { id, group_id, body } = frame;
        let permit = match admit(&forwards, &body) {
            Ok(permit) => permit,
            Err(in_flight) => {
                let refused = Err(RemoteError::Busy {
                    group_id,
                    in_flight,
                    limit: MAX_FORWARDS_IN_FLIGHT as u64,
                });
                if let Ok(frame) = wire::encode(&ResponseFrame { id, body: refused }) {
                    let _ = answers.send(frame).await;
                }
                continue;
            }
        };
        let handler = handler.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let name = body.name();
            let body = handler.handle(group_id, body).await;
            if let Err(e) = &body {
                tracing::debug!(from, group_id, request = name, error = %e, "peer request failed");
            }
            match wire::encode(&ResponseFrame { id, body }) {
                Ok(frame) => {
                    let _ = answers.send(frame).await;
                }
                Err(e) => tracing::error!(from, group_id, request = name, error = %e, "cannot encode answer"),
            }
        });
    };
    drop(answers);
    // In-flight handlers hold clones of `answers`; the writer ends once they are done.
    let _ = writer.await;
    result
}

/// A slot for `body` if it is a forwarded request (`None` for Raft's own RPCs, never limited);
/// `Err` with the number in flight when every slot is taken.
fn admit(
    forwards: &Arc<Semaphore>,
    body: &RequestBody,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, u64> {
    match body {
        RequestBody::Forward(_) | RequestBody::ReadIndex | RequestBody::Admin(_) => forwards
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| (MAX_FORWARDS_IN_FLIGHT - forwards.available_permits()) as u64),
        RequestBody::AppendEntries(_)
        | RequestBody::Vote(_)
        | RequestBody::PreVote(_)
        | RequestBody::TransferLeader(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use openraft::raft::{SnapshotResponse, VoteRequest, VoteResponse};

    use super::*;
    use crate::transport::wire::ResponseBody;
    use crate::transport::{CallError, Router};
    use crate::type_config::{GroupId, Snapshot, TypeConfig, Vote};

    /// Answers votes at once; forwarded requests never finish (a leader whose commits stall).
    struct Stalled {
        forwards_entered: AtomicUsize,
        staging: PathBuf,
    }

    impl Handler for Stalled {
        async fn handle(&self, _group_id: GroupId, body: RequestBody) -> Result<ResponseBody, RemoteError> {
            match body {
                RequestBody::Vote(rpc) => Ok(ResponseBody::Vote(VoteResponse::new(rpc.vote, None, false))),
                _ => {
                    self.forwards_entered.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    unreachable!()
                }
            }
        }

        async fn install_snapshot(
            &self,
            group_id: GroupId,
            _vote: Vote,
            _snapshot: Snapshot,
        ) -> Result<SnapshotResponse<TypeConfig>, RemoteError> {
            Err(RemoteError::UnknownGroup { group_id })
        }

        fn staging_dir(&self) -> &Path {
            &self.staging
        }
    }

    /// With every forwarded-request slot of a connection taken by requests that do not finish,
    /// one more is answered `Busy` at once, while Raft's own RPCs on the same connection are
    /// still served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_requests_beyond_the_bound_are_refused_and_raft_rpcs_still_served() {
        let secret = ClusterSecret::new(b"test cluster secret".to_vec());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handler = Arc::new(Stalled {
            forwards_entered: AtomicUsize::new(0),
            staging: std::env::temp_dir(),
        });
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(
            listener,
            secret.clone(),
            None,
            handler.clone(),
            4,
            shutdown,
        ));

        let router = Router::new(2, secret, None, 1 << 20);
        router.set_peer_addr(1, &addr);
        let long = Duration::from_secs(60);
        let stalled: Vec<_> = (0..MAX_FORWARDS_IN_FLIGHT)
            .map(|i| {
                let router = router.clone();
                tokio::spawn(async move { router.forward(1, 0, vec![i as u8], long).await })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while handler.forwards_entered.load(Ordering::SeqCst) < MAX_FORWARDS_IN_FLIGHT {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the forwards never all started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let started = std::time::Instant::now();
        let refused = router.forward(1, 0, b"one more".to_vec(), long).await;
        let limit = MAX_FORWARDS_IN_FLIGHT as u64;
        assert!(
            matches!(
                refused,
                Err(CallError::Remote(RemoteError::Busy { group_id: 0, in_flight, limit: l }))
                    if in_flight == limit && l == limit
            ),
            "{refused:?}"
        );
        let read_index = router.read_index(1, 3, long).await;
        assert!(
            matches!(
                read_index,
                Err(CallError::Remote(RemoteError::Busy { group_id: 3, .. }))
            ),
            "{read_index:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refusals took {:?}",
            started.elapsed()
        );

        let vote = RequestBody::Vote(VoteRequest::new(Vote::new(1, 2), None));
        let answer = router.call(1, 0, vote, Duration::from_secs(5)).await;
        assert!(matches!(answer, Ok(ResponseBody::Vote(_))), "{answer:?}");

        assert_eq!(
            handler.forwards_entered.load(Ordering::SeqCst),
            MAX_FORWARDS_IN_FLIGHT
        );
        for task in &stalled {
            assert!(!task.is_finished());
        }
        for task in stalled {
            task.abort();
        }
    }

    /// Beyond [`MAX_INCOMING_SNAPSHOTS`] transfers at once, one more snapshot connection is
    /// closed right after its handshake, while the others stay open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_transfers_beyond_the_bound_are_closed_at_once() {
        use tokio::io::AsyncReadExt;

        use crate::transport::auth::ConnectionKind;
        use crate::transport::connection::Connection;

        let secret = ClusterSecret::new(b"test cluster secret".to_vec());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handler = Arc::new(Stalled {
            forwards_entered: AtomicUsize::new(0),
            staging: std::env::temp_dir(),
        });
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(listener, secret.clone(), None, handler, 16, shutdown));

        let open = || Connection::open(&addr, &secret, None, 2, ConnectionKind::Snapshot);
        let mut held = Vec::new();
        for _ in 0..MAX_INCOMING_SNAPSHOTS {
            held.push(open().await.unwrap());
        }
        // The server takes each connection's transfer slot after its handshake: let it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut refused = open().await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the extra transfer was not closed: {read:?}"
        );
        for stream in &mut held {
            let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
            assert!(read.is_err(), "a transfer within the bound was closed: {read:?}");
        }
    }
}
