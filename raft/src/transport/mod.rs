//! The peer transport: one authenticated TCP connection per peer pair and direction carries
//! the Raft RPCs of every group, plus Dovetail's own forwarding RPCs.
//!
//! # Layout
//! - [`auth`]: the handshake proving knowledge of the cluster secret (HMAC-SHA256, both ways).
//! - [`tls`]: [`PeerTls`], optional mutual TLS beneath that handshake, and [`PeerStream`], a
//!   connection either plain or TLS.
//! - [`wire`]: frames (`u32` LE length + bincode 2) and the request/response messages.
//! - [`call_error`]: [`CallError`], why a call to a peer failed.
//! - [`connection`]: one pipelined client connection (writer task, reader task, request ids)
//!   and [`connection::Peer`], which reconnects with backoff.
//! - [`router`]: [`Router`], the outgoing side shared by all groups: one connection per peer.
//! - [`group_network`]: [`GroupNetwork`], a group's `RaftNetworkFactory`, and openraft-multi's
//!   `GroupRouter` for the [`Router`], which its adapters send through.
//! - [`snapshot`]: snapshot streaming on a connection of its own, CRC per chunk.
//! - [`server`]: the accept loop and dispatch to a [`Handler`].
//! - [`handler`]: [`Handler`], what the server dispatches to (the node's groups).
//!
//! Reading order: `wire`, `auth`, `connection`, `router`, `group_network`, `handler`, `server`,
//! `snapshot`.

pub mod auth;
pub mod call_error;
pub mod connection;
pub mod group_network;
pub mod handler;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod wire;

pub use auth::ClusterSecret;
pub use call_error::CallError;
pub use group_network::GroupNetwork;
pub use handler::Handler;
pub use router::Router;
pub use server::serve;
pub use tls::{PeerStream, PeerTls, PeerTlsError, PeerTlsFiles};
pub use wire::{AdminRequest, ForwardReply, ReadIndexReply, RemoteError};

/// How long data sent on a peer connection may stay unacknowledged before the kernel gives the
/// connection up (`TCP_USER_TIMEOUT`). Without it, a connection that lived through a partition
/// stays in exponential retransmission backoff after the network heals, and requests on it
/// stall for seconds; with it, the connection fails, and the next request reconnects at once.
pub const PEER_TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Sets the socket options of every peer connection: no Nagle delay, and
/// [`PEER_TCP_USER_TIMEOUT`].
pub(crate) fn tune_peer_socket(tcp: &tokio::net::TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(PEER_TCP_USER_TIMEOUT))
}
