//! LMTP (RFC 2033) on `--lmtp-listen`: an MTA hands a message to any node for one or more local
//! users. The body is spooled to an unnamed temporary file while it arrives, stored once per
//! group of the accepted recipients ([`MailService::store_body`]: on a majority of the group's
//! voters), then each recipient gets one `Op::Deliver` naming that body id, and one reply: 250
//! only once its entry is committed; no quorum, a busy leader or a shutdown → 451 (the MTA
//! retries; nothing was acknowledged, so nothing is lost).
//!
//! - [`session`]: one connection's command loop (parsing with `smtp-proto`, replies, DATA).
//! - [`config`], [`users`]: the listener's limits; the `UserDirectory` hook (every valid name, or `--passwd-file`'s users).
//! - [`metrics`]: sessions open, recipients by reply class.
//! - [`recipient`]: how `RCPT TO:<alice+Work@example.com>` maps to a user and a mailbox.

pub mod config;
pub mod metrics;
pub mod recipient;
pub mod session;
#[cfg(test)]
mod tests;
pub mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use self::config::LmtpConfig;
pub use self::users::{AllowAllUsers, Directory, UserDirectory};
use crate::service::MailService;

/// Accepts LMTP connections on `listener` until `shutdown` resolves; each session runs on its
/// own task. Sessions in flight when it returns are dropped with the task set: a delivery not
/// yet answered is retried by the MTA.
pub async fn serve<S: MailService, U: UserDirectory>(
    listener: TcpListener,
    service: Arc<S>,
    users: Arc<U>,
    config: LmtpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections));
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
                // Out of file descriptors, say: pause rather than spin.
                tracing::warn!(error = %e, "lmtp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Each recipient's reply after DATA is written as soon as it is known: with Nagle's
        // algorithm the second would wait for the MTA's delayed ACK of the first (40 ms).
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            sessions.spawn(async move {
                let _ = stream
                    .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                    .await;
            });
            continue;
        };
        let (service, users, config) = (service.clone(), users.clone(), config.clone());
        sessions.spawn(async move {
            let open = self::metrics::session_opened();
            let (reader, writer) = stream.into_split();
            let result = session::run(reader, writer, &*service, &*users, &config).await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "lmtp session ended");
            }
            drop(open);
            drop(permit);
        });
    }
}
