//! [`BodyId`], a body's name (128 bits of the SHA-256 of its bytes), and [`BodyError`], what can
//! go wrong with the store, its journal and its streams.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A body's name: the first 128 bits of the SHA-256 of its bytes.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct BodyId(pub [u8; 16]);

impl BodyId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> BodyId {
        BodyId::from_digest(&Sha256::digest(bytes))
    }

    pub(super) fn from_digest(digest: &[u8]) -> BodyId {
        BodyId(digest[..16].try_into().expect("a SHA-256 has 32 bytes"))
    }

    /// Lower-case hex, 32 characters.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex characters.
    pub fn parse(text: &str) -> Option<BodyId> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(BodyId(id))
    }
}

impl fmt::Debug for BodyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyId({})", self.hex())
    }
}

impl fmt::Display for BodyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{path}: I/O error while {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The body's bytes could not be read from where they came from (a client that went away,
    /// a peer's broken transfer); nothing was stored.
    #[error("reading the body: {source}")]
    Input {
        #[source]
        source: io::Error,
    },
    /// The body is larger than allowed; nothing was stored.
    #[error("the message is larger than {max} bytes")]
    TooLarge { max: u64 },
    /// The stored copy's bytes do not hash to its name: it was moved to `quarantine/`.
    #[error("body {id}: the stored copy is damaged (hashes to {actual}); moved aside")]
    Damaged { id: BodyId, actual: BodyId },
    /// Bytes received as body `expected` hash to another id: nothing was stored.
    #[error("body {expected}: the bytes received hash to {actual}")]
    Mismatch { expected: BodyId, actual: BodyId },
}

impl BodyError {
    pub(super) fn io(path: &Path, action: &'static str, source: io::Error) -> BodyError {
        BodyError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    /// Whether the failure is a full disk (a retry later may succeed).
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, BodyError::Io { source, .. } if crate::state_machine::error::is_out_of_space(source))
    }
}

/// The id of everything `input` yields.
pub fn hash_reader(input: &mut impl Read) -> io::Result<BodyId> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(BodyId::from_digest(&hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
