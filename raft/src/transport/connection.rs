//! [`Connection`]: one authenticated, pipelined RPC connection to a peer, and [`Peer`], which
//! keeps one alive (reconnecting with backoff).
//!
//! A connection has a writer task (frames from a channel to the socket, flushed when the
//! channel runs dry, so bursts share syscalls) and a reader task (response frames to the
//! `oneshot` of the request with the same id). Many requests of many groups are outstanding at
//! once; a slow answer for one does not hold up the others. When either task fails the
//! connection is marked closed and every outstanding request fails with a network error.
//!
//! **Bounds.** At most [`WRITE_QUEUE_FRAMES`] frames wait for the writer; a caller that finds
//! the queue full waits (backpressure from the socket). The outstanding requests (`Pending`, one
//! waiter per call) are as many as the callers, which are bounded where they come from: a
//! node's forwarded requests by its clients' requests in flight (`--max-in-flight`) and by the
//! receiver's `server::MAX_FORWARDS_IN_FLIGHT`, Raft's RPCs by openraft (per group and peer, one
//! replication request and one vote at a time, plus heartbeats). Every call has a timeout, and
//! its waiter is removed however the call ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::auth::{client_handshake, ClusterSecret, ConnectionKind, HANDSHAKE_TIMEOUT};
use super::tls::{PeerStream, PeerTls};
use super::wire::{self, RemoteError, RequestBody, RequestFrame, ResponseBody, ResponseFrame};
use super::CallError;
use crate::type_config::{GroupId, NodeId};

/// Upper bound on the reconnect backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// First reconnect delay; doubles per consecutive failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Frames queued for the writer before senders wait.
const WRITE_QUEUE_FRAMES: usize = 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<ResponseBody, RemoteError>>>>>;

/// One live RPC connection.
pub struct Connection {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl Connection {
    /// Connects to `addr` and authenticates as `node_id`.
    pub async fn open(
        addr: &str,
        secret: &ClusterSecret,
        tls: Option<&PeerTls>,
        node_id: NodeId,
        kind: ConnectionKind,
    ) -> Result<PeerStream, CallError> {
        let connect = async {
            let tcp = TcpStream::connect(addr).await?;
            super::tune_peer_socket(&tcp)?;
            let mut stream = match tls {
                Some(tls) => tls.connect(addr, tcp).await?,
                None => PeerStream::Plain(tcp),
            };
            client_handshake(&mut stream, secret, node_id, kind).await?;
            Ok::<_, std::io::Error>(stream)
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(CallError::Unreachable(format!("connect {addr}: {e}"))),
            Err(_) => Err(CallError::Unreachable(format!("connect {addr}: timed out"))),
        }
    }

    fn start(stream: PeerStream) -> Connection {
        let (read_half, write_half) = tokio::io::split(stream);
        let (frames, mut queued) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE_FRAMES);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));

        let writer_closed = closed.clone();
        let writer_pending = pending.clone();
        tokio::spawn(async move {
            let mut writer = BufWriter::new(write_half);
            while let Some(frame) = queued.recv().await {
                let mut result = writer.write_all(&frame).await;
                // Drain what is already queued before paying for a flush.
                while result.is_ok() {
                    match queued.try_recv() {
                        Ok(frame) => result = writer.write_all(&frame).await,
                        Err(_) => break,
                    }
                }
                if let Err(e) = result.and(writer.flush().await) {
                    tracing::debug!(error = %e, "peer connection write failed");
                    break;
                }
            }
            fail_all(&writer_closed, &writer_pending);
        });

        let reader_closed = closed.clone();
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(read_half);
            loop {
                match wire::read_frame(&mut reader).await {
                    Ok(Some(payload)) => match wire::decode::<ResponseFrame>(&payload) {
                        Ok(frame) => {
                            let waiter = reader_pending.lock().expect("pending lock").remove(&frame.id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(frame.body);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable frame from peer; closing");
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "peer connection read failed");
                        break;
                    }
                }
            }
            fail_all(&reader_closed, &reader_pending);
        });

        Connection {
            frames,
            pending,
            next_id: AtomicU64::new(1),
            closed,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends one request and waits up to `timeout` for its answer.
    pub async fn call(
        &self,
        group_id: GroupId,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = body.name();
        let frame = wire::encode(&RequestFrame { id, group_id, body })
            .map_err(|e| CallError::Network(format!("{name}: {e}")))?;
        let (answer_tx, answer_rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, answer_tx);
        // Removes the waiter however this call ends (answer, timeout, or caller dropped).
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        if self.is_closed() || self.frames.send(frame).await.is_err() {
            return Err(CallError::Network(format!("{name}: connection closed")));
        }
        match tokio::time::timeout(timeout, answer_rx).await {
            Err(_) => Err(CallError::Timeout(timeout)),
            Ok(Err(_)) => Err(CallError::Network(format!(
                "{name}: connection lost before the answer"
            ))),
            Ok(Ok(Err(remote))) => Err(CallError::Remote(remote)),
            Ok(Ok(Ok(body))) => Ok(body),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer task ends when the last frame sender goes; the peer then sees EOF and
        // closes, which ends the reader task.
        self.closed.store(true, Ordering::Release);
    }
}

struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.lock().expect("pending lock").remove(&self.id);
    }
}

fn fail_all(closed: &AtomicBool, pending: &Pending) {
    closed.store(true, Ordering::Release);
    // Dropping the senders wakes every waiter with "connection lost".
    pending.lock().expect("pending lock").clear();
}

/// A peer's address and its current connection, re-established on demand with backoff.
pub struct Peer {
    pub addr: String,
    state: tokio::sync::Mutex<PeerState>,
}

#[derive(Default)]
struct PeerState {
    connection: Option<Arc<Connection>>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Peer {
    pub fn new(addr: String) -> Peer {
        Peer {
            addr,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// The live connection, or a new one. While backing off after a failed attempt, fails at
    /// once with `Unreachable` rather than hammering a dead address.
    pub async fn connection(
        &self,
        secret: &ClusterSecret,
        tls: Option<&PeerTls>,
        node_id: NodeId,
    ) -> Result<Arc<Connection>, CallError> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
            state.connection = None;
        }
        if let Some(retry_at) = state.retry_at {
            if Instant::now() < retry_at {
                return Err(CallError::Unreachable(format!(
                    "{}: backing off after failure",
                    self.addr
                )));
            }
        }
        match Connection::open(&self.addr, secret, tls, node_id, ConnectionKind::Rpc).await {
            Ok(stream) => {
                let connection = Arc::new(Connection::start(stream));
                state.connection = Some(connection.clone());
                state.failures = 0;
                state.retry_at = None;
                Ok(connection)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let delay = BACKOFF_MIN
                    .saturating_mul(1 << state.failures.min(8))
                    .min(BACKOFF_MAX);
                state.retry_at = Some(Instant::now() + delay);
                Err(e)
            }
        }
    }

    /// Drops the connection, e.g. at shutdown.
    pub async fn close(&self) {
        self.state.lock().await.connection = None;
    }
}
