//! The searchable text of one message: its header fields decoded, every header line, the
//! decoded text parts and the sent day, case-folded once so that every text key of a search
//! compares against the same strings.

use mail_parser::{Address, HeaderValue, Message, MessageParser, PartType};
use unicode_normalization::UnicodeNormalization;

use crate::imap::mime::header;
use crate::imap::mime::tree::{Kind, Node};

/// The searchable text of a message, case-folded ([`fold`]).
#[derive(Debug, Default)]
pub(crate) struct Text {
    /// (field name, decoded value) of the message header, in order: for HEADER, FROM, ...
    pub headers: Vec<(String, String)>,
    /// Every header of the message as `name: value` lines (the message's, its MIME parts', and
    /// those of the messages it encloses): with `body`, what TEXT searches.
    pub all_headers: String,
    /// Decoded text parts, one after the other, nested messages' included: what BODY searches.
    pub body: String,
    /// Days since the epoch of the day written in `Date:`.
    pub sent_day: Option<i64>,
}

/// A caseless form for substring matching, close to RFC 5051's i;unicode-casemap: upper- then
/// lower-cased (so "ß" and "SS" both become "ss"), then NFKD (so composed and decomposed
/// accents, and compatibility forms, compare equal).
pub(crate) fn fold(text: &str) -> String {
    text.to_uppercase().to_lowercase().nfkd().collect()
}

/// The searchable text of a message (see [`Text`]). The message is cut by `mime`'s tree
/// (bounded depth, never panics on any bytes); mail-parser only decodes one header block or one
/// text part at a time, so it never sees a nested structure.
pub(crate) fn extract(bytes: &[u8]) -> Text {
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
