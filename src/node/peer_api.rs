//! `PeerApi`: this node's HTTP client for other members' admin API (the cluster overview asks
//! every member for its status, verify asks every replica for its digests, and a repair fetches
//! a healthy copy). Requests carry the admin token, which every member shares, and have a
//! deadline. [`http_client`] is also `dovetail ctl`'s client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::http::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::http::{HeaderMap, Method};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem;

/// How long an idle connection to another member is kept for reuse: well below the times after
/// which that member closes it (`api_server::KEEP_ALIVE_TIMEOUT` after an answer, and
/// `FIRST_REQUEST_TIMEOUT` for a connection that never carried a request — a client's pool also
/// keeps a connection it opened for a request another connection served; `api_server` asserts
/// both), so a call is not sent on a connection being closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The connector every client of the API uses: HTTP, or HTTPS when it trusts some roots.
pub type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

type HttpClient = Client<Connector, Full<Bytes>>;

/// Why an HTTP client could not be built: the CA certificates it should trust.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("{}: {error}", path.display())]
    UnreadableRoots { path: PathBuf, error: pem::Error },
    #[error("{}: {error}", path.display())]
    UnusableRoot { path: PathBuf, error: rustls::Error },
    #[error("{}: no certificate", path.display())]
    NoRoots { path: PathBuf },
    /// The crypto provider supports none of rustls' safe protocol versions.
    #[error("{0}")]
    Provider(rustls::Error),
}

/// An HTTP/1.1 client for `http://` URLs and, when `roots` (PEM CA certificates) is given, for
/// `https://` URLs whose server certificate those roots vouch for.
pub fn http_client(roots: Option<&Path>) -> Result<HttpClient, ClientTlsError> {
    http_client_for(roots)
}

/// As [`http_client`], for requests with bodies of type `B` (a streamed body).
pub fn http_client_for<B>(roots: Option<&Path>) -> Result<Client<Connector, B>, ClientTlsError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    if let Some(path) = roots {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|c| c.collect())
            .map_err(|error| ClientTlsError::UnreadableRoots {
                path: path.to_path_buf(),
                error,
            })?;
        for cert in certs {
            store.add(cert).map_err(|error| ClientTlsError::UnusableRoot {
                path: path.to_path_buf(),
                error,
            })?;
        }
        if store.is_empty() {
            return Err(ClientTlsError::NoRoots {
                path: path.to_path_buf(),
            });
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ClientTlsError::Provider)?
    .with_root_certificates(store)
    .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(1)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector))
}

/// Why a call to another member failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerApiError {
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    /// The member answered with an error status; `body` is its JSON error, if any.
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: undecodable answer: {reason}")]
    Decode { url: String, reason: String },
}

/// A client for other members' admin API.
#[derive(Clone)]
pub struct PeerApi {
    client: HttpClient,
    /// `http` or `https` (every member's API speaks the same).
    scheme: &'static str,
    authorization: String,
}

impl std::fmt::Debug for PeerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerApi")
    }
}

impl PeerApi {
    /// A plain-HTTP client.
    pub fn new(admin_token: &str) -> PeerApi {
        PeerApi {
            client: http_client(None).expect("a client without roots always builds"),
            scheme: "http",
            authorization: format!("Bearer {admin_token}"),
        }
    }

    /// An HTTPS client trusting the PEM CA certificates in `roots`.
    pub fn https(admin_token: &str, roots: &Path) -> Result<PeerApi, ClientTlsError> {
        Ok(PeerApi {
            client: http_client(Some(roots))?,
            scheme: "https",
            authorization: format!("Bearer {admin_token}"),
        })
    }

    /// Sends a request to `http://{api_addr}{path}`; returns the headers and body of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        api_addr: &str,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<(HeaderMap, Bytes), PeerApiError> {
        let url = format!("{}://{api_addr}{path}", self.scheme);
        let failed = |reason: String| PeerApiError::Request {
            url: url.clone(),
            reason,
        };
        let call = async {
            let request = hyper::Request::builder()
                .method(method)
                .uri(&url)
                .header(AUTHORIZATION, &self.authorization)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))
                .map_err(|e| failed(e.to_string()))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| failed(error_chain(&e)))?;
            let status = response.status();
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| failed(error_chain(&e)))?
                .to_bytes();
            if !status.is_success() {
                return Err(PeerApiError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                });
            }
            Ok((parts.headers, bytes))
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(PeerApiError::Timeout {
                url: url.clone(),
                timeout,
            }),
        }
    }

    /// `GET` a JSON document.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        api_addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<T, PeerApiError> {
        let (_, body) = self.call(Method::GET, api_addr, path, None, timeout).await?;
        serde_json::from_slice(&body).map_err(|e| PeerApiError::Decode {
            url: format!("{}://{api_addr}{path}", self.scheme),
            reason: e.to_string(),
        })
    }
}

/// An error and its sources, `outer: inner: innermost`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
