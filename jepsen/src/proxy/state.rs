//! [`Proxy`]: the shared state of one proxy process (its settings, the `drop` counter that
//! resets connections, the counters `status` reports), and how a command changes it. Every route
//! and the control port use one `Proxy`; each connection reads it (see `pipe`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::command::{Admit, Command, Direction, Settings};

/// Counters reported by `status`.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) accepted: AtomicU64,
    pub(super) forwarded: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) blackholed: AtomicU64,
    pub(super) upstream_failures: AtomicU64,
    pub(super) reset_by_drop: AtomicU64,
    pub(super) active: AtomicU64,
}

/// The shared state of one proxy process: every route and the control port use it.
#[derive(Debug)]
pub struct Proxy {
    pub(super) settings: watch::Sender<Settings>,
    /// Bumped by `drop`: every connection watching it resets itself.
    pub(super) resets: watch::Sender<u64>,
    /// Bumped by every refuse/blackhole/clean, so a timed one ends only if nothing came since.
    admit_epoch: AtomicU64,
    pub(super) counters: Counters,
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
}
