//! openraft's own storage conformance suite, run against the sled stores.

use crate::log_store::LogStore;
use crate::state_machine::StateMachine;
use crate::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let io = |e: &dyn std::error::Error| -> StorageError {
            StorageIOError::new(
                ErrorSubject::Store,
                ErrorVerb::Write,
                openraft::AnyError::error(e),
            )
            .into()
        };
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .map_err(|e| io(&e))?;
        let log = LogStore::open(&db).map_err(|e| io(&e))?;
        let sm = StateMachine::open(&db)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_stores_pass_openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}
