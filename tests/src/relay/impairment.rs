//! Delay, jitter and loss on one node's link, as `tc netem` would add them
//! on its network interface: every datagram to or from the node is held for
//! `delay ± jitter` and dropped with probability `loss`.

use rand::Rng;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// What a link does to each datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay is drawn uniformly from `delay ± jitter`
    /// (never below zero), so datagrams may overtake each other.
    pub jitter: Duration,
    /// Probability of dropping a datagram, 0.0 to 1.0.
    pub loss: f64,
}

impl Impairment {
    /// The datagram's fate on this link: `None` if lost, else its delay.
    fn sample(&self, rng: &mut impl Rng) -> Option<Duration> {
        if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
            return None;
        }
        if self.jitter.is_zero() {
            return Some(self.delay);
        }
        let low = self.delay.saturating_sub(self.jitter);
        let high = self.delay + self.jitter;
        Some(rng.gen_range(low..=high))
    }
}

/// One node's [`Impairment`], readable by every relay thread without a lock.
#[derive(Debug, Default)]
pub(super) struct SharedImpairment {
    delay_us: AtomicU64,
    jitter_us: AtomicU64,
    /// Loss in parts per million.
    loss_ppm: AtomicU32,
}

impl SharedImpairment {
    pub(super) fn set(&self, impairment: Impairment) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.delay_us.store(us(impairment.delay), Ordering::Relaxed);
        self.jitter_us
            .store(us(impairment.jitter), Ordering::Relaxed);
        // Rounded to whole parts per million: 1e-6 is plenty for a test.
        let ppm = (impairment.loss.clamp(0.0, 1.0) * 1e6).round() as u32;
        self.loss_ppm.store(ppm, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> Impairment {
        Impairment {
            delay: Duration::from_micros(self.delay_us.load(Ordering::Relaxed)),
            jitter: Duration::from_micros(self.jitter_us.load(Ordering::Relaxed)),
            loss: f64::from(self.loss_ppm.load(Ordering::Relaxed)) / 1e6,
        }
    }
}

/// The fate of a datagram crossing the links of two nodes (either may be
/// unimpaired): lost if either link loses it, else delayed by both.
pub(super) fn fate(links: &[Impairment], rng: &mut impl Rng) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for link in links {
        total += link.sample(rng)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_jitter_and_loss_is_close_to_its_rate() {
        let link = Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            loss: 0.2,
        };
        let shared = SharedImpairment::default();
        shared.set(link);
        assert_eq!(shared.get(), link);
        let mut rng = rand::thread_rng();
        let mut lost = 0;
        for _ in 0..10_000 {
            match fate(&[shared.get()], &mut rng) {
                None => lost += 1,
                Some(d) => assert!(
                    (Duration::from_millis(40)..=Duration::from_millis(60)).contains(&d),
                    "{d:?}"
                ),
            }
        }
        assert!(
            (1_500..2_500).contains(&lost),
            "{lost} of 10000 lost at 20%"
        );
        let two = fate(&[link, Impairment { loss: 0.0, ..link }], &mut rng);
        assert!(two.is_none_or(|d| d >= Duration::from_millis(80)));
        assert_eq!(
            fate(&[Impairment::default()], &mut rng),
            Some(Duration::ZERO)
        );
    }
}
