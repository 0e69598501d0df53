//! How an LMTP recipient address names a user and a mailbox.
//!
//! `RCPT TO:<local@domain>`: the user is the local part with its `+detail` removed, the domain
//! is not part of the user name (Dovetail serves one mail domain; the MTA decides which domains
//! it hands to LMTP), and `alice+Work@example.com` delivers into `alice`'s mailbox `Work` when it
//! exists, else into INBOX. A local part without detail, or with one that is no valid mailbox
//! name, delivers into INBOX.

use crate::api::extract::nfc;
use crate::txn::validate::{check_mailbox_name, check_name_text, check_user};

/// The mailbox every delivery falls back to.
pub const INBOX: &str = "INBOX";

/// A recipient the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as the MTA sent it (for the reply).
    pub address: String,
    pub user: String,
    /// The `+detail` mailbox asked for, if it is a valid name (whether it exists is decided at
    /// delivery).
    pub folder: Option<String>,
}

/// Parses a forward path's address; `None` if it names no valid user.
pub fn parse_recipient(address: &str) -> Option<Recipient> {
    let local = match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_empty() => local,
        Some(_) => return None,
        None => address,
    };
    // A quoted local part ("a b"@x): smtp-proto hands it over unquoted; it is checked as is.
    let (user, detail) = match local.split_once('+') {
        Some((user, detail)) => (user, Some(detail)),
        None => (local, None),
    };
    // The user name rules of the current log encoding (`txn::validate`): a name the entry
    // would be refused for is refused here, at RCPT, not after DATA.
    check_user(user).ok()?;
    check_name_text("user name", user).ok()?;
    if user == "." || user == ".." || user.contains(['/', '\\', '*', '%']) {
        return None;
    }
    let folder = detail
        .filter(|d| !d.is_empty())
        .map(|d| nfc(d.to_string()))
        .filter(|d| check_mailbox_name(d).is_ok());
    Some(Recipient {
        address: address.to_string(),
        user: user.to_string(),
        folder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_part_is_the_user_and_detail_the_folder() {
        let r = parse_recipient("alice@example.com").unwrap();
        assert_eq!((r.user.as_str(), r.folder), ("alice", None));
        let r = parse_recipient("alice+Work@example.com").unwrap();
        assert_eq!((r.user.as_str(), r.folder.as_deref()), ("alice", Some("Work")));
        let r = parse_recipient("alice+Lists/rust@example.org").unwrap();
        assert_eq!(r.folder.as_deref(), Some("Lists/rust"));
        // Empty or invalid detail: INBOX.
        assert_eq!(parse_recipient("alice+@example.com").unwrap().folder, None);
        assert_eq!(parse_recipient("alice+a//b@example.com").unwrap().folder, None);
        assert_eq!(parse_recipient("alice+*@example.com").unwrap().folder, None);
        // No domain: the address is the local part.
        assert_eq!(parse_recipient("bob").unwrap().user, "bob");
        // Invalid users.
        assert_eq!(parse_recipient("@example.com"), None);
        assert_eq!(parse_recipient("+Work@example.com"), None);
        assert_eq!(parse_recipient("a b@example.com"), None);
        assert_eq!(parse_recipient("alice@"), None);
        assert_eq!(parse_recipient("a/b@example.com"), None);
        assert_eq!(parse_recipient("..@example.com"), None);
        assert_eq!(parse_recipient("a%@example.com"), None);
        assert_eq!(parse_recipient(&format!("{}@x", "u".repeat(300))), None);
    }
}
