//! The plain types [`crate::ClusterNode`] speaks in.

use serde::{Deserialize, Serialize};
use sluice_core::ApplyError;

/// How one node is reached, as recorded in the cluster membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` of the node's QUIC (Raft) endpoint.
    pub raft_addr: String,
    /// Base URL of the node's admin API, e.g. `http://10.0.0.1:9090`.
    pub admin_url: String,
    /// Base URL of the node's proxy (data plane), e.g. `http://10.0.0.1:8080`.
    pub proxy_url: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "raft={} admin={} proxy={}",
            self.raft_addr, self.admin_url, self.proxy_url
        )
    }
}

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Voter,
    Learner,
}

/// One member as seen by the node answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub role: MemberRole,
    pub addresses: Member,
    /// Highest log index known replicated to it (only known on the leader).
    pub matched_index: Option<u64>,
}

/// A node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Entries in this node's log (compaction keeps it short).
    pub log_entries: u64,
    pub members: Vec<MemberStatus>,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub leader_id: Option<u64>,
    pub applied_index: Option<u64>,
    /// The leader's commit index as last heard from it.
    pub leader_commit_index: Option<u64>,
    pub reason: Option<String>,
}

/// Read consistency for admin reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Confirm leadership with a quorum and wait until this node has applied
    /// everything committed before the read started.
    #[default]
    Linearizable,
    /// Whatever this node has applied.
    Stale,
}

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// No leader could be reached (election under way, or no quorum).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The operation timed out; it may or may not have taken effect.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A membership operation was invalid (unknown node, removing the last voter, ...).
    #[error("{0}")]
    InvalidMembership(String),
    /// Something inside this node failed (storage, encoding).
    #[error("internal error: {0}")]
    Internal(String),
}
