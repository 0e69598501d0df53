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
//!
//! # Layout
//! - [`command`]: the control commands and the [`Settings`] they change.
//! - [`state`]: [`Proxy`], the shared state of one proxy process; [`Proxy::apply`] carries out a
//!   command.
//! - `pipe`: one proxied connection, two ordered and delayed pipes, and the resets.
//! - [`server`]: the process: [`run`], a listener per [`Route`], the control port.

pub mod command;
mod pipe;
pub mod server;
pub mod state;
#[cfg(test)]
mod tests;

pub use command::{Admit, Command, CommandError, Delay, Direction, Settings};
pub use server::{run, serve_control, serve_route, Route};
pub use state::Proxy;

/// The control port in each namespace; node j's route listens on `PORT_BASE + j`.
pub const PORT_BASE: u16 = 8100;
