//! Deadlines, and waiting for a condition by polling it.
//!
//! Tests synchronise only through conditions they can observe (an HTTP
//! status, a field of the cluster status, a process exit), each polled until
//! a deadline. A test makes one [`Deadline`] for its whole run, so no test
//! can outlive it, and caps each individual wait below it.

use std::fmt;
use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The latest instant something may finish by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    end: Instant,
}

/// A wait that ran out of time.
#[derive(Debug, Clone)]
pub struct TimedOut {
    pub what: String,
    pub waited: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:.1?} waiting for {}",
            self.waited, self.what
        )
    }
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + budget,
        }
    }

    /// The earlier of this deadline and `budget` from now.
    pub fn within(self, budget: Duration) -> Deadline {
        Deadline {
            end: self.end.min(Instant::now() + budget),
        }
    }

    pub fn remaining(self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    pub fn passed(self) -> bool {
        Instant::now() >= self.end
    }

    /// Polls `condition` until it holds or the deadline passes.
    pub fn poll(
        self,
        what: impl Into<String>,
        mut condition: impl FnMut() -> bool,
    ) -> Result<Duration, TimedOut> {
        let start = Instant::now();
        loop {
            if condition() {
                return Ok(start.elapsed());
            }
            if self.passed() {
                return Err(TimedOut {
                    what: what.into(),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(POLL_INTERVAL.min(self.remaining()));
        }
    }

    /// Polls `condition` until it holds; panics when the deadline passes.
    pub fn wait_until(self, what: impl Into<String>, condition: impl FnMut() -> bool) -> Duration {
        match self.poll(what, condition) {
            Ok(took) => took,
            Err(timed_out) => panic!("{timed_out}"),
        }
    }

    /// Polls `produce` until it returns `Some`; panics when the deadline passes.
    pub fn wait_for<T>(self, what: impl Into<String>, mut produce: impl FnMut() -> Option<T>) -> T {
        let mut found = None;
        self.wait_until(what, || {
            found = produce();
            found.is_some()
        });
        found.expect("set when the wait succeeded")
    }

    /// Checks `invariant` on every poll for `period` (capped by this
    /// deadline); returns the first poll where it failed.
    pub fn holds_for(
        self,
        period: Duration,
        mut invariant: impl FnMut() -> bool,
    ) -> Result<(), Duration> {
        let start = Instant::now();
        let end = self.within(period);
        loop {
            if !invariant() {
                return Err(start.elapsed());
            }
            if end.passed() {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL.min(end.remaining()));
        }
    }
}
