//! SEARCH keys (RFC 3501 §6.4.4, MODSEQ of RFC 7162 §3.1.5) evaluated against one message.
//!
//! The server fills [`MessageFacts`] from the index and hands the body over as [`LazyBytes`],
//! which is read only when a key needs it ([`needs_body`]); within an AND, keys that need no
//! body are tried first, so `UNSEEN FROM x` on a seen message never loads a body.
//!
//! Decisions:
//! - **\Recent is never set in Dovetail**: a cluster has no single "first session" to give it
//!   to (RFC 3501 §2.3.2 ties it to one session). So RECENT matches nothing, NEW (RECENT
//!   UNSEEN) nothing, and OLD (NOT RECENT) every message. imap-types offers the three keys as
//!   plain variants, nothing more.
//! - **Dates**: BEFORE, ON and SINCE compare the calendar day of the internal date in UTC with
//!   the key's date; SENTBEFORE, SENTON and SENTSINCE the day written in the `Date:` header, its
//!   time and zone disregarded (RFC 3501 §6.4.4); a missing or unparsable `Date:` matches none
//!   of the three (Dovecot takes it as 1970-01-01: `search_tests.rs` lists that difference).
//! - **Text**: BCC, BODY, CC, FROM, HEADER, SUBJECT, TEXT and TO match a substring, compared
//!   Unicode case-insensitively (both sides through `text::fold`), in values decoded by mail-parser:
//!   encoded words and charsets decoded, address fields as `name <address>` lists, folds made
//!   one space. HEADER and the address and subject keys look at the message's own header; BODY
//!   at the decoded text parts (text/*, those of enclosed messages too; not preamble, epilogue,
//!   MIME headers or non-text parts); TEXT at the body and every header line of the message,
//!   its MIME parts and enclosed messages, `name: value`. `HEADER name ""` matches every
//!   message that has the field. The server turns the command's CHARSET into Unicode before
//!   calling. These choices were checked against Dovecot 2.3 (`search_tests.rs`).
//! - **Flags** compare ASCII case-insensitively (RFC 3501 §2.3.2: flags are case-insensitive).
//! - **MODSEQ**: the message's mod-sequence is at least the key's. Dovetail keeps one
//!   mod-sequence per message, so the entry name and type are ignored, as RFC 7162 §3.1.5 asks
//!   of such a server.
//! - `*` in a sequence set (RFC 3501 §9 `seq-number`) is the largest number in use, from
//!   [`SearchContext`]; `n:m` is the same set as `m:n`.

mod text;

use imap_types::{
    core::AString,
    datetime::NaiveDate,
    search::SearchKey,
    sequence::{Sequence, SequenceSet},
};

use text::{extract, fold, Text};

/// What the index knows about one message.
#[derive(Debug, Clone)]
pub struct MessageFacts<'a> {
    /// Sequence number in the session's view.
    pub seq: u32,
    pub uid: u32,
    /// System flags (`\Seen`, `\Answered`, ...) and keywords, as stored.
    pub flags: &'a [String],
    /// Seconds since the epoch, UTC.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    pub modseq: u64,
}

/// The message's bytes, loaded on first need.
pub trait LazyBytes {
    /// The message's exact stored bytes; None when they cannot be had (the search then fails).
    fn bytes(&mut self) -> Option<&[u8]>;
}

/// Bytes already in memory.
impl LazyBytes for &[u8] {
    fn bytes(&mut self) -> Option<&[u8]> {
        Some(self)
    }
}

/// The mailbox as the session sees it, for `*`.
#[derive(Debug, Clone, Copy)]
pub struct SearchContext {
    /// The highest sequence number (the number of messages).
    pub max_seq: u32,
    /// The highest UID in the mailbox.
    pub max_uid: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SearchError {
    /// A key needs the message body, which is not available (message `uid`).
    #[error("the body of message UID {uid} is not available")]
    BodyUnavailable { uid: u32 },
    /// A key this server does not evaluate.
    #[error("search key not supported: {key}")]
    Unsupported { key: &'static str },
}

/// Whether `key` matches the message.
pub fn matches(
    key: &SearchKey<'_>,
    facts: &MessageFacts<'_>,
    body: &mut dyn LazyBytes,
    ctx: &SearchContext,
) -> Result<bool, SearchError> {
    let mut evaluator = Evaluator {
        facts,
        body,
        ctx,
        text: None,
    };
    evaluator.eval(key)
}

/// Whether evaluating `key` may read the message body.
pub fn needs_body(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_body),
        SearchKey::Not(key) => needs_body(key),
        SearchKey::Or(left, right) => needs_body(left) || needs_body(right),
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_) => true,
        _ => false,
    }
}

struct Evaluator<'e, 'f> {
    facts: &'e MessageFacts<'f>,
    body: &'e mut dyn LazyBytes,
    ctx: &'e SearchContext,
    /// The message's searchable text, extracted on first need.
    text: Option<Text>,
}

impl Evaluator<'_, '_> {
    fn eval(&mut self, key: &SearchKey<'_>) -> Result<bool, SearchError> {
        let facts = self.facts;
        Ok(match key {
            SearchKey::And(keys) => {
                // Keys without body first: they may decide without loading it.
                let (cheap, costly): (Vec<_>, Vec<_>) =
                    keys.as_ref().iter().partition(|key| !needs_body(key));
                for key in cheap.into_iter().chain(costly) {
                    if !self.eval(key)? {
                        return Ok(false);
                    }
                }
                true
            }
            SearchKey::Not(key) => !self.eval(key)?,
            SearchKey::Or(left, right) => {
                let (first, second) = if needs_body(left) && !needs_body(right) {
                    (right, left)
                } else {
                    (left, right)
                };
                self.eval(first)? || self.eval(second)?
            }
            SearchKey::SequenceSet(set) => in_set(set, facts.seq, self.ctx.max_seq),
            SearchKey::Uid(set) => in_set(set, facts.uid, self.ctx.max_uid),
            SearchKey::All => true,
            SearchKey::Answered => self.flag("\\Answered"),
            SearchKey::Deleted => self.flag("\\Deleted"),
            SearchKey::Draft => self.flag("\\Draft"),
            SearchKey::Flagged => self.flag("\\Flagged"),
            SearchKey::Seen => self.flag("\\Seen"),
            SearchKey::Unanswered => !self.flag("\\Answered"),
            SearchKey::Undeleted => !self.flag("\\Deleted"),
            SearchKey::Undraft => !self.flag("\\Draft"),
            SearchKey::Unflagged => !self.flag("\\Flagged"),
            SearchKey::Unseen => !self.flag("\\Seen"),
            SearchKey::Keyword(keyword) => self.flag(keyword.inner()),
            SearchKey::Unkeyword(keyword) => !self.flag(keyword.inner()),
            // \Recent is never set (module doc).
            SearchKey::Recent | SearchKey::New => false,
            SearchKey::Old => true,
            SearchKey::Larger(size) => facts.size > u64::from(*size),
            SearchKey::Smaller(size) => facts.size < u64::from(*size),
            SearchKey::Before(date) => internal_day(facts) < day(date),
            SearchKey::On(date) => internal_day(facts) == day(date),
            SearchKey::Since(date) => internal_day(facts) >= day(date),
            SearchKey::SentBefore(date) => self.text()?.sent_day.is_some_and(|d| d < day(date)),
            SearchKey::SentOn(date) => self.text()?.sent_day.is_some_and(|d| d == day(date)),
            SearchKey::SentSince(date) => self.text()?.sent_day.is_some_and(|d| d >= day(date)),
            SearchKey::Bcc(needle) => self.header_contains("bcc", needle)?,
            SearchKey::Cc(needle) => self.header_contains("cc", needle)?,
            SearchKey::From(needle) => self.header_contains("from", needle)?,
            SearchKey::To(needle) => self.header_contains("to", needle)?,
            SearchKey::Subject(needle) => self.header_contains("subject", needle)?,
            SearchKey::Header(name, needle) => {
                let name = lower(name);
                self.header_contains(&name, needle)?
            }
            SearchKey::Body(needle) => {
                let needle = lower(needle);
                self.text()?.body.contains(&needle)
            }
            SearchKey::Text(needle) => {
                let needle = lower(needle);
                let text = self.text()?;
                text.body.contains(&needle) || text.all_headers.contains(&needle)
            }
            SearchKey::ModSequence { modseq, .. } => facts.modseq >= *modseq,
            #[allow(unreachable_patterns)] // Keys of features Dovetail does not enable.
            _ => return Err(SearchError::Unsupported { key: "WITHIN" }),
        })
    }

    fn flag(&self, name: &str) -> bool {
        self.facts
            .flags
            .iter()
            .any(|flag| flag.eq_ignore_ascii_case(name))
    }

    /// Whether a field named `name` (lower-cased) contains `needle`; `""` matches any such field.
    fn header_contains(&mut self, name: &str, needle: &AString<'_>) -> Result<bool, SearchError> {
        let needle = lower(needle);
        Ok(self
            .text()?
            .headers
            .iter()
            .any(|(field, value)| field == name && value.contains(&needle)))
    }

    fn text(&mut self) -> Result<&Text, SearchError> {
        if self.text.is_none() {
            let uid = self.facts.uid;
            let bytes = self.body.bytes().ok_or(SearchError::BodyUnavailable { uid })?;
            self.text = Some(extract(bytes));
        }
        Ok(self.text.get_or_insert_with(Text::default))
    }
}

fn lower(string: &AString<'_>) -> String {
    fold(&String::from_utf8_lossy(string.as_ref()))
}

fn in_set(set: &SequenceSet, number: u32, largest: u32) -> bool {
    let expand = |value: &imap_types::sequence::SeqOrUid| match value {
        imap_types::sequence::SeqOrUid::Value(value) => value.get(),
        imap_types::sequence::SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|sequence| match sequence {
        Sequence::Single(value) => expand(value) == number,
        Sequence::Range(from, to) => {
            let (from, to) = (expand(from), expand(to));
            from.min(to) <= number && number <= from.max(to)
        }
    })
}

/// Days since 1970-01-01 of a search date.
fn day(date: &NaiveDate) -> i64 {
    date.as_ref().and_hms_opt(0, 0, 0).map_or(i64::MIN, |midnight| {
        midnight.and_utc().timestamp().div_euclid(86_400)
    })
}

fn internal_day(facts: &MessageFacts<'_>) -> i64 {
    facts.internal_date.div_euclid(86_400)
}
