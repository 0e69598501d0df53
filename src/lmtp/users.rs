//! `UserDirectory`: which users the LMTP server accepts at `RCPT TO`: every valid name, or the
//! `--passwd-file`'s users ([`Directory`]).

/// Which users exist, asked at `RCPT TO` (an unknown user is refused 550 5.1.1 there, before
/// any data is sent). The `--passwd-file` user database plugs in here.
pub trait UserDirectory: Send + Sync + 'static {
    fn exists(&self, user: &str) -> bool;
}

/// Every syntactically valid user exists (`txn::validate::check_user`): the directory until a
/// user database is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAllUsers;

impl UserDirectory for AllowAllUsers {
    fn exists(&self, _user: &str) -> bool {
        true
    }
}

/// The passwd-file's users (`--passwd-file`), as the file last read says (`users::Users`, reloaded
/// on SIGHUP).
impl UserDirectory for crate::users::Users {
    fn exists(&self, user: &str) -> bool {
        crate::users::Users::exists(self, user)
    }
}

/// The directory a node serves with: the passwd-file's users when it has one, else every valid
/// name.
#[derive(Clone)]
pub enum Directory {
    AllowAll,
    Passwd(std::sync::Arc<crate::users::Users>),
}

impl UserDirectory for Directory {
    fn exists(&self, user: &str) -> bool {
        match self {
            Directory::AllowAll => true,
            Directory::Passwd(users) => users.exists(user),
        }
    }
}
