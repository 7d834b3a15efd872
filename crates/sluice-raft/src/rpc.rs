//! The peer protocol: one request and one response per QUIC stream, each a
//! length-prefixed frame in the shared codec.

use crate::api::{ClusterError, Member};
use crate::types::{LogId, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use sluice_core::{codec, Applied, ApplyError, Command};

/// Largest frame accepted (snapshot chunks are far smaller).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// What one node asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// An operation only the leader can perform, forwarded by another node.
    Leader(LeaderRequest),
    /// Part of a leadership transfer: do not start elections for a while.
    HoldElections {
        for_ms: u64,
    },
    /// Part of a leadership transfer: start an election now.
    Campaign,
    /// Is this connection still served? (Answered with `Ack`.)
    Ping,
    /// Would you vote for this candidate? Asked before an election, changes
    /// nothing on either side (see `node/elections.rs`). Last, so that the
    /// codec's numbering of the older requests is unchanged.
    PreVote(PreVoteRequest),
}

/// A pre-vote: the candidate and how far its log goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
}

/// Operations that run on the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    Write(Command),
    /// Confirm leadership and say up to which index a linearizable read must wait.
    ReadIndex,
    AddLearner {
        id: NodeId,
        member: Member,
    },
    Promote {
        id: NodeId,
    },
    Remove {
        id: NodeId,
    },
    TransferLeader {
        to: NodeId,
    },
}

/// The leader's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderResponse {
    /// A command was committed at `log_index` and applied with this result.
    Written {
        log_index: u64,
        outcome: Result<Applied, ApplyError>,
    },
    /// Reads must wait until this index is applied.
    ReadIndex { log_index: Option<u64> },
    /// A membership change was committed at `log_index`.
    Membership { log_index: Option<u64> },
}

/// Why the leader did not do it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderError {
    /// This node is not the leader; try `leader` (if known).
    NotLeader {
        leader: Option<(NodeId, Member)>,
    },
    Failed(ClusterError),
}

/// What a node answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Leader(Result<LeaderResponse, LeaderError>),
    Ack,
    /// The request could not be decoded or served at all.
    Refused(String),
    /// The answer to a [`Request::PreVote`].
    PreVote {
        granted: bool,
    },
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    #[error("codec: {0}")]
    Codec(#[from] codec::CodecError),
}

pub async fn write_frame<T: Serialize>(
    stream: &mut quinn::SendStream,
    value: &T,
) -> Result<(), FrameError> {
    let bytes = codec::encode(value)?;
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    let len = (bytes.len() as u32).to_be_bytes();
    stream
        .write_all(&len)
        .await
        .map_err(std::io::Error::other)?;
    stream
        .write_all(&bytes)
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

pub async fn read_frame<T: serde::de::DeserializeOwned>(
    stream: &mut quinn::RecvStream,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(std::io::Error::other)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(std::io::Error::other)?;
    Ok(codec::decode(&buf)?)
}
