//! LIST (RFC 3501 §6.3.8): the reference and the pattern joined, `*` and `%` matched against a
//! user's mailbox names (hierarchy delimiter `/`, `INBOX` in any case), parents that are no
//! mailbox themselves shown `\Noselect`, the special-use mailboxes (RFC 6154) with their
//! attribute. Pure: no I/O.

use std::collections::BTreeMap;

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// The special-use mailboxes every user gets at first login, with their attribute.
pub const SPECIAL_USE: [(&str, &str); 4] = [
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
];

/// `name` with a leading `INBOX` in any case spelled `INBOX` (RFC 3501 §5.1: INBOX is
/// case-insensitive, its children too).
pub fn canonical_inbox(name: &str) -> String {
    let head = name.get(..5);
    match head {
        Some(h)
            if h.eq_ignore_ascii_case("INBOX") && (name.len() == 5 || name[5..].starts_with(DELIMITER)) =>
        {
            format!("INBOX{}", &name[5..])
        }
        _ => name.to_string(),
    }
}

/// The pattern LIST matches: the reference and the mailbox pattern joined (RFC 3501 §6.3.8).
pub fn join_reference(reference: &str, pattern: &str) -> String {
    if reference.is_empty() || pattern.starts_with(DELIMITER) {
        return canonical_inbox(pattern);
    }
    canonical_inbox(&format!("{reference}{pattern}"))
}

/// Whether `name` matches `pattern`: `*` matches anything, `%` anything but the delimiter.
pub fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('%', rest)) => {
                let stop = n.iter().position(|&c| c == DELIMITER).unwrap_or(n.len());
                (0..=stop).any(|i| go(rest, &n[i..]))
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// One LIST answer line: a name and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    pub attributes: Vec<&'static str>,
}

/// The LIST answer for `pattern` over the user's `mailboxes`, in name order.
pub fn list(mailboxes: &[String], pattern: &str) -> Vec<ListEntry> {
    // Every mailbox and every parent of one, with whether it is a mailbox itself.
    let mut names: BTreeMap<String, bool> = BTreeMap::new();
    for name in mailboxes {
        let mut at = 0;
        while let Some(i) = name[at..].find(DELIMITER) {
            names.entry(name[..at + i].to_string()).or_insert(false);
            at += i + 1;
        }
        names.insert(name.clone(), true);
    }
    let has_children = |name: &str| {
        let prefix = format!("{name}{DELIMITER}");
        names
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix))
    };
    names
        .iter()
        .filter(|(name, _)| matches(pattern, name))
        .map(|(name, &is_mailbox)| {
            let mut attributes = Vec::new();
            if !is_mailbox {
                attributes.push("\\Noselect");
            }
            attributes.push(if has_children(name) {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if let Some((_, special)) = SPECIAL_USE.iter().find(|(n, _)| n == name) {
                attributes.push(special);
            }
            ListEntry {
                name: name.clone(),
                attributes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_as_rfc_3501_says() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "a"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("a*c", "a/b/c"));
        assert!(!matches("a%c", "a/b/c"));
        assert!(matches("%/%", "x/y"));
        assert!(matches("Sent", "Sent"));
        assert!(!matches("sent", "Sent"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn inbox_in_any_case_with_its_children() {
        assert_eq!(join_reference("", "inbox"), "INBOX");
        assert_eq!(join_reference("", "InBoX/%"), "INBOX/%");
        assert_eq!(join_reference("", "inboxes"), "inboxes");
        assert_eq!(join_reference("inbox/", "%"), "INBOX/%");
        assert_eq!(join_reference("a/", "/b"), "/b");
    }

    #[test]
    fn parents_are_noselect_and_special_use_is_marked() {
        let boxes = vec!["INBOX".to_string(), "a/b/c".to_string(), "Trash".to_string()];
        let top = list(&boxes, "%");
        let names: Vec<&str> = top.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["INBOX", "Trash", "a"]);
        assert_eq!(top[2].attributes, ["\\Noselect", "\\HasChildren"]);
        assert_eq!(top[1].attributes, ["\\HasNoChildren", "\\Trash"]);
        let all = list(&boxes, "*");
        assert_eq!(all.len(), 5);
        assert_eq!(all.last().unwrap().attributes, ["\\HasNoChildren"]);
    }
}
