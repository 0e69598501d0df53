//! ENVELOPE, BODYSTRUCTURE / BODY, RFC822.SIZE and `BODY[section]<partial>` from a message's exact
//! stored bytes. Pure and deterministic: the same bytes give the same answer on every node
//! (MAIL-NOTES.md "Semantics" 6), whatever the bytes are (no panic, every range in bounds).
//!
//! The message is first cut into a tree of `Node`s (header range, body range, kind), the one
//! source for both the structure and the sections, so `BODY[2.1]` is always the part that
//! BODYSTRUCTURE lists second, first. Cutting follows RFC 2045/2046 and, where the RFCs leave it
//! open, Dovecot 2.3 (the reference recorded in `tests/fixtures/imap/`, see `mime_tests.rs`):
//!
//! - a header ends after its first empty line, or at a delimiter line of an enclosing
//!   multipart, or at the end (then the body is empty);
//! - a bare LF ends a line like CRLF; sizes and line counts are of the bytes as stored (Dovecot
//!   counts an LF-only message as if it had CRLF: we do not, the stored bytes are the message);
//! - one pass with a stack of boundaries: a line starting with `--boundary` is a delimiter of
//!   the innermost enclosing multipart whose boundary it starts with (so `--b2` inside `--b` is
//!   the inner one's); the line ending before a delimiter belongs to the delimiter, unless it was
//!   read before the text it would end began (after a nested close delimiter, or a header cut by
//!   the delimiter), where Dovecot leaves it in the enclosing part; preamble and epilogue belong
//!   to no part; a missing close delimiter ends the last part at the next enclosing delimiter
//!   or the end; a multipart without boundary, or without delimiters, has one empty text/plain
//!   part (as Dovecot answers);
//! - `Content-Type: text` (no subtype) is type text with subtype "" (as Dovecot shows it); no
//!   or unparsable Content-Type is text/plain; charset=us-ascii (message/rfc822 inside a
//!   multipart/digest), RFC 2045 §5.2 and RFC 2046 §5.1.5;
//! - part numbers (RFC 3501 §6.4.5): a multipart's children are 1..n; a message/rfc822 part's
//!   numbers are those of the message it encloses; a non-multipart message, or any leaf, has a
//!   part 1, itself (so `BODY[1]` of a text/plain message is its body, `BODY[1.MIME]` its
//!   header, and `BODY[2.1]` of a leaf part 2 is part 2, as Dovecot answers); a part that does
//!   not exist gives an empty string, as Dovecot answers (`BODY[9] {0}`);
//! - nesting deeper than [`MAX_DEPTH`] (multiparts and enclosed messages together) is not cut:
//!   such a part is an opaque application/octet-stream leaf, bounding time and stack.

mod address;
pub(crate) mod header;
mod imap_string;
mod structure;
pub(crate) mod tree;

use std::borrow::Cow;
use std::ops::Range;

use imap_types::{
    body::BodyStructure,
    core::{IString, Literal, NString},
    envelope::Envelope,
    fetch::{Part, Section},
};

pub use tree::MAX_DEPTH;
use tree::{Kind, Node};

/// The ENVELOPE of a message (RFC 3501 §7.4.2).
pub fn envelope(bytes: &[u8]) -> Envelope<'static> {
    let (header, _) = header::split(bytes, 0..bytes.len());
    structure::envelope(&bytes[header])
}

/// BODYSTRUCTURE (`extended`, with extension data) or BODY (without) of a message.
pub fn body_structure(bytes: &[u8], extended: bool) -> BodyStructure<'static> {
    ParsedMessage::parse(bytes).body_structure(extended)
}

/// RFC822.SIZE: the size of the message as stored, saturated at `u32::MAX`.
pub fn rfc822_size(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// The bytes of `BODY[section]`: see [`ParsedMessage::section`].
pub fn section<'a>(bytes: &'a [u8], section: Option<&Section<'_>>) -> Cow<'a, [u8]> {
    ParsedMessage::parse(bytes).section(section)
}

/// A message cut once, for a FETCH that asks several items of it (the free functions above cut
/// the message again on each call).
#[derive(Debug)]
pub struct ParsedMessage<'a> {
    bytes: &'a [u8],
    root: Node,
}

impl<'a> ParsedMessage<'a> {
    pub fn parse(bytes: &'a [u8]) -> ParsedMessage<'a> {
        ParsedMessage {
            bytes,
            root: Node::parse(bytes),
        }
    }

    pub fn envelope(&self) -> Envelope<'static> {
        structure::envelope(&self.bytes[self.root.header.clone()])
    }

    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        structure::body_structure(self.bytes, &self.root, extended)
    }

    /// The bytes of `BODY[section]` (`None`: `BODY[]`, the whole message). RFC822 is `BODY[]`,
    /// RFC822.HEADER is `BODY[HEADER]`, RFC822.TEXT is `BODY[TEXT]`. A part that does not exist
    /// gives no bytes. `HEADER.FIELDS` and `HEADER.FIELDS.NOT` return the matching fields as
    /// stored, in stored order, names compared ASCII case-insensitively, followed by the
    /// header's blank line if it has one (RFC 3501 §6.4.5: "the blank line between the header
    /// and the body is included"); a last field without line ending gets CRLF.
    pub fn section(&self, section: Option<&Section<'_>>) -> Cow<'a, [u8]> {
        let bytes = self.bytes;
        let Some(section) = section else {
            return Cow::Borrowed(bytes);
        };
        let root = &self.root;
        let find = |part: &Option<Part>| match part {
            None => Some(root),
            Some(part) => root.find(part),
        };
        // HEADER, HEADER.FIELDS and TEXT of a part are those of the message a message/rfc822
        // part encloses; other parts have none.
        let message = |part: &Option<Part>| match part {
            None => Some(root),
            Some(_) => find(part).and_then(|node| match &node.kind {
                Kind::Message(inner) => Some(inner.as_ref()),
                _ => None,
            }),
        };
        let slice = |range: Range<usize>| Cow::Borrowed(&bytes[range]);
        let empty = || Cow::Borrowed(&bytes[..0]);
        match section {
            Section::Part(path) => root.find(path).map_or_else(empty, |n| slice(n.body.clone())),
            Section::Mime(path) => root.find(path).map_or_else(empty, |n| slice(n.header.clone())),
            Section::Header(path) => message(path).map_or_else(empty, |n| slice(n.header.clone())),
            Section::Text(path) => message(path).map_or_else(empty, |n| slice(n.body.clone())),
            Section::HeaderFields(path, names) => message(path).map_or_else(empty, |n| {
                Cow::Owned(header_fields(&bytes[n.header.clone()], names.as_ref(), true))
            }),
            Section::HeaderFieldsNot(path, names) => message(path).map_or_else(empty, |n| {
                Cow::Owned(header_fields(&bytes[n.header.clone()], names.as_ref(), false))
            }),
        }
    }
}

/// `<origin.count>` of fetched data (RFC 3501 §6.4.5): at most `count` bytes from `origin`;
/// nothing when `origin` is past the end.
pub fn partial(data: &[u8], origin: u32, count: u32) -> &[u8] {
    let start = usize::try_from(origin).unwrap_or(usize::MAX).min(data.len());
    let len = usize::try_from(count).unwrap_or(usize::MAX);
    &data[start..start.saturating_add(len).min(data.len())]
}

/// The literal for fetched bytes: always a literal, as Dovecot sends section data.
pub fn literal(data: Cow<'_, [u8]>) -> NString<'static> {
    let data: Vec<u8> = if data.contains(&0) {
        // An IMAP literal cannot carry NUL (RFC 3501 `CHAR8`); Dovecot sends such bytes as 0x80.
        data.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect()
    } else {
        data.into_owned()
    };
    NString(Some(IString::Literal(Literal::unvalidated(data))))
}

fn header_fields(header: &[u8], names: &[imap_types::core::AString<'_>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in header::fields(header) {
        let listed = names
            .iter()
            .any(|name| field.name.eq_ignore_ascii_case(name.as_ref()));
        if listed == keep {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(header::blank_line(header));
    out
}
