//! Global quotas on the request path (DESIGN §5): which policies apply to a
//! request, what it is estimated to cost, the charge settled when its answer
//! ends, and the rate-limit headers and errors clients see.
//!
//! * Scopes: the key's policy and the key × route's, read from this node's
//!   copy of the ledger (`State::ledger`).
//! * Estimate: 1 request; tokens = the prompt counted with a real tokenizer
//!   (tiktoken's `o200k_base`, plus OpenAI's per-message overhead) and the
//!   completion's ceiling (`max_tokens` × `n`, or
//!   `completion_estimate_tokens` when the client set none); spend = that at
//!   the route's prices. Tokens are counted only when a policy limits tokens
//!   or spend.
//! * Settlement ([`Charge::finish`]): an answer with usage is charged its
//!   usage; an answer without usage (a stream the client left, an upstream
//!   that reported none) keeps the estimate; a request that got no answer
//!   is charged the request but no tokens.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;
use sluice_core::quota::{Period, QuotaPolicy, Refill, Scope, Unit};
use sluice_core::{Pricing, State};
use sluice_providers::{ClientRequest, Dialect, Endpoint, TokenUsage};
use sluice_quota::{Cost, Denial, Reason, Reservation, Scoped, Standing};

use crate::error::ApiError;

/// The scopes whose policies apply to `key_id` on `route`, with them.
pub fn scopes<'s>(state: &'s State, key_id: &str, route: &str) -> Vec<(Scope, &'s QuotaPolicy)> {
    let ledger = state.ledger();
    let mut out = Vec::new();
    if ledger.policies().next().is_none() {
        return out;
    }
    for scope in [
        Scope::Key {
            key_id: key_id.to_owned(),
        },
        Scope::KeyRoute {
            key_id: key_id.to_owned(),
            route: route.to_owned(),
        },
    ] {
        if let Some(policy) = ledger.policy(&scope) {
            out.push((scope, policy));
        }
    }
    out
}

/// Borrowed views of `scopes` for admission.
pub fn scoped<'a>(scopes: &'a [(Scope, &'a QuotaPolicy)]) -> Vec<Scoped<'a>> {
    scopes
        .iter()
        .map(|(scope, policy)| Scoped { scope, policy })
        .collect()
}

/// What `request` is estimated to cost on a route with `pricing`.
pub fn estimate(
    request: &ClientRequest,
    scopes: &[(Scope, &QuotaPolicy)],
    pricing: &Pricing,
    completion_estimate_tokens: u64,
) -> Cost {
    let counts_tokens = scopes.iter().any(|(_, p)| {
        p.limits
            .iter()
            .any(|l| matches!(l.unit, Unit::Tokens | Unit::MicroUsd))
    });
    if !counts_tokens {
        return Cost {
            requests: 1,
            ..Cost::default()
        };
    }
    let prompt = prompt_tokens(request.body());
    let completion = match request.endpoint {
        Endpoint::Embeddings => 0,
        _ => {
            let choices = request
                .body()
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 128);
            request
                .max_tokens()
                .unwrap_or(completion_estimate_tokens)
                .saturating_mul(choices)
        }
    };
    Cost {
        requests: 1,
        tokens: prompt.saturating_add(completion),
        micro_usd: pricing.cost_micro_usd(prompt, completion),
    }
}

/// Tokens OpenAI adds per message (role and separators), and to prime the
/// reply.
const PER_MESSAGE: u64 = 4;
const PER_PROMPT: u64 = 3;
/// Fields whose strings are not prompt text (images, roles, ids).
const NOT_TEXT: [&str; 8] = [
    "image_url",
    "url",
    "data",
    "source",
    "type",
    "role",
    "id",
    "tool_call_id",
];

/// Loads the tokenizer (a fraction of a second, once per process).
pub fn warm_up() {
    tiktoken_rs::o200k_base_singleton();
}

/// The prompt's tokens: every string of the messages (chat, Anthropic
/// `system`), the legacy `prompt`, embeddings `input` and tool definitions,
/// counted with `o200k_base`; a token id in an `input` array counts one.
pub fn prompt_tokens(body: &serde_json::Map<String, Value>) -> u64 {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let mut total = PER_PROMPT;
    let mut count = |text: &str| total += bpe.encode_ordinary(text).len() as u64;
    for field in ["system", "prompt", "input", "tools", "functions"] {
        if let Some(value) = body.get(field) {
            walk(value, &mut count, &mut || {});
        }
    }
    let mut messages = 0u64;
    if let Some(Value::Array(list)) = body.get("messages") {
        for message in list {
            messages += 1;
            walk(message, &mut count, &mut || {});
        }
    }
    let mut numbers = 0u64;
    if let Some(value) = body.get("input") {
        walk(value, &mut |_| {}, &mut || numbers += 1);
    }
    total + messages * PER_MESSAGE + numbers
}

fn walk(value: &Value, text: &mut impl FnMut(&str), number: &mut impl FnMut()) {
    match value {
        Value::String(s) => text(s),
        Value::Number(_) => number(),
        Value::Array(items) => items.iter().for_each(|v| walk(v, text, number)),
        Value::Object(map) => {
            for (k, v) in map {
                if !NOT_TEXT.contains(&k.as_str()) {
                    walk(v, text, number);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// An admitted request's reservation, settled when its answer ends.
#[derive(Debug)]
pub struct Charge {
    reservation: Reservation,
    pricing: Pricing,
    requests: u64,
}

/// How a request's answer ended, for its charge.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// An answer; with the usage the upstream reported, if it did.
    Answered(Option<TokenUsage>),
    /// No answer (an error status, a gateway failure): the request counts,
    /// no tokens do.
    Failed,
}

impl Charge {
    pub fn new(reservation: Reservation, pricing: Pricing, estimate: Cost) -> Self {
        Self {
            reservation,
            pricing,
            requests: estimate.requests,
        }
    }

    pub fn finish(self, outcome: Outcome) {
        let actual = match outcome {
            Outcome::Answered(Some(usage)) => Cost {
                requests: self.requests,
                tokens: usage.total_tokens(),
                micro_usd: self
                    .pricing
                    .cost_micro_usd(usage.prompt_tokens, usage.completion_tokens),
            },
            // The estimate stays charged: never less than was produced.
            Outcome::Answered(None) => return,
            Outcome::Failed => Cost {
                requests: self.requests,
                ..Cost::default()
            },
        };
        self.reservation.settle(actual);
    }
}

/// The rate-limit header names: `[dialect][family][limit, remaining, reset]`
/// (families: requests, tokens).
const HEADERS: [[[HeaderName; 3]; 2]; 2] = [
    [
        [
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
        ],
        [
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
        ],
    ],
    [
        [
            HeaderName::from_static("anthropic-ratelimit-requests-limit"),
            HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
            HeaderName::from_static("anthropic-ratelimit-requests-reset"),
        ],
        [
            HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
            HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
            HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
        ],
    ],
];

/// The rate-limit headers of `standings`: OpenAI's `x-ratelimit-*` (reset
/// as a duration, `1s`, `12ms`) or Anthropic's `anthropic-ratelimit-*`
/// (reset as an RFC 3339 instant).
pub fn headers(dialect: Dialect, standings: &[Standing], now_ms: u64, out: &mut HeaderMap) {
    let names = match dialect {
        Dialect::OpenAi => &HEADERS[0],
        Dialect::Anthropic => &HEADERS[1],
    };
    for standing in standings {
        let [limit, remaining, reset] = match standing.unit {
            Unit::Requests => &names[0],
            Unit::Tokens => &names[1],
            Unit::MicroUsd => continue,
        };
        let reset_value = match dialect {
            Dialect::OpenAi => duration_string(standing.reset_ms),
            Dialect::Anthropic => rfc3339(now_ms.saturating_add(standing.reset_ms)),
        };
        out.insert(limit.clone(), HeaderValue::from(standing.limit));
        out.insert(remaining.clone(), HeaderValue::from(standing.remaining));
        out.insert(
            reset.clone(),
            HeaderValue::from_str(&reset_value).expect("ASCII duration or date"),
        );
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `12ms`, `1s`,
/// `6m0s`, `1h2m3.5s`.
pub fn duration_string(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let millis = ms % 60_000;
    let seconds = if millis % 1_000 == 0 {
        format!("{}s", millis / 1_000)
    } else {
        let s = format!("{}.{:03}", millis / 1_000, millis % 1_000);
        format!("{}s", s.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

fn rfc3339(at_ms: u64) -> String {
    let secs = i64::try_from(at_ms.div_ceil(1_000)).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The answer to a refused request: 429 (`rate_limit_exceeded`, or
/// `insufficient_quota` for a spent budget) or 503 when the quota cannot be
/// decided.
pub fn denial_error(denial: &Denial, key_id: &str) -> ApiError {
    match &*denial.reason {
        Reason::Exhausted {
            scope,
            limit,
            needed,
            retry_after_ms,
            ..
        } => {
            let after = Duration::from_millis((*retry_after_ms).max(1));
            if let Refill::Calendar(period) = limit.refill {
                let period = match period {
                    Period::Day => "day",
                    Period::Month => "month",
                };
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "You exceeded your current quota: the {} budget of {} per {period} {} is spent. It renews in {}.",
                        limit_noun(limit.unit),
                        amount(limit.unit, limit.capacity),
                        on(scope, key_id),
                        duration_string(*retry_after_ms),
                    ),
                )
                .openai_type("insufficient_quota")
                .code("insufficient_quota")
                .retry_after(after)
                .no_retry();
            }
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit reached for {} {}: limit {}, requested {}. Please try again in {}.",
                    limit_noun(limit.unit),
                    on(scope, key_id),
                    rate(limit),
                    amount(limit.unit, *needed),
                    duration_string(*retry_after_ms),
                ),
            )
            .openai_type(limit.unit.as_str())
            .code("rate_limit_exceeded")
            .retry_after(after)
        }
        Reason::TooLarge {
            scope,
            limit,
            needed,
        } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Request too large for {} {}: limit {}, requested {}. Reduce the input or max_tokens.",
                limit_noun(limit.unit),
                on(scope, key_id),
                rate(limit),
                amount(limit.unit, *needed),
            ),
        )
        .openai_type(limit.unit.as_str())
        .code("rate_limit_exceeded")
        .no_retry(),
        Reason::NoQuorum {
            scope,
            retry_after_ms,
        } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The quota {} cannot be decided: this node cannot reach the cluster's quota ledger and its policy is on_no_quorum = deny. Retry shortly.",
                on(scope, key_id)
            ),
        )
        .code("quota_unavailable")
        .retry_after(Duration::from_millis((*retry_after_ms).max(1))),
    }
}

fn limit_noun(unit: Unit) -> &'static str {
    match unit {
        Unit::Requests => "requests",
        Unit::Tokens => "tokens",
        Unit::MicroUsd => "spend",
    }
}

fn on(scope: &Scope, key_id: &str) -> String {
    match scope {
        Scope::Key { .. } => format!("on key {key_id}"),
        Scope::KeyRoute { route, .. } => format!("on key {key_id} for model {route}"),
    }
}

fn amount(unit: Unit, n: u64) -> String {
    match unit {
        Unit::MicroUsd => format!("${}.{:06}", n / 1_000_000, n % 1_000_000),
        _ => n.to_string(),
    }
}

fn rate(limit: &sluice_core::quota::Limit) -> String {
    let capacity = amount(limit.unit, limit.capacity);
    match limit.refill {
        Refill::Rate {
            amount: n,
            every_ms,
        } if n == limit.capacity && every_ms == 60_000 => {
            format!("{capacity} / min")
        }
        Refill::Rate {
            amount: n,
            every_ms,
        } => format!(
            "{capacity}, refilled {} every {}",
            amount(limit.unit, n),
            duration_string(every_ms)
        ),
        Refill::Calendar(Period::Day) => format!("{capacity} / day"),
        Refill::Calendar(Period::Month) => format!("{capacity} / month"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_like_openais() {
        assert_eq!(duration_string(0), "0ms");
        assert_eq!(duration_string(12), "12ms");
        assert_eq!(duration_string(1_000), "1s");
        assert_eq!(duration_string(1_500), "1.5s");
        assert_eq!(duration_string(6 * 60_000), "6m0s");
        assert_eq!(duration_string(3_723_500), "1h2m3.5s");
    }

    #[test]
    fn prompt_tokens_count_text_not_images_or_roles() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let short = prompt_tokens(&body(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hello there"}],
        })));
        assert_eq!(short, PER_PROMPT + PER_MESSAGE + 2);
        let image = prompt_tokens(&body(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hello there"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(100_000))}},
            ]}],
        })));
        assert_eq!(image, short, "an image's bytes are not text");
        let anthropic = prompt_tokens(&body(json!({
            "model": "m", "max_tokens": 5, "system": "be brief",
            "messages": [{"role": "user", "content": "hello there"}],
        })));
        assert_eq!(anthropic, short + 2);
        let ids = prompt_tokens(&body(json!({"model": "e", "input": [[1, 2, 3], [4]]})));
        assert_eq!(ids, PER_PROMPT + 4);
    }

    #[test]
    fn openai_and_anthropic_header_families() {
        let standings = [
            Standing {
                unit: Unit::Requests,
                limit: 600,
                remaining: 599,
                reset_ms: 100,
            },
            Standing {
                unit: Unit::MicroUsd,
                limit: 1,
                remaining: 1,
                reset_ms: 1,
            },
        ];
        let mut h = HeaderMap::new();
        headers(Dialect::OpenAi, &standings, 0, &mut h);
        assert_eq!(h["x-ratelimit-limit-requests"], "600");
        assert_eq!(h["x-ratelimit-remaining-requests"], "599");
        assert_eq!(h["x-ratelimit-reset-requests"], "100ms");
        assert_eq!(h.len(), 3, "spend has no header family");
        let mut h = HeaderMap::new();
        headers(Dialect::Anthropic, &standings, 1_800_000_000_000, &mut h);
        assert_eq!(h["anthropic-ratelimit-requests-limit"], "600");
        assert_eq!(
            h["anthropic-ratelimit-requests-reset"],
            "2027-01-15T08:00:01Z"
        );
    }
}
