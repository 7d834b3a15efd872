//! Usage reports and key spend over roll-ups recorded through the log.

use super::{assert_error, create_route, Fixture, TOKEN};
use axum::http::{header, Method, StatusCode};
use serde_json::json;
use sluice_core::quota::{period_start, Period};
use sluice_core::usage::{minute_of, Rollup, RollupKey, Totals, UsageBatch};
use sluice_core::{Applied, Command};

fn rollup(minute_ms: u64, key: &str, route: &str, provider: &str, requests: u64) -> Rollup {
    Rollup {
        key: RollupKey {
            minute_ms,
            key_id: key.into(),
            route: route.into(),
            provider: provider.into(),
        },
        totals: Totals {
            requests,
            prompt_tokens: 10 * requests,
            completion_tokens: 5 * requests,
            cost_micro_usd: 100_000 * requests,
            errors: 1,
            latency_ms_sum: 40 * requests,
        },
    }
}

/// A call the gateway refused before trying a provider (over quota): no
/// provider, no tokens, no cost.
fn refused(minute_ms: u64, key: &str, route: &str) -> Rollup {
    Rollup {
        key: RollupKey {
            minute_ms,
            key_id: key.into(),
            route: route.into(),
            provider: String::new(),
        },
        totals: Totals {
            requests: 1,
            errors: 1,
            ..Totals::default()
        },
    }
}

async fn record(f: &Fixture, node: u64, seq: u64, rollups: Vec<Rollup>) -> bool {
    let batch = UsageBatch {
        node,
        boot: 9,
        seq,
        rollups,
    };
    match f.node.write(Command::RecordUsage(batch)).await {
        Ok(Applied::UsageRecorded { counted }) => counted,
        other => panic!("RecordUsage answered {other:?}"),
    }
}

#[tokio::test]
async fn usage_is_reported_by_group_and_range_and_spend_against_the_budget() {
    let f = Fixture::start().await;
    create_route(&f, "r", "p").await;
    let (status, key) = f
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "app", "budget_usd": 2, "budget_period": "day"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let id = key["id"].as_str().unwrap().to_owned();

    let now = minute_of(crate::context::now_ms());
    let earlier = now - 2 * 3_600_000;
    assert!(
        record(
            &f,
            1,
            1,
            vec![
                rollup(now, &id, "r", "p", 3),
                rollup(earlier, &id, "r", "p", 7)
            ]
        )
        .await
    );
    assert!(
        record(
            &f,
            2,
            1,
            vec![
                rollup(now, &id, "r", "q", 2),
                rollup(now, "key_other", "r", "p", 1),
                refused(now, &id, "r"),
            ]
        )
        .await
    );
    // Node 1's batch proposed again (a retry after a timeout): not counted.
    assert!(!record(&f, 1, 1, vec![rollup(now, &id, "r", "p", 3)]).await);

    let (status, report) = f
        .call(Method::GET, "/admin/v1/usage?from=-1h&group_by=key", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["group_by"], "key");
    let groups = report["groups"].as_array().unwrap();
    let mine = groups.iter().find(|g| g["group"] == id.as_str()).unwrap();
    assert_eq!(mine["name"], "app", "a key's name stands beside its id");
    assert_eq!(mine["requests"], 6);
    assert_eq!(mine["total_tokens"], 75);
    assert_eq!(mine["cost_micro_usd"], 500_000);
    assert_eq!(mine["cost_usd"], 0.5);
    // Each rollup above carries one error; the one without a provider is
    // a refusal, the others the upstream's.
    assert_eq!(mine["errors"], 3);
    assert_eq!(mine["refused"], 1);
    assert_eq!(mine["upstream_errors"], 2);
    let other = groups.iter().find(|g| g["group"] == "key_other").unwrap();
    assert_eq!(other["name"], serde_json::Value::Null, "no such key");
    assert_eq!(report["total"]["requests"], 7);
    assert_eq!(report["total"]["refused"], 1);

    // The last three hours, one key, by provider.
    let (_, report) = f
        .call(
            Method::GET,
            &format!("/admin/v1/usage?from=-3h&group_by=provider&key={id}&route=r"),
            None,
        )
        .await;
    let by_provider: Vec<(String, u64)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_provider,
        vec![("".into(), 1), ("p".into(), 10), ("q".into(), 2)]
    );
    assert_eq!(report["groups"][0]["name"], "refused before routing");
    assert_eq!(report["groups"][0]["refused"], 1);
    assert_eq!(report["groups"][1]["name"], serde_json::Value::Null);

    let (status, headers, csv) = f
        .send_raw(
            Method::GET,
            "/admin/v1/usage?from=-1h&group_by=route&format=csv",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("group,requests,prompt_tokens"),
        "{csv}"
    );
    assert!(
        lines[0].ends_with(",avg_latency_ms,refused,upstream_errors,name"),
        "{csv}"
    );
    assert_eq!(lines[1], "r,7,60,30,90,600000,0.600000,4,240,34.3,1,3,");
    assert_eq!(lines.len(), 2);

    for (query, field) in [
        ("from=yesterday", "from"),
        ("group_by=model", "group_by"),
        ("format=xml", "format"),
        ("from=-1h&to=-2h", "from"),
        ("limit=3", "limit"),
    ] {
        let (status, body) = f
            .call(Method::GET, &format!("/admin/v1/usage?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_error(&body, "validation_error", Some(field));
    }

    let (status, spend) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}/spend"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{spend}");
    let today = period_start(Period::Day, now);
    let expected = if earlier >= today { 1_200_000 } else { 500_000 };
    assert_eq!(spend["period"], "day");
    assert_eq!(spend["period_start_ms"], today);
    assert_eq!(spend["spent_micro_usd"], expected);
    assert_eq!(spend["budget_micro_usd"], 2_000_000);
    assert_eq!(spend["budget_usd"], 2.0);
    assert_eq!(
        spend["remaining_usd"].as_f64().unwrap(),
        (2_000_000 - expected) as f64 / 1e6
    );
    let (status, body) = f
        .call(Method::GET, "/admin/v1/keys/key_nobody/spend", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", None);
    f.stop().await;
}
