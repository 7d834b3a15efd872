//! [`Silence`]: how long this node has gone without hearing its leader,
//! counted only while the node itself was running.
//!
//! A node that is not scheduled (an overloaded host, a paused VM, a stop of
//! the whole process) hears nothing, and neither does it process the
//! heartbeats waiting in its socket. Counted in wall time, such a stall
//! looks like a dead leader to every node it hits at once, and the first
//! ones to run again would start an election the leader did nothing to
//! deserve. So the clock advances in steps: each update adds the time since
//! the previous one, but never more than `cap`. A gap longer than that is
//! this node's own stall, not the leader's silence. The detector updates it
//! every few milliseconds, so while the node runs normally it is wall time.
//!
//! Pure: the caller passes the time in.

use std::time::{Duration, Instant};

/// Time without the leader, counted while this node ran.
#[derive(Debug, Clone)]
pub(crate) struct Silence {
    /// Most one update may add.
    cap: Duration,
    last_update: Instant,
    /// Since the leader was last heard (`None`: never heard).
    since_leader: Option<Duration>,
    /// Since the election timer last restarted.
    since_reset: Duration,
    /// Wall time left uncounted: this node's own stalls.
    stalled: Duration,
}

impl Silence {
    pub(crate) fn new(now: Instant, cap: Duration) -> Self {
        Silence {
            cap,
            last_update: now,
            since_leader: None,
            since_reset: Duration::ZERO,
            stalled: Duration::ZERO,
        }
    }

    fn counted(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_update)
            .min(self.cap)
    }

    fn advance(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_update);
        let counted = gap.min(self.cap);
        self.stalled += gap - counted;
        if let Some(since) = &mut self.since_leader {
            *since += counted;
        }
        self.since_reset += counted;
        self.last_update = self.last_update.max(now);
    }

    /// The leader was heard: silence and election timer start again.
    pub(crate) fn heard_leader(&mut self, now: Instant) {
        self.advance(now);
        self.since_leader = Some(Duration::ZERO);
        self.since_reset = Duration::ZERO;
    }

    /// The election timer starts again (a vote granted, an attempt made).
    pub(crate) fn reset_timer(&mut self, now: Instant) {
        self.advance(now);
        self.since_reset = Duration::ZERO;
    }

    /// A step of the detector's clock; returns the time counted since the
    /// election timer last restarted.
    pub(crate) fn tick(&mut self, now: Instant) -> Duration {
        self.advance(now);
        self.since_reset
    }

    /// Time counted since the leader was last heard, as of `now`.
    pub(crate) fn since_leader(&self, now: Instant) -> Option<Duration> {
        self.since_leader.map(|since| since + self.counted(now))
    }

    /// This node's own stalls, in all.
    pub(crate) fn stalled(&self) -> Duration {
        self.stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);
    const CAP: Duration = Duration::from_millis(20);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn while_the_node_runs_silence_is_wall_time() {
        let start = Instant::now();
        let mut silence = Silence::new(start, CAP);
        assert_eq!(silence.since_leader(start), None, "never heard");
        silence.heard_leader(start);
        let mut now = start;
        for _ in 0..30 {
            now += TICK;
            silence.tick(now);
        }
        assert_eq!(silence.since_leader(now), Some(ms(300)));
        assert_eq!(silence.tick(now), ms(300));
        assert_eq!(silence.since_leader(now + ms(5)), Some(ms(305)));
        assert_eq!(silence.stalled(), Duration::ZERO);
    }

    #[test]
    fn a_stall_of_this_node_is_not_the_leaders_silence() {
        let start = Instant::now();
        let mut silence = Silence::new(start, CAP);
        silence.heard_leader(start);
        silence.tick(start + TICK);
        // Not scheduled for 400 ms: one step of at most the cap.
        let after = start + TICK + ms(400);
        assert_eq!(silence.tick(after), TICK + CAP);
        assert_eq!(silence.since_leader(after), Some(TICK + CAP));
        assert_eq!(silence.stalled(), ms(380));
        // Asked right after the stall, before its first tick: the same.
        let mut fresh = Silence::new(start, CAP);
        fresh.heard_leader(start);
        assert_eq!(fresh.since_leader(start + ms(400)), Some(CAP));
    }

    #[test]
    fn hearing_the_leader_or_resetting_restarts_the_timer() {
        let start = Instant::now();
        let mut silence = Silence::new(start, CAP);
        silence.tick(start + TICK);
        silence.tick(start + TICK * 2);
        silence.reset_timer(start + TICK * 2);
        assert_eq!(silence.tick(start + TICK * 3), TICK);
        assert_eq!(silence.since_leader(start + TICK * 3), None);
        silence.heard_leader(start + TICK * 3);
        assert_eq!(silence.tick(start + TICK * 4), TICK);
        assert_eq!(silence.since_leader(start + TICK * 4), Some(TICK));
        // A late report still counts as hearing the leader now; the clock
        // itself never runs backwards.
        silence.heard_leader(start);
        assert_eq!(silence.since_leader(start + TICK * 4), Some(Duration::ZERO));
    }
}
