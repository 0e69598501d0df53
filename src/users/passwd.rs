//! Dovecot's passwd-file format, parsed (pure: bytes in, entries or a named error out).
//!
//! One user a line: `user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra_fields]`. Lines starting
//! with `#` and blank lines are ignored; a trailing `\r` is dropped. Fields past the seventh
//! belong to `extra_fields` (joined with `:` again, as Dovecot does). An empty password field
//! names a user who exists (mail can be delivered to them) but cannot log in; a password without
//! a `{SCHEME}` prefix is refused rather than guessed at (Dovecot would take its
//! `default_pass_scheme`).

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use super::scheme::{Scheme, StoredHash};
use super::UsersError;

/// One line of a passwd-file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The user name, normalized ([`normalize_user`]).
    pub user: String,
    /// `None`: the password field is empty, the user cannot log in.
    pub hash: Option<StoredHash>,
    pub uid: String,
    pub gid: String,
    pub home: String,
    /// Dovecot's extra fields (`userdb_quota_rule=..` and the like), space-separated, unparsed.
    pub extra_fields: String,
    /// 1-based line of the file.
    pub line: usize,
}

/// A user name as the rest of Dovetail takes it: in Unicode NFC (so that `café` typed either way
/// is one user, as `api::extract::nfc` does for the HTTP API), then checked by the rules the
/// index applies to user names (`txn::validate::check_user` and, from log encoding 2 on,
/// `check_name_text` and no path or IMAP wildcard), so that every user of the file can have
/// mailboxes. The error is the reason.
pub fn normalize_user(name: &str) -> Result<String, String> {
    let user: String = if unicode_normalization::is_nfc(name) {
        name.to_string()
    } else {
        name.nfc().collect()
    };
    crate::txn::validate::check_user(&user).map_err(|e| e.to_string())?;
    crate::txn::validate::check_name_text("user name", &user).map_err(|e| e.to_string())?;
    if user == "." || user == ".." || user.contains(['/', '\\', '*', '%']) {
        return Err("looks like a path or an IMAP wildcard (., .., /, \\, *, %)".into());
    }
    Ok(user)
}

/// Parses a whole passwd-file: every entry, or the first error (with its line number; a hash
/// never appears in an error).
pub fn parse_passwd(text: &[u8]) -> Result<Vec<PasswdEntry>, UsersError> {
    let mut entries = Vec::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(UsersError::Malformed {
                line,
                reason: "not valid UTF-8",
            });
        };
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        let entry = parse_line(text, line)?;
        if let Some(&first_line) = first_line_of.get(&entry.user) {
            return Err(UsersError::DuplicateUser {
                line,
                first_line,
                user: entry.user,
            });
        }
        first_line_of.insert(entry.user.clone(), line);
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_line(text: &str, line: usize) -> Result<PasswdEntry, UsersError> {
    let mut fields = text.splitn(8, ':');
    let name = fields.next().unwrap_or_default();
    let Some(password) = fields.next() else {
        return Err(UsersError::Malformed {
            line,
            reason: "no ':' after the user name",
        });
    };
    if name.is_empty() {
        return Err(UsersError::Malformed {
            line,
            reason: "empty user name",
        });
    }
    let user = normalize_user(name).map_err(|reason| UsersError::InvalidUser { line, reason })?;
    let hash = if password.is_empty() {
        None
    } else {
        let Some(rest) = password.strip_prefix('{') else {
            return Err(UsersError::Malformed {
                line,
                reason: "password without a {SCHEME} prefix",
            });
        };
        let Some((scheme_name, encoded)) = rest.split_once('}') else {
            return Err(UsersError::Malformed {
                line,
                reason: "unterminated {SCHEME} prefix",
            });
        };
        let Some(scheme) = Scheme::from_name(scheme_name) else {
            return Err(UsersError::UnknownScheme {
                line,
                // A scheme name is short and no secret; cut it so a hash pasted in its place
                // by mistake is not printed whole.
                scheme: scheme_name.chars().take(24).collect(),
            });
        };
        let hash = StoredHash::parse(scheme, encoded).map_err(|reason| UsersError::BadHash {
            line,
            scheme: scheme.name(),
            reason,
        })?;
        Some(hash)
    };
    let uid = fields.next().unwrap_or_default().to_string();
    let gid = fields.next().unwrap_or_default().to_string();
    let _gecos = fields.next();
    let home = fields.next().unwrap_or_default().to_string();
    let _shell = fields.next();
    let extra_fields = fields.next().unwrap_or_default().to_string();
    Ok(PasswdEntry {
        user,
        hash,
        uid,
        gid,
        home,
        extra_fields,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2y$05$dB9ilfcj1.XEL5OXhMnI3OOTqLwL4MLXdXz4Hv/yZrjmhB9LLXJBm";

    #[test]
    fn parses_comments_blank_lines_and_optional_fields() {
        let text = format!(
            "# users\n\n   \nalice:{{BLF-CRYPT}}{BCRYPT}\r\nbob:{{blf-crypt}}{BCRYPT}:1000:1000:Bob:/home/bob:/bin/false:userdb_quota_rule=*:storage=1G x=y\ncarol:\n"
        );
        let entries = parse_passwd(text.as_bytes()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!((entries[0].user.as_str(), entries[0].line), ("alice", 4));
        assert!(entries[0].hash.is_some());
        assert_eq!(entries[1].uid, "1000");
        assert_eq!(entries[1].home, "/home/bob");
        assert_eq!(entries[1].extra_fields, "userdb_quota_rule=*:storage=1G x=y");
        assert_eq!(
            (entries[2].user.as_str(), entries[2].hash.is_none()),
            ("carol", true)
        );
    }

    #[test]
    fn user_names_are_nfc_and_two_spellings_are_one_duplicate_user() {
        let text = format!("cafe\u{301}:{{BLF-CRYPT}}{BCRYPT}\ncaf\u{e9}:{{BLF-CRYPT}}{BCRYPT}\n");
        match parse_passwd(text.as_bytes()) {
            Err(UsersError::DuplicateUser {
                line: 2,
                first_line: 1,
                user,
            }) => assert_eq!(user, "caf\u{e9}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(normalize_user("cafe\u{301}").unwrap(), "caf\u{e9}");
    }

    /// Every error names its line and none quotes the hash.
    #[test]
    fn every_malformed_line_is_a_named_error_with_its_line() {
        type Expected = fn(&UsersError) -> bool;
        let cases: Vec<(String, Expected)> = vec![
            ("alice".into(), |e| {
                matches!(
                    e,
                    UsersError::Malformed {
                        reason: "no ':' after the user name",
                        ..
                    }
                )
            }),
            (format!(":{{BLF-CRYPT}}{BCRYPT}"), |e| {
                matches!(
                    e,
                    UsersError::Malformed {
                        reason: "empty user name",
                        ..
                    }
                )
            }),
            (format!("al ice:{{BLF-CRYPT}}{BCRYPT}"), |e| {
                matches!(e, UsersError::InvalidUser { .. })
            }),
            (format!("a\u{200b}b:{{BLF-CRYPT}}{BCRYPT}"), |e| {
                matches!(e, UsersError::InvalidUser { .. })
            }),
            (format!("../x:{{BLF-CRYPT}}{BCRYPT}"), |e| {
                matches!(e, UsersError::InvalidUser { .. })
            }),
            (format!("{}:{{BLF-CRYPT}}{BCRYPT}", "a".repeat(256)), |e| {
                matches!(e, UsersError::InvalidUser { .. })
            }),
            (format!("alice:{BCRYPT}"), |e| {
                matches!(
                    e,
                    UsersError::Malformed {
                        reason: "password without a {SCHEME} prefix",
                        ..
                    }
                )
            }),
            (format!("alice:{{BLF-CRYPT{BCRYPT}"), |e| {
                matches!(
                    e,
                    UsersError::Malformed {
                        reason: "unterminated {SCHEME} prefix",
                        ..
                    }
                )
            }),
            (
                format!("alice:{{MD5-CRYPT}}{BCRYPT}"),
                |e| matches!(e, UsersError::UnknownScheme { scheme, .. } if scheme == "MD5-CRYPT"),
            ),
            (format!("alice:{{SHA512-CRYPT}}{BCRYPT}"), |e| {
                matches!(
                    e,
                    UsersError::BadHash {
                        scheme: "SHA512-CRYPT",
                        ..
                    }
                )
            }),
            (format!("alice:{{ARGON2ID}}{BCRYPT}"), |e| {
                matches!(
                    e,
                    UsersError::BadHash {
                        scheme: "ARGON2ID",
                        ..
                    }
                )
            }),
            (format!("alice:{{BLF-CRYPT}}{}", &BCRYPT[..40]), |e| {
                matches!(
                    e,
                    UsersError::BadHash {
                        scheme: "BLF-CRYPT",
                        ..
                    }
                )
            }),
        ];
        for (bad, expected) in cases {
            let text = format!("# first\nzed:{{BLF-CRYPT}}{BCRYPT}\n{bad}\n");
            let error = parse_passwd(text.as_bytes()).unwrap_err();
            assert!(expected(&error), "{bad:?}: {error:?}");
            let message = error.to_string();
            assert!(message.contains("line 3"), "{message}");
            assert!(!message.contains(&BCRYPT[8..]), "the hash leaks: {message}");
        }
        let error = parse_passwd(b"# ok\n\xff:x\n").unwrap_err();
        assert!(matches!(
            error,
            UsersError::Malformed {
                line: 2,
                reason: "not valid UTF-8"
            }
        ));
    }
}
