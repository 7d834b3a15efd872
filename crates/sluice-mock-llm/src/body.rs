//! Response bodies paced by the request's [`Plan`]: the first-byte delay,
//! the pace between stream events, and the deliberate drop that aborts the
//! body so the client sees a truncated response, never a clean end.

use std::io;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::behavior::Plan;
use crate::call::Call;
use crate::stats::{Ending, InFlight};

/// A complete JSON response. With a first-byte delay or a drop it is sent
/// as a paced body that still announces its full `content-length`, so a
/// drop (after half the bytes) reads as a truncated body.
pub(crate) fn json(call: Call, value: &impl Serialize) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    let Call { plan, guard } = call;
    let len = bytes.len();
    let body = if plan.first_byte.is_zero() && plan.drop_after_chunks.is_none() {
        Body::from(bytes)
    } else {
        let frames = match plan.drop_after_chunks {
            Some(_) => vec![bytes.slice(..len / 2), bytes.slice(len / 2..)],
            None => vec![bytes],
        };
        let plan = Plan {
            drop_after_chunks: plan.drop_after_chunks.map(|_| 1),
            ..plan
        };
        paced(frames, plan, guard)
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A `text/event-stream` response made of these events.
pub(crate) fn event_stream(call: Call, events: Vec<Bytes>) -> Response {
    let mut response = stream(call, "text/event-stream; charset=utf-8", events);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A streaming response of `content_type` (SSE, Bedrock's binary event
/// stream), one paced chunk per frame, so a drop falls between frames.
pub(crate) fn stream(call: Call, content_type: &'static str, frames: Vec<Bytes>) -> Response {
    let Call { plan, mut guard } = call;
    guard.start_stream();
    let mut response = paced(frames, plan, guard).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

struct Pacing {
    frames: std::vec::IntoIter<Bytes>,
    sent: u32,
    plan: Plan,
    /// Dropped with the body: records completion, drop or cancellation.
    guard: InFlight,
    over: bool,
}

fn paced(frames: Vec<Bytes>, plan: Plan, guard: InFlight) -> Body {
    let state = Pacing {
        frames: frames.into_iter(),
        sent: 0,
        plan,
        guard,
        over: false,
    };
    Body::from_stream(futures::stream::unfold(state, |mut s| async move {
        if s.over {
            return None;
        }
        let more = s.frames.len() > 0;
        if more && s.plan.drop_after_chunks == Some(s.sent) {
            s.over = true;
            s.guard.end(Ending::Dropped);
            // Pending once, so the server flushes what was sent before the
            // abort: the client must see the first chunks, then the cut.
            tokio::task::yield_now().await;
            let cut = io::Error::other(
                "sluice-mock-llm: connection dropped on purpose (drop_after_chunks)",
            );
            return Some((Err(cut), s));
        }
        let Some(frame) = s.frames.next() else {
            s.guard.end(Ending::Completed);
            return None;
        };
        let delay = if s.sent == 0 {
            s.plan.first_byte
        } else {
            s.plan.chunk
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        s.sent += 1;
        if s.frames.len() == 0 {
            s.guard.end(Ending::Completed);
        }
        Some((Ok::<_, io::Error>(frame), s))
    }))
}
