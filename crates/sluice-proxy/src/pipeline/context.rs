//! [`RequestCtx`]: one model call's bookkeeping, from its first byte to
//! its end: the metrics in-flight tracker, the usage meter's entry, the
//! quota charge, the timing, and where its limits stand for the rate-limit
//! headers. The phases record into it; [finishing](super::finish) it
//! settles all three trackers at once, exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Version;
use sluice_core::{Route, VirtualKey};
use sluice_providers::Endpoint;
use sluice_quota::Standings;
use tracing::Span;

use crate::metrics::InFlight;
use crate::quota::Charge;
use crate::usage::CallUsage;
use crate::worker::Worker;

/// One model call's context. Finished once: by
/// [`RequestCtx::finish`] (or [`RequestCtx::respond`]), or, when the
/// request is dropped before (its client went away), by `Drop`.
pub(crate) struct RequestCtx {
    /// The worker serving the request: where its bookkeeping goes. This
    /// worker's own handle, so holding it touches no memory another
    /// worker writes.
    pub(super) worker: Arc<Worker>,
    pub(super) endpoint: Endpoint,
    /// The client's HTTP version (the connection policy of errors).
    pub(super) version: Version,
    /// The trackers, until the one settlement takes them.
    pub(super) open: Option<Trackers>,
    /// Where the request's limits stand, for the rate-limit headers.
    pub(super) quota: QuotaView,
    /// The route a charge was taken on: a whole answer's standings are read
    /// again once its charge is settled.
    pub(super) charged_route: Option<String>,
}

/// What a request has to settle when it ends.
pub(super) struct Trackers {
    pub(super) metrics: InFlight,
    /// `None` when the proxy meters no usage.
    pub(super) usage: Option<CallUsage>,
    /// `None` until admitted under a quota.
    pub(super) charge: Option<Charge>,
}

/// Where a request's limits stand, and when that was read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuotaView {
    pub(crate) standings: Standings,
    /// When the standings were read (the Anthropic reset is an instant).
    pub(crate) at_ms: u64,
}

impl RequestCtx {
    /// A call to `endpoint` starting now on `worker`, inside the request's
    /// span.
    pub(crate) fn start(worker: Arc<Worker>, endpoint: Endpoint, version: Version) -> Self {
        let started = Instant::now();
        let metrics = worker.metrics.start(endpoint.as_str(), started);
        let usage = worker
            .usage_shard
            .as_ref()
            .map(|_| CallUsage::start(started));
        Self {
            worker,
            endpoint,
            version,
            open: Some(Trackers {
                metrics,
                usage,
                charge: None,
            }),
            quota: QuotaView::default(),
            charged_route: None,
        }
    }

    /// The endpoint called.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The call is `key`'s on `route`.
    pub(crate) fn identify(&mut self, key: &VirtualKey, route: &Route) {
        if let Some(open) = &mut self.open {
            open.metrics.set_route(route);
            if let Some(usage) = &mut open.usage {
                usage.identify(&key.id, &route.name, route.pricing);
            }
        }
    }

    /// Admitted on `route` with `charge`; the limits stood at `standings`
    /// at `at_ms`.
    pub(crate) fn admitted(
        &mut self,
        standings: Standings,
        at_ms: u64,
        charge: Charge,
        route: &str,
    ) {
        self.quota = QuotaView { standings, at_ms };
        self.charged_route = Some(route.to_owned());
        if let Some(open) = &mut self.open {
            open.charge = Some(charge);
        }
    }

    /// Refused by a quota; the limits stood at `standings` at `at_ms`.
    pub(crate) fn refused(&mut self, standings: Standings, at_ms: u64) {
        self.quota = QuotaView { standings, at_ms };
    }

    /// An attempt goes to `model` on `provider`.
    pub(crate) fn attempting(&mut self, provider: &str, model: &str) {
        if let Some(open) = &mut self.open {
            if let Some(usage) = &mut open.usage {
                usage.set_provider(provider);
            }
            open.metrics.set_deployment(provider, model);
        }
    }

    /// Time spent waiting on an upstream.
    pub(crate) fn add_upstream_wait(&mut self, wait: Duration) {
        if let Some(open) = &mut self.open {
            open.metrics.add_upstream_wait(wait);
        }
    }

    /// The answer's head goes out now with `status`.
    pub(crate) fn first_byte(&mut self, status: u16) {
        if let Some(open) = &mut self.open {
            open.metrics.first_byte(&self.worker.metrics, status);
        }
    }

    /// A stream's first event goes out now.
    pub(crate) fn first_token(&mut self) {
        if let Some(open) = &mut self.open {
            open.metrics.first_token(&self.worker.metrics);
        }
    }

    /// The request's span (until the request is finished).
    pub(crate) fn span(&self) -> Option<&Span> {
        self.open.as_ref().map(|open| open.metrics.span())
    }
}
