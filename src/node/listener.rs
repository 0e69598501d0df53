//! `ApiListener`: the API's accept loop, with a cap on open connections and optional TLS.
//!
//! A background task accepts TCP connections only while fewer than `max_connections` are open
//! (each connection holds a semaphore permit until it closes), so a flood of connections waits in
//! the kernel's accept queue instead of exhausting file descriptors. With TLS, handshakes run in
//! their own tasks with a deadline, so a slow or silent client cannot stall the accept loop.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the API's TLS configuration could not be loaded. The messages name the flag and the file;
/// never the key's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("--tls-cert {}: {error}", path.display())]
    Certificate { path: PathBuf, error: pem::Error },
    #[error("--tls-cert {}: no certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("--tls-key {}: no usable private key ({error})", path.display())]
    PrivateKey { path: PathBuf, error: pem::Error },
    /// The crypto provider supports none of rustls' safe protocol versions.
    #[error("{0}")]
    Provider(rustls::Error),
    /// The key does not fit the certificate, or either is unusable.
    #[error("--tls-cert/--tls-key: {0}")]
    CertificateAndKey(rustls::Error),
}

/// Loads a PEM certificate chain and private key into a TLS server configuration.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|error| TlsConfigError::Certificate {
            path: cert.to_path_buf(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    // Never print the key's content, only where it came from.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsConfigError::PrivateKey {
        path: key.to_path_buf(),
        error,
    })?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Provider)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsConfigError::CertificateAndKey)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener for `axum::serve`.
pub struct ApiListener {
    connections: mpsc::Receiver<(ApiStream, SocketAddr)>,
    local_addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl ApiListener {
    pub fn new(listener: TcpListener, max_connections: usize, tls: Option<TlsAcceptor>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(64);
        let open = Arc::new(Semaphore::new(max_connections));
        let accept_task = tokio::spawn(accept_loop(listener, open, tls, sender));
        Ok(ApiListener {
            connections,
            local_addr,
            accept_task,
        })
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    open: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    sender: mpsc::Sender<(ApiStream, SocketAddr)>,
) {
    loop {
        let Ok(permit) = open.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accepting an API connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match &tls {
            None => {
                let stream = ApiStream {
                    io: Io::Plain(tcp),
                    _permit: permit,
                };
                if sender.send((stream, addr)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let stream = ApiStream {
                                io: Io::Tls(Box::new(tls)),
                                _permit: permit,
                            };
                            let _ = sender.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = ApiStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ApiStream, SocketAddr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection; frees its slot when dropped.
pub struct ApiStream {
    io: Io,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for ApiStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ApiStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// With a certificate, the listener speaks TLS (and nothing else): a client that trusts the
    /// certificate gets its HTTP answer; a plain-HTTP client gets no HTTP answer at all.
    #[tokio::test]
    async fn tls_serves_https_and_refuses_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let e = tls_acceptor(&cert_path, &cert_path).err().unwrap();
        assert!(matches!(&e, TlsConfigError::PrivateKey { path, .. } if *path == cert_path));
        assert!(e.to_string().starts_with("--tls-key "), "{e}");
        let acceptor = tls_acceptor(&cert_path, &key_path).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = ApiListener::new(tcp, 8, Some(acceptor)).unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello over tls" }));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello over tls"),
            "{answer}"
        );

        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(!answer.starts_with(b"HTTP/1.1 200"), "plain HTTP was answered");
    }

    /// With room for one connection, a second client is accepted only after the first closes.
    #[tokio::test]
    async fn connections_beyond_the_cap_wait() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = ApiListener::new(tcp, 1, None).unwrap();
        use axum::serve::Listener;
        let mut first_client = TcpStream::connect(addr).await.unwrap();
        let (mut first, _) = listener.accept().await;
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(waited.is_err(), "a second connection was accepted beyond the cap");
        first_client.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        first.read_exact(&mut byte).await.unwrap();
        drop(first);
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(
            accepted.is_ok(),
            "the waiting connection was not accepted after a slot freed"
        );
    }
}
