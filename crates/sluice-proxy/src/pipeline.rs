//! A model call, as a pipeline of phases over one [`RequestCtx`] (the shape
//! of pingora's `ProxyHttp`): [`Worker::model_call`] reads top to bottom,
//! one file per phase.
//!
//! 1. [`authenticate`]: the virtual key, looked up by hash in this node's
//!    copy of the replicated state, so a revocation applied here is
//!    refused here at once; or a JWT of a trusted issuer, whose subject
//!    has a key of its own;
//! 2. [`parse`]: the body, read under a size limit and a slow-client
//!    deadline, parsed once;
//! 3. [`route`]: the route named by `model`, which the key may use;
//! 4. [`admit`]: the key's quotas, from this node's lease pools;
//! 5. [`plan`]: the route's deployments in weighted random order, skipping
//!    those whose breaker is open, then its fallbacks', with jittered
//!    backoff between sends;
//! 6. [`attempt`]: one call to one deployment, and the verdict on it: the
//!    answer, a failure another deployment may mend, or the request's end;
//! 7. [`relay`]: the answer in the client's API, a stream event by event;
//! 8. [`finish`]: the response, and the request's metrics, usage entry and
//!    quota charge settled together.
//!
//! # Finished exactly once
//! The context owns the three trackers until one settlement takes them
//! all: [`RequestCtx::respond`] for a whole answer or an error, the relayed
//! stream's body when the stream ends or is dropped, and `Drop` for a
//! request dropped before its answer started (its client went away while
//! it was being read, admitted or sent). Whatever ends first settles; what
//! comes after finds nothing left to settle.
//!
//! # Errors
//! Every phase fails with a [`ProxyError`], which says whose fault it is
//! and whether the client may retry; [`crate::error::respond`] alone turns
//! it into the client's answer.

pub(crate) mod admit;
pub(crate) mod attempt;
pub(crate) mod authenticate;
mod context;
pub(crate) mod finish;
pub(crate) mod parse;
pub(crate) mod plan;
pub(crate) mod relay;
pub(crate) mod route;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use sluice_providers::{Endpoint, TokenUsage};

pub(crate) use context::RequestCtx;

use self::attempt::Verdict;
use self::plan::Plan;
use self::relay::RelayBody;
use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::error::ProxyError;
use crate::worker::Worker;

/// A model call's answer, before it becomes a response.
pub(crate) enum Answer {
    /// A whole answer (200), with the usage the upstream reported.
    Whole {
        body: Bytes,
        usage: Option<TokenUsage>,
        /// For a token count: who counted (`upstream` or `estimate`), sent
        /// as `x-sluice-token-count`.
        counted_by: Option<&'static str>,
    },
    /// A stream whose first events are in.
    Stream(Box<RelayBody>),
}

impl Worker {
    /// One model call to `endpoint`: the phases, then the response.
    pub(crate) async fn model_call(
        self: &Arc<Self>,
        endpoint: Endpoint,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let mut ctx = RequestCtx::start(Arc::clone(self), endpoint, request.version());
        let answer = self.answer(&mut ctx, request).await;
        ctx.respond(answer)
    }

    async fn answer(
        &self,
        ctx: &mut RequestCtx,
        request: Request<Incoming>,
    ) -> Result<Answer, ProxyError> {
        let mut state = self.state.state();
        let headers = request.headers();
        let subject = authenticate::jwt_subject(self, &mut state, headers, now_ms())
            .await
            .map_err(ProxyError::body_unread)?;
        let key = authenticate::key(&state, headers, subject.as_deref(), now_ms())
            .map_err(ProxyError::body_unread)?;
        let request = parse::request(&self.config, ctx.endpoint(), request).await?;
        let route = route::resolve(&state, key, &request.model)?;
        ctx.identify(key, route);
        if let Some(quotas) = &self.quotas {
            admit::admit(self, quotas, ctx, &state, &key.id, route, &request).await?;
        }
        let mut plan = Plan::new(&state, route, &self.config, request.pinned_provider());
        while let Some(candidate) = plan.next(&self.breakers) {
            match attempt::attempt(self, ctx, &request, &mut plan, candidate).await {
                Verdict::Answered(answer) => return Ok(answer),
                Verdict::Failed(error) => return Err(error),
                Verdict::Next => {}
            }
        }
        if request.endpoint == Endpoint::CountTokens && plan.none_served_it() {
            // No deployment counts upstream (none is Anthropic's): counted
            // here, with the tokenizer quotas use.
            let input_tokens = crate::quota::prompt_tokens(request.body());
            let body = serde_json::json!({ "input_tokens": input_tokens }).to_string();
            return Ok(Answer::Whole {
                body: Bytes::from(body),
                usage: None,
                counted_by: Some("estimate"),
            });
        }
        Err(plan.exhausted(&self.breakers, &request))
    }
}
