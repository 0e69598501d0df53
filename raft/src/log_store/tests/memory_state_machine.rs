//! A minimal in-memory state machine for driving openraft's storage suite: it records the
//! applied payloads, echoes each request as its response, and snapshots into a [`SnapshotFile`].

use std::io::{self, Seek, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use crate::log_store::codec;
use crate::type_config::{
    LogId, Request, Response, Responses, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::SnapshotFile;

#[derive(Clone, Debug, Default)]
pub(super) struct MemoryStateMachine {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Invariant: every payload in `applied` comes from an entry at or before `last_applied`.
    last_applied: Option<LogId>,
    membership: StoredMembership,
    applied: Vec<Request>,
    current_snapshot: Option<(SnapshotMeta, SnapshotFile)>,
}

impl MemoryStateMachine {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A frozen copy of the state, taken when the builder is created, so building runs concurrently
/// with apply (ARCHITECTURE.md §10).
pub(super) struct MemorySnapshotBuilder {
    machine: MemoryStateMachine,
    meta: SnapshotMeta,
    applied: Vec<Request>,
}

impl RaftSnapshotBuilder<TypeConfig> for MemorySnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let bytes = codec::encode(&self.applied).map_err(io::Error::other)?;
        let mut file = tempfile::tempfile()?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        file.rewind()?;
        let snapshot = SnapshotFile::from_file(file)?;
        self.machine.state().current_snapshot = Some((self.meta.clone(), snapshot.try_clone()?));
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot,
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemoryStateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = MemorySnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.state();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut state = self.state();
                state.last_applied = Some(entry.log_id());
                match entry.payload {
                    EntryPayload::Blank => Responses::default(),
                    EntryPayload::Normal(batch) => {
                        let responses = batch.0.iter().map(|r| Response(r.0.clone())).collect();
                        state.applied.extend(batch.0);
                        Responses(responses)
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
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

    async fn get_snapshot_builder(&mut self) -> MemorySnapshotBuilder {
        let state = self.state();
        MemorySnapshotBuilder {
            machine: self.clone(),
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
            },
            applied: state.applied.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let applied: Vec<Request> = codec::decode(&snapshot.read_to_vec()?).map_err(io::Error::other)?;
        let mut state = self.state();
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.applied = applied;
        state.current_snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let state = self.state();
        match &state.current_snapshot {
            None => Ok(None),
            Some((meta, snapshot)) => Ok(Some(Snapshot {
                meta: meta.clone(),
                snapshot: snapshot.try_clone()?,
            })),
        }
    }
}
