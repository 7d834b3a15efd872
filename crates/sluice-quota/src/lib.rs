//! The node side of Sluice's global quotas (DESIGN §5): what a node does
//! with the leases the replicated ledger (`sluice_core::quota`) grants it.
//!
//! * [`Pool`]: the units one node may spend from one bucket. Admission is a
//!   compare-and-swap on one atomic, with no lock and nothing shared across
//!   buckets, so it costs tens of nanoseconds and never waits on the
//!   ledger. A pool never admits past what it was granted; past its lease's
//!   expiry it admits nothing, and its remainder goes back to the ledger.
//! * [`admit`]: a request against several pools at once (requests, tokens,
//!   the key's and the key × route's), all or nothing.
//! * [`want`]: how much a pool asks for at the next tick, from its recent
//!   demand: enough for a few ticks, asked before it runs dry.
//!
//! LLM tokens are known only after the answer: admission reserves an
//! estimate, and the answer's usage settles it ([`Pool::settle`]): the
//! difference is refunded, or charged as debt that later admissions pay off.
//!
//! * [`Quotas`]: a node's pools and its lease round ([`Quotas::tick`]): one
//!   batched `GrantLeases` and one `ReturnLeases` per tick, through a
//!   [`LedgerClient`], whatever the request rate.
//!
//! * [`Plan`]: every limit of one key (its own policy's and each key ×
//!   route's) with this node's pool for each. The plans of every key are
//!   made at once per version of the ledger's policy table
//!   ([`Quotas::plan`]); a request finds its key's plan with one lookup and
//!   allocates nothing.
//! * [`Quotas::admit`] ([`admission`]): one request against every limit of
//!   its plan on its route, in every unit it costs, giving a
//!   [`Reservation`] that the answer's usage settles, or a [`Denial`] that
//!   says why and when to retry. Without the ledger (no quorum) a node
//!   spends what it holds, then follows the policy's `on_no_quorum`.

pub mod admission;
mod node;
mod plan;
mod pool;
#[cfg(test)]
mod testing;

pub use admission::{Admission, Cost, Denial, Reason, Reservation, Scoped, Standing, Standings};
pub use node::{LedgerClient, QuotaConfig, Quotas, Reachability, Reply, Round, Unreachable};
pub use plan::{Plan, Planned};
pub use pool::{admit, want, Admitted, Pool, Refused};
