//! `Users`: the passwd-file a node serves logins from, swapped whole on a reload. A reload that
//! fails (a broken edit, a missing file) keeps the table in use and returns the error: an edit
//! in progress must not lock everyone out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::passwd::parse_passwd;
use super::table::UserTable;
use super::UsersError;

/// The users of one passwd-file, shared by every session of a node.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    /// Replaced whole, never changed in place: a check holds its `Arc` for the length of a KDF
    /// run without holding the lock.
    table: RwLock<Arc<UserTable>>,
}

impl Users {
    /// Reads and parses `path` (one KDF run for the dummy hash: call it off the async runtime).
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        Ok(Users {
            path: path.to_path_buf(),
            table: RwLock::new(Arc::new(read_table(path)?)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table in use now.
    pub fn table(&self) -> Arc<UserTable> {
        // A poisoned lock still holds a whole table: the swap is a single assignment.
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the file names `user` (with or without a password): LMTP's RCPT check.
    pub fn exists(&self, user: &str) -> bool {
        self.table().get(user).is_some()
    }

    /// Whether `password` is `user`'s; an unknown user costs what a wrong password costs
    /// ([`UserTable::verify`]). Blocking and CPU-bound: async callers use [`Users::verify_async`].
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.table().verify(user, password)
    }

    /// [`Users::verify`] on tokio's blocking pool, so a KDF run never stalls a runtime thread.
    pub async fn verify_async(&self, user: String, password: Vec<u8>) -> bool {
        let table = self.table();
        tokio::task::spawn_blocking(move || table.verify(&user, &password))
            .await
            .unwrap_or(false)
    }

    /// Reads the file again and swaps the new table in; on an error the old table stays.
    /// Returns the number of users now served.
    pub fn reload(&self) -> Result<usize, UsersError> {
        let table = Arc::new(read_table(&self.path)?);
        let count = table.len();
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
        Ok(count)
    }
}

fn read_table(path: &Path) -> Result<UserTable, UsersError> {
    let text = std::fs::read(path).map_err(|source| UsersError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    UserTable::new(parse_passwd(&text)?)
}

/// Reloads `users` on every SIGHUP for as long as the runtime runs, logging each outcome (the
/// number of users, or the error and that the old table stays). For `serve` to call once.
pub fn spawn_sighup_reload(users: Arc<Users>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let users = users.clone();
            let outcome = tokio::task::spawn_blocking(move || users.reload()).await;
            match outcome {
                Ok(Ok(count)) => tracing::info!(users = count, "passwd-file reloaded"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "passwd-file not reloaded; the previous users stay")
                }
                Err(error) => tracing::error!(%error, "passwd-file reload task failed"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::scheme::{cheap_cost, hash_password, Scheme};

    fn line(user: &str, password: &str) -> String {
        let hash = hash_password(password.as_bytes(), cheap_cost(Scheme::Sha512Crypt)).unwrap();
        format!("{user}:{}\n", hash.to_field())
    }

    #[test]
    fn reload_swaps_and_a_bad_file_keeps_the_old_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, line("alice", "one")).unwrap();
        let users = Users::load(&path).unwrap();
        assert!(users.exists("alice") && users.verify("alice", b"one"));

        std::fs::write(&path, line("alice", "two") + &line("bob", "b")).unwrap();
        assert_eq!(users.reload().unwrap(), 2);
        assert!(users.verify("alice", b"two") && !users.verify("alice", b"one"));
        assert!(users.exists("bob"));

        let held = users.table();
        std::fs::write(&path, line("carol", "c") + "broken line\n").unwrap();
        match users.reload() {
            Err(UsersError::Malformed { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(Arc::ptr_eq(&held, &users.table()), "the old table stays");
        assert!(users.verify("alice", b"two") && !users.exists("carol"));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(users.reload(), Err(UsersError::Io { .. })));
        assert!(users.verify("bob", b"b"));
    }

    #[test]
    fn load_fails_on_a_missing_file() {
        let error = Users::load(Path::new("/nonexistent/users")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/users"), "{error}");
    }

    #[tokio::test]
    async fn sighup_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, line("alice", "one")).unwrap();
        let users = Arc::new(Users::load(&path).unwrap());
        let task = spawn_sighup_reload(users.clone()).unwrap();
        std::fs::write(&path, line("alice", "one") + &line("bob", "b")).unwrap();
        // SAFETY: raising a signal this process handles (tokio's handler is installed above).
        unsafe { libc::raise(libc::SIGHUP) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !users.exists("bob") {
            assert!(std::time::Instant::now() < deadline, "no reload after SIGHUP");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        task.abort();
    }
}
