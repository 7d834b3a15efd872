//! The openraft type configuration.

use crate::api::Member;
use serde::{Deserialize, Serialize};
use sluice_core::{Applied, ApplyError, Proposal};
use std::io::Cursor;

/// A node id: a positive integer chosen by the operator (`node_id` in config).
pub type NodeId = u64;

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A command entry: the state machine's verdict (boxed: an applied key
    /// is some 200 bytes, a blank entry's answer none).
    Command(Box<Result<Applied, ApplyError>>),
    /// A blank or membership entry: nothing for a client.
    Internal,
}

openraft::declare_raft_types!(
    /// Sluice's Raft types: proposals in, apply results out, [`Member`] as node info.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
