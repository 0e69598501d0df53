//! Optional mutual TLS on the peer port.
//!
//! With [`PeerTls`] configured, every peer connection is a TLS 1.2/1.3 session (rustls, ring
//! provider) before the cluster-secret handshake runs inside it: the server presents its
//! certificate and requires a client certificate, both checked against the cluster's CA, and
//! the client checks that the server's certificate names the host it dialled (an IP address
//! SAN for `10.0.0.2:7101`, a DNS name for `node2:7101`). The secret handshake still decides
//! membership; TLS adds confidentiality and integrity on the wire.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where a node's peer TLS material is (PEM files).
#[derive(Debug, Clone)]
pub struct PeerTlsFiles {
    /// This node's certificate chain, naming the host its peer address uses.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed every member's certificate.
    pub ca: PathBuf,
}

/// Why [`PeerTls::load`] failed. Each variant names the file at fault; none prints key material.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// The certificate file could not be read as PEM.
    #[error("peer TLS certificate {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("peer TLS certificate {}: no certificate", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key that can be read.
    #[error("peer TLS key {}: no usable private key ({source})", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// The CA file could not be read as PEM.
    #[error("peer TLS CA {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// A certificate of the CA file is not usable as a root of trust.
    #[error("peer TLS CA {}: {source}", path.display())]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The CA file holds no certificate.
    #[error("peer TLS CA {}: no certificate", path.display())]
    NoCaCertificate { path: PathBuf },
    /// No client certificate verifier could be built on the CA file's certificates.
    #[error("peer TLS CA {}: {source}", path.display())]
    CaVerifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the certificate chain with the private key (a key that does not match
    /// the certificate, an unsupported key type).
    #[error("peer TLS certificate/key: {source}")]
    CertificateKey {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The crypto provider (ring) supports none of the safe default protocol versions.
    #[error("{0}")]
    ProtocolVersions(#[source] rustls::Error),
}

/// A node's TLS configuration for both ends of peer connections.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PeerTls {
    /// Loads and checks the files; errors name the file, never print key material.
    pub fn load(files: &PeerTlsFiles) -> Result<PeerTls, PeerTlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|certs| certs.collect())
            .map_err(|source| PeerTlsError::Certificate {
                path: files.cert.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(PeerTlsError::NoCertificate {
                path: files.cert.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| PeerTlsError::Key {
            path: files.key.clone(),
            source,
        })?;
        let roots = load_roots(&files.ca)?;
        let client_verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|source| PeerTlsError::CaVerifier {
                    path: files.ca.clone(),
                    source,
                })?;
        let certificate_key = |source| PeerTlsError::CertificateKey {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(PeerTlsError::ProtocolVersions)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(certificate_key)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(PeerTlsError::ProtocolVersions)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(certificate_key)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Client side: TLS over `tcp` to `addr` (`host:port`).
    pub async fn connect(&self, addr: &str, tcp: TcpStream) -> io::Result<PeerStream> {
        let host = match addr.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => addr,
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let tls = self.connector.connect(name, tcp).await?;
        Ok(PeerStream::TlsClient(Box::new(tls)))
    }

    /// Server side: TLS over an accepted `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<PeerStream> {
        Ok(PeerStream::TlsServer(Box::new(self.acceptor.accept(tcp).await?)))
    }
}

fn load_roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, PeerTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect())
        .map_err(|source| PeerTlsError::CaFile {
            path: ca.to_path_buf(),
            source,
        })?;
    for cert in certs {
        roots.add(cert).map_err(|source| PeerTlsError::CaCertificate {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(PeerTlsError::NoCaCertificate {
            path: ca.to_path_buf(),
        });
    }
    Ok(Arc::new(roots))
}

/// A peer connection, plain or TLS.
pub enum PeerStream {
    Plain(TcpStream),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl PeerStream {
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            PeerStream::Plain(s) => s.peer_addr(),
            PeerStream::TlsClient(s) => s.get_ref().0.peer_addr(),
            PeerStream::TlsServer(s) => s.get_ref().0.peer_addr(),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            PeerStream::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            PeerStream::TlsClient($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
            PeerStream::TlsServer($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for PeerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}
