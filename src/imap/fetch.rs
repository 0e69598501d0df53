//! FETCH and UID FETCH (RFC 3501 §6.4.5, RFC 7162 CHANGEDSINCE and QRESYNC's VANISHED, the
//! latter answered by [`super::qresync`]): FLAGS, UID, INTERNALDATE,
//! RFC822.SIZE, MODSEQ, and the whole message (`BODY[]`, `BODY.PEEK[]`, `RFC822`, with a
//! partial `<origin.length>`) read through [`MailService::open_body`]. A non-PEEK body fetch
//! (and RFC822.TEXT) sets `\Seen` in a read-write mailbox (a replicated STORE before the answer).
//!
//! What needs the message's MIME structure — ENVELOPE, BODYSTRUCTURE, BODY, `BODY[section]`
//! (`BODY.PEEK` too, with `<partial>`), RFC822.HEADER, RFC822.TEXT — becomes [`Want::Mime`] in
//! [`plan`] and is answered by `render_mime` from the message's bytes, cut once per message
//! ([`ParsedMessage`]). BINARY is not built (`NO [CANNOT]`).
//!
//! Bodies are read in [`batches`] of consecutive messages (at most [`FETCH_BATCH_BYTES`] in all,
//! or one larger message): the bytes this node's store holds for a batch come from one hand-off
//! to a blocking thread ([`MailService::read_local_bodies`]), not two per message, which on a
//! loaded machine cost more than reading the bytes (`scripts/bench/vs-dovecot.sh`); a body the
//! store lacks is fetched alone ([`MailService::open_body`]). A batch's answers are written
//! together while the next batch is read, so at most two batches' bytes are in memory.
//!
//! ENVELOPE, BODYSTRUCTURE and BODY come first from the node's
//! [`MimeCache`](super::mime_cache::MimeCache) (by body id, shared by all sessions; an entry is
//! never stale: a body's bytes never change under its id): a message is read only when an item
//! it is asked for is not cached, or another item needs its bytes, and what is computed then is
//! kept. So `FETCH 1:* (FLAGS ENVELOPE)` after the first reads no body, as Dovecot answers it
//! from its cache file (and a message answered from the cache alone is answered even while no
//! member could serve its bytes). Such answers are written a batch at a time.
//!
//! A message whose bytes cannot be read (no member has a copy within the deadline, or it was
//! stored by reference without bytes): it gets no FETCH response at all — never an empty or
//! partial one a client would cache as its content — the other messages are answered, and the
//! tagged answer is NO naming the UIDs (RFC 3501 §6.4.5 "NO - fetch error: can't fetch that
//! data"). This is Dovecot's `imap_fetch_failure = no-after`; its default disconnects instead,
//! which a client takes as a network failure and retries blindly.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;

use imap_next::imap_types::command::FetchModifier;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::SequenceSet;

use super::mailboxes::nonzero;
use super::mime::{self, ParsedMessage};
use super::mime_cache::{MimeCache, MimeItem};
use super::reply::{other_code, Reply};
use super::selected::{flags_item, resolve};
use super::session::Session;
use crate::bodies::BodyId;
use crate::service::MailService;
use crate::state_machine::read::MessageView;
use crate::txn::{Op, Outcome, StoreMode, UidSet};

/// The most message bytes a FETCH reads from the store in one batch (a larger message is a batch
/// of its own): what it holds in memory at a time.
pub const FETCH_BATCH_BYTES: u64 = 1 << 20;
/// The most messages in one batch.
pub const FETCH_BATCH_MESSAGES: usize = 256;

/// How a FETCH that sends message bytes splits its messages (their sizes, in order) into
/// batches read together: the batches' lengths, in order, adding up to `sizes.len()`. A batch
/// takes consecutive messages while they fit in [`FETCH_BATCH_BYTES`] and
/// [`FETCH_BATCH_MESSAGES`]; a message larger than the byte bound is a batch of its own.
pub fn batches(sizes: &[u64]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let (mut length, mut bytes) = (0usize, 0u64);
    for &size in sizes {
        if length > 0 && (length == FETCH_BATCH_MESSAGES || bytes.saturating_add(size) > FETCH_BATCH_BYTES) {
            lengths.push(length);
            (length, bytes) = (0, 0);
        }
        length += 1;
        bytes = bytes.saturating_add(size);
    }
    if length > 0 {
        lengths.push(length);
    }
    debug_assert_eq!(lengths.iter().sum::<usize>(), sizes.len());
    lengths
}

/// Whether `super::mime` answers the MIME items yet (the seam: false until it is wired).
pub const MIME_READY: bool = true;

/// One item a FETCH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Flags,
    Uid,
    InternalDate,
    Size,
    ModSeq,
    /// The whole message: `BODY[]` (`rfc822` false) or `RFC822`, maybe partial.
    Message {
        peek: bool,
        rfc822: bool,
        partial: Option<(u32, u32)>,
    },
    /// An item computed from the message's MIME structure (`super::mime`).
    Mime(MessageDataItemName<'static>),
}

/// The items of a FETCH, macros expanded; `NO [CANNOT]` for those not built yet.
pub fn plan(names: MacroOrMessageDataItemNames<'static>) -> Result<Vec<Want>, Reply> {
    let names = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(|n| n.to_owned_static()).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(names) => names,
    };
    let mut wants = Vec::new();
    for name in names {
        let want = match name {
            MessageDataItemName::Flags => Want::Flags,
            MessageDataItemName::Uid => Want::Uid,
            MessageDataItemName::InternalDate => Want::InternalDate,
            MessageDataItemName::Rfc822Size => Want::Size,
            MessageDataItemName::ModSeq => Want::ModSeq,
            MessageDataItemName::Rfc822 => Want::Message {
                peek: false,
                rfc822: true,
                partial: None,
            },
            MessageDataItemName::BodyExt {
                section: None,
                partial,
                peek,
            } => Want::Message {
                peek,
                rfc822: false,
                partial: partial.map(|(origin, length)| (origin, length.get())),
            },
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                return Err(Reply::not_yet(&format!("FETCH {}", item_label(&name))));
            }
            other => {
                if !MIME_READY {
                    return Err(Reply::not_yet(&format!("FETCH {}", item_label(&other))));
                }
                Want::Mime(other)
            }
        };
        if !wants.contains(&want) {
            wants.push(want);
        }
    }
    Ok(wants)
}

/// How an item is named in a "not yet supported" answer.
fn item_label(name: &MessageDataItemName<'_>) -> &'static str {
    match name {
        MessageDataItemName::Envelope => "ENVELOPE",
        MessageDataItemName::BodyStructure => "BODYSTRUCTURE",
        MessageDataItemName::Body => "BODY",
        MessageDataItemName::BodyExt { .. } => "BODY[section]",
        MessageDataItemName::Rfc822Header => "RFC822.HEADER",
        MessageDataItemName::Rfc822Text => "RFC822.TEXT",
        MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => "BINARY",
        _ => "item",
    }
}

trait ToOwnedStatic {
    fn to_owned_static(self) -> MessageDataItemName<'static>;
}

impl ToOwnedStatic for MessageDataItemName<'_> {
    fn to_owned_static(self) -> MessageDataItemName<'static> {
        use imap_next::imap_types::IntoStatic;
        self.into_static()
    }
}

/// The value of the MIME item `name` for a message cut once (`parsed`).
fn render_mime(
    name: &MessageDataItemName<'static>,
    parsed: &ParsedMessage<'_>,
) -> Option<MessageDataItem<'static>> {
    Some(match name {
        MessageDataItemName::Envelope => MessageDataItem::Envelope(parsed.envelope()),
        MessageDataItemName::BodyStructure => MessageDataItem::BodyStructure(parsed.body_structure(true)),
        MessageDataItemName::Body => MessageDataItem::Body(parsed.body_structure(false)),
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(mime::literal(parsed.section(Some(&Section::Header(None)))))
        }
        MessageDataItemName::Rfc822Text => {
            MessageDataItem::Rfc822Text(mime::literal(parsed.section(Some(&Section::Text(None)))))
        }
        MessageDataItemName::BodyExt { section, partial, .. } => {
            let data = parsed.section(section.as_ref());
            let (origin, data) = match partial {
                Some((origin, count)) => (
                    Some(*origin),
                    mime::literal(Cow::Borrowed(mime::partial(&data, *origin, count.get()))),
                ),
                None => (None, mime::literal(data)),
            };
            MessageDataItem::BodyExt {
                section: section.clone(),
                origin,
                data,
            }
        }
        _ => return None,
    })
}

/// Where `item` is in `cacheable` (the FETCH's cacheable items: it is there).
fn slot_of(cacheable: &[MimeItem], item: MimeItem) -> usize {
    cacheable
        .iter()
        .position(|&c| c == item)
        .expect("a FETCH's cacheable items include each it asks")
}

/// The tagged NO of a FETCH some of whose messages could not be read: the first failure's code,
/// and which messages got no answer.
fn fetch_failed(first: Reply, uids: &[u32]) -> Reply {
    let listed: Vec<String> = uids.iter().take(10).map(u32::to_string).collect();
    let more = if uids.len() > 10 { " ..." } else { "" };
    Reply {
        text: format!(
            "FETCH incomplete: no answer for UID {}{more} ({}); the other messages were answered",
            listed.join(","),
            first.text
        ),
        ..first
    }
}

/// A record's INTERNALDATE.
fn internal_date(seconds: i64) -> DateTime {
    let date = chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .fixed_offset();
    DateTime::try_from(date).unwrap_or_else(|_| {
        DateTime::try_from(
            chrono::DateTime::from_timestamp(0, 0)
                .unwrap_or_default()
                .fixed_offset(),
        )
        .expect("the epoch is a valid IMAP date")
    })
}

/// One batch of a FETCH ([`batches`]): its records, what the MIME cache holds of each, and
/// which must be read.
struct Batch {
    records: Vec<MessageView>,
    cached: Vec<Vec<Option<Arc<MessageDataItem<'static>>>>>,
    reads: Vec<bool>,
    /// The bodies of the messages to read, in order.
    ids: Vec<BodyId>,
}

impl Batch {
    fn prepare(
        records: Vec<MessageView>,
        cache: &MimeCache,
        cacheable: &[MimeItem],
        needs_bytes: bool,
        always_bytes: bool,
    ) -> Batch {
        // What the cache holds of each message's cacheable items; a message is read only when
        // an item it is asked for is not there.
        let cached: Vec<Vec<Option<Arc<MessageDataItem<'static>>>>> = records
            .iter()
            .map(|record| {
                cacheable
                    .iter()
                    .map(|&item| cache.get(BodyId(record.body?), item))
                    .collect()
            })
            .collect();
        let reads: Vec<bool> = cached
            .iter()
            .map(|hits| needs_bytes && (always_bytes || hits.iter().any(Option::is_none)))
            .collect();
        let ids = records
            .iter()
            .zip(&reads)
            .filter(|(_, &read)| read)
            .filter_map(|(r, _)| r.body.map(BodyId))
            .collect();
        Batch {
            records,
            cached,
            reads,
            ids,
        }
    }
}

/// The bytes this node's store holds of `batch`'s bodies, in order ([`MailService::read_local_bodies`]).
async fn read_batch<S: MailService>(service: &S, user: &str, batch: &Batch) -> Vec<Option<Vec<u8>>> {
    if batch.ids.is_empty() {
        Vec::new()
    } else {
        service.read_local_bodies(user, batch.ids.clone()).await
    }
}

impl<S: MailService> Session<S> {
    pub(super) async fn fetch(
        &mut self,
        set: SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
        modifiers: Vec<FetchModifier>,
    ) -> Reply {
        let mut wants = match plan(names) {
            Ok(wants) => wants,
            Err(reply) => return reply,
        };
        let mut changed_since = None;
        let mut vanished = false;
        for modifier in modifiers {
            match modifier {
                FetchModifier::ChangedSince(modseq) => changed_since = Some(modseq.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        let vanished_since = match self.vanished_modifier(vanished, uid, changed_since) {
            Ok(since) => since,
            Err(reply) => return reply,
        };
        if uid && !wants.contains(&Want::Uid) {
            wants.insert(0, Want::Uid);
        }
        if (changed_since.is_some() || wants.contains(&Want::ModSeq)) && !wants.contains(&Want::ModSeq) {
            wants.push(Want::ModSeq);
        }
        if wants.contains(&Want::ModSeq) {
            self.condstore = true;
        }
        if let Some(since) = vanished_since {
            if let Err(reply) = self.vanished_earlier(&set, since).await {
                return reply;
            }
        }
        let selected = self.selected.as_ref().expect("selected");
        let uids = match resolve(&selected.view, &set, uid) {
            Ok(uids) => uids,
            Err(reply) => return reply,
        };
        if uids.is_empty() {
            return Reply::ok("FETCH completed (no messages)");
        }
        let (user, name, read_only) = (
            self.user.clone().expect("logged in"),
            selected.name.clone(),
            selected.read_only,
        );
        let mut records = match self.records(&user, &name, &uids).await {
            Ok(records) => records,
            Err(reply) => return reply,
        };
        // A non-PEEK body fetch sets \Seen first, so the answer shows it (RFC 3501 §6.4.5).
        let sets_seen = !read_only
            && wants.iter().any(|w| {
                matches!(
                    w,
                    Want::Message { peek: false, .. }
                        | Want::Mime(MessageDataItemName::BodyExt { peek: false, .. })
                        | Want::Mime(MessageDataItemName::Rfc822Text)
                )
            });
        let mut seen_now = std::collections::BTreeSet::new();
        if sets_seen {
            let unseen: Vec<u32> = records
                .iter()
                .filter(|r| !r.flags.iter().any(|f| f == "\\Seen"))
                .map(|r| r.uid)
                .collect();
            if !unseen.is_empty() {
                let op = Op::Store {
                    user: user.clone(),
                    mailbox: name.clone(),
                    uids: UidSet::from_ascending(unseen.iter().copied()),
                    mode: StoreMode::Add,
                    flags: vec!["\\Seen".to_string()],
                    unchanged_since: None,
                };
                match self.propose(op).await {
                    Ok(Outcome::Stored { modseq, .. }) => self.note_own_modseq(modseq),
                    Ok(Outcome::Rejected(rejection)) => return super::reply::rejection_reply(&rejection),
                    Ok(other) => {
                        return Reply::no(format!("unexpected outcome {other:?}"))
                            .code(other_code("SERVERBUG"))
                    }
                    Err(reply) => return reply,
                }
                seen_now.extend(unseen);
                records = match self.records(&user, &name, &uids).await {
                    Ok(records) => records,
                    Err(reply) => return reply,
                };
            }
        }
        let mut failed: Option<(Reply, Vec<u32>)> = None;
        // The items the node's MIME cache answers (`super::mime_cache`), in `wants` order; the
        // others that need a message's bytes need them whatever the cache holds.
        let cacheable: Vec<MimeItem> = wants
            .iter()
            .filter_map(|w| match w {
                Want::Mime(name) => MimeItem::of(name),
                _ => None,
            })
            .collect();
        let always_bytes = wants.iter().any(|w| match w {
            Want::Message { .. } => true,
            Want::Mime(name) => MimeItem::of(name).is_none(),
            _ => false,
        });
        let needs_bytes = always_bytes || !cacheable.is_empty();
        // Whether the message must be cut into its MIME tree once its bytes are read: ENVELOPE
        // needs only the top header (`mime::envelope`).
        let needs_tree = |hits: &[Option<Arc<MessageDataItem<'static>>>]| {
            wants.iter().any(|w| match w {
                Want::Mime(MessageDataItemName::Envelope) => false,
                Want::Mime(name) => match MimeItem::of(name) {
                    Some(item) => hits[slot_of(&cacheable, item)].is_none(),
                    None => true,
                },
                _ => false,
            })
        };
        let (mut hits_total, mut misses_total) = (0u64, 0u64);
        records.retain(|record| changed_since.is_none_or(|since| record.modseq > since));
        let lengths = if needs_bytes {
            batches(&records.iter().map(|r| r.size).collect::<Vec<_>>())
        } else {
            vec![records.len()]
        };
        let mut records = records.into_iter();
        let shared = self.shared.clone();
        let prepare = |length: usize, records: &mut std::vec::IntoIter<MessageView>| {
            let batch: Vec<MessageView> = records.by_ref().take(length).collect();
            Batch::prepare(batch, &shared.mime_cache, &cacheable, needs_bytes, always_bytes)
        };
        // Batch k + 1's bytes are read while batch k's answers are written (below).
        let mut next = lengths.first().map(|&length| prepare(length, &mut records));
        let mut next_local = match &next {
            Some(batch) => read_batch(&*shared.service, &user, batch).await,
            None => Vec::new(),
        };
        for k in 0..lengths.len() {
            let Batch {
                records: batch,
                mut cached,
                reads,
                ..
            } = next.take().expect("prepared before");
            // The bodies to read that this node holds, read in one go; the others one by one
            // below.
            let mut local = std::mem::take(&mut next_local).into_iter();
            // The last response of the batch not yet written (a message answered without its
            // bytes is not waited for one by one).
            let mut unsent = None;
            for ((record, read), hits) in batch.into_iter().zip(reads).zip(cached.iter_mut()) {
                let here = match record.body {
                    Some(_) if read => local.next().flatten(),
                    _ => None,
                };
                let view = &self.selected.as_ref().expect("selected").view;
                let Some(seq) = view.seq_of(record.uid) else {
                    continue;
                };
                let bytes = if read {
                    let read = match here {
                        Some(bytes) => Ok(bytes),
                        None => self.message_bytes(&user, &record).await,
                    };
                    match read {
                        Ok(bytes) => Some(bytes),
                        Err(reply) => {
                            // No FETCH response for this message (module doc).
                            failed
                                .get_or_insert_with(|| (reply, Vec::new()))
                                .1
                                .push(record.uid);
                            continue;
                        }
                    }
                } else {
                    None
                };
                let parsed = match &bytes {
                    Some(bytes) if needs_tree(hits) => Some(ParsedMessage::parse(bytes)),
                    _ => None,
                };
                let mut items = Vec::new();
                for want in &wants {
                    items.push(match want {
                        Want::Flags => flags_item(&record),
                        Want::Uid => MessageDataItem::Uid(nonzero(record.uid)),
                        Want::InternalDate => {
                            MessageDataItem::InternalDate(internal_date(record.internal_date))
                        }
                        Want::Size => {
                            MessageDataItem::Rfc822Size(u32::try_from(record.size).unwrap_or(u32::MAX))
                        }
                        Want::ModSeq => match NonZeroU64::new(record.modseq) {
                            Some(modseq) => MessageDataItem::ModSeq(modseq),
                            None => continue,
                        },
                        Want::Message { rfc822, partial, .. } => {
                            let all = bytes.as_deref().unwrap_or_default();
                            let (origin, data) = match partial {
                                Some((origin, length)) => {
                                    (Some(*origin), mime::partial(all, *origin, *length))
                                }
                                None => (None, all),
                            };
                            let data = mime::literal(Cow::Borrowed(data));
                            if *rfc822 {
                                MessageDataItem::Rfc822(data)
                            } else {
                                MessageDataItem::BodyExt {
                                    section: None,
                                    origin,
                                    data,
                                }
                            }
                        }
                        Want::Mime(name) => match MimeItem::of(name) {
                            Some(item) => match hits[slot_of(&cacheable, item)].take() {
                                Some(hit) => {
                                    hits_total += 1;
                                    Arc::unwrap_or_clone(hit)
                                }
                                None => {
                                    // A read message has a body id: without one the read failed.
                                    let (Some(bytes), Some(body)) = (&bytes, record.body) else {
                                        continue;
                                    };
                                    misses_total += 1;
                                    let value = item.compute(bytes, parsed.as_ref());
                                    self.shared.mime_cache.insert(BodyId(body), item, value.clone());
                                    value
                                }
                            },
                            None => match parsed.as_ref().and_then(|parsed| render_mime(name, parsed)) {
                                Some(item) => item,
                                None => continue,
                            },
                        },
                    });
                }
                if seen_now.contains(&record.uid) && !wants.contains(&Want::Flags) {
                    items.push(flags_item(&record));
                }
                drop(parsed);
                let Ok(items) = Vec1::try_from(items) else {
                    continue;
                };
                let handle = self.server.enqueue_data(Data::Fetch {
                    seq: nonzero(seq),
                    items,
                });
                if needs_bytes {
                    unsent = Some(handle);
                }
            }
            // The batch's answers are written (in large writes, `Connection::next`) while the
            // next batch's bytes are read: at most two batches' bytes are in memory.
            next = lengths.get(k + 1).map(|&length| prepare(length, &mut records));
            let read = async {
                match &next {
                    Some(batch) => read_batch(&*shared.service, &user, batch).await,
                    None => Vec::new(),
                }
            };
            next_local = match unsent {
                Some(handle) => tokio::join!(self.send_until(handle), read).1,
                None => read.await,
            };
        }
        super::metrics::record_mime_cache(hits_total, misses_total);
        match failed {
            Some((first, uids)) => fetch_failed(first, &uids),
            None => Reply::ok("FETCH completed"),
        }
    }

    /// The records of `uids` (ascending) as this node's index has them.
    pub(super) async fn records(
        &mut self,
        user: &str,
        name: &str,
        uids: &[u32],
    ) -> Result<Vec<MessageView>, Reply> {
        let (first, last) = (uids[0], uids[uids.len() - 1]);
        let (u, n) = (user.to_string(), name.to_string());
        let wanted: std::collections::BTreeSet<u32> = uids.iter().copied().collect();
        let records = self
            .read(move |g| g.state().fetch(&u, &n, first, last, usize::MAX))
            .await?
            .map_err(|e| {
                Reply::no(format!("The selected mailbox is gone: {e}")).code(other_code("NONEXISTENT"))
            })?;
        Ok(records.into_iter().filter(|r| wanted.contains(&r.uid)).collect())
    }

    /// A message's bytes, from the body store (this node's copy or a member's); the NO to
    /// answer when they cannot be had.
    pub(super) async fn message_bytes(&mut self, user: &str, record: &MessageView) -> Result<Vec<u8>, Reply> {
        let Some(body) = record.body else {
            // Appended by reference through the HTTP API: there are no bytes to send.
            return Err(
                Reply::no(format!("Message UID {} has no stored body", record.uid))
                    .code(other_code("NONEXISTENT")),
            );
        };
        let file = self
            .shared
            .service
            .open_body(user, BodyId(body))
            .await
            .map_err(|e| match e {
                crate::service::ServiceError::Unavailable { .. } => {
                    tracing::debug!(uid = record.uid, error = %e, "imap: a message body cannot be read");
                    Reply::no(format!(
                        "The body of message UID {} cannot be read now (no member has a copy); try again later",
                        record.uid
                    ))
                    .code(other_code("UNAVAILABLE"))
                }
                e => super::reply::service_reply(&e),
            })?;
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut bytes = Vec::new();
            let mut file = file;
            file.read_to_end(&mut bytes).map(|_| bytes)
        })
        .await
        .map_err(|e| Reply::no(e.to_string()).code(other_code("SERVERBUG")))?
        .map_err(|e| Reply::no(format!("reading the message: {e}")).code(other_code("SERVERBUG")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_next::imap_types::core::NString;
    use imap_next::imap_types::fetch::{Macro, Part};

    #[test]
    fn macros_expand_to_mime_items_and_binary_is_not_built() {
        let all = plan(MacroOrMessageDataItemNames::Macro(Macro::All)).unwrap();
        assert_eq!(
            all,
            vec![
                Want::Flags,
                Want::InternalDate,
                Want::Size,
                Want::Mime(MessageDataItemName::Envelope)
            ]
        );
        let full = plan(MacroOrMessageDataItemNames::Macro(Macro::Full)).unwrap();
        assert_eq!(full.last(), Some(&Want::Mime(MessageDataItemName::Body)));
        let binary = MessageDataItemName::Binary {
            section: vec![std::num::NonZeroU32::new(1).unwrap()],
            partial: None,
            peek: true,
        };
        let reply = plan(MacroOrMessageDataItemNames::MessageDataItemNames(vec![binary])).unwrap_err();
        assert!(reply.text.contains("BINARY"), "{}", reply.text);
    }

    #[test]
    fn sections_and_partials_come_from_one_parse() {
        let bytes = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n";
        let parsed = ParsedMessage::parse(bytes);
        let part2 = MessageDataItemName::BodyExt {
            section: Some(Section::Part(Part(Vec1::from(
                std::num::NonZeroU32::new(2).unwrap(),
            )))),
            partial: Some((1, std::num::NonZeroU32::new(5).unwrap())),
            peek: true,
        };
        match render_mime(&part2, &parsed) {
            Some(MessageDataItem::BodyExt {
                origin: Some(1),
                data: NString(Some(data)),
                ..
            }) => assert_eq!(data.as_ref(), b"econd"),
            other => panic!("{other:?}"),
        }
        match render_mime(&MessageDataItemName::Rfc822Header, &parsed) {
            Some(MessageDataItem::Rfc822Header(NString(Some(data)))) => {
                assert!(data.as_ref().starts_with(b"Subject: x\r\n") && data.as_ref().ends_with(b"\r\n\r\n"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            render_mime(&MessageDataItemName::Envelope, &parsed),
            Some(MessageDataItem::Envelope(_))
        ));
    }

    #[test]
    fn batches_hold_at_most_a_mebibyte_or_256_messages_and_a_big_message_alone() {
        assert_eq!(batches(&[]), Vec::<usize>::new());
        // 1,000 messages of 4 KiB: 256 fill a MiB exactly, and the count bound is 256 too.
        assert_eq!(batches(&[4096; 1000]), vec![256, 256, 256, 232]);
        // 300 messages of 100 bytes: the count bound alone.
        assert_eq!(batches(&[100; 300]), vec![256, 44]);
        // A 2 MiB message between small ones is a batch of its own.
        let mib = 1 << 20;
        assert_eq!(batches(&[10, 2 * mib, 10, mib - 10, 1]), vec![1, 1, 2, 1]);
    }

    #[test]
    fn a_failed_fetch_names_the_messages_it_left_out() {
        let first = Reply::no("The body of message UID 4 cannot be read now").code(other_code("UNAVAILABLE"));
        let reply = fetch_failed(first, &[4, 9]);
        assert_eq!(reply.kind, imap_next::imap_types::response::StatusKind::No);
        assert!(
            reply
                .text
                .starts_with("FETCH incomplete: no answer for UID 4,9 ("),
            "{}",
            reply.text
        );
        assert!(reply.code.is_some());
    }
}
