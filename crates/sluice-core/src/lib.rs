//! The replicated domain of Sluice: providers, routes, virtual keys and admin
//! tokens, the [`Command`]s that change them, and the deterministic
//! [`State::apply`] that every node runs on every committed command.
//!
//! This crate is Sluice's `quinn-proto`: it does no I/O, reads no clock, spawns
//! nothing and draws no randomness it was not handed. Time arrives stamped on
//! each [`Proposal`] by the Raft leader; random bytes (key secrets, AEAD nonces)
//! are arguments. That is what makes `apply` deterministic, and what lets the
//! same code run on every node and in property tests.
//!
//! # Layout
//! * [`backup`]: [`backup::ConfigSnapshot`], the configuration a backup
//!   carries, and the checksummed file it is written as.
//! * [`codec`]: the one place bytes are made: serde + bincode 2 behind a
//!   format-version byte. Everything stored or sent goes through it.
//! * [`secret`]: [`DataKey`] and [`SealedSecret`]: provider credentials are sealed
//!   (AEAD) before they are proposed, so the log and snapshots never hold them in
//!   clear; [`Redacted`] keeps secrets out of `Debug` output.
//! * [`provider`], [`route`], [`key`], [`admin_token`]: the entities, each with its
//!   own validation.
//! * [`command`]: [`Command`] and [`Proposal`], what goes into the Raft log.
//! * [`idempotency`]: idempotency keys: a write sent again under its key is
//!   applied once and answers its first result, within a bounded window.
//! * [`quota`]: the global quota [`quota::Ledger`]: token buckets per scope
//!   and unit, and the leases nodes take from them (DESIGN §5).
//! * [`usage`]: usage roll-ups per minute, key, route and provider, added
//!   up from each node's batches, and the queries over them.
//! * [`state`]: [`State`] and its `apply`.
//! * [`error`]: [`ApplyError`], why a command was refused.

pub mod admin_token;
pub mod audit;
pub mod backup;
pub mod codec;
pub mod command;
pub mod error;
pub mod idempotency;
pub mod key;
pub mod name;
mod persistent;
pub mod provider;
pub mod quota;
pub mod route;
pub mod secret;
pub mod state;
pub mod usage;

pub use admin_token::{AdminToken, Role};
pub use command::{Applied, Command, Proposal};
pub use error::ApplyError;
pub use key::{KeySubject, VirtualKey};
pub use provider::{Provider, ProviderKind, Timeouts};
pub use route::{Deployment, Pricing, Route};
pub use secret::{DataKey, Redacted, SealedSecret};
pub use state::State;
