//! The connection handshake: both ends prove knowledge of the shared cluster secret before any
//! frame is exchanged.
//!
//! ```text
//! server -> client   "DVTL" | version (1) | server_nonce (32)
//! client -> server   kind (1) | node_id (u64 LE) | client_nonce (32) | HMAC(client proof) (32)
//! server -> client   HMAC(server proof) (32)                  (or the connection is closed)
//! ```
//! client proof = HMAC-SHA256(secret, "dovetail-peer-client-v1" | server_nonce | node_id | kind)
//! server proof = HMAC-SHA256(secret, "dovetail-peer-server-v1" | client_nonce | server_nonce)
//!
//! Proofs are compared in constant time (`Mac::verify_slice`). Fresh random nonces on both sides
//! keep a recorded handshake from being replayed to either end. The secret is never logged and
//! never sent. This authenticates peers; it does not encrypt the traffic.

use std::io;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::type_config::NodeId;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"DVTL";
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 32;
const PROOF_BYTES: usize = 32;

/// How long either side waits for the other's half of the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection will carry after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// Pipelined request/response frames for all groups.
    Rpc = 0,
    /// One snapshot transfer, then close.
    Snapshot = 1,
}

impl ConnectionKind {
    fn from_byte(byte: u8) -> Option<ConnectionKind> {
        match byte {
            0 => Some(ConnectionKind::Rpc),
            1 => Some(ConnectionKind::Snapshot),
            _ => None,
        }
    }
}

/// The shared cluster secret. `Debug` does not print it.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> ClusterSecret {
        ClusterSecret(secret.into())
    }

    fn mac(&self, label: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(label);
        mac
    }

    fn client_proof(&self, server_nonce: &[u8], node_id: NodeId, kind: u8) -> HmacSha256 {
        let mut mac = self.mac(b"dovetail-peer-client-v1");
        mac.update(server_nonce);
        mac.update(&node_id.to_le_bytes());
        mac.update(&[kind]);
        mac
    }

    fn server_proof(&self, client_nonce: &[u8], server_nonce: &[u8]) -> HmacSha256 {
        let mut mac = self.mac(b"dovetail-peer-server-v1");
        mac.update(client_nonce);
        mac.update(server_nonce);
        mac
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

fn nonce() -> io::Result<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(format!("random nonce: {e}")))?;
    Ok(nonce)
}

fn refused(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("peer handshake refused: {what}"),
    )
}

/// Client side: answers the server's challenge and checks the server's proof.
pub async fn client_handshake<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    node_id: NodeId,
    kind: ConnectionKind,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; 4 + 1 + NONCE_BYTES];
    stream.read_exact(&mut hello).await?;
    if &hello[..4] != MAGIC || hello[4] != VERSION {
        return Err(refused("not a dovetail peer port or unsupported version"));
    }
    let server_nonce = &hello[5..];
    let client_nonce = nonce()?;
    let proof = secret
        .client_proof(server_nonce, node_id, kind as u8)
        .finalize()
        .into_bytes();

    let mut answer = Vec::with_capacity(1 + 8 + NONCE_BYTES + PROOF_BYTES);
    answer.push(kind as u8);
    answer.extend_from_slice(&node_id.to_le_bytes());
    answer.extend_from_slice(&client_nonce);
    answer.extend_from_slice(&proof);
    stream.write_all(&answer).await?;
    stream.flush().await?;

    let mut server_proof = [0u8; PROOF_BYTES];
    stream
        .read_exact(&mut server_proof)
        .await
        .map_err(|_| refused("server closed the connection (wrong cluster secret?)"))?;
    secret
        .server_proof(&client_nonce, server_nonce)
        .verify_slice(&server_proof)
        .map_err(|_| refused("server failed to prove the cluster secret"))
}

/// Server side: challenges the client and, if its proof holds, proves itself. Returns the
/// client's node id and the kind of connection it asked for. On error the caller closes.
pub async fn server_handshake<S>(
    stream: &mut S,
    secret: &ClusterSecret,
) -> io::Result<(NodeId, ConnectionKind)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server_nonce = nonce()?;
    let mut hello = Vec::with_capacity(4 + 1 + NONCE_BYTES);
    hello.extend_from_slice(MAGIC);
    hello.push(VERSION);
    hello.extend_from_slice(&server_nonce);
    stream.write_all(&hello).await?;
    stream.flush().await?;

    let mut answer = [0u8; 1 + 8 + NONCE_BYTES + PROOF_BYTES];
    stream.read_exact(&mut answer).await?;
    let kind_byte = answer[0];
    let node_id = NodeId::from_le_bytes(answer[1..9].try_into().expect("8 bytes"));
    let client_nonce = &answer[9..9 + NONCE_BYTES];
    let proof = &answer[9 + NONCE_BYTES..];
    secret
        .client_proof(&server_nonce, node_id, kind_byte)
        .verify_slice(proof)
        .map_err(|_| refused(&format!("node {node_id} failed to prove the cluster secret")))?;
    let kind = ConnectionKind::from_byte(kind_byte).ok_or_else(|| refused("unknown connection kind"))?;

    let server_proof = secret
        .server_proof(client_nonce, &server_nonce)
        .finalize()
        .into_bytes();
    stream.write_all(&server_proof).await?;
    stream.flush().await?;
    Ok((node_id, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        client_secret: &str,
        server_secret: &str,
    ) -> (io::Result<()>, io::Result<(NodeId, ConnectionKind)>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let client_secret = ClusterSecret::new(client_secret);
        let server_secret = ClusterSecret::new(server_secret);
        let server = async move {
            let result = server_handshake(&mut server, &server_secret).await;
            drop(server); // closes the connection on failure, as the real server does
            result
        };
        let client = client_handshake(&mut client, &client_secret, 42, ConnectionKind::Snapshot);
        tokio::join!(client, server)
    }

    #[tokio::test]
    async fn matching_secrets_authenticate_both_ways() {
        let (client, server) = run("s3cret", "s3cret").await;
        client.unwrap();
        assert_eq!(server.unwrap(), (42, ConnectionKind::Snapshot));
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_ends() {
        let (client, server) = run("guess", "s3cret").await;
        assert_eq!(server.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(client.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(format!("{:?}", ClusterSecret::new("s3cret")), "ClusterSecret(..)");
    }
}
