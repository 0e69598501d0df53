//! SUBSCRIBE, UNSUBSCRIBE, LSUB (RFC 3501 §6.3.6, §6.3.7, §6.3.9) over the replicated
//! `Op::Subscribe` / `Op::Unsubscribe` (log encoding 4): a user's subscriptions are the same
//! through every node. A subscribed name need not be a mailbox (RFC 3501 §6.3.6).

use imap_next::imap_types::core::{Atom, QuotedChar};
use imap_next::imap_types::flag::FlagNameAttribute;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Data;

use super::copy::upgrade_pending;
use super::list::{matches, ListEntry, DELIMITER};
use super::mailboxes::{mailbox_arg, mailbox_name};
use super::reply::{other_code, rejection_reply, Reply};
use super::session::Session;
use crate::service::MailService;
use crate::txn::{Op, Outcome};

/// The LSUB answer for `pattern` over the user's `subscribed` names, in name order: each
/// subscribed name that matches, without attributes; and a parent that is not subscribed
/// itself, shown `\Noselect`, where it matches and a subscribed name below it does not (RFC
/// 3501 §6.3.9: `foo/bar` subscribed, `foo` not, `%` answers `foo` with `\Noselect`).
pub fn lsub(subscribed: &[String], pattern: &str) -> Vec<ListEntry> {
    let mut out: std::collections::BTreeMap<String, Vec<&'static str>> = Default::default();
    for name in subscribed {
        if matches(pattern, name) {
            out.insert(name.clone(), Vec::new());
            continue;
        }
        let mut at = 0;
        while let Some(i) = name[at..].find(DELIMITER) {
            let parent = &name[..at + i];
            if matches(pattern, parent) && !subscribed.iter().any(|s| s == parent) {
                out.entry(parent.to_string())
                    .or_insert_with(|| vec!["\\Noselect"]);
            }
            at += i + 1;
        }
    }
    out.into_iter()
        .map(|(name, attributes)| ListEntry { name, attributes })
        .collect()
}

impl<S: MailService> Session<S> {
    /// SUBSCRIBE / UNSUBSCRIBE of `mailbox`.
    pub(super) async fn subscribe(&mut self, mailbox: Mailbox<'static>, subscribe: bool) -> Reply {
        let command = self.command_name;
        let name = match mailbox_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let user = self.user.clone().expect("logged in");
        let op = match subscribe {
            true => Op::Subscribe { user, mailbox: name },
            false => Op::Unsubscribe { user, mailbox: name },
        };
        match self.propose(op).await {
            Ok(Outcome::Subscribed { .. }) => Reply::ok("SUBSCRIBE completed"),
            Ok(Outcome::Unsubscribed { .. }) => Reply::ok("UNSUBSCRIBE completed"),
            Ok(Outcome::Rejected(rejection)) => rejection_reply(&rejection),
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => upgrade_pending(command, reply),
        }
    }

    /// LSUB `reference` `pattern` (already joined as LIST joins them).
    pub(super) async fn lsub(&mut self, pattern: String) -> Reply {
        let user = self.user.clone().expect("logged in");
        let names = match self.read(move |g| g.subscriptions(&user)).await {
            Ok(names) => names,
            Err(reply) => return reply,
        };
        let delimiter = Some(QuotedChar::try_from(DELIMITER).expect("valid"));
        for entry in lsub(&names, &pattern) {
            let Some(mailbox) = mailbox_arg(&entry.name) else {
                continue;
            };
            let items = entry
                .attributes
                .iter()
                .filter_map(|a| Atom::try_from(a.trim_start_matches('\\').to_string()).ok())
                .map(FlagNameAttribute::from)
                .collect();
            self.server.enqueue_data(Data::Lsub {
                items,
                delimiter,
                mailbox,
            });
        }
        Reply::ok("LSUB completed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[ListEntry]) -> Vec<(&str, Vec<&str>)> {
        entries
            .iter()
            .map(|e| (e.name.as_str(), e.attributes.clone()))
            .collect()
    }

    #[test]
    fn lsub_shows_an_unsubscribed_parent_noselect_only_where_percent_stops_above_a_child() {
        let subscribed = vec!["INBOX".to_string(), "foo/bar".to_string(), "Work/a/b".to_string()];
        assert_eq!(
            names(&lsub(&subscribed, "%")),
            vec![
                ("INBOX", vec![]),
                ("Work", vec!["\\Noselect"]),
                ("foo", vec!["\\Noselect"])
            ]
        );
        assert_eq!(
            names(&lsub(&subscribed, "*")),
            vec![("INBOX", vec![]), ("Work/a/b", vec![]), ("foo/bar", vec![])]
        );
        assert_eq!(
            names(&lsub(&subscribed, "Work/%")),
            vec![("Work/a", vec!["\\Noselect"])]
        );
        assert_eq!(names(&lsub(&subscribed, "foo/%")), vec![("foo/bar", vec![])]);
        assert!(lsub(&subscribed, "nothing").is_empty());
    }

    #[test]
    fn a_subscribed_parent_is_shown_as_subscribed() {
        let subscribed = vec!["foo".to_string(), "foo/bar".to_string()];
        assert_eq!(names(&lsub(&subscribed, "%")), vec![("foo", vec![])]);
    }
}
