//! What the `imap_session` and `lmtp_session` targets share: a one-node cluster in this process
//! (`api::start_cluster`) with a passwd-file, and one conversation with a session over an
//! in-memory stream (`tokio::io::duplex`): the input is what a client sends, one write per line;
//! the client closes its sending side when the input ends and reads until the server closes.
//!
//! A conversation is bounded ([`EXECUTION_LIMIT`]): the sessions' own idle timeouts are set far
//! longer, so a session that does not end once its client has closed (a hang) fails here, with
//! its input, instead of waiting for a timer.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::Duration;

use dovetail::node::mail_group::MailGroup;
use dovetail::node::replicated::ReplicatedNode;
use dovetail::users::{Cost, Users};
use dovetail_raft::RaftNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The user who can log in, and their password.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "fuzz-password";
/// A user who exists (mail is delivered to them) but cannot log in (no password).
pub const NO_LOGIN_USER: &str = "carol";
/// Largest message (IMAP literal, LMTP DATA) the sessions take.
pub const MAX_MESSAGE_BYTES: u64 = 256 * 1024;
/// How long one conversation may take, from the first byte sent to the server's close. Most
/// take a few milliseconds; the sessions' own timeouts ([`SESSION_TIMEOUT`]) are longer.
pub const EXECUTION_LIMIT: Duration = Duration::from_secs(5);
/// The sessions' idle, login and data timeouts: never reached while the client sends, and
/// longer than [`EXECUTION_LIMIT`], so that they never end a conversation.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// A node's state grows with what the sessions append and deliver: a fresh node replaces it
/// after this many conversations.
const CONVERSATIONS_PER_NODE: u64 = 300;
/// Output kept per conversation; beyond it the server's output is read and dropped.
pub const MAX_OUTPUT: usize = 2 << 20;
/// The in-memory stream's buffer in each direction.
const DUPLEX_BUFFER: usize = 64 * 1024;

/// A one-node cluster, its users, and a runtime to talk to it.
pub struct FrontNode {
    pub runtime: tokio::runtime::Runtime,
    raft: RaftNode<MailGroup>,
    pub service: Arc<ReplicatedNode>,
    pub users: Arc<Users>,
    /// LMTP's spool directory.
    pub spool: std::path::PathBuf,
    conversations: u64,
    _dir: tempfile::TempDir,
}

/// What the server wrote, and whether some of it was dropped ([`MAX_OUTPUT`]).
pub struct Transcript {
    pub output: Vec<u8>,
    pub truncated: bool,
}

impl FrontNode {
    fn start(prepare: fn(&FrontNode)) -> FrontNode {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = super::temp_dir();
        let cluster = runtime.block_on(async {
            let cluster = super::api::start_cluster(dir.path()).await;
            raise_encoding(&cluster.raft).await;
            cluster
        });
        // The cheapest ARGON2ID there is: a login costs microseconds, not a tenth of a second.
        let cost = Cost::Argon2id {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            version: 0x13,
        };
        let hash = dovetail::users::scheme::hash_password(PASSWORD.as_bytes(), cost).expect("a hash");
        let other = dovetail::users::scheme::hash_password(b"another-password", cost).expect("a hash");
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "{USER}:{}\nbob:{}\n{NO_LOGIN_USER}:\n",
                hash.to_field(),
                other.to_field()
            ),
        )
        .expect("the passwd-file");
        let users = Arc::new(Users::load(&passwd).expect("the passwd-file loads"));
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).expect("the spool directory");
        let node = FrontNode {
            runtime,
            raft: cluster.raft,
            service: cluster.node,
            users,
            spool,
            conversations: 0,
            _dir: dir,
        };
        prepare(&node);
        node
    }

    fn stop(self) {
        let _ = self.runtime.block_on(self.raft.shutdown());
    }

    /// Sends `input` to the session `serve` runs on the other end of an in-memory stream, one
    /// write per line (each up to and including its LF), then closes the sending side, and
    /// returns what the server wrote until it closed. Panics when that takes longer than
    /// [`EXECUTION_LIMIT`].
    pub fn converse<F, Fut>(&self, input: &[u8], serve: F) -> Transcript
    where
        F: FnOnce(DuplexStream) -> Fut,
        Fut: Future<Output = ()>,
    {
        let (client, server) = tokio::io::duplex(DUPLEX_BUFFER);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        self.runtime.block_on(async move {
            let send = async {
                for line in input.split_inclusive(|&b| b == b'\n') {
                    // The server may close first (LOGOUT, QUIT): the rest is not sent.
                    if to_server.write_all(line).await.is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown().await;
            };
            let receive = async {
                let mut transcript = Transcript {
                    output: Vec::new(),
                    truncated: false,
                };
                let mut chunk = vec![0; 16 * 1024];
                loop {
                    match from_server.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if transcript.output.len() + n <= MAX_OUTPUT {
                                transcript.output.extend_from_slice(&chunk[..n]);
                            } else {
                                transcript.truncated = true;
                            }
                        }
                    }
                }
                transcript
            };
            let conversation = async {
                let ((), transcript, ()) = tokio::join!(send, receive, serve(server));
                transcript
            };
            match tokio::time::timeout(EXECUTION_LIMIT, conversation).await {
                Ok(transcript) => transcript,
                Err(_) => panic!(
                    "the session did not end within {EXECUTION_LIMIT:?} (its client sends {} bytes, then closes)",
                    input.len()
                ),
            }
        })
    }
}

/// Raises the group's log encoding to the current one, as the encoding gate of a node would
/// (`node::encoding_gate`): LMTP's deliveries and IMAP's APPEND need encoding 3, COPY and MOVE 4.
async fn raise_encoding(raft: &RaftNode<MailGroup>) {
    use dovetail::txn::encoding::{encode_entry, CURRENT_ENCODING};
    let txn = dovetail::txn::Txn {
        client_id: format!(
            "{}1-encoding",
            dovetail::state_machine::manifest::ANONYMOUS_CLIENT_PREFIX
        ),
        request_seq: u64::from(CURRENT_ENCODING),
        op: dovetail::txn::Op::SetEncoding {
            version: CURRENT_ENCODING,
        },
    };
    let entry = encode_entry(&txn, CURRENT_ENCODING).expect("SetEncoding encodes");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    raft.propose(0, entry, deadline)
        .await
        .expect("the encoding is raised");
}

/// Runs `f` with the node of `cell`, started (and prepared by `prepare`) when there is none or
/// the one there has served its share of conversations.
pub fn with_node<R>(
    cell: &'static LocalKey<RefCell<Option<FrontNode>>>,
    prepare: fn(&FrontNode),
    f: impl FnOnce(&FrontNode) -> R,
) -> R {
    cell.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell
            .as_ref()
            .is_some_and(|node| node.conversations >= CONVERSATIONS_PER_NODE)
        {
            super::setup(|| cell.take().expect("a node").stop());
        }
        let node = cell.get_or_insert_with(|| super::setup(|| FrontNode::start(prepare)));
        node.conversations += 1;
        f(node)
    })
}

/// `output` for an error message: its first `max` bytes, escaped.
pub fn excerpt(output: &[u8], max: usize) -> String {
    let cut = &output[..output.len().min(max)];
    let mut text = String::from_utf8_lossy(cut).escape_debug().to_string();
    if output.len() > max {
        text.push_str("...");
    }
    text
}
