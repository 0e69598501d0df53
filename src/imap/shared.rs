//! `Shared`: what every IMAP session of a node shares — the mail service, the users, the
//! login limiter, the limits, the certificate, the connection permits, the MIME item cache.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::config::ImapConfig;
use super::mime_cache::{MimeCache, MIME_CACHE_BYTES};
use crate::users::{LimiterConfig, LoginLimiter, Users};

/// What every session of a node shares.
pub struct Shared<S> {
    pub service: Arc<S>,
    /// The passwd-file's users; `None` when the node has none (every login is refused).
    pub users: Option<Arc<Users>>,
    /// Failed logins per remote address (bounded: `LimiterConfig::max_addresses`).
    pub limiter: Mutex<LoginLimiter>,
    pub config: ImapConfig,
    /// The node's certificate (`--tls-cert`), for STARTTLS and `--imaps-listen`.
    pub tls: Option<TlsAcceptor>,
    /// One per open session, over both listeners (`ImapConfig::max_connections`).
    pub permits: Arc<Semaphore>,
    /// ENVELOPE, BODYSTRUCTURE and BODY by body id, for every session of the node
    /// ([`MIME_CACHE_BYTES`]).
    pub mime_cache: MimeCache,
}

impl<S> Shared<S> {
    pub fn new(
        service: Arc<S>,
        users: Option<Arc<Users>>,
        config: ImapConfig,
        tls: Option<TlsAcceptor>,
    ) -> Shared<S> {
        Shared {
            permits: Arc::new(Semaphore::new(config.max_connections)),
            service,
            users,
            limiter: Mutex::new(LoginLimiter::new(LimiterConfig::default())),
            config,
            tls,
            mime_cache: MimeCache::new(MIME_CACHE_BYTES),
        }
    }
}
