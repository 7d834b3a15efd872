//! A circuit breaker per deployment (provider × upstream model), local to
//! the node: each node judges the upstreams it can reach.
//!
//! Closed: calls go through; `failures` consecutive failures open it.
//! Open: calls are refused (the router skips the deployment) until the
//! cooldown has passed. Half-open: exactly one probe call goes through; its
//! success closes the breaker, its failure opens it for another cooldown. A
//! probe that ends without a verdict (the client went away) lets the next
//! call probe instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// What a breaker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Phase {
    /// The `sluice_proxy_breaker_state` value.
    fn gauge(self) -> i64 {
        match self {
            Phase::Closed { .. } => 0,
            Phase::Open { .. } => 1,
            Phase::HalfOpen { .. } => 2,
        }
    }
}

/// One deployment's breaker.
pub struct Breaker {
    phase: Mutex<Phase>,
    failures: u32,
    cooldown: Duration,
    /// Where phase changes are published, with the deployment's labels.
    gauge: Option<(Metrics, String, String)>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

/// Leave to make one call; report how it went with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without either, it is no verdict.
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    resolved: bool,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl Breaker {
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self {
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            failures: failures.max(1),
            cooldown,
            gauge: None,
        }
    }

    /// A breaker that publishes its phase as `sluice_proxy_breaker_state`.
    fn published(
        failures: u32,
        cooldown: Duration,
        metrics: Metrics,
        provider: &str,
        model: &str,
    ) -> Self {
        metrics.breaker_state(provider, model, 0);
        Self {
            gauge: Some((metrics, provider.to_owned(), model.to_owned())),
            ..Self::new(failures, cooldown)
        }
    }

    fn notify(&self, phase: Phase) {
        if let Some((metrics, provider, model)) = &self.gauge {
            metrics.breaker_state(provider, model, phase.gauge());
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.lock()
    }

    /// Asks to make a call at `now`: `None` while open (or while another
    /// call probes a half-open breaker).
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut phase = self.lock();
        let probe = match *phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => return None,
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                *phase = Phase::HalfOpen { probing: true };
                true
            }
            Phase::HalfOpen { probing: true } => return None,
        };
        drop(phase);
        if probe {
            self.notify(Phase::HalfOpen { probing: true });
        }
        Some(Permit {
            breaker: Arc::clone(self),
            probe,
            resolved: false,
        })
    }

    /// How long until an open breaker lets a probe through.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match *self.lock() {
            Phase::Open { until } => Some(until.saturating_duration_since(now)),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The guarded value is a plain enum: a panic elsewhere cannot
        // leave it half-written.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Permit {
    /// The call succeeded: the upstream is healthy.
    pub fn success(mut self) {
        self.resolved = true;
        self.set(Phase::Closed { failures: 0 }, true);
    }

    /// The call failed at `now` in a way that counts against the upstream.
    pub fn failure(mut self, now: Instant) {
        self.resolved = true;
        let open = Phase::Open {
            until: now + self.breaker.cooldown,
        };
        let mut phase = self.breaker.lock();
        let next = match *phase {
            _ if self.probe => open,
            Phase::Closed { failures } if failures + 1 >= self.breaker.failures => open,
            Phase::Closed { failures } => Phase::Closed {
                failures: failures + 1,
            },
            // Opened by another call meanwhile: keep its cooldown.
            other => other,
        };
        let changed = next.gauge() != phase.gauge();
        *phase = next;
        drop(phase);
        if changed {
            self.notify(next);
        }
    }

    /// Whether this call is the probe of a half-open breaker.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    fn set(&self, next: Phase, only_from_closed_or_probe: bool) {
        let mut phase = self.breaker.lock();
        if only_from_closed_or_probe && !self.probe && !matches!(*phase, Phase::Closed { .. }) {
            // A late success of a call made before the breaker opened does
            // not close it: only the probe decides.
            return;
        }
        let changed = next.gauge() != phase.gauge();
        *phase = next;
        drop(phase);
        if changed {
            self.notify(next);
        }
    }

    fn notify(&self, phase: Phase) {
        self.breaker.notify(phase);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.resolved && self.probe {
            let mut phase = self.breaker.lock();
            if *phase == (Phase::HalfOpen { probing: true }) {
                *phase = Phase::HalfOpen { probing: false };
            }
        }
    }
}

/// Every deployment's breaker on this node.
pub struct Breakers {
    /// provider -> model -> breaker: looked up by `&str`, no allocation.
    map: RwLock<HashMap<String, HashMap<String, Arc<Breaker>>>>,
    failures: u32,
    cooldown: Duration,
    metrics: Metrics,
}

impl Breakers {
    pub fn new(failures: u32, cooldown: Duration, metrics: Metrics) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            failures,
            cooldown,
            metrics,
        }
    }

    /// The breaker of `model` on `provider`.
    pub fn get(&self, provider: &str, model: &str) -> Arc<Breaker> {
        if let Some(b) = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(provider)
            .and_then(|models| models.get(model))
        {
            return Arc::clone(b);
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let models = map.entry(provider.to_owned()).or_default();
        Arc::clone(models.entry(model.to_owned()).or_insert_with(|| {
            Arc::new(Breaker::published(
                self.failures,
                self.cooldown,
                self.metrics.clone(),
                provider,
                model,
            ))
        }))
    }

    /// A permit for one call to `model` on `provider`.
    pub fn acquire(&self, provider: &str, model: &str, now: Instant) -> Option<Permit> {
        self.get(provider, model).try_acquire(now)
    }

    /// The shortest wait until any of `deployments` lets a call through.
    pub fn soonest_retry(&self, deployments: &[(&str, &str)], now: Instant) -> Option<Duration> {
        deployments
            .iter()
            .filter_map(|(p, m)| self.get(p, m).retry_in(now))
            .min()
    }

    /// Every breaker's phase, for status pages.
    pub fn phases(&self) -> Vec<((String, String), Phase)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .flat_map(|(provider, models)| {
                models
                    .iter()
                    .map(move |(model, b)| ((provider.clone(), model.clone()), b.phase()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COOLDOWN: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_after_the_cooldown() {
        let b = Arc::new(Breaker::new(3, COOLDOWN));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.try_acquire(t0).unwrap().failure(t0);
        }
        assert_eq!(b.phase(), Phase::Closed { failures: 2 });
        b.try_acquire(t0).unwrap().failure(t0);
        assert!(matches!(b.phase(), Phase::Open { .. }));
        assert!(b.try_acquire(t0 + COOLDOWN / 2).is_none());
        let probe = b.try_acquire(t0 + COOLDOWN).unwrap();
        assert!(probe.is_probe());
        assert!(
            b.try_acquire(t0 + COOLDOWN).is_none(),
            "one probe at a time"
        );
        probe.success();
        assert_eq!(b.phase(), Phase::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_and_an_abandoned_one_frees_the_slot() {
        let b = Arc::new(Breaker::new(1, COOLDOWN));
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        let t1 = t0 + COOLDOWN;
        drop(b.try_acquire(t1).unwrap());
        let probe = b.try_acquire(t1).expect("abandoned probe frees the slot");
        probe.failure(t1);
        assert_eq!(
            b.phase(),
            Phase::Open {
                until: t1 + COOLDOWN
            }
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Arc::new(Breaker::new(2, COOLDOWN));
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().success();
        b.try_acquire(t0).unwrap().failure(t0);
        assert_eq!(b.phase(), Phase::Closed { failures: 1 });
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Succeed(usize),
        Fail(usize),
        Drop(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Acquire),
            2 => any::<usize>().prop_map(Op::Succeed),
            3 => any::<usize>().prop_map(Op::Fail),
            1 => any::<usize>().prop_map(Op::Drop),
            2 => (0u64..15_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever the calls do: an open breaker lets nothing through
        /// before its cooldown ends; a half-open one has at most one probe
        /// out; `failures` consecutive failures in a row always open it.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..200)) {
            let b = Arc::new(Breaker::new(3, COOLDOWN));
            let t0 = Instant::now();
            let mut now = t0;
            let mut held: Vec<Permit> = Vec::new();
            let mut consecutive = 0u32;
            for op in ops {
                match op {
                    Op::Acquire => {
                        let before = b.phase();
                        match b.try_acquire(now) {
                            Some(p) => {
                                if let Phase::Open { until } = before {
                                    prop_assert!(now >= until);
                                }
                                prop_assert!(before != Phase::HalfOpen { probing: true }, "probe while probing");
                                held.push(p);
                            }
                            None => prop_assert!(!matches!(before, Phase::Closed { .. }), "closed refused"),
                        }
                    }
                    Op::Succeed(i) if !held.is_empty() => {
                        let p = held.remove(i % held.len());
                        if p.is_probe() || matches!(b.phase(), Phase::Closed { .. }) {
                            consecutive = 0;
                        }
                        p.success();
                    }
                    Op::Fail(i) if !held.is_empty() => {
                        let p = held.remove(i % held.len());
                        let closed = matches!(b.phase(), Phase::Closed { .. });
                        if closed { consecutive += 1 } else { consecutive = 0 }
                        p.failure(now);
                        if closed && consecutive >= 3 {
                            prop_assert!(matches!(b.phase(), Phase::Open { .. }), "not opened");
                            consecutive = 0;
                        }
                    }
                    Op::Drop(i) if !held.is_empty() => {
                        drop(held.remove(i % held.len()));
                    }
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                    _ => {}
                }
                let probes = held.iter().filter(|p| p.is_probe()).count();
                prop_assert!(probes <= 1, "{probes} probes out");
            }
        }
    }
}
