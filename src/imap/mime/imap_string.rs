//! IMAP strings for values taken from a message: quoted or literal, never carrying NUL.

use imap_types::core::{IString, Literal, NString};

/// An IMAP string for a header-derived value: quoted when it can be, else a literal; NUL bytes,
/// which no IMAP string can carry, are dropped. A value with `"` or `\` is sent as a literal,
/// as Dovecot does, sparing clients the quoted string's escapes.
pub(crate) fn istring(mut bytes: Vec<u8>) -> IString<'static> {
    bytes.retain(|&b| b != 0);
    if bytes.iter().any(|&b| b == b'"' || b == b'\\') {
        return IString::Literal(Literal::unvalidated(bytes));
    }
    match IString::try_from(bytes) {
        Ok(string) => string,
        // Unreachable: without NUL every byte string is a valid literal.
        Err(_) => IString::Literal(Literal::unvalidated(Vec::new())),
    }
}

pub(crate) fn nstring(bytes: Vec<u8>) -> NString<'static> {
    NString(Some(istring(bytes)))
}
