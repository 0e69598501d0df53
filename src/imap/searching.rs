//! The pure parts of the SEARCH command ([`super::selected`] runs it): the CHARSET it takes, the
//! criteria as one key, whether a key names MODSEQ (RFC 7162 §3.1.5), and the probe that tells
//! whether [`super::search::matches`] needs the message's body for this message.

use imap_next::imap_types::core::{Charset, Vec1};
use imap_next::imap_types::response::Code;
use imap_next::imap_types::search::SearchKey;

use super::reply::Reply;
use super::search::LazyBytes;

/// The charsets SEARCH takes (RFC 3501 §6.4.4: US-ASCII must be; UTF-8 is what terms are read as).
pub const CHARSETS: [&str; 2] = ["US-ASCII", "UTF-8"];

/// `NO [BADCHARSET (US-ASCII UTF-8)]` for a charset other than those, compared
/// case-insensitively. Terms are then taken as UTF-8 bytes (US-ASCII is a subset of it).
pub fn check_charset(charset: Option<&Charset<'_>>) -> Result<(), Reply> {
    let Some(charset) = charset else {
        return Ok(());
    };
    let name: &str = charset.as_ref();
    if CHARSETS.iter().any(|c| c.eq_ignore_ascii_case(name)) {
        return Ok(());
    }
    let allowed = CHARSETS
        .iter()
        .map(|c| Charset::try_from(*c).expect("valid charset"))
        .collect();
    Err(Reply::no(format!("Charset {name} is not supported")).code(Code::BadCharset { allowed }))
}

/// The criteria as one key: several keys are their AND (RFC 3501 §6.4.4).
pub fn criteria_key(criteria: Vec1<SearchKey<'static>>) -> SearchKey<'static> {
    let mut keys = criteria.into_inner();
    if keys.len() == 1 {
        keys.pop().expect("one key")
    } else {
        SearchKey::And(Vec1::try_from(keys).expect("not empty"))
    }
}

/// Whether `key` names MODSEQ anywhere (the answer then carries `(MODSEQ n)`).
pub fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Not(key) => uses_modseq(key),
        SearchKey::Or(left, right) => uses_modseq(left) || uses_modseq(right),
        _ => false,
    }
}

/// A body not loaded yet: gives none, and remembers that it was asked for. A message is first
/// tried with it; only when the key could not be decided without the body is the body read.
#[derive(Debug, Default)]
pub struct Probe {
    pub asked: bool,
}

impl LazyBytes for Probe {
    fn bytes(&mut self) -> Option<&[u8]> {
        self.asked = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::search::{matches, MessageFacts, SearchContext, SearchError};
    use imap_next::imap_types::core::AString;

    fn charset(name: &str) -> Charset<'static> {
        Charset::try_from(name.to_string()).unwrap()
    }

    #[test]
    fn us_ascii_and_utf8_in_any_case_are_taken_others_get_badcharset() {
        assert!(check_charset(None).is_ok());
        for name in ["US-ASCII", "us-ascii", "UTF-8", "utf-8", "Utf-8"] {
            assert!(check_charset(Some(&charset(name))).is_ok(), "{name}");
        }
        let reply = check_charset(Some(&charset("ISO-8859-1"))).unwrap_err();
        assert_eq!(reply.kind, imap_next::imap_types::response::StatusKind::No);
        match reply.code {
            Some(Code::BadCharset { allowed }) => {
                let names: Vec<&str> = allowed.iter().map(|c| c.as_ref()).collect();
                assert_eq!(names, ["US-ASCII", "UTF-8"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn several_criteria_are_their_and_and_modseq_is_found_anywhere() {
        let one = criteria_key(Vec1::from(SearchKey::Seen));
        assert_eq!(one, SearchKey::Seen);
        let two = criteria_key(Vec1::try_from(vec![SearchKey::Seen, SearchKey::Deleted]).unwrap());
        assert!(matches!(two, SearchKey::And(_)));
        assert!(!uses_modseq(&two));
        let modseq = SearchKey::ModSequence {
            entry: None,
            modseq: 5,
        };
        let nested = SearchKey::Or(
            Box::new(SearchKey::Seen),
            Box::new(SearchKey::Not(Box::new(modseq))),
        );
        assert!(uses_modseq(&nested));
    }

    #[test]
    fn the_probe_decides_cheap_keys_and_asks_for_the_body_only_when_needed() {
        let flags = vec!["\\Seen".to_string()];
        let facts = MessageFacts {
            seq: 1,
            uid: 7,
            flags: &flags,
            internal_date: 0,
            size: 10,
            modseq: 3,
        };
        let ctx = SearchContext {
            max_seq: 1,
            max_uid: 7,
        };
        let from = SearchKey::From(AString::try_from("alice").unwrap());
        // UNSEEN FROM x on a seen message: decided without the body.
        let key = SearchKey::And(Vec1::try_from(vec![SearchKey::Unseen, from.clone()]).unwrap());
        let mut probe = Probe::default();
        assert_eq!(matches(&key, &facts, &mut probe, &ctx), Ok(false));
        assert!(!probe.asked);
        let mut probe = Probe::default();
        assert_eq!(
            matches(&from, &facts, &mut probe, &ctx),
            Err(SearchError::BodyUnavailable { uid: 7 })
        );
        assert!(probe.asked);
    }
}
