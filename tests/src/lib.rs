//! The real-process tier of Sluice's cluster tests: a harness that writes a
//! cluster with `sluice init`'s own code, starts one `sluice serve` child per
//! node on ports picked at run time, and lets a test kill -9, pause, stop and
//! restart them, or cut them off the network, while it talks to their admin APIs.
//!
//! It never links the node code into the test process: every node is the
//! `sluice` binary (from `SLUICE_BIN`, else `target/debug/sluice` next to the
//! test executable), so what is tested is what an operator runs. Every wait
//! is a poll of a condition against a deadline, never a bare sleep; a test
//! that times out prints each node's log tail.
//!
//! # Layout
//! * [`binary`]: finding the `sluice` executable.
//! * [`deadline`]: [`Deadline`] and polling with it.
//! * [`process`]: [`Process`], one child with its output in a log file.
//! * [`admin`]: [`Admin`], a blocking admin API client.
//! * [`cli`]: the `sluice` admin client run against a cluster's node.
//! * [`cluster`]: [`Cluster`] and its builder: plan, start, signal, observe.
//! * [`relay`]: [`Relay`], a UDP relay between the nodes' Raft sockets that
//!   can cut a node off (a partition) and heal it.
//! * [`files`]: hashing and copying directory trees (data dir checks).
//! * [`dataplane`]: [`DataPlane`]: a `sluice mock-llm` upstream, the standard
//!   providers, routes and keys, and a proxy client reading SSE streams.
//! * [`nemesis`]: the nemesis suite's harness: workload, faults, checker.
//! * [`balancer`]: [`Balancer`], a client-side round robin over a pool of
//!   proxies that changes under traffic (a node added, drained, removed).
//! * [`needs`]: [`needs::Suite`], for suites that need the SDK venv,
//!   Chromium or Prometheus: ignored (visibly) without them, failed under
//!   CI.
//!
//! The suites live in `tests/t*_*.rs`, numbered by topic (10 replication, 15
//! partitions through the relay, 20 failover, 30 durability, 40 membership,
//! 41 scale-out under load, 50 security, 60 data dir, 70 admin API, 80
//! `sluice dev` and the CLI, 85 the data plane, 90 the official OpenAI and
//! Anthropic SDKs against the proxy, 91 the runbook's disk, certificate,
//! token and upgrade procedures, 92 metrics and traces, 93 the nemesis suite
//! (faults under load, then a checker), 94 the web dashboard in headless
//! Chromium, 95 global quotas, 96 usage roll-ups, 97 `sluice cluster
//! doctor`, 98 the `deploy/` examples, 99 backup and restore).
//!
//! # Running
//! ```text
//! cargo build -p sluice && cargo test -p sluice-e2e
//! ```
//! `cargo test --workspace` builds the binary by itself. `SLUICE_BIN=path`
//! tests another build; `SLUICE_E2E_KEEP=1` keeps each test's directory
//! (configs, data dirs, node logs) and prints its path.

pub mod admin;
pub mod balancer;
pub mod binary;
pub mod cli;
pub mod cluster;
pub mod dataplane;
pub mod deadline;
pub mod files;
pub mod idp;
pub mod needs;
pub mod nemesis;
pub mod process;
pub mod relay;

pub use admin::Admin;
pub use balancer::Balancer;
pub use binary::sluice_bin;
pub use cluster::{Cluster, ClusterBuilder};
pub use dataplane::{DataPlane, ProxyClient};
pub use deadline::Deadline;
pub use process::Process;
pub use relay::Relay;
pub use serde_json::{json, Value};
