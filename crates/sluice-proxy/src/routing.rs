//! Which deployments a request tries, in which order, and how long it waits
//! between tries.
//!
//! A route's deployments are tried in a weighted random order (each
//! deployment first with probability weight / total, then the same among
//! the rest), cycling when the route allows more attempts than it has
//! deployments; then each fallback route the same way, in the order listed.
//! Only the route's own fallbacks are followed, not theirs, so a chain is
//! bounded and cannot loop.

use std::time::Duration;

use rand::Rng;
use sluice_core::{Route, State};

/// A weighted random permutation of `0..weights.len()`: index `i` comes
/// first with probability `weights[i] / sum` (Efraimidis–Spirakis: sort by
/// `u^(1/w)`, `u` uniform in (0, 1)). Zero weights go last.
pub fn weighted_order(weights: &[u32], rng: &mut impl Rng) -> Vec<usize> {
    if weights.len() == 1 {
        return vec![0];
    }
    let mut keyed: Vec<(f64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let key = if w == 0 {
                -1.0
            } else {
                u.powf(1.0 / f64::from(w))
            };
            (key, i)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Full-jitter exponential backoff before retry number `retry` (1-based):
/// uniform in `[0, min(max, base * 2^(retry-1))]`.
pub fn backoff(retry: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let cap = exp.min(max);
    if cap.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.gen_range(0..=cap.as_nanos() as u64))
}

/// `route`, then its fallbacks that exist, each once.
pub fn chain<'s>(state: &'s State, route: &'s Route) -> Vec<&'s Route> {
    let mut out = vec![route];
    for name in &route.fallbacks {
        if let Some(fallback) = state.route(name) {
            if !out.iter().any(|r| r.name == fallback.name) {
                out.push(fallback);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn weighted_order_is_a_permutation(
            weights in proptest::collection::vec(0u32..10_000, 1..64),
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut order = weighted_order(&weights, &mut rng);
            // Zero weights come after every positive one.
            let first_zero = order.iter().position(|&i| weights[i] == 0);
            if let Some(z) = first_zero {
                prop_assert!(order[z..].iter().all(|&i| weights[i] == 0));
            }
            order.sort_unstable();
            prop_assert_eq!(order, (0..weights.len()).collect::<Vec<_>>());
        }

        #[test]
        fn backoff_stays_under_its_cap(retry in 0u32..40, base_ms in 0u64..1000, max_ms in 0u64..5000, seed: u64) {
            let mut rng = StdRng::seed_from_u64(seed);
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(max_ms));
            let d = backoff(retry, base, max, &mut rng);
            prop_assert!(d <= max);
            prop_assert!(d <= base.saturating_mul(1 << retry.saturating_sub(1).min(16)));
        }
    }

    #[test]
    fn first_picks_follow_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let weights = [1, 3, 6];
        let mut firsts = [0u32; 3];
        let n = 20_000;
        for _ in 0..n {
            firsts[weighted_order(&weights, &mut rng)[0]] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            let share = f64::from(firsts[i]) / f64::from(n);
            let want = f64::from(w) / 10.0;
            assert!((share - want).abs() < 0.02, "index {i}: {share} vs {want}");
        }
    }
}
