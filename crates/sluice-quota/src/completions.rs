//! How long a key's answers recently were: the estimate a request reserves
//! under `reserve = "estimate"` instead of its whole `max_tokens`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Answers remembered.
const WINDOW: usize = 64;
/// Answers needed before the estimate is trusted.
const MIN_SAMPLES: usize = 8;
/// The estimate is recomputed every this many answers.
const RECOMPUTE_EVERY: usize = 8;

/// The completion tokens of a key's last [`WINDOW`] answers on this node,
/// and their 95th percentile. Recorded and read without a lock.
#[derive(Debug)]
pub struct Completions {
    recent: [AtomicU32; WINDOW],
    recorded: AtomicUsize,
    /// The 95th percentile, `u64::MAX` until there are enough answers.
    p95: AtomicU64,
}

impl Default for Completions {
    fn default() -> Self {
        Self {
            recent: std::array::from_fn(|_| AtomicU32::new(0)),
            recorded: AtomicUsize::new(0),
            p95: AtomicU64::new(u64::MAX),
        }
    }
}

impl Completions {
    /// Records an answer's completion tokens.
    pub fn record(&self, tokens: u64) {
        let n = self.recorded.fetch_add(1, Ordering::AcqRel);
        let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
        self.recent[n % WINDOW].store(tokens, Ordering::Release);
        let seen = n + 1;
        if seen >= MIN_SAMPLES && seen % RECOMPUTE_EVERY == 0 {
            let mut sample: Vec<u32> = self.recent[..seen.min(WINDOW)]
                .iter()
                .map(|t| t.load(Ordering::Acquire))
                .collect();
            // The value with 95% of the sample at or below it.
            let rank = (sample.len() * 95).div_ceil(100) - 1;
            let (_, p95, _) = sample.select_nth_unstable(rank);
            self.p95.store(u64::from(*p95), Ordering::Release);
        }
    }

    /// The 95th percentile of the recent answers, `None` until there are
    /// enough of them.
    pub fn p95(&self) -> Option<u64> {
        match self.p95.load(Ordering::Acquire) {
            u64::MAX => None,
            p95 => Some(p95),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_95th_percentile_of_recent_answers() {
        let c = Completions::default();
        for t in 1..MIN_SAMPLES as u64 {
            c.record(t);
        }
        assert_eq!(c.p95(), None, "too few answers");
        c.record(8);
        assert_eq!(c.p95(), Some(8));
        // 96 answers of 10..=960: the window holds the last 64 (330..=960),
        // and the estimate is recomputed at this 104th answer.
        for t in 1..=96u64 {
            c.record(t * 10);
        }
        assert_eq!(c.p95(), Some(930), "the 61st of 64");
        // One huge answer moves it little.
        for _ in 0..8 {
            c.record(100);
        }
        assert!(c.p95().unwrap() <= 1_000);
    }
}
