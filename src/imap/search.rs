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
//!   Unicode case-insensitively (both sides through [`fold`]), in values decoded by mail-parser:
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

use imap_types::{
    core::AString,
    datetime::NaiveDate,
    search::SearchKey,
    sequence::{Sequence, SequenceSet},
};
use mail_parser::{Address, HeaderValue, Message, MessageParser, PartType};

use super::mime::header;
use super::mime::tree::{Kind, Node};
use unicode_normalization::UnicodeNormalization;

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

/// The searchable text of a message, case-folded ([`fold`]).
#[derive(Debug, Default)]
struct Text {
    /// (field name, decoded value) of the message header, in order: for HEADER, FROM, ...
    headers: Vec<(String, String)>,
    /// Every header of the message as `name: value` lines (the message's, its MIME parts', and
    /// those of the messages it encloses): with `body`, what TEXT searches.
    all_headers: String,
    /// Decoded text parts, one after the other, nested messages' included: what BODY searches.
    body: String,
    /// Days since the epoch of the day written in `Date:`.
    sent_day: Option<i64>,
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

/// A caseless form for substring matching, close to RFC 5051's i;unicode-casemap: upper- then
/// lower-cased (so "ß" and "SS" both become "ss"), then NFKD (so composed and decomposed
/// accents, and compatibility forms, compare equal).
fn fold(text: &str) -> String {
    text.to_uppercase().to_lowercase().nfkd().collect()
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

/// The searchable text of a message (see [`Text`]). The message is cut by `mime`'s tree
/// (bounded depth, never panics on any bytes); mail-parser only decodes one header block or one
/// text part at a time, so it never sees a nested structure.
fn extract(bytes: &[u8]) -> Text {
    let root = Node::parse(bytes);
    let parser = MessageParser::default().default_header_text();
    let mut text = Text::default();
    let top = &bytes[root.header.clone()];
    if let Some(headers) = parser.parse_headers(top) {
        for header in headers.headers() {
            let value = header_text(&headers, header);
            text.headers.push((header.name().to_lowercase(), fold(&value)));
        }
    }
    text.sent_day = header::first_value(&header::fields(top), "Date").and_then(|v| sent_day(&v));
    collect(bytes, &root, &parser, &mut text);
    text.all_headers = fold(&text.all_headers);
    text.body = fold(&text.body);
    text
}

/// A header's value as searched: decoded text, addresses as `name <address>`, else the raw
/// value; unfolded.
fn header_text(message: &Message<'_>, header: &mail_parser::Header<'_>) -> String {
    let value = match header.value() {
        HeaderValue::Text(value) => value.to_string(),
        HeaderValue::Address(address) => address_text(address),
        _ => raw_value(message.raw_message(), header.offset_start(), header.offset_end()),
    };
    unfold(&value)
}

/// Appends the header lines of `node` (and of every part and enclosed message below it) to
/// `text.all_headers`, and its decoded text/* leaves to `text.body`. Recursion is bounded by
/// the tree's depth (`mime::MAX_DEPTH`).
fn collect(bytes: &[u8], node: &Node, parser: &MessageParser, text: &mut Text) {
    if let Some(headers) = parser.parse_headers(&bytes[node.header.clone()]) {
        for header in headers.headers() {
            text.all_headers.push_str(header.name());
            text.all_headers.push_str(": ");
            text.all_headers.push_str(&header_text(&headers, header));
            text.all_headers.push('\n');
        }
    }
    match &node.kind {
        Kind::Multipart(children) => {
            for child in children {
                collect(bytes, child, parser, text);
            }
        }
        Kind::Message(inner) => collect(bytes, inner, parser, text),
        Kind::Leaf if node.content_type.value.eq_ignore_ascii_case(b"text") => {
            // The part alone (its header says how to decode it; it has no parts of its own).
            let mut part = bytes[node.header.clone()].to_vec();
            part.extend_from_slice(&bytes[node.body.clone()]);
            let decoded = parser.parse(&part[..]).and_then(|message| {
                match message.parts.into_iter().next().map(|part| part.body) {
                    Some(PartType::Text(body) | PartType::Html(body)) => Some(body.into_owned()),
                    _ => None,
                }
            });
            if let Some(decoded) = decoded {
                text.body.push_str(&decoded);
                text.body.push('\n');
            }
        }
        Kind::Leaf => {}
    }
}

/// Unfolds a value (RFC 5322 §2.2.3): a line break and the blanks around it become one space,
/// as Dovecot searches them ("one\r\n\ttwo" is found by "one two").
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_break = false;
    for c in value.chars() {
        match c {
            '\r' | '\n' => {
                while out.ends_with([' ', '\t']) {
                    out.pop();
                }
                pending_break = true;
            }
            ' ' | '\t' if pending_break => {}
            _ => {
                if pending_break {
                    out.push(' ');
                    pending_break = false;
                }
                out.push(c);
            }
        }
    }
    out
}

/// The day written in a `Date:` value, as days since 1970-01-01: `[day-name ","] day month
/// year`, the rest (time, zone) disregarded as RFC 3501 §6.4.4 asks for SENT*; a two-digit
/// year is read as RFC 5322 §4.3 says (00-49: 2000s, 50-99: 1900s), a three-digit one plus
/// 1900. None when the day, month or year is missing or impossible.
fn sent_day(value: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
    ];
    let text: Vec<u8> = value.iter().map(u8::to_ascii_lowercase).collect();
    let mut words = text
        .split(|b| b.is_ascii_whitespace() || *b == b',')
        .filter(|word| !word.is_empty());
    let mut word = words.next()?;
    if word.first()?.is_ascii_alphabetic() {
        word = words.next()?; // the day name
    }
    let day: u32 = std::str::from_utf8(word).ok()?.parse().ok()?;
    let month_word = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month_word)? as u32 + 1;
    let year_word = words.next()?;
    let year: i64 = std::str::from_utf8(year_word).ok()?.parse().ok()?;
    let year = match year_word.len() {
        1 | 2 if year < 50 => year + 2000,
        1 | 2 => year + 1900,
        3 => year + 1900,
        _ => year,
    };
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month || !(1..=9999).contains(&year) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn raw_value(bytes: &[u8], start: u32, end: u32) -> String {
    let (start, end) = (start as usize, end as usize);
    let raw = bytes.get(start..end.max(start)).unwrap_or_default();
    String::from_utf8_lossy(raw).trim().to_string()
}

fn address_text(address: &Address<'_>) -> String {
    let one = |addr: &mail_parser::Addr<'_>| match (&addr.name, &addr.address) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (Some(name), None) => name.to_string(),
        (None, Some(address)) => address.to_string(),
        (None, None) => String::new(),
    };
    match address {
        Address::List(list) => list.iter().map(one).collect::<Vec<_>>().join(", "),
        Address::Group(groups) => groups
            .iter()
            .map(|group| {
                let members = group.addresses.iter().map(one).collect::<Vec<_>>();
                match &group.name {
                    Some(name) => format!("{name}: {};", members.join(", ")),
                    None => members.join(", "),
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}
