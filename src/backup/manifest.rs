//! `BackupManifest`: the table of contents of a backup directory (`backup.json`), and its
//! checksum file (`backup.json.sha256`, in `sha256sum` format, so `sha256sum -c` checks it too).
//!
//! The manifest names the cluster the backup came from, when it was taken, each group's cut
//! (the applied log position of its copy, and the read index that cut had to reach) and
//! membership, the group count, the release and the log encoding, and the size and SHA-256 of
//! every other file, and what the message bodies under `bodies/` come to. Pure: encoding,
//! decoding and the structural checks; reading files is `verify`'s.

use std::path::{Path, PathBuf};

use dovetail_raft::restore::GroupMembers;
use dovetail_raft::NodeId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::BackupError;
use crate::bodies::BodyId;
use crate::index::LogPosition;

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The file holding the manifest's SHA-256, as `sha256sum` writes it.
pub const MANIFEST_CHECKSUM_FILE: &str = "backup.json.sha256";
/// The value of [`BackupManifest::format`].
pub const FORMAT: &str = "dovetail-backup";
/// The layout this release writes and reads. Bumped on any change a reader must know of.
pub const FORMAT_VERSION: u32 = 1;

/// What a backup directory holds. Every field is written; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this release.
    pub version: u32,
    /// The release of `dovetail` that wrote the backup.
    pub release: String,
    /// When the backup began (before the first group's copy), in milliseconds since the Unix
    /// epoch, and the same in RFC 3339 (UTC).
    pub started_unix_ms: u64,
    pub started: String,
    /// When the last group's copy was complete.
    pub finished_unix_ms: u64,
    pub cluster: SourceCluster,
    /// The cluster's number of groups; the restored cluster must run with the same
    /// (`serve --groups`), since it decides which group holds a user's mailboxes.
    pub group_count: u32,
    /// The highest log encoding among the groups' (each group's is in its entry): a release that
    /// restores the backup must apply it.
    pub log_encoding: u8,
    /// One entry per group, in group order. Invariant: `groups[i].group == i`, and
    /// `groups.len() == group_count`.
    pub groups: Vec<GroupCopy>,
    /// Every file of the backup but the manifest and its checksum file.
    pub files: Vec<FileDigest>,
    /// The message bodies the groups' records reference, each once, in `bodies/<32 hex>` (listed
    /// in `files`): a [`BodiesSummary`] as this release writes it. `null` in a backup of an
    /// earlier release, which held the indexes only. Kept as JSON so that a shape this release
    /// does not know (a later release's) is refused by name ([`BackupError::BodiesUnsupported`])
    /// rather than read as something else.
    pub bodies: Option<serde_json::Value>,
}

/// What [`BackupManifest::bodies`] holds as this release writes it: how many body files the
/// backup has and their bytes in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodiesSummary {
    pub count: u64,
    pub bytes: u64,
}

/// The cluster a backup was taken from, as the node that served it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCluster {
    /// The API URL the backup was taken through.
    pub via: String,
    /// The node that copied every group (a replica of each; its copies are linearizable cuts).
    pub served_by: NodeId,
    /// The release the serving node runs.
    pub served_by_release: String,
    /// Every member the serving node knew of. Their peer addresses are in the groups' membership.
    pub nodes: Vec<SourceNode>,
}

/// One member of the source cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceNode {
    pub node_id: NodeId,
    pub api_addr: String,
    /// Whether it answered when the backup began; the release and encoding are known only then.
    pub reachable: bool,
    pub release: Option<String>,
    pub max_encoding: Option<u8>,
}

/// One group's copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCopy {
    pub group: u32,
    /// The file holding the group's snapshot stream, relative to the backup directory.
    pub file: String,
    /// The read index the serving node obtained from the group's leader once the group's copy was
    /// asked for: every write acknowledged before then is at or below it.
    pub read_index: u64,
    /// The applied log position the copy holds: the group's cut. Invariant:
    /// `cut.index >= read_index`.
    pub cut: LogPosition,
    /// The group's active log encoding at the cut.
    pub log_encoding: u8,
    /// The group's voters and learners, with their addresses, at the cut.
    pub membership: GroupMembers,
    pub users: u64,
    pub mailboxes: u64,
    /// When the copy was taken (milliseconds since the Unix epoch).
    pub taken_unix_ms: u64,
}

/// The size and SHA-256 of one file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The path of group `group`'s copy in a backup directory.
pub fn group_file(group: u32) -> String {
    format!("groups/g{group:04}.snap")
}

/// The directory of the body files in a backup directory.
pub const BODIES_DIR: &str = "bodies";

/// The path of body `id`'s file in a backup directory: `bodies/<32 hex>`, the id being the first
/// 128 bits of the file's SHA-256 (as in a node's store).
pub fn body_file(id: &BodyId) -> String {
    format!("{BODIES_DIR}/{}", id.hex())
}

/// Lowercase hex of a SHA-256 digest.
pub fn sha256_hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl BackupManifest {
    /// The manifest's bytes (pretty JSON and a newline) and the content of its checksum file.
    pub fn encode(&self) -> (Vec<u8>, String) {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always encodes");
        bytes.push(b'\n');
        let checksum = format!("{}  {MANIFEST_FILE}\n", sha256_hex(Sha256::digest(&bytes)));
        (bytes, checksum)
    }

    /// Checks `bytes` against the checksum file's content, decodes them and checks the
    /// manifest's own consistency (see [`BackupManifest::check`]). `dir` names the files in
    /// errors.
    pub fn decode(dir: &Path, bytes: &[u8], checksum: &str) -> Result<BackupManifest, BackupError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let malformed = |path: PathBuf, reason: String| BackupError::Malformed { path, reason };
        let expected = match checksum.trim_end().split_once("  ") {
            Some((hex, MANIFEST_FILE)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex.to_ascii_lowercase()
            }
            _ => {
                return Err(malformed(
                    dir.join(MANIFEST_CHECKSUM_FILE),
                    format!("expected \"<64 hex digits>  {MANIFEST_FILE}\""),
                ))
            }
        };
        let found = sha256_hex(Sha256::digest(bytes));
        if found != expected {
            return Err(BackupError::ChecksumMismatch {
                path: manifest_path,
                expected,
                found,
            });
        }
        let manifest: BackupManifest =
            serde_json::from_slice(bytes).map_err(|e| malformed(manifest_path.clone(), e.to_string()))?;
        manifest.check(&manifest_path)?;
        Ok(manifest)
    }

    /// The body files of a checked manifest, each with its id (its file name), in `files` order.
    pub fn body_files(&self) -> Vec<(BodyId, &FileDigest)> {
        self.files
            .iter()
            .filter_map(|f| {
                let name = f.path.strip_prefix(BODIES_DIR)?.strip_prefix('/')?;
                Some((BodyId::parse(name)?, f))
            })
            .collect()
    }

    /// The checks that need no other file: format and version, a `bodies` this release reads
    /// agreeing with the body files listed (each named by the first 128 bits of its recorded
    /// SHA-256), one entry per group in order, each group's file listed once, every path inside
    /// the directory, cuts at or above their read index.
    pub fn check(&self, manifest_path: &Path) -> Result<(), BackupError> {
        let malformed = |reason: String| BackupError::Malformed {
            path: manifest_path.to_path_buf(),
            reason,
        };
        if self.format != FORMAT {
            return Err(malformed(format!(
                "format {:?}, expected {FORMAT:?}",
                self.format
            )));
        }
        if self.version != FORMAT_VERSION {
            return Err(BackupError::UnsupportedVersion {
                path: manifest_path.to_path_buf(),
                found: self.version,
                supported: FORMAT_VERSION,
            });
        }
        let summary =
            match &self.bodies {
                None => None,
                Some(value) => Some(serde_json::from_value::<BodiesSummary>(value.clone()).map_err(
                    |_| BackupError::BodiesUnsupported {
                        path: manifest_path.to_path_buf(),
                        found: value.to_string(),
                    },
                )?),
            };
        if self.groups.len() != self.group_count as usize || self.group_count == 0 {
            return Err(malformed(format!(
                "{} group entries for a group count of {}",
                self.groups.len(),
                self.group_count
            )));
        }
        for (i, copy) in self.groups.iter().enumerate() {
            if copy.group as usize != i {
                return Err(malformed(format!("entry {i} is group {}", copy.group)));
            }
            if copy.file != group_file(copy.group) {
                return Err(malformed(format!("group {} is in {:?}", copy.group, copy.file)));
            }
            if self.files.iter().filter(|f| f.path == copy.file).count() != 1 {
                return Err(malformed(format!("{} is not listed once in files", copy.file)));
            }
            if copy.cut.index < copy.read_index {
                return Err(malformed(format!(
                    "group {}: cut {} below its read index {}",
                    copy.group, copy.cut, copy.read_index
                )));
            }
            if copy.log_encoding > self.log_encoding {
                return Err(malformed(format!(
                    "group {}: log encoding {} above the backup's {}",
                    copy.group, copy.log_encoding, self.log_encoding
                )));
            }
        }
        for file in &self.files {
            let inside = !file.path.is_empty()
                && file
                    .path
                    .split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..")
                && !file.path.contains('\\');
            if !inside {
                return Err(malformed(format!(
                    "file path {:?} leaves the backup directory",
                    file.path
                )));
            }
            if file.sha256.len() != 64
                || !file
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(malformed(format!(
                    "{}: sha256 {:?} is not 64 hex digits",
                    file.path, file.sha256
                )));
            }
        }
        let mut found = BodiesSummary::default();
        for file in self
            .files
            .iter()
            .filter(|f| f.path.starts_with(&format!("{BODIES_DIR}/")))
        {
            let name = &file.path[BODIES_DIR.len() + 1..];
            match BodyId::parse(name) {
                Some(id) if id.hex() == name => {}
                _ => {
                    return Err(malformed(format!(
                        "{}: not a body file name (bodies/<32 lowercase hex digits>)",
                        file.path
                    )))
                }
            }
            if file.sha256[..32] != *name {
                return Err(BackupError::BodyMislabelled {
                    path: manifest_path.with_file_name(&file.path),
                    sha256: file.sha256.clone(),
                });
            }
            found.count += 1;
            found.bytes += file.bytes;
        }
        match summary {
            Some(summary) if summary != found => Err(malformed(format!(
                "bodies records {summary:?}, the files listed under {BODIES_DIR}/ come to {found:?}"
            ))),
            None if found.count > 0 => Err(malformed(format!(
                "{} files listed under {BODIES_DIR}/, and bodies is null",
                found.count
            ))),
            _ => Ok(()),
        }
    }
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-03T14:05:09.120Z`.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dovetail_raft::Node;

    use super::*;

    pub(crate) fn sample() -> BackupManifest {
        let node = |id: u64| Node {
            peer_addr: format!("10.0.0.{id}:7101"),
            api_addr: format!("10.0.0.{id}:7001"),
        };
        let membership = GroupMembers {
            voters: [1, 2, 3].into_iter().collect(),
            learners: Default::default(),
            nodes: (1..=3).map(|id| (id, node(id))).collect::<BTreeMap<_, _>>(),
        };
        let groups: Vec<GroupCopy> = (0..2)
            .map(|group| GroupCopy {
                group,
                file: group_file(group),
                read_index: 40 + u64::from(group),
                cut: LogPosition::new(3, 41 + u64::from(group)),
                log_encoding: 1,
                membership: membership.clone(),
                users: 2,
                mailboxes: 3,
                taken_unix_ms: 1_700_000_000_500,
            })
            .collect();
        BackupManifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            release: "0.1.0".into(),
            started_unix_ms: 1_700_000_000_000,
            started: rfc3339_utc(1_700_000_000_000),
            finished_unix_ms: 1_700_000_001_000,
            cluster: SourceCluster {
                via: "http://10.0.0.1:7001".into(),
                served_by: 1,
                served_by_release: "0.1.0".into(),
                nodes: (1..=3)
                    .map(|id| SourceNode {
                        node_id: id,
                        api_addr: node(id).api_addr,
                        reachable: true,
                        release: Some("0.1.0".into()),
                        max_encoding: Some(1),
                    })
                    .collect(),
            },
            group_count: 2,
            log_encoding: 1,
            files: groups
                .iter()
                .map(|g| FileDigest {
                    path: g.file.clone(),
                    bytes: 1000,
                    sha256: "ab".repeat(32),
                })
                .chain([body_digest(b"hello")])
                .collect(),
            groups,
            bodies: Some(serde_json::json!({"count": 1, "bytes": 5})),
        }
    }

    /// The listing of a body file holding `bytes`.
    fn body_digest(bytes: &[u8]) -> FileDigest {
        FileDigest {
            path: body_file(&BodyId::of(bytes)),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(Sha256::digest(bytes)),
        }
    }

    #[test]
    fn round_trips_through_its_checksum() {
        let manifest = sample();
        let (bytes, checksum) = manifest.encode();
        assert!(
            checksum.ends_with("  backup.json\n") && checksum.len() == 64 + 2 + 11 + 1,
            "{checksum}"
        );
        let dir = Path::new("/backups/b1");
        assert_eq!(BackupManifest::decode(dir, &bytes, &checksum).unwrap(), manifest);
        // The JSON names what an operator looks for.
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json["groups"][1]["cut"],
            serde_json::json!({"term": 3, "index": 42})
        );
        assert_eq!(
            json["groups"][0]["membership"]["nodes"]["2"]["peer_addr"],
            "10.0.0.2:7101"
        );
        assert_eq!(json["bodies"], serde_json::json!({"count": 1, "bytes": 5}));
        let hello = BodyId::of(b"hello");
        assert_eq!(json["files"][2]["path"], format!("bodies/{}", hello.hex()));
        let decoded = BackupManifest::decode(dir, &bytes, &checksum).unwrap();
        let bodies = decoded.body_files();
        assert_eq!(bodies.len(), 1);
        assert_eq!((bodies[0].0, bodies[0].1.bytes), (hello, 5));
        // A backup of the release before bodies (`bodies: null`, no body files) still reads.
        let mut indexes_only = sample();
        indexes_only.bodies = None;
        indexes_only.files.pop();
        let (bytes, checksum) = indexes_only.encode();
        assert!(BackupManifest::decode(dir, &bytes, &checksum)
            .unwrap()
            .body_files()
            .is_empty());
    }

    #[test]
    fn a_changed_byte_or_a_bad_checksum_file_is_refused_by_name() {
        let (bytes, checksum) = sample().encode();
        let dir = Path::new("/b");
        for offset in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[offset] ^= 0x01;
            let refused = BackupManifest::decode(dir, &changed, &checksum).unwrap_err();
            assert!(
                matches!(&refused, BackupError::ChecksumMismatch { path, .. } if path == Path::new("/b/backup.json")),
                "{refused}"
            );
        }
        let truncated = BackupManifest::decode(dir, &bytes[..bytes.len() - 10], &checksum).unwrap_err();
        assert!(
            matches!(truncated, BackupError::ChecksumMismatch { .. }),
            "{truncated}"
        );
        for bad in [
            "",
            "abc  backup.json",
            &checksum.replace("backup.json", "other.json"),
        ] {
            let refused = BackupManifest::decode(dir, &bytes, bad).unwrap_err();
            assert!(
                matches!(refused, BackupError::Malformed { .. }),
                "{bad:?}: {refused}"
            );
        }
    }

    /// A manifest whose checksum matches but whose content breaks a rule is refused too.
    #[test]
    fn inconsistent_manifests_are_refused() {
        let refused = |edit: fn(&mut BackupManifest)| {
            let mut manifest = sample();
            edit(&mut manifest);
            let (bytes, checksum) = manifest.encode();
            BackupManifest::decode(Path::new("/b"), &bytes, &checksum).unwrap_err()
        };
        assert!(matches!(
            refused(|m| m.version = 2),
            BackupError::UnsupportedVersion { found: 2, .. }
        ));
        // Bodies described in a shape this release does not know (a later release's).
        for edit in [
            (|m: &mut BackupManifest| m.bodies = Some(serde_json::json!({"files": 3})))
                as fn(&mut BackupManifest),
            |m| m.bodies = Some(serde_json::json!({"count": 1, "bytes": 5, "compression": "zstd"})),
            |m| m.bodies = Some(serde_json::json!([1])),
        ] {
            assert!(matches!(refused(edit), BackupError::BodiesUnsupported { .. }));
        }
        // A body file named for another body than its SHA-256 says.
        let mislabelled = refused(|m| m.files[2].sha256 = sha256_hex(Sha256::digest(b"other")));
        assert!(
            matches!(&mislabelled, BackupError::BodyMislabelled { path, .. }
                if path.ends_with(body_file(&BodyId::of(b"hello")))),
            "{mislabelled}"
        );
        for edit in [
            (|m: &mut BackupManifest| m.format = "tarball".into()) as fn(&mut BackupManifest),
            |m| m.group_count = 3,
            |m| m.groups.swap(0, 1),
            |m| m.groups[1].cut = LogPosition::new(3, 10),
            |m| m.groups[0].log_encoding = 2,
            |m| m.files[0].path = "../etc/passwd".into(),
            |m| m.files[1].path = "groups//g0001.snap".into(),
            |m| m.files.push(m.files[0].clone()),
            |m| m.files[0].sha256 = "AB".repeat(32),
            |m| m.bodies = Some(serde_json::json!({"count": 2, "bytes": 5})),
            |m| m.bodies = Some(serde_json::json!({"count": 1, "bytes": 6})),
            |m| m.bodies = None,
            |m| m.files[2].path = "bodies/HELLO".into(),
            |m| m.files[2].path = m.files[2].path.to_ascii_uppercase().replace("BODIES", "bodies"),
        ] {
            assert!(matches!(refused(edit), BackupError::Malformed { .. }));
        }
        let mut with_unknown: serde_json::Value = serde_json::to_value(sample()).unwrap();
        with_unknown["surprise"] = serde_json::json!(1);
        let bytes = serde_json::to_vec(&with_unknown).unwrap();
        let checksum = format!("{}  backup.json\n", sha256_hex(Sha256::digest(&bytes)));
        assert!(matches!(
            BackupManifest::decode(Path::new("/b"), &bytes, &checksum),
            Err(BackupError::Malformed { .. })
        ));
    }

    #[test]
    fn times_read_as_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_utc(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
