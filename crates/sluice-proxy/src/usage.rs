//! The node's usage meter: every finished model call added up per minute,
//! key, route and provider, until the binary drains it into a replicated
//! batch (`sluice_core::Command::RecordUsage`).
//!
//! The meter is sharded: each worker thread of the proxy adds into a shard
//! of its own, so a request takes a lock no other request's thread takes
//! (only the flush, once per interval, visits every shard). A call that
//! ends records one entry; nothing is sent per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hashbrown::{Equivalent, HashMap};
use sluice_core::usage::{minute_of, Rollup, RollupKey, Totals};
use sluice_core::Pricing;
use sluice_providers::TokenUsage;

/// Roll-ups gathered on this node since the last drain.
pub struct UsageMeter {
    shards: Box<[Arc<UsageShard>]>,
    /// The shard the next worker gets.
    next_shard: AtomicUsize,
}

/// One worker's part of the meter: that worker's requests add their calls
/// into it, so the hot path touches no memory other threads write to.
#[derive(Default)]
pub struct UsageShard(Mutex<HashMap<RollupKey, Totals>>);

impl UsageShard {
    fn lock(&self) -> MutexGuard<'_, HashMap<RollupKey, Totals>> {
        // A panic while adding numbers leaves them consistent enough.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one call's totals under `key`: its names are copied only the
    /// first time the series appears in this shard.
    fn add(&self, key: SeriesRef<'_>, totals: &Totals) {
        let mut shard = self.lock();
        match shard.get_mut(&key) {
            Some(sum) => sum.add(totals),
            None => {
                shard.insert(key.to_owned(), *totals);
            }
        }
    }
}

/// A [`RollupKey`] borrowed from a finishing call. Its fields and their
/// order are `RollupKey`'s, so the derived hashes agree.
#[derive(Hash)]
struct SeriesRef<'a> {
    minute_ms: u64,
    key_id: &'a str,
    route: &'a str,
    provider: &'a str,
}

impl SeriesRef<'_> {
    fn to_owned(&self) -> RollupKey {
        RollupKey {
            minute_ms: self.minute_ms,
            key_id: self.key_id.to_owned(),
            route: self.route.to_owned(),
            provider: self.provider.to_owned(),
        }
    }
}

impl Equivalent<RollupKey> for SeriesRef<'_> {
    fn equivalent(&self, key: &RollupKey) -> bool {
        self.minute_ms == key.minute_ms
            && self.key_id == key.key_id
            && self.route == key.route
            && self.provider == key.provider
    }
}

impl UsageMeter {
    /// A meter with `shards` shards (one per worker thread serves best).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Arc::default()).collect(),
            next_shard: AtomicUsize::new(0),
        }
    }

    /// A shard for a new worker (round robin).
    pub fn claim_shard(&self) -> Arc<UsageShard> {
        let i = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        Arc::clone(&self.shards[i])
    }

    /// Takes everything gathered so far, merged across shards, in key
    /// order.
    pub fn drain(&self) -> Vec<Rollup> {
        let mut merged: BTreeMap<RollupKey, Totals> = BTreeMap::new();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock());
            for (key, totals) in taken {
                merged.entry(key).or_default().add(&totals);
            }
        }
        merged
            .into_iter()
            .map(|(key, totals)| Rollup { key, totals })
            .collect()
    }
}

/// One model call being metered, added into a shard when its request
/// context finishes it. Only a call whose key and route became known
/// ([`CallUsage::identify`]) is recorded: a request refused before that (no
/// key, unknown model) belongs to nobody's usage.
pub struct CallUsage {
    key_id: String,
    route: String,
    /// The provider of the latest deployment tried.
    provider: String,
    pricing: Pricing,
    started: Instant,
    identified: bool,
}

impl CallUsage {
    /// A call that started at `started`.
    pub fn start(started: Instant) -> Self {
        Self {
            key_id: String::new(),
            route: String::new(),
            provider: String::new(),
            pricing: Pricing::default(),
            started,
            identified: false,
        }
    }

    /// The call is `key_id`'s on `route`, priced by `pricing`.
    pub fn identify(&mut self, key_id: &str, route: &str, pricing: Pricing) {
        key_id.clone_into(&mut self.key_id);
        route.clone_into(&mut self.route);
        self.pricing = pricing;
        self.identified = true;
    }

    /// The call is being tried on a deployment of `provider`.
    pub fn set_provider(&mut self, provider: &str) {
        if self.provider != provider {
            provider.clone_into(&mut self.provider);
        }
    }

    /// The call ended at `now_ms`, `failed` or not, with the usage the
    /// upstream reported (if any): added into `shard`.
    pub fn finish(self, shard: &UsageShard, failed: bool, usage: Option<TokenUsage>, now_ms: u64) {
        if !self.identified {
            return;
        }
        let usage = usage.unwrap_or_default();
        let totals = Totals {
            requests: 1,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost_micro_usd: self
                .pricing
                .cost_micro_usd(usage.prompt_tokens, usage.completion_tokens),
            errors: u64::from(failed),
            latency_ms_sum: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let key = SeriesRef {
            minute_ms: minute_of(now_ms),
            key_id: &self.key_id,
            route: &self.route,
            provider: &self.provider,
        };
        shard.add(key, &totals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn call(key: &str) -> CallUsage {
        let pricing = Pricing {
            prompt_micro_usd_per_mtok: 1_000_000,
            completion_micro_usd_per_mtok: 2_000_000,
        };
        let mut call = CallUsage::start(Instant::now());
        call.identify(key, "gpt", pricing);
        call
    }

    #[test]
    fn calls_add_up_per_key_across_shards_and_drain_empties() {
        let meter = UsageMeter::new(2);
        let (a, b) = (meter.claim_shard(), meter.claim_shard());
        assert!(!Arc::ptr_eq(&a, &b));
        for shard in [&a, &b, &a] {
            let mut c = call("k1");
            c.set_provider("openai");
            c.finish(
                shard,
                false,
                Some(TokenUsage {
                    prompt_tokens: 3,
                    completion_tokens: 5,
                }),
                NOW_MS,
            );
        }
        let mut failed = call("k2");
        failed.set_provider("openai");
        failed.finish(&b, true, None, NOW_MS);
        let rollups = meter.drain();
        let k1: Vec<_> = rollups.iter().filter(|r| r.key.key_id == "k1").collect();
        assert_eq!(k1.len(), 1, "one minute, one series");
        assert_eq!(k1[0].totals.requests, 3);
        assert_eq!(k1[0].totals.prompt_tokens, 9);
        // 3 · 1 + 5 · 2 micro-USD, three times.
        assert_eq!(k1[0].totals.cost_micro_usd, 39);
        let k2: Vec<_> = rollups.iter().filter(|r| r.key.key_id == "k2").collect();
        assert_eq!(k2[0].totals.errors, 1);
        assert_eq!(k2[0].key.provider, "openai");
        assert!(meter.drain().is_empty());
    }

    #[test]
    fn a_borrowed_series_hashes_and_compares_as_its_key() {
        use std::hash::BuildHasher;
        let hasher = hashbrown::DefaultHashBuilder::default();
        let series = SeriesRef {
            minute_ms: 60_000,
            key_id: "key_1",
            route: "gpt",
            provider: "openai",
        };
        let key = series.to_owned();
        assert_eq!(hasher.hash_one(&series), hasher.hash_one(&key));
        assert!(series.equivalent(&key));
        // Names that only concatenate alike are other series.
        let shifted = SeriesRef {
            key_id: "key_1g",
            route: "pt",
            ..series
        };
        assert!(!shifted.equivalent(&key));
        assert_ne!(hasher.hash_one(&shifted), hasher.hash_one(&key));
    }

    #[test]
    fn only_identified_calls_are_recorded() {
        let meter = UsageMeter::new(1);
        let shard = meter.claim_shard();
        // Ended before any deployment was tried: no provider.
        call("k").finish(&shard, true, None, NOW_MS);
        let rollups = meter.drain();
        assert_eq!(rollups.len(), 1);
        assert_eq!(rollups[0].totals.requests, 1);
        assert_eq!(rollups[0].totals.errors, 1);
        assert_eq!(rollups[0].key.provider, "");
        // A request refused before its key and route were known.
        CallUsage::start(Instant::now()).finish(&shard, true, None, NOW_MS);
        assert!(meter.drain().is_empty());
    }
}
