//! `ApiListener`: the API's accept loop, with separate budgets for connections that have and
//! have not yet sent a request with a valid token, and optional TLS.
//!
//! Every accepted connection starts *pending*: it has sent no request with a valid token yet.
//! At most `max_pending` connections are pending at once. When another arrives, it takes the
//! place of the oldest pending connection that has sent nothing at all (no byte read, none
//! waiting in its socket) for [`SILENT_MIN_AGE`], or else of the oldest one pending for longer
//! than [`SLOW_HEAD_AGE`]
//! (a request head that takes a second is no client's): that connection is closed. Only when
//! every pending connection is younger than that and already sending does the accept loop wait,
//! and new connections wait in the kernel's accept queue. So idle or slow sockets, however
//! many, cannot keep a client out for long, and a burst of real clients is not cut off.
//!
//! A pending connection whose request carries a valid token becomes *authenticated*
//! ([`Connection`], told by `api::auth::require_bearer`): it leaves the pending budget for one of
//! `max_authenticated` places (`--max-connections`), which it keeps until it closes; with none
//! free, the request is refused 429 `busy` and the connection closed. Token holders are trusted
//! not to hoard connections; connections without a token can only ever hold the pending budget,
//! and only briefly. How long a connection may stay pending or idle: `api_server`.
//!
//! With TLS the handshake happens while the connection is pending (`api_server`), so a slow or
//! silent handshake is bounded like a slow request head.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem;
use tokio_rustls::TlsAcceptor;

use crate::api::auth::AuthenticatedConnection;

/// How long a pending connection that is sending may keep its place against newcomers: a real
/// client's request head arrives within a round trip; one that takes a second is trickling.
pub const SLOW_HEAD_AGE: Duration = Duration::from_secs(1);

/// How long a pending connection that has sent nothing keeps its place against newcomers. A
/// real client writes its request as soon as it is connected, but on a loaded machine (the
/// client's own task waiting for a core) that can take a moment: closing silent connections at
/// once cut such clients off (`tests/t55_overload.rs` saw transport errors). A flood of silent
/// sockets still gives way within this time.
pub const SILENT_MIN_AGE: Duration = Duration::from_millis(250);

/// Default of `--max-pending-connections`.
pub const DEFAULT_MAX_PENDING: u32 = 64;

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

/// How many connections of each kind the listener keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Connections that sent a request with a valid token (`--max-connections`).
    pub max_authenticated: usize,
    /// Connections that have not yet (`--max-pending-connections`).
    pub max_pending: usize,
}

/// The API's listening socket and its connection budgets.
pub struct ApiListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    pending: Arc<PendingTable>,
    authenticated: Arc<Semaphore>,
}

/// One accepted connection, pending: its socket and its state.
pub struct Accepted {
    pub stream: ApiStream,
    pub addr: SocketAddr,
    pub connection: Arc<Connection>,
}

impl ApiListener {
    pub fn new(tcp: TcpListener, budget: ConnectionBudget) -> io::Result<ApiListener> {
        Ok(ApiListener {
            local_addr: tcp.local_addr()?,
            tcp,
            pending: Arc::new(PendingTable {
                max: budget.max_pending.max(1),
                entries: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(0),
                room: Notify::new(),
            }),
            authenticated: Arc::new(Semaphore::new(budget.max_authenticated.max(1))),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next connection, once it has a place among the pending ones (see the module docs;
    /// another pending connection may be closed to make it).
    pub async fn accept(&self) -> Accepted {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // A second descriptor of the socket, for asking the kernel whether bytes wait on it
            // while the connection is pending: valid for as long as the table holds it.
            let socket = match tcp.as_fd().try_clone_to_owned() {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.make_room().await;
            let connection = Arc::new(Connection {
                accepted: Instant::now(),
                sent: AtomicBool::new(false),
                evicted: Notify::new(),
                phase: Mutex::new(Phase::Pending),
                pending: self.pending.clone(),
                authenticated_places: self.authenticated.clone(),
                id: self.pending.next_id(),
            });
            self.pending.insert(connection.clone(), socket);
            let stream = ApiStream {
                _registration: Registration {
                    connection: connection.clone(),
                },
                io: Io::Plain(WatchedTcp {
                    tcp,
                    connection: connection.clone(),
                }),
            };
            return Accepted {
                stream,
                addr,
                connection,
            };
        }
    }

    /// Waits until a connection may join the pending ones, closing one to make room if one may
    /// be closed.
    async fn make_room(&self) {
        loop {
            let room = self.pending.room.notified();
            match self.pending.make_room(Instant::now()) {
                None => return,
                Some(until) => {
                    tokio::select! {
                        () = room => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }
}

/// The pending connections, oldest first.
struct PendingTable {
    max: usize,
    /// Connection id (in accept order) -> the connection and a descriptor of its socket.
    /// Invariant: holds exactly the connections in `Phase::Pending`; at most `max` of them.
    entries: Mutex<BTreeMap<u64, (Arc<Connection>, OwnedFd)>>,
    next_id: AtomicU64,
    /// Notified whenever a connection leaves the table.
    room: Notify,
}

impl PendingTable {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn insert(&self, connection: Arc<Connection>, socket: OwnedFd) {
        let mut entries = self.entries.lock().expect("pending table lock");
        entries.insert(connection.id, (connection, socket));
        debug_assert!(entries.len() <= self.max, "pending connections over their budget");
    }

    /// Makes room for one more connection if it can: `None` if there is room now (a connection
    /// may have been evicted for it), else when to try again at the latest.
    fn make_room(&self, now: Instant) -> Option<Instant> {
        let mut entries = self.entries.lock().expect("pending table lock");
        if entries.len() < self.max {
            return None;
        }
        // The oldest silent connection, and since when it may be closed.
        let silent = entries
            .iter()
            .find(|(_, (connection, socket))| {
                !connection.sent.load(Ordering::Relaxed) && bytes_waiting(socket) == 0
            })
            .map(|(&id, (connection, _))| (id, connection.accepted + SILENT_MIN_AGE));
        let (&oldest, (connection, _)) = entries.first_key_value().expect("a full table");
        let slow_since = connection.accepted + SLOW_HEAD_AGE;
        let victim = match silent {
            Some((id, since)) if since <= now => id,
            _ if slow_since <= now => oldest,
            Some((_, since)) => return Some(since.min(slow_since)),
            None => return Some(slow_since),
        };
        let (connection, _) = entries.remove(&victim).expect("the victim is in the table");
        let mut phase = connection.phase.lock().expect("connection phase lock");
        debug_assert!(
            matches!(*phase, Phase::Pending),
            "only pending connections are in the table"
        );
        *phase = Phase::Evicted;
        drop(phase);
        connection.evicted.notify_one();
        metrics::counter!(super::metrics::API_CONNECTIONS_CLOSED_TOTAL, "reason" => "evicted").increment(1);
        None
    }

    /// Takes `connection` out of the table if it is there; true if it was.
    fn remove(&self, connection: &Connection) -> bool {
        let removed = self
            .entries
            .lock()
            .expect("pending table lock")
            .remove(&connection.id)
            .is_some();
        if removed {
            self.room.notify_one();
        }
        removed
    }
}

/// Bytes received on `socket` and not yet read (`FIONREAD`); 0 if the kernel will not say.
fn bytes_waiting(socket: &OwnedFd) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: the descriptor is owned (so open) for the duration of the call, and FIONREAD
    // writes one c_int through the pointer, which points at one.
    let ok = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut bytes) } == 0;
    if ok {
        usize::try_from(bytes).unwrap_or(0)
    } else {
        0
    }
}

/// Where a connection is in its life.
enum Phase {
    /// No request with a valid token yet: in the pending table.
    Pending,
    /// Closed to make room for a newer connection (never a connection with a valid token).
    Evicted,
    /// A request with a valid token came; the place is held until the connection is dropped.
    Authenticated(#[allow(dead_code)] OwnedSemaphorePermit),
    /// A request with a valid token came when no place was free.
    Refused,
}

/// One API connection's state, shared by its socket, its serving task and its requests.
pub struct Connection {
    /// The connection's number, in accept order.
    id: u64,
    /// When it was accepted.
    pub accepted: Instant,
    /// Set once a byte arrived on the connection.
    sent: AtomicBool,
    /// Notified when the connection is evicted from the pending table.
    evicted: Notify,
    phase: Mutex<Phase>,
    pending: Arc<PendingTable>,
    authenticated_places: Arc<Semaphore>,
}

impl Connection {
    /// True once a request with a valid token took a place for this connection.
    pub fn is_authenticated(&self) -> bool {
        matches!(
            *self.phase.lock().expect("connection phase lock"),
            Phase::Authenticated(_)
        )
    }

    /// Resolves once the connection was evicted to make room for another (at once if it was).
    pub async fn evicted(&self) {
        loop {
            let evicted = self.evicted.notified();
            if matches!(*self.phase.lock().expect("connection phase lock"), Phase::Evicted) {
                return;
            }
            evicted.await;
        }
    }
}

impl AuthenticatedConnection for Connection {
    fn authenticated(&self) -> bool {
        // The table's lock before the phase's, never both in the other order: eviction holds
        // the table's while it marks the phase. Whoever takes the connection out of the table
        // decides its next phase.
        let was_pending = self.pending.remove(self);
        let mut phase = self.phase.lock().expect("connection phase lock");
        if was_pending {
            debug_assert!(
                matches!(*phase, Phase::Pending),
                "a connection in the table is pending"
            );
            *phase = match self.authenticated_places.clone().try_acquire_owned() {
                Ok(place) => Phase::Authenticated(place),
                Err(_) => {
                    metrics::counter!(super::metrics::API_CONNECTIONS_CLOSED_TOTAL, "reason" => "no_place")
                        .increment(1);
                    Phase::Refused
                }
            };
        }
        matches!(*phase, Phase::Authenticated(_))
    }
}

/// Takes a connection out of the pending table when its socket closes. A field of
/// [`ApiStream`] declared before the socket, so dropped first: the table never holds the
/// descriptor of a closed connection's socket past it.
struct Registration {
    connection: Arc<Connection>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connection.pending.remove(&self.connection);
    }
}

/// A connection's TCP socket, noting that bytes arrived (a connection that sent something is
/// not closed to make room before [`SLOW_HEAD_AGE`]).
pub struct WatchedTcp {
    tcp: TcpStream,
    connection: Arc<Connection>,
}

enum Io {
    Plain(WatchedTcp),
    Tls(Box<tokio_rustls::server::TlsStream<WatchedTcp>>),
}

/// One accepted connection's byte stream, plain or TLS; leaves the pending table when dropped.
pub struct ApiStream {
    // Declared first: dropped before the socket (see `Registration`).
    _registration: Registration,
    io: Io,
}

impl ApiStream {
    /// The stream after a TLS handshake as the server (the caller bounds how long it may take).
    pub async fn start_tls(self, acceptor: &TlsAcceptor) -> io::Result<ApiStream> {
        let ApiStream { _registration, io } = self;
        match io {
            Io::Plain(tcp) => {
                let tls = acceptor.accept(tcp).await?;
                Ok(ApiStream {
                    _registration,
                    io: Io::Tls(Box::new(tls)),
                })
            }
            Io::Tls(_) => Err(io::Error::other("TLS already started")),
        }
    }
}

impl AsyncRead for WatchedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.connection.sent.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for WatchedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
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
