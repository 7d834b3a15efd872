//! Phase 5, plan the attempts: which deployments a request tries, in which
//! order, and how long it waits before each.
//!
//! The route's deployments in weighted random order (`routing`), cycling
//! while the route allows more attempts (`[proxy] retries` + 1) than it has
//! deployments, then each fallback route the same way. A deployment whose
//! breaker is open is skipped; one whose provider cannot make a request
//! counts as an attempt without being sent. A Responses API follow-up
//! tries only the deployments of the provider that made the response it
//! follows. Every send after the first
//! waits a jittered backoff, and at least what the same deployment's last
//! answer asked for (`retry-after`, within `[proxy] backoff_max`). When
//! nothing is left, the last failure is the answer, or why nothing could be
//! tried.

use std::time::{Duration, Instant};

use sluice_core::{Deployment, Provider, Route, State};
use sluice_providers::ClientRequest;

use crate::breaker::{Breakers, Permit};
use crate::error::{ProxyError, DEFAULT_RETRY_AFTER};
use crate::{routing, ProxyConfig};

/// One deployment to try, with its breaker's leave.
pub(crate) struct Candidate<'s> {
    pub provider: &'s Provider,
    pub deployment: &'s Deployment,
    pub permit: Permit,
}

/// A request's attempts: where it stands in the chain of routes, and what
/// it has met so far.
pub(crate) struct Plan<'s> {
    state: &'s State,
    /// The route, then its fallbacks.
    routes: Vec<&'s Route>,
    /// The route being tried (an index into `routes`), in the order drawn
    /// for it when it was reached.
    current: Option<(usize, Vec<usize>)>,
    next_route: usize,
    slot: usize,
    /// Attempts made on the current route.
    tried: u32,
    attempts_per_route: u32,
    /// Sends so far, on every route: the first one does not wait.
    sent: u32,
    /// The deployment of the last send.
    previous: Option<(&'s str, &'s str)>,
    /// Deployments skipped for an open breaker.
    skipped_open: Vec<(&'s str, &'s str)>,
    /// Whether a deployment could not serve the endpoint.
    unsupported: bool,
    /// The only provider the request may go to (a Responses API follow-up
    /// goes where its first response was made), and whether a deployment
    /// was passed over for another provider.
    pinned: Option<&'s str>,
    passed_over: bool,
    /// The latest failure: the answer if nothing better comes.
    last: Option<ProxyError>,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl<'s> Plan<'s> {
    /// The attempts on `route` (then its fallbacks) in `state`.
    pub(crate) fn new(
        state: &'s State,
        route: &'s Route,
        config: &ProxyConfig,
        pinned: Option<&'s str>,
    ) -> Self {
        Self {
            state,
            routes: routing::chain(state, route),
            current: None,
            next_route: 0,
            slot: 0,
            tried: 0,
            attempts_per_route: config.retries.saturating_add(1),
            sent: 0,
            previous: None,
            skipped_open: Vec::new(),
            unsupported: false,
            pinned,
            passed_over: false,
            last: None,
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
        }
    }

    /// The next deployment to try and its breaker's permit, or `None` when
    /// every route has had its attempts.
    pub(crate) fn next(&mut self, breakers: &Breakers) -> Option<Candidate<'s>> {
        loop {
            let (index, order) = match &self.current {
                Some((index, order)) => (*index, order),
                None => {
                    let route = self.routes.get(self.next_route)?;
                    let weights: Vec<u32> = route.deployments.iter().map(|d| d.weight).collect();
                    let order = routing::weighted_order(&weights, &mut rand::thread_rng());
                    self.current = Some((self.next_route, order));
                    self.next_route += 1;
                    self.slot = 0;
                    self.tried = 0;
                    continue;
                }
            };
            let slots = order.len() * self.attempts_per_route as usize;
            if self.slot >= slots || self.tried >= self.attempts_per_route {
                self.current = None;
                continue;
            }
            let deployment = &self.routes[index].deployments[order[self.slot % order.len()]];
            self.slot += 1;
            let Some(provider) = self.state.provider(&deployment.provider) else {
                continue;
            };
            if self.pinned.is_some_and(|p| p != provider.name) {
                self.passed_over = true;
                continue;
            }
            let this = (provider.name.as_str(), deployment.model.as_str());
            let Some(permit) = breakers.acquire(this.0, this.1, Instant::now()) else {
                if !self.skipped_open.contains(&this) {
                    self.skipped_open.push(this);
                }
                continue;
            };
            return Some(Candidate {
                provider,
                deployment,
                permit,
            });
        }
    }

    /// The candidate's provider does not serve the request's endpoint: no
    /// attempt.
    pub(crate) fn unsupported(&mut self) {
        self.unsupported = true;
    }

    /// The candidate's provider cannot make a request (`error`): an attempt
    /// on the route, never sent.
    pub(crate) fn unusable(&mut self, error: ProxyError) {
        self.last = Some(error);
        self.tried += 1;
    }

    /// Counts a send to `candidate`, and says how long to wait before it:
    /// nothing before the first send of the request.
    pub(crate) fn send(&mut self, candidate: &Candidate<'s>) -> Option<Duration> {
        let this = (
            candidate.provider.name.as_str(),
            candidate.deployment.model.as_str(),
        );
        let wait = (self.sent > 0).then(|| {
            let wait = routing::backoff(
                self.sent,
                self.backoff_base,
                self.backoff_max,
                &mut rand::thread_rng(),
            );
            // The same deployment again: at least what its answer asked.
            let asked = self
                .last
                .as_ref()
                .and_then(ProxyError::upstream)
                .and_then(|answer| answer.retry_after())
                .filter(|asked| self.previous == Some(this) && *asked <= self.backoff_max);
            asked.map_or(wait, |asked| wait.max(asked))
        });
        self.sent += 1;
        self.tried += 1;
        self.previous = Some(this);
        wait
    }

    /// The send failed with `error`, which another attempt may mend.
    pub(crate) fn failed(&mut self, error: ProxyError) {
        self.last = Some(error);
    }

    /// Whether every deployment was passed over for not serving the
    /// endpoint: nothing was sent, failed or found broken.
    pub(crate) fn none_served_it(&self) -> bool {
        self.unsupported && self.last.is_none() && self.skipped_open.is_empty()
    }

    /// Nothing is left to try: the last failure, or why nothing could be
    /// tried (no deployment serves the endpoint, or every breaker is open).
    pub(crate) fn exhausted(self, breakers: &Breakers, request: &ClientRequest) -> ProxyError {
        match self.last {
            Some(error) => error,
            None if self.passed_over && self.skipped_open.is_empty() && !self.unsupported => {
                ProxyError::invalid_request(
                    format!(
                        "previous_response_id names a response made through provider `{}`, \
                         which the model `{}` does not use.",
                        self.pinned.unwrap_or_default(),
                        request.model
                    ),
                    Some("previous_response_id".into()),
                )
            }
            None if self.unsupported => {
                ProxyError::cannot_serve(&request.model, request.endpoint.as_str())
            }
            None => {
                let after = breakers
                    .soonest_retry(&self.skipped_open, Instant::now())
                    .unwrap_or(DEFAULT_RETRY_AFTER)
                    .max(Duration::from_millis(1));
                ProxyError::no_healthy_deployment(&request.model, after)
            }
        }
    }
}
