//! openraft's storage test suite, run against a fresh [`LogDb`] in a temporary directory for
//! each of its cases (ARCHITECTURE.md §10: "Validate the log store with openraft's storage test suite").

use openraft::testing::log::{StoreBuilder, Suite};

use super::memory_state_machine::MemoryStateMachine;
use crate::log_store::{GroupLogStore, LogDb};
use crate::type_config::{StorageError, TypeConfig};

/// Keeps the directory (and the db in it) alive for as long as the suite uses the store.
type Guard = (tempfile::TempDir, LogDb);

struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, GroupLogStore, MemoryStateMachine, Guard> for SledStoreBuilder {
    async fn build(&self) -> Result<(Guard, GroupLogStore, MemoryStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = LogDb::open(dir.path()).expect("open log db");
        // A group id other than 0, so nothing silently depends on the first group.
        let store = db.group(5).expect("group store");
        Ok(((dir, db), store, MemoryStateMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::<TypeConfig, GroupLogStore, MemoryStateMachine, SledStoreBuilder, Guard>::test_all(
        SledStoreBuilder,
    )
    .await
    .expect("openraft storage suite");
}
