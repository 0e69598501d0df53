//! `Session`: one IMAP connection — its state (not authenticated, authenticated, selected), the
//! command loop over imap-next's `Server`, and the commands of the not-authenticated state
//! (CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE PLAIN). The commands of the other
//! states are in [`super::mailboxes`] and [`super::selected`].
//!
//! Reads go to this node's index ([`Consistency::Local`]) with the session's token as
//! `min_applied`: the highest log index the session has written or read at, so a session never
//! sees the mailbox older than its own last write or its last answer (read-your-writes on a
//! follower; its view never goes backwards).

use std::net::SocketAddr;
use std::sync::Arc;

use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{IString, NString, Tag, Vec1};
use imap_next::imap_types::response::{
    Bye, Capability, Code, Data, Greeting, Status, StatusBody, StatusKind, Tagged,
};
use imap_next::server::{Error as ServerError, Event, Options, ResponseHandle, Server};
use tokio_rustls::TlsAcceptor;

use super::metrics::record_command;
use super::reply::{capabilities, other_code, service_reply, text, Reply};
use super::shared::Shared;
use super::transport::{server_after_starttls, Connection, TransportError};
use super::view::View;
use crate::service::{Consistency, MailService, ReadOptions};
use crate::state_machine::manifest::ANONYMOUS_CLIENT_PREFIX;
use crate::state_machine::GroupStateMachine;
use crate::txn::{Op, Outcome, Txn};

/// The selected mailbox of a session.
pub struct Selected {
    pub name: String,
    pub read_only: bool,
    pub uid_validity: u32,
    pub view: View,
    /// MODSEQs of this session's own flag changes not yet caught up with: their FETCH FLAGS
    /// went with the command's answer (or were silenced), so the refresh does not repeat them.
    pub own_modseqs: std::collections::BTreeSet<u64>,
}

/// One client connection and its IMAP state.
pub struct Session<S: MailService> {
    pub(super) shared: Arc<Shared<S>>,
    pub(super) peer: SocketAddr,
    pub(super) conn: Connection,
    pub(super) server: Server,
    /// The logged-in user (the authenticated and selected states).
    pub(super) user: Option<String>,
    pub(super) selected: Option<Selected>,
    /// Read-your-writes: the highest log index of the user's group this session wrote or read
    /// at. Invariant: never decreases.
    pub(super) token: Option<u64>,
    /// CONDSTORE enabled (RFC 7162 §3.1: ENABLE, SELECT (CONDSTORE), or a command using it).
    pub(super) condstore: bool,
    /// QRESYNC enabled (RFC 7162 §3.2.3: only by ENABLE, which turns CONDSTORE on too). From
    /// then on expunges are told as `* VANISHED`. Invariant: implies `condstore`.
    pub(super) qresync: bool,
    /// The node's "applied index changed" signal of the user's group (IDLE, NOOP).
    pub(super) applied: Option<tokio::sync::watch::Receiver<u64>>,
    /// The tag of the AUTHENTICATE in progress.
    pub(super) authenticating: Option<Tag<'static>>,
    /// Name of the command being served (metrics).
    pub(super) command_name: &'static str,
    bad_in_a_row: u32,
    logout: bool,
}

impl<S: MailService> Session<S> {
    pub fn new(shared: Arc<Shared<S>>, peer: SocketAddr, conn: Connection) -> Session<S> {
        let options = server_options(&shared);
        let caps = capabilities(
            false,
            conn.is_tls(),
            shared.tls.is_some(),
            shared.config.allow_plaintext,
        );
        let greeting = Greeting::new(
            imap_next::imap_types::response::GreetingKind::Ok,
            Some(Code::Capability(caps)),
            "Dovetail IMAP ready",
        )
        .expect("valid greeting");
        Session {
            server: Server::new(options, greeting),
            shared,
            peer,
            conn,
            user: None,
            selected: None,
            token: None,
            condstore: false,
            qresync: false,
            applied: None,
            authenticating: None,
            command_name: "",
            bad_in_a_row: 0,
            logout: false,
        }
    }

    /// Serves the connection until LOGOUT, a timeout, a protocol failure or the client leaving.
    pub async fn run(mut self) {
        loop {
            let timeout = if self.user.is_some() {
                self.shared.config.autologout
            } else {
                self.shared.config.login_timeout
            };
            let next = tokio::time::timeout(timeout, self.conn.next(&mut self.server)).await;
            let event = match next {
                Err(_) => {
                    self.bye("Autologout: idle for too long").await;
                    break;
                }
                Ok(Err(TransportError::Protocol(e))) => {
                    if !self.malformed(e).await {
                        break;
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "imap session ended");
                    break;
                }
                Ok(Ok(event)) => event,
            };
            match event {
                Event::GreetingSent { .. } | Event::ResponseSent { .. } | Event::IdleDoneReceived => {}
                Event::CommandReceived { command } => {
                    self.bad_in_a_row = 0;
                    self.command(command).await;
                }
                Event::CommandAuthenticateReceived { command_authenticate } => {
                    self.authenticate(command_authenticate).await;
                }
                Event::AuthenticateDataReceived { authenticate_data } => {
                    self.authenticate_data(authenticate_data).await;
                }
                Event::IdleCommandReceived { tag } => {
                    if !self.idle(tag).await {
                        break;
                    }
                }
            }
            if self.logout {
                break;
            }
        }
        self.conn.shutdown().await;
    }

    /// Answers a message imap-next could not take with BAD (tagged if its tag can be read);
    /// false once too many came in a row (the connection is then closed).
    async fn malformed(&mut self, error: ServerError) -> bool {
        let (discarded, reason) = match &error {
            ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
                (discarded_bytes, "lines must end with CRLF")
            }
            ServerError::MalformedMessage { discarded_bytes } => (discarded_bytes, "malformed command"),
            ServerError::CommandTooLong { discarded_bytes } => (discarded_bytes, "command too long"),
            // imap-next has already answered BAD for the refused literal.
            ServerError::LiteralTooLong { .. } => {
                record_command("APPEND", "bad");
                return true;
            }
        };
        let bytes = discarded.declassify();
        let tag = bytes
            .iter()
            .position(|&b| b == b' ')
            .and_then(|end| Tag::try_from(String::from_utf8_lossy(&bytes[..end]).into_owned()).ok());
        record_command("malformed", "bad");
        self.server.enqueue_status(
            Status::bad(tag, None, text(&format!("Error in IMAP command: {reason}"))).expect("valid status"),
        );
        self.bad_in_a_row += 1;
        if self.bad_in_a_row >= self.shared.config.max_bad_commands {
            self.bye("Too many invalid commands").await;
            return false;
        }
        true
    }

    /// Sends `* BYE text` and ends the session.
    pub(super) async fn bye(&mut self, reason: &str) {
        let handle = self.server.enqueue_status(Status::Bye(Bye {
            code: None,
            text: text(reason),
        }));
        self.send_until(handle).await;
        self.logout = true;
    }

    /// Drives the connection until the response `handle` is written.
    pub(super) async fn send_until(&mut self, handle: ResponseHandle) {
        loop {
            match self.conn.next(&mut self.server).await {
                Ok(Event::ResponseSent { handle: sent, .. }) if sent == handle => break,
                Ok(_) => {}
                Err(_) => {
                    self.logout = true;
                    return;
                }
            }
        }
        if self.conn.flush().await.is_err() {
            self.logout = true;
        }
    }

    /// Enqueues the tagged answer of the command being served and counts it.
    pub(super) fn finish(&mut self, tag: Tag<'static>, reply: Reply) -> ResponseHandle {
        let result = match reply.kind {
            StatusKind::Ok => "ok",
            StatusKind::No => "no",
            StatusKind::Bad => "bad",
        };
        record_command(self.command_name, result);
        self.server.enqueue_status(Status::Tagged(Tagged {
            tag,
            body: StatusBody {
                kind: reply.kind,
                code: reply.code,
                text: text(&reply.text),
            },
        }))
    }

    async fn command(&mut self, command: Command<'static>) {
        self.command_name = command.body.name();
        let tag = command.tag;
        // RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or SEARCH (their UID forms allow it).
        let allow_expunge = !matches!(
            command.body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        let reply = match command.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.server.enqueue_data(Data::Capability(caps));
                Reply::ok("CAPABILITY completed")
            }
            CommandBody::Noop => Reply::ok("NOOP completed"),
            CommandBody::Logout => {
                self.server.enqueue_status(Status::Bye(Bye {
                    code: None,
                    text: text("Logging out"),
                }));
                let handle = self.finish(tag, Reply::ok("LOGOUT completed"));
                self.send_until(handle).await;
                self.logout = true;
                return;
            }
            CommandBody::Id { .. } => {
                let name = (
                    IString::try_from("name").expect("valid"),
                    NString(Some(IString::try_from("Dovetail").expect("valid"))),
                );
                self.server.enqueue_data(Data::Id {
                    parameters: Some(vec![name]),
                });
                Reply::ok("ID completed")
            }
            CommandBody::StartTLS => {
                let Some(acceptor) = self.shared.tls.clone().filter(|_| !self.conn.is_tls()) else {
                    let reply = Reply::bad("STARTTLS is not available on this connection");
                    self.finish(tag, reply);
                    return;
                };
                if self.user.is_some() {
                    self.finish(tag, Reply::bad("STARTTLS only before login"));
                    return;
                }
                self.start_tls(tag, acceptor).await;
                return;
            }
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = password.declassify().as_ref().to_vec();
                self.login(user, password).await
            }
            CommandBody::Enable { capabilities } => self.enable(capabilities.into_inner()),
            body => {
                if self.user.is_none() {
                    Reply::bad(format!("{} needs a login first", body.name()))
                } else {
                    self.authenticated_command(body).await
                }
            }
        };
        if self.selected.is_some() && !self.logout {
            self.refresh_selected(allow_expunge).await;
        }
        self.finish(tag, reply);
    }

    pub(super) fn is_logging_out(&self) -> bool {
        self.logout
    }

    /// CAPABILITY as this connection's state offers it: only what works.
    pub(super) fn capabilities(&self) -> Vec1<Capability<'static>> {
        capabilities(
            self.user.is_some(),
            self.conn.is_tls(),
            self.shared.tls.is_some(),
            self.shared.config.allow_plaintext,
        )
    }

    pub(super) fn plaintext_allowed(&self) -> bool {
        self.conn.is_tls() || self.shared.config.allow_plaintext
    }

    async fn start_tls(&mut self, tag: Tag<'static>, acceptor: TlsAcceptor) {
        let handle = self.finish(tag, Reply::ok("Begin TLS negotiation now"));
        self.send_until(handle).await;
        if self.logout {
            return;
        }
        match self.conn.start_tls(&acceptor).await {
            Ok(()) => self.server = server_after_starttls(server_options(&self.shared)),
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "imap STARTTLS handshake failed");
                self.logout = true;
            }
        }
    }

    /// Reads the user's group from this node's index, no older than the session's token.
    pub(super) async fn read<R, F>(&mut self, read: F) -> Result<R, Reply>
    where
        R: Send + 'static,
        F: FnOnce(&GroupStateMachine) -> R + Send + 'static,
    {
        let user = self.user.clone().expect("reads need a login");
        let options = ReadOptions {
            consistency: Consistency::Local,
            min_applied: self.token,
        };
        match self.shared.service.read(&user, options, read).await {
            Ok(ack) => {
                if let Some(applied) = ack.applied {
                    self.advance_token(applied.index);
                }
                Ok(ack.value)
            }
            Err(e) => Err(service_reply(&e)),
        }
    }

    fn advance_token(&mut self, index: u64) {
        let before = self.token;
        self.token = Some(self.token.map_or(index, |t| t.max(index)));
        debug_assert!(self.token >= before);
    }

    /// Proposes `op` as a new request of an anonymous client (as LMTP does) and waits until it
    /// is applied; the outcome, or the NO to answer.
    pub(super) async fn propose(&mut self, op: Op) -> Result<Outcome, Reply> {
        let nonce: String = crate::service::random_guid()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let txn = Txn {
            client_id: format!(
                "{ANONYMOUS_CLIENT_PREFIX}{}-{nonce}",
                self.shared.service.node_id()
            ),
            request_seq: 1,
            op,
        };
        if let Err(e) = crate::txn::validate::validate_content(&txn, crate::txn::encoding::CURRENT_ENCODING) {
            return Err(Reply::no(e.to_string()).code(other_code("CANNOT")));
        }
        match self.shared.service.write(txn).await {
            Ok(ack) => {
                self.advance_token(ack.position.index);
                Ok(ack.outcome)
            }
            Err(e) => Err(service_reply(&e)),
        }
    }
}

fn server_options<S: MailService>(shared: &Shared<S>) -> Options {
    let mut options = Options::default();
    let max_literal = u32::try_from(shared.config.max_message_bytes).unwrap_or(u32::MAX - (1 << 20));
    options.max_literal_size = max_literal;
    options.max_command_size = max_literal.saturating_add(64 * 1024);
    // A BAD without a code: imap-next takes no response code here (the text may not start with
    // `[`). An APPEND whose literal fits but is too big for the body store gets `NO [TOOBIG]`.
    options
        .set_literal_reject_text("Literal larger than this server takes (max message size)".to_string())
        .expect("valid text");
    options
        .set_literal_accept_text("Ready for literal data".to_string())
        .expect("valid text");
    options
}
