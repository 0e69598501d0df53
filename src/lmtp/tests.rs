//! The LMTP session against a local, unreplicated service: sequence errors, pipelining (several
//! commands in one write, answered in order), dot-unstuffing, SIZE, one body stored once for
//! every recipient, INBOX created at the first delivery, `user+Folder`, and a 451 (nothing
//! delivered) when the body cannot reach a majority.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{session, AllowAllUsers, LmtpConfig, UserDirectory};
use crate::bodies::BodyId;
use crate::index::LogPosition;
use crate::service::{DeliveryBody, MailService, ReadAck, ReadOptions, ServiceError, StoredBody, WriteAck};
use crate::state_machine::GroupStateMachine;
use crate::txn::{Op, Outcome, Txn};

/// One group applied in place; bodies kept in memory.
struct LocalService {
    group: Mutex<(GroupStateMachine, u64)>,
    bodies: Mutex<Vec<(BodyId, Vec<u8>)>>,
    store_calls: AtomicU64,
    writes: Mutex<Vec<Op>>,
    unavailable: AtomicBool,
    _dir: tempfile::TempDir,
}

impl LocalService {
    /// At the current log encoding, as a cluster's groups are once their gate has raised it.
    fn new() -> LocalService {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = GroupStateMachine::open(&dir.path().join("g0")).unwrap();
        let set = Txn {
            client_id: "gate".into(),
            request_seq: 1,
            op: Op::SetEncoding {
                version: crate::txn::encoding::CURRENT_ENCODING,
            },
        };
        machine.apply(LogPosition::new(1, 1), &set).unwrap().unwrap();
        LocalService {
            group: Mutex::new((machine, 1)),
            bodies: Mutex::new(Vec::new()),
            store_calls: AtomicU64::new(0),
            writes: Mutex::new(Vec::new()),
            unavailable: AtomicBool::new(false),
            _dir: dir,
        }
    }

    fn delivered(&self) -> Vec<(String, String, Vec<u8>)> {
        let bodies = self.bodies.lock().unwrap();
        self.writes
            .lock()
            .unwrap()
            .iter()
            .filter_map(|op| match op {
                Op::Deliver {
                    user,
                    mailbox,
                    bodies: ids,
                    ..
                } => {
                    let bytes = bodies.iter().find(|(id, _)| id.0 == ids[0]).unwrap().1.clone();
                    Some((user.clone(), mailbox.clone(), bytes))
                }
                _ => None,
            })
            .collect()
    }
}

impl MailService for LocalService {
    fn node_id(&self) -> u64 {
        1
    }

    fn max_message_bytes(&self) -> u64 {
        1000
    }

    async fn store_body<B: DeliveryBody>(&self, _user: &str, body: B) -> Result<StoredBody, ServiceError> {
        self.store_calls.fetch_add(1, Ordering::SeqCst);
        let bytes = body.collect().await.map_err(|e| ServiceError::BadBody {
            reason: e.to_string(),
        })?;
        let bytes = bytes.to_bytes().to_vec();
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(ServiceError::Unavailable {
                reason: "test: no quorum".to_string(),
            });
        }
        let id = BodyId::of(&bytes);
        let size = bytes.len() as u64;
        self.bodies.lock().unwrap().push((id, bytes));
        Ok(StoredBody { id, size })
    }

    async fn write(&self, txn: Txn) -> Result<WriteAck, ServiceError> {
        let mut guard = self.group.lock().unwrap();
        guard.1 += 1;
        let position = LogPosition::new(1, guard.1);
        let outcome = guard.0.apply(position, &txn).unwrap().unwrap();
        // Refused writes (a delivery before INBOX exists) changed nothing: not recorded.
        if !matches!(outcome, Outcome::Rejected(_)) {
            self.writes.lock().unwrap().push(txn.op);
        }
        Ok(WriteAck {
            group: 0,
            position,
            outcome,
        })
    }

    async fn read<R, F>(
        &self,
        _user: &str,
        _options: ReadOptions,
        read: F,
    ) -> Result<ReadAck<R>, ServiceError>
    where
        R: Send + 'static,
        F: FnOnce(&GroupStateMachine) -> R + Send + 'static,
    {
        let guard = self.group.lock().unwrap();
        Ok(ReadAck {
            group: 0,
            applied: guard.0.applied(),
            value: read(&guard.0),
        })
    }
}

/// Only `alice` and `bob` exist.
struct TwoUsers;

impl UserDirectory for TwoUsers {
    fn exists(&self, user: &str) -> bool {
        user == "alice" || user == "bob"
    }
}

fn config(dir: &std::path::Path) -> LmtpConfig {
    LmtpConfig {
        command_timeout: Duration::from_millis(300),
        data_timeout: Duration::from_millis(300),
        ..LmtpConfig::new(1000, dir.to_path_buf())
    }
}

/// Runs a session, sends `writes` one after the other (each one write), then closes the
/// client's side; the server's whole output.
async fn converse<U: UserDirectory>(service: &LocalService, users: &U, writes: &[&[u8]]) -> String {
    let spool = tempfile::tempdir().unwrap();
    let config = config(spool.path());
    let (client, server) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let server = session::run(server_read, server_write, service, users, &config);
    let client = async {
        for write in writes {
            client_write.write_all(write).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client_write.shutdown().await.unwrap();
        let mut out = String::new();
        client_read.read_to_string(&mut out).await.unwrap();
        out
    };
    let (result, out) = tokio::join!(server, client);
    result.unwrap();
    out
}

/// The reply lines' codes, the greeting's included.
fn codes(out: &str) -> Vec<&str> {
    out.lines().map(|l| &l[..3]).collect()
}

#[tokio::test]
async fn sequence_errors_and_unknown_commands_keep_the_session() {
    let s = LocalService::new();
    let out = converse(
        &s,
        &AllowAllUsers,
        &[
            b"MAIL FROM:<a@b>\r\n",
            b"HELO x\r\n",
            b"LHLO mta\r\n",
            b"RCPT TO:<alice@x>\r\n",
            b"DATA\r\n",
            b"MAIL FROM:<a@b>\r\n",
            b"MAIL FROM:<a@b>\r\n",
            b"DATA\r\n",
            b"RCPT TO:<>\r\n",
            b"RCPT TO alice\r\n",
            b"FROB\r\n",
            b"VRFY alice\r\n",
            b"NOOP\r\n",
            b"RSET\r\n",
            b"RCPT TO:<alice@x>\r\n",
            b"QUIT\r\n",
        ],
    )
    .await;
    assert_eq!(
        codes(&out),
        [
            "220", "503", "500", "250", "250", "250", "250", "250", "503", "503", "250", "503", "503", "550",
            "501", "500", "252", "250", "250", "503", "221"
        ],
        "{out}"
    );
    assert!(out.contains("250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 1000\r\n"));
    assert!(out.contains("500 5.5.1"), "{out}");
    assert!(s.writes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn pipelined_transaction_delivers_unstuffed_body_once_for_every_recipient() {
    let s = LocalService::new();
    // Everything in one write, pipelined: replies come in order, one per recipient after DATA.
    let session: &[u8] = b"LHLO mta\r\nMAIL FROM:<> SIZE=60\r\nRCPT TO:<alice@x>\r\nRCPT TO:<nobody@x>\r\n\
RCPT TO:<bob+Work@x>\r\nDATA\r\nSubject: t\r\n\r\n..leading dot\r\n..\r\n...\r\nend\r\n.\r\nNOOP\r\nQUIT\r\n";
    let out = converse(&s, &TwoUsers, &[session]).await;
    assert_eq!(
        codes(&out),
        [
            "220", "250", "250", "250", "250", "250", "250", "250", "550", "250", "354", "250", "250", "250",
            "221"
        ],
        "{out}"
    );
    assert!(out.contains("550 5.1.1 <nobody@x> No such user"), "{out}");
    assert!(out.contains("<bob+Work@x> Delivered to INBOX"), "{out}");
    let body = b"Subject: t\r\n\r\n.leading dot\r\n.\r\n..\r\nend\r\n".to_vec();
    let delivered = s.delivered();
    assert_eq!(
        delivered,
        [
            ("alice".to_string(), "INBOX".to_string(), body.clone()),
            ("bob".to_string(), "INBOX".to_string(), body)
        ]
    );
    assert_eq!(s.store_calls.load(Ordering::SeqCst), 1, "one body for one group");
    // Each user's INBOX was created by their first delivery.
    let creates = s
        .writes
        .lock()
        .unwrap()
        .iter()
        .filter(|op| matches!(op, Op::CreateMailbox { .. }))
        .count();
    assert_eq!(creates, 2);
}

#[tokio::test]
async fn folder_detail_and_data_split_across_writes() {
    let s = LocalService::new();
    let out = converse(
        &s,
        &AllowAllUsers,
        &[
            b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<carol@x>\r\nDATA\r\n",
            b"one\r\n.\r\n",
        ],
    )
    .await;
    assert!(out.ends_with("Delivered to INBOX\r\n"), "{out}");
    s.write(Txn {
        client_id: "t".into(),
        request_seq: 1,
        op: Op::CreateMailbox {
            user: "carol".into(),
            mailbox: "Work".into(),
            mailbox_guid: [7; 16],
            uid_validity: 1,
        },
    })
    .await
    .unwrap();
    // The final CRLF.CRLF cut at every place between writes.
    let writes: [&[u8]; 5] = [
        b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<carol+Work@x>\r\nDATA\r\ntwo\r",
        b"\n",
        b".",
        b"\r",
        b"\n",
    ];
    let out = converse(&s, &AllowAllUsers, &writes).await;
    assert!(out.ends_with("<carol+Work@x> Delivered to Work\r\n"), "{out}");
    let delivered = s.delivered();
    assert_eq!(
        delivered[0],
        ("carol".into(), "INBOX".into(), b"one\r\n".to_vec())
    );
    assert_eq!(delivered[1], ("carol".into(), "Work".into(), b"two\r\n".to_vec()));
}

#[tokio::test]
async fn size_is_checked_at_mail_and_during_data() {
    let s = LocalService::new();
    let big = format!("LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n{}\r\n.\r\nMAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> SIZE=1000\r\n", "x".repeat(1200));
    let out = converse(&s, &AllowAllUsers, &[big.as_bytes()]).await;
    assert_eq!(
        codes(&out),
        ["220", "250", "250", "250", "250", "250", "250", "250", "250", "354", "552", "552", "552", "250"],
        "{out}"
    );
    assert!(out.contains("552 5.3.4"), "{out}");
    assert_eq!(s.store_calls.load(Ordering::SeqCst), 0);
    assert!(s.writes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn no_quorum_answers_451_and_delivers_nothing() {
    let s = LocalService::new();
    s.unavailable.store(true, Ordering::SeqCst);
    let out = converse(
        &s,
        &AllowAllUsers,
        &[b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"],
    )
    .await;
    assert_eq!(out.matches("451 4.4.3").count(), 2, "{out}");
    assert!(s.writes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn long_lines_and_idle_sessions() {
    let s = LocalService::new();
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(5000));
    let out = converse(&s, &AllowAllUsers, &[long.as_bytes()]).await;
    assert_eq!(codes(&out), ["220", "500", "250"], "{out}");
    // Idle past the command timeout: 421 and the server closes.
    let spool = tempfile::tempdir().unwrap();
    let config = config(spool.path());
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(server);
    let server = session::run(r, w, &s, &AllowAllUsers, &config);
    let client = async {
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        out
    };
    let (result, out) = tokio::join!(server, client);
    result.unwrap();
    assert!(
        out.ends_with("421 4.4.2 Idle too long, closing connection\r\n"),
        "{out}"
    );
}
