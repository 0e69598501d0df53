//! `serve_api`: the HTTP API served on an [`ApiListener`]'s connections with hyper (HTTP/1.1),
//! with deadlines on connections that are slow to say something, and a drain at shutdown.
//!
//! Deadlines ([`Deadlines`], defaults [`FIRST_REQUEST_TIMEOUT`] and [`KEEP_ALIVE_TIMEOUT`]):
//! - A new connection must send a request with a valid token within 10 s of being accepted (its
//!   TLS handshake included), or it is closed: the header-read deadline of a connection nobody
//!   has vouched for. A socket that sends nothing, or half a request head, is gone after it.
//! - After that, each request head must be complete within 60 s of the previous answer, or the
//!   connection is closed (hyper's `header_read_timeout`, which restarts after every answer):
//!   the idle keep-alive deadline, which also bounds a half-sent head from a token holder.
//!
//! How many connections may be open, pending or authenticated: [`ApiListener`]. The token
//! check that moves a connection from pending to authenticated is `api::auth::require_bearer`,
//! told through the [`ConnectionAuth`] this file puts into every request's extensions. Without
//! the token check's answer the connection stays pending (and its deadline runs): the dashboard
//! page and 401s do not make a connection authenticated.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::listener::{Accepted, ApiListener};
use super::metrics::API_CONNECTIONS_CLOSED_TOTAL;
use super::peer_api::POOL_IDLE_TIMEOUT;
use crate::api::auth::ConnectionAuth;

/// How long a new connection may take to send a request with a valid token.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection with a token may stay idle (or take over a request head) after an
/// answer.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);

// The node's own clients of the API (other members', `dovetail bench`'s) drop idle connections
// before a node would close them: after an answer, and before a first request (a pooled
// connection that was opened for a request another connection served is idle from the start).
const _: () = assert!(POOL_IDLE_TIMEOUT.as_secs() * 2 <= KEEP_ALIVE_TIMEOUT.as_secs());
const _: () = assert!(POOL_IDLE_TIMEOUT.as_secs() * 2 <= FIRST_REQUEST_TIMEOUT.as_secs());

/// The API's connection deadlines (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub first_request: Duration,
    pub keep_alive: Duration,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines {
            first_request: FIRST_REQUEST_TIMEOUT,
            keep_alive: KEEP_ALIVE_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener`'s connections (TLS first if `tls`) until `shutdown` resolves,
/// then drains: accepts no more connections, lets the requests in flight finish (each
/// connection closes after its answer; an idle one at once) and returns once every connection
/// is closed.
pub async fn serve_api(
    listener: ApiListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
) {
    // Told to every connection at shutdown.
    let (stop, stopped) = watch::channel(false);
    // Held by every connection's task: `closed` resolves once all have ended.
    let (all_closed, open) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let task = serve_connection(accepted, tls.clone(), app.clone(), deadlines, stopped.clone());
                let open = open.clone();
                tokio::spawn(async move {
                    task.await;
                    drop(open);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    all_closed.closed().await;
}

/// Serves one connection until it closes, its deadline passes, it is evicted, or the node
/// shuts down (then it finishes the request in flight first).
async fn serve_connection(
    accepted: Accepted,
    tls: Option<TlsAcceptor>,
    app: Router,
    deadlines: Deadlines,
    mut stopped: watch::Receiver<bool>,
) {
    let Accepted {
        stream,
        addr,
        connection,
    } = accepted;
    let first_request_deadline = connection.accepted + deadlines.first_request;
    let closed_at_deadline = || {
        metrics::counter!(API_CONNECTIONS_CLOSED_TOTAL, "reason" => "first_request_deadline").increment(1);
        tracing::debug!(%addr, "closed an API connection: no request with a valid token in time");
    };
    let stream = match tls {
        None => stream,
        Some(acceptor) => tokio::select! {
            handshake = stream.start_tls(&acceptor) => match handshake {
                Ok(stream) => stream,
                Err(e) => return tracing::debug!(%addr, error = %e, "TLS handshake failed"),
            },
            () = tokio::time::sleep_until(first_request_deadline) => return closed_at_deadline(),
            () = connection.evicted() => return,
            _ = stopped.wait_for(|stop| *stop) => return,
        },
    };
    // Every request of the connection carries it, for the token check to report to.
    let app = app.layer(axum::Extension(ConnectionAuth(connection.clone())));
    let service = TowerToHyperService::new(app);
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.keep_alive)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut served = std::pin::pin!(served);
    // Whether the first-request deadline still applies (until the connection authenticates).
    let mut pending = true;
    let mut draining = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        metrics::counter!(API_CONNECTIONS_CLOSED_TOTAL, "reason" => "idle_deadline").increment(1);
                    }
                    tracing::debug!(%addr, error = %e, "API connection ended");
                }
                return;
            }
            () = tokio::time::sleep_until(first_request_deadline), if pending => {
                if connection.is_authenticated() {
                    pending = false;
                } else {
                    return closed_at_deadline();
                }
            }
            // Eviction only ever happens to a pending connection.
            () = connection.evicted(), if pending => return,
            _ = stopped.wait_for(|stop| *stop), if !draining => {
                draining = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::rustls;

    use super::*;
    use crate::api::auth::{require_bearer, BearerToken};
    use crate::node::listener::{tls_acceptor, ConnectionBudget, TlsConfigError};

    const TOKEN: &str = "client-token-0123456789";

    /// A node's API in miniature: `/x` behind the token, `/` public.
    fn app() -> Router {
        let protected = require_bearer(
            Router::new().route("/x", axum::routing::get(|| async { "ok" })),
            BearerToken::new("client", TOKEN),
        );
        protected.merge(Router::new().route("/", axum::routing::get(|| async { "page" })))
    }

    /// Serves `app()` on a fresh port with these budgets and deadlines; returns its address.
    async fn serve(
        budget: ConnectionBudget,
        deadlines: Deadlines,
        tls: Option<TlsAcceptor>,
    ) -> std::net::SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = ApiListener::new(tcp, budget).unwrap();
        let addr = listener.local_addr();
        tokio::spawn(serve_api(listener, tls, app(), deadlines, std::future::pending()));
        addr
    }

    const REQUEST: &[u8] =
        b"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer client-token-0123456789\r\n\r\n";

    /// Sends one request on `stream` (keep-alive) and reads its answer's status line and body.
    async fn ask(stream: &mut TcpStream, request: &[u8]) -> String {
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.ends_with(b"ok") && !answer.ends_with(b"}") && !answer.ends_with(b"page") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Whether the server closes `stream` within `limit` (reads until EOF or a reset).
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let read = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(limit, read).await.is_ok()
    }

    /// With room for two pending connections, eight silent sockets cannot keep a client with
    /// a token out: each newcomer closes the oldest silent one, the client is answered at once,
    /// and its kept-alive connection, now authenticated, is never closed for room.
    #[tokio::test]
    async fn silent_sockets_make_room_for_a_client() {
        let addr = serve(
            ConnectionBudget {
                max_authenticated: 4,
                max_pending: 2,
            },
            Deadlines::default(),
            None,
        )
        .await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert!(ask(&mut client, REQUEST).await.starts_with("HTTP/1.1 200"));
        let mut silent = Vec::new();
        for _ in 0..8 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        let started = Instant::now();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let answer = ask(&mut second, REQUEST).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The first client's connection is still open and served.
        assert!(ask(&mut client, REQUEST).await.starts_with("HTTP/1.1 200"));
        // At most two silent sockets are still open: the others were closed to make room.
        let mut open = 0;
        for socket in &mut silent {
            if !closed_within(socket, Duration::from_millis(200)).await {
                open += 1;
            }
        }
        assert!(open <= 2, "{open} silent sockets still open");
    }

    /// Pending connections that are sending keep their places against a newcomer for
    /// `SLOW_HEAD_AGE` (a burst of real clients is not cut off), then the oldest gives its place:
    /// half-sent heads cannot keep a client out for longer than that.
    #[tokio::test]
    async fn slow_heads_give_way_after_a_second() {
        let addr = serve(
            ConnectionBudget {
                max_authenticated: 4,
                max_pending: 2,
            },
            Deadlines::default(),
            None,
        )
        .await;
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            socket.write_all(b"GET /x HTTP/1.1\r\nHo").await.unwrap();
            slow.push(socket);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let answer = ask(&mut client, REQUEST).await;
        let waited = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            waited >= Duration::from_millis(500),
            "a sending connection gave way at once: {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(
            closed_within(&mut slow[0], Duration::from_secs(5)).await,
            "the oldest slow head is still open"
        );
    }

    /// A connection that sends only half a request head, or nothing, is closed at the
    /// first-request deadline; so is one whose requests carry no token. A connection with a
    /// token is closed once idle past the keep-alive deadline.
    #[tokio::test]
    async fn deadlines_close_slow_and_idle_connections() {
        let deadlines = Deadlines {
            first_request: Duration::from_millis(500),
            keep_alive: Duration::from_secs(3),
        };
        let addr = serve(
            ConnectionBudget {
                max_authenticated: 4,
                max_pending: 8,
            },
            deadlines,
            None,
        )
        .await;
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nAuthori")
            .await
            .unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut public = TcpStream::connect(addr).await.unwrap();
        assert!(ask(&mut public, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .ends_with("page"));
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert!(ask(&mut client, REQUEST).await.starts_with("HTTP/1.1 200"));
        let started = Instant::now();
        for (what, socket) in [
            ("half a head", &mut half),
            ("nothing", &mut silent),
            ("no token", &mut public),
        ] {
            assert!(
                closed_within(socket, Duration::from_secs(10)).await,
                "{what}: not closed"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The client past the first-request deadline is still served, and closed once idle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(ask(&mut client, REQUEST).await.starts_with("HTTP/1.1 200"));
        let idle = Instant::now();
        assert!(
            closed_within(&mut client, Duration::from_secs(10)).await,
            "idle: not closed"
        );
        assert!(idle.elapsed() >= Duration::from_secs(2), "{:?}", idle.elapsed());
    }

    /// With every place for connections with a token taken, one more connection's request
    /// with a token is refused 429 `busy` and the connection closed; once a place frees, a new
    /// connection is served.
    #[tokio::test]
    async fn a_connection_beyond_max_connections_is_refused() {
        let addr = serve(
            ConnectionBudget {
                max_authenticated: 1,
                max_pending: 4,
            },
            Deadlines::default(),
            None,
        )
        .await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(ask(&mut first, REQUEST).await.starts_with("HTTP/1.1 200"));
        let mut second = TcpStream::connect(addr).await.unwrap();
        let answer = ask(&mut second, REQUEST).await;
        assert!(
            answer.starts_with("HTTP/1.1 429") && answer.contains("\"busy\""),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(closed_within(&mut second, Duration::from_secs(5)).await);
        drop(first);
        let served = async {
            loop {
                let mut third = TcpStream::connect(addr).await.unwrap();
                if ask(&mut third, REQUEST).await.starts_with("HTTP/1.1 200") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .unwrap();
    }

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
        let budget = ConnectionBudget {
            max_authenticated: 8,
            max_pending: 8,
        };
        let addr = serve(budget, Deadlines::default(), Some(acceptor)).await;

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
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("page"),
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
}
