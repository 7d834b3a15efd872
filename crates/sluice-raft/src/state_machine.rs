//! The state machine: `sluice_core::State` in memory, snapshots in sled.
//!
//! `apply` runs `State::apply` on each committed entry and publishes the new
//! state (an `Arc` swap) for the data plane and admin reads. The state machine's
//! durable form is its latest snapshot in the sled `snapshot` tree: on start it
//! is loaded from there and openraft re-applies the committed log entries after
//! it (the log store persists the committed log id for exactly that). Snapshots
//! are built every `snapshot_every_logs` entries, flushed before openraft may
//! purge the log they cover, installed when a leader streams one, and read back
//! for lagging followers.

use crate::types::{
    Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use arc_swap::ArcSwap;
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotId, StorageIOError,
};
use serde::{Deserialize, Serialize};
use sluice_core::{codec, State};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::clock::{wall_ms, StampClock};

const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_DATA: &[u8] = b"data";
/// When this node stored its latest snapshot (ms since the epoch, big-endian):
/// the snapshot age the node reports. Absent in stores from before it.
const SNAPSHOT_AT: &[u8] = b"stored_at_ms";

/// What a snapshot holds: the applied position, membership, and the state.
#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// `State::encode` bytes (their own version byte inside).
    state: Vec<u8>,
}

/// The state machine. openraft owns it; readers hold [`Published`].
pub struct StateMachine {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    state: Arc<State>,
    published: Arc<Published>,
    snapshots: sled::Tree,
    db: sled::Db,
    /// Distinguishes snapshots built at the same log id.
    builds: Arc<AtomicU64>,
}

/// The applied state as the rest of the node sees it.
pub struct Published {
    state: ArcSwap<State>,
    /// The leader's stamp clock, paced by the commands applied here.
    clock: StampClock,
    applied_index: AtomicU64,
    /// When the latest snapshot was stored here (`u64::MAX` = unknown).
    snapshot_at_ms: AtomicU64,
}

impl Published {
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// The stamp of a command this node proposes now, as leader.
    pub fn stamp(&self) -> u64 {
        self.clock
            .stamp(self.state.load().last_at_ms(), wall_ms(), Instant::now())
    }

    /// When this node stored its latest snapshot (built or installed), in
    /// ms since the epoch; `None` if it has none or does not know.
    pub fn snapshot_at_ms(&self) -> Option<u64> {
        match self.snapshot_at_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            at => Some(at),
        }
    }

    /// Index of the last applied entry (`None` before the first).
    pub fn applied_index(&self) -> Option<u64> {
        match self.applied_index.load(Ordering::Acquire) {
            u64::MAX => None,
            i => Some(i),
        }
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, &e).into()
}

fn snapshot_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, &e).into()
}

impl StateMachine {
    /// Opens the state machine, restoring it from the latest stored snapshot.
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let snapshots = db
            .open_tree("snapshot")
            .map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        let mut sm = StateMachine {
            last_applied: None,
            last_membership: StoredMembership::default(),
            state: Arc::new(State::default()),
            published: Arc::new(Published {
                state: ArcSwap::from_pointee(State::default()),
                applied_index: AtomicU64::new(u64::MAX),
                snapshot_at_ms: AtomicU64::new(u64::MAX),
                clock: StampClock::default(),
            }),
            snapshots,
            db: db.clone(),
            builds: Arc::new(AtomicU64::new(0)),
        };
        if let Some(data) = sm
            .snapshots
            .get(SNAPSHOT_DATA)
            .map_err(|e| snapshot_err(ErrorVerb::Read, e))?
        {
            sm.restore(&data)?;
        }
        if let Some(at) = sm
            .snapshots
            .get(SNAPSHOT_AT)
            .map_err(|e| snapshot_err(ErrorVerb::Read, e))?
            .and_then(|at| <[u8; 8]>::try_from(at.as_ref()).ok())
        {
            sm.published
                .snapshot_at_ms
                .store(u64::from_be_bytes(at), Ordering::Release);
        }
        Ok(sm)
    }

    /// Index of the last applied entry (from the snapshot, right after open).
    pub fn snapshot_index(&self) -> Option<u64> {
        self.last_applied.map(|l| l.index)
    }

    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let image: SnapshotImage =
            codec::decode(data).map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        let state = State::decode(&image.state).map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        self.last_applied = image.last_applied;
        self.last_membership = image.last_membership;
        self.state = Arc::new(state);
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.published.state.store(self.state.clone());
        self.published.applied_index.store(
            self.last_applied.map_or(u64::MAX, |l| l.index),
            Ordering::Release,
        );
    }

    fn image(&self) -> Result<Vec<u8>, StorageError> {
        let state = self
            .state
            .encode()
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        codec::encode(&SnapshotImage {
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            state,
        })
        .map_err(|e| sm_err(ErrorVerb::Read, e))
    }
}

/// Writes a snapshot to the `snapshot` tree and flushes it: it must be durable
/// before openraft may purge the log it covers.
async fn store_snapshot(
    db: &sled::Db,
    snapshots: &sled::Tree,
    published: &Published,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    let meta_bytes = codec::encode(meta).map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut batch = sled::Batch::default();
    batch.insert(SNAPSHOT_META, meta_bytes);
    batch.insert(SNAPSHOT_DATA, data);
    batch.insert(SNAPSHOT_AT, &at.to_be_bytes());
    snapshots
        .apply_batch(batch)
        .map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
    db.flush_async()
        .await
        .map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
    published.snapshot_at_ms.store(at, Ordering::Release);
    Ok(())
}

/// Builds a snapshot from a frozen copy of the state machine.
pub struct SnapshotBuilder {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    image: Result<Vec<u8>, StorageError>,
    snapshots: sled::Tree,
    db: sled::Db,
    published: Arc<Published>,
    build: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = std::mem::replace(&mut self.image, Ok(Vec::new()))?;
        let snapshot_id: SnapshotId = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.build),
            None => format!("none-{}", self.build),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        store_snapshot(&self.db, &self.snapshots, &self.published, &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let state = Arc::make_mut(&mut self.state);
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => Response::Internal,
                EntryPayload::Normal(proposal) => {
                    self.published
                        .clock
                        .observe(proposal.at_ms, wall_ms(), Instant::now());
                    Response::Command(Box::new(state.apply(&proposal)))
                }
                EntryPayload::Membership(membership) => {
                    state.retain_members(&membership.nodes().map(|(id, _)| *id).collect());
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::Internal
                }
            });
        }
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            image: self.image(),
            snapshots: self.snapshots.clone(),
            db: self.db.clone(),
            published: self.published.clone(),
            build: self.builds.fetch_add(1, Ordering::Relaxed),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // Decode before storing: a bad snapshot must not replace a good one.
        let image: SnapshotImage =
            codec::decode(&data).map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        State::decode(&image.state).map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        store_snapshot(&self.db, &self.snapshots, &self.published, meta, &data).await?;
        self.restore(&data)?;
        // The snapshot's own metadata is authoritative for where it stands.
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let read = |key: &[u8]| {
            self.snapshots
                .get(key)
                .map_err(|e| snapshot_err(ErrorVerb::Read, e))
        };
        let (Some(meta), Some(data)) = (read(SNAPSHOT_META)?, read(SNAPSHOT_DATA)?) else {
            return Ok(None);
        };
        let meta: SnapshotMeta =
            codec::decode(&meta).map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}
