//! `BodyTransfer`: this node's HTTP client for moving message bodies to and from other members
//! (`PUT` / `GET /admin/bodies/{id}` on their admin API, streamed both ways). A node keeps two,
//! each with its own connections: the *urgent* one for the pushes a delivery waits on and for
//! fetches on a miss, the *background* one for the backlog. Background transfers therefore never
//! queue a delivery or a reader behind them, and none of them shares a connection with Raft
//! traffic (the peer port).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::channel::Channel;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::Method;
use hyper_util::client::legacy::Client;

use super::peer_api::{error_chain, http_client_for, ClientTlsError, Connector, PeerApiError};
use crate::bodies::stream::{bytes_body, file_body, put_stream};
use crate::bodies::{BodyError, BodyId, BodyStore, Stored};

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Peer(#[from] PeerApiError),
    /// This node's own store failed (reading what to send, or storing what came).
    #[error(transparent)]
    Store(#[from] BodyError),
}

/// What a push sends: a stored copy, or the bytes of a small body still in memory (a delivery
/// pushes those while its own node stores them).
#[derive(Debug, Clone)]
pub enum PushSource {
    Store(Arc<BodyStore>),
    Memory(Bytes),
}

/// A client for other members' body endpoints.
#[derive(Clone)]
pub struct BodyTransfer {
    client: Client<Connector, Channel<Bytes, std::io::Error>>,
    scheme: &'static str,
    authorization: String,
}

impl std::fmt::Debug for BodyTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyTransfer")
    }
}

/// A request's body.
enum Payload {
    File(std::fs::File, u64),
    Bytes(Bytes),
}

impl BodyTransfer {
    /// A client over plain HTTP, or over HTTPS trusting the PEM CA certificates in `roots`.
    pub fn new(admin_token: &str, roots: Option<&Path>) -> Result<BodyTransfer, ClientTlsError> {
        Ok(BodyTransfer {
            client: http_client_for(roots)?,
            scheme: if roots.is_some() { "https" } else { "http" },
            authorization: format!("Bearer {admin_token}"),
        })
    }

    fn url(&self, api_addr: &str, id: &BodyId) -> String {
        format!("{}://{api_addr}/admin/bodies/{id}", self.scheme)
    }

    /// Sends one request to `url`: with `body`, the first `len` bytes of that file, streamed,
    /// or those bytes.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Payload>,
    ) -> Result<hyper::Response<Incoming>, PeerApiError> {
        let failed = |reason: String| PeerApiError::Request {
            url: url.to_string(),
            reason,
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header(AUTHORIZATION, &self.authorization);
        if let Some(payload) = &body {
            let len = match payload {
                Payload::File(_, len) => *len,
                Payload::Bytes(bytes) => bytes.len() as u64,
            };
            request = request
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len);
        }
        let body = match body {
            Some(Payload::File(file, len)) => file_body(file, 0, len),
            Some(Payload::Bytes(bytes)) => bytes_body(bytes),
            None => Channel::new(1).1,
        };
        let request = request.body(body).map_err(|e| failed(e.to_string()))?;
        self.client
            .request(request)
            .await
            .map_err(|e| failed(error_chain(&e)))
    }

    /// The error for a member's answer that is not a success, with (the start of) its body.
    async fn refused(url: &str, response: hyper::Response<Incoming>) -> PeerApiError {
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(answer) => String::from_utf8_lossy(&answer.to_bytes())
                .chars()
                .take(500)
                .collect(),
            Err(_) => String::new(),
        };
        PeerApiError::Status {
            url: url.to_string(),
            status,
            body,
        }
    }

    /// Sends body `id` from `source` to the member at `api_addr`, which checks it and stores it
    /// durably before it answers. `Ok(false)`: this node's store has no copy to send.
    pub async fn push(
        &self,
        api_addr: &str,
        source: &PushSource,
        id: BodyId,
        timeout: Duration,
    ) -> Result<bool, TransferError> {
        let payload = match source {
            PushSource::Memory(bytes) => Payload::Bytes(bytes.clone()),
            PushSource::Store(store) => match store.open_unchecked(&id)? {
                Some((file, len)) => Payload::File(file, len),
                None => return Ok(false),
            },
        };
        let url = self.url(api_addr, &id);
        let call = async {
            let response = self.send(Method::PUT, &url, Some(payload)).await?;
            if !response.status().is_success() {
                return Err(Self::refused(&url, response).await);
            }
            // The answer's small JSON body, read so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok(())
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer.map(|()| true).map_err(TransferError::from),
            Err(_) => Err(PeerApiError::Timeout { url, timeout }.into()),
        }
    }

    /// Asks the member at `api_addr` to run its body sweep now (`POST /admin/bodies/sweep`): a
    /// full body resync.
    pub async fn request_sweep(&self, api_addr: &str, timeout: Duration) -> Result<(), PeerApiError> {
        let url = format!("{}://{api_addr}/admin/bodies/sweep", self.scheme);
        let call = async {
            let response = self.send(Method::POST, &url, None).await?;
            if !response.status().is_success() {
                return Err(Self::refused(&url, response).await);
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(PeerApiError::Timeout { url, timeout }),
        }
    }

    /// Fetches body `id` from the member at `api_addr` into `store`, checking every byte.
    /// `Ok(None)`: that member has no good copy.
    pub async fn fetch(
        &self,
        api_addr: &str,
        store: &Arc<BodyStore>,
        id: BodyId,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<Option<Stored>, TransferError> {
        let url = self.url(api_addr, &id);
        let call = async {
            let response = self.send(Method::GET, &url, None).await?;
            if response.status() == hyper::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !response.status().is_success() {
                return Err(Self::refused(&url, response).await.into());
            }
            let stored = put_stream(store.clone(), response.into_body(), max_bytes, Some(id)).await?;
            Ok(Some(stored))
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(PeerApiError::Timeout { url, timeout }.into()),
        }
    }
}
