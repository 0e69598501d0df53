//! The commands of the authenticated state (RFC 3501 §6.3): NAMESPACE, LIST, CREATE, DELETE,
//! RENAME, STATUS, SELECT/EXAMINE (CONDSTORE; QRESYNC through [`super::qresync`]), APPEND — and
//! the dispatch of every command that needs a login, the selected state's included
//! ([`super::selected`]).

use std::borrow::Cow;
use std::num::{NonZeroU32, NonZeroU64};

use imap_next::imap_types::command::{CommandBody, SelectParameter};
use imap_next::imap_types::core::{Atom, IString, QuotedChar};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::extensions::namespace::Namespace;
use imap_next::imap_types::flag::{Flag, FlagNameAttribute, FlagPerm};
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::{Code, Data, Status};
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_next::imap_types::ToStatic;

use super::list::{canonical_inbox, join_reference, DELIMITER};
use super::reply::{other_code, rejection_reply, text, Reply};
use super::session::{Selected, Session};
use super::view::View;
use crate::service::{deliver_op, now_seconds, random_guid, MailService};
use crate::state_machine::read::{MailboxStatus, ReadError};
use crate::txn::{Op, Outcome};

/// A mailbox argument as the index names it (`INBOX` in any case is `INBOX`). Names are taken
/// as sent: a client's modified UTF-7 is stored as its ASCII spelling.
pub fn mailbox_name(mailbox: &Mailbox<'_>) -> Result<String, Reply> {
    match mailbox {
        Mailbox::Inbox => Ok("INBOX".to_string()),
        Mailbox::Other(other) => std::str::from_utf8(other.as_ref())
            .map(canonical_inbox)
            .map_err(|_| Reply::bad("Mailbox names must be UTF-8 (or modified UTF-7)")),
    }
}

/// `name` as a mailbox in a response; `None` for a name IMAP4rev1 cannot carry as is (one
/// stored through the HTTP API with characters outside ASCII: modified UTF-7 is not built yet).
pub fn mailbox_arg(name: &str) -> Option<Mailbox<'static>> {
    if !name.is_ascii() {
        return None;
    }
    Mailbox::try_from(name.to_string()).ok()
}

fn list_pattern(pattern: &ListMailbox<'_>) -> Result<String, Reply> {
    let bytes: &[u8] = match pattern {
        ListMailbox::Token(token) => token.as_ref(),
        ListMailbox::String(string) => string.as_ref(),
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| Reply::bad("Mailbox patterns must be UTF-8"))
}

fn read_reply(error: ReadError) -> Reply {
    match error {
        ReadError::NoSuchMailbox { mailbox } => {
            Reply::no(format!("No mailbox {mailbox:?}")).code(other_code("NONEXISTENT"))
        }
        ReadError::Invalid(e) => Reply::no(e.to_string()).code(other_code("CANNOT")),
    }
}

/// A flag of a record (the index spells them as IMAP does) as a response flag.
pub fn flag(name: &str) -> Option<Flag<'static>> {
    Flag::try_from(name).ok().map(|f| f.to_static())
}

/// A flag argument as the index spells it; `\Recent` and unknown system flags are refused.
pub fn flag_text(flag: &Flag<'_>) -> Result<String, Reply> {
    match flag {
        Flag::Extension(_) => Err(Reply::bad(format!("{flag} cannot be stored"))),
        other => Ok(other.to_string()),
    }
}

const SYSTEM_FLAGS: [Flag<'static>; 5] = [
    Flag::Answered,
    Flag::Flagged,
    Flag::Deleted,
    Flag::Seen,
    Flag::Draft,
];

impl<S: MailService> Session<S> {
    /// Every command that needs a login.
    pub(super) async fn authenticated_command(&mut self, body: CommandBody<'static>) -> Reply {
        match body {
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => Reply::bad("Already logged in"),
            CommandBody::Namespace => {
                let personal = vec![Namespace::new(
                    IString::try_from("").expect("valid"),
                    Some(QuotedChar::try_from(DELIMITER).expect("valid")),
                )];
                self.server.enqueue_data(Data::Namespace {
                    personal,
                    other: Vec::new(),
                    shared: Vec::new(),
                });
                Reply::ok("NAMESPACE completed")
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(reference, mailbox_wildcard).await,
            CommandBody::Create { mailbox } => self.create(mailbox).await,
            CommandBody::Delete { mailbox } => self.delete(mailbox).await,
            CommandBody::Rename { from, to } => self.rename(from, to).await,
            CommandBody::Status { mailbox, item_names } => {
                self.status(mailbox, item_names.into_owned()).await
            }
            CommandBody::Select { mailbox, parameters } => self.select(mailbox, parameters, false).await,
            CommandBody::Examine { mailbox, parameters } => self.select(mailbox, parameters, true).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(mailbox, flags, date, message).await,
            body @ (CommandBody::Subscribe { .. }
            | CommandBody::Unsubscribe { .. }
            | CommandBody::Lsub { .. }) => self.subscriptions_command(body).await,
            body => match self.selected.is_some() {
                true => self.selected_command(body).await,
                false => match body {
                    CommandBody::Check
                    | CommandBody::Close
                    | CommandBody::Unselect
                    | CommandBody::Expunge
                    | CommandBody::ExpungeUid { .. }
                    | CommandBody::Search { .. }
                    | CommandBody::Fetch { .. }
                    | CommandBody::Store { .. }
                    | CommandBody::Copy { .. }
                    | CommandBody::Move { .. } => {
                        Reply::bad(format!("{} needs a selected mailbox", body.name()))
                    }
                    other => Reply::bad(format!("{} is not supported", other.name())),
                },
            },
        }
    }

    /// SUBSCRIBE, UNSUBSCRIBE, LSUB, over the replicated Subscribe ops ([`super::subscriptions`]).
    async fn subscriptions_command(&mut self, body: CommandBody<'static>) -> Reply {
        match body {
            CommandBody::Subscribe { mailbox } => self.subscribe(mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(mailbox, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                let reference = match &reference {
                    Mailbox::Inbox => "INBOX".to_string(),
                    Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
                };
                match list_pattern(&mailbox_wildcard) {
                    Ok(pattern) => self.lsub(join_reference(&reference, &pattern)).await,
                    Err(reply) => reply,
                }
            }
            other => Reply::bad(format!("{} is no subscription command", other.name())),
        }
    }

    fn user(&self) -> String {
        self.user.clone().expect("logged in")
    }

    async fn list(&mut self, reference: Mailbox<'static>, pattern: ListMailbox<'static>) -> Reply {
        let reference = match &reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern = match list_pattern(&pattern) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let delimiter = Some(QuotedChar::try_from(DELIMITER).expect("valid"));
        if pattern.is_empty() {
            // RFC 3501: the hierarchy delimiter and the root name.
            self.server.enqueue_data(Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter,
                mailbox: Mailbox::try_from("").unwrap_or(Mailbox::Inbox),
            });
            return Reply::ok("LIST completed");
        }
        let user = self.user();
        let names = match self
            .read(move |g| {
                g.state()
                    .list_mailboxes(&user)
                    .into_iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
            })
            .await
        {
            Ok(names) => names,
            Err(reply) => return reply,
        };
        for entry in super::list::list(&names, &join_reference(&reference, &pattern)) {
            let items = entry
                .attributes
                .iter()
                .filter_map(|a| Atom::try_from(a.trim_start_matches('\\').to_string()).ok())
                .map(FlagNameAttribute::from)
                .collect();
            let Some(mailbox) = mailbox_arg(&entry.name) else {
                tracing::debug!(name = %entry.name, "imap LIST: a name IMAP4rev1 cannot carry is left out");
                continue;
            };
            self.server.enqueue_data(Data::List {
                items,
                delimiter,
                mailbox,
            });
        }
        Reply::ok("LIST completed")
    }

    async fn create(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let name = match mailbox_name(&mailbox) {
            Ok(name) => name.trim_end_matches(DELIMITER).to_string(),
            Err(reply) => return reply,
        };
        if name == "INBOX" {
            return Reply::no("INBOX exists already").code(other_code("ALREADYEXISTS"));
        }
        let op = Op::CreateMailbox {
            user: self.user(),
            mailbox: name,
            mailbox_guid: random_guid(),
            uid_validity: u32::try_from(now_seconds()).unwrap_or(u32::MAX).max(1),
        };
        match self.propose(op).await {
            Ok(Outcome::Created { .. }) => Reply::ok("CREATE completed"),
            Ok(Outcome::Rejected(rejection)) => rejection_reply(&rejection),
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => reply,
        }
    }

    async fn delete(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let name = match mailbox_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        if name == "INBOX" {
            return Reply::no("INBOX cannot be deleted").code(other_code("CANNOT"));
        }
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            // Dovecot's choice too: deleting the selected mailbox deselects it first.
            self.selected = None;
        }
        let op = Op::DeleteMailbox {
            user: self.user(),
            mailbox: name,
        };
        match self.propose(op).await {
            Ok(Outcome::Deleted { .. }) => Reply::ok("DELETE completed"),
            Ok(Outcome::Rejected(rejection)) => rejection_reply(&rejection),
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => reply,
        }
    }

    async fn rename(&mut self, from: Mailbox<'static>, to: Mailbox<'static>) -> Reply {
        let (from, to) = match (mailbox_name(&from), mailbox_name(&to)) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(reply), _) | (_, Err(reply)) => return reply,
        };
        if from == "INBOX" {
            return self.rename_inbox(to).await;
        }
        let op = Op::RenameMailbox {
            user: self.user(),
            from: from.clone(),
            to: to.clone(),
        };
        match self.propose(op).await {
            Ok(Outcome::Renamed { .. }) => {
                // The selected mailbox (or a parent) renamed by this session: it stays selected
                // under its new name (UIDVALIDITY is kept).
                if let Some(selected) = self.selected.as_mut() {
                    if selected.name == from {
                        selected.name = to;
                    } else if let Some(rest) = selected.name.strip_prefix(&format!("{from}{DELIMITER}")) {
                        selected.name = format!("{to}{DELIMITER}{rest}");
                    }
                }
                Reply::ok("RENAME completed")
            }
            Ok(Outcome::Rejected(rejection)) => rejection_reply(&rejection),
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => reply,
        }
    }

    async fn mailbox_status(&mut self, name: &str) -> Result<MailboxStatus, Reply> {
        let (user, name) = (self.user(), name.to_string());
        self.read(move |g| g.state().status(&user, &name))
            .await?
            .map_err(read_reply)
    }

    async fn status(&mut self, mailbox: Mailbox<'static>, items: Vec<StatusDataItemName>) -> Reply {
        let name = match mailbox_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let status = match self.mailbox_status(&name).await {
            Ok(status) => status,
            Err(reply) => return reply,
        };
        let mut values = Vec::new();
        for item in items {
            values.push(match item {
                StatusDataItemName::Messages => StatusDataItem::Messages(status.exists),
                StatusDataItemName::Recent => StatusDataItem::Recent(0),
                StatusDataItemName::UidNext => StatusDataItem::UidNext(nonzero(status.uid_next)),
                StatusDataItemName::UidValidity => StatusDataItem::UidValidity(nonzero(status.uid_validity)),
                StatusDataItemName::Unseen => StatusDataItem::Unseen(status.unseen),
                StatusDataItemName::Deleted => StatusDataItem::Deleted(status.deleted),
                StatusDataItemName::HighestModSeq => {
                    self.condstore = true;
                    StatusDataItem::HighestModSeq(status.highest_modseq)
                }
                other => return Reply::bad(format!("STATUS item {other:?} is not supported")),
            });
        }
        self.server.enqueue_data(Data::Status {
            mailbox,
            items: Cow::Owned(values),
        });
        Reply::ok("STATUS completed")
    }

    async fn select(
        &mut self,
        mailbox: Mailbox<'static>,
        parameters: Vec<SelectParameter>,
        read_only: bool,
    ) -> Reply {
        // RFC 3501: a SELECT deselects first, also when it fails. RFC 7162 §3.2.11: with QRESYNC
        // on, `[CLOSED]` parts the old mailbox's responses from the new one's.
        if self.selected.take().is_some() && self.qresync {
            self.server.enqueue_status(
                Status::ok(None, Some(Code::Closed), text("Previous mailbox closed")).expect("valid status"),
            );
        }
        let resync = match self.select_parameters(&parameters) {
            Ok(resync) => resync,
            Err(reply) => return reply,
        };
        let name = match mailbox_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let (user, n) = (self.user(), name.clone());
        let since = resync.as_ref().map(|r| (r.uid_validity, r.modseq));
        let read = self
            .read(move |g| -> Result<_, ReadError> {
                let state = g.state();
                let status = state.status(&user, &n)?;
                let records = state.fetch(&user, &n, 1, u32::MAX, usize::MAX)?;
                let first_unseen = records
                    .iter()
                    .position(|r| !r.flags.iter().any(|f| f == "\\Seen"))
                    .map(|i| i as u32 + 1);
                let uids: Vec<u32> = records.iter().map(|r| r.uid).collect();
                // RFC 7162 §3.2.5: another UIDVALIDITY is a plain SELECT, the rest ignored.
                let changes = match since {
                    Some((uid_validity, modseq)) if uid_validity == status.uid_validity => {
                        Some(state.changes_since(&user, &n, modseq)?)
                    }
                    _ => None,
                };
                Ok((status, uids, first_unseen, changes))
            })
            .await;
        let (status, uids, first_unseen, changes) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return read_reply(e),
            Err(reply) => return reply,
        };
        let mut flags: Vec<Flag<'static>> = SYSTEM_FLAGS.to_vec();
        flags.extend(status.keywords.iter().filter_map(|k| flag(k)));
        self.server.enqueue_data(Data::Flags(flags.clone()));
        self.server.enqueue_data(Data::Exists(uids.len() as u32));
        self.server.enqueue_data(Data::Recent(0));
        let mut codes = Vec::new();
        if let Some(seq) = first_unseen {
            codes.push(Code::Unseen(nonzero(seq)));
        }
        codes.push(Code::UidValidity(nonzero(status.uid_validity)));
        codes.push(Code::UidNext(nonzero(status.uid_next)));
        let mut permanent: Vec<FlagPerm<'static>> = if read_only {
            Vec::new()
        } else {
            flags.into_iter().map(FlagPerm::Flag).collect()
        };
        if !read_only {
            permanent.push(FlagPerm::Asterisk);
        }
        codes.push(Code::PermanentFlags(permanent));
        match NonZeroU64::new(status.highest_modseq) {
            Some(modseq) => codes.push(Code::HighestModSeq(modseq)),
            None => codes.push(Code::NoModSeq),
        }
        for code in codes {
            self.server
                .enqueue_status(Status::ok(None, Some(code), text("Ok")).expect("valid status"));
        }
        self.selected = Some(Selected {
            name,
            read_only,
            uid_validity: status.uid_validity,
            view: View::new(uids, status.highest_modseq),
            own_modseqs: Default::default(),
        });
        if let (Some(resync), Some(changes)) = (&resync, &changes) {
            self.resync_selected(resync, changes);
        }
        if read_only {
            Reply::ok("EXAMINE completed").code(Code::ReadOnly)
        } else {
            Reply::ok("SELECT completed").code(Code::ReadWrite)
        }
    }

    async fn append(
        &mut self,
        mailbox: Mailbox<'static>,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
    ) -> Reply {
        let name = match mailbox_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let bytes: Vec<u8> = match message {
            LiteralOrLiteral8::Literal(literal) => literal.data().to_vec(),
            LiteralOrLiteral8::Literal8(literal) => literal.data.into_owned(),
        };
        let max = self.shared.config.max_message_bytes;
        if bytes.len() as u64 > max {
            return Reply::no(format!("The message is larger than {max} bytes")).code(Code::TooBig);
        }
        let flags = match flags.iter().map(flag_text).collect::<Result<Vec<_>, _>>() {
            Ok(flags) => flags,
            Err(reply) => return reply,
        };
        // The mailbox first: no body is stored for a message that has nowhere to go.
        if let Err(reply) = self.mailbox_status(&name).await {
            return reply.code(Code::TryCreate);
        }
        let user = self.user();
        let body = http_body_util::Full::new(hyper::body::Bytes::from(bytes));
        let stored = match self.shared.service.store_body(&user, body).await {
            Ok(stored) => stored,
            Err(e) => return super::reply::service_reply(&e),
        };
        let internal_date = date.map_or_else(now_seconds, |d| d.as_ref().timestamp());
        let op = deliver_op(user, name, stored, random_guid(), internal_date, flags);
        match self.propose(op).await {
            Ok(Outcome::Appended {
                uid_validity,
                first_uid,
                ..
            }) => Reply::ok("APPEND completed").code(Code::AppendUid {
                uid_validity: nonzero(uid_validity),
                uid: nonzero(first_uid),
            }),
            Ok(Outcome::Rejected(rejection)) => {
                let reply = rejection_reply(&rejection);
                match rejection {
                    crate::txn::Rejection::NoSuchMailbox { .. } => reply.code(Code::TryCreate),
                    _ => reply,
                }
            }
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => reply,
        }
    }
}

/// `value` as a non-zero number (UIDs, UIDVALIDITY, sequence numbers are never 0 here).
pub fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}
