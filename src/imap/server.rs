//! `ImapServer`: the IMAP listeners of a node — accept, the connection limit shared by both
//! listeners, implicit TLS on `--imaps-listen`, STARTTLS on `--imap-listen` — one task per
//! session.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::config::ImapConfig;
use super::metrics::session_opened;
use super::session::Session;
pub use super::shared::Shared;
use super::transport::Connection;
use crate::service::MailService;
use crate::users::Users;

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plaintext first; STARTTLS when the node has a certificate (`--imap-listen`).
    Plain,
    /// TLS from the first byte (`--imaps-listen`).
    ImplicitTls,
}

/// The IMAP side of a node; both listeners serve through one.
pub struct ImapServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ImapServer<S> {
    fn clone(&self) -> Self {
        ImapServer {
            shared: self.shared.clone(),
        }
    }
}

impl<S: MailService> ImapServer<S> {
    pub fn new(
        service: Arc<S>,
        users: Option<Arc<Users>>,
        config: ImapConfig,
        tls: Option<TlsAcceptor>,
    ) -> ImapServer<S> {
        ImapServer {
            shared: Arc::new(Shared::new(service, users, config, tls)),
        }
    }

    /// Accepts connections on `listener` until `shutdown` resolves; each session runs on its own
    /// task and is dropped when this returns.
    pub async fn serve(self, listener: TcpListener, kind: ListenerKind, shutdown: impl Future<Output = ()>) {
        let protocol = match kind {
            ListenerKind::Plain => "imap",
            ListenerKind::ImplicitTls => "imaps",
        };
        let mut sessions = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            };
            let (mut stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "imap accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = self.shared.permits.clone().try_acquire_owned() else {
                // At the bound: a plaintext BYE (over TLS the client would need a handshake
                // first, which is what the bound is there to spare).
                sessions.spawn(async move {
                    if kind == ListenerKind::Plain {
                        let _ = stream
                            .write_all(b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
                            .await;
                    }
                });
                continue;
            };
            let shared = self.shared.clone();
            sessions.spawn(async move {
                let conn = match kind {
                    ListenerKind::Plain => Connection::plain(stream),
                    ListenerKind::ImplicitTls => {
                        let acceptor = shared
                            .tls
                            .clone()
                            .expect("--imaps-listen needs --tls-cert (checked at start)");
                        let handshake =
                            tokio::time::timeout(shared.config.login_timeout, acceptor.accept(stream)).await;
                        match handshake {
                            Ok(Ok(tls)) => Connection::tls(tls),
                            _ => return,
                        }
                    }
                };
                let open = session_opened(protocol);
                Session::new(shared, peer, conn).run().await;
                drop(open);
                drop(permit);
            });
        }
    }
}
