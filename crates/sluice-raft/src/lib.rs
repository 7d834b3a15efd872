//! Sluice's consensus layer: openraft over QUIC, with the log, vote, state
//! machine and snapshots in sled.
//!
//! The crate owns everything between "an admin handler wants this command
//! applied" and "every node has applied it": the Raft type configuration, the
//! sled stores (a log write is flushed before openraft hears it is durable), the
//! QUIC transport with mutual TLS, forwarding writes and linearizable reads to
//! the leader, and membership changes. It never interprets a command: that is
//! `sluice_core::State::apply`.
//!
//! # Layout
//! * [`node`]: [`ClusterNode`], the one handle the rest of Sluice uses;
//!   `node/leader.rs` is what runs on the leader (writes, read index,
//!   membership, leadership transfer), `node/elections.rs` when a node
//!   sends heartbeats and when it campaigns (the failure detector and its
//!   pre-vote, openraft's own election timer being off), `node/timing.rs`
//!   [`RaftTiming`] and the openraft settings derived from it,
//!   `node/observe.rs` status, readiness and the durability watermark,
//!   `node/metrics.rs` the Prometheus collector of the node's Raft figures.
//! * [`api`]: the plain types that handle speaks in (status, members, errors).
//! * `types`: the openraft type configuration.
//! * `log_store`, `state_machine`: the sled log store and the state machine
//!   with its snapshots.
//! * `datadir`: refusing foreign or corrupt data dirs before touching them.
//! * `clock`: the time the leader stamps on commands: the wall clock, paced
//!   by the monotonic one, so a step of a node's clock never steps the
//!   replicated state's time.
//! * `tls`, `transport`, `network`, `server`: QUIC with mutual TLS, the RPC
//!   framing, the client side openraft calls and the server side peers call.

// openraft's trait methods return its `StorageError` (over 200 bytes) by value;
// our helpers return the same type rather than box and unbox it at every call.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod clock;
mod datadir;
mod log_store;
mod network;
pub mod node;
mod rpc;
mod server;
mod state_machine;
#[cfg(test)]
mod storage_suite;
pub mod tls;
mod types;

pub use api::{
    ClusterError, ClusterStatus, Consistency, Member, MemberRole, MemberStatus, Readiness,
};
pub use node::{Bootstrap, ClusterNode, NodeOptions, RaftCollector, RaftTiming, StartError};
pub use types::NodeId;
