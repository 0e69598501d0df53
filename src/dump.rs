//! `dovetail dump`: decodes index files, manifests, snapshots and group directories into text or
//! JSON, so the binary formats can be inspected with ordinary tools. Read-only: it takes no
//! lock and maps nothing, so it is safe on a running node's directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::index::{Header, MailboxIndex, VecStorage};
use crate::state_machine::apply::hex;
use crate::state_machine::read::flag_names;
use crate::state_machine::snapshot::{check_index_against_manifest, index_file_name, MANIFEST_FILE};
use crate::state_machine::{GroupState, Manifest, SmError};

/// Why a dump failed outright (damage inside a readable file is reported in the dump instead).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    #[error(transparent)]
    StateMachine(#[from] crate::state_machine::SmError),
    #[error("{0}: not an index file, manifest, snapshot or group directory")]
    Unknown(PathBuf),
}

#[derive(Debug, Serialize)]
pub struct IndexDump {
    pub file: String,
    pub header: Header,
    pub keywords: Vec<String>,
    pub records: Vec<RecordDump>,
    pub tombstones: Vec<crate::index::Tombstone>,
    /// "ok", or what `verify` found wrong with the body.
    pub verify: String,
}

#[derive(Debug, Serialize)]
pub struct RecordDump {
    pub uid: u32,
    pub flags: Vec<String>,
    pub modseq: u64,
    pub guid: String,
    pub size: u64,
    pub internal_date: i64,
}

#[derive(Debug, Serialize)]
pub struct MailboxDump {
    pub user: String,
    pub name: String,
    pub index: IndexDump,
}

#[derive(Debug, Serialize)]
pub struct GroupDump {
    pub source: String,
    pub applied: Option<crate::index::LogPosition>,
    pub uid_validity_max: u32,
    pub sessions: usize,
    /// Subscribed names, all users together (log encoding 4 on).
    pub subscriptions: usize,
    pub mailboxes: Vec<MailboxDump>,
}

/// What a path turned out to hold.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dump {
    Index(IndexDump),
    Group(GroupDump),
}

impl Dump {
    /// True if every file verified.
    pub fn healthy(&self) -> bool {
        match self {
            Dump::Index(i) => i.verify == "ok",
            Dump::Group(g) => g.mailboxes.iter().all(|m| m.index.verify == "ok"),
        }
    }
}

/// Decodes `path`: an index file, a manifest, a snapshot stream, a group directory (or its
/// `live/`). At most `limit` records per mailbox are listed.
pub fn dump_path(path: &Path, limit: usize) -> Result<Dump, DumpError> {
    let io = |source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let live = if path.join("live").is_dir() {
            path.join("live")
        } else {
            path.to_path_buf()
        };
        let manifest_path = live.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(DumpError::Unknown(path.to_path_buf()));
        }
        let bytes = fs::read(&manifest_path).map_err(io)?;
        let manifest = Manifest::decode(&manifest_path, &bytes)?;
        let mut mailboxes = Vec::new();
        for (user, boxes) in &manifest.users {
            for (name, guid) in boxes {
                let file = live.join(index_file_name(guid));
                let bytes = fs::read(&file).map_err(|source| DumpError::Io {
                    path: file.clone(),
                    source,
                })?;
                let index = dump_index(bytes, file, limit)?;
                // The cross-checks a node makes when it opens the directory.
                let inconsistent = |reason: String| SmError::Inconsistent {
                    dir: live.clone(),
                    reason: format!("{}: {reason}", index_file_name(guid)),
                };
                if index.header.mailbox_guid != *guid {
                    return Err(inconsistent("holds the index of another mailbox".into()).into());
                }
                check_index_against_manifest(&index.header, &manifest).map_err(inconsistent)?;
                mailboxes.push(MailboxDump {
                    user: user.clone(),
                    name: name.clone(),
                    index,
                });
            }
        }
        return Ok(Dump::Group(group_dump(path, &manifest, mailboxes)));
    }
    let bytes = fs::read(path).map_err(io)?;
    if bytes.starts_with(b"DVTLSNAP") {
        // Every check an install makes (`StreamCheck`): a stream a node would refuse is not
        // dumped as if it were sound.
        let group = GroupState::import_snapshot(bytes.as_slice())?;
        let manifest = group.manifest();
        let mut mailboxes = Vec::new();
        for (user, boxes) in &manifest.users {
            for (name, guid) in boxes {
                let image = group.mailboxes()[guid].bytes().to_vec();
                let file = path.join(index_file_name(guid));
                mailboxes.push(MailboxDump {
                    user: user.clone(),
                    name: name.clone(),
                    index: dump_index(image, file, limit)?,
                });
            }
        }
        return Ok(Dump::Group(group_dump(path, manifest, mailboxes)));
    }
    if bytes.starts_with(b"DVTLMFST") {
        let manifest = Manifest::decode(path, &bytes)?;
        return Ok(Dump::Group(group_dump(path, &manifest, Vec::new())));
    }
    Ok(Dump::Index(dump_index(bytes, path.to_path_buf(), limit)?))
}

fn group_dump(source: &Path, manifest: &Manifest, mailboxes: Vec<MailboxDump>) -> GroupDump {
    GroupDump {
        source: source.display().to_string(),
        applied: manifest.applied,
        uid_validity_max: manifest.uid_validity_max,
        sessions: manifest.sessions.len(),
        subscriptions: manifest.subscriptions.values().map(|names| names.len()).sum(),
        mailboxes,
    }
}

fn dump_index(bytes: Vec<u8>, file: PathBuf, limit: usize) -> Result<IndexDump, DumpError> {
    let index = MailboxIndex::open(VecStorage::with_path(bytes, file.clone()))?;
    let verify = match index.verify() {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let records = (0..index.len().min(limit))
        .map(|p| {
            let r = index.record_at(p);
            RecordDump {
                uid: r.uid,
                flags: flag_names(&index, &r),
                modseq: r.modseq,
                guid: hex(&r.guid),
                size: r.size,
                internal_date: r.internal_date,
            }
        })
        .collect();
    let tombstones = (0..(index.header().tombstone_count as usize).min(limit))
        .map(|p| index.tombstone_at(p))
        .collect();
    Ok(IndexDump {
        file: file.display().to_string(),
        header: *index.header(),
        keywords: index.keywords().to_vec(),
        records,
        tombstones,
        verify,
    })
}

/// Writes a dump as aligned text.
pub fn write_text(dump: &Dump, out: &mut impl Write) -> std::io::Result<()> {
    match dump {
        Dump::Index(index) => write_index(index, out),
        Dump::Group(group) => {
            writeln!(out, "group          {}", group.source)?;
            let applied = group.applied.map_or("none".to_string(), |a| a.to_string());
            writeln!(out, "applied        {applied}")?;
            writeln!(out, "uidvalidity    max {}", group.uid_validity_max)?;
            writeln!(out, "sessions       {}", group.sessions)?;
            writeln!(out, "subscriptions  {}", group.subscriptions)?;
            writeln!(out, "mailboxes      {}", group.mailboxes.len())?;
            for mailbox in &group.mailboxes {
                writeln!(out, "\n== {} / {}", mailbox.user, mailbox.name)?;
                write_index(&mailbox.index, out)?;
            }
            Ok(())
        }
    }
}

fn write_index(d: &IndexDump, out: &mut impl Write) -> std::io::Result<()> {
    let h = &d.header;
    writeln!(out, "file           {}", d.file)?;
    writeln!(out, "mailbox_guid   {}", hex(&h.mailbox_guid))?;
    writeln!(out, "uid_validity   {}", h.uid_validity)?;
    writeln!(out, "uid_next       {}", h.uid_next)?;
    writeln!(
        out,
        "messages       {} (capacity {})",
        h.message_count, h.record_capacity
    )?;
    writeln!(out, "unseen         {}", h.message_count - h.seen_count)?;
    writeln!(out, "deleted        {}", h.deleted_count)?;
    writeln!(out, "highest_modseq {}", h.highest_modseq)?;
    writeln!(out, "applied        {}", h.applied)?;
    writeln!(
        out,
        "tombstones     {} (capacity {})",
        h.tombstone_count, h.tombstone_capacity
    )?;
    writeln!(out, "keywords       {}", d.keywords.join(" "))?;
    writeln!(out, "verify         {}", d.verify)?;
    if !d.records.is_empty() {
        writeln!(
            out,
            "{:>10} {:>8} {:<32} {:>10} {:>12}  flags",
            "uid", "modseq", "guid", "size", "date"
        )?;
        for r in &d.records {
            writeln!(
                out,
                "{:>10} {:>8} {:<32} {:>10} {:>12}  {}",
                r.uid,
                r.modseq,
                r.guid,
                r.size,
                r.internal_date,
                r.flags.join(" ")
            )?;
        }
    }
    if (d.records.len() as u32) < h.message_count {
        writeln!(
            out,
            "... {} more records",
            h.message_count - d.records.len() as u32
        )?;
    }
    for t in &d.tombstones {
        writeln!(out, "expunged uid {:>10} at modseq {}", t.uid, t.modseq)?;
    }
    Ok(())
}
