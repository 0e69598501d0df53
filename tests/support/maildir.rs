//! Maildir folders as mbsync and offlineimap keep them (t67): writing messages with flags,
//! reading a folder back into the mail model (`mail::Mailbox`), and the changes a user makes by
//! hand (a flag set by renaming, a message deleted or added). A message's flags are the letters
//! after `:2,` in its file name (`D` draft, `F` flagged, `R` answered, `S` seen, `T` deleted);
//! its bytes are compared in their `mail::maildir_form`, as the clients store them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::mail::{maildir_form, sha256_hex, Mailbox, Message};

/// Maildir flag letters and the IMAP flags they stand for, in the letters' (ASCII) order.
const LETTERS: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// The info suffix letters of `flags` (every flag must have a letter).
pub fn letters(flags: &BTreeSet<String>) -> String {
    for flag in flags {
        assert!(
            LETTERS.iter().any(|(_, f)| f == flag),
            "{flag} has no Maildir letter"
        );
    }
    LETTERS
        .iter()
        .filter(|(_, f)| flags.contains(*f))
        .map(|(l, _)| *l)
        .collect()
}

/// The IMAP flags of a file name's info suffix; an error names an unknown letter.
fn flags_of(name: &str) -> Result<BTreeSet<String>, String> {
    let Some((_, info)) = name.rsplit_once(":2,") else {
        return Ok(BTreeSet::new());
    };
    info.chars()
        .map(|c| {
            LETTERS
                .iter()
                .find(|(l, _)| *l == c)
                .map(|(_, f)| f.to_string())
                .ok_or_else(|| format!("{name}: unknown flag letter {c:?}"))
        })
        .collect()
}

/// Creates `folder`'s `cur`, `new` and `tmp`.
pub fn create(folder: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub)).unwrap();
    }
}

/// Writes `body` into `folder/cur` as `<stem>:2,<letters>` (the folder created if need be).
pub fn write(folder: &Path, stem: &str, flags: &BTreeSet<String>, body: &[u8]) {
    create(folder);
    let name = format!("{stem}:2,{}", letters(flags));
    std::fs::write(folder.join("cur").join(name), body).unwrap();
}

/// Writes `body` into `folder/new` as `stem`: a message just delivered, no flags.
pub fn write_new(folder: &Path, stem: &str, body: &[u8]) {
    create(folder);
    std::fs::write(folder.join("new").join(stem), body).unwrap();
}

/// The files of `folder/cur` and `folder/new`.
fn files(folder: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(folder.join(sub)).unwrap() {
            out.push(entry.unwrap().path());
        }
    }
    out.sort();
    out
}

/// The value of the first `Message-ID` header of `bytes`, trimmed.
fn message_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\n\n").next().unwrap_or_default();
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("message-id"))
        })
        .map(|(_, v)| v.trim().to_string())
}

/// The messages of `folder` by Message-ID; an error names a file without one, or a Message-ID
/// in two files.
pub fn read(folder: &Path) -> Result<Mailbox, String> {
    let mut out = Mailbox::new();
    for path in files(folder) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = maildir_form(&std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        let id = message_id(&bytes).ok_or_else(|| format!("{}: no Message-ID", path.display()))?;
        let message = Message {
            flags: flags_of(&name)?,
            sha256: sha256_hex(&bytes),
        };
        if out.insert(id.clone(), message).is_some() {
            return Err(format!("{}: Message-ID {id} in two files", folder.display()));
        }
    }
    Ok(out)
}

/// The file of `folder` holding the message `id`.
pub fn find(folder: &Path, id: &str) -> PathBuf {
    files(folder)
        .into_iter()
        .find(|p| message_id(&maildir_form(&std::fs::read(p).unwrap())).as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no file of {} holds {id}", folder.display()))
}

/// Gives the message `id` of `folder` the flags `flags`, as a mail reader does: renames its
/// file into `cur` with the new letters.
pub fn set_flags(folder: &Path, id: &str, flags: &BTreeSet<String>) {
    let path = find(folder, id);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let stem = name.rsplit_once(":2,").map_or(name.as_str(), |(s, _)| s);
    let target = folder.join("cur").join(format!("{stem}:2,{}", letters(flags)));
    std::fs::rename(&path, target).unwrap();
}

/// Deletes the message `id` of `folder` (its file).
pub fn delete(folder: &Path, id: &str) {
    std::fs::remove_file(find(folder, id)).unwrap();
}

/// The Maildir folders directly under `root` (directories holding a `cur`), by name.
pub fn folders(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("cur").is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}
