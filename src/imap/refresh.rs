//! What a session learns of its selected mailbox between its own commands: the refresh after
//! every command (FETCH FLAGS of changed messages, EXISTS, and EXPUNGE — VANISHED once QRESYNC
//! is enabled — only where RFC 3501 §7.4.1 allows; otherwise the view keeps them for later), and
//! IDLE (RFC 2177), woken by the node's applies of the user's group (`MailService::watch`).

use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::{Code, CommandContinuationRequest, Data, Status};
use imap_next::server::Event;

use super::mailboxes::nonzero;
use super::reply::{text, Reply};
use super::session::Session;
use super::transport::TransportError;
use crate::service::MailService;
use crate::state_machine::read::ReadError;

/// How often an idling session looks at its mailbox when the node gives no apply signal.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

impl<S: MailService> Session<S> {
    /// Tells the session what changed in its selected mailbox since it last looked: FETCH FLAGS
    /// of changed messages, EXISTS of new ones and — when `allow_expunge` (not during FETCH,
    /// STORE, SEARCH; RFC 3501 §7.4.1) — EXPUNGE of removed ones; otherwise those wait in the
    /// view. A mailbox deleted or renamed meanwhile ends the session with BYE.
    pub(super) async fn refresh_selected(&mut self, allow_expunge: bool) {
        let Some(selected) = &self.selected else {
            return;
        };
        let (user, name) = (self.user.clone().expect("logged in"), selected.name.clone());
        let (since, uid_validity) = (selected.view.highest_modseq, selected.uid_validity);
        let read = self
            .read(move |g| -> Result<_, ReadError> {
                let state = g.state();
                let changes = state.changes_since(&user, &name, since)?;
                let exists = state.status(&user, &name)?.exists;
                Ok((changes, exists))
            })
            .await;
        let (changes, exists) = match read {
            // The node could not read (stopped group): nothing to tell now.
            Err(_) => return,
            Ok(Err(_)) => return self.mailbox_gone().await,
            Ok(Ok(read)) => read,
        };
        if changes.uid_validity != uid_validity {
            return self.mailbox_gone().await;
        }
        let selected = self.selected.as_mut().expect("selected");
        selected.view.note_expunged(changes.vanished.iter());
        let last = selected.view.last_uid();
        selected
            .view
            .note_appended(changes.changed.iter().map(|r| r.uid).filter(|&uid| uid > last));
        selected.view.highest_modseq = selected.view.highest_modseq.max(changes.highest_modseq);
        let own = std::mem::take(&mut selected.own_modseqs);
        for record in changes
            .changed
            .iter()
            .filter(|r| r.uid <= last && !own.contains(&r.modseq))
        {
            if !self
                .selected
                .as_ref()
                .expect("selected")
                .view
                .is_expunged(record.uid)
            {
                self.send_flags(record, true);
            }
        }
        self.announce(allow_expunge);
        let view = &self.selected.as_ref().expect("selected").view;
        if self.qresync {
            // RFC 7162 erratum 1810: while expunges wait (during FETCH, STORE, SEARCH), MODSEQs
            // above theirs may have gone out; a client that stopped now and resynchronized from
            // the highest it saw would never learn of them. This HIGHESTMODSEQ is below them.
            if let Some(modseq) = view.expunged_below().and_then(std::num::NonZeroU64::new) {
                let status = Status::ok(None, Some(Code::HighestModSeq(modseq)), text("Expunges pending"));
                self.server.enqueue_status(status.expect("valid status"));
            }
        }
        let view = &self.selected.as_ref().expect("selected").view;
        if allow_expunge && view.exists() != exists {
            // The index's tombstones did not cover the gap: compare every UID.
            self.resync().await;
        }
    }

    /// Sends what the view buffered: the expunges (if allowed), then EXISTS.
    fn announce(&mut self, allow_expunge: bool) {
        let mut responses = Vec::new();
        if allow_expunge {
            responses.extend(self.take_expunges());
        }
        let selected = self.selected.as_mut().expect("selected");
        if selected.view.take_appended() {
            responses.push(Data::Exists(selected.view.exists()));
        }
        for data in responses {
            self.server.enqueue_data(data);
        }
    }

    /// Applies the view's buffered expunges and returns how to tell them: one `* VANISHED` of
    /// their UIDs once QRESYNC is enabled (RFC 7162 §3.2.10), else `* n EXPUNGE` each.
    pub(super) fn take_expunges(&mut self) -> Vec<Data<'static>> {
        let qresync = self.qresync;
        let view = &mut self.selected.as_mut().expect("selected").view;
        if qresync {
            super::qresync::vanished(view.take_vanished(), false)
                .into_iter()
                .collect()
        } else {
            view.take_expunges()
                .into_iter()
                .map(|seq| Data::Expunge(nonzero(seq)))
                .collect()
        }
    }

    /// Brings the view to the index's UIDs by comparing all of them.
    async fn resync(&mut self) {
        let selected = self.selected.as_ref().expect("selected");
        let (user, name) = (self.user.clone().expect("logged in"), selected.name.clone());
        let Ok(Ok(records)) = self
            .read(move |g| g.state().fetch(&user, &name, 1, u32::MAX, usize::MAX))
            .await
        else {
            return;
        };
        let present: std::collections::BTreeSet<u32> = records.iter().map(|r| r.uid).collect();
        let selected = self.selected.as_mut().expect("selected");
        let gone: Vec<u32> = selected
            .view
            .uids()
            .iter()
            .copied()
            .filter(|u| !present.contains(u))
            .collect();
        selected.view.note_expunged(gone);
        selected.view.note_appended(present);
        self.announce(true);
    }

    async fn mailbox_gone(&mut self) {
        self.selected = None;
        self.bye("The selected mailbox was deleted or renamed elsewhere")
            .await;
    }

    /// IDLE (RFC 2177): changes are sent as this node applies them, until DONE; false when the
    /// session is over.
    pub(super) async fn idle(&mut self, tag: Tag<'static>) -> bool {
        self.command_name = "IDLE";
        if self.user.is_none() {
            let status =
                Status::bad(Some(tag), None, text("IDLE needs a login first")).expect("valid status");
            if let Err(status) = self.server.idle_reject(status) {
                self.server.enqueue_status(status);
            }
            return true;
        }
        let accept = CommandContinuationRequest::basic(None, "idling").expect("valid continuation");
        if self.server.idle_accept(accept).is_err() {
            return true;
        }
        self.refresh_selected(true).await;
        let deadline = tokio::time::Instant::now() + self.shared.config.autologout;
        loop {
            if self.is_logging_out() {
                return false;
            }
            enum Wake {
                Event(Result<Event, TransportError>),
                Changed,
                TimedOut,
            }
            let wake = {
                let applied = &mut self.applied;
                let poll = if applied.is_some() {
                    IDLE_POLL * 15
                } else {
                    IDLE_POLL
                };
                tokio::select! {
                    event = tokio::time::timeout_at(deadline, self.conn.next(&mut self.server)) => match event {
                        Ok(event) => Wake::Event(event),
                        Err(_) => Wake::TimedOut,
                    },
                    () = applied_changed(applied) => Wake::Changed,
                    () = tokio::time::sleep(poll) => Wake::Changed,
                }
            };
            match wake {
                Wake::Event(Ok(Event::IdleDoneReceived)) => {
                    self.finish(tag, Reply::ok("IDLE terminated"));
                    return true;
                }
                Wake::Event(Ok(_)) => {}
                Wake::Event(Err(TransportError::Protocol(_))) => {
                    self.server.enqueue_status(
                        Status::bad(None, None, text("Expected DONE")).expect("valid status"),
                    );
                }
                Wake::Event(Err(_)) => return false,
                Wake::TimedOut => {
                    self.bye("Autologout: idle for too long").await;
                    return false;
                }
                Wake::Changed => self.refresh_selected(true).await,
            }
        }
    }
}

/// Resolves when the node applied more of the user's group; never without a signal.
async fn applied_changed(applied: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match applied {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                // The node gives no signal (any more): polling only.
                *applied = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
