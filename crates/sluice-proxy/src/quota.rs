//! Global quotas on the request path (DESIGN §5): which policies apply to a
//! request, what it is estimated to cost, the charge settled when its answer
//! ends, and the rate-limit headers and errors clients see.
//!
//! * Limits: the key's policy and the key × route's, from this node's plan
//!   of the key (`sluice_quota::Quotas::plan`, made from its copy of the
//!   ledger).
//! * Estimate: 1 request; tokens = the prompt counted with a real tokenizer
//!   (tiktoken's `o200k_base`, plus OpenAI's per-message overhead) and the
//!   completion's ceiling (`max_tokens` × `n`, or
//!   `completion_estimate_tokens` when the client set none); spend = that at
//!   the route's prices. Tokens are counted only when a policy limits tokens
//!   or spend. Limits under `reserve = "estimate"` reserve the completion
//!   the key's recent answers suggest instead (their 95th percentile, at
//!   most the ceiling).
//! * Settlement ([`Charge::finish`], [`Settlement`]): an answer with usage is charged its
//!   usage; an answer without usage (a stream the client left, an upstream
//!   that reported none) keeps the estimate; a request that got no answer
//!   is charged the request but no tokens.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sluice_core::quota::{Period, Refill, Scope, Unit};
use sluice_core::Pricing;
use sluice_providers::{ClientRequest, Dialect, Endpoint, TokenUsage};
use sluice_quota::{Ask, Cost, Denial, Reason, Reservation, Standing};

use crate::error::ProxyError;

/// What `request` asks of its limits on a route with `pricing`: at most
/// (its prompt and completion ceiling) and, for `reserve = "estimate"`, as
/// estimated from `recent_completion` (the key's recent answers' 95th
/// percentile, when known). Its tokens are counted only when a limit
/// `counts_tokens` (or spend).
pub fn estimate(
    request: &ClientRequest,
    counts_tokens: bool,
    pricing: &Pricing,
    completion_estimate_tokens: u64,
    recent_completion: Option<u64>,
) -> Ask {
    // A token count uses no tokens: it is one request.
    if !counts_tokens || request.endpoint == Endpoint::CountTokens {
        return Ask::exact(Cost {
            requests: 1,
            ..Cost::default()
        });
    }
    let prompt = prompt_tokens(request.body());
    let (ceiling, likely) = match request.endpoint {
        Endpoint::Embeddings => (0, 0),
        _ => {
            let choices = request
                .body()
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 128);
            let per_choice = request.max_tokens().unwrap_or(completion_estimate_tokens);
            let likely = recent_completion
                .unwrap_or(completion_estimate_tokens)
                .min(per_choice);
            (
                per_choice.saturating_mul(choices),
                likely.saturating_mul(choices),
            )
        }
    };
    let cost = |completion: u64| Cost {
        requests: 1,
        tokens: prompt.saturating_add(completion),
        micro_usd: pricing.cost_micro_usd(prompt, completion),
    };
    Ask {
        full: cost(ceiling),
        estimate: cost(likely),
    }
}

mod tokens;

pub use tokens::{prompt_tokens, tokenizer_loaded, warm_up};

/// An admitted request's reservation, settled when its answer ends.
#[derive(Debug)]
pub struct Charge {
    reservation: Reservation,
    pricing: Pricing,
    requests: u64,
}

/// How a request's answer ended, for its charge.
#[derive(Debug, Clone, Copy)]
pub enum Settlement {
    /// An answer; with the usage the upstream reported, if it did.
    Answered(Option<TokenUsage>),
    /// No answer (an error status, a gateway failure): the request counts,
    /// no tokens do.
    Failed,
}

impl Charge {
    pub fn new(reservation: Reservation, pricing: Pricing, ask: Ask) -> Self {
        Self {
            reservation,
            pricing,
            requests: ask.full.requests,
        }
    }

    /// The key's plan, to read the standings again after settling.
    pub fn plan(&self) -> Option<&std::sync::Arc<sluice_quota::Plan>> {
        self.reservation.plan()
    }

    /// Settles the reservation as `settlement` says.
    pub fn finish(self, settlement: Settlement) {
        if let Settlement::Answered(Some(usage)) = settlement {
            self.reservation.note_completion(usage.completion_tokens);
        }
        let actual = match settlement {
            Settlement::Answered(Some(usage)) => Cost {
                requests: self.requests,
                tokens: usage.total_tokens(),
                micro_usd: self
                    .pricing
                    .cost_micro_usd(usage.prompt_tokens, usage.completion_tokens),
            },
            // The estimate stays charged: never less than was produced.
            Settlement::Answered(None) => return,
            Settlement::Failed => Cost {
                requests: self.requests,
                ..Cost::default()
            },
        };
        self.reservation.settle(actual);
    }
}

/// The rate-limit header names: `[dialect][family][limit, remaining, reset]`
/// (families: requests, tokens).
static HEADERS: [[[HeaderName; 3]; 2]; 2] = [
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
///
/// On every answer of a key with a policy: the reset is written on the
/// stack and copied once into its value, the numbers are written by `http`
/// itself.
pub fn headers(dialect: Dialect, standings: &[Standing], now_ms: u64, out: &mut HeaderMap) {
    let names = match dialect {
        Dialect::OpenAi => &HEADERS[0],
        Dialect::Anthropic => &HEADERS[1],
    };
    out.reserve(3 * standings.len());
    for standing in standings {
        let [limit, remaining, reset] = match standing.unit {
            Unit::Requests => &names[0],
            Unit::Tokens => &names[1],
            Unit::MicroUsd => continue,
        };
        let mut value = ValueBuf::default();
        match dialect {
            Dialect::OpenAi => write_duration(&mut value, standing.reset_ms),
            Dialect::Anthropic => {
                write_rfc3339(&mut value, now_ms.saturating_add(standing.reset_ms))
            }
        }
        out.insert(limit.clone(), HeaderValue::from(standing.limit));
        out.insert(remaining.clone(), HeaderValue::from(standing.remaining));
        out.insert(reset.clone(), value.header_value());
    }
}

/// A header value's text, on the stack (the longest written here, a
/// duration of `u64::MAX` ms, is 24 bytes; a date, 20).
#[derive(Default)]
struct ValueBuf {
    bytes: [u8; 32],
    len: usize,
}

impl std::fmt::Write for ValueBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl ValueBuf {
    fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.bytes[..self.len]).expect("ASCII duration or date")
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `12ms`, `1s`,
/// `6m0s`, `1h2m3.5s`.
pub fn duration_string(ms: u64) -> String {
    let mut out = String::new();
    write_duration(&mut out, ms);
    out
}

fn write_duration(out: &mut impl std::fmt::Write, ms: u64) {
    // Writing to a `String` or to a `ValueBuf` (large enough) cannot fail.
    let _ = try_write_duration(out, ms);
}

fn try_write_duration(out: &mut impl std::fmt::Write, ms: u64) -> std::fmt::Result {
    if ms < 1_000 {
        return write!(out, "{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let millis = ms % 60_000;
    match (hours, minutes) {
        (0, 0) => {}
        (0, m) => write!(out, "{m}m")?,
        (h, m) => write!(out, "{h}h{m}m")?,
    }
    let (secs, frac) = (millis / 1_000, millis % 1_000);
    match frac {
        0 => write!(out, "{secs}s"),
        f if f % 100 == 0 => write!(out, "{secs}.{}s", f / 100),
        f if f % 10 == 0 => write!(out, "{secs}.{:02}s", f / 10),
        f => write!(out, "{secs}.{f:03}s"),
    }
}

fn write_rfc3339(out: &mut impl std::fmt::Write, at_ms: u64) {
    let secs = i64::try_from(at_ms.div_ceil(1_000)).unwrap_or(i64::MAX);
    let text = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    let _ = out.write_str(&text);
}

/// The error of a refused request: 429 (`rate_limit_exceeded`, or
/// `insufficient_quota` for a spent budget) or 503 when the quota cannot be
/// decided.
pub fn denial_error(denial: &Denial, key_id: &str) -> ProxyError {
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
                return ProxyError::budget_spent(
                    format!(
                        "You exceeded your current quota: the {} budget of {} per {period} {} is spent. It renews in {}.",
                        limit_noun(limit.unit),
                        amount(limit.unit, limit.capacity),
                        on(scope, key_id),
                        duration_string(*retry_after_ms),
                    ),
                    after,
                );
            }
            ProxyError::rate_limited(
                format!(
                    "Rate limit reached for {} {}: limit {}, requested {}. Please try again in {}.",
                    limit_noun(limit.unit),
                    on(scope, key_id),
                    rate(limit),
                    amount(limit.unit, *needed),
                    duration_string(*retry_after_ms),
                ),
                limit.unit,
                after,
            )
        }
        Reason::TooLarge {
            scope,
            limit,
            needed,
        } => ProxyError::over_limit(
            format!(
                "Request too large for {} {}: limit {}, requested {}. Reduce the input or max_tokens.",
                limit_noun(limit.unit),
                on(scope, key_id),
                rate(limit),
                amount(limit.unit, *needed),
            ),
            limit.unit,
        ),
        Reason::NoQuorum {
            scope,
            retry_after_ms,
        } => ProxyError::quota_unavailable(
            format!(
                "The quota {} cannot be decided: this node cannot reach the cluster's quota ledger and its policy is on_no_quorum = deny. Retry shortly.",
                on(scope, key_id)
            ),
            Duration::from_millis((*retry_after_ms).max(1)),
        ),
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

    #[test]
    fn durations_read_like_openais() {
        assert_eq!(duration_string(0), "0ms");
        assert_eq!(duration_string(12), "12ms");
        assert_eq!(duration_string(1_000), "1s");
        assert_eq!(duration_string(1_500), "1.5s");
        assert_eq!(duration_string(6 * 60_000), "6m0s");
        assert_eq!(duration_string(3_723_500), "1h2m3.5s");
        assert_eq!(duration_string(1_250), "1.25s");
        assert_eq!(duration_string(61_005), "1m1.005s");
        assert_eq!(duration_string(3_600_000), "1h0m0s");
        let mut longest = ValueBuf::default();
        write_duration(&mut longest, u64::MAX);
        assert_eq!(longest.len, duration_string(u64::MAX).len());
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
