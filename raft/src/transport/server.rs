//! The incoming side of the peer transport: an accept loop with a connection limit, the
//! handshake, and per-connection dispatch to a [`Handler`] (the node's table of groups).
//!
//! On an RPC connection every request is handled in a task of its own and answered as soon as
//! it is done, so a slow request (a forwarded proposal waiting for commit) never delays the
//! heartbeats behind it.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::auth::{server_handshake, ClusterSecret, ConnectionKind, HANDSHAKE_TIMEOUT};
use super::handler::Handler;
use super::snapshot;
use super::tls::{PeerStream, PeerTls};
use super::wire::{self, RequestFrame, ResponseFrame};
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
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, &secret, tls.as_ref(), handler, shutdown).await {
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
    let (answers, mut queued) = mpsc::channel::<Vec<u8>>(1024);
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
        let handler = handler.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let RequestFrame { id, group_id, body } = frame;
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
