//! Address lists (RFC 5322 §3.4, with the obsolete forms of §4.4) as ENVELOPE shows them
//! (RFC 3501 §7.4.2): raw, undecoded display names (quotes and escapes removed, encoded words
//! left as they are), groups as a start marker `(NIL NIL "name" NIL)`, the members and an end
//! marker `(NIL NIL NIL NIL)`, and Dovecot's placeholders `MISSING_MAILBOX` / `MISSING_DOMAIN`
//! for an address without local part or domain. A comment stands in for a missing display name
//! (`a@b (Ann)` gives "Ann"). Without `@` or `<`, one word is a local part without domain and
//! several words a display name without address (both as Dovecot reads them). Junk after an address is skipped up to the next comma, so any
//! bytes give some list and the parser always advances.

use imap_types::{core::NString, envelope::Address};

use super::header::Lexer;
use super::imap_string::nstring;

const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

/// The addresses of an unfolded address-list header value.
pub(crate) fn parse_address_list(value: &[u8]) -> Vec<Address<'static>> {
    let mut lexer = Lexer { bytes: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        skip_separators(&mut lexer);
        if lexer.at_end() {
            break;
        }
        let start = lexer.pos;
        let (phrase, comment) = phrase(&mut lexer);
        if lexer.peek() == Some(b':') {
            lexer.pos += 1;
            out.push(marker(Some(phrase)));
            loop {
                skip_separators(&mut lexer);
                if lexer.at_end() || lexer.eat(b';') {
                    break;
                }
                let member_start = lexer.pos;
                let (phrase, comment) = self::phrase(&mut lexer);
                mailbox(&mut lexer, phrase, comment, &mut out);
                skip_junk(&mut lexer, true);
                if lexer.pos == member_start {
                    lexer.pos += 1;
                }
            }
            out.push(marker(None));
        } else {
            mailbox(&mut lexer, phrase, comment, &mut out);
        }
        skip_junk(&mut lexer, false);
        if lexer.pos == start {
            lexer.pos += 1;
        }
    }
    out
}

/// Blanks, comments and commas (and nothing else).
fn skip_separators(lexer: &mut Lexer<'_>) {
    loop {
        lexer.skip_cfws();
        if !lexer.eat(b',') {
            break;
        }
    }
}

/// After an address: anything up to the next comma (or, in a group, `;`) is junk.
fn skip_junk(lexer: &mut Lexer<'_>, in_group: bool) {
    lexer.skip_cfws();
    while let Some(b) = lexer.peek() {
        if b == b',' || (in_group && b == b';') {
            break;
        }
        if b == b'"' {
            lexer.quoted_string();
        } else if b == b'(' {
            lexer.comment();
        } else {
            lexer.pos += 1;
        }
    }
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// Words (atoms, dots allowed as in obs-phrase, and quoted strings, unquoted) joined by one
/// space, and the first comment met on the way.
fn phrase(lexer: &mut Lexer<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut comment = None;
    loop {
        cfws_capture(lexer, &mut comment);
        match lexer.peek() {
            Some(b'"') => words.push(lexer.quoted_string().unwrap_or_default()),
            Some(b) if is_atext(b) || b == b'.' => {
                let start = lexer.pos;
                while lexer.peek().is_some_and(|b| is_atext(b) || b == b'.') {
                    lexer.pos += 1;
                }
                words.push(lexer.bytes[start..lexer.pos].to_vec());
            }
            _ => break,
        }
    }
    (words.join(&b' '), comment)
}

/// Skips blanks and comments, keeping the first comment's text in `comment` if it is empty.
fn cfws_capture(lexer: &mut Lexer<'_>, comment: &mut Option<Vec<u8>>) {
    while let Some(b) = lexer.peek() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => lexer.pos += 1,
            b'(' => {
                let text = lexer.comment();
                if comment.is_none() && !text.is_empty() {
                    *comment = Some(text);
                }
            }
            _ => break,
        }
    }
}

/// A domain: dot-atoms or a domain literal, as written.
fn domain(lexer: &mut Lexer<'_>) -> Vec<u8> {
    lexer.skip_cfws();
    let start = lexer.pos;
    if lexer.peek() == Some(b'[') {
        while let Some(b) = lexer.peek() {
            lexer.pos += 1;
            if b == b']' {
                break;
            }
        }
    } else {
        while lexer.peek().is_some_and(|b| is_atext(b) || b == b'.') {
            lexer.pos += 1;
        }
    }
    lexer.bytes[start..lexer.pos].to_vec()
}

/// The rest of one mailbox after its leading phrase: `<[route:]local@domain>`, `@domain` (the
/// phrase was the local part) or nothing (a local part without domain).
fn mailbox(
    lexer: &mut Lexer<'_>,
    phrase: Vec<u8>,
    mut comment: Option<Vec<u8>>,
    out: &mut Vec<Address<'static>>,
) {
    match lexer.peek() {
        Some(b'<') => {
            lexer.pos += 1;
            lexer.skip_cfws();
            let mut adl = None;
            if lexer.peek() == Some(b'@') {
                let start = lexer.pos;
                while lexer.peek().is_some_and(|b| b != b':' && b != b'>') {
                    lexer.pos += 1;
                }
                adl = Some(lexer.bytes[start..lexer.pos].to_vec());
                lexer.eat(b':');
            }
            lexer.skip_cfws();
            let start = lexer.pos;
            while let Some(b) = lexer.peek() {
                if b == b'"' {
                    lexer.quoted_string();
                } else if is_atext(b) || b == b'.' {
                    lexer.pos += 1;
                } else {
                    break;
                }
            }
            let local = lexer.bytes[start..lexer.pos].to_vec();
            lexer.skip_cfws();
            let host = if lexer.eat(b'@') {
                domain(lexer)
            } else {
                Vec::new()
            };
            while let Some(b) = lexer.peek() {
                lexer.pos += 1;
                if b == b'>' {
                    break;
                }
            }
            cfws_capture(lexer, &mut comment);
            let name = if phrase.is_empty() { None } else { Some(phrase) };
            out.push(address(name, adl, local, host));
        }
        Some(b'@') => {
            lexer.pos += 1;
            let host = domain(lexer);
            cfws_capture(lexer, &mut comment);
            out.push(address(comment, None, phrase, host));
        }
        // No `@` and no `<`: one word is a local part without domain, several are a
        // display name without address (Dovecot's reading of both).
        _ if phrase.contains(&b' ') => out.push(address(Some(phrase), None, Vec::new(), Vec::new())),
        _ => {
            if !phrase.is_empty() {
                out.push(address(comment, None, phrase, Vec::new()));
            }
        }
    }
}

fn address(name: Option<Vec<u8>>, adl: Option<Vec<u8>>, mailbox: Vec<u8>, host: Vec<u8>) -> Address<'static> {
    let mailbox = if mailbox.is_empty() {
        MISSING_MAILBOX.to_vec()
    } else {
        mailbox
    };
    let host = if host.is_empty() {
        MISSING_DOMAIN.to_vec()
    } else {
        host
    };
    Address {
        name: name.map_or(NString::NIL, nstring),
        adl: adl.map_or(NString::NIL, nstring),
        mailbox: nstring(mailbox),
        host: nstring(host),
    }
}

/// A group's start marker (with its name) or end marker (without).
fn marker(name: Option<Vec<u8>>) -> Address<'static> {
    Address {
        name: NString::NIL,
        adl: NString::NIL,
        mailbox: name.map_or(NString::NIL, nstring),
        host: NString::NIL,
    }
}
