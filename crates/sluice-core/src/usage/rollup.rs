//! One roll-up: what one key did on one route through one provider in one
//! minute (or, once coarsened, one hour), and the totals that accumulate
//! there.

use serde::{Deserialize, Serialize};

/// A minute, in milliseconds since the Unix epoch.
pub const MINUTE_MS: u64 = 60_000;

/// An hour, in milliseconds.
pub const HOUR_MS: u64 = 60 * MINUTE_MS;

/// The start of the minute holding `at_ms`.
pub fn minute_of(at_ms: u64) -> u64 {
    at_ms - at_ms % MINUTE_MS
}

/// The start of the hour holding `at_ms`.
pub fn hour_of(at_ms: u64) -> u64 {
    at_ms - at_ms % HOUR_MS
}

/// Where a roll-up's totals belong. Ordered minute first, so a time range
/// is a range of the map that holds them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RollupKey {
    /// Start of the minute (a multiple of [`MINUTE_MS`]); in the replicated
    /// roll-ups, before [`super::Rollups::hourly_before_ms`], the start of
    /// the hour the totals cover.
    pub minute_ms: u64,
    pub key_id: String,
    pub route: String,
    /// The provider of the deployment that answered last; `""` when the
    /// request ended before any deployment was tried.
    pub provider: String,
}

/// What a set of model calls added up to. Every field saturates: a total
/// never wraps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// From the route's prices and the usage the upstream reported.
    pub cost_micro_usd: u64,
    /// Calls answered with an error status, or streams that failed.
    pub errors: u64,
    /// Sum of the calls' durations (request to end of answer).
    pub latency_ms_sum: u64,
}

impl Totals {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Totals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(other.cost_micro_usd);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(other.latency_ms_sum);
    }

    pub fn is_zero(&self) -> bool {
        *self == Totals::default()
    }
}

/// One entry of a [`super::UsageBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    pub key: RollupKey,
    pub totals: Totals,
}
