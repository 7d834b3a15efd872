//! What a client connection may cost before it is closed: the deadline for
//! its first request (covering the TLS handshake and the HTTP/1-vs-HTTP/2
//! sniff, which read before hyper's own timers start), the idle time between
//! requests, and the cap on open connections per listener.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::ListenerGauges;

/// A listener's connection limits (`[proxy]`/`[limits]` and `[admin]` in the
/// node config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The first request's head must have reached the service within this
    /// of accept (TLS handshake and protocol sniff included).
    pub first_request_timeout: Duration,
    /// HTTP/1: a request head must arrive within this once the server waits
    /// for one (hyper's timer; it also bounds the wait between requests).
    pub header_read_timeout: Duration,
    /// No request in flight for this long: the connection is closed (HTTP/1
    /// keep-alive and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request head.
    pub max_headers: usize,
    /// Most open connections; more are closed at accept.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            first_request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 10_000,
        }
    }
}

/// The cap on a listener's open connections, shared by its workers.
#[derive(Clone)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    gauges: ListenerGauges,
}

/// One admitted connection: its permit and its place in the open gauge,
/// both given back on drop.
pub(crate) struct Admitted {
    _permit: OwnedSemaphorePermit,
    open: prometheus::IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Admission {
    pub(crate) fn new(max_connections: usize, gauges: ListenerGauges) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            gauges,
        }
    }

    /// A place for a new connection, or `None` (counted) when full.
    pub(crate) fn admit(&self) -> Option<Admitted> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => {
                self.gauges.open.inc();
                Some(Admitted {
                    _permit: permit,
                    open: self.gauges.open.clone(),
                })
            }
            Err(_) => {
                self.gauges.refused.inc();
                None
            }
        }
    }
}

/// What one connection has done: whether a request reached the service,
/// how many are in flight, and since when it has been idle.
pub(crate) struct Activity {
    accepted: Instant,
    served: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` when the last request ended.
    idle_since_ms: AtomicU64,
}

/// A request in flight on its connection, until its answer's body is done.
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let since = self.0.accepted.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(since, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    NoFirstRequest,
    Idle,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            served: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    /// A request reached the service.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        Busy(Arc::clone(self))
    }

    /// When the connection is to be closed if nothing changes, or `None`
    /// while a request is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Closed)> {
        if !self.served.load(Ordering::Acquire) {
            return Some((
                self.accepted + limits.first_request_timeout,
                Closed::NoFirstRequest,
            ));
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some((
            self.accepted + idle_since + limits.idle_timeout,
            Closed::Idle,
        ))
    }

    /// Completes when the connection is to be closed: no first request by
    /// its deadline, or idle for `idle_timeout`.
    pub(crate) async fn watchdog(&self, limits: &ConnectionLimits) -> Closed {
        loop {
            match self.deadline(limits) {
                Some((deadline, why)) if deadline <= Instant::now() => return why,
                Some((deadline, _)) => tokio::time::sleep_until(deadline).await,
                // Busy: look again after an idle period at the latest.
                None => tokio::time::sleep(limits.idle_timeout).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            first_request_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_first_request_deadline() {
        let activity = Activity::new();
        let started = Instant::now();
        assert_eq!(activity.watchdog(&limits()).await, Closed::NoFirstRequest);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_stays_and_is_closed_when_idle() {
        let activity = Activity::new();
        let busy = activity.begin();
        let watched = Arc::clone(&activity);
        let started = Instant::now();
        let watchdog = tokio::spawn(async move { watched.watchdog(&limits()).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !watchdog.is_finished(),
            "closed while a request was in flight"
        );
        drop(busy);
        assert_eq!(watchdog.await.ok(), Some(Closed::Idle));
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(5_300) && elapsed <= Duration::from_millis(5_700),
            "closed after {elapsed:?}"
        );
    }

    #[test]
    fn admission_refuses_over_the_cap_and_counts() {
        let gauges = crate::Metrics::default().listener("test");
        let admission = Admission::new(2, gauges.clone());
        let a = admission.admit();
        let b = admission.admit();
        assert!(a.is_some() && b.is_some());
        assert!(admission.admit().is_none());
        assert_eq!(gauges.refused.get(), 1);
        assert_eq!(gauges.open.get(), 2);
        drop(a);
        assert_eq!(gauges.open.get(), 1);
        assert!(admission.admit().is_some());
    }
}
