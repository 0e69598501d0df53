//! LOGIN, AUTHENTICATE PLAIN (with SASL-IR) and ENABLE (CONDSTORE, QRESYNC); the mailboxes
//! every user gets at first login. A failed login is `NO [AUTHENTICATIONFAILED]` whether the
//! user exists or not (the passwd table checks an unknown user against a dummy hash, so the
//! time says nothing either), and failures are limited per remote address
//! (`users::LoginLimiter`).

use std::borrow::Cow;
use std::time::Instant;

use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::extensions::enable::CapabilityEnable;
use imap_next::imap_types::response::{
    Code, CommandContinuationRequest, Data, Status, StatusBody, StatusKind, Tagged,
};
use imap_next::types::CommandAuthenticate;

use super::metrics::{record_command, record_login_failure};
use super::reply::{other_code, text, Reply};
use super::session::Session;
use crate::service::MailService;
use crate::txn::Op;

impl<S: MailService> Session<S> {
    pub(super) fn enable(&mut self, capabilities: Vec<CapabilityEnable<'static>>) -> Reply {
        if self.user.is_none() {
            return Reply::bad("ENABLE needs a login first");
        }
        let mut enabled = Vec::new();
        for capability in capabilities {
            match &capability {
                CapabilityEnable::CondStore => self.condstore = true,
                // imap-types has no variant for it: an atom like any other.
                CapabilityEnable::Other(_) if capability.to_string().eq_ignore_ascii_case("QRESYNC") => {
                    // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE; ENABLED names what was asked.
                    self.qresync = true;
                    self.condstore = true;
                }
                _ => continue,
            }
            if !enabled.contains(&capability) {
                enabled.push(capability);
            }
        }
        debug_assert!(!self.qresync || self.condstore);
        self.server.enqueue_data(Data::Enabled {
            capabilities: enabled,
        });
        Reply::ok("ENABLE completed")
    }

    /// LOGIN and AUTHENTICATE PLAIN: the same checks, the same answers.
    pub(super) async fn login(&mut self, user: String, password: Vec<u8>) -> Reply {
        if self.user.is_some() {
            return Reply::bad("Already logged in");
        }
        if !self.plaintext_allowed() {
            return Reply::no("Plaintext authentication is not allowed without TLS (use STARTTLS)")
                .code(other_code("PRIVACYREQUIRED"));
        }
        let Some(users) = self.shared.users.clone() else {
            return Reply::no("This node has no user database (start it with --passwd-file)")
                .code(other_code("UNAVAILABLE"));
        };
        let now = Instant::now();
        let admission = match self.shared.limiter.lock() {
            Ok(limiter) => limiter.check(self.peer.ip(), now),
            Err(_) => crate::users::Admission::Allowed,
        };
        if let crate::users::Admission::Wait { ms } = admission {
            record_login_failure("rate_limited");
            return Reply::no(format!(
                "Too many failed logins from this address; retry in {} s",
                ms.div_ceil(1000)
            ))
            .code(other_code("UNAVAILABLE"));
        }
        // An invalid name is checked like an unknown user: the answer and its time are the same.
        let name = crate::users::passwd::normalize_user(&user).unwrap_or(user);
        if !users.verify_async(name.clone(), password).await {
            if let Ok(mut limiter) = self.shared.limiter.lock() {
                limiter.record_failure(self.peer.ip(), Instant::now());
            }
            record_login_failure("credentials");
            return Reply::no("Authentication failed").code(other_code("AUTHENTICATIONFAILED"));
        }
        self.user = Some(name.clone());
        self.applied = Some(self.shared.service.watch(&name));
        self.ensure_default_mailboxes().await;
        let caps = self.capabilities();
        Reply::ok("Logged in").code(Code::Capability(caps))
    }

    pub(super) async fn authenticate(&mut self, command: CommandAuthenticate) {
        self.command_name = "AUTHENTICATE";
        let refuse = if self.user.is_some() {
            Some(Reply::bad("Already logged in"))
        } else if command.mechanism != AuthMechanism::Plain {
            Some(Reply::no("Only AUTHENTICATE PLAIN is supported").code(other_code("CANNOT")))
        } else if !self.plaintext_allowed() {
            Some(
                Reply::no("Plaintext authentication is not allowed without TLS (use STARTTLS)")
                    .code(other_code("PRIVACYREQUIRED")),
            )
        } else {
            None
        };
        if let Some(reply) = refuse {
            self.authenticate_finish(command.tag, reply);
            return;
        }
        match command.initial_response {
            Some(response) => {
                let reply = self.authenticate_plain(response.declassify()).await;
                self.authenticate_finish(command.tag, reply);
            }
            None => {
                self.authenticating = Some(command.tag);
                let _ = self
                    .server
                    .authenticate_continue(CommandContinuationRequest::base64(Cow::Borrowed(&b""[..])));
            }
        }
    }

    pub(super) async fn authenticate_data(&mut self, data: AuthenticateData<'static>) {
        let Some(tag) = self.authenticating.take() else {
            return;
        };
        let reply = match data {
            AuthenticateData::Cancel => Reply::bad("AUTHENTICATE cancelled"),
            AuthenticateData::Continue(response) => self.authenticate_plain(response.declassify()).await,
        };
        self.authenticate_finish(tag, reply);
    }

    /// RFC 4616: `authzid NUL authcid NUL password`; an authzid other than the authcid is refused.
    async fn authenticate_plain(&mut self, response: &[u8]) -> Reply {
        let parts: Vec<&[u8]> = response.split(|&b| b == 0).collect();
        let [authzid, authcid, password] = parts.as_slice() else {
            return Reply::bad("Malformed PLAIN response");
        };
        let user = String::from_utf8_lossy(authcid).into_owned();
        if !authzid.is_empty() && *authzid != *authcid {
            return Reply::no("Authentication failed").code(other_code("AUTHENTICATIONFAILED"));
        }
        self.login(user, password.to_vec()).await
    }

    fn authenticate_finish(&mut self, tag: Tag<'static>, reply: Reply) {
        let result = match reply.kind {
            StatusKind::Ok => "ok",
            StatusKind::No => "no",
            StatusKind::Bad => "bad",
        };
        record_command("AUTHENTICATE", result);
        let status = Status::Tagged(Tagged {
            tag,
            body: StatusBody {
                kind: reply.kind,
                code: reply.code,
                text: text(&reply.text),
            },
        });
        if let Err(status) = self.server.authenticate_finish(status) {
            self.server.enqueue_status(status);
        }
    }

    /// INBOX and the special-use mailboxes, created at login where absent. A failure (no
    /// quorum) is logged and the login goes on: the next login tries again.
    async fn ensure_default_mailboxes(&mut self) {
        let user = self.user.clone().expect("logged in");
        let u = user.clone();
        let Ok(existing) = self
            .read(move |g| {
                g.state()
                    .list_mailboxes(&u)
                    .into_iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
            })
            .await
        else {
            return;
        };
        let wanted = std::iter::once("INBOX").chain(super::list::SPECIAL_USE.iter().map(|(n, _)| *n));
        for name in wanted {
            if existing.iter().any(|e| e == name) {
                continue;
            }
            let op = Op::CreateMailbox {
                user: user.clone(),
                mailbox: name.to_string(),
                mailbox_guid: crate::service::random_guid(),
                uid_validity: u32::try_from(crate::service::now_seconds())
                    .unwrap_or(u32::MAX)
                    .max(1),
            };
            if let Err(reply) = self.propose(op).await {
                tracing::warn!(user = %user, mailbox = name, reason = %reply.text, "imap: could not create a default mailbox");
                return;
            }
        }
    }
}
