//! A header block as stored: where it ends, its fields in order, a field's value unfolded but not
//! decoded (what ENVELOPE and BODYSTRUCTURE show, as Dovecot does), and the RFC 2045 grammar of
//! `Content-Type`-like values (a token, `/` subtype, `;` parameters, comments anywhere).
//!
//! Everything here works on any bytes: a bare LF ends a line like CRLF does, a header without its
//! blank line runs to the end of the part, and a line that is neither a field nor a continuation
//! is kept as a nameless field (so `HEADER.FIELDS.NOT` still returns it).

use std::ops::Range;

/// One field of a header block.
pub(crate) struct Field<'a> {
    /// The name as written, without the colon and trailing blanks; the whole line when it has no
    /// colon (such a line matches no requested name).
    pub name: &'a [u8],
    /// The value: what follows the colon up to the field's last line ending, folds included.
    pub value: &'a [u8],
    /// The field as stored, continuation lines and final line ending included.
    pub raw: &'a [u8],
}

/// Splits the part `range` of `bytes`, which starts with its header, into the header (blank line
/// included) and the body. With no blank line, the header runs to the end and the body is empty.
pub(crate) fn split(bytes: &[u8], range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let mut pos = range.start;
    while pos < range.end {
        let line_end = memchr_lf(&bytes[pos..range.end]).map_or(range.end, |i| pos + i + 1);
        let line = &bytes[pos..line_end];
        if line == b"\n" || line == b"\r\n" {
            return (range.start..line_end, line_end..range.end);
        }
        pos = line_end;
    }
    (range.start..range.end, range.end..range.end)
}

/// The blank line that ends `header`, if it has one ("\r\n" or "\n").
pub(crate) fn blank_line(header: &[u8]) -> &[u8] {
    if header == b"\n" || header == b"\r\n" {
        header
    } else if header.ends_with(b"\r\n\r\n") || header.ends_with(b"\n\r\n") {
        b"\r\n"
    } else if header.ends_with(b"\n\n") {
        b"\n"
    } else {
        b""
    }
}

pub(crate) fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The fields of a header block (as returned by [`split`]), in stored order.
pub(crate) fn fields(header: &[u8]) -> Vec<Field<'_>> {
    // (field start, value start or None for a line without colon, name end, field end)
    let mut spans: Vec<(usize, Option<usize>, usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let line_end = memchr_lf(&header[pos..]).map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..line_end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        let continuation = matches!(line[0], b' ' | b'\t');
        match spans.last_mut() {
            Some(last) if continuation => last.3 = line_end,
            _ => match line.iter().position(|&b| b == b':') {
                Some(colon) => spans.push((pos, Some(pos + colon + 1), pos + colon, line_end)),
                None => spans.push((pos, None, line_end, line_end)),
            },
        }
        pos = line_end;
    }
    spans
        .into_iter()
        .map(|(start, value_start, name_end, end)| match value_start {
            Some(value_start) => Field {
                name: trim_end(&header[start..name_end]),
                value: &header[value_start..end],
                raw: &header[start..end],
            },
            None => Field {
                name: trim_line_end(&header[start..name_end]),
                value: &header[end..end],
                raw: &header[start..end],
            },
        })
        .collect()
}

/// The unfolded value of the first field named `name` (ASCII case-insensitive), if any.
pub(crate) fn first_value(fields: &[Field<'_>], name: &str) -> Option<Vec<u8>> {
    fields
        .iter()
        .find(|field| field.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|field| unfold(field.value))
}

/// A field value as ENVELOPE shows it: leading blanks dropped, CR and LF removed (a fold becomes
/// the blank that follows it), trailing blanks kept (Dovecot keeps them too), NUL dropped (an
/// IMAP string cannot carry it).
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let start = value
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(value.len());
    value[start..]
        .iter()
        .copied()
        .filter(|&b| !matches!(b, b'\r' | b'\n' | 0))
        .collect()
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &bytes[..end]
}

/// A parsed `Content-Type` or `Content-Disposition`: its value and its parameters as written
/// (names and values not case-folded, quotes and escapes removed, RFC 2231 forms left alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaValue {
    pub value: Vec<u8>,
    pub subtype: Option<Vec<u8>>,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses `token [ "/" token ] *( ";" attribute "=" value )` with comments (RFC 2045 §5.1).
/// None when there is no leading token; a malformed parameter is skipped up to the next `;`.
pub(crate) fn parse_media(value: &[u8], with_subtype: bool) -> Option<MediaValue> {
    let mut lexer = Lexer { bytes: value, pos: 0 };
    lexer.skip_cfws();
    let value = lexer.token()?;
    let mut subtype = None;
    if with_subtype {
        lexer.skip_cfws();
        // No subtype ("Content-Type: text"): an empty one, as Dovecot shows it.
        subtype = Some(Vec::new());
        if lexer.eat(b'/') {
            lexer.skip_cfws();
            subtype = Some(lexer.token().unwrap_or_default());
        }
    }
    let mut params = Vec::new();
    loop {
        lexer.skip_cfws();
        if lexer.at_end() {
            break;
        }
        if !lexer.eat(b';') {
            lexer.skip_past(b';');
            continue;
        }
        lexer.skip_cfws();
        let Some(name) = lexer.token() else { continue };
        lexer.skip_cfws();
        if !lexer.eat(b'=') {
            continue;
        }
        lexer.skip_cfws();
        let value = if lexer.peek() == Some(b'"') {
            lexer.quoted_string()
        } else {
            lexer.token()
        };
        if let Some(value) = value {
            params.push((name, value));
        }
    }
    Some(MediaValue {
        value,
        subtype,
        params,
    })
}

/// `Content-Language`: comma-separated tokens (RFC 3282), comments skipped.
pub(crate) fn parse_token_list(value: &[u8]) -> Vec<Vec<u8>> {
    let mut lexer = Lexer { bytes: value, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_cfws();
        if lexer.at_end() {
            break;
        }
        match lexer.token() {
            Some(token) => tokens.push(token),
            None => lexer.pos += 1,
        }
    }
    tokens
}

/// The first token of a value (`Content-Transfer-Encoding`), comments skipped.
pub(crate) fn parse_token(value: &[u8]) -> Option<Vec<u8>> {
    let mut lexer = Lexer { bytes: value, pos: 0 };
    lexer.skip_cfws();
    lexer.token()
}

/// RFC 2045 tokens, quoted strings and (nested) comments.
pub(crate) struct Lexer<'a> {
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl Lexer<'_> {
    pub fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_past(&mut self, byte: u8) {
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == byte {
                break;
            }
        }
    }

    /// Skips blanks, line endings and comments; an unclosed comment runs to the end. Nesting is
    /// counted, not recursed, so no input can exhaust the stack.
    pub fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    self.comment();
                }
                _ => break,
            }
        }
    }

    /// Consumes a comment starting at `(`, returning its text (escapes resolved, nested
    /// parentheses kept).
    pub fn comment(&mut self) -> Vec<u8> {
        let mut depth = 0usize;
        let mut text = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'(' => {
                    if depth > 0 {
                        text.push(b);
                    }
                    depth += 1;
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    text.push(b);
                }
                b'\\' => {
                    if let Some(next) = self.peek() {
                        self.pos += 1;
                        text.push(next);
                    }
                }
                _ => text.push(b),
            }
        }
        text
    }

    /// An RFC 2045 token (any CHAR but SPACE, CTLs and tspecials); 8-bit bytes are accepted too.
    pub fn token(&mut self) -> Option<Vec<u8>> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b <= b' ' || b == 0x7f || b"()<>@,;:\\\"/[]?=".contains(&b) {
                break;
            }
            self.pos += 1;
        }
        (self.pos > start).then(|| self.bytes[start..self.pos].to_vec())
    }

    /// A quoted string starting at `"`, unquoted; an unclosed one runs to the end.
    pub fn quoted_string(&mut self) -> Option<Vec<u8>> {
        if !self.eat(b'"') {
            return None;
        }
        let mut text = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        self.pos += 1;
                        text.push(next);
                    }
                }
                b'\r' | b'\n' => {}
                _ => text.push(b),
            }
        }
        Some(text)
    }
}
