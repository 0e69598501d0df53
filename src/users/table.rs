//! One loaded passwd-file: users by name, and the dummy hash an unknown user's login is checked
//! against, so that it costs what a wrong password costs.

use std::collections::HashMap;

use super::passwd::{normalize_user, PasswdEntry};
use super::scheme::{hash_password, Cost, Scheme, StoredHash};
use super::UsersError;

/// The users of one passwd-file, immutable once built (a reload builds a new one).
#[derive(Debug)]
pub struct UserTable {
    users: HashMap<String, PasswdEntry>,
    /// Invariant: `dummy.cost()` is the most common cost among the users' hashes (ties: the one
    /// of the earliest line), or `Cost::default_for(Argon2id)` when no user has a password.
    dummy: StoredHash,
}

impl UserTable {
    /// Builds the table and its dummy hash (one KDF run: a random password at the chosen cost).
    pub fn new(entries: Vec<PasswdEntry>) -> Result<UserTable, UsersError> {
        let dummy_cost = most_common_cost(&entries);
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| UsersError::Hash {
            reason: "no OS randomness",
        })?;
        let dummy = hash_password(&secret, dummy_cost).map_err(|reason| UsersError::Hash { reason })?;
        debug_assert_eq!(dummy.cost(), dummy_cost);
        let users = entries.into_iter().map(|e| (e.user.clone(), e)).collect();
        Ok(UserTable { users, dummy })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The entry of `user` (normalized first), if the file names them.
    pub fn get(&self, user: &str) -> Option<&PasswdEntry> {
        normalize_user(user).ok().and_then(|u| self.users.get(&u))
    }

    /// Whether `password` is `user`'s. Always runs one KDF: the user's hash, or the dummy hash
    /// for an unknown user or a user without a password, so the time taken does not tell whether
    /// the user exists (for users whose hash has the dummy's cost: the most common one).
    /// CPU-bound (about 0.1 s at the default costs): call it off the async runtime.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let stored = self.get(user).and_then(|entry| entry.hash.as_ref());
        let (hash, known) = match stored {
            Some(hash) => (hash, true),
            None => (&self.dummy, false),
        };
        match hash.verify(password) {
            Ok(matches) => matches && known,
            Err(reason) => {
                tracing::warn!(user, reason, "password check failed to run");
                false
            }
        }
    }

    pub fn dummy_cost(&self) -> Cost {
        self.dummy.cost()
    }
}

fn most_common_cost(entries: &[PasswdEntry]) -> Cost {
    let mut counts: HashMap<Cost, (usize, usize)> = HashMap::new();
    for entry in entries {
        if let Some(hash) = &entry.hash {
            let count = counts.entry(hash.cost()).or_insert((0, entry.line));
            count.0 += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, (count, first_line))| (*count, std::cmp::Reverse(*first_line)))
        .map(|(cost, _)| cost)
        .unwrap_or(Cost::default_for(Scheme::Argon2id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::passwd::parse_passwd;
    use crate::users::scheme::{cheap_cost, KDF_RUNS};

    fn table(lines: &[(&str, Option<(Cost, &str)>)]) -> UserTable {
        let mut text = String::new();
        for (user, hash) in lines {
            let field = hash
                .map(|(cost, pw)| hash_password(pw.as_bytes(), cost).unwrap().to_field())
                .unwrap_or_default();
            text.push_str(&format!("{user}:{field}\n"));
        }
        UserTable::new(parse_passwd(text.as_bytes()).unwrap()).unwrap()
    }

    fn kdf_runs(f: impl FnOnce() -> bool) -> (bool, Vec<Cost>) {
        KDF_RUNS.with(|runs| runs.borrow_mut().clear());
        let result = f();
        (result, KDF_RUNS.with(|runs| runs.borrow_mut().split_off(0)))
    }

    #[test]
    fn verify_known_wrong_unknown_and_passwordless() {
        let argon = cheap_cost(Scheme::Argon2id);
        let sha = cheap_cost(Scheme::Sha512Crypt);
        let t = table(&[
            ("alice", Some((argon, "a-pw"))),
            ("bob", Some((sha, "b-pw"))),
            ("carol", Some((argon, "c-pw"))),
            ("dave", None),
        ]);
        assert_eq!(t.len(), 4);
        assert!(t.verify("alice", b"a-pw"));
        assert!(!t.verify("alice", b"b-pw"));
        assert!(t.verify("bob", b"b-pw"));
        assert!(!t.verify("nobody", b"a-pw"));
        assert!(!t.verify("dave", b""));
        assert!(!t.verify("", b""));
        // NFC on lookup too.
        let t = table(&[("caf\u{e9}", Some((sha, "pw")))]);
        assert!(t.verify("cafe\u{301}", b"pw"));
    }

    /// An unknown user's check runs the same KDF at the same cost as a wrong password of the
    /// file's usual hash: checked by what ran, not by a stopwatch.
    #[test]
    fn an_unknown_user_runs_the_kdf_a_wrong_password_runs() {
        for scheme in [Scheme::Argon2id, Scheme::Sha512Crypt, Scheme::BlfCrypt] {
            let cost = cheap_cost(scheme);
            let t = table(&[("alice", Some((cost, "pw"))), ("dave", None)]);
            assert_eq!(t.dummy_cost(), cost);
            let (ok, wrong) = kdf_runs(|| t.verify("alice", b"wrong"));
            assert!(!ok);
            let (ok, unknown) = kdf_runs(|| t.verify("mallory", b"wrong"));
            assert!(!ok);
            let (ok, invalid_name) = kdf_runs(|| t.verify("../x", b"wrong"));
            assert!(!ok);
            let (ok, passwordless) = kdf_runs(|| t.verify("dave", b"wrong"));
            assert!(!ok);
            assert_eq!(wrong, vec![cost]);
            assert_eq!(unknown, wrong);
            assert_eq!(invalid_name, wrong);
            assert_eq!(passwordless, wrong);
        }
    }

    #[test]
    fn the_dummy_takes_the_most_common_cost() {
        let argon = cheap_cost(Scheme::Argon2id);
        let blf = cheap_cost(Scheme::BlfCrypt);
        let t = table(&[
            ("a", Some((argon, "x"))),
            ("b", Some((blf, "x"))),
            ("c", Some((blf, "x"))),
        ]);
        assert_eq!(t.dummy_cost(), blf);
        let t = table(&[("a", Some((argon, "x"))), ("b", Some((blf, "x")))]);
        assert_eq!(t.dummy_cost(), argon, "a tie goes to the earliest line");
    }
}
