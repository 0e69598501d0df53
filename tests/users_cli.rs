//! `dovetail user hash` end to end: runs the binary for each scheme with a password on stdin (not
//! a terminal: one line is read), then loads its output into a passwd-file through the library
//! and checks that the password verifies and a wrong one does not. Also: the default scheme is
//! ARGON2ID at the default cost, and an empty password is refused with exit code 2.

use std::io::Write;
use std::process::{Command, Stdio};

use dovetail::users::{Cost, Scheme, Users};

fn user_hash(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .args(["user", "hash"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_hash_output_verifies_for_every_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    let cases = [
        (
            None,
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$",
            Scheme::Argon2id,
        ),
        (Some("argon2id"), "{ARGON2ID}$argon2id$", Scheme::Argon2id),
        (
            Some("sha512-crypt"),
            "{SHA512-CRYPT}$6$rounds=100000$",
            Scheme::Sha512Crypt,
        ),
        (Some("blf-crypt"), "{BLF-CRYPT}$2y$12$", Scheme::BlfCrypt),
    ];
    for (scheme, prefix, expected) in cases {
        let args: Vec<&str> = scheme.map(|s| vec!["--scheme", s]).unwrap_or_default();
        let out = user_hash(&args, b"s3cret p\xc3\xa4ss\nignored second line\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{scheme:?}: {stderr}");
        let field = String::from_utf8(out.stdout).unwrap();
        let field = field.trim_end();
        assert!(field.starts_with(prefix), "{field}");
        assert_eq!(field.lines().count(), 1, "{field}");

        std::fs::write(&path, format!("# test\nalice:{field}\n")).unwrap();
        let users = Users::load(&path).unwrap();
        let hash = users.table().get("alice").unwrap().hash.clone().unwrap();
        assert_eq!(hash.cost(), Cost::default_for(expected));
        assert!(users.verify("alice", "s3cret päss".as_bytes()), "{field}");
        assert!(!users.verify("alice", b"s3cret pass"), "{field}");
        assert!(!users.verify("bob", "s3cret päss".as_bytes()));
    }
}

#[test]
fn user_hash_refuses_an_empty_password_and_an_unknown_scheme() {
    let out = user_hash(&[], b"\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));
    let out = user_hash(&["--scheme", "md5-crypt"], b"pw\n");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
