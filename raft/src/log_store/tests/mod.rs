//! Tests of the log store: openraft's storage suite, durability across a reopen, group commit,
//! purging in steps.

mod durability;
mod group_commit;
mod memory_state_machine;
mod purge;
mod reads;
mod reserve;
mod suite;
mod tail;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;

use super::GroupLogStore;
use crate::type_config::{Batch, Entry, LeaderId, LogId, NodeId, Request, TypeConfig};

pub(super) fn log_id(term: u64, node_id: NodeId, index: u64) -> LogId {
    LogId::new(LeaderId::new_committed(term, node_id), index)
}

pub(super) fn blank(term: u64, index: u64) -> Entry {
    Entry::new_blank(log_id(term, 1, index))
}

pub(super) fn normal(term: u64, index: u64, payload: &[u8]) -> Entry {
    Entry::new_normal(log_id(term, 1, index), Batch(vec![Request(payload.to_vec())]))
}

/// Appends and returns the receiver that the `IOFlushed` callback completes.
pub(super) async fn append_nowait(
    store: &mut GroupLogStore,
    entries: Vec<Entry>,
) -> tokio::sync::oneshot::Receiver<Result<(), std::io::Error>> {
    let (flushed, done) = TypeConfig::oneshot();
    store
        .append(entries, IOFlushed::signal(flushed))
        .await
        .expect("append");
    done
}

/// Appends and waits until the callback reports the entries durable.
pub(super) async fn append_durable(store: &mut GroupLogStore, entries: Vec<Entry>) {
    append_nowait(store, entries)
        .await
        .await
        .expect("callback dropped")
        .expect("flush failed");
}
