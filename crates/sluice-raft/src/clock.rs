//! The time the leader stamps on every command: wall-clock time, but paced
//! by the monotonic clock.
//!
//! Everything in the replicated state that depends on time (quota refill,
//! budget periods, key expiry, idempotency windows) reads it from these
//! stamps. Stamping the raw wall clock let a step of the leader's clock
//! (an NTP step, an operator's `date -s`, a VM resumed) refill every quota
//! bucket at once: a jump of 90 s gave every key 90 s of refill in an
//! instant. So the stamps advance with the monotonic clock, and move
//! towards the wall clock only slowly: by at most [`SLEW_PER_MILLE`] of the
//! time that passed, from a credit capped at [`MAX_CREDIT_MS`]. A jump of
//! the wall clock therefore changes the stamps' pace by 0.1%, never their
//! value by the jump.
//!
//! The slew is small because quotas refill by these stamps: while the
//! stamps move towards a wall clock ahead of them, they run faster than
//! real time, and every bucket refills that much faster. Over any interval
//! T the stamps advance at most T · (1 + [`SLEW_PER_MILLE`]/1000) +
//! [`MAX_CREDIT_MS`]: the slack of the quota's "never more" bound.
//!
//! The pace needs a reference: the latest stamp this node made or applied,
//! and when. An applied command's stamp becomes the reference only when it
//! is within [`RECENT_MS`] of this node's wall clock (a command applied
//! live, not one replayed from the log at start). A node with no
//! reference yet (a whole cluster restarted after a long stop) trusts its
//! wall clock for its first stamp: that is how the stamps catch up with
//! the time the cluster was down. Stamps never go below the state's
//! latest one.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// This node's wall clock, in ms since the epoch: the one place the crate
/// reads it.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How far the stamps move towards the wall clock, per mille of the time
/// that passed.
pub const SLEW_PER_MILLE: u64 = 1;
/// The most the stamps may move towards the wall clock at once.
pub const MAX_CREDIT_MS: u64 = 100;
/// How close to this node's wall clock an applied stamp must be to become
/// the reference.
pub const RECENT_MS: u64 = 10_000;

/// The reference of the stamps' pace.
#[derive(Debug, Clone, Copy)]
struct Reference {
    stamp: u64,
    at: Instant,
    /// What the stamps may still move towards the wall clock, in µs.
    credit_us: u64,
}

/// The leader's stamp clock; also fed by the commands this node applies.
#[derive(Debug, Default)]
pub struct StampClock {
    reference: Mutex<Option<Reference>>,
}

impl StampClock {
    /// A command stamped `stamp` was applied here when the wall clock read
    /// `wall` (ms since the epoch) and the monotonic one `at`.
    ///
    /// The stamp was made before it was applied (by the commit's latency),
    /// so it only ever moves the reference forward: taking it as "the stamp
    /// as of `at`" would set the stamps back by that latency at every
    /// command, and under load they would fall seconds behind real time
    /// (slowing every quota's refill with them).
    pub fn observe(&self, stamp: u64, wall: u64, at: Instant) {
        if stamp.abs_diff(wall) > RECENT_MS {
            return;
        }
        let mut reference = self.lock();
        if let Some(r) = *reference {
            let paced = r.stamp.saturating_add(
                u64::try_from(at.saturating_duration_since(r.at).as_millis()).unwrap_or(u64::MAX),
            );
            if stamp <= paced {
                return;
            }
        }
        let credit_us = reference.map_or(0, |r| r.credit_us);
        *reference = Some(Reference {
            stamp,
            at,
            credit_us,
        });
    }

    /// The stamp of a command proposed now (`wall`, `at`), never below
    /// `floor` (the state's latest stamp).
    pub fn stamp(&self, floor: u64, wall: u64, at: Instant) -> u64 {
        let mut reference = self.lock();
        let (stamp, credit_us) = match *reference {
            None => (wall, 0),
            Some(r) => next(r, wall, at),
        };
        let stamp = stamp.max(floor);
        *reference = Some(Reference {
            stamp,
            at,
            credit_us,
        });
        stamp
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Reference>> {
        self.reference.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The stamp after `r` at `at`, steered towards `wall` by what the credit
/// allows; and the credit left.
fn next(r: Reference, wall: u64, at: Instant) -> (u64, u64) {
    let elapsed_us =
        u64::try_from(at.saturating_duration_since(r.at).as_micros()).unwrap_or(u64::MAX);
    let credit_us = r
        .credit_us
        .saturating_add(elapsed_us / 1_000 * SLEW_PER_MILLE)
        .min(MAX_CREDIT_MS * 1_000);
    // In µs: the paced stamp, and the wall clock.
    let steady = r.stamp.saturating_mul(1_000).saturating_add(elapsed_us);
    let wall = wall.saturating_mul(1_000);
    let (stamp, used) = if wall >= steady {
        let step = (wall - steady).min(credit_us);
        (steady + step, step)
    } else {
        // Slower, never backwards past the reference.
        let room = steady - r.stamp.saturating_mul(1_000);
        let step = (steady - wall).min(credit_us).min(room);
        (steady - step, step)
    };
    (stamp / 1_000, credit_us - used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: u64 = 1_800_000_000_000;

    /// Stamps every 100 ms for `secs`, with the wall clock off by
    /// `offset_ms`; the last stamp.
    fn run(clock: &StampClock, start: Instant, from_s: u64, secs: u64, offset_ms: i64) -> u64 {
        let mut last = 0;
        for tick in from_s * 10..(from_s + secs) * 10 {
            let at = start + Duration::from_millis(tick * 100);
            let wall = (T0 as i64 + (tick * 100) as i64 + offset_ms) as u64;
            last = clock.stamp(0, wall, at);
        }
        last
    }

    #[test]
    fn a_forward_jump_of_the_wall_clock_is_absorbed_slowly() {
        let clock = StampClock::default();
        let start = Instant::now();
        let before = run(&clock, start, 0, 10, 0);
        assert_eq!(before, T0 + 9_900, "a true clock is followed");
        // The wall clock jumps 90 s ahead; over the next 10 s the stamps
        // move at most the slew plus the credit (none used so far) beyond
        // real time.
        let after = run(&clock, start, 10, 10, 90_000);
        let real = T0 + 19_900;
        assert!(after >= real, "{after} < {real}");
        assert!(
            after <= real + MAX_CREDIT_MS + 10_000 * SLEW_PER_MILLE / 1_000 + 1,
            "stamps ran {} ms ahead of real time",
            after - real
        );
    }

    #[test]
    fn a_backward_jump_slows_the_stamps_never_reverses_them() {
        let clock = StampClock::default();
        let start = Instant::now();
        run(&clock, start, 0, 60, 0);
        let mut last = 0;
        for tick in 600..1_200 {
            let at = start + Duration::from_millis(tick * 100);
            let s = clock.stamp(0, T0 + tick * 100 - 90_000, at);
            assert!(s >= last, "stamps went backwards: {s} < {last}");
            last = s;
        }
        let real = T0 + 119_900;
        assert!(
            last <= real && last + MAX_CREDIT_MS + 1_000 >= real,
            "{last} vs {real}"
        );
    }

    #[test]
    fn stamps_applied_after_their_commit_latency_do_not_hold_the_clock_back() {
        // The leader stamps a command every 10 ms and applies it 8 ms later:
        // its stamps keep pace with real time, not lose 8 ms a command.
        let clock = StampClock::default();
        let start = Instant::now();
        let mut last = 0;
        for i in 0..1_000u64 {
            let at = start + Duration::from_millis(i * 10);
            last = clock.stamp(0, T0 + i * 10, at);
            clock.observe(last, T0 + i * 10 + 8, at + Duration::from_millis(8));
        }
        assert_eq!(last, T0 + 9_990);
        // A follower applying the same stamps 8 ms late paces from them,
        // never falls behind them.
        let follower = StampClock::default();
        for i in 0..1_000u64 {
            let at = start + Duration::from_millis(i * 10 + 8);
            follower.observe(T0 + i * 10, T0 + i * 10 + 8, at);
        }
        let s = follower.stamp(0, T0 + 10_000, start + Duration::from_millis(10_000));
        assert!((T0 + 9_990..=T0 + 10_000).contains(&s), "{s}");
    }

    #[test]
    fn a_node_without_a_reference_trusts_its_wall_clock_once_then_paces() {
        let clock = StampClock::default();
        let start = Instant::now();
        // A whole cluster restarted after an hour: the first stamp catches
        // up with the wall clock.
        assert_eq!(clock.stamp(T0 - 3_600_000, T0, start), T0);
        // A replayed old command is no reference; a live one is.
        clock.observe(T0 - 3_600_000, T0, start);
        assert_eq!(
            clock.stamp(0, T0 + 500, start + Duration::from_millis(500)),
            T0 + 500
        );
        clock.observe(T0 + 1_000, T0 + 600, start + Duration::from_millis(600));
        let s = clock.stamp(0, T0 + 600, start + Duration::from_millis(700));
        assert_eq!(
            s,
            T0 + 1_099,
            "paced from the applied stamp, slowed by its 0.6 ms of credit"
        );
        // Never below the state's latest stamp.
        assert_eq!(
            clock.stamp(T0 + 50_000, T0 + 800, start + Duration::from_millis(800)),
            T0 + 50_000
        );
    }
}
