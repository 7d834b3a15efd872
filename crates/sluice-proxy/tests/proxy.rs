//! The proxy in process, against the in-process mock provider: routing,
//! retries, fallbacks, breakers, streaming and bad input, and that every
//! request settles its bookkeeping exactly once. (The same paths through
//! real `sluice` processes are the `tests/` crate's t85 suite.)

// One test binary: the helpers and the topics beside this file.
#[path = "proxy/connections.rs"]
mod connections;
#[path = "proxy/settlement.rs"]
mod settlement;
#[path = "proxy/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sluice_core::{Command, ProviderKind, VirtualKey};
use sluice_mock_llm::Behavior;
use sluice_proxy::breaker::Phase;
use sluice_proxy::ProxyConfig;

use support::*;

#[tokio::test]
async fn a_failing_deployment_falls_over_and_its_breaker_opens_then_probes() {
    within(async {
        let s = Setup::start(ProxyConfig {
            breaker_failures: 2,
            breaker_cooldown: Duration::from_millis(500),
            ..config()
        })
        .await;
        let dead = closed_port().await;
        s.world.provider(
            "dead",
            ProviderKind::OpenAi,
            &format!("http://{dead}/v1"),
            &[],
        );
        s.world.provider(
            "broken",
            ProviderKind::OpenAi,
            &s.mock_v1(),
            &[("x-mock-status", "500")],
        );
        s.world
            .provider("good", ProviderKind::OpenAi, &s.mock_v1(), &[]);
        s.world.route(
            "r",
            &[
                ("dead", "mock-gpt"),
                ("broken", "mock-gpt"),
                ("good", "mock-gpt"),
            ],
            &[],
        );
        let phase = |p: &str| {
            s.proxy
                .breakers()
                .phases()
                .iter()
                .find(|((provider, _), _)| provider == p)
                .map(|(_, phase)| *phase)
        };
        let open = |p: &str| matches!(phase(p), Some(Phase::Open { .. }));
        // The order is random by weight: go on until both bad deployments
        // have failed twice (200 requests make missing it impossible).
        for _ in 0..200 {
            assert_eq!(s.chat("r", false).await.status(), 200);
            if open("dead") && open("broken") {
                break;
            }
        }
        assert!(
            open("dead") && open("broken"),
            "{:?}",
            s.proxy.breakers().phases()
        );
        assert!(matches!(phase("good"), Some(Phase::Closed { .. })));
        let metrics = s.proxy.metrics().encode();
        assert!(
            metrics.contains(r#"sluice_proxy_breaker_state{model="mock-gpt",provider="dead"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains(
            r#"sluice_proxy_upstream_attempts_total{outcome="server_error",provider="broken"}"#
        ));

        // Once the cooldown is over, one request probes `broken`; the probe
        // fails and the breaker opens for another cooldown.
        let breaker = s.proxy.breakers().get("broken", "mock-gpt");
        let reopens_at = match breaker.phase() {
            Phase::Open { until } => until,
            other => panic!("{other:?}"),
        };
        tokio::time::sleep_until(reopens_at.into()).await;
        let chats = || {
            s.mock
                .stats()
                .requests_to(sluice_mock_llm::Endpoint::ChatCompletions)
        };
        let mut answered = 0;
        let before = chats();
        while chats() - before == answered && answered < 200 {
            assert_eq!(s.chat("r", false).await.status(), 200);
            answered += 1;
        }
        assert_eq!(chats() - before, answered + 1, "exactly one probe");
        match breaker.phase() {
            Phase::Open { until } => assert!(until > reopens_at),
            other => panic!("the failed probe reopens: {other:?}"),
        }
        s.stop.cancel();
        s.served.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_route_whose_deployments_all_fail_uses_its_fallback() {
    within(async {
        let s = Setup::start(config()).await;
        s.world.provider(
            "broken",
            ProviderKind::OpenAi,
            &s.mock_v1(),
            &[("x-mock-status", "503")],
        );
        s.world
            .provider("good", ProviderKind::OpenAi, &s.mock_v1(), &[]);
        s.world.route("backup", &[("good", "mock-gpt")], &[]);
        s.world
            .route("primary", &[("broken", "mock-gpt")], &["backup"]);
        let r = s.chat("primary", false).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        // 3 attempts on `primary` (1 + 2 retries) and 1 on `backup`.
        let stats = s.mock.stats();
        assert_eq!(
            stats.requests_to(sluice_mock_llm::Endpoint::ChatCompletions),
            4
        );
    })
    .await;
}

#[tokio::test]
async fn upstream_rate_limits_are_retried_then_passed_on_with_retry_headers() {
    within(async {
        let s = Setup::start(config()).await;
        s.world.provider(
            "limited",
            ProviderKind::OpenAi,
            &s.mock_v1(),
            &[("x-mock-status", "429"), ("x-mock-retry-after-ms", "2")],
        );
        s.world.route("r", &[("limited", "mock-gpt")], &[]);
        let r = s.chat("r", false).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after-ms"], "2");
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
        assert_eq!(
            s.mock
                .stats()
                .requests_to(sluice_mock_llm::Endpoint::ChatCompletions),
            3
        );
        // Rate limits are not breaker failures: still closed.
        assert!(s
            .proxy
            .breakers()
            .phases()
            .iter()
            .all(|(_, p)| matches!(p, Phase::Closed { .. })));
    })
    .await;
}

#[tokio::test]
async fn a_dead_upstream_is_a_502_with_retry_headers() {
    within(async {
        let s = Setup::start(config()).await;
        let dead = closed_port().await;
        s.world.provider(
            "dead",
            ProviderKind::OpenAi,
            &format!("http://{dead}/v1"),
            &[],
        );
        s.world.route("r", &[("dead", "mock-gpt")], &[]);
        let r = s.chat("r", true).await;
        assert_eq!(r.status(), 502);
        assert!(r.headers().contains_key("retry-after-ms"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(body["error"]["code"], "upstream_error");
    })
    .await;
}

#[tokio::test]
async fn streams_are_relayed_as_they_come_not_buffered() {
    within(async {
        let s = Setup::start(config()).await;
        s.world.provider(
            "slow",
            ProviderKind::OpenAi,
            &s.mock_v1(),
            &[("x-mock-chunk-ms", "100")],
        );
        s.world.route("r", &[("slow", "mock-gpt")], &[]);
        let started = Instant::now();
        let r = s.chat("r", true).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let mut body = r.bytes_stream();
        let mut text = String::new();
        let mut first_at = None;
        while let Some(piece) = body.next().await {
            text.push_str(std::str::from_utf8(&piece.unwrap()).unwrap());
            if first_at.is_none() && text.contains("\n\n") {
                first_at = Some(started.elapsed());
            }
        }
        let last_at = started.elapsed();
        let events = data_events(&text);
        assert!(events.len() >= 6, "{events:?}");
        assert_eq!(events.last().unwrap(), "[DONE]");
        assert!(
            events.iter().all(|e| !e.contains("\"usage\":{")),
            "the gateway's usage chunk is hidden: {events:?}"
        );
        let first_at = first_at.unwrap();
        assert!(
            first_at * 3 < last_at,
            "first event at {first_at:?}, last at {last_at:?}: buffered?"
        );
    })
    .await;
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event_not_done() {
    within(async {
        let s = Setup::start(config()).await;
        s.world.provider("cut", ProviderKind::OpenAi, &s.mock_v1(), &[("x-mock-drop-after-chunks", "3")]);
        s.world.route("r", &[("cut", "mock-gpt")], &[]);
        let r = s.chat("r", true).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let events = data_events(&text);
        assert!(events.len() >= 2, "{text}");
        assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "server_error", "{text}");

        // The same on /v1/messages: Anthropic's `event: error`.
        let r = s
            .post(
                "/v1/messages",
                json!({"model": "r", "max_tokens": 20, "stream": true, "messages": [{"role": "user", "content": "a b c d e f"}]}),
            )
            .await;
        let text = r.text().await.unwrap();
        assert!(text.contains("event: error\ndata: {"), "{text}");
        assert!(!text.contains("message_stop"), "{text}");
        let metrics = s.proxy.metrics().encode();
        assert!(metrics.contains("sluice_proxy_stream_ends_total{outcome=\"upstream_failed\"} 2"), "{metrics}");
    })
    .await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_request() {
    within(async {
        let s = Setup::start(config()).await;
        s.world.provider(
            "slow",
            ProviderKind::OpenAi,
            &s.mock_v1(),
            &[("x-mock-chunk-ms", "200")],
        );
        s.world.route("r", &[("slow", "mock-gpt")], &[]);
        let r = s.chat("r", true).await;
        let mut body = r.bytes_stream();
        body.next().await.unwrap().unwrap();
        drop(body);
        let stats = s.mock.wait_for_stats(|st| st.streams_cancelled == 1).await;
        assert_eq!(stats.streams_completed, 0);
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_the_apis_own_errors() {
    within(async {
        let s = Setup::start(ProxyConfig {
            max_body_bytes: 1024,
            ..config()
        })
        .await;
        s.world
            .provider("good", ProviderKind::OpenAi, &s.mock_v1(), &[]);
        s.world.route("r", &[("good", "mock-gpt")], &[]);
        let raw = |path: &'static str, body: &'static str| {
            s.http
                .post(format!("{}{path}", s.url))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let r = raw("/v1/chat/completions", "{\"model\":").await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let r = s
            .post("/v1/chat/completions", json!({"messages": []}))
            .await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "model");

        let r = s
            .post(
                "/v1/chat/completions",
                json!({"model": "nope", "messages": []}),
            )
            .await;
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "model_not_found"
        );

        let big = "x".repeat(4096);
        let r = s
            .post(
                "/v1/chat/completions",
                json!({"model": "r", "messages": [{"role": "user", "content": big}]}),
            )
            .await;
        assert_eq!(r.status(), 413);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "request_too_large"
        );

        let r = s
            .http
            .post(format!("{}/v1/messages", s.url))
            .header("x-api-key", "sk-wrong")
            .json(&json!({"model": "r"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");

        let r = s
            .http
            .get(format!("{}/v1/nothing", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "unknown_url"
        );

        // Nothing bad went upstream.
        assert_eq!(
            s.mock
                .stats()
                .requests_to(sluice_mock_llm::Endpoint::ChatCompletions),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_as_soon_as_the_state_says_so() {
    within(async {
        let s = Setup::start(config()).await;
        s.world
            .provider("good", ProviderKind::OpenAi, &s.mock_v1(), &[]);
        s.world.route("r", &[("good", "mock-gpt")], &[]);
        assert_eq!(s.chat("r", false).await.status(), 200);
        let id = VirtualKey::new("x".into(), KEY, 0).id;
        s.world.apply(Command::RevokeKey { id });
        let r = s.chat("r", false).await;
        assert_eq!(r.status(), 401);
        assert!(r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"));
    })
    .await;
}

#[tokio::test]
async fn anthropic_providers_serve_both_apis() {
    within(async {
        let s = Setup::start(config()).await;
        s.world.provider("claude", ProviderKind::Anthropic, &s.mock_v1(), &[]);
        s.world.route("c", &[("claude", "mock-claude")], &[]);
        // OpenAI chat, translated; streamed with the usage chunk asked for.
        let r = s
            .post(
                "/v1/chat/completions",
                json!({"model": "c", "stream": true, "stream_options": {"include_usage": true},
                       "messages": [{"role": "user", "content": "hello"}]}),
            )
            .await;
        let text = r.text().await.unwrap();
        let events = data_events(&text);
        assert_eq!(events.last().unwrap(), "[DONE]", "{text}");
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0, "{text}");
        // Anthropic messages, passed through.
        let r = s
            .post(
                "/v1/messages",
                json!({"model": "c", "max_tokens": 30, "messages": [{"role": "user", "content": "hello"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
        // Embeddings are not an Anthropic API.
        let r = s.post("/v1/embeddings", json!({"model": "c", "input": "x"})).await;
        assert_eq!(r.status(), 400);
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish() {
    within(async {
        let s = Setup::start(config()).await;
        s.mock.set_behavior(Behavior {
            chunk_ms: 50,
            ..Behavior::default()
        });
        s.world
            .provider("slow", ProviderKind::OpenAi, &s.mock_v1(), &[]);
        s.world.route("r", &[("slow", "mock-gpt")], &[]);
        let r = s.chat("r", true).await;
        assert_eq!(r.status(), 200);
        s.stop.cancel();
        let text = r.text().await.unwrap();
        assert_eq!(data_events(&text).last().unwrap(), "[DONE]");
        s.served.await.unwrap().unwrap();
        assert!(
            reqwest::get(format!("{}/healthz", s.url)).await.is_err(),
            "no longer accepting"
        );
    })
    .await;
}

#[tokio::test]
async fn the_listener_serves_tls_when_configured() {
    within(async {
        let (_dir, cert, files) = self_signed();
        let world = World::default();
        world.key();
        let Listening {
            addr, stop, served, ..
        } = listen(&world, config(), Some(files.acceptor().unwrap())).await;
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .resolve("localhost", addr)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}", addr.port());
        let r = client.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client
            .get(format!("{url}/v1/models"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            reqwest::get(format!("http://{addr}/healthz"))
                .await
                .is_err(),
            "cleartext is refused on a TLS listener"
        );
        stop.cancel();
        served.await.unwrap().unwrap();
        assert!(files.acceptor().is_ok());
        std::fs::write(&files.key, "not a key").unwrap();
        match files.acceptor() {
            Err(e) => assert!(e.contains("key.pem"), "{e}"),
            Ok(_) => panic!("a broken key file is refused"),
        }
    })
    .await;
}

/// A gateway in front of a gateway: proxy A's provider is proxy B, served
/// over TLS with a private CA that A trusts only for that provider.
#[tokio::test]
async fn a_provider_behind_a_private_ca_is_trusted_through_its_extra_ca() {
    within(async {
        let (_dir, cert, files) = self_signed();

        // B: TLS, the same world, routes to the mock.
        let b = Setup::start(config()).await;
        b.world
            .provider("good", ProviderKind::OpenAi, &b.mock_v1(), &[]);
        b.world.route("inner", &[("good", "mock-gpt")], &[]);
        let tls_b = listen(&b.world, config(), Some(files.acceptor().unwrap())).await;
        let b_port = tls_b.addr.port();

        // A: trusts B's CA for the provider `b` only.
        for (trusted, want) in [(false, 502), (true, 200)] {
            let mut upstream_ca = BTreeMap::new();
            if trusted {
                upstream_ca.insert("b".to_owned(), cert.cert.pem().into_bytes());
            }
            let a = Setup::start(ProxyConfig {
                upstream_ca,
                retries: 0,
                ..config()
            })
            .await;
            a.world.provider_with_key(
                "b",
                ProviderKind::OpenAi,
                &format!("https://localhost:{b_port}/v1"),
                KEY,
            );
            a.world.route("outer", &[("b", "inner")], &[]);
            let r = a.chat("outer", false).await;
            assert_eq!(r.status(), want, "trusted: {trusted}");
            if trusted {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["object"], "chat.completion");
            }
        }
        tls_b.stop.cancel();
        tls_b.served.await.unwrap().unwrap();
    })
    .await;
}

/// A provider's secret header is opened from its sealed form and sent
/// upstream: proxy A reaches proxy B with B's virtual key in a secret
/// `Authorization` header, and without one B refuses it.
#[tokio::test]
async fn a_secret_header_is_opened_and_sent_upstream() {
    within(async {
        let b = Setup::start(config()).await;
        b.world
            .provider("good", ProviderKind::OpenAi, &b.mock_v1(), &[]);
        b.world.route("inner", &[("good", "mock-gpt")], &[]);
        let plain_b = listen(&b.world, config(), None).await;
        let b_v1 = format!("http://{}/v1", plain_b.addr);
        let bearer = format!("Bearer {KEY}");
        for secret in [None, Some(bearer.as_str())] {
            let a = Setup::start(ProxyConfig {
                retries: 0,
                ..config()
            })
            .await;
            match secret {
                Some(value) => a.world.provider_with_secret_header(
                    "b",
                    ProviderKind::OpenAi,
                    &b_v1,
                    ("Authorization", value),
                ),
                None => a.world.provider("b", ProviderKind::OpenAi, &b_v1, &[]),
            }
            a.world.route("outer", &[("b", "inner")], &[]);
            let r = a.chat("outer", false).await;
            if secret.is_some() {
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["object"], "chat.completion");
            } else {
                assert_ne!(r.status(), 200, "B must refuse a call without its key");
            }
        }
        plain_b.stop.cancel();
        plain_b.served.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_proxy_taking_tokens_only_refuses_virtual_keys_everywhere() {
    within(async {
        let issuer = sluice_proxy::JwtIssuer {
            name: "corp".into(),
            issuer: "https://idp.example".into(),
            jwks_url: format!("http://{}/jwks", closed_port().await)
                .parse()
                .unwrap(),
            audience: "sluice".into(),
            subject_claim: "sub".into(),
            template_claim: None,
            templates: Default::default(),
            default_template: Some("key_0123456789abcdef".into()),
            clock_skew: Duration::from_secs(60),
        };
        for accept_virtual_keys in [true, false] {
            let s = Setup::start(ProxyConfig {
                jwt_issuers: vec![issuer.clone()],
                accept_virtual_keys,
                ..config()
            })
            .await;
            s.world
                .provider("good", ProviderKind::OpenAi, &s.mock_v1(), &[]);
            s.world.route("r", &[("good", "mock-gpt")], &[]);
            let chat = s
                .post(
                    "/v1/chat/completions",
                    json!({"model": "r", "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            let models = s
                .http
                .get(format!("{}/v1/models", s.url))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            if accept_virtual_keys {
                assert_eq!(chat.status(), 200);
                assert_eq!(models.status(), 200);
                continue;
            }
            for refused in [chat, models] {
                assert_eq!(refused.status(), 401);
                let body: Value = refused.json().await.unwrap();
                assert_eq!(body["error"]["code"], "invalid_api_key");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("accepts only bearer tokens"), "{message}");
            }
        }
    })
    .await;
}
