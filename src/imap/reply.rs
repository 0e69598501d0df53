//! `Reply`: a command's tagged answer, and the answers of the layers below (a node that cannot
//! serve, a transaction the state machine refused); CAPABILITY as a connection's state offers it.

use imap_next::imap_types::auth::AuthMechanism;
use imap_next::imap_types::core::{Text, Vec1};
use imap_next::imap_types::response::StatusKind;
use imap_next::imap_types::response::{Capability, Code, CodeOther};

use crate::service::ServiceError;
use crate::txn::Rejection;

/// A command's tagged answer: OK, NO or BAD, an optional response code, a text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: StatusKind,
    pub code: Option<Code<'static>>,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            kind: StatusKind::Ok,
            code: None,
            text: text.into(),
        }
    }

    pub fn no(text: impl Into<String>) -> Reply {
        Reply {
            kind: StatusKind::No,
            code: None,
            text: text.into(),
        }
    }

    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            kind: StatusKind::Bad,
            code: None,
            text: text.into(),
        }
    }

    pub fn code(mut self, code: Code<'static>) -> Reply {
        self.code = Some(code);
        self
    }

    /// The answer of a command whose part is not built yet (a seam another change fills).
    pub fn not_yet(what: &str) -> Reply {
        Reply::no(format!("{what} not yet supported")).code(other_code("CANNOT"))
    }
}

/// A response code imap-types has no variant for (RFC 5530's, mostly).
pub fn other_code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

/// `text` as IMAP text: printable ASCII, never empty.
pub fn text(text: &str) -> Text<'static> {
    let clean: String = text
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    let clean = if clean.is_empty() { "-".to_string() } else { clean };
    Text::try_from(clean).expect("printable ASCII is valid text")
}

/// CAPABILITY: `logged_in` after LOGIN; STARTTLS where it can be used; AUTH=PLAIN where
/// plaintext logins are taken, else LOGINDISABLED.
pub fn capabilities(
    logged_in: bool,
    tls_active: bool,
    tls_available: bool,
    allow_plaintext: bool,
) -> Vec1<Capability<'static>> {
    let mut caps = vec![Capability::Imap4Rev1];
    if !logged_in {
        if tls_available && !tls_active {
            caps.push(Capability::StartTls);
        }
        if tls_active || allow_plaintext {
            caps.push(Capability::Auth(AuthMechanism::Plain));
            caps.push(Capability::SaslIr);
        } else {
            caps.push(Capability::LoginDisabled);
        }
    }
    caps.extend([
        Capability::LiteralPlus,
        Capability::Id,
        Capability::Enable,
        Capability::Idle,
        Capability::Namespace,
        Capability::Unselect,
        Capability::UidPlus,
        Capability::CondStore,
        Capability::QResync,
        Capability::Move,
    ]);
    // RFC 6154 §2: LIST answers carry \Drafts, \Sent, \Trash, \Junk (the LIST-EXTENDED
    // selection and return options of §3 need LIST-EXTENDED, which is not offered).
    caps.push(Capability::from(
        imap_next::imap_types::core::Atom::try_from("SPECIAL-USE").expect("valid atom"),
    ));
    Vec1::try_from(caps).expect("not empty")
}

/// The NO for a request the node could not serve.
/// The client gets a short reason; the node's log has the details (addresses, body ids).
pub fn service_reply(error: &ServiceError) -> Reply {
    tracing::debug!(error = %error, "imap: the node could not serve a request");
    let unavailable =
        |what: &str| Reply::no(format!("{what}; try again later")).code(other_code("UNAVAILABLE"));
    match error {
        ServiceError::Unavailable { .. } => unavailable("No quorum for this mailbox right now"),
        ServiceError::Busy { .. } => unavailable("The server is busy"),
        ServiceError::ShuttingDown => unavailable("This node is shutting down"),
        ServiceError::GroupStopped { .. } | ServiceError::Removed { .. } => {
            unavailable("This node cannot serve this mailbox now")
        }
        ServiceError::NoSpace { .. } => unavailable("The server is out of disk space"),
        ServiceError::TooLarge { .. } | ServiceError::BodyTooLarge { .. } => {
            Reply::no(error.to_string()).code(Code::TooBig)
        }
        ServiceError::NotEnabled(_) => Reply::no(error.to_string()).code(other_code("CANNOT")),
        ServiceError::BadBody { .. }
        | ServiceError::BeyondCommitted { .. }
        | ServiceError::Internal { .. } => Reply::no(error.to_string()).code(other_code("SERVERBUG")),
    }
}

/// The NO for a transaction the state machine refused.
pub fn rejection_reply(rejection: &Rejection) -> Reply {
    let code = match rejection {
        Rejection::NoSuchMailbox { .. } => "NONEXISTENT",
        Rejection::MailboxExists { .. } => "ALREADYEXISTS",
        Rejection::HasChildren { .. } => "INUSE",
        Rejection::KeywordLimit { .. } | Rejection::TooManyMailboxes { .. } => "LIMIT",
        _ => "CANNOT",
    };
    Reply::no(rejection.to_string()).code(other_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(caps: Vec1<Capability<'static>>) -> Vec<String> {
        caps.into_inner().iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn plaintext_logins_are_advertised_only_where_they_are_taken() {
        let strict = names(capabilities(false, false, true, false));
        assert!(strict.contains(&"LOGINDISABLED".to_string()) && strict.contains(&"STARTTLS".to_string()));
        assert!(!strict.iter().any(|c| c.starts_with("AUTH=")));
        let after_starttls = names(capabilities(false, true, true, false));
        assert!(after_starttls.contains(&"AUTH=PLAIN".to_string()));
        assert!(
            !after_starttls.contains(&"STARTTLS".to_string())
                && !after_starttls.contains(&"LOGINDISABLED".to_string())
        );
        let no_tls_allowed = names(capabilities(false, false, false, true));
        assert!(
            no_tls_allowed.contains(&"AUTH=PLAIN".to_string())
                && !no_tls_allowed.contains(&"STARTTLS".to_string())
        );
        let logged_in = names(capabilities(true, false, true, true));
        assert!(!logged_in
            .iter()
            .any(|c| c.starts_with("AUTH=") || c == "STARTTLS" || c == "LOGINDISABLED"));
        assert_eq!(logged_in[0], "IMAP4REV1");
        for extension in ["ENABLE", "CONDSTORE", "QRESYNC", "MOVE"] {
            assert!(logged_in.contains(&extension.to_string()), "{extension}");
        }
        assert!(logged_in.contains(&"SPECIAL-USE".to_string()));
    }
}
