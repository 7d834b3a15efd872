//! The node side of Sluice's global quotas (DESIGN §5): what a node does
//! with the leases and standing reserves the replicated ledger
//! (`sluice_core::quota`) grants it, and how it keeps the ledger's count of
//! what it holds true.
//!
//! * [`Pool`]: the units one node may spend from one bucket: a lease (until
//!   it expires; its remainder goes back) and a standing reserve (no
//!   expiry; what a request takes when the lease is spent, after idle, in a
//!   burst, through an election). Admission is a compare-and-swap on one
//!   atomic, with no lock and nothing shared across buckets, so it costs
//!   tens of nanoseconds and never waits on the ledger. A pool never admits
//!   past what it was granted.
//! * [`admit`]: a request against several pools at once, all or nothing.
//! * [`want`]: how much a pool asks for at the next tick: its recent demand
//!   over a horizon, asked before it runs dry, never more than its share
//!   of what the ledger has left.
//!
//! LLM tokens are known only after the answer: admission reserves its
//! whole `max_tokens`, or (`reserve = "estimate"`) what the key's recent
//! answers used, within a bounded exposure; the answer's usage settles it
//! ([`Pool::settle`]): the difference is refunded, or charged as debt that
//! later admissions pay off.
//!
//! * [`Quotas`]: a node's pools and its lease round ([`Quotas::tick`]): one
//!   batched `GrantLeases` and one `ReturnLeases` per tick, through a
//!   [`LedgerClient`], whatever the request rate; only pools with something
//!   to do take part, so an idle key costs nothing. Each want reports what
//!   the pool holds (a sequence number keeps a delayed report from counting),
//!   and a return batch is sent again, unchanged, until acknowledged.
//! * [`Plan`]: every limit of one key (its own policy's and each key ×
//!   route's) with this node's pool for each. The plans of every key are
//!   made at once per version of the ledger's policy table
//!   ([`Quotas::plan`]); a request finds its key's plan with one lookup and
//!   allocates nothing.
//! * [`Quotas::admit`] ([`admission`]): one request against every limit of
//!   its plan on its route, in every unit it costs, giving a
//!   [`Reservation`] that the answer's usage settles, or a [`Denial`] that
//!   says why and when to retry. A request that a lease round can still
//!   admit waits for it (at most `max_wait_ms`), reading the ledger from
//!   this node's copy of the replicated state. Without the ledger (no
//!   quorum) a node spends what it holds, then follows the policy's
//!   `on_no_quorum`.
//!
//! # Layout
//! * `pool`: one bucket's units on this node.
//! * `admission`: one request against a plan.
//! * `node`: the node's pools, the lease round and its outbox of returns.
//! * `plan`: a key's limits with their pools.
//! * `completions`: a key's recent answer lengths (`reserve = "estimate"`).
//! * `bounds` (tests): both bounds, model-checked over generated traffic.

pub mod admission;
#[cfg(test)]
mod bounds;
mod completions;
mod node;
mod plan;
mod pool;
#[cfg(test)]
mod testing;

pub use admission::{
    Admission, Ask, Cost, Denial, Reason, Reservation, Scoped, Standing, Standings,
};
pub use node::{
    LedgerClient, LedgerView, QuotaConfig, Quotas, Reachability, Reply, Round, Unreachable,
};
pub use plan::{Plan, Planned};
pub use pool::{admit, want, Admitted, Pool, Refused, Source};
