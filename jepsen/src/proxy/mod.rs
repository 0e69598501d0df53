//! The TCP proxy behind the `latency` and `drop` nemeses (tc netem does not work on this
//! machine, so delays and broken connections are made in user space).
//!
//! `scripts/netns-cluster.sh up N --proxy` starts one proxy per node namespace
//! (`dovetail-jepsen proxy`, a hidden subcommand). In namespace i it listens, for every node j,
//! on `127.0.0.1:(8100+j)` and forwards to node j's peer listener `10.77.0.(10+j):7101`; every
//! node is told that peer j lives at `127.0.0.1:(8100+j)`, which names the local proxy in
//! whichever namespace the string is used. So each node's outgoing peer connections (requests
//! and their answers) pass through the proxy of its own namespace, and the iptables partitions
//! of `partition.sh` (in the receiving namespace, by source address) still apply to the proxy's
//! upstream connections unchanged.
//!
//! The proxy is steered through a control port, `127.0.0.1:8100` in its namespace: one command
//! line per connection, answered by one line, `ok ...` or `error ...` (`scripts/proxy.sh` is the
//! client). Commands ([`Command::parse`]):
//! - `latency up|down|both MS JITTER_MS`: every chunk of bytes read from then on is written
//!   `MS` + uniform `0..=JITTER_MS` milliseconds later, in order (a chunk never overtakes an
//!   earlier one, as TCP would reassemble them anyway). `up` is from the connecting node to its
//!   peer, `down` the answers.
//! - `drop`: resets (RST, via `SO_LINGER` 0) every current connection, both sides.
//! - `refuse [SECONDS]`, `blackhole [SECONDS]`: new connections are reset at once, or accepted
//!   and held without ever reaching the peer (the node's handshake times out); for SECONDS, or
//!   until `clean`. Connections already forwarded are left alone (pair with `drop`).
//! - `clean`: no latency, new connections forwarded again (held blackholed ones are reset).
//! - `status`: the settings and counters as JSON.
//!
//! Upstream sockets get the same `TCP_USER_TIMEOUT` as the nodes' own peer sockets, so a
//! connection that lived through a partition fails on the proxy's side and the proxy resets the
//! node's side, as the node would have seen without the proxy.

mod pipe;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The control port in each namespace; node j's route listens on `PORT_BASE + j`.
pub const PORT_BASE: u16 = 8100;

/// A delay added to forwarded bytes: `ms` plus uniform `0..=jitter_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Delay {
    pub ms: u64,
    pub jitter_ms: u64,
}

/// What happens to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Admit {
    /// Forwarded to the peer.
    #[default]
    Open,
    /// Reset at once.
    Refuse,
    /// Accepted and held; nothing reaches the peer, nothing comes back.
    Blackhole,
}

/// Which way of a connection a latency applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the connecting node to its peer.
    Up,
    /// From the peer back to the connecting node.
    Down,
    Both,
}

/// The proxy's current behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Settings {
    pub up: Delay,
    pub down: Delay,
    pub admit: Admit,
}

impl Settings {
    fn delay(&self, direction: Direction) -> Delay {
        match direction {
            Direction::Down => self.down,
            Direction::Up | Direction::Both => self.up,
        }
    }
}

/// One control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Latency { direction: Direction, delay: Delay },
    Drop,
    Admit { admit: Admit, for_s: Option<u64> },
    Clean,
    Status,
}

/// Upper bound of a latency or jitter, and of a timed refuse/blackhole.
const MAX_MS: u64 = 60_000;

impl Command {
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |w: &str, max: u64| -> Result<u64, String> {
            w.parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("'{w}' is not a number in 0..={max}"))
        };
        match words.as_slice() {
            ["latency", direction, ms, jitter_ms] => {
                let direction = match *direction {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    "both" => Direction::Both,
                    other => return Err(format!("direction '{other}' is not up, down or both")),
                };
                let delay = Delay {
                    ms: number(ms, MAX_MS)?,
                    jitter_ms: number(jitter_ms, MAX_MS)?,
                };
                Ok(Command::Latency { direction, delay })
            }
            ["drop"] => Ok(Command::Drop),
            [mode @ ("refuse" | "blackhole"), rest @ ..] if rest.len() <= 1 => Ok(Command::Admit {
                admit: if *mode == "refuse" {
                    Admit::Refuse
                } else {
                    Admit::Blackhole
                },
                for_s: rest.first().map(|s| number(s, MAX_MS / 1000)).transpose()?,
            }),
            ["clean"] => Ok(Command::Clean),
            ["status"] => Ok(Command::Status),
            _ => Err(format!(
                "unknown command '{}' (latency up|down|both MS JITTER_MS, drop, refuse [S], blackhole [S], clean, status)",
                line.trim()
            )),
        }
    }
}

/// Counters reported by `status`.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    blackholed: AtomicU64,
    upstream_failures: AtomicU64,
    reset_by_drop: AtomicU64,
    active: AtomicU64,
}

/// The shared state of one proxy process: every route and the control port use it.
#[derive(Debug)]
pub struct Proxy {
    settings: watch::Sender<Settings>,
    /// Bumped by `drop`: every connection watching it resets itself.
    resets: watch::Sender<u64>,
    /// Bumped by every refuse/blackhole/clean, so a timed one ends only if nothing came since.
    admit_epoch: AtomicU64,
    counters: Counters,
}

/// One listener's destination.
#[derive(Debug, Clone)]
pub struct Route {
    pub listen: SocketAddr,
    pub target: String,
}

impl Proxy {
    pub fn new() -> Arc<Proxy> {
        Arc::new(Proxy {
            settings: watch::Sender::new(Settings::default()),
            resets: watch::Sender::new(0),
            admit_epoch: AtomicU64::new(0),
            counters: Counters::default(),
        })
    }

    pub fn settings(&self) -> Settings {
        *self.settings.borrow()
    }

    /// Carries out `command`; returns the answer line (without the newline).
    pub fn apply(self: &Arc<Self>, command: Command) -> String {
        match command {
            Command::Latency { direction, delay } => {
                self.settings.send_modify(|s| match direction {
                    Direction::Up => s.up = delay,
                    Direction::Down => s.down = delay,
                    Direction::Both => (s.up, s.down) = (delay, delay),
                });
            }
            Command::Drop => {
                self.resets.send_modify(|n| *n += 1);
            }
            Command::Admit { admit, for_s } => {
                let epoch = self.admit_epoch.fetch_add(1, Ordering::SeqCst) + 1;
                self.settings.send_modify(|s| s.admit = admit);
                if let Some(seconds) = for_s {
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(seconds)).await;
                        if proxy.admit_epoch.load(Ordering::SeqCst) == epoch {
                            proxy.settings.send_modify(|s| s.admit = Admit::Open);
                        }
                    });
                }
            }
            Command::Clean => {
                self.admit_epoch.fetch_add(1, Ordering::SeqCst);
                self.settings.send_replace(Settings::default());
            }
            Command::Status => {
                let c = &self.counters;
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                return format!(
                    "ok {}",
                    json!({
                        "settings": self.settings(),
                        "accepted": load(&c.accepted),
                        "forwarded": load(&c.forwarded),
                        "refused": load(&c.refused),
                        "blackholed": load(&c.blackholed),
                        "upstream_failures": load(&c.upstream_failures),
                        "reset_by_drop": load(&c.reset_by_drop),
                        "active": load(&c.active),
                    })
                );
            }
        }
        "ok".into()
    }

    /// Accepts connections on `listener` and forwards each to `target` as the settings say.
    pub async fn serve_route(self: Arc<Self>, listener: TcpListener, target: String) {
        loop {
            let client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    eprintln!("proxy: accept on {:?}: {e}", listener.local_addr());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            let proxy = self.clone();
            let target = target.clone();
            tokio::spawn(async move {
                proxy.counters.active.fetch_add(1, Ordering::Relaxed);
                match proxy.settings().admit {
                    Admit::Open => pipe::forward(&proxy, client, &target).await,
                    Admit::Refuse => {
                        proxy.counters.refused.fetch_add(1, Ordering::Relaxed);
                        pipe::reset(&client);
                    }
                    Admit::Blackhole => {
                        proxy.counters.blackholed.fetch_add(1, Ordering::Relaxed);
                        pipe::blackhole(&proxy, client).await;
                    }
                }
                proxy.counters.active.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    /// Serves the control port: one command line per connection, one answer line.
    pub async fn serve_control(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let proxy = self.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), proxy.control(stream)).await;
            });
        }
    }

    async fn control(self: &Arc<Self>, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        let answer = match Command::parse(&line) {
            Ok(command) => {
                let answer = self.apply(command);
                eprintln!("proxy: {} -> {answer}", line.trim());
                answer
            }
            Err(e) => format!("error {e}"),
        };
        write.write_all(format!("{answer}\n").as_bytes()).await?;
        write.shutdown().await
    }
}

/// The proxy process: binds the control port and every route, then serves until killed.
pub async fn run(control: SocketAddr, routes: Vec<Route>) -> std::io::Result<()> {
    let proxy = Proxy::new();
    let control = TcpListener::bind(control).await?;
    let mut listeners = Vec::new();
    for route in routes {
        let listener = TcpListener::bind(route.listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {}: {e}", route.listen)))?;
        eprintln!("proxy: {} -> {}", route.listen, route.target);
        listeners.push((listener, route.target));
    }
    for (listener, target) in listeners {
        tokio::spawn(proxy.clone().serve_route(listener, target));
    }
    eprintln!("proxy: control on {}", control.local_addr()?);
    proxy.serve_control(control).await;
    Ok(())
}
