//! Verification and repair of single mailboxes (the seeds' "mark that one mailbox dirty and
//! resync it").
//!
//! The rule that makes both work while writes go on: a mailbox file changes only when an entry
//! names that mailbox, and every such change records the entry's log position in the file's
//! header (`applied`). So two replicas' copies that record the same position must be
//! byte-identical, whatever each group has applied since; `verify` compares copies at that
//! common position. And a healthy copy taken from a source at group position `S`, recording
//! position `P`, is exactly what the mailbox is at any group position `T` with `P <= T <= S`: no
//! entry in `(P, S]` touched it. `replace_mailbox` installs a copy only under that condition, and
//! otherwise says which side has to move on first.

use std::fs;

use serde::Serialize;

use super::apply::hex;
use super::group_machine::{rename, sync_dir, write_file_synced, GroupStateMachine, LIVE};
use super::group_state::GroupCounts;
use super::snapshot::index_file_name;
use super::SmError;
use crate::index::{LogPosition, MailboxIndex, MmapStorage, VecStorage};
use crate::txn::Guid;

/// One replica's view of one mailbox, for comparison with the other replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MailboxDigest {
    /// The mailbox GUID in hex.
    pub mailbox_guid: String,
    pub user: String,
    pub mailbox: String,
    pub messages: u32,
    /// The log index of the last entry that changed the file (from its header).
    pub position: u64,
    /// CRC32C of the whole file image, in hex.
    pub digest: String,
    /// What the file's own check (`MailboxIndex::verify`) found wrong, if anything.
    pub damage: Option<String>,
}

/// Why a copy cannot be installed yet; the caller waits and tries again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "wait_for")]
pub enum RepairWait {
    /// This replica has not applied the entry the copy records; wait until it has.
    Target { applied: u64, needed: u64 },
    /// The source's copy is older than what this replica has applied; fetch a newer one.
    Source { source_applied: u64, needed: u64 },
}

impl std::fmt::Display for RepairWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepairWait::Target { applied, needed } => {
                write!(f, "this replica has applied {applied}, the copy records {needed}")
            }
            RepairWait::Source {
                source_applied,
                needed,
            } => write!(
                f,
                "the source's copy is at {source_applied}, this replica at {needed}"
            ),
        }
    }
}

impl GroupStateMachine {
    /// The digest of every mailbox of the group, in GUID order. Reads every file: O(bytes).
    pub fn mailbox_digests(&self) -> Vec<MailboxDigest> {
        let names: std::collections::BTreeMap<Guid, (&str, &str)> = self
            .state
            .manifest()
            .users
            .iter()
            .flat_map(|(user, boxes)| {
                boxes
                    .iter()
                    .map(move |(name, guid)| (*guid, (user.as_str(), name.as_str())))
            })
            .collect();
        self.state
            .mailboxes()
            .iter()
            .map(|(guid, index)| {
                let (user, mailbox) = names.get(guid).copied().unwrap_or(("", ""));
                MailboxDigest {
                    mailbox_guid: hex(guid),
                    user: user.to_string(),
                    mailbox: mailbox.to_string(),
                    messages: index.header().message_count,
                    position: index.header().applied.index,
                    digest: format!("{:08x}", crc32c::crc32c(index.bytes())),
                    damage: index.verify().err().map(|e| e.to_string()),
                }
            })
            .collect()
    }

    /// CRC32C of the encoded manifest (names, sessions, applied position): equal on replicas
    /// at the same applied position.
    pub fn manifest_digest(&self) -> String {
        format!("{:08x}", crc32c::crc32c(&self.state.manifest().encode()))
    }

    /// A copy of a mailbox's file, with the group position it was taken at.
    pub fn mailbox_image(&self, mailbox_guid: &Guid) -> Option<(u64, Vec<u8>)> {
        let index = self.state.mailboxes().get(mailbox_guid)?;
        let applied = self.state.applied().map_or(0, |a| a.index);
        Some((applied, index.bytes().to_vec()))
    }

    /// Replaces this replica's file of `mailbox_guid` with `image`, a healthy replica's copy
    /// taken when that replica had applied `source_applied`. The copy must pass its own checks
    /// and belong to this mailbox; it is installed only if it is exactly the mailbox's state at
    /// this replica's applied position (see the module docs), else `Ok(Err(wait))` says what has
    /// to happen first. Nothing else of the group changes. The file is replaced atomically
    /// (written beside, synced, renamed); the caller should then build a new checkpoint, so
    /// that a crash recovery (which restores the last checkpoint) does not bring the damaged
    /// copy back.
    pub fn replace_mailbox(
        &mut self,
        mailbox_guid: &Guid,
        image: Vec<u8>,
        source_applied: u64,
    ) -> Result<Result<LogPosition, RepairWait>, SmError> {
        let copy = MailboxIndex::open(VecStorage::from_bytes(image))?;
        copy.verify()?;
        if copy.header().mailbox_guid != *mailbox_guid {
            return Err(SmError::CorruptSnapshot {
                reason: format!(
                    "the copy is of mailbox {}, not {}",
                    hex(&copy.header().mailbox_guid),
                    hex(mailbox_guid)
                ),
            });
        }
        if !self.state.mailboxes().contains_key(mailbox_guid) {
            return Err(SmError::CorruptSnapshot {
                reason: format!("this group has no mailbox {}", hex(mailbox_guid)),
            });
        }
        let recorded = copy.header().applied.index;
        let applied = self.state.applied().map_or(0, |a| a.index);
        if recorded > applied {
            return Ok(Err(RepairWait::Target {
                applied,
                needed: recorded,
            }));
        }
        if applied > source_applied {
            return Ok(Err(RepairWait::Source {
                source_applied,
                needed: applied,
            }));
        }
        let image = copy.into_storage().into_bytes();
        self.mark_dirty()?;
        let live = self.dir.join(LIVE);
        let path = live.join(index_file_name(mailbox_guid));
        let tmp = live.join(format!("{}.repair", index_file_name(mailbox_guid)));
        write_file_synced(&tmp, &image)?;
        // The old mapping stays valid until the old index is dropped below.
        rename(&tmp, &path)?;
        sync_dir(&live)?;
        let index = MailboxIndex::open(MmapStorage::open(&path)?)?;
        let position = index.header().applied;
        let count = |index: &MailboxIndex<MmapStorage>| GroupCounts {
            mailboxes: 1,
            messages: u64::from(index.header().message_count),
        };
        let after = count(&index);
        if let Some(before) = self.state.mailboxes.insert(*mailbox_guid, index) {
            self.state.recount_from(count(&before), after);
        }
        self.state.touched.insert(*mailbox_guid);
        let _ = fs::remove_file(&tmp);
        Ok(Ok(position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{NewMessage, Op, Txn};

    fn txn(seq: u64, op: Op) -> Txn {
        Txn {
            client_id: "c".into(),
            request_seq: seq,
            op,
        }
    }

    fn append(seq: u64, user: &str, size: u64) -> Txn {
        txn(
            seq,
            Op::Append {
                user: user.into(),
                mailbox: "INBOX".into(),
                messages: vec![NewMessage {
                    guid: [seq as u8; 16],
                    size,
                    internal_date: 0,
                    flags: vec![],
                }],
            },
        )
    }

    fn create(seq: u64, user: &str, guid: u8) -> Txn {
        txn(
            seq,
            Op::CreateMailbox {
                user: user.into(),
                mailbox: "INBOX".into(),
                mailbox_guid: [guid; 16],
                uid_validity: 1,
            },
        )
    }

    /// Two replicas fed the same log; returns them and the next log index.
    fn replicas(dirs: &[tempfile::TempDir; 2], log: &[Txn]) -> Vec<GroupStateMachine> {
        let mut out: Vec<_> = dirs
            .iter()
            .map(|d| GroupStateMachine::open(d.path()).unwrap())
            .collect();
        for m in &mut out {
            for (i, t) in log.iter().enumerate() {
                let outcome = m.apply(LogPosition::new(1, i as u64 + 1), t).unwrap();
                assert!(
                    !matches!(outcome, Some(crate::txn::Outcome::Rejected(_))),
                    "{outcome:?}"
                );
            }
        }
        out
    }

    #[test]
    fn a_damaged_mailbox_is_found_and_replaced_without_touching_the_rest() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let log = [
            create(1, "a", 1),
            create(2, "b", 2),
            append(3, "a", 10),
            append(4, "b", 20),
            append(5, "a", 30),
        ];
        let mut r = replicas(&dirs, &log);
        assert_eq!(r[0].mailbox_digests(), r[1].mailbox_digests());
        for m in &mut r {
            m.flush().unwrap();
        }
        // Damage mailbox "a" on replica 1: a record's size byte, in the mapped file itself.
        let path = dirs[1].path().join(LIVE).join(index_file_name(&[1; 16]));
        let mut bytes = fs::read(&path).unwrap();
        let at = crate::index::format::HEADER_SIZE + 40;
        bytes[at] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        drop(r);
        let mut r = replicas(&dirs, &[]);
        let (good, bad) = (r[0].mailbox_digests(), r[1].mailbox_digests());
        assert_ne!(good[0].digest, bad[0].digest);
        assert!(bad[0].damage.is_some(), "{bad:?}");
        assert_eq!(good[1], bad[1], "mailbox b is untouched");
        let other_before = fs::read(dirs[1].path().join(LIVE).join(index_file_name(&[2; 16]))).unwrap();

        // A copy recording a position this replica has not reached must wait.
        let (source_applied, image) = r[0].mailbox_image(&[1; 16]).unwrap();
        assert_eq!(source_applied, 5);
        // Replace, then both replicas agree again and the other mailbox's file is the same.
        let position = r[1]
            .replace_mailbox(&[1; 16], image, source_applied)
            .unwrap()
            .unwrap();
        assert_eq!(position.index, 5);
        assert_eq!(r[0].mailbox_digests(), r[1].mailbox_digests());
        assert_eq!(r[1].state().counts(), r[1].state().recount());
        assert_eq!(r[1].state().counts(), r[0].state().counts());
        let other_after = fs::read(dirs[1].path().join(LIVE).join(index_file_name(&[2; 16]))).unwrap();
        assert_eq!(other_before, other_after);
        // Still identical after more writes and a reopen.
        for m in &mut r {
            m.apply(LogPosition::new(1, 6), &append(6, "a", 40)).unwrap();
            m.flush().unwrap();
        }
        drop(r);
        let r = replicas(&dirs, &[]);
        assert_eq!(r[0].mailbox_digests(), r[1].mailbox_digests());
    }

    #[test]
    fn a_copy_is_installed_only_at_a_position_where_it_is_exact() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let log = [create(1, "a", 1), append(2, "a", 10), append(3, "a", 20)];
        let mut r = replicas(&dirs, &log[..2]);
        // The source goes on to position 3, which changes mailbox a.
        r[0].apply(LogPosition::new(1, 3), &log[2]).unwrap();
        let (source_applied, image) = r[0].mailbox_image(&[1; 16]).unwrap();
        assert_eq!(
            r[1].replace_mailbox(&[1; 16], image.clone(), source_applied)
                .unwrap(),
            Err(RepairWait::Target {
                applied: 2,
                needed: 3
            })
        );
        // A copy from a source behind the target is refused as well.
        let old = replicas(
            &[tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()],
            &log[..2],
        );
        let (old_applied, old_image) = old[0].mailbox_image(&[1; 16]).unwrap();
        r[1].apply(LogPosition::new(1, 3), &log[2]).unwrap();
        assert_eq!(
            r[1].replace_mailbox(&[1; 16], old_image, old_applied).unwrap(),
            Err(RepairWait::Source {
                source_applied: 2,
                needed: 3
            })
        );
        // A garbage copy or one of another mailbox is an error, and nothing changes.
        let before = r[1].mailbox_digests();
        assert!(r[1].replace_mailbox(&[1; 16], vec![0; 100], 3).is_err());
        assert!(r[1].replace_mailbox(&[2; 16], image.clone(), 3).is_err());
        assert_eq!(before, r[1].mailbox_digests());
        assert_eq!(
            r[1].replace_mailbox(&[1; 16], image, source_applied).unwrap(),
            Ok(LogPosition::new(1, 3))
        );
    }
}
