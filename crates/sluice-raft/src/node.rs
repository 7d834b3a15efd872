//! [`ClusterNode`]: one running Raft member and everything the rest of Sluice
//! asks of the cluster.

use crate::api::*;
use crate::datadir::DataDir;
use crate::log_store::LogStore;
use crate::network::{CallError, NetworkFactory, Peers};
use crate::rpc::{LeaderError, LeaderRequest, LeaderResponse, Request, Response};
use crate::state_machine::{Published, StateMachine};
use crate::tls::{node_server_name, CLUSTER_SERVER_NAME};
use crate::types::{NodeId, Raft, Response as RaftResponse};
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use sluice_core::{Applied, Command, Proposal, State};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Election and replication timing.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Per-RPC timeout for peer calls (snapshots get longer).
    pub rpc_timeout_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind the latest snapshot.
    pub logs_to_keep: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            rpc_timeout_ms: 2000,
            snapshot_every_logs: 5000,
            logs_to_keep: 1000,
        }
    }
}

/// How a node that has never been part of a cluster becomes one.
#[derive(Debug, Clone)]
pub enum Bootstrap {
    /// etcd-style static membership: every listed node starts with the same
    /// list and they form the cluster together. Ignored once a node has state.
    InitialMembers(BTreeMap<u64, Member>),
    /// Ask a running cluster (any of these Raft addresses) to add this node
    /// as a learner.
    Join(Vec<String>),
}

/// Everything needed to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub cluster_id: String,
    pub node_id: u64,
    pub data_dir: PathBuf,
    /// UDP address the QUIC endpoint binds.
    pub listen_raft: SocketAddr,
    /// How the others reach this node.
    pub advertise: Member,
    pub tls: crate::tls::TlsFiles,
    pub bootstrap: Bootstrap,
    pub timing: RaftTiming,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("cannot bind QUIC endpoint on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// One running cluster member. Cheap to share: clone the `Arc`.
pub struct ClusterNode {
    inner: Arc<Inner>,
    endpoint: quinn::Endpoint,
}

/// The parts the server, the background tasks and the handle share.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    cluster_id: String,
    pub(crate) raft: Raft,
    published: Arc<Published>,
    peers: Arc<Peers>,
    timing: RaftTiming,
    advertise: Member,
    db: sled::Db,
    log: LogStore,
    data_dir: DataDir,
    /// The committed index this node last persisted.
    committed_hint: Arc<AtomicU64>,
    /// The highest commit index a leader has told this node of (`u64::MAX` = none).
    leader_commit_heard: AtomicU64,
    /// While set and in the future, elections stay disabled (leader transfer).
    hold_elections_until: std::sync::Mutex<Option<Instant>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn index_of(hint: &AtomicU64) -> Option<u64> {
    match hint.load(Ordering::Acquire) {
        u64::MAX => None,
        i => Some(i),
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

fn internal(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Internal(e.to_string())
}

impl ClusterNode {
    /// Opens (or creates) the data dir, binds QUIC, starts Raft and, on a fresh
    /// node, bootstraps or joins as `options.bootstrap` says.
    pub async fn start(options: NodeOptions) -> Result<Arc<ClusterNode>, StartError> {
        let data_dir = options.data_dir.clone();
        let dir_err = |message: String| StartError::DataDir {
            path: data_dir.clone(),
            message,
        };
        let dir = DataDir::check(&options.data_dir, &options.cluster_id, options.node_id)
            .map_err(|e| dir_err(e.message))?;
        // TLS before touching the disk: a bad certificate must not leave a
        // half-initialised data dir behind.
        let tls = options
            .tls
            .load()
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let dir = if dir.fresh {
            dir
        } else {
            tokio::task::spawn_blocking(move || dir.verify_store().map(|()| dir))
                .await
                .map_err(|e| dir_err(format!("verifying the store failed: {e}")))?
                .map_err(|e| dir_err(e.message))?
        };

        let db_path = dir.db_path();
        let db = tokio::task::spawn_blocking(move || sled::Config::new().path(db_path).open())
            .await
            .map_err(|e| {
                dir_err(format!(
                    "the store could not be opened (it may be corrupt): {e}"
                ))
            })?
            .map_err(|e| {
                dir_err(format!(
                    "the store could not be opened (it may be corrupt): {e}"
                ))
            })?;
        let log = LogStore::open(&db).map_err(|e| dir_err(format!("cannot open the log: {e}")))?;
        let state_machine = StateMachine::open(&db)
            .map_err(|e| dir_err(format!("cannot load the latest snapshot: {e}")))?;
        if dir.fresh {
            db.flush_async()
                .await
                .map_err(|e| dir_err(format!("cannot write the store: {e}")))?;
            dir.write_identity(&options.cluster_id, options.node_id)
                .map_err(|e| dir_err(format!("cannot write the identity file: {e}")))?;
        }

        let bind_err = |e: std::io::Error| StartError::Bind {
            addr: options.listen_raft,
            message: e.to_string(),
        };
        let socket = std::net::UdpSocket::bind(options.listen_raft).map_err(bind_err)?;
        let endpoint = quinn::Endpoint::new(
            tls.endpoint,
            Some(tls.server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let mut endpoint = endpoint;
        endpoint.set_default_client_config(tls.client);
        let peers = Arc::new(Peers::new(
            endpoint.clone(),
            Duration::from_millis(options.timing.rpc_timeout_ms),
        ));

        let t = &options.timing;
        let config = openraft::Config {
            cluster_name: options.cluster_id.clone(),
            heartbeat_interval: t.heartbeat_interval_ms,
            election_timeout_min: t.election_timeout_min_ms,
            election_timeout_max: t.election_timeout_max_ms,
            install_snapshot_timeout: t.rpc_timeout_ms.max(1000) * 5,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_every_logs),
            max_in_snapshot_log_to_keep: t.logs_to_keep,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let published = state_machine.published();
        let committed_hint = log.committed_hint();
        let raft = Raft::new(
            options.node_id,
            Arc::new(config),
            NetworkFactory {
                peers: peers.clone(),
            },
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let inner = Arc::new(Inner {
            id: options.node_id,
            cluster_id: options.cluster_id.clone(),
            raft,
            published,
            peers,
            timing: options.timing.clone(),
            advertise: options.advertise.clone(),
            db,
            log,
            data_dir: dir,
            committed_hint,
            leader_commit_heard: AtomicU64::new(u64::MAX),
            hold_elections_until: std::sync::Mutex::new(None),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        });
        inner.tasks.spawn(inner.clone().keep_watermark());
        inner.tasks.spawn(crate::server::serve(
            endpoint.clone(),
            inner.clone(),
            inner.tasks.clone(),
            inner.stop.clone(),
        ));

        let initialized = inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        match &options.bootstrap {
            Bootstrap::InitialMembers(members) if !initialized => {
                if !members.contains_key(&options.node_id) {
                    return Err(StartError::Raft(format!(
                        "node {} is not in initial_members",
                        options.node_id
                    )));
                }
                // Every initial member initialises with the same membership;
                // openraft makes the identical first entries agree.
                match inner.raft.initialize(members.clone()).await {
                    Ok(()) => {
                        tracing::info!(members = members.len(), "initialised cluster membership")
                    }
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(StartError::Raft(format!("cannot initialise: {e}"))),
                }
            }
            Bootstrap::Join(seeds) => {
                if !inner.is_member() {
                    let joiner = inner.clone();
                    let seeds = seeds.clone();
                    inner.tasks.spawn(async move { joiner.join(seeds).await });
                }
            }
            Bootstrap::InitialMembers(_) => {}
        }
        tracing::info!(node = options.node_id, raft = %options.listen_raft, "raft node started");
        Ok(Arc::new(ClusterNode { inner, endpoint }))
    }

    pub fn node_id(&self) -> u64 {
        self.inner.id
    }

    /// The state as applied on this node (no cluster round trip).
    pub fn local_state(&self) -> Arc<State> {
        self.inner.published.state()
    }

    /// The state, read with the given consistency.
    pub async fn read(&self, consistency: Consistency) -> Result<Arc<State>, ClusterError> {
        if consistency == Consistency::Linearizable {
            match self.inner.call_leader(LeaderRequest::ReadIndex).await? {
                LeaderResponse::ReadIndex {
                    log_index: Some(index),
                } => self.inner.wait_applied(index).await?,
                LeaderResponse::ReadIndex { log_index: None } => {}
                other => return Err(internal(format!("unexpected answer to a read: {other:?}"))),
            }
        }
        Ok(self.local_state())
    }

    /// Proposes a command (through the leader) and waits until it is applied
    /// here, so a read on this node right after sees it.
    pub async fn write(&self, command: Command) -> Result<Applied, ClusterError> {
        match self
            .inner
            .call_leader(LeaderRequest::Write(command))
            .await?
        {
            LeaderResponse::Written { log_index, outcome } => {
                self.inner.wait_applied(log_index).await?;
                Ok(outcome?)
            }
            other => Err(internal(format!("unexpected answer to a write: {other:?}"))),
        }
    }

    pub async fn status(&self) -> ClusterStatus {
        self.inner.status()
    }

    pub fn readiness(&self) -> Readiness {
        self.inner.readiness()
    }

    pub async fn add_learner(
        &self,
        id: u64,
        member: Member,
    ) -> Result<ClusterStatus, ClusterError> {
        self.membership_op(LeaderRequest::AddLearner { id, member })
            .await
    }

    pub async fn promote(&self, id: u64) -> Result<ClusterStatus, ClusterError> {
        self.membership_op(LeaderRequest::Promote { id }).await
    }

    pub async fn remove(&self, id: u64) -> Result<ClusterStatus, ClusterError> {
        self.membership_op(LeaderRequest::Remove { id }).await
    }

    pub async fn transfer_leader(&self, to: u64) -> Result<ClusterStatus, ClusterError> {
        self.membership_op(LeaderRequest::TransferLeader { to })
            .await
    }

    async fn membership_op(&self, request: LeaderRequest) -> Result<ClusterStatus, ClusterError> {
        if let LeaderResponse::Membership {
            log_index: Some(index),
        } = self.inner.call_leader(request).await?
        {
            self.inner.wait_applied(index).await?;
        }
        Ok(self.inner.status())
    }

    /// Stops Raft and the QUIC endpoint, flushing storage.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        if let Err(e) = inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        // Let peers see the close; the port is released once the
        // connections have drained and the last endpoint handle is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        inner.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("peer tasks still running after 5 s; leaving them");
        }
        if let Err(e) = inner.db.flush_async().await {
            tracing::error!(error = %e, "final flush of the store failed");
        }
        inner.write_watermark(&mut None);
    }
}

impl Inner {
    /// Every second, records how far the log is committed and on disk (see
    /// `DataDir::verify_store`).
    async fn keep_watermark(self: Arc<Self>) {
        let mut written = None;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            self.write_watermark(&mut written);
        }
    }

    fn write_watermark(&self, written: &mut Option<u64>) {
        let Some(durable) = self.log.durable_committed() else {
            return;
        };
        if written.is_some_and(|w| w >= durable) {
            return;
        }
        match self.data_dir.write_watermark(durable) {
            Ok(()) => *written = Some(durable),
            Err(e) => tracing::warn!(error = %e, "cannot write the durability watermark"),
        }
    }

    fn op_timeout(&self) -> Duration {
        Duration::from_millis(
            (self.timing.rpc_timeout_ms * 5).max(self.timing.election_timeout_max_ms * 4),
        )
    }

    fn metrics(&self) -> openraft::RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    fn is_member(&self) -> bool {
        self.metrics()
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    fn known_leader(&self) -> Option<(NodeId, Member)> {
        let m = self.metrics();
        let leader = m.current_leader?;
        let member = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, member))
    }

    pub(crate) fn heard_leader_commit(&self, commit: Option<u64>) {
        if let Some(commit) = commit {
            let prev = self.leader_commit_heard.load(Ordering::Acquire);
            if prev == u64::MAX || commit > prev {
                self.leader_commit_heard.store(commit, Ordering::Release);
            }
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ClusterError> {
        if self.published.applied_index().is_some_and(|a| a >= index) {
            return Ok(());
        }
        self.raft
            .wait(Some(self.op_timeout()))
            .applied_index_at_least(Some(index), "apply")
            .await
            .map(|_| ())
            .map_err(|e| {
                ClusterError::Timeout(format!("waiting for this node to apply index {index}: {e}"))
            })
    }

    /// Runs `request` on the leader: here if this node leads, else over QUIC.
    /// Retries while leadership is moving, until the operation deadline.
    async fn call_leader(
        self: &Arc<Self>,
        request: LeaderRequest,
    ) -> Result<LeaderResponse, ClusterError> {
        let deadline = Instant::now() + self.op_timeout();
        let mut last_error = "no leader is known".to_string();
        let mut hint: Option<(NodeId, Member)> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClusterError::Unavailable(last_error));
            }
            let Some((leader, member)) = hint.take().or_else(|| self.known_leader()) else {
                let _ = self
                    .raft
                    .wait(Some(remaining))
                    .metrics(|m| m.current_leader.is_some(), "a leader")
                    .await;
                continue;
            };
            if leader == self.id {
                match self.handle_leader_request(request.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(LeaderError::Failed(e)) => return Err(e),
                    Err(LeaderError::NotLeader { leader }) => {
                        last_error = "leadership moved away from this node".to_string();
                        hint = leader.filter(|(id, _)| *id != self.id);
                    }
                }
            } else {
                let server_name = node_server_name(leader);
                let forwarded = Request::Leader(request.clone());
                let call =
                    self.peers
                        .call_checked(&member.raft_addr, &server_name, &forwarded, remaining);
                // Stop waiting on a leader this node no longer believes in (a
                // killed leader never answers; its connection looks open).
                let mut metrics = self.raft.metrics();
                let leader_moved = async move {
                    loop {
                        if metrics.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        if metrics.borrow().current_leader != Some(leader) {
                            return;
                        }
                    }
                };
                let call = tokio::select! {
                    call = call => call,
                    _ = leader_moved => Err(CallError::Stream {
                        addr: member.raft_addr.clone(),
                        message: format!("node {leader} stopped being the leader before it answered"),
                    }),
                };
                match call {
                    Ok(Response::Leader(Ok(response))) => return Ok(response),
                    Ok(Response::Leader(Err(LeaderError::Failed(e)))) => return Err(e),
                    Ok(Response::Leader(Err(LeaderError::NotLeader { leader: next }))) => {
                        last_error = format!("node {leader} is no longer the leader");
                        hint = next.filter(|(id, _)| *id != leader);
                    }
                    Ok(other) => return Err(internal(format!("node {leader} answered {other:?}"))),
                    Err(e @ (CallError::Timeout { .. } | CallError::Stream { .. }))
                        if matches!(request, LeaderRequest::Write(_)) =>
                    {
                        return Err(ClusterError::Timeout(format!(
                            "{e}; the write may or may not have been applied"
                        )));
                    }
                    Err(e) => last_error = format!("leader {leader} unreachable: {e}"),
                }
            }
            // Leadership is moving: give the election a moment before retrying.
            tokio::select! {
                _ = self.stop.cancelled() => return Err(ClusterError::Unavailable("node is shutting down".into())),
                _ = tokio::time::sleep(Duration::from_millis(50).min(remaining)) => {}
            }
        }
    }

    /// Serves a leader-only operation, or says who the leader is.
    pub(crate) async fn handle_leader_request(
        self: &Arc<Self>,
        request: LeaderRequest,
    ) -> Result<LeaderResponse, LeaderError> {
        match request {
            LeaderRequest::Write(command) => {
                let kind = command.kind();
                let proposal = Proposal {
                    at_ms: now_ms(),
                    command,
                };
                let response = self
                    .raft
                    .client_write(proposal)
                    .await
                    .map_err(write_error)?;
                let outcome = match response.data {
                    RaftResponse::Command(outcome) => outcome,
                    RaftResponse::Internal => {
                        return Err(LeaderError::Failed(internal(
                            "a command entry produced no result",
                        )))
                    }
                };
                tracing::debug!(
                    command = kind,
                    index = response.log_id.index,
                    ok = outcome.is_ok(),
                    "applied"
                );
                Ok(LeaderResponse::Written {
                    log_index: response.log_id.index,
                    outcome,
                })
            }
            LeaderRequest::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(LeaderResponse::ReadIndex {
                    log_index: read.map(|l| l.index),
                }),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(not_leader(f))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    Err(LeaderError::Failed(ClusterError::Unavailable(format!(
                        "leader cannot reach a quorum: {e}"
                    ))))
                }
                Err(e) => Err(LeaderError::Failed(internal(e))),
            },
            LeaderRequest::AddLearner { id, member } => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.voter_ids().any(|v| v == id) {
                    return Err(invalid(format!("node {id} is already a voter")));
                }
                if membership
                    .get_node(&id)
                    .is_some_and(|existing| existing == &member)
                {
                    return Ok(LeaderResponse::Membership { log_index: None });
                }
                let response = self
                    .raft
                    .add_learner(id, member, false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(node = id, "added learner");
                Ok(LeaderResponse::Membership {
                    log_index: Some(response.log_id.index),
                })
            }
            LeaderRequest::Promote { id } => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.voter_ids().any(|v| v == id) {
                    return Ok(LeaderResponse::Membership { log_index: None });
                }
                if membership.get_node(&id).is_none() {
                    return Err(invalid(format!(
                        "node {id} is not a member; add it as a learner first"
                    )));
                }
                self.wait_caught_up(id).await?;
                let response = self
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(node = id, "promoted to voter");
                Ok(LeaderResponse::Membership {
                    log_index: Some(response.log_id.index),
                })
            }
            LeaderRequest::Remove { id } => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.get_node(&id).is_none() {
                    return Err(invalid(format!("node {id} is not a member")));
                }
                let is_voter = membership.voter_ids().any(|v| v == id);
                if is_voter && membership.voter_ids().count() == 1 {
                    return Err(invalid(format!(
                        "node {id} is the last voter and cannot be removed"
                    )));
                }
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                let response = self
                    .raft
                    .change_membership(change, false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(node = id, "removed from the cluster");
                Ok(LeaderResponse::Membership {
                    log_index: Some(response.log_id.index),
                })
            }
            LeaderRequest::TransferLeader { to } => self.transfer_leader(to).await,
        }
    }

    /// Waits (briefly) until `id` has replicated everything the leader has.
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), LeaderError> {
        let deadline = self.op_timeout() / 2;
        let caught_up = |m: &openraft::RaftMetrics<NodeId, Member>| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            matched.is_some() && matched >= m.last_log_index
        };
        self.raft
            .wait(Some(deadline))
            .metrics(caught_up, "learner caught up")
            .await
            .map(|_| ())
            .map_err(|_| {
                let m = self.metrics();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index);
                invalid(format!(
                    "node {id} has not caught up with the leader (replicated {matched:?} of {:?}); \
                     is it running? try again",
                    m.last_log_index
                ))
            })
    }

    /// Hands leadership to `to`: stop heartbeats here, keep the other voters
    /// from campaigning, let `to` campaign once their leader leases expire.
    async fn transfer_leader(self: &Arc<Self>, to: NodeId) -> Result<LeaderResponse, LeaderError> {
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(LeaderError::NotLeader {
                leader: self.known_leader(),
            });
        }
        if to == self.id {
            return Ok(LeaderResponse::Membership { log_index: None });
        }
        let membership = m.membership_config.membership().clone();
        if !membership.voter_ids().any(|v| v == to) {
            return Err(invalid(format!("node {to} is not a voter")));
        }
        self.wait_caught_up(to).await?;
        let hold_ms = self.timing.election_timeout_max_ms * 4;
        let rpc_timeout = Duration::from_millis(self.timing.rpc_timeout_ms);
        for voter in membership.voter_ids().filter(|v| *v != self.id && *v != to) {
            if let Some(node) = membership.get_node(&voter) {
                let call = Request::HoldElections { for_ms: hold_ms };
                if let Err(e) = self
                    .peers
                    .call(
                        &node.raft_addr,
                        &node_server_name(voter),
                        &call,
                        rpc_timeout,
                    )
                    .await
                {
                    tracing::warn!(node = voter, error = %e, "could not pause elections for the transfer");
                }
            }
        }
        let runtime = self.raft.runtime_config();
        runtime.heartbeat(false);
        runtime.elect(false);
        let target = membership.get_node(&to).cloned().unwrap_or_default();
        let campaign = self
            .peers
            .call(
                &target.raft_addr,
                &node_server_name(to),
                &Request::Campaign,
                rpc_timeout,
            )
            .await;
        let outcome = match campaign {
            Err(e) => Err(LeaderError::Failed(ClusterError::Unavailable(format!(
                "node {to} did not take the campaign request: {e}"
            )))),
            Ok(_) => self
                .raft
                .wait(Some(Duration::from_millis(hold_ms)))
                .metrics(|m| m.current_leader == Some(to), "new leader")
                .await
                .map(|m| LeaderResponse::Membership {
                    log_index: m.last_log_index,
                })
                .map_err(|_| {
                    LeaderError::Failed(ClusterError::Timeout(format!(
                        "node {to} did not become leader within {hold_ms} ms"
                    )))
                }),
        };
        runtime.heartbeat(true);
        runtime.elect(true);
        if outcome.is_ok() {
            tracing::info!(to, "leadership transferred");
        }
        outcome
    }

    /// Keeps this node from starting elections for `for_ms`.
    pub(crate) fn hold_elections(self: &Arc<Self>, for_ms: u64) {
        let until = Instant::now() + Duration::from_millis(for_ms);
        *self
            .hold_elections_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(until);
        self.raft.runtime_config().elect(false);
        let inner = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = inner.stop.cancelled() => return,
                _ = tokio::time::sleep_until(until.into()) => {}
            }
            let mut hold = inner
                .hold_elections_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if hold.is_some_and(|u| u <= Instant::now()) {
                *hold = None;
                inner.raft.runtime_config().elect(true);
            }
        });
    }

    /// Campaigns until this node leads or the transfer window closes.
    pub(crate) fn campaign(self: &Arc<Self>) {
        let inner = self.clone();
        let window = Duration::from_millis(self.timing.election_timeout_max_ms * 4);
        let retry = Duration::from_millis((self.timing.election_timeout_min_ms / 2).max(50));
        self.tasks.spawn(async move {
            let deadline = Instant::now() + window;
            while Instant::now() < deadline && inner.raft.current_leader().await != Some(inner.id) {
                if let Err(e) = inner.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "cannot campaign");
                    return;
                }
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
    }

    /// Asks the cluster, through any seed, to add this node as a learner;
    /// retries until it is a member or the node stops.
    async fn join(self: Arc<Self>, seeds: Vec<String>) {
        let request = Request::Leader(LeaderRequest::AddLearner {
            id: self.id,
            member: self.advertise.clone(),
        });
        let timeout = Duration::from_millis(self.timing.rpc_timeout_ms * 5);
        while !self.stop.is_cancelled() && !self.is_member() {
            for seed in &seeds {
                let mut target = (seed.clone(), CLUSTER_SERVER_NAME.to_string());
                // One redirect: a seed that is not the leader names it.
                for _ in 0..2 {
                    match self
                        .peers
                        .call(&target.0, &target.1, &request, timeout)
                        .await
                    {
                        Ok(Response::Leader(Ok(_))) => {
                            tracing::info!(seed = %seed, "joined the cluster as a learner");
                            return;
                        }
                        Ok(Response::Leader(Err(LeaderError::NotLeader {
                            leader: Some((id, member)),
                        }))) => {
                            target = (member.raft_addr, node_server_name(id));
                        }
                        Ok(other) => {
                            tracing::warn!(seed = %seed, answer = ?other, "join refused");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(seed = %seed, error = %e, "join attempt failed");
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn status(&self) -> ClusterStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                role: if voters.contains(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                },
                addresses: node.clone(),
                matched_index: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index),
            })
            .collect();
        ClusterStatus {
            cluster_id: self.cluster_id.clone(),
            node_id: self.id,
            leader_id: m.current_leader,
            term: m.current_term,
            state: state_name(m.state).to_string(),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            log_entries: self.log.len() as u64,
            members,
        }
    }

    fn readiness(&self) -> Readiness {
        let m = self.metrics();
        let applied = self.published.applied_index();
        let commit = match (
            index_of(&self.committed_hint),
            index_of(&self.leader_commit_heard),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let lease_ms = self.timing.election_timeout_max_ms;
        let reason = if m.current_leader.is_none() {
            Some("no leader known".to_string())
        } else if m.state == ServerState::Leader
            && m.millis_since_quorum_ack.is_none_or(|ms| ms > lease_ms)
        {
            // A node restarted from a leader's vote believes it leads until a
            // peer says otherwise; it is ready once a quorum has confirmed it.
            Some("leadership not yet confirmed by a quorum".to_string())
        } else if !self.is_member() {
            Some("not a member of the cluster yet".to_string())
        } else if commit.is_none() {
            Some("has not heard a commit index yet".to_string())
        } else if applied < commit {
            Some(format!("applied {applied:?} of committed {commit:?}"))
        } else {
            None
        };
        Readiness {
            ready: reason.is_none(),
            leader_id: m.current_leader,
            applied_index: applied,
            leader_commit_index: commit,
            reason,
        }
    }
}

fn invalid(message: String) -> LeaderError {
    LeaderError::Failed(ClusterError::InvalidMembership(message))
}

fn not_leader(f: openraft::error::ForwardToLeader<NodeId, Member>) -> LeaderError {
    LeaderError::NotLeader {
        leader: f.leader_id.zip(f.leader_node),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> LeaderError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => invalid(e.to_string()),
        RaftError::Fatal(e) => LeaderError::Failed(internal(format!("raft stopped: {e}"))),
    }
}
