//! One LMTP connection: reads command lines (at most [`MAX_COMMAND_LINE`] bytes), parses them
//! with `smtp-proto`, answers in order (replies to pipelined commands are written together,
//! before the server waits for more input, RFC 2920), and runs DATA: the message is
//! dot-unstuffed (`smtp_proto::request::receiver::DataReceiver`) into an unnamed spool file,
//! bounded by `--max-message-bytes`, then delivered with one reply per accepted recipient.

use std::collections::BTreeMap;

use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{Error as ParseError, Request, MAIL_BODY_BINARYMIME};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::LmtpConfig;
use super::metrics::record_recipient;
use super::recipient::{parse_recipient, Recipient, INBOX};
use super::users::UserDirectory;
use crate::bodies::stream::file_body;
use crate::service::{
    deliver_op, now_seconds, random_guid, Consistency, MailService, ReadOptions, ServiceError, StoredBody,
};
use crate::state_machine::manifest::ANONYMOUS_CLIENT_PREFIX;
use crate::txn::{Op, Outcome, Rejection, Txn};

/// The longest command line taken, CRLF included (RFC 5321 §4.5.3.1.4 asks for 512; MAIL
/// parameters make real ones longer). A longer line is answered 500 5.5.2 and skipped.
pub const MAX_COMMAND_LINE: usize = 4096;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// How a command leaves the session.
enum Next {
    Continue,
    Data,
    Quit,
}

struct Session<'a, S, U> {
    service: &'a S,
    users: &'a U,
    config: &'a LmtpConfig,
    /// Received and not yet consumed (the start of the next command, or of DATA).
    input: Vec<u8>,
    /// Replies not yet written.
    output: Vec<u8>,
    greeted: bool,
    /// The reverse path of the transaction under way (`Some("")` for `<>`).
    sender: Option<String>,
    recipients: Vec<Recipient>,
}

/// Serves one LMTP connection until QUIT, the peer's close, or an idle timeout (421).
pub async fn run<R, W, S, U>(
    mut reader: R,
    mut writer: W,
    service: &S,
    users: &U,
    config: &LmtpConfig,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: MailService,
    U: UserDirectory,
{
    let mut session = Session {
        service,
        users,
        config,
        input: Vec::new(),
        output: Vec::new(),
        greeted: false,
        sender: None,
        recipients: Vec::new(),
    };
    session.reply(&format!("220 {} Dovetail LMTP ready", config.hostname));
    // Inside an over-long line: its rest, up to the next LF, is skipped.
    let mut skipping = false;
    loop {
        let Some(end) = session.input.iter().position(|&b| b == b'\n') else {
            if session.input.len() > MAX_COMMAND_LINE {
                session.input.clear();
                if !skipping {
                    session.reply("500 5.5.2 Line too long");
                }
                skipping = true;
            }
            if !session
                .read_more(&mut reader, &mut writer, config.command_timeout)
                .await?
            {
                return Ok(());
            }
            continue;
        };
        let line: Vec<u8> = session.input.drain(..=end).collect();
        if std::mem::take(&mut skipping) {
            continue;
        }
        if line.len() > MAX_COMMAND_LINE {
            session.reply("500 5.5.2 Line too long");
            continue;
        }
        match session.command(&line) {
            Next::Continue => {}
            Next::Quit => {
                writer.write_all(&std::mem::take(&mut session.output)).await?;
                writer.flush().await?;
                return Ok(());
            }
            Next::Data => {
                session.reply("354 2.0.0 Start mail input; end with <CRLF>.<CRLF>");
                if !session.data(&mut reader, &mut writer).await? {
                    return Ok(());
                }
            }
        }
    }
}

impl<S: MailService, U: UserDirectory> Session<'_, S, U> {
    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// A recipient's final reply (refused at `RCPT TO`, or its outcome after DATA), counted.
    fn recipient_reply(&mut self, line: &str) {
        record_recipient(line);
        self.reply(line);
    }

    fn reset(&mut self) {
        self.sender = None;
        self.recipients.clear();
    }

    /// Writes the pending replies, then waits up to `timeout` for more input. False when the
    /// session is over: the peer closed, or was idle too long (told 421).
    async fn read_more<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        timeout: std::time::Duration,
    ) -> std::io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if !self.output.is_empty() {
            writer.write_all(&std::mem::take(&mut self.output)).await?;
            writer.flush().await?;
        }
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let read = tokio::time::timeout(timeout, reader.read(&mut self.input[start..])).await;
        match read {
            Ok(Ok(n)) => {
                self.input.truncate(start + n);
                Ok(n > 0)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.input.truncate(start);
                writer
                    .write_all(b"421 4.4.2 Idle too long, closing connection\r\n")
                    .await?;
                writer.flush().await?;
                Ok(false)
            }
        }
    }

    /// Answers one command line (LF included).
    fn command(&mut self, line: &[u8]) -> Next {
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(e) => {
                self.reply(parse_error_reply(&e));
                return Next::Continue;
            }
        };
        match request {
            Request::Lhlo { .. } => {
                self.reset();
                self.greeted = true;
                let host = self.config.hostname.clone();
                self.reply(&format!("250-{host}"));
                self.reply("250-PIPELINING");
                self.reply("250-8BITMIME");
                self.reply("250-ENHANCEDSTATUSCODES");
                self.reply(&format!("250 SIZE {}", self.config.max_message_bytes));
            }
            Request::Helo { .. } | Request::Ehlo { .. } => {
                self.reply("500 5.5.1 This is LMTP: say LHLO");
            }
            Request::Mail { from } => {
                if !self.greeted {
                    self.reply("503 5.5.1 LHLO first");
                } else if self.sender.is_some() {
                    self.reply("503 5.5.1 Nested MAIL command");
                } else if from.flags & MAIL_BODY_BINARYMIME != 0 {
                    self.reply("555 5.5.4 BODY=BINARYMIME is not supported");
                } else if from.size as u64 > self.config.max_message_bytes {
                    let max = self.config.max_message_bytes;
                    self.reply(&format!("552 5.3.4 Message too big: at most {max} bytes"));
                } else {
                    self.sender = Some(from.address.into_owned());
                    self.reply("250 2.1.0 OK");
                }
            }
            Request::Rcpt { to } => {
                if self.sender.is_none() {
                    self.reply("503 5.5.1 MAIL first");
                } else if self.recipients.len() >= self.config.max_recipients {
                    self.recipient_reply("452 4.5.3 Too many recipients");
                } else {
                    match parse_recipient(&to.address).filter(|r| self.users.exists(&r.user)) {
                        Some(recipient) => {
                            self.recipients.push(recipient);
                            self.reply("250 2.1.5 OK");
                        }
                        None => self.recipient_reply(&format!("550 5.1.1 <{}> No such user", to.address)),
                    }
                }
            }
            Request::Data => {
                if self.sender.is_none() {
                    self.reply("503 5.5.1 MAIL first");
                } else if self.recipients.is_empty() {
                    self.reply("503 5.5.1 No valid recipients");
                } else {
                    return Next::Data;
                }
            }
            Request::Rset => {
                self.reset();
                self.reply("250 2.0.0 OK");
            }
            Request::Noop { .. } => self.reply("250 2.0.0 OK"),
            Request::Vrfy { .. } => self.reply("252 2.5.0 Cannot VRFY user, but will accept message"),
            Request::Quit => {
                self.reply("221 2.0.0 Bye");
                return Next::Quit;
            }
            _ => self.reply("502 5.5.1 Command not implemented"),
        }
        Next::Continue
    }

    /// Receives DATA up to the final dot, then delivers. False when the session is over.
    async fn data<R, W>(&mut self, reader: &mut R, writer: &mut W) -> std::io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let max = self.config.max_message_bytes;
        let spool = tempfile::tempfile_in(&self.config.spool_dir)?;
        let mut spool_writer = tokio::fs::File::from_std(spool.try_clone()?);
        let mut receiver = DataReceiver::new();
        let mut unstuffed = Vec::new();
        // The receiver finds the end (and stuffed dots) after a CRLF: the one that ended DATA.
        receiver.ingest(&mut b"\r\n".iter(), &mut unstuffed);
        unstuffed.clear();
        let mut size = 0u64;
        loop {
            let mut bytes = self.input.iter();
            let done = receiver.ingest(&mut bytes, &mut unstuffed);
            let consumed = self.input.len() - bytes.as_slice().len();
            self.input.drain(..consumed);
            // The receiver may take back the last byte it gave (the CR of the final CRLF.CRLF):
            // the last two stay until the next bytes arrive.
            let ready = if done {
                unstuffed.len()
            } else {
                unstuffed.len().saturating_sub(2)
            };
            size += ready as u64;
            if size <= max {
                spool_writer.write_all(&unstuffed[..ready]).await?;
            }
            unstuffed.drain(..ready);
            if done {
                break;
            }
            if !self.read_more(reader, writer, self.config.data_timeout).await? {
                return Ok(false);
            }
        }
        let recipients = std::mem::take(&mut self.recipients);
        self.reset();
        if size > max {
            for _ in &recipients {
                self.recipient_reply(&format!("552 5.3.4 Message too big: at most {max} bytes"));
            }
            return Ok(true);
        }
        spool_writer.flush().await?;
        drop(spool_writer);
        // One body per group of the recipients: every recipient of a group names the same id.
        let mut stored: BTreeMap<u32, Result<StoredBody, ServiceError>> = BTreeMap::new();
        for recipient in &recipients {
            let group = self.service.group_of_user(&recipient.user);
            if let std::collections::btree_map::Entry::Vacant(slot) = stored.entry(group) {
                let body = file_body(spool.try_clone()?, 0, size);
                slot.insert(self.service.store_body(&recipient.user, body).await);
            }
            let reply = match &stored[&group] {
                Err(e) => service_error_reply(e),
                Ok(body) => self.deliver(recipient, *body).await,
            };
            // Each reply as soon as it is known: the MTA sees progress.
            self.recipient_reply(&reply);
            writer.write_all(&std::mem::take(&mut self.output)).await?;
            writer.flush().await?;
        }
        Ok(true)
    }

    /// Proposes the entry of `body` for `recipient` and answers once it is applied.
    async fn deliver(&self, recipient: &Recipient, body: StoredBody) -> String {
        let user = &recipient.user;
        let mut mailbox = match &recipient.folder {
            Some(folder) if self.mailbox_exists(user, folder).await => folder.clone(),
            _ => INBOX.to_string(),
        };
        let mut created_inbox = false;
        loop {
            let op = deliver_op(
                user.clone(),
                mailbox.clone(),
                body,
                random_guid(),
                now_seconds(),
                vec![],
            );
            let outcome = match self.propose(op).await {
                Ok(outcome) => outcome,
                Err(reply) => return reply,
            };
            match outcome {
                Outcome::Appended { .. } => {
                    return format!("250 2.0.0 <{}> Delivered to {mailbox}", recipient.address)
                }
                // The folder went away since it was looked up: INBOX.
                Outcome::Rejected(Rejection::NoSuchMailbox { .. }) if mailbox != INBOX => {
                    mailbox = INBOX.to_string();
                }
                // A user's first delivery creates their INBOX (once; one created meanwhile by
                // another delivery is as good).
                Outcome::Rejected(Rejection::NoSuchMailbox { .. }) if !created_inbox => {
                    created_inbox = true;
                    let create = Op::CreateMailbox {
                        user: user.clone(),
                        mailbox: INBOX.to_string(),
                        mailbox_guid: random_guid(),
                        uid_validity: u32::try_from(now_seconds()).unwrap_or(u32::MAX).max(1),
                    };
                    match self.propose(create).await {
                        Ok(Outcome::Created { .. })
                        | Ok(Outcome::Rejected(Rejection::MailboxExists { .. })) => {}
                        Ok(Outcome::Rejected(rejection)) => return rejection_reply(&rejection),
                        Ok(_) => return "451 4.3.0 Unexpected outcome creating INBOX".to_string(),
                        Err(reply) => return reply,
                    }
                }
                Outcome::Rejected(rejection) => return rejection_reply(&rejection),
                other => return format!("451 4.3.0 Unexpected outcome {other:?}"),
            }
        }
    }

    /// Whether `user` has `mailbox`, in this node's index as it is (a folder created a moment
    /// ago elsewhere may not be seen yet: the delivery then goes to INBOX).
    async fn mailbox_exists(&self, user: &str, mailbox: &str) -> bool {
        let options = ReadOptions {
            consistency: Consistency::Local,
            min_applied: None,
        };
        let (u, m) = (user.to_string(), mailbox.to_string());
        self.service
            .read(user, options, move |g| g.state().status(&u, &m).is_ok())
            .await
            .is_ok_and(|ack| ack.value)
    }

    /// Validates and proposes `op` as an anonymous request; the reply on failure.
    async fn propose(&self, op: Op) -> Result<Outcome, String> {
        let nonce: String = random_guid().iter().map(|b| format!("{b:02x}")).collect();
        let txn = Txn {
            client_id: format!("{ANONYMOUS_CLIENT_PREFIX}{}-{nonce}", self.service.node_id()),
            request_seq: 1,
            op,
        };
        if let Err(e) = crate::txn::validate::validate_content(&txn, crate::txn::encoding::CURRENT_ENCODING) {
            return Err(format!("554 5.6.0 {e}"));
        }
        match self.service.write(txn).await {
            Ok(ack) => Ok(ack.outcome),
            Err(e) => Err(service_error_reply(&e)),
        }
    }
}

/// The reply to a line `smtp-proto` could not take.
fn parse_error_reply(error: &ParseError) -> &'static str {
    match error {
        ParseError::UnknownCommand => "500 5.5.1 Unknown command",
        ParseError::UnsupportedParameter { .. } => "555 5.5.4 Unsupported parameter",
        ParseError::InvalidSenderAddress => "501 5.1.7 Invalid sender address",
        ParseError::InvalidRecipientAddress => "501 5.1.3 Invalid recipient address",
        _ => "501 5.5.4 Syntax error",
    }
}

/// The per-recipient reply to a node that could not store or commit: 4xx where waiting helps
/// (the MTA keeps the message and retries), 5xx where it never will.
pub fn service_error_reply(error: &ServiceError) -> String {
    let code = match error {
        ServiceError::Unavailable { .. } => "451 4.4.3",
        ServiceError::Busy { .. } => "451 4.3.2",
        ServiceError::ShuttingDown => "451 4.3.2",
        ServiceError::NoSpace { .. } => "452 4.3.1",
        ServiceError::BodyTooLarge { .. } | ServiceError::TooLarge { .. } => "552 5.3.4",
        ServiceError::GroupStopped { .. }
        | ServiceError::Removed { .. }
        | ServiceError::NotEnabled(_)
        | ServiceError::BadBody { .. }
        | ServiceError::BeyondCommitted { .. }
        | ServiceError::Internal { .. } => "451 4.3.0",
    };
    let text: String = error.to_string().chars().filter(|c| !c.is_control()).collect();
    format!("{code} {text}")
}

/// The per-recipient reply to a delivery the state machine refused.
fn rejection_reply(rejection: &Rejection) -> String {
    let code = match rejection {
        Rejection::UidSpaceExhausted | Rejection::UidValidityExhausted => "552 5.2.2",
        Rejection::TooManyMailboxes { .. } => "552 5.2.2",
        Rejection::Invalid { .. } => "554 5.6.0",
        _ => "451 4.3.0",
    };
    format!("{code} {rejection}")
}
