//! [`ClusterNode`]: one running Raft member and everything the rest of Sluice
//! asks of the cluster.

use crate::api::*;
use crate::datadir::DataDir;
use crate::log_store::LogStore;
use crate::network::{CallError, NetworkFactory, Peers};
use crate::rpc::{LeaderError, LeaderRequest, LeaderResponse, Request, Response};
use crate::state_machine::{Published, StateMachine};
use crate::tls::{node_server_name, CLUSTER_SERVER_NAME};
use crate::types::{NodeId, Raft};
use openraft::error::{InitializeError, RaftError};
use openraft::ServerState;
use sluice_core::{Applied, Command, State};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod elections;
mod leader;
mod metrics;
mod observe;
mod timing;

use elections::Elections;
pub use metrics::RaftCollector;
pub use timing::RaftTiming;

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
    /// When this node last heard its leader; when it may campaign.
    pub(crate) elections: Elections,
    /// Set on SIGTERM: not ready from then on, whatever Raft says.
    stopping: AtomicBool,
    /// Set while the process warms up (see [`ClusterNode::set_warming_up`]).
    warming_up: AtomicBool,
    /// Set once a call through the leader has succeeded (see
    /// [`Inner::reach_leader`]).
    leader_reached: AtomicBool,
    tasks: TaskTracker,
    stop: CancellationToken,
}

fn now_ms() -> u64 {
    crate::clock::wall_ms()
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
                // Another process took the store since the check above.
                if e.to_string().contains("could not acquire lock") {
                    dir_err(crate::datadir::IN_USE.to_string())
                } else {
                    dir_err(format!(
                        "the store could not be opened (it may be corrupt): {e}"
                    ))
                }
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

        let config = options
            .timing
            .openraft_config(&options.cluster_id)
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
            elections: Elections::new(Instant::now(), options.timing.detector_step()),
            stopping: AtomicBool::new(false),
            warming_up: AtomicBool::new(false),
            leader_reached: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        });
        inner.tasks.spawn(inner.clone().keep_watermark());
        inner.tasks.spawn(inner.clone().send_heartbeats());
        inner.tasks.spawn(inner.clone().watch_leader());
        inner.tasks.spawn(inner.clone().reach_leader());
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

    /// This node's Raft metrics (term, leader, indexes, log and store size,
    /// snapshot age, peer round trips), for a Prometheus registry.
    pub fn metrics_collector(&self) -> RaftCollector {
        RaftCollector::new(self.inner.clone())
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

    /// Asks node `id` at `raft_addr` whether it serves this node (a ping
    /// over the peer protocol): `Err` names why not, e.g. that this node's
    /// certificate names no current member. For diagnostics.
    pub async fn probe_peer(&self, raft_addr: &str, id: NodeId) -> Result<(), ClusterError> {
        let timeout = Duration::from_millis(self.inner.timing.rpc_timeout_ms);
        match self
            .inner
            .peers
            .call(raft_addr, &node_server_name(id), &Request::Ping, timeout)
            .await
        {
            Ok(Response::Ack) => Ok(()),
            Ok(other) => Err(internal(format!("unexpected answer to a ping: {other:?}"))),
            Err(e) => Err(ClusterError::Unavailable(e.to_string())),
        }
    }

    pub async fn status(&self) -> ClusterStatus {
        self.inner.status()
    }

    pub fn readiness(&self) -> Readiness {
        self.inner.readiness()
    }

    /// Marks the node as shutting down: `/readyz` says 503 from now on, so
    /// load balancers take it out while it still serves (and Raft runs on
    /// until [`ClusterNode::shutdown`]).
    pub fn begin_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    /// While `warming`, `/readyz` says 503 ("warming up"): the process has
    /// something to load before requests should come (the tokenizer).
    pub fn set_warming_up(&self, warming: bool) {
        self.inner.warming_up.store(warming, Ordering::Release);
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
    fn op_timeout(&self) -> Duration {
        Duration::from_millis(
            (self.timing.rpc_timeout_ms * 5).max(self.timing.election_timeout_max_ms * 4),
        )
    }

    fn metrics(&self) -> openraft::RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// The nodes a peer request may come from: the current voters and
    /// learners, and the leader this node follows even when the latest
    /// configuration has removed it (a leader that removes itself leads
    /// until that change commits). And whether this node is a member.
    pub(crate) fn member_ids(&self) -> (Vec<NodeId>, bool) {
        let m = self.metrics();
        let mut ids: Vec<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let member = ids.contains(&self.id);
        if let Some(leader) = m.current_leader.filter(|l| !ids.contains(l)) {
            ids.push(leader);
        }
        (ids, member)
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

    /// Calls the leader (a read index) until one call gets through, then
    /// marks the leader reached. Until then `/readyz` says 503: a node
    /// that has just started hears the leader's heartbeats, and so looks
    /// caught up, before its own calls to the leader get through (about a
    /// second was seen after a restart), and quota admission needs them.
    async fn reach_leader(self: Arc<Self>) {
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            match self.call_leader(LeaderRequest::ReadIndex).await {
                Ok(_) => {
                    self.leader_reached.store(true, Ordering::Release);
                    tracing::debug!("reached the leader");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "the leader is not reached yet"),
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
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
                // A leader cut off from its quorum still believes it leads
                // until its lease runs out, and openraft's write waits for a
                // commit that cannot come: bound it like a forwarded call.
                let Ok(handled) =
                    tokio::time::timeout(remaining, self.handle_leader_request(request.clone()))
                        .await
                else {
                    return Err(ClusterError::Timeout(format!(
                        "this node leads but could not commit within {} ms (no quorum?); the operation may still take effect",
                        self.op_timeout().as_millis()
                    )));
                };
                match handled {
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
                            "leader {leader} did not answer the write: {e}"
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
}
