//! The client side of the peer protocol: a connection cache over one QUIC
//! endpoint, and the `RaftNetwork` openraft calls to reach other nodes.
//!
//! One connection per peer address is kept and reused by every RPC; each RPC
//! opens its own stream, so a slow snapshot chunk never blocks a heartbeat. A
//! call that fails on its connection drops it and the next call dials again;
//! one that only timed out keeps it (see [`Peers::call`]). Every call has a
//! deadline. The round trip of every successful
//! `AppendEntries` and `Vote` call is observed into
//! `sluice_raft_peer_rtt_seconds`, per peer and RPC (`heartbeat` for an
//! `AppendEntries` that carries no entries).

use crate::api::Member;
use crate::rpc::{read_frame, write_frame, FrameError, Request, Response};
use crate::tls::node_server_name;
use crate::types::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot resolve {addr}: {message}")]
    Resolve { addr: String, message: String },
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("call to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("call to {addr} failed: {message}")]
    Stream { addr: String, message: String },
    #[error("{addr} refused the request: {message}")]
    Refused { addr: String, message: String },
}

/// Cached QUIC connections to peers.
pub struct Peers {
    endpoint: quinn::Endpoint,
    /// Longest wait for a new connection's handshake.
    connect_timeout: Duration,
    connections: Mutex<HashMap<(String, String), quinn::Connection>>,
    /// `sluice_raft_peer_rtt_seconds`, by peer id and RPC.
    rtt: prometheus::HistogramVec,
}

/// Round-trip buckets, in seconds: 100 µs .. 2.5 s.
const RTT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Peers {
    pub fn new(endpoint: quinn::Endpoint, connect_timeout: Duration) -> Self {
        let rtt = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "sluice_raft_peer_rtt_seconds",
                "Round trip of Raft RPCs to each peer over QUIC, by peer id and RPC (heartbeat, append_entries, vote).",
            )
            .buckets(RTT_BUCKETS.to_vec()),
            &["peer", "rpc"],
        )
        .expect("valid metric");
        Peers {
            endpoint,
            connect_timeout,
            connections: Mutex::new(HashMap::new()),
            rtt,
        }
    }

    /// The peer round-trip histograms (for the node's metrics collector).
    pub fn rtt(&self) -> &prometheus::HistogramVec {
        &self.rtt
    }

    async fn connection(
        &self,
        addr: &str,
        server_name: &str,
    ) -> Result<quinn::Connection, CallError> {
        let cache_key = (addr.to_string(), server_name.to_string());
        if let Some(conn) = self.lock().get(&cache_key) {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        let socket: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| CallError::Resolve {
                addr: addr.to_string(),
                message: e.to_string(),
            })?
            .next()
            .ok_or_else(|| CallError::Resolve {
                addr: addr.to_string(),
                message: "no address".to_string(),
            })?;
        let connecting =
            self.endpoint
                .connect(socket, server_name)
                .map_err(|e| CallError::Connect {
                    addr: addr.to_string(),
                    message: e.to_string(),
                })?;
        let conn = connecting.await.map_err(|e| CallError::Connect {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        self.lock().insert(cache_key, conn.clone());
        Ok(conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), quinn::Connection>> {
        // A poisoned cache is still a valid cache of connections.
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, addr: &str, server_name: &str) {
        self.lock()
            .remove(&(addr.to_string(), server_name.to_string()));
    }

    /// Like [`Peers::call`], for a request that must not be sent into a dead
    /// connection: a cached connection is first checked with a ping (one
    /// round trip), and replaced if the peer no longer serves it (say, it
    /// restarted). A forwarded write then reaches a live process or fails
    /// before it was sent.
    pub async fn call_checked(
        &self,
        addr: &str,
        server_name: &str,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let cached = self
            .lock()
            .get(&(addr.to_string(), server_name.to_string()))
            .is_some_and(|conn| conn.close_reason().is_none());
        if cached {
            let ping = self
                .call(
                    addr,
                    server_name,
                    &Request::Ping,
                    self.connect_timeout.min(timeout),
                )
                .await;
            if let Err(e) = ping {
                // The request goes on a new connection (or fails to make
                // one, before anything was sent).
                self.forget(addr, server_name);
                tracing::debug!(%addr, error = %e, "cached peer connection is dead; dialling again");
            }
        }
        self.call(addr, server_name, request, timeout).await
    }

    /// Sends `request` to the node at `addr` whose certificate must carry
    /// `server_name`, and waits at most `timeout` for its answer.
    ///
    /// The connection is made (or reused) first, within the connect timeout:
    /// a [`CallError::Connect`] or [`CallError::Resolve`] means the request
    /// was never sent, so it is always safe to retry. Any other error leaves
    /// open whether the peer acted on it.
    pub async fn call(
        &self,
        addr: &str,
        server_name: &str,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let connect = tokio::time::timeout(
            self.connect_timeout.min(timeout),
            self.connection(addr, server_name),
        );
        let conn = match connect.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(CallError::Connect {
                    addr: addr.to_string(),
                    message: "handshake timed out".to_string(),
                })
            }
        };
        let exchange = async {
            let stream_err = |message: String| CallError::Stream {
                addr: addr.to_string(),
                message,
            };
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| stream_err(e.to_string()))?;
            write_frame(&mut send, request)
                .await
                .map_err(|e| stream_err(e.to_string()))?;
            send.finish().map_err(|e| stream_err(e.to_string()))?;
            let response: Response = read_frame(&mut recv)
                .await
                .map_err(|e: FrameError| stream_err(e.to_string()))?;
            Ok(response)
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                addr: addr.to_string(),
                after: timeout,
            }),
        };
        match result {
            Ok(Response::Refused(message)) => Err(CallError::Refused {
                addr: addr.to_string(),
                message,
            }),
            Ok(response) => Ok(response),
            // A call that only timed out keeps its connection: the peer may
            // just be slow (a flush, a busy CPU), and a new TLS handshake on
            // a loaded host costs more than the call it replaces and can
            // itself time out, which used to leave a busy leader unable to
            // reach its followers at all. A peer that restarted on the same
            // address resets the old connection at its first packet
            // (stateless reset), and QUIC closes one to a dead peer at the
            // idle timeout.
            Err(e @ CallError::Timeout { .. }) => Err(e),
            Err(e) => {
                // The connection itself failed: dial again next time.
                self.forget(addr, server_name);
                Err(e)
            }
        }
    }
}

/// Hands openraft one [`PeerNetwork`] per target node.
#[derive(Clone)]
pub struct NetworkFactory {
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        let peer = target.to_string();
        let rtt = |rpc: &str| self.peers.rtt.with_label_values(&[peer.as_str(), rpc]);
        PeerNetwork {
            rtt_heartbeat: rtt("heartbeat"),
            rtt_append: rtt("append_entries"),
            rtt_vote: rtt("vote"),
            peers: self.peers.clone(),
            target,
            addr: node.raft_addr.clone(),
            server_name: node_server_name(target),
        }
    }
}

/// openraft's handle on one peer.
pub struct PeerNetwork {
    peers: Arc<Peers>,
    rtt_heartbeat: prometheus::Histogram,
    rtt_append: prometheus::Histogram,
    rtt_vote: prometheus::Histogram,
    target: NodeId,
    addr: String,
    server_name: String,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerNetwork {
    async fn call(&self, request: Request, option: &RPCOption) -> Result<Response, CallError> {
        self.peers
            .call(&self.addr, &self.server_name, &request, option.hard_ttl())
            .await
    }

    fn unexpected<E: std::error::Error>(
        &self,
        response: &Response,
    ) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
        let message = format!(
            "node {} answered with an unexpected message: {response:?}",
            self.target
        );
        RPCError::Network(NetworkError::new(&std::io::Error::other(message)))
    }
}

fn transport_error<E: std::error::Error>(
    e: CallError,
) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
    match e {
        CallError::Timeout { .. } | CallError::Stream { .. } => {
            RPCError::Network(NetworkError::new(&e))
        }
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

impl PeerNetwork {
    /// One openraft RPC: send `request`, take the matching answer out of the
    /// response with `pick` (which hands back anything else), and map both
    /// transport and remote failures into openraft's error.
    async fn rpc<T, E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
        pick: impl FnOnce(Response) -> Result<Result<T, RaftError<NodeId, E>>, Response>,
    ) -> RpcResult<T, E> {
        let response = self.call(request, option).await.map_err(transport_error)?;
        match pick(response) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(other) => Err(self.unexpected(&other)),
        }
    }
}

/// Runs `call`, observing its round trip into `rtt` when it succeeds.
async fn timed<T, E>(
    rtt: &prometheus::Histogram,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let sent = Instant::now();
    let answer = call.await;
    if answer.is_ok() {
        rtt.observe(sent.elapsed().as_secs_f64());
    }
    answer
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let rtt = if rpc.entries.is_empty() {
            &self.rtt_heartbeat
        } else {
            &self.rtt_append
        };
        let call = self.rpc(Request::AppendEntries(rpc), &option, |r| match r {
            Response::AppendEntries(answer) => Ok(answer),
            other => Err(other),
        });
        timed(rtt, call).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(Request::InstallSnapshot(rpc), &option, |r| match r {
            Response::InstallSnapshot(answer) => Ok(answer),
            other => Err(other),
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let call = self.rpc(Request::Vote(rpc), &option, |r| match r {
            Response::Vote(answer) => Ok(answer),
            other => Err(other),
        });
        timed(&self.rtt_vote, call).await
    }
}
