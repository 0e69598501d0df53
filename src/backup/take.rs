//! Taking a backup (`dovetail ctl backup`): [`take_backup`] asks one node for a copy of every
//! group in turn (`GET /admin/groups/{group}/backup`, a linearizable cut: the node obtains a read
//! index from the group's leader, waits until it has applied that far, copies the group at its
//! applied position and streams the copy), and [`BackupWriter`] writes each copy to the backup
//! directory as it arrives — hashing it on the way, never holding more than one network frame —
//! checks it through (`verify::check_copy`, which also yields the body ids the copy's records
//! reference). Then every referenced body, once however many groups and records name it, is
//! fetched (`GET /admin/bodies/{id}`, from the same node, else from each other member in turn)
//! into `bodies/<32 hex>`, streamed and hashed on the way and refused unless its bytes hash to
//! its id; a body no member can serve fails the backup. Finally the manifest is written.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::BackupError;
use super::manifest::{
    body_file, group_file, rfc3339_utc, sha256_hex, BackupManifest, BodiesSummary, FileDigest, GroupCopy,
    SourceCluster, SourceNode, BODIES_DIR, FORMAT, FORMAT_VERSION, MANIFEST_CHECKSUM_FILE, MANIFEST_FILE,
};
use super::verify::check_copy;
use crate::bodies::BodyId;
use crate::node::overview::ClusterOverview;
use crate::node::peer_api::{error_chain, http_client};
use crate::node::replica::READ_INDEX_HEADER;
use crate::node::status::NodeStatus;

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A backup directory being written: group copies first, the manifest last (a directory
/// without `backup.json` is not a backup).
#[derive(Debug)]
pub struct BackupWriter {
    dir: PathBuf,
    groups: Vec<GroupCopy>,
    files: Vec<FileDigest>,
    /// The bodies the copies received so far reference.
    referenced: BTreeSet<BodyId>,
    bodies: BodiesSummary,
}

/// One group's copy being received: written to `<file>.part` and hashed as it arrives.
#[derive(Debug)]
pub struct CopyWriter {
    group: u32,
    part: PathBuf,
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl CopyWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        self.file
            .write_all(chunk)
            .map_err(|e| BackupError::io(&self.part, "writing", e))?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(())
    }
}

/// One body being received: written to `bodies/<hex>.part` and hashed as it arrives.
#[derive(Debug)]
pub struct BodyWriter {
    id: BodyId,
    part: PathBuf,
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl BodyWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        self.file
            .write_all(chunk)
            .map_err(|e| BackupError::io(&self.part, "writing", e))?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// Removes what was received (a transfer that failed part way; another member is asked).
    pub fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.part);
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io(dir, "syncing directory", e))
}

impl BackupWriter {
    /// Starts a backup in `dir`, which must not exist or be empty (created with `groups/`).
    pub fn create(dir: &Path) -> Result<BackupWriter, BackupError> {
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(BackupError::OutNotEmpty {
                        path: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io(dir, "listing", e)),
        }
        for sub in ["groups", BODIES_DIR] {
            let sub = dir.join(sub);
            fs::create_dir_all(&sub).map_err(|e| BackupError::io(&sub, "creating", e))?;
        }
        Ok(BackupWriter {
            dir: dir.to_path_buf(),
            groups: Vec::new(),
            files: Vec::new(),
            referenced: BTreeSet::new(),
            bodies: BodiesSummary::default(),
        })
    }

    /// Starts receiving the copy of the next group (groups come in order from 0).
    pub fn begin_copy(&self) -> Result<CopyWriter, BackupError> {
        let group = self.groups.len() as u32;
        let part = self.dir.join(format!("{}.part", group_file(group)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(|e| BackupError::io(&part, "creating", e))?;
        Ok(CopyWriter {
            group,
            part,
            file,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Finishes a received copy: syncs it, checks it through, checks its cut against the read
    /// index the node obtained for it, and renames it into place.
    pub fn finish_copy(&mut self, copy: CopyWriter, read_index: u64) -> Result<&GroupCopy, BackupError> {
        let CopyWriter {
            group,
            part,
            file,
            hasher,
            bytes,
        } = copy;
        file.sync_all()
            .map_err(|e| BackupError::io(&part, "syncing", e))?;
        drop(file);
        let facts = check_copy(&part, group)?;
        if facts.cut.index < read_index {
            return Err(BackupError::CutBelowReadIndex {
                group,
                cut: Some(facts.cut),
                read_index,
            });
        }
        let path = group_file(group);
        let target = self.dir.join(&path);
        fs::rename(&part, &target).map_err(|e| BackupError::io(&part, "renaming", e))?;
        self.files.push(FileDigest {
            path: path.clone(),
            bytes,
            sha256: sha256_hex(hasher.finalize()),
        });
        self.referenced.extend(facts.bodies.iter().copied());
        self.groups.push(GroupCopy {
            group,
            file: path,
            read_index,
            cut: facts.cut,
            log_encoding: facts.log_encoding,
            membership: facts.membership,
            users: facts.users,
            mailboxes: facts.mailboxes,
            taken_unix_ms: now_unix_ms(),
        });
        Ok(self.groups.last().expect("just pushed"))
    }

    /// The bodies the copies received so far reference, each once.
    pub fn referenced_bodies(&self) -> &BTreeSet<BodyId> {
        &self.referenced
    }

    /// Starts receiving body `id` (into `bodies/<hex>.part`, fresh).
    pub fn begin_body(&self, id: BodyId) -> Result<BodyWriter, BackupError> {
        let part = self.dir.join(format!("{}.part", body_file(&id)));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)
            .map_err(|e| BackupError::io(&part, "creating", e))?;
        Ok(BodyWriter {
            id,
            part,
            file,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Finishes a received body: its bytes must hash to its id (else nothing is kept and the
    /// error names where they came from, `url`); synced, renamed into place and listed.
    pub fn finish_body(&mut self, body: BodyWriter, url: &str) -> Result<(), BackupError> {
        let BodyWriter {
            id,
            part,
            file,
            hasher,
            bytes,
        } = body;
        let digest = hasher.finalize();
        let actual = BodyId(digest[..16].try_into().expect("a SHA-256 has 32 bytes"));
        if actual != id {
            drop(file);
            let _ = fs::remove_file(&part);
            return Err(BackupError::BodyMismatch {
                url: url.to_string(),
                expected: id,
                actual,
            });
        }
        file.sync_all()
            .map_err(|e| BackupError::io(&part, "syncing", e))?;
        drop(file);
        let path = body_file(&id);
        fs::rename(&part, self.dir.join(&path)).map_err(|e| BackupError::io(&part, "renaming", e))?;
        self.files.push(FileDigest {
            path,
            bytes,
            sha256: sha256_hex(digest),
        });
        self.bodies.count += 1;
        self.bodies.bytes += bytes;
        Ok(())
    }

    /// Writes the manifest and its checksum (each synced, then renamed into place): the backup
    /// is complete. `started_unix_ms` is when the backup began, `cluster` where it came from.
    pub fn finish(self, started_unix_ms: u64, cluster: SourceCluster) -> Result<BackupManifest, BackupError> {
        sync_dir(&self.dir.join("groups"))?;
        sync_dir(&self.dir.join(BODIES_DIR))?;
        let manifest = BackupManifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            release: env!("CARGO_PKG_VERSION").into(),
            started_unix_ms,
            started: rfc3339_utc(started_unix_ms),
            finished_unix_ms: now_unix_ms(),
            cluster,
            group_count: self.groups.len() as u32,
            log_encoding: self.groups.iter().map(|g| g.log_encoding).max().unwrap_or(0),
            groups: self.groups,
            files: self.files,
            bodies: Some(serde_json::to_value(self.bodies).expect("a summary always encodes")),
        };
        manifest.check(&self.dir.join(MANIFEST_FILE))?;
        let (bytes, checksum) = manifest.encode();
        for (name, content) in [
            (MANIFEST_FILE, bytes.as_slice()),
            (MANIFEST_CHECKSUM_FILE, checksum.as_bytes()),
        ] {
            let tmp = self.dir.join(format!("{name}.tmp"));
            let mut file = File::create(&tmp).map_err(|e| BackupError::io(&tmp, "creating", e))?;
            file.write_all(content)
                .and_then(|()| file.sync_all())
                .map_err(|e| BackupError::io(&tmp, "writing", e))?;
            fs::rename(&tmp, self.dir.join(name)).map_err(|e| BackupError::io(&tmp, "renaming", e))?;
        }
        sync_dir(&self.dir)?;
        Ok(manifest)
    }

    /// Removes what an unfinished backup wrote (its directory is left, empty as it was found).
    pub fn abandon(self) {
        let _ = fs::remove_dir_all(self.dir.join("groups"));
        let _ = fs::remove_dir_all(self.dir.join(BODIES_DIR));
    }
}

/// Where and how `ctl backup` reaches its node.
#[derive(Debug, Clone)]
pub struct Source {
    /// The node's API URL, `http://` or `https://`, without a trailing `/`.
    pub base: String,
    /// The admin token.
    pub token: String,
    /// PEM CA certificates to trust for an `https://` node.
    pub ca_cert: Option<PathBuf>,
    /// How long the node may take to answer a request (for a copy: to start it, and between two
    /// pieces of it).
    pub timeout: Duration,
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Sends `GET path`; a 2xx answer's body is returned to read, anything else is an error naming
/// the node's error code and message.
async fn get(client: &Client, source: &Source, path: &str) -> Result<hyper::Response<Incoming>, BackupError> {
    let url = format!("{}{path}", source.base);
    let failed = |reason: String| BackupError::Request {
        url: url.clone(),
        reason,
    };
    let request = hyper::Request::builder()
        .method("GET")
        .uri(&url)
        .header("authorization", format!("Bearer {}", source.token))
        .body(Full::new(Bytes::new()))
        .map_err(|e| failed(e.to_string()))?;
    let response = tokio::time::timeout(source.timeout, client.request(request))
        .await
        .map_err(|_| failed(format!("no answer within {:?}", source.timeout)))?
        .map_err(|e| failed(error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = tokio::time::timeout(source.timeout, response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Err(BackupError::Refused {
        url,
        status: status.as_u16(),
        code: value["error"]["code"].as_str().unwrap_or("?").to_string(),
        message: value["error"]["message"].as_str().unwrap_or("").to_string(),
    })
}

async fn get_json<T: DeserializeOwned>(
    client: &Client,
    source: &Source,
    path: &str,
) -> Result<T, BackupError> {
    let url = format!("{}{path}", source.base);
    let response = get(client, source, path).await?;
    let body = tokio::time::timeout(source.timeout, response.into_body().collect())
        .await
        .map_err(|_| BackupError::Request {
            url: url.clone(),
            reason: format!("no answer within {:?}", source.timeout),
        })?
        .map_err(|e| BackupError::Request {
            url: url.clone(),
            reason: error_chain(&e),
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| BackupError::UnexpectedAnswer {
        url,
        reason: e.to_string(),
    })
}

/// Receives group `group`'s copy into `copy`; returns the read index the node obtained for it.
async fn receive_copy(
    client: &Client,
    source: &Source,
    group: u32,
    copy: &mut CopyWriter,
) -> Result<u64, BackupError> {
    let path = format!("/admin/groups/{group}/backup");
    let url = format!("{}{path}", source.base);
    let response = get(client, source, &path).await?;
    let read_index = response
        .headers()
        .get(READ_INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| BackupError::UnexpectedAnswer {
            url: url.clone(),
            reason: format!("no {READ_INDEX_HEADER} header"),
        })?;
    let mut body = response.into_body();
    loop {
        let frame = tokio::time::timeout(source.timeout, body.frame())
            .await
            .map_err(|_| BackupError::Request {
                url: url.clone(),
                reason: format!("the copy stalled for {:?}", source.timeout),
            })?;
        match frame {
            None => return Ok(read_index),
            Some(Err(e)) => {
                return Err(BackupError::Request {
                    url: url.clone(),
                    reason: error_chain(&e),
                })
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    copy.write(data)?;
                }
            }
        }
    }
}

/// Receives body `id` from the node at `source.base` into `body`.
async fn receive_body(
    client: &Client,
    source: &Source,
    id: &BodyId,
    body: &mut BodyWriter,
) -> Result<(), BackupError> {
    let path = format!("/admin/bodies/{}", id.hex());
    let url = format!("{}{path}", source.base);
    let mut stream = get(client, source, &path).await?.into_body();
    loop {
        let frame = tokio::time::timeout(source.timeout, stream.frame())
            .await
            .map_err(|_| BackupError::Request {
                url: url.clone(),
                reason: format!("the body stalled for {:?}", source.timeout),
            })?;
        match frame {
            None => return Ok(()),
            Some(Err(e)) => {
                return Err(BackupError::Request {
                    url: url.clone(),
                    reason: error_chain(&e),
                })
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    body.write(data)?;
                }
            }
        }
    }
}

/// Fetches every body the copies reference into the backup: from `sources[0]` (the node that
/// served the copies), else from each other member in turn (one that has no good copy answers
/// 404; one that is down or breaks off is passed over too). Bytes that do not hash to their id
/// fail the backup, as does a body no member can serve.
async fn fetch_bodies(
    client: &Client,
    sources: &[Source],
    writer: &mut BackupWriter,
) -> Result<(), BackupError> {
    let ids: Vec<BodyId> = writer.referenced_bodies().iter().copied().collect();
    for id in ids {
        let mut reasons = Vec::new();
        let mut fetched = false;
        for source in sources {
            let mut body = writer.begin_body(id)?;
            match receive_body(client, source, &id, &mut body).await {
                Ok(()) => {
                    let url = format!("{}/admin/bodies/{}", source.base, id.hex());
                    writer.finish_body(body, &url)?;
                    fetched = true;
                    break;
                }
                Err(
                    e @ (BackupError::Request { .. }
                    | BackupError::Refused { .. }
                    | BackupError::UnexpectedAnswer { .. }),
                ) => {
                    body.discard();
                    reasons.push(e.to_string());
                }
                Err(e) => {
                    body.discard();
                    return Err(e);
                }
            }
        }
        if !fetched {
            return Err(BackupError::BodyUnavailable {
                id,
                reasons: reasons.join("; "),
            });
        }
    }
    Ok(())
}

/// Takes a backup of the cluster `source` belongs to into `out` (see the module docs); calls
/// `progress` after each group. On failure, what was written is removed again.
pub async fn take_backup(
    source: &Source,
    out: &Path,
    mut progress: impl FnMut(&GroupCopy),
) -> Result<BackupManifest, BackupError> {
    let started_unix_ms = now_unix_ms();
    let client: Client = http_client(source.ca_cert.as_deref()).map_err(|e| BackupError::Request {
        url: source.base.clone(),
        reason: e.to_string(),
    })?;
    let mut writer = BackupWriter::create(out)?;
    let taken = async {
        let status: NodeStatus = get_json(&client, source, "/admin/status").await?;
        let overview: ClusterOverview = get_json(&client, source, "/admin/cluster").await?;
        let cluster = SourceCluster {
            via: source.base.clone(),
            served_by: status.node_id,
            served_by_release: status.node.version.clone(),
            nodes: overview
                .nodes
                .iter()
                .map(|n| SourceNode {
                    node_id: n.node_id,
                    api_addr: n.api_addr.clone(),
                    reachable: n.reachable,
                    release: n.version.clone(),
                    max_encoding: n.max_encoding,
                })
                .collect(),
        };
        for group in 0..status.groups.len() as u32 {
            let mut copy = writer.begin_copy()?;
            let read_index = receive_copy(&client, source, group, &mut copy).await?;
            progress(writer.finish_copy(copy, read_index)?);
        }
        // The node that served the copies first, then every other member, by the same scheme.
        let scheme = source.base.split_once("://").map_or("http", |(scheme, _)| scheme);
        let mut sources = vec![source.clone()];
        sources.extend(
            overview
                .nodes
                .iter()
                .filter(|n| n.node_id != status.node_id)
                .map(|n| Source {
                    base: format!("{scheme}://{}", n.api_addr),
                    ..source.clone()
                }),
        );
        fetch_bodies(&client, &sources, &mut writer).await?;
        Ok::<_, BackupError>(cluster)
    }
    .await;
    match taken {
        Ok(cluster) => writer.finish(started_unix_ms, cluster),
        Err(e) => {
            writer.abandon();
            Err(e)
        }
    }
}
