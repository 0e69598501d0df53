//! [`AppStateMachine`]: openraft's `RaftStateMachine` over an [`Application`], and
//! [`GroupRaft`], the openraft instance that drives one.
//!
//! The application never sees openraft types. What openraft needs to know about the state
//! machine's position (the last applied log id and the membership in force) travels through the
//! application as an opaque `consensus_meta` blob, encoded here ([`ConsensusMeta`]); the
//! application stores it atomically with its state and carries it inside snapshots.
//!
//! Blocking work: `apply` runs inline (it is the application's hot path and usually an in-memory
//! update); building, installing and fetching snapshots run on tokio's blocking pool, so a
//! slow disk never stalls the runtime threads that carry heartbeats.
//!
//! Any application error is returned to openraft as an `io::Error`, which openraft turns into a
//! `StorageError`: the group stops rather than diverging (ARCHITECTURE.md §8, STYLE "Errors"). Except a
//! full disk ([`is_out_of_space`]): applying, building or installing a snapshot then waits and
//! retries the same call, so the group comes back by itself once there is space.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::application::{is_out_of_space, OUT_OF_SPACE_RETRY};
use crate::type_config::{
    GroupId, LogId, Response, Responses, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::{Application, LogPosition, SnapshotFile, SnapshotInfo, SnapshotJob};

/// The version byte that opens every encoded [`ConsensusMeta`]. Bumped on any layout change.
const CONSENSUS_META_VERSION: u8 = 1;

/// What openraft needs to resume a state machine without its log: the last applied log id and
/// the membership in force at that point. Stored by the application as opaque bytes.
///
/// Encoding: one version byte (`1`), then the bincode-2 (standard config, serde path) encoding
/// of this struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusMeta {
    pub last_applied: LogId,
    pub membership: StoredMembership,
}

impl ConsensusMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![CONSENSUS_META_VERSION];
        bincode::serde::encode_into_std_write(self, &mut bytes, bincode::config::standard())
            .expect("encoding into a Vec cannot fail");
        bytes
    }

    pub fn decode(bytes: &[u8]) -> io::Result<ConsensusMeta> {
        match bytes.split_first() {
            Some((&CONSENSUS_META_VERSION, rest)) => {
                let (meta, read) = crate::decode::decode_from_slice::<ConsensusMeta>(rest)
                    .map_err(|e| corrupt(format!("consensus meta: {e}")))?;
                if read != rest.len() {
                    return Err(corrupt(format!(
                        "consensus meta: {} trailing bytes",
                        rest.len() - read
                    )));
                }
                Ok(meta)
            }
            Some((version, _)) => Err(corrupt(format!("consensus meta: unknown version {version}"))),
            None => Err(corrupt("consensus meta: empty".to_string())),
        }
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(self.last_applied),
            last_membership: self.membership.clone(),
        }
    }
}

/// The [`LogPosition`] of a log id: the term of its leader and its index.
pub fn position_of(log_id: &LogId) -> LogPosition {
    LogPosition::new(log_id.leader_id.term, log_id.index)
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Locks the application. A poisoned lock means an application call panicked halfway: its
/// state can no longer be trusted, so the group stops.
pub(crate) fn lock_app<A>(app: &Mutex<A>) -> io::Result<MutexGuard<'_, A>> {
    app.lock()
        .map_err(|_| io::Error::other("application lock poisoned: an earlier call panicked"))
}

/// Runs `f` on the blocking pool with the application locked.
async fn with_app_blocking<A, T>(
    app: &Arc<Mutex<A>>,
    f: impl FnOnce(&mut A) -> io::Result<T> + Send + 'static,
) -> io::Result<T>
where
    A: Application,
    T: Send + 'static,
{
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&mut *lock_app(&app)?))
        .await
        .map_err(|e| io::Error::other(format!("application task failed: {e}")))?
}

/// One group's openraft instance, driving the group's [`AppStateMachine`].
pub type GroupRaft<A> = openraft::Raft<TypeConfig, AppStateMachine<A>>;

/// openraft's state machine for one group, backed by an [`Application`].
pub struct AppStateMachine<A: Application> {
    group_id: GroupId,
    app: Arc<Mutex<A>>,
    /// The node's shutdown signal: a call waiting for disk space gives up on it.
    shutdown: watch::Receiver<bool>,
    /// The membership as of the last applied entry; written into each entry's consensus meta.
    /// Invariant: equal to the membership in the application's stored meta.
    membership: StoredMembership,
}

impl<A: Application> AppStateMachine<A> {
    /// Wraps `app`, reading its stored position.
    pub fn new(
        group_id: GroupId,
        app: Arc<Mutex<A>>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<AppStateMachine<A>> {
        let stored = lock_app(&app)?.applied_state();
        let membership = match stored {
            Some((_, meta)) => ConsensusMeta::decode(&meta)?.membership,
            None => StoredMembership::default(),
        };
        Ok(AppStateMachine {
            group_id,
            app,
            shutdown,
            membership,
        })
    }

    /// `membership`'s invariant: what the application stored last says the same (debug builds).
    fn debug_assert_membership_stored(&self) {
        if cfg!(debug_assertions) {
            let stored = lock_app(&self.app)
                .ok()
                .and_then(|app| app.applied_state())
                .and_then(|(_, meta)| ConsensusMeta::decode(&meta).ok())
                .map(|meta| meta.membership);
            debug_assert_eq!(
                stored.as_ref(),
                Some(&self.membership),
                "invariant: group {}'s membership equals the one its application stored",
                self.group_id
            );
        }
    }

    fn snapshot_of(&self, info: SnapshotInfo) -> io::Result<Snapshot> {
        let meta = ConsensusMeta::decode(&info.consensus_meta)?;
        if position_of(&meta.last_applied) != info.position {
            return Err(corrupt(format!(
                "group {}: snapshot at {} carries consensus meta for {}",
                self.group_id,
                info.position,
                position_of(&meta.last_applied)
            )));
        }
        Ok(Snapshot {
            meta: meta.snapshot_meta(),
            snapshot: info.file,
        })
    }
}

/// Builds a snapshot through the application. The application's `build_snapshot` is expected
/// to freeze its view quickly (copies or hard links, ARCHITECTURE.md §10); it runs on the blocking pool.
pub struct AppSnapshotBuilder<A: Application> {
    group_id: GroupId,
    app: Arc<Mutex<A>>,
    shutdown: watch::Receiver<bool>,
}

/// Runs `attempt` until it succeeds or fails for a reason other than a full disk, waiting
/// [`OUT_OF_SPACE_RETRY`] between attempts (and saying so once); at shutdown the full-disk error
/// is returned instead (the group stops; what was not applied is replayed from the log).
async fn until_space<T, F, Fut>(
    group_id: GroupId,
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut attempt: F,
) -> io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut waited = false;
    loop {
        match attempt().await {
            Err(e) if is_out_of_space(&e) && !*shutdown.borrow() => {
                if !waited {
                    tracing::warn!(group_id, error = %e, "{what} waits for disk space");
                    waited = true;
                }
                tokio::time::sleep(OUT_OF_SPACE_RETRY).await;
            }
            result => {
                if waited && result.is_ok() {
                    tracing::info!(group_id, "{what}: done after waiting for disk space");
                }
                return result;
            }
        }
    }
}

impl<A: Application> RaftSnapshotBuilder<TypeConfig> for AppSnapshotBuilder<A> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let app = &self.app;
        let info = until_space(
            self.group_id,
            "building a snapshot",
            &self.shutdown,
            || async move {
                match with_app_blocking(app, |app| app.begin_snapshot()).await? {
                    SnapshotJob::Done(info) => Ok(info),
                    SnapshotJob::Pending(finish) => tokio::task::spawn_blocking(finish)
                        .await
                        .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))?,
                }
            },
        )
        .await?;
        let meta = ConsensusMeta::decode(&info.consensus_meta)?;
        tracing::info!(group_id = self.group_id, position = %info.position, bytes = info.file.len(), "built snapshot");
        Ok(Snapshot {
            meta: meta.snapshot_meta(),
            snapshot: info.file,
        })
    }
}

impl<A: Application> RaftStateMachine<TypeConfig> for AppStateMachine<A> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = AppSnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let stored = lock_app(&self.app)?.applied_state();
        match stored {
            None => Ok((None, StoredMembership::default())),
            Some((position, bytes)) => {
                let meta = ConsensusMeta::decode(&bytes)?;
                if position_of(&meta.last_applied) != position {
                    return Err(corrupt(format!(
                        "group {}: applied position {position} but consensus meta for {}",
                        self.group_id,
                        position_of(&meta.last_applied)
                    )));
                }
                self.membership = meta.membership.clone();
                Ok((Some(meta.last_applied), meta.membership))
            }
        }
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            let position = position_of(&log_id);
            let response = {
                match entry.payload {
                    EntryPayload::Normal(batch) => {
                        let meta = ConsensusMeta {
                            last_applied: log_id,
                            membership: self.membership.clone(),
                        };
                        let meta = meta.encode();
                        // A full disk: the entry waits for space, then applies (the
                        // application left it so that a retry finishes it once). The lock is
                        // not held while waiting, so reads go on.
                        let app = &self.app;
                        let requests = &batch.0;
                        let responses = until_space(self.group_id, "applying", &self.shutdown, || {
                            let applied =
                                lock_app(app).and_then(|mut app| app.apply(position, &meta, requests));
                            std::future::ready(applied)
                        })
                        .await?;
                        if responses.len() != batch.0.len() && responder.is_some() {
                            return Err(io::Error::other(format!(
                                "group {}: the application answered {} of the {} requests at {position}",
                                self.group_id,
                                responses.len(),
                                batch.0.len()
                            )));
                        }
                        Responses(responses.into_iter().map(Response).collect())
                    }
                    EntryPayload::Blank => {
                        let meta = ConsensusMeta {
                            last_applied: log_id,
                            membership: self.membership.clone(),
                        };
                        lock_app(&self.app)?.apply_blank(position, &meta.encode())?;
                        Responses::default()
                    }
                    EntryPayload::Membership(membership) => {
                        let stored = StoredMembership::new(Some(log_id), membership);
                        let meta = ConsensusMeta {
                            last_applied: log_id,
                            membership: stored.clone(),
                        };
                        lock_app(&self.app)?.apply_blank(position, &meta.encode())?;
                        self.membership = stored;
                        self.debug_assert_membership_stored();
                        Responses::default()
                    }
                }
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> AppSnapshotBuilder<A> {
        AppSnapshotBuilder {
            group_id: self.group_id,
            app: self.app.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let expected = meta.last_log_id.as_ref().map(position_of);
        let snapshot = Arc::new(snapshot);
        let app = &self.app;
        let installed = until_space(self.group_id, "installing a snapshot", &self.shutdown, || {
            let file = snapshot.clone();
            with_app_blocking(app, move |app| app.install_snapshot(&file))
        })
        .await?;
        if Some(installed) != expected {
            return Err(corrupt(format!(
                "group {}: installed snapshot covers {installed}, openraft expected {expected:?}",
                self.group_id
            )));
        }
        // The snapshot's metadata came in a frame without a checksum of its own (the snapshot
        // header); the consensus metadata stored inside the snapshot, which per-chunk and
        // per-file checksums cover, must say the same: they were one value at the sender.
        let stored = lock_app(&self.app)?.applied_state();
        let stored = stored
            .map(|(_, bytes)| ConsensusMeta::decode(&bytes))
            .transpose()?;
        match stored {
            Some(stored)
                if Some(stored.last_applied) == meta.last_log_id
                    && stored.membership == meta.last_membership => {}
            other => {
                return Err(corrupt(format!(
                    "group {}: the snapshot's own consensus metadata ({:?}) disagrees with the metadata it was sent with ({meta:?})",
                    self.group_id,
                    other.map(|m| (m.last_applied, m.membership))
                )));
            }
        }
        self.membership = meta.last_membership.clone();
        tracing::info!(group_id = self.group_id, position = %installed, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let current = with_app_blocking(&self.app, |app| app.current_snapshot()).await?;
        current.map(|info| self.snapshot_of(info)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::type_config::{LeaderId, Membership, Node};

    /// An application whose snapshot file is nothing but its consensus metadata.
    struct MetaOnly(Option<(LogPosition, Vec<u8>)>);

    impl Application for MetaOnly {
        fn applied_state(&self) -> Option<(LogPosition, Vec<u8>)> {
            self.0.clone()
        }
        fn apply(&mut self, _: LogPosition, _: &[u8], _: &[crate::Request]) -> io::Result<Vec<Vec<u8>>> {
            unreachable!("not applied in this test")
        }
        fn apply_blank(&mut self, _: LogPosition, _: &[u8]) -> io::Result<()> {
            unreachable!("not applied in this test")
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn build_snapshot(&mut self) -> io::Result<SnapshotInfo> {
            unreachable!("not built in this test")
        }
        fn current_snapshot(&self) -> io::Result<Option<SnapshotInfo>> {
            Ok(None)
        }
        fn install_snapshot(&mut self, snapshot: &SnapshotFile) -> io::Result<LogPosition> {
            let bytes = snapshot.read_to_vec()?;
            let position = position_of(&ConsensusMeta::decode(&bytes)?.last_applied);
            self.0 = Some((position, bytes));
            Ok(position)
        }
    }

    fn membership_of(voters: &[u64]) -> Membership {
        let nodes: std::collections::BTreeMap<_, _> = voters.iter().map(|&v| (v, Node::default())).collect();
        Membership::new(vec![voters.iter().copied().collect()], nodes).unwrap()
    }

    /// The snapshot header's metadata travels in a frame without a checksum; an install whose
    /// snapshot says otherwise inside (where checksums cover it) fails the group, naming the
    /// disagreement, instead of giving openraft a membership the state does not have.
    #[tokio::test]
    async fn an_installed_snapshot_must_carry_the_metadata_it_was_sent_with() {
        let log_id = LogId::new(LeaderId::new_committed(4, 2), 17);
        let inside = ConsensusMeta {
            last_applied: log_id,
            membership: StoredMembership::new(Some(log_id), membership_of(&[1, 2])),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, inside.encode()).unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let install = |sent: SnapshotMeta| {
            let mut machine =
                AppStateMachine::new(1, Arc::new(Mutex::new(MetaOnly(None))), shutdown.clone()).unwrap();
            let file = SnapshotFile::open(&path).unwrap();
            async move { machine.install_snapshot(&sent, file).await }
        };
        install(inside.snapshot_meta()).await.unwrap();
        let other_membership = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(Some(log_id), membership_of(&[1, 2, 3])),
        };
        let error = install(other_membership).await.unwrap_err();
        assert!(error.to_string().contains("disagrees"), "{error}");
    }

    #[test]
    fn consensus_meta_round_trips_and_rejects_garbage() {
        let membership = Membership::new(
            vec![[1, 2].into_iter().collect()],
            [(1, Node::default()), (2, Node::default())]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
        let log_id = LogId::new(LeaderId::new_committed(4, 2), 17);
        let meta = ConsensusMeta {
            last_applied: log_id,
            membership: StoredMembership::new(Some(log_id), membership),
        };
        let bytes = meta.encode();
        assert_eq!(bytes[0], CONSENSUS_META_VERSION);
        assert_eq!(ConsensusMeta::decode(&bytes).unwrap(), meta);
        assert_eq!(position_of(&log_id), LogPosition::new(4, 17));

        assert!(ConsensusMeta::decode(&[]).is_err());
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(ConsensusMeta::decode(&wrong_version).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(ConsensusMeta::decode(&trailing).is_err());
    }

    /// Consensus metadata whose node address claims 2^40 bytes is corrupt, not an allocation of
    /// that size (it is read at every start, from the manifest).
    #[test]
    fn consensus_meta_claiming_a_huge_length_is_corrupt() {
        let log_id = LogId::new(LeaderId::new_committed(4, 2), 17);
        let nodes = [(
            1,
            Node {
                peer_addr: "p".into(),
                api_addr: "a".into(),
            },
        )];
        let membership = Membership::new(
            vec![[1].into_iter().collect()],
            nodes.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
        let bytes = ConsensusMeta {
            last_applied: log_id,
            membership: StoredMembership::new(Some(log_id), membership),
        }
        .encode();
        let at = bytes
            .windows(2)
            .position(|w| w == [1, b'a'])
            .expect("the API address");
        let mut huge = bytes[..at].to_vec();
        huge.push(253);
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        huge.extend_from_slice(&bytes[at + 1..]);
        assert_eq!(
            ConsensusMeta::decode(&huge).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
