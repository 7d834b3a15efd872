//! The Raft log and vote in sled.
//!
//! Trees: `log` maps a big-endian index to an encoded entry, `raft_meta` holds
//! the vote, the committed log id and the last purged log id. An append is
//! written to sled at once (so readers see it) and reported durable to openraft
//! only after `flush_async` has fsynced it. The vote is flushed before
//! `save_vote` returns.

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use sluice_core::codec;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The sled-backed log store. Cheap to clone: clones share the trees.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// The committed index last saved, for readiness (`u64::MAX` = none).
    committed_hint: Arc<AtomicU64>,
    /// One more than the highest index known flushed to disk (0 = none).
    flushed: Arc<AtomicU64>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        let store = LogStore {
            db: db.clone(),
            log: db.open_tree("log")?,
            meta: db.open_tree("raft_meta")?,
            committed_hint: Arc::new(AtomicU64::new(u64::MAX)),
            flushed: Arc::new(AtomicU64::new(0)),
        };
        // What was committed before a restart is still committed: readiness
        // must not wait for a new commit to learn it (a restarted leader of
        // an idle cluster hears of none).
        if let Ok(Some(Some(committed))) = store.get_meta::<Option<LogId>>(COMMITTED) {
            store
                .committed_hint
                .store(committed.index, Ordering::Release);
        }
        // Everything in the log at open time is on disk.
        if let Ok(Some(last)) = store.last_entry_log_id() {
            store.flushed.store(last.index + 1, Ordering::Release);
        }
        Ok(store)
    }

    /// Shared view of the committed index this node last persisted.
    pub fn committed_hint(&self) -> Arc<AtomicU64> {
        self.committed_hint.clone()
    }

    /// The highest committed index that is also flushed to disk: a store that
    /// later holds less than this has lost data.
    pub fn durable_committed(&self) -> Option<u64> {
        let committed = self.committed_hint.load(Ordering::Acquire);
        let flushed = self.flushed.load(Ordering::Acquire);
        if committed == u64::MAX || flushed == 0 {
            None
        } else {
            Some(committed.min(flushed - 1))
        }
    }

    /// Checks that every entry decodes and the log has no hole; returns the
    /// highest index the log accounts for (its last entry or purge point).
    pub fn verify(&self) -> Result<Option<u64>, String> {
        let last_purged: Option<LogId> = self
            .get_meta(LAST_PURGED)
            .map_err(|e| format!("purge point: {e}"))?;
        let _: Option<Vote> = self.get_meta(VOTE).map_err(|e| format!("vote: {e}"))?;
        let mut expected = last_purged.map(|l| l.index + 1);
        let mut last = last_purged.map(|l| l.index);
        for item in self.log.iter() {
            let (key, bytes) = item.map_err(|e| format!("log: {e}"))?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| "log: malformed key".to_string())?,
            );
            let entry: Entry =
                codec::decode(&bytes).map_err(|e| format!("log entry {index}: {e}"))?;
            if entry.log_id.index != index {
                return Err(format!(
                    "log entry stored at {index} claims index {}",
                    entry.log_id.index
                ));
            }
            if expected.is_some_and(|e| e != index) {
                return Err(format!("log has a hole before index {index}"));
            }
            expected = Some(index + 1);
            last = Some(index);
        }
        Ok(last)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.meta.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, &e).into()),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = codec::encode(value).map_err(write_err)?;
        self.meta.insert(key, bytes).map_err(write_err)?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.log.last().map_err(read_err)? {
            None => Ok(None),
            Some((_, bytes)) => {
                let entry: Entry = codec::decode(&bytes).map_err(read_err)?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, bytes) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                StorageError::from(StorageIOError::read_logs(&std::io::Error::other(
                    "malformed log key",
                )))
            })?);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = codec::decode(&bytes).map_err(read_err)?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote).map_err(|_| {
            StorageError::from(StorageIOError::write_vote(&std::io::Error::other(
                "sled insert failed",
            )))
        })?;
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(COMMITTED, &committed)?;
        self.committed_hint
            .store(committed.map_or(u64::MAX, |c| c.index), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        let mut last = None;
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(write_err)?;
            batch.insert(&index_key(entry.log_id.index), bytes);
            last = Some(entry.log_id.index);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        // Readers see the entries now; openraft hears they are durable only
        // once they are on disk.
        let db = self.db.clone();
        let flushed = self.flushed.clone();
        tokio::spawn(async move {
            let result = db
                .flush_async()
                .await
                .map(|_| ())
                .map_err(std::io::Error::other);
            if result.is_ok() {
                if let Some(last) = last {
                    flushed.fetch_max(last + 1, Ordering::AcqRel);
                }
            }
            callback.log_io_completed(result);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash half way leaves extra entries,
        // never a hole that get_log_state would not explain.
        self.put_meta(LAST_PURGED, &log_id)?;
        self.db.flush_async().await.map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}

impl LogStore {
    /// Number of entries currently in the log.
    pub fn len(&self) -> usize {
        self.log.len()
    }
}
