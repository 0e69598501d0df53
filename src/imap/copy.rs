//! COPY, MOVE and their UID forms (RFC 3501 §6.4.7, RFC 6851, UIDPLUS's COPYUID of RFC 4315)
//! over the replicated `Op::Copy` / `Op::Move` (log encoding 4): one log entry each, so a MOVE
//! is atomic (the copies and the source's expunge together) on every node.

use std::num::NonZeroU32;

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::extensions::uidplus::{UidElement, UidSet as ImapUidSet};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Status};
use imap_next::imap_types::sequence::SequenceSet;

use super::mailboxes::{mailbox_name, nonzero};
use super::reply::{other_code, rejection_reply, text, Reply};
use super::selected::resolve;
use super::session::Session;
use crate::service::MailService;
use crate::txn::{Op, Outcome, Rejection, UidMap, UidSet};

/// A set of UIDs as UIDPLUS writes it; `None` for the empty set.
pub fn imap_uid_set(set: &UidSet) -> Option<ImapUidSet> {
    let elements: Vec<UidElement> = set
        .ranges()
        .iter()
        .map(|&(first, last)| match first == last {
            true => UidElement::Single(nonzero(first)),
            false => UidElement::Range(nonzero(first), nonzero(last)),
        })
        .collect();
    Vec1::try_from(elements).ok().map(ImapUidSet)
}

/// `COPYUID uidvalidity source-set dest-set` of a copy; `None` when nothing was copied (RFC
/// 4315 leaves it out then).
pub fn copy_uid(uid_validity: u32, uids: &UidMap) -> Option<Code<'static>> {
    Some(Code::CopyUid {
        uid_validity: NonZeroU32::new(uid_validity)?,
        source: imap_uid_set(&uids.source)?,
        destination: imap_uid_set(&uids.target())?,
    })
}

/// The NO of an op the user's group has not enabled yet (a rolling upgrade not finished:
/// `ServiceError::NotEnabled`, which the service layer answers `NO [CANNOT]`), with a text that
/// says so; any other answer as it is.
pub fn upgrade_pending(command: &str, reply: Reply) -> Reply {
    if reply.text.contains("needs log encoding") {
        return Reply {
            text: format!(
                "{command} is not available until the cluster's upgrade is finished ({})",
                reply.text
            ),
            ..reply
        };
    }
    reply
}

impl<S: MailService> Session<S> {
    /// COPY / MOVE (`moving`) of `set` (UIDs if `uid`) of the selected mailbox to `mailbox`.
    /// MOVE sends `* OK [COPYUID ...]` and then the EXPUNGEs of the moved messages (RFC 6851
    /// §3.3), updating the view; COPY answers COPYUID in its tagged OK.
    pub(super) async fn copy_messages(
        &mut self,
        set: SequenceSet,
        mailbox: Mailbox<'static>,
        uid: bool,
        moving: bool,
    ) -> Reply {
        let command = self.command_name;
        let selected = self.selected.as_ref().expect("selected");
        if moving && selected.read_only {
            return Reply::no("The mailbox is read-only (EXAMINE)").code(other_code("CANNOT"));
        }
        let target = match mailbox_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let uids = match resolve(&selected.view, &set, uid) {
            Ok(uids) => uids,
            Err(reply) => return reply,
        };
        let (user, from) = (self.user.clone().expect("logged in"), selected.name.clone());
        if uids.is_empty() {
            // Nothing to copy (UIDs the mailbox does not have): OK without COPYUID, once the
            // target is known to exist.
            let (u, t) = (user, target);
            return match self.read(move |g| g.state().status(&u, &t).is_ok()).await {
                Ok(true) => Reply::ok(format!("{command} completed (no messages)")),
                Ok(false) => Reply::no("No such mailbox").code(Code::TryCreate),
                Err(reply) => reply,
            };
        }
        let uids = UidSet::from_ascending(uids);
        let op = match moving {
            true => Op::Move {
                user,
                from: from.clone(),
                to: target,
                uids,
            },
            false => Op::Copy {
                user,
                from: from.clone(),
                to: target,
                uids,
            },
        };
        match self.propose(op).await {
            Ok(Outcome::Copied {
                uid_validity, uids, ..
            }) => match copy_uid(uid_validity, &uids) {
                Some(code) => Reply::ok("COPY completed").code(code),
                None => Reply::ok("COPY completed (no messages)"),
            },
            Ok(Outcome::Moved {
                uid_validity,
                uids,
                expunged,
                ..
            }) => {
                if let Some(code) = copy_uid(uid_validity, &uids) {
                    self.server
                        .enqueue_status(Status::ok(None, Some(code), text("Moved")).expect("valid status"));
                }
                // The moved messages leave the view now (allowed during MOVE); so do expunges
                // buffered before (MOVE is no command that forbids EXPUNGE).
                // With QRESYNC, one `* VANISHED` (RFC 6851 §4.3).
                let view = &mut self.selected.as_mut().expect("selected").view;
                view.note_expunged(expunged.iter());
                for data in self.take_expunges() {
                    self.server.enqueue_data(data);
                }
                Reply::ok("MOVE completed")
            }
            Ok(Outcome::Rejected(Rejection::NoSuchMailbox { mailbox })) if mailbox != from => {
                Reply::no(format!("No mailbox {mailbox:?}")).code(Code::TryCreate)
            }
            Ok(Outcome::Rejected(rejection)) => rejection_reply(&rejection),
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => upgrade_pending(command, reply),
        }
    }
}

impl<S: MailService> Session<S> {
    /// RENAME INBOX `to` (RFC 3501 §6.3.5): every INBOX message moves to the new mailbox `to`;
    /// INBOX stays, empty.
    ///
    /// Not atomic: two log entries, the CREATE of `to` and one `Op::Move` of INBOX's `1:*`
    /// (that one atomic: no message is lost or doubled, whatever fails). If the second fails (no
    /// quorum, the node stopping) `to` exists, empty, and INBOX still holds its messages; a
    /// retry of the same RENAME INBOX then takes the existing *empty* `to` as the one the first
    /// attempt created and moves into it. A non-empty `to` is refused (`ALREADYEXISTS`), as
    /// RFC 3501 says for an existing name. Messages delivered to INBOX after the move stay there.
    pub(super) async fn rename_inbox(&mut self, to: String) -> Reply {
        let to = to.trim_end_matches(super::list::DELIMITER).to_string();
        if to == "INBOX" || to.is_empty() {
            return Reply::no("RENAME INBOX needs another name").code(other_code("CANNOT"));
        }
        let user = self.user.clone().expect("logged in");
        let (u, t) = (user.clone(), to.clone());
        let (encoding, target_messages) = match self
            .read(move |g| {
                let state = g.state();
                (
                    state.manifest().encoding,
                    state.status(&u, &t).ok().map(|s| s.exists),
                )
            })
            .await
        {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        // Checked before the CREATE, so that no empty mailbox is left behind by a move the
        // group cannot take yet (the Move op is log encoding 4).
        if encoding < 4 {
            return Reply::no(format!(
                "RENAME INBOX is not available until the cluster's upgrade is finished (it needs log encoding 4, the group is at {encoding})"
            ))
            .code(other_code("CANNOT"));
        }
        match target_messages {
            Some(0) => {} // a retry: see above.
            Some(_) => {
                return Reply::no(format!("mailbox {to:?} already exists")).code(other_code("ALREADYEXISTS"))
            }
            None => {
                let op = Op::CreateMailbox {
                    user: user.clone(),
                    mailbox: to.clone(),
                    mailbox_guid: crate::service::random_guid(),
                    uid_validity: u32::try_from(crate::service::now_seconds())
                        .unwrap_or(u32::MAX)
                        .max(1),
                };
                match self.propose(op).await {
                    Ok(Outcome::Created { .. }) => {}
                    Ok(Outcome::Rejected(rejection)) => return rejection_reply(&rejection),
                    Ok(other) => {
                        return Reply::no(format!("unexpected outcome {other:?}"))
                            .code(other_code("SERVERBUG"))
                    }
                    Err(reply) => return reply,
                }
            }
        }
        let op = Op::Move {
            user,
            from: "INBOX".to_string(),
            to,
            uids: UidSet::from_ranges([(1, u32::MAX)]).expect("one range"),
        };
        // A selected INBOX learns of the move by the refresh after the command (EXPUNGEs are
        // allowed after RENAME).
        match self.propose(op).await {
            Ok(Outcome::Moved { .. }) => Reply::ok("RENAME completed"),
            Ok(Outcome::Rejected(rejection)) => rejection_reply(&rejection),
            Ok(other) => Reply::no(format!("unexpected outcome {other:?}")).code(other_code("SERVERBUG")),
            Err(reply) => upgrade_pending("RENAME INBOX", reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceError;
    use imap_next::imap_types::response::StatusKind;

    #[test]
    fn copyuid_maps_source_ranges_to_one_target_range() {
        let map = UidMap {
            source: UidSet::parse("3:5,9").unwrap(),
            first_target: 20,
        };
        let range = |a, b| UidElement::Range(nonzero(a), nonzero(b));
        let Some(Code::CopyUid {
            uid_validity,
            source,
            destination,
        }) = copy_uid(77, &map)
        else {
            panic!("a COPYUID");
        };
        assert_eq!(uid_validity.get(), 77);
        assert_eq!(
            source.0.into_inner(),
            vec![range(3, 5), UidElement::Single(nonzero(9))]
        );
        assert_eq!(destination.0.into_inner(), vec![range(20, 23)]);
        let one = UidMap {
            source: UidSet::parse("4").unwrap(),
            first_target: 8,
        };
        let Some(Code::CopyUid { destination, .. }) = copy_uid(77, &one) else {
            panic!("a COPYUID");
        };
        assert_eq!(destination.0.into_inner(), vec![UidElement::Single(nonzero(8))]);
        assert!(copy_uid(77, &UidMap::empty()).is_none());
    }

    #[test]
    fn a_group_below_encoding_4_answers_cannot_with_a_clear_text() {
        let error = ServiceError::NotEnabled(crate::txn::encoding::NotEnabled {
            op: "copy",
            needs: 4,
            active: 3,
        });
        let reply = upgrade_pending("COPY", super::super::reply::service_reply(&error));
        assert_eq!(reply.kind, StatusKind::No);
        assert_eq!(reply.code, Some(other_code("CANNOT")));
        assert!(
            reply
                .text
                .starts_with("COPY is not available until the cluster's upgrade is finished"),
            "{}",
            reply.text
        );
        let other = upgrade_pending("COPY", Reply::no("busy"));
        assert_eq!(other.text, "busy");
    }
}
