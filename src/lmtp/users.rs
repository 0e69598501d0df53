//! `UserDirectory`: which users the LMTP server accepts at `RCPT TO`.

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
