//! `GET /v1/models` and `GET /v1/models/{id}`: the routes a key may use,
//! in OpenAI's list format, or Anthropic's when the client sent
//! `anthropic-version` (as the Anthropic SDKs always do).

use serde_json::{json, Value};
use sluice_core::{Route, State, VirtualKey};
use sluice_providers::Dialect;

/// The models list for `key`.
pub(crate) fn list(state: &State, key: &VirtualKey, dialect: Dialect) -> Value {
    let routes: Vec<&Route> = state
        .routes()
        .filter(|r| key.allows_route(&r.name))
        .collect();
    let data: Vec<Value> = routes.iter().map(|r| entry(r, dialect)).collect();
    match dialect {
        Dialect::OpenAi => json!({"object": "list", "data": data}),
        Dialect::Anthropic => json!({
            "data": data,
            "has_more": false,
            "first_id": routes.first().map(|r| r.name.as_str()),
            "last_id": routes.last().map(|r| r.name.as_str()),
        }),
    }
}

/// One model, if `key` may use it.
pub(crate) fn get(state: &State, key: &VirtualKey, id: &str, dialect: Dialect) -> Option<Value> {
    state
        .route(id)
        .filter(|r| key.allows_route(&r.name))
        .map(|r| entry(r, dialect))
}

fn entry(route: &Route, dialect: Dialect) -> Value {
    match dialect {
        Dialect::OpenAi => json!({
            "id": route.name,
            "object": "model",
            "created": route.created_at_ms / 1000,
            "owned_by": "sluice",
        }),
        Dialect::Anthropic => json!({
            "type": "model",
            "id": route.name,
            "display_name": route.name,
            "created_at": rfc3339(route.created_at_ms),
        }),
    }
}

/// `ms` since the Unix epoch as an RFC 3339 UTC timestamp.
fn rfc3339(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_996_800_000), "2026-11-30T00:00:00Z");
    }
}
