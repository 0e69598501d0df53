//! Validation of transactions: the checks that turn bad input into a clear `TxnError` before it
//! reaches the log. The state machine runs them again on apply (rejecting, never panicking), so
//! a malformed entry can never corrupt an index.

use super::{NewMessage, Op, Txn, UidSet};
use crate::index::flag_bits;
use crate::index::format::{MAX_KEYWORDS, MAX_KEYWORD_LEN};

/// Longest mailbox name, in bytes.
pub const MAX_MAILBOX_NAME_LEN: usize = 255;
/// Deepest mailbox hierarchy.
pub const MAX_MAILBOX_DEPTH: usize = 16;
/// Longest user name, in bytes.
pub const MAX_USER_LEN: usize = 255;
pub use super::MAX_CLIENT_ID_LEN;
/// Most messages in one append.
pub const MAX_APPEND_BATCH: usize = 10_000;
/// Most ranges in one UID set.
pub const MAX_UID_RANGES: usize = 10_000;
/// Largest message size accepted (4 GiB - 1).
pub const MAX_MESSAGE_SIZE: u64 = u32::MAX as u64;
/// Internal dates accepted: 1900-01-01 to 9999-12-31, as IMAP date-times allow.
pub const INTERNAL_DATE_RANGE: std::ops::RangeInclusive<i64> = -2_208_988_800..=253_402_300_799;
/// Hierarchy separator of mailbox names.
pub const HIERARCHY_SEPARATOR: char = '/';

/// Why a transaction is malformed. Each message says what is wrong and with which value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("invalid client_id: {reason}")]
    InvalidClientId { reason: &'static str },
    #[error("request_seq must be at least 1")]
    ZeroRequestSeq,
    #[error("invalid user name: {reason}")]
    InvalidUser { reason: &'static str },
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidMailboxName { name: String, reason: &'static str },
    #[error("the UID set is empty")]
    EmptyUidSet,
    #[error("the UID set has {count} ranges; at most {max} are allowed")]
    TooManyRanges { count: usize, max: usize },
    #[error("unknown system flag {flag:?}; storable ones are \\Seen \\Answered \\Flagged \\Deleted \\Draft")]
    UnknownSystemFlag { flag: String },
    #[error("invalid keyword {keyword:?}: {reason}")]
    InvalidKeyword { keyword: String, reason: &'static str },
    #[error("{count} flags and keywords given; at most {max} are allowed")]
    TooManyKeywords { count: usize, max: usize },
    #[error("an append needs at least one message")]
    EmptyAppend,
    #[error("{count} messages in one append; at most {max} are allowed")]
    TooManyMessages { count: usize, max: usize },
    #[error("message size {size} exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: u64, max: u64 },
    #[error("internal date {date} is outside 1900-01-01..9999-12-31")]
    InvalidInternalDate { date: i64 },
    #[error("message GUID must not be all zero")]
    ZeroGuid,
    #[error("UIDVALIDITY must be at least 1")]
    ZeroUidValidity,
    #[error("cannot rename {name:?} to itself")]
    RenameToSelf { name: String },
    #[error("INBOX cannot be renamed or deleted")]
    InboxImmutable,
    #[error("the encoding gate cannot go to encoding 0")]
    ZeroEncoding,
    #[error("{messages} messages and {bodies} body ids: one body per message")]
    BodiesMismatch { messages: usize, bodies: usize },
    #[error("a body id must not be all zero")]
    ZeroBody,
    #[error("cannot move messages from {name:?} into the same mailbox")]
    MoveToSelf { name: String },
    #[error("{op} needs log encoding {needs}; the group's is {encoding}")]
    NotInEncoding {
        op: &'static str,
        needs: u8,
        encoding: u8,
    },
    /// A name against the rules of log encoding 2 and later (`check_name_text`).
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
}

/// System flags and keywords parsed from IMAP spellings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFlags {
    /// `flag_bits`.
    pub system: u8,
    /// Keywords, deduplicated case-insensitively, in first-seen order.
    pub keywords: Vec<String>,
}

/// Checks a whole transaction by the rules of log encoding `encoding` (the state machine applies
/// a group's entries by its active encoding's rules, so every replica decides alike).
pub fn validate_in(txn: &Txn, encoding: u8) -> Result<(), TxnError> {
    // The gate entry itself is the one op above its group's encoding (it raises it).
    if !matches!(txn.op, Op::SetEncoding { .. }) && super::encoding::required_encoding(&txn.op) > encoding {
        return Err(TxnError::NotInEncoding {
            op: txn.op.describe(),
            needs: super::encoding::required_encoding(&txn.op),
            encoding,
        });
    }
    validate_content(txn, encoding)
}

/// The checks of [`validate_in`] but whether the op exists in `encoding` (the API's: whether
/// the group has the op yet is decided when the entry is encoded, `encoding::encode_entry`).
pub fn validate_content(txn: &Txn, encoding: u8) -> Result<(), TxnError> {
    validate_encoding_0(txn)?;
    if encoding >= 2 {
        check_names_v2(&txn.op)?;
    }
    Ok(())
}

/// The names rules from log encoding 2 on: user and mailbox names in Unicode NFC (RFC 5198;
/// IMAP's UTF-8 names, RFC 6855), with no default-ignorable code point (bidi controls, zero-width
/// characters: names that look alike must be the same name); user names that are no path (`.`,
/// `..`, `/`, `\`) nor an IMAP wildcard (`*`, `%`).
fn check_names_v2(op: &Op) -> Result<(), TxnError> {
    let user = op.user();
    if !user.is_empty() {
        check_name_text("user name", user)?;
        if user == "." || user == ".." || user.contains(['/', '\\', '*', '%']) {
            return Err(TxnError::InvalidName {
                what: "user name",
                name: user.to_string(),
                reason: "looks like a path or an IMAP wildcard (., .., /, \\, *, %)",
            });
        }
    }
    let mailboxes: &[&String] = match op {
        Op::CreateMailbox { mailbox, .. }
        | Op::DeleteMailbox { mailbox, .. }
        | Op::Append { mailbox, .. }
        | Op::Store { mailbox, .. }
        | Op::Expunge { mailbox, .. }
        | Op::Deliver { mailbox, .. }
        | Op::Subscribe { mailbox, .. }
        | Op::Unsubscribe { mailbox, .. } => &[mailbox],
        Op::RenameMailbox { from, to, .. } | Op::Copy { from, to, .. } | Op::Move { from, to, .. } => {
            &[from, to]
        }
        Op::SetEncoding { .. } | Op::Probe { .. } => &[],
    };
    for mailbox in mailboxes {
        check_name_text("mailbox name", mailbox)?;
    }
    Ok(())
}

/// Whether `c` is a default-ignorable code point (Unicode's `Default_Ignorable_Code_Point`,
/// DerivedCoreProperties.txt): drawn as nothing, so two names differing in them look the same.
/// The bidi controls (U+061C, U+200E-200F, U+202A-202E, U+2066-2069) are among them.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// A name's text by the rules of log encoding 2: NFC, no default-ignorable code point.
pub fn check_name_text(what: &'static str, name: &str) -> Result<(), TxnError> {
    let reason = if name.chars().any(is_default_ignorable) {
        "contains an invisible or bidi control character"
    } else if !unicode_normalization::is_nfc(name) {
        "is not in Unicode NFC (normalize it first)"
    } else {
        return Ok(());
    };
    Err(TxnError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    })
}

/// Checks a whole transaction by the rules of log encoding 0 (and 1).
fn validate_encoding_0(txn: &Txn) -> Result<(), TxnError> {
    check_client_id(&txn.client_id)?;
    if txn.request_seq == 0 {
        return Err(TxnError::ZeroRequestSeq);
    }
    if let Op::SetEncoding { version } = &txn.op {
        return if *version == 0 {
            Err(TxnError::ZeroEncoding)
        } else {
            Ok(())
        };
    }
    check_user(txn.op.user())?;
    match &txn.op {
        Op::CreateMailbox {
            mailbox,
            mailbox_guid,
            uid_validity,
            ..
        } => {
            check_mailbox_name(mailbox)?;
            if *mailbox_guid == [0; 16] {
                return Err(TxnError::ZeroGuid);
            }
            if *uid_validity == 0 {
                return Err(TxnError::ZeroUidValidity);
            }
        }
        Op::RenameMailbox { from, to, .. } => {
            check_mailbox_name(from)?;
            check_mailbox_name(to)?;
            if is_inbox(from) {
                return Err(TxnError::InboxImmutable);
            }
            if canonical_mailbox_name(from) == canonical_mailbox_name(to) {
                return Err(TxnError::RenameToSelf { name: from.clone() });
            }
        }
        Op::DeleteMailbox { mailbox, .. } => {
            check_mailbox_name(mailbox)?;
            if is_inbox(mailbox) {
                return Err(TxnError::InboxImmutable);
            }
        }
        Op::Append {
            mailbox, messages, ..
        } => {
            check_mailbox_name(mailbox)?;
            if messages.is_empty() {
                return Err(TxnError::EmptyAppend);
            }
            if messages.len() > MAX_APPEND_BATCH {
                return Err(TxnError::TooManyMessages {
                    count: messages.len(),
                    max: MAX_APPEND_BATCH,
                });
            }
            messages.iter().try_for_each(check_message)?;
        }
        Op::Store {
            mailbox, uids, flags, ..
        } => {
            check_mailbox_name(mailbox)?;
            check_uid_set(uids)?;
            parse_flags(flags)?;
        }
        Op::Expunge {
            mailbox,
            uids,
            expected_guids,
            ..
        } => {
            check_mailbox_name(mailbox)?;
            check_uid_set(uids)?;
            if expected_guids.len() > MAX_APPEND_BATCH {
                return Err(TxnError::TooManyMessages {
                    count: expected_guids.len(),
                    max: MAX_APPEND_BATCH,
                });
            }
        }
        Op::Deliver {
            mailbox,
            messages,
            bodies,
            ..
        } => {
            check_mailbox_name(mailbox)?;
            if messages.is_empty() {
                return Err(TxnError::EmptyAppend);
            }
            if messages.len() > MAX_APPEND_BATCH {
                return Err(TxnError::TooManyMessages {
                    count: messages.len(),
                    max: MAX_APPEND_BATCH,
                });
            }
            messages.iter().try_for_each(check_message)?;
            if bodies.len() != messages.len() {
                return Err(TxnError::BodiesMismatch {
                    messages: messages.len(),
                    bodies: bodies.len(),
                });
            }
            if bodies.contains(&[0; 16]) {
                return Err(TxnError::ZeroBody);
            }
        }
        Op::Copy { from, to, uids, .. } => {
            check_mailbox_name(from)?;
            check_mailbox_name(to)?;
            check_uid_set(uids)?;
        }
        Op::Move { from, to, uids, .. } => {
            check_mailbox_name(from)?;
            check_mailbox_name(to)?;
            check_uid_set(uids)?;
            if canonical_mailbox_name(from) == canonical_mailbox_name(to) {
                return Err(TxnError::MoveToSelf { name: from.clone() });
            }
        }
        Op::Subscribe { mailbox, .. } | Op::Unsubscribe { mailbox, .. } => check_mailbox_name(mailbox)?,
        Op::Probe { .. } => {}
        Op::SetEncoding { .. } => unreachable!("returned above"),
    }
    Ok(())
}

fn check_message(message: &NewMessage) -> Result<(), TxnError> {
    if message.guid == [0; 16] {
        return Err(TxnError::ZeroGuid);
    }
    if message.size > MAX_MESSAGE_SIZE {
        return Err(TxnError::MessageTooLarge {
            size: message.size,
            max: MAX_MESSAGE_SIZE,
        });
    }
    if !INTERNAL_DATE_RANGE.contains(&message.internal_date) {
        return Err(TxnError::InvalidInternalDate {
            date: message.internal_date,
        });
    }
    parse_flags(&message.flags)?;
    Ok(())
}

fn check_uid_set(uids: &UidSet) -> Result<(), TxnError> {
    if uids.is_empty() {
        return Err(TxnError::EmptyUidSet);
    }
    if uids.ranges().len() > MAX_UID_RANGES {
        return Err(TxnError::TooManyRanges {
            count: uids.ranges().len(),
            max: MAX_UID_RANGES,
        });
    }
    Ok(())
}

pub fn check_client_id(client_id: &str) -> Result<(), TxnError> {
    let reason = if client_id.is_empty() {
        "empty"
    } else if client_id.len() > MAX_CLIENT_ID_LEN {
        "longer than 64 bytes"
    } else if !client_id.bytes().all(|b| b.is_ascii_graphic()) {
        "only printable ASCII without spaces is allowed"
    } else {
        return Ok(());
    };
    Err(TxnError::InvalidClientId { reason })
}

pub fn check_user(user: &str) -> Result<(), TxnError> {
    let reason = if user.is_empty() {
        "empty"
    } else if user.len() > MAX_USER_LEN {
        "longer than 255 bytes"
    } else if user.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(TxnError::InvalidUser { reason })
}

/// Checks a mailbox name given as raw bytes (as from a URL path), returning it as text.
pub fn mailbox_name_from_bytes(bytes: &[u8]) -> Result<&str, TxnError> {
    let name = std::str::from_utf8(bytes).map_err(|_| TxnError::InvalidMailboxName {
        name: String::from_utf8_lossy(bytes).into_owned(),
        reason: "not valid UTF-8",
    })?;
    check_mailbox_name(name)?;
    Ok(name)
}

/// Checks a mailbox name: non-empty, at most 255 bytes and 16 levels, `/`-separated non-empty
/// components other than `.` and `..`, no control characters, no LIST wildcards.
pub fn check_mailbox_name(name: &str) -> Result<(), TxnError> {
    let fail = |reason| {
        Err(TxnError::InvalidMailboxName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > MAX_MAILBOX_NAME_LEN {
        return fail("longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_control()) {
        return fail("contains control characters");
    }
    if name.contains(['*', '%']) {
        return fail("contains a LIST wildcard (* or %)");
    }
    let mut depth = 0;
    for component in name.split(HIERARCHY_SEPARATOR) {
        depth += 1;
        if component.is_empty() {
            return fail("has an empty hierarchy level (leading, trailing or doubled '/')");
        }
        if component == "." || component == ".." {
            return fail("has a '.' or '..' hierarchy level");
        }
        if component.trim() != component {
            return fail("a hierarchy level starts or ends with whitespace");
        }
    }
    if depth > MAX_MAILBOX_DEPTH {
        return fail("more than 16 hierarchy levels");
    }
    Ok(())
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// The stored form of a mailbox name: a first level of "inbox" in any case is "INBOX".
pub fn canonical_mailbox_name(name: &str) -> String {
    let (first, rest) = match name.split_once(HIERARCHY_SEPARATOR) {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    if is_inbox(first) {
        match rest {
            Some(rest) => format!("INBOX{HIERARCHY_SEPARATOR}{rest}"),
            None => "INBOX".to_string(),
        }
    } else {
        name.to_string()
    }
}

/// Splits IMAP flag spellings into system flag bits and keywords.
pub fn parse_flags(flags: &[String]) -> Result<ParsedFlags, TxnError> {
    let max = MAX_KEYWORDS + 5;
    if flags.len() > max {
        return Err(TxnError::TooManyKeywords {
            count: flags.len(),
            max,
        });
    }
    let mut parsed = ParsedFlags::default();
    for flag in flags {
        if let Some(system) = flag.strip_prefix('\\') {
            let bit = match system.to_ascii_lowercase().as_str() {
                "seen" => flag_bits::SEEN,
                "answered" => flag_bits::ANSWERED,
                "flagged" => flag_bits::FLAGGED,
                "deleted" => flag_bits::DELETED,
                "draft" => flag_bits::DRAFT,
                _ => return Err(TxnError::UnknownSystemFlag { flag: flag.clone() }),
            };
            parsed.system |= bit;
            continue;
        }
        check_keyword(flag)?;
        if !parsed.keywords.iter().any(|k| k.eq_ignore_ascii_case(flag)) {
            parsed.keywords.push(flag.clone());
        }
    }
    if parsed.keywords.len() > MAX_KEYWORDS {
        return Err(TxnError::TooManyKeywords {
            count: parsed.keywords.len(),
            max: MAX_KEYWORDS,
        });
    }
    Ok(parsed)
}

/// A keyword is an IMAP atom of 1 to 61 bytes.
pub fn check_keyword(keyword: &str) -> Result<(), TxnError> {
    let fail = |reason| {
        Err(TxnError::InvalidKeyword {
            keyword: keyword.to_string(),
            reason,
        })
    };
    if keyword.is_empty() {
        return fail("empty");
    }
    if keyword.len() > MAX_KEYWORD_LEN {
        return fail("longer than 61 bytes");
    }
    let atom = |b: u8| (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b);
    if !keyword.bytes().all(atom) {
        return fail("not an IMAP atom (printable ASCII without ( ) { % * \" \\ ] or space)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(user: &str, mailbox: &str) -> Txn {
        Txn {
            client_id: "c".into(),
            request_seq: 1,
            op: Op::CreateMailbox {
                user: user.into(),
                mailbox: mailbox.into(),
                mailbox_guid: [1; 16],
                uid_validity: 1,
            },
        }
    }

    /// Names that look alike are one name from log encoding 2 on: only NFC, nothing invisible,
    /// no user name that is a path or a wildcard. Encodings 0 and 1 keep their rules, so old
    /// log entries apply as they did.
    #[test]
    fn encoding_2_names_are_nfc_visible_and_not_paths() {
        let nfc = "caf\u{e9}";
        let nfd = "cafe\u{301}";
        for (user, mailbox) in [
            ("alice", nfd),
            (nfd, "INBOX"),
            ("alice", "in\u{202e}box"),
            ("al\u{200b}ice", "INBOX"),
            (".", "INBOX"),
            ("..", "INBOX"),
            ("a/b", "INBOX"),
            ("a*", "INBOX"),
            ("a%", "INBOX"),
            ("a\\b", "INBOX"),
        ] {
            let txn = create(user, mailbox);
            assert!(
                matches!(validate_in(&txn, 2), Err(TxnError::InvalidName { .. })),
                "{user:?} {mailbox:?}"
            );
            assert_eq!(
                validate_in(&txn, 1),
                Ok(()),
                "{user:?} {mailbox:?} before encoding 2"
            );
        }
        assert_eq!(validate_in(&create("alice", nfc), 2), Ok(()));
        assert_eq!(validate_in(&create(nfc, "Archive/2024"), 2), Ok(()));
    }
    use crate::txn::StoreMode;

    fn txn(op: Op) -> Txn {
        Txn {
            client_id: "c1".into(),
            request_seq: 1,
            op,
        }
    }

    #[test]
    fn mailbox_names() {
        for good in ["INBOX", "Archive/2024", "Ünïcode", "a b"] {
            check_mailbox_name(good).unwrap();
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "x*", "tab\there", " lead"] {
            assert!(
                matches!(check_mailbox_name(bad), Err(TxnError::InvalidMailboxName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(check_mailbox_name(&"x".repeat(256)).is_err());
        assert!(check_mailbox_name(&vec!["a"; 17].join("/")).is_err());
        assert!(mailbox_name_from_bytes(b"caf\xe9").is_err());
        assert_eq!(canonical_mailbox_name("inbox/Sub"), "INBOX/Sub");
        assert_eq!(canonical_mailbox_name("Inboxes"), "Inboxes");
    }

    #[test]
    fn flags_and_keywords() {
        let p = parse_flags(&["\\Seen".into(), "$Junk".into(), "$junk".into(), "\\DRAFT".into()]).unwrap();
        assert_eq!(p.system, flag_bits::SEEN | flag_bits::DRAFT);
        assert_eq!(p.keywords, vec!["$Junk".to_string()]);
        assert!(matches!(
            parse_flags(&["\\Recent".into()]),
            Err(TxnError::UnknownSystemFlag { .. })
        ));
        assert!(matches!(
            parse_flags(&["a b".into()]),
            Err(TxnError::InvalidKeyword { .. })
        ));
        let many: Vec<String> = (0..129).map(|i| format!("k{i}")).collect();
        assert!(matches!(
            parse_flags(&many),
            Err(TxnError::TooManyKeywords { .. })
        ));
    }

    #[test]
    fn whole_transactions() {
        let store = |uids: UidSet| {
            txn(Op::Store {
                user: "u".into(),
                mailbox: "INBOX".into(),
                uids,
                mode: StoreMode::Add,
                flags: vec!["\\Seen".into()],
                unchanged_since: None,
            })
        };
        assert_eq!(validate_in(&store(UidSet::new()), 2), Err(TxnError::EmptyUidSet));
        validate_in(&store(UidSet::parse("1:3").unwrap()), 2).unwrap();
        let append = |size, messages: usize| {
            txn(Op::Append {
                user: "u".into(),
                mailbox: "INBOX".into(),
                messages: vec![
                    NewMessage {
                        guid: [1; 16],
                        size,
                        internal_date: 0,
                        flags: vec![],
                    };
                    messages
                ],
            })
        };
        assert!(matches!(
            validate_in(&append(1 << 40, 1), 2),
            Err(TxnError::MessageTooLarge { .. })
        ));
        assert_eq!(validate_in(&append(10, 0), 2), Err(TxnError::EmptyAppend));
        assert!(matches!(
            validate_in(&append(10, 10_001), 2),
            Err(TxnError::TooManyMessages { .. })
        ));
        let mut t = append(10, 1);
        t.client_id = String::new();
        assert!(matches!(
            validate_in(&t, 2),
            Err(TxnError::InvalidClientId { .. })
        ));
        let rename = txn(Op::RenameMailbox {
            user: "u".into(),
            from: "inbox".into(),
            to: "x".into(),
        });
        assert_eq!(validate_in(&rename, 2), Err(TxnError::InboxImmutable));
    }

    /// The encoding-4 ops: they exist only from encoding 4 on; a copy may stay within its
    /// mailbox, a move may not (also spelled differently: `inbox` is `INBOX`); their UID sets
    /// and names follow the rules of the other ops.
    #[test]
    fn copies_moves_and_subscriptions() {
        let copy = |from: &str, to: &str, uids: &str| Op::Copy {
            user: "u".into(),
            from: from.into(),
            to: to.into(),
            uids: UidSet::parse(uids).unwrap(),
        };
        let moving = |from: &str, to: &str| Op::Move {
            user: "u".into(),
            from: from.into(),
            to: to.into(),
            uids: UidSet::parse("1:4294967295").unwrap(),
        };
        validate_in(&txn(copy("INBOX", "Archive", "1:5,7")), 4).unwrap();
        validate_in(&txn(copy("INBOX", "INBOX", "1")), 4).unwrap();
        assert!(matches!(
            validate_in(&txn(copy("INBOX", "Archive", "1")), 3),
            Err(TxnError::NotInEncoding {
                op: "copy",
                needs: 4,
                encoding: 3
            })
        ));
        assert_eq!(
            validate_in(&txn(moving("INBOX", "inbox")), 4),
            Err(TxnError::MoveToSelf { name: "INBOX".into() })
        );
        validate_in(&txn(moving("INBOX", "Trash")), 4).unwrap();
        let mut empty = txn(copy("INBOX", "Archive", "1"));
        if let Op::Copy { uids, .. } = &mut empty.op {
            *uids = UidSet::new();
        }
        assert_eq!(validate_in(&empty, 4), Err(TxnError::EmptyUidSet));
        assert!(matches!(
            validate_in(&txn(copy("INBOX", "a//b", "1")), 4),
            Err(TxnError::InvalidMailboxName { .. })
        ));
        let subscribe = |mailbox: &str| Op::Subscribe {
            user: "u".into(),
            mailbox: mailbox.into(),
        };
        validate_in(&txn(subscribe("Not/There/Yet")), 4).unwrap();
        assert!(matches!(
            validate_in(&txn(subscribe("x*")), 4),
            Err(TxnError::InvalidMailboxName { .. })
        ));
        assert!(matches!(
            validate_in(&txn(subscribe("cafe\u{301}")), 4),
            Err(TxnError::InvalidName { .. })
        ));
        assert!(matches!(
            validate_in(
                &txn(Op::Unsubscribe {
                    user: "u".into(),
                    mailbox: "a\u{200b}b".into()
                }),
                4
            ),
            Err(TxnError::InvalidName { .. })
        ));
    }
}
