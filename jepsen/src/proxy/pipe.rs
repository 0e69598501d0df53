//! One proxied connection: two pipes (up: node → peer, down: peer → node), each a queue of
//! chunks stamped with the time they may be written, so latency delays bytes without reordering
//! them. A `drop` (the proxy's reset counter), an error on either side, or a failed upstream
//! connect resets both sockets; an orderly close is passed on as an orderly close.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::command::{Admit, Direction};
use super::state::Proxy;

/// How long the proxy waits for its upstream connection before resetting the node's side.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The nodes' own `TCP_USER_TIMEOUT` on peer sockets (raft `PEER_TCP_USER_TIMEOUT`).
const USER_TIMEOUT: Duration = Duration::from_secs(3);
/// Chunks a pipe holds before it stops reading (back-pressure on the sender).
const MAX_QUEUED: usize = 4096;
const CHUNK: usize = 16 * 1024;

/// Resets a socket: `SO_LINGER` 0, so closing it sends RST instead of FIN.
pub(super) fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Forwards `client` to `target` until either side closes, a drop, or an error.
pub(super) async fn forward(proxy: &Arc<Proxy>, client: TcpStream, target: &str) {
    // Subscribed before connecting, so a drop during the connect resets this connection too.
    let resets = proxy.resets.subscribe();
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(upstream)) => upstream,
        _ => {
            proxy.counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
    };
    proxy.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = socket2::SockRef::from(&upstream).set_tcp_user_timeout(Some(USER_TIMEOUT));
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let kill = Arc::new(watch::Sender::new(false));
    let up = Pipe {
        proxy,
        direction: Direction::Up,
        resets: resets.clone(),
        kill: kill.clone(),
    };
    let down = Pipe {
        direction: Direction::Down,
        ..up.clone()
    };
    let (up_reset, down_reset) = tokio::join!(
        up.run(client_read, upstream_write),
        down.run(upstream_read, client_write)
    );
    if up_reset == Ended::ByDrop || down_reset == Ended::ByDrop {
        proxy.counters.reset_by_drop.fetch_add(1, Ordering::Relaxed);
    }
}

/// Holds a blackholed connection, reading and discarding, until the node gives up, a drop, or
/// the proxy stops blackholing; then resets it.
pub(super) async fn blackhole(proxy: &Arc<Proxy>, mut client: TcpStream) {
    let mut resets = proxy.resets.subscribe();
    let mut settings = proxy.settings.subscribe();
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            _ = resets.changed() => break,
            changed = settings.changed() => {
                if changed.is_err() || settings.borrow().admit != Admit::Blackhole {
                    break;
                }
            }
            n = client.read(&mut buf) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
    reset(&client);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The source closed and everything queued was written: passed on as a half-close.
    Closed,
    /// The other pipe failed, or a socket error: both sockets reset.
    Failed,
    /// A `drop` command: both sockets reset.
    ByDrop,
}

#[derive(Clone)]
struct Pipe<'a> {
    proxy: &'a Arc<Proxy>,
    direction: Direction,
    resets: watch::Receiver<u64>,
    /// Set by whichever pipe of the connection fails first; the other then resets too.
    kill: Arc<watch::Sender<bool>>,
}

impl Pipe<'_> {
    async fn run(mut self, mut source: OwnedReadHalf, mut sink: OwnedWriteHalf) -> Ended {
        let mut killed = self.kill.subscribe();
        let mut jitter = Jitter::new();
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; CHUNK];
        let mut eof = false;
        let ended = loop {
            if eof && queue.is_empty() {
                let _ = sink.shutdown().await;
                return Ended::Closed;
            }
            let due = queue.front().map(|(at, _)| *at);
            tokio::select! {
                biased;
                _ = self.resets.changed() => break Ended::ByDrop,
                _ = killed.changed() => break Ended::Failed,
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    let (_, bytes) = queue.pop_front().expect("due implies a queued chunk");
                    if sink.write_all(&bytes).await.is_err() {
                        break Ended::Failed;
                    }
                }
                read = source.read(&mut buf), if !eof && queue.len() < MAX_QUEUED => match read {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        let delay = self.proxy.settings().delay(self.direction);
                        let at = Instant::now() + jitter.sample(delay.ms, delay.jitter_ms);
                        // Never before an earlier chunk: the byte stream stays in order.
                        last_due = at.max(last_due);
                        queue.push_back((last_due, buf[..n].to_vec()));
                    }
                    Err(_) => break Ended::Failed,
                },
            }
        };
        self.kill.send_replace(true);
        // Both sockets: the other pipe may have ended already, with its halves.
        reset(source.as_ref());
        reset(sink.as_ref());
        // Without `forget`, dropping the write half would send a FIN before the RST.
        sink.forget();
        ended
    }
}

/// A small xorshift generator for jitter (nothing to replay: the nemesis schedule is seeded,
/// the exact delays of bytes are not).
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Jitter(nanos | 1)
    }

    fn sample(&mut self, ms: u64, jitter_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(ms + self.0 % (jitter_ms + 1))
    }
}
