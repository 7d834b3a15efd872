//! Sluice's admin REST API: the operator's way into the replicated state.
//!
//! The crate owns the `/admin/v1/` HTTP surface (providers, routes, virtual
//! keys, admin tokens, usage and spend, cluster membership), admin authentication, the JSON
//! shapes operators see (which are deliberately not the stored shapes: hashes
//! never leave the cluster, provider credentials are write-only and sealed
//! under the data key before they are proposed), the admin error format, the
//! generated OpenAPI document, `/healthz` + `/readyz`, and the web dashboard
//! (static files that read this API).
//!
//! It never decides whether a change is valid on its own: handlers run the
//! core `validate()` methods so obviously bad input costs no log entry, but
//! `sluice_core::State::apply` on the leader is the final judge. It never
//! listens on a socket either: [`router`] returns an axum `Router` the binary
//! serves.
//!
//! # Layout
//! * [`context`]: [`AdminContext`], what every handler is given, and the
//!   read/write helpers that talk to the cluster.
//! * [`auth`]: bearer admin tokens (bootstrap hashes from config, or replicated).
//! * [`error`]: [`ApiError`] and the one place errors become responses.
//! * [`extract`]: JSON, path and query extractors that never leak axum's
//!   plain-text rejections.
//! * [`idempotency`]: the `Idempotency-Key` header: safe retries of writes.
//! * [`providers`], [`routes`], [`pricing`], [`keys`], [`tokens`]: the
//!   configuration resources and their API shapes.
//! * [`usage`], [`spend`]: usage reports over a time range (JSON or CSV)
//!   and a key's spend against its budget, from the replicated roll-ups.
//! * [`cluster`]: membership and leadership operations.
//! * [`backup`]: configuration backups, exported and restored.
//! * [`node`]: one node's own report (clock, certificate expiry) and the
//!   digest of the state it has applied.
//! * [`health`]: liveness and readiness.
//! * [`dashboard`]: the web dashboard's static files at `/dashboard`.
//! * [`openapi`]: the OpenAPI document and the router assembly.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod context;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod keys;
pub mod node;
pub mod openapi;
pub mod pricing;
pub mod providers;
pub mod quotas;
pub mod roles;
pub mod routes;
pub mod spend;
pub mod tokens;
pub mod usage;

pub use context::AdminContext;
pub use error::{ApiError, ErrorBody, ErrorKind};
pub use openapi::router;

#[cfg(test)]
mod tests;
