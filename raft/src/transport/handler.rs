//! [`Handler`]: what the transport's server dispatches incoming requests and snapshots to (the
//! node's table of groups), so that the transport knows nothing of the node.

use std::future::Future;
use std::path::Path;

use openraft::raft::SnapshotResponse;

use super::wire::{RemoteError, RequestBody, ResponseBody};
use crate::type_config::{GroupId, Snapshot, TypeConfig, Vote};

/// What the server dispatches to: the node's groups.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request for `group_id`. `Err` means the group could not serve it at all.
    fn handle(
        &self,
        group_id: GroupId,
        body: RequestBody,
    ) -> impl Future<Output = Result<ResponseBody, RemoteError>> + Send;

    /// Installs a completely received snapshot.
    fn install_snapshot(
        &self,
        group_id: GroupId,
        vote: Vote,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<SnapshotResponse<TypeConfig>, RemoteError>> + Send;

    /// Where incoming snapshots are staged; on the same file system as the application's data.
    fn staging_dir(&self) -> &Path;

    /// Why this node takes no data now (its disk is full), if it does not: incoming snapshots
    /// are then refused before a byte is staged.
    fn refuses_writes(&self) -> Option<String> {
        None
    }
}
