//! The data plane of real nodes against a real `sluice mock-llm`: every
//! endpoint through every node in both API formats, revocation across the
//! cluster, unbuffered streaming, fallbacks and circuit breakers, bad
//! input, clients that go away, upstreams that break mid-stream, and a
//! node stopped while it streams.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sluice_e2e::dataplane::{
    metric_value, model_ids, DataPlane, ProxyClient, Reply, SseStream, Transcript, CLAUDE, EMBED,
    GPT, OPENAI_PROVIDER,
};
use sluice_e2e::{json, Cluster, Value};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Breakers open after 3 failures for 2 s; retries back off briefly; bodies
/// over 64 KiB are refused.
const CONFIG: &str = r#"
[proxy]
breaker_failures = 3
breaker_cooldown_ms = 2000
backoff_base_ms = 10
backoff_max_ms = 50

[limits]
max_body_bytes = 65536
"#;
const COOLDOWN: Duration = Duration::from_millis(2000);
const MAX_BODY: usize = 65536;
/// The headers an Anthropic SDK sends, the key as `x-api-key`.
const ANTHROPIC_VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

fn start() -> DataPlane {
    DataPlane::start(
        Cluster::builder()
            .nodes(3)
            .fast_elections()
            .config_extra(CONFIG)
            .budget(Duration::from_secs(90)),
    )
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn streamed(mut request: Value, include_usage: bool) -> Value {
    request["stream"] = json!(true);
    if include_usage {
        request["stream_options"] = json!({"include_usage": true});
    }
    request
}

fn messages(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]})
}

/// A proxy client that authenticates the Anthropic way.
fn anthropic_headers(key: &str) -> [(&str, &str); 2] {
    [("x-api-key", key), ANTHROPIC_VERSION]
}

fn assert_json_ok(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: content-type {:?}",
        reply.header("content-type")
    );
    assert!(
        reply.header("x-request-id").is_some(),
        "{what}: no x-request-id"
    );
}

/// Reads a stream that must be a 200 `text/event-stream` to its end.
fn read_stream(stream: SseStream, what: &str) -> Transcript {
    assert!(
        stream.headers.contains_key("x-request-id"),
        "{what}: no x-request-id"
    );
    if stream.status != 200 {
        let status = stream.status;
        panic!("{what}: status {status}: {}", stream.text());
    }
    assert!(
        stream.content_type().starts_with("text/event-stream"),
        "{what}: content-type {}",
        stream.content_type()
    );
    let transcript = stream.read_to_end();
    assert!(
        transcript.read_error.is_none(),
        "{what}: {}",
        transcript.dump()
    );
    transcript
}

fn usage_chunks(transcript: &Transcript) -> Vec<Value> {
    transcript
        .chunks()
        .into_iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect()
}

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// A Responses API stream from its `response.created` to its
/// `response.completed`.
fn assert_responses_stream_whole(stream: &Transcript) {
    let names = stream.names();
    assert_eq!(
        names.first(),
        Some(&"response.created"),
        "{}",
        stream.dump()
    );
    assert_eq!(
        names.last(),
        Some(&"response.completed"),
        "{}",
        stream.dump()
    );
}

/// A chat stream on `route` through node `id` whose upstream cuts it: the
/// data, then an error event, no `[DONE]`.
fn check_cut_stream(plane: &DataPlane, id: u64, route: &str) {
    let what = format!("node {id}, stream cut on {route}");
    let stream = read_stream(
        plane.proxy(id).stream(
            "/v1/chat/completions",
            &streamed(
                chat(route, "a reply long enough to be cut after two chunks"),
                false,
            ),
        ),
        &what,
    );
    assert!(!stream.chunks().is_empty(), "{what}: {}", stream.dump());
    assert!(
        stream.events.last().is_some_and(|e| e.is_error()),
        "{what}: {}",
        stream.dump()
    );
    assert_eq!(stream.done_count(), 0, "{what}: {}", stream.dump());
}

/// A key limited to 3 requests a minute gets exactly 3 on `route`, spread
/// over the nodes, and a 429 for the 4th.
fn check_quota_holds(plane: &DataPlane, key_name: &str, route: &str) {
    let (_, limited) = plane.create_key_with(key_name, json!({"rpm": 3}));
    let mut answers = Vec::new();
    for id in [1, 2, 3, 1] {
        let reply = ProxyClient::new(plane.cluster.proxy_url(id), Some(&limited))
            .post("/v1/chat/completions", &chat(route, "counted"));
        answers.push(reply.status);
    }
    assert_eq!(answers, [200, 200, 200, 429], "{route}: {answers:?}");
}

/// Waits until node 1's usage report by provider has a group for which
/// `recorded` holds.
fn wait_provider_usage(plane: &DataPlane, what: &str, recorded: impl Fn(&Value) -> bool) {
    let admin = plane.cluster.admin(1);
    let mut last = Value::Null;
    let found = plane
        .cluster
        .deadline()
        .within(Duration::from_secs(30))
        .poll(what, || {
            let (status, report) = admin.get("/admin/v1/usage?from=-1h&group_by=provider");
            last = report;
            status == 200
                && last["groups"]
                    .as_array()
                    .is_some_and(|groups| groups.iter().any(&recorded))
        });
    found.unwrap_or_else(|e| panic!("{e}: last report {last}"));
}

/// Chat completions, plain and streamed (with and without usage), on
/// `route` through `proxy`.
fn check_chat(proxy: &ProxyClient, node: u64, route: &str) {
    let what = format!("node {node}, chat on {route}");
    let text = "hello from the end to end suite";
    let reply = proxy.post("/v1/chat/completions", &chat(route, text));
    assert_json_ok(&reply, &what);
    assert_eq!(
        reply.body["object"], "chat.completion",
        "{what}: {}",
        reply.text
    );
    let content = reply.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no content: {}", reply.text));
    assert!(content.contains(text), "{what}: {content}");
    let usage = &reply.body["usage"];
    assert!(
        usage["prompt_tokens"].as_u64().is_some_and(|n| n > 0)
            && usage["completion_tokens"].as_u64().is_some_and(|n| n > 0)
            && usage["total_tokens"].as_u64().is_some(),
        "{what}: usage {usage}"
    );

    let plain = read_stream(
        proxy.stream("/v1/chat/completions", &streamed(chat(route, text), false)),
        &format!("{what}, stream"),
    );
    let chunks = plain.chunks();
    assert!(chunks.len() >= 2, "{what}, stream: {}", plain.dump());
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{what}, stream: {}",
        plain.dump()
    );
    assert!(
        plain.ends_with_done() && plain.done_count() == 1,
        "{what}, stream must end with one [DONE]: {}",
        plain.dump()
    );
    assert!(
        usage_chunks(&plain).is_empty(),
        "{what}, stream: a usage chunk nobody asked for: {}",
        plain.dump()
    );
    assert_eq!(plain.openai_text(), content, "{what}, stream text");

    let with_usage = read_stream(
        proxy.stream("/v1/chat/completions", &streamed(chat(route, text), true)),
        &format!("{what}, stream with usage"),
    );
    assert!(with_usage.ends_with_done(), "{}", with_usage.dump());
    let usage_chunks = usage_chunks(&with_usage);
    assert_eq!(
        usage_chunks.len(),
        1,
        "{what}: exactly one usage chunk: {}",
        with_usage.dump()
    );
    assert_eq!(
        usage_chunks[0]["choices"],
        json!([]),
        "{what}: the usage chunk has no choices: {}",
        with_usage.dump()
    );
    assert_eq!(
        &usage_chunks[0],
        with_usage.chunks().last().expect("chunks"),
        "{what}: the usage chunk comes last: {}",
        with_usage.dump()
    );
    assert_eq!(
        usage_chunks[0]["usage"]["total_tokens"],
        usage["total_tokens"],
        "{what}: streamed and plain usage differ: {}",
        with_usage.dump()
    );
    assert_eq!(with_usage.openai_text(), content);
}

#[test]
fn openai_endpoints_answer_on_every_node_for_both_provider_kinds() {
    let plane = start();
    for id in plane.cluster.ids() {
        let proxy = plane.proxy(id);
        // Chat: passed through to an OpenAI-kind provider, translated to
        // and from an Anthropic-kind one.
        check_chat(&proxy, id, GPT);
        check_chat(&proxy, id, CLAUDE);

        // Completions, plain and streamed.
        let request = json!({"model": GPT, "prompt": "complete this please", "max_tokens": 32});
        let reply = proxy.post("/v1/completions", &request);
        assert_json_ok(&reply, &format!("node {id}, completions"));
        assert_eq!(reply.body["object"], "text_completion", "{}", reply.text);
        let text = reply.body["choices"][0]["text"].as_str().unwrap_or("");
        assert!(!text.is_empty(), "node {id}: {}", reply.text);
        assert!(reply.body["usage"]["total_tokens"].as_u64().is_some());
        let stream = read_stream(
            proxy.stream("/v1/completions", &streamed(request.clone(), false)),
            &format!("node {id}, completions stream"),
        );
        assert!(stream.ends_with_done(), "{}", stream.dump());
        assert!(
            stream
                .chunks()
                .iter()
                .all(|c| c["object"] == "text_completion"),
            "{}",
            stream.dump()
        );
        assert_eq!(stream.openai_text(), text);
        // An Anthropic-kind provider has no completions endpoint.
        let reply = proxy.post(
            "/v1/completions",
            &json!({"model": CLAUDE, "prompt": "complete this"}),
        );
        assert_eq!(reply.status, 400, "node {id}: {}", reply.text);
        reply.openai_error();

        // Embeddings, as floats and as base64.
        let reply = proxy.post(
            "/v1/embeddings",
            &json!({"model": EMBED, "input": ["first", "second"]}),
        );
        assert_json_ok(&reply, &format!("node {id}, embeddings"));
        assert_eq!(reply.body["object"], "list", "{}", reply.text);
        let data = reply.body["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "{}", reply.text);
        assert!(data
            .iter()
            .all(|d| d["embedding"].as_array().is_some_and(|v| !v.is_empty())));
        assert!(reply.body["usage"]["prompt_tokens"].as_u64().is_some());
        let reply = proxy.post(
            "/v1/embeddings",
            &json!({"model": EMBED, "input": "one", "encoding_format": "base64"}),
        );
        assert_json_ok(&reply, &format!("node {id}, base64 embeddings"));
        assert!(
            reply.body["data"][0]["embedding"].is_string(),
            "{}",
            reply.text
        );
    }
}

#[test]
fn models_list_shows_exactly_the_routes_a_key_may_use() {
    let plane = start();
    for id in plane.cluster.ids() {
        let proxy = plane.proxy(id);
        let reply = proxy.get("/v1/models");
        assert_json_ok(&reply, &format!("node {id}, models"));
        assert_eq!(reply.body["object"], "list");
        let mut ids = model_ids(&reply.body);
        ids.sort_unstable();
        assert_eq!(ids, vec![CLAUDE, EMBED, GPT], "node {id}: {}", reply.text);
        assert!(reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|m| m["object"] == "model"));

        let restricted = proxy.with_key(Some(&plane.restricted_key));
        let reply = restricted.get("/v1/models");
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            model_ids(&reply.body),
            vec![GPT],
            "node {id}: {}",
            reply.text
        );

        let reply = proxy.get(&format!("/v1/models/{CLAUDE}"));
        assert_json_ok(&reply, &format!("node {id}, model {CLAUDE}"));
        assert_eq!(reply.body["id"], CLAUDE);
        let reply = restricted.get(&format!("/v1/models/{CLAUDE}"));
        assert_eq!(reply.status, 404, "node {id}: {}", reply.text);
        assert_eq!(reply.openai_error()["code"], "model_not_found");

        // Anthropic's list format for a client that sends anthropic-version.
        let reply = restricted.get_with("/v1/models", &[ANTHROPIC_VERSION]);
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["has_more"], false, "{}", reply.text);
        assert_eq!(reply.body["data"][0]["type"], "model", "{}", reply.text);
        assert_eq!(model_ids(&reply.body), vec![GPT]);
    }
}

#[test]
fn anthropic_messages_answer_on_every_node_for_both_provider_kinds() {
    let plane = start();
    let headers = anthropic_headers(&plane.key);
    for id in plane.cluster.ids() {
        let proxy = plane.proxy(id).with_key(None);
        // Passed through to an Anthropic-kind provider, translated to and
        // from an OpenAI-kind one.
        for route in [CLAUDE, GPT] {
            let what = format!("node {id}, messages on {route}");
            let text = "hello anthropic format";
            let reply = proxy.post_with("/v1/messages", &messages(route, text), &headers);
            assert_json_ok(&reply, &what);
            assert_eq!(reply.body["type"], "message", "{what}: {}", reply.text);
            assert_eq!(reply.body["role"], "assistant", "{what}: {}", reply.text);
            assert_eq!(reply.body["content"][0]["type"], "text", "{}", reply.text);
            let content = reply.body["content"][0]["text"].as_str().unwrap_or("");
            assert!(content.contains(text), "{what}: {}", reply.text);
            assert_eq!(reply.body["stop_reason"], "end_turn", "{}", reply.text);
            assert!(
                reply.body["usage"]["input_tokens"].as_u64().is_some()
                    && reply.body["usage"]["output_tokens"]
                        .as_u64()
                        .is_some_and(|n| n > 0),
                "{what}: {}",
                reply.text
            );

            let mut request = messages(route, text);
            request["stream"] = json!(true);
            let stream = read_stream(
                proxy.stream_with("/v1/messages", &request, &headers),
                &format!("{what}, stream"),
            );
            let names = stream.names();
            assert_eq!(names.first(), Some(&"message_start"), "{}", stream.dump());
            assert_eq!(names.last(), Some(&"message_stop"), "{}", stream.dump());
            for expected in [
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
            ] {
                assert!(names.contains(&expected), "{what}: {}", stream.dump());
            }
            assert!(
                stream
                    .events
                    .iter()
                    .all(|e| e.event.as_deref() == e.json()["type"].as_str()),
                "{what}: every event is named after its type: {}",
                stream.dump()
            );
            assert_eq!(stream.done_count(), 0, "{what}: {}", stream.dump());
            assert_eq!(stream.anthropic_text(), content, "{what}");
        }
    }
}

#[test]
fn key_revoked_through_one_node_is_refused_on_every_other_node() {
    let plane = start();
    let (id, secret) = plane.create_key("to-revoke", &[]);
    plane.wait_served(&secret, &[GPT]);
    for node in [2, 3] {
        let proxy = plane.proxy(node).with_key(Some(&secret));
        let reply = proxy.post("/v1/chat/completions", &chat(GPT, "before"));
        assert_eq!(
            reply.status, 200,
            "node {node} before revocation: {}",
            reply.text
        );
    }

    plane.write(&format!("/admin/v1/keys/{id}/revoke"), &json!({}));

    for node in [2, 3] {
        let proxy = plane.proxy(node).with_key(Some(&secret));
        let mut last = None;
        plane.cluster.wait_until(
            Duration::from_secs(10),
            format!("node {node} to refuse the revoked key"),
            || {
                let reply = proxy.post("/v1/chat/completions", &chat(GPT, "after"));
                let refused = reply.status == 401;
                last = Some(reply);
                refused
            },
        );
        let reply = last.expect("polled at least once");
        assert_eq!(reply.openai_error()["code"], "invalid_api_key");
        let reply = proxy.post_with(
            "/v1/messages",
            &messages(GPT, "after"),
            &[ANTHROPIC_VERSION],
        );
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.anthropic_error_type(), "authentication_error");
    }
    // The other keys still work.
    let reply = plane
        .proxy(3)
        .post("/v1/chat/completions", &chat(GPT, "still"));
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn stream_reaches_the_client_chunk_by_chunk() {
    let plane = start();
    plane.create_provider("slow", "openai", json!({"x-mock-chunk-ms": "100"}));
    plane.create_route("slow", &[("slow", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["slow"]);
    let text = "one two three four five six seven eight nine ten";
    let stream = read_stream(
        plane
            .proxy(2)
            .stream("/v1/chat/completions", &streamed(chat("slow", text), false)),
        "slow stream",
    );
    let data: Vec<_> = stream.events.iter().filter(|e| !e.is_done()).collect();
    assert!(data.len() >= 10, "{}", stream.dump());
    let first = data.first().expect("events").at;
    let last = data.last().expect("events").at;
    assert!(
        last >= Duration::from_millis(100 * (data.len() as u64 - 2)),
        "the mock paces its {} chunks at 100 ms: {}",
        data.len(),
        stream.dump()
    );
    assert!(
        first * 2 < last,
        "the first chunk ({first:?}) must arrive long before the last ({last:?}): {}",
        stream.dump()
    );
    assert!(stream.ends_with_done(), "{}", stream.dump());
}

#[test]
fn failing_deployment_opens_its_breaker_and_is_probed_after_the_cooldown() {
    let plane = start();
    let dead = format!("http://127.0.0.1:{}/v1", closed_port());
    plane.create_provider_at("dead", "openai", &dead, json!({}));
    // Nearly always tried first; the healthy deployment answers instead.
    plane.create_route(
        "flaky",
        &[("dead", "mock-gpt", 100), (OPENAI_PROVIDER, "mock-gpt", 1)],
        &[],
    );
    plane.wait_served(&plane.key, &["flaky"]);
    let node = 2;
    let proxy = plane.proxy(node);
    let dead_breaker = [("provider", "dead"), ("model", "mock-gpt")];
    let dead_failures = [("provider", "dead"), ("outcome", "connect_error")];
    let ask = || {
        let reply = proxy.post("/v1/chat/completions", &chat("flaky", "hi"));
        assert_eq!(
            reply.status, 200,
            "the healthy deployment answers: {}",
            reply.text
        );
    };

    let mut sent = 0;
    plane.cluster.wait_until(
        Duration::from_secs(20),
        "the dead deployment's breaker to open",
        || {
            ask();
            sent += 1;
            assert!(sent <= 50, "50 requests and the breaker is still closed");
            metric_value(
                &plane.metrics(node),
                "sluice_proxy_breaker_state",
                &dead_breaker,
            ) == Some(1.0)
        },
    );
    let opened = Instant::now();
    let metrics = plane.metrics(node);
    let failures = metric_value(
        &metrics,
        "sluice_proxy_upstream_attempts_total",
        &dead_failures,
    )
    .expect("connect errors counted");
    assert!(failures >= 3.0, "{metrics}");
    assert!(
        metric_value(
            &metrics,
            "sluice_proxy_upstream_attempts_total",
            &[("provider", OPENAI_PROVIDER), ("outcome", "ok")]
        )
        .is_some_and(|n| n >= sent as f64),
        "{metrics}"
    );
    // Breakers are the node's own judgement: another node's stays closed.
    assert_ne!(
        metric_value(
            &plane.metrics(3),
            "sluice_proxy_breaker_state",
            &dead_breaker
        ),
        Some(1.0)
    );

    // While open, the dead deployment is skipped.
    for _ in 0..3 {
        ask();
    }
    let now = metric_value(
        &plane.metrics(node),
        "sluice_proxy_upstream_attempts_total",
        &dead_failures,
    );
    if opened.elapsed() < COOLDOWN {
        assert_eq!(now, Some(failures), "an open breaker lets nothing through");
    }

    // After the cooldown, one probe goes through (and fails: open again).
    plane.cluster.wait_until(
        Duration::from_secs(15),
        "a probe of the dead deployment",
        || {
            ask();
            metric_value(
                &plane.metrics(node),
                "sluice_proxy_upstream_attempts_total",
                &dead_failures,
            )
            .is_some_and(|n| n > failures)
        },
    );
    let probed_after = opened.elapsed();
    assert!(
        probed_after + Duration::from_millis(300) >= COOLDOWN,
        "probed after {probed_after:?}, before the {COOLDOWN:?} cooldown"
    );
    let metrics = plane.metrics(node);
    assert_eq!(
        metric_value(
            &metrics,
            "sluice_proxy_upstream_attempts_total",
            &dead_failures
        ),
        Some(failures + 1.0),
        "exactly one probe: {metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "sluice_proxy_breaker_state", &dead_breaker),
        Some(1.0),
        "the failed probe opens the breaker again: {metrics}"
    );
}

#[test]
fn breaker_closes_again_when_its_probe_succeeds() {
    let plane = start();
    plane.create_provider("sick", "openai", json!({"x-mock-status": "500"}));
    plane.create_route(
        "heals",
        &[("sick", "mock-gpt", 100), (OPENAI_PROVIDER, "mock-gpt", 1)],
        &[],
    );
    plane.wait_served(&plane.key, &["heals"]);
    let node = 1;
    let proxy = plane.proxy(node);
    let sick_breaker = [("provider", "sick"), ("model", "mock-gpt")];
    let breaker = || {
        metric_value(
            &plane.metrics(node),
            "sluice_proxy_breaker_state",
            &sick_breaker,
        )
    };
    let ask = || {
        let reply = proxy.post("/v1/chat/completions", &chat("heals", "hi"));
        assert_eq!(
            reply.status, 200,
            "the healthy deployment answers: {}",
            reply.text
        );
    };
    plane.cluster.wait_until(
        Duration::from_secs(20),
        "the sick deployment's breaker to open",
        || {
            ask();
            breaker() == Some(1.0)
        },
    );

    // The provider is fixed; after the cooldown the probe succeeds.
    plane.update_provider("sick", "openai", &plane.mock.v1(), json!({}));
    plane.cluster.wait_until(
        Duration::from_secs(15),
        "the sick deployment's breaker to close",
        || {
            ask();
            breaker() == Some(0.0)
        },
    );
    let metrics = plane.metrics(node);
    assert!(
        metric_value(
            &metrics,
            "sluice_proxy_upstream_attempts_total",
            &[("provider", "sick"), ("outcome", "ok")]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[test]
fn rate_limited_upstream_is_passed_on_without_opening_its_breaker() {
    let plane = start();
    plane.create_provider(
        "limited",
        "openai",
        json!({"x-mock-status": "429", "x-mock-retry-after-ms": "50"}),
    );
    plane.create_route("busy", &[("limited", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["busy"]);
    let proxy = plane.proxy(2);
    // More requests than it takes failures to open a breaker (3).
    for _ in 0..4 {
        let reply = proxy.post("/v1/chat/completions", &chat("busy", "hi"));
        assert_eq!(reply.status, 429, "{}", reply.text);
        // The upstream's own error, passed on as OpenAI sent it.
        assert_eq!(
            reply.openai_error()["code"],
            "rate_limit_exceeded",
            "{}",
            reply.text
        );
        assert_eq!(
            reply.header("retry-after-ms"),
            Some("50"),
            "{:?}",
            reply.headers
        );
        assert!(reply.header("retry-after").is_some(), "{:?}", reply.headers);
    }
    let reply = proxy.post_with(
        "/v1/messages",
        &messages("busy", "hi"),
        &[ANTHROPIC_VERSION],
    );
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.anthropic_error_type(), "rate_limit_error");
    assert_eq!(reply.header("retry-after-ms"), Some("50"));
    let metrics = plane.metrics(2);
    // Each request was retried: 3 attempts apiece.
    assert_eq!(
        metric_value(
            &metrics,
            "sluice_proxy_upstream_attempts_total",
            &[("provider", "limited"), ("outcome", "rate_limited")]
        ),
        Some(15.0),
        "{metrics}"
    );
    assert_ne!(
        metric_value(
            &metrics,
            "sluice_proxy_breaker_state",
            &[("provider", "limited"), ("model", "mock-gpt")]
        ),
        Some(1.0),
        "busy is not broken: {metrics}"
    );
    assert_eq!(plane.mock.requests_to("/v1/chat/completions"), 15);
}

#[test]
fn route_whose_only_deployment_fails_answers_through_its_fallback() {
    let plane = start();
    plane.create_provider("broken", "openai", json!({"x-mock-status": "500"}));
    let dead = format!("http://127.0.0.1:{}/v1", closed_port());
    plane.create_provider_at("dead", "openai", &dead, json!({}));
    plane.create_route("lonely", &[("broken", "mock-gpt", 1)], &[GPT]);
    plane.create_route("doomed", &[("broken", "mock-gpt", 1)], &[]);
    plane.create_route("unreachable", &[("dead", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["lonely", "doomed", "unreachable"]);
    let proxy = plane.proxy(3);

    let reply = proxy.post("/v1/chat/completions", &chat("lonely", "fall back"));
    assert_json_ok(&reply, "lonely");
    assert_eq!(reply.body["object"], "chat.completion");
    let metrics = plane.metrics(3);
    assert!(
        metric_value(
            &metrics,
            "sluice_proxy_upstream_attempts_total",
            &[("provider", "broken"), ("outcome", "server_error")]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "sluice_proxy_upstream_attempts_total",
            &[("provider", OPENAI_PROVIDER), ("outcome", "ok")]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // Streams fall back too, before their first byte.
    let stream = read_stream(
        proxy.stream(
            "/v1/chat/completions",
            &streamed(chat("lonely", "fall back"), false),
        ),
        "lonely stream",
    );
    assert!(stream.ends_with_done(), "{}", stream.dump());

    // Without a fallback the client gets the failure, with when to retry.
    let reply = proxy.post("/v1/chat/completions", &chat("doomed", "no luck"));
    assert!(reply.status >= 500, "{} {}", reply.status, reply.text);
    reply.openai_error();
    for header in ["retry-after", "retry-after-ms", "x-request-id"] {
        assert!(
            reply.header(header).is_some(),
            "no {header}: {:?}",
            reply.headers
        );
    }
    // A stream that fails before its first byte is an error answer, not a stream.
    let stream = proxy.stream(
        "/v1/chat/completions",
        &streamed(chat("doomed", "no luck"), false),
    );
    assert!(stream.status >= 500, "status {}", stream.status);
    assert!(
        stream.content_type().starts_with("application/json"),
        "{}",
        stream.content_type()
    );
    assert!(stream.headers.contains_key("retry-after-ms"));
    let text = stream.text();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert!(body["error"]["message"].is_string(), "{text}");
    let reply = proxy.post("/v1/chat/completions", &chat("unreachable", "no luck"));
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert_eq!(reply.openai_error()["code"], "upstream_error");
    // It names the provider and deployment that failed: where to look.
    let message = reply.openai_error()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("provider `dead`, deployment `mock-gpt`"),
        "the connection error does not name the upstream: {message}"
    );
    for header in ["retry-after", "retry-after-ms"] {
        assert!(
            reply.header(header).is_some(),
            "no {header}: {:?}",
            reply.headers
        );
    }
    // Three connect errors opened its breaker: now the gateway answers at
    // once, saying when the probe will be let through.
    let reply = proxy.post_with(
        "/v1/messages",
        &messages("unreachable", "no luck"),
        &[ANTHROPIC_VERSION],
    );
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.anthropic_error_type(), "overloaded_error");
    let after_ms: u64 = reply
        .header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after-ms: {:?}", reply.headers));
    assert!(
        after_ms as u128 <= COOLDOWN.as_millis(),
        "retry after {after_ms} ms"
    );
    // The same upstream failure in Anthropic's format.
    plane.create_provider_at("dead-too", "openai", &dead, json!({}));
    plane.create_route("unreachable-too", &[("dead-too", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["unreachable-too"]);
    let reply = proxy.post_with(
        "/v1/messages",
        &messages("unreachable-too", "no luck"),
        &[ANTHROPIC_VERSION],
    );
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert_eq!(reply.anthropic_error_type(), "api_error");
    assert!(reply.header("retry-after-ms").is_some());
}

#[test]
fn upstream_that_does_not_answer_in_time_is_a_504() {
    let plane = start();
    // The mock waits 3 s before its headers; the provider allows 200 ms.
    for name in ["sluggish", "sluggish-stream"] {
        plane.write(
            "/admin/v1/providers",
            &json!({
                "name": name,
                "kind": "openai",
                "base_url": plane.mock.v1(),
                "headers": {"x-mock-header-delay-ms": "3000"},
                "timeouts": {"first_byte_ms": 200},
            }),
        );
        plane.create_route(name, &[(name, "mock-gpt", 1)], &[]);
    }
    plane.wait_served(&plane.key, &["sluggish", "sluggish-stream"]);
    let proxy = plane.proxy(3);

    let started = Instant::now();
    let reply = proxy.post("/v1/chat/completions", &chat("sluggish", "hurry"));
    let took = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert_eq!(
        reply.openai_error()["code"],
        "upstream_timeout",
        "{}",
        reply.text
    );
    for header in ["retry-after", "retry-after-ms", "x-request-id"] {
        assert!(
            reply.header(header).is_some(),
            "no {header}: {:?}",
            reply.headers
        );
    }
    assert!(
        took < Duration::from_millis(2500),
        "three 200 ms attempts took {took:?}: the timeout was not applied"
    );

    let stream = proxy.stream(
        "/v1/chat/completions",
        &streamed(chat("sluggish-stream", "hurry"), false),
    );
    assert_eq!(stream.status, 504);
    assert!(
        stream.content_type().starts_with("application/json"),
        "{}",
        stream.content_type()
    );
}

#[test]
fn bad_requests_are_refused_in_the_clients_format() {
    let plane = start();
    let proxy = plane.proxy(2);

    // OpenAI format.
    let reply = proxy.post_raw("/v1/chat/completions", r#"{"model": "gpt", "#);
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.openai_error()["type"], "invalid_request_error");
    assert!(reply.header("x-request-id").is_some());

    let reply = proxy.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.openai_error()["param"], "model", "{}", reply.text);

    let reply = proxy.post("/v1/chat/completions", &chat("no-such-route", "hi"));
    assert_eq!(reply.status, 404, "{}", reply.text);
    let error = reply.openai_error();
    assert_eq!(error["code"], "model_not_found", "{}", reply.text);
    assert_eq!(error["param"], "model", "{}", reply.text);

    for key in [Some("sk-not-a-sluice-key"), None] {
        let reply = proxy
            .with_key(key)
            .post("/v1/chat/completions", &chat(GPT, "hi"));
        assert_eq!(reply.status, 401, "key {key:?}: {}", reply.text);
        assert_eq!(reply.openai_error()["code"], "invalid_api_key");
        assert!(reply.header("x-request-id").is_some());
    }

    let reply = proxy
        .with_key(Some(&plane.restricted_key))
        .post("/v1/chat/completions", &chat(CLAUDE, "hi"));
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.openai_error()["param"], "model");

    let reply = proxy.get("/v1/no-such-endpoint");
    assert_eq!(reply.status, 404, "{}", reply.text);
    reply.openai_error();

    let reply = proxy.get("/v1/chat/completions");
    assert_eq!(reply.status, 405, "{}", reply.text);
    reply.openai_error();

    // `x-api-key` works on the OpenAI endpoints too.
    let reply = proxy.with_key(None).post_with(
        "/v1/chat/completions",
        &chat(GPT, "hi"),
        &[("x-api-key", &plane.key)],
    );
    assert_eq!(reply.status, 200, "{}", reply.text);

    // Every answer carries a request id, whatever its path.
    for path in ["/healthz", "/readyz", "/metrics", "/v1/models"] {
        let reply = proxy.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        assert!(reply.header("x-request-id").is_some(), "GET {path}");
    }

    // Anthropic format on /v1/messages.
    let anthropic = proxy.with_key(None);
    let headers = anthropic_headers(&plane.key);
    let cases: Vec<(Reply, u16, &str)> = vec![
        (
            anthropic.post_raw_with("/v1/messages", br#"{"model": "#.to_vec(), &headers),
            400,
            "invalid_request_error",
        ),
        (
            anthropic.post_with(
                "/v1/messages",
                &json!({"max_tokens": 8, "messages": []}),
                &headers,
            ),
            400,
            "invalid_request_error",
        ),
        (
            anthropic.post_with("/v1/messages", &messages("no-such-route", "hi"), &headers),
            404,
            "not_found_error",
        ),
        (
            anthropic.post_with(
                "/v1/messages",
                &messages(GPT, "hi"),
                &[("x-api-key", "sk-not-a-sluice-key"), ANTHROPIC_VERSION],
            ),
            401,
            "authentication_error",
        ),
        (
            anthropic.post_with(
                "/v1/messages",
                &messages(CLAUDE, "hi"),
                &anthropic_headers(&plane.restricted_key),
            ),
            403,
            "permission_error",
        ),
    ];
    for (i, (reply, status, kind)) in cases.iter().enumerate() {
        assert_eq!(reply.status, *status, "case {i}: {}", reply.text);
        assert_eq!(
            reply.anthropic_error_type(),
            *kind,
            "case {i}: {}",
            reply.text
        );
        assert!(reply.header("x-request-id").is_some(), "case {i}");
    }
}

#[test]
fn oversized_body_is_refused_with_413_and_the_connection_closed_cleanly() {
    let plane = start();
    let oversized = serde_json::to_vec(&chat(GPT, &"x".repeat(MAX_BODY + 1))).expect("json");
    let anthropic = anthropic_headers(&plane.key);
    let mut problems = Vec::new();
    for round in 0..3 {
        for how in ["declared length", "chunked", "anthropic"] {
            let what = format!("round {round}, {how}");
            // A fresh client whose next request reuses the connection if it may.
            let proxy = plane.proxy(1);
            let reply = match how {
                "declared length" => proxy.post_raw("/v1/chat/completions", oversized.clone()),
                "chunked" => proxy.post_chunked("/v1/chat/completions", oversized.clone()),
                _ => proxy.with_key(None).post_raw_with(
                    "/v1/messages",
                    oversized.clone(),
                    &anthropic,
                ),
            };
            assert_eq!(reply.status, 413, "{what}: {}", reply.text);
            if how == "anthropic" {
                assert_eq!(reply.anthropic_error_type(), "request_too_large");
            } else {
                assert_eq!(reply.openai_error()["code"], "request_too_large", "{what}");
            }
            // The proxy does not read the rest of the body and closes the
            // connection: it must say so, or a keep-alive client sends its
            // next request into a closed connection.
            if reply.header("connection") != Some("close") {
                problems.push(format!(
                    "{what}: 413 without `connection: close`: {:?}",
                    reply.headers
                ));
            }
            let next = proxy.post("/v1/chat/completions", &chat(GPT, "next"));
            if next.status != 200 {
                problems.push(format!(
                    "{what}: the next request on the same client: {} {}",
                    next.status, next.text
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn client_that_leaves_mid_stream_cancels_the_upstream_stream() {
    let plane = start();
    plane.create_provider("slow", "openai", json!({"x-mock-chunk-ms": "100"}));
    plane.create_route("slow", &[("slow", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["slow"]);
    assert_eq!(plane.mock.counter("streams_cancelled"), 0);
    let long = "word ".repeat(60);
    let mut stream = plane.proxy(1).stream(
        "/v1/chat/completions",
        &streamed(chat("slow", &long), false),
    );
    assert_eq!(stream.status, 200);
    let first = stream
        .next_event()
        .expect("reading")
        .expect("a first event");
    assert!(!first.is_done() && !first.is_error(), "{first:?}");
    drop(stream);

    plane.cluster.wait_until(
        Duration::from_secs(10),
        "the mock to see its stream cancelled",
        || plane.mock.counter("streams_cancelled") >= 1,
    );
    let stats = plane.mock.stats();
    assert_eq!(stats["streams_completed"], 0, "{stats}");
    plane.cluster.wait_until(
        Duration::from_secs(5),
        "node 1 to count the stream as client_gone",
        || {
            metric_value(
                &plane.metrics(1),
                "sluice_proxy_stream_ends_total",
                &[("outcome", "client_gone")],
            ) == Some(1.0)
        },
    );
}

#[test]
fn upstream_failing_mid_stream_ends_the_stream_with_an_error_event() {
    let plane = start();
    let drop_after_two = json!({"x-mock-drop-after-chunks": "2"});
    plane.create_provider("dropper", "openai", drop_after_two.clone());
    plane.create_provider("anthropic-dropper", "anthropic", drop_after_two);
    plane.create_route("drops", &[("dropper", "mock-gpt", 1)], &[]);
    plane.create_route(
        "anthropic-drops",
        &[("anthropic-dropper", "mock-claude", 1)],
        &[],
    );
    plane.wait_served(&plane.key, &["drops", "anthropic-drops"]);
    let text = "a reply long enough to be cut after two chunks";
    for id in plane.cluster.ids() {
        for route in ["drops", "anthropic-drops"] {
            let what = format!("node {id}, chat stream on {route}");
            let stream = read_stream(
                plane
                    .proxy(id)
                    .stream("/v1/chat/completions", &streamed(chat(route, text), false)),
                &what,
            );
            assert!(
                !stream.chunks().is_empty(),
                "{what}: data before the error: {}",
                stream.dump()
            );
            let last = stream.events.last().expect("events");
            assert!(
                last.is_error(),
                "{what}: ends with an error event: {}",
                stream.dump()
            );
            assert!(
                last.json()["error"]["message"].is_string(),
                "{what}: {}",
                stream.dump()
            );
            assert_eq!(
                stream.done_count(),
                0,
                "{what}: no [DONE]: {}",
                stream.dump()
            );

            let what = format!("node {id}, messages stream on {route}");
            let mut request = messages(route, text);
            request["stream"] = json!(true);
            let stream = read_stream(
                plane.proxy(id).with_key(None).stream_with(
                    "/v1/messages",
                    &request,
                    &anthropic_headers(&plane.key),
                ),
                &what,
            );
            let names = stream.names();
            assert_eq!(names.last(), Some(&"error"), "{what}: {}", stream.dump());
            assert!(
                !names.contains(&"message_stop"),
                "{what}: {}",
                stream.dump()
            );
            assert_eq!(
                stream.events.last().expect("events").json()["type"],
                "error",
                "{what}: {}",
                stream.dump()
            );
        }
    }
}

#[test]
fn node_stopped_with_sigterm_finishes_its_streams_then_exits_0() {
    let mut plane = start();
    plane.create_provider("slow", "openai", json!({"x-mock-chunk-ms": "100"}));
    plane.create_route("slow", &[("slow", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["slow"]);
    let node = 3;
    let proxy_addr = plane.cluster.plan(node).proxy;
    let text = "one two three four five six seven eight nine ten eleven twelve";
    let mut stream = plane
        .proxy(node)
        .stream("/v1/chat/completions", &streamed(chat("slow", text), false));
    assert_eq!(stream.status, 200);
    let first = stream
        .next_event()
        .expect("reading")
        .expect("a first event");
    let reader = std::thread::spawn(move || {
        let mut rest = stream.read_to_end();
        rest.events.insert(0, first);
        rest
    });

    let pid = plane.cluster.pid(node).expect("node runs");
    kill(
        Pid::from_raw(i32::try_from(pid).expect("pid fits i32")),
        Signal::SIGTERM,
    )
    .expect("sending SIGTERM");
    plane.cluster.wait_until(
        Duration::from_secs(5),
        "the stopping node to refuse new connections",
        || TcpStream::connect_timeout(&proxy_addr, Duration::from_millis(500)).is_err(),
    );
    let status = plane.cluster.stop(node);
    assert!(status.success(), "node {node} exited with {status}");

    let transcript = reader.join().expect("the reader thread");
    assert!(
        transcript.read_error.is_none() && transcript.ends_with_done(),
        "the in-flight stream completes: {}",
        transcript.dump()
    );
    assert!(transcript.chunks().len() >= 10, "{}", transcript.dump());
    let reply = plane.proxy(node).get("/healthz");
    assert_eq!(
        reply.status, 0,
        "a stopped node answers nothing: {}",
        reply.text
    );
    // The rest of the cluster still serves.
    let reply = plane
        .proxy(1)
        .post("/v1/chat/completions", &chat(GPT, "still here"));
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// The Responses API through every node: answers whole and streamed, a
/// follow-up reaches the upstream that made the response it follows
/// whichever node it lands on (two accounts behind one route, each
/// knowing only its own responses), stored responses are read and deleted
/// through any node, a key reads only what its routes reach, and quotas
/// apply. (Routes of other providers translate it: `responses_translated`.)
#[test]
fn the_responses_api_answers_on_every_node_and_follows_up_where_it_began() {
    let plane = start();
    let other = sluice_e2e::dataplane::MockLlm::start(
        &plane.cluster.root().join("mock-llm-2.log"),
        plane.cluster.deadline(),
    );
    plane.create_provider_at("second-account", "openai", &other.v1(), json!({}));
    plane.create_route(
        "gpt-two",
        &[
            (OPENAI_PROVIDER, "mock-gpt", 1),
            ("second-account", "mock-gpt", 1),
        ],
        &[],
    );
    plane.wait_served(&plane.key, &["gpt-two"]);

    // Responses through every node, until both accounts have made some
    // (the route picks one at random each time): a follow-up then proves
    // something for each.
    let ids = plane.cluster.ids();
    let mut made = Vec::new();
    for id in ids.iter().copied().cycle().take(30) {
        let both =
            plane.mock.requests_to("/v1/responses") > 0 && other.requests_to("/v1/responses") > 0;
        if made.len() >= ids.len() && both {
            break;
        }
        let reply = plane.proxy(id).post(
            "/v1/responses",
            &json!({"model": "gpt-two", "input": "hello from the responses api", "instructions": "be brief"}),
        );
        assert_json_ok(&reply, &format!("node {id}, responses"));
        assert_eq!(reply.body["object"], "response", "{}", reply.text);
        let response_id = reply.body["id"].as_str().expect("id").to_owned();
        assert!(response_id.starts_with("resp_"), "{response_id}");
        let text = reply.body["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains("hello from the responses api"),
            "{}",
            reply.text
        );
        assert!(
            reply.body["usage"]["input_tokens"].as_u64() > Some(0),
            "{}",
            reply.text
        );
        made.push(response_id);
    }
    assert!(
        plane.mock.requests_to("/v1/responses") > 0 && other.requests_to("/v1/responses") > 0,
        "both accounts served within 30 responses"
    );
    // Follow-ups through every other node: each goes where its first
    // response was made (the other account answers 404 for it).
    for (i, previous) in made.iter().enumerate() {
        for id in plane.cluster.ids() {
            let reply = plane.proxy(id).post(
                "/v1/responses",
                &json!({"model": "gpt-two", "input": format!("and then {i}"), "previous_response_id": previous}),
            );
            assert_json_ok(&reply, &format!("node {id}, follow-up of {previous}"));
            // The upstream saw its own id.
            assert!(
                reply.body["previous_response_id"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("resp_mock")),
                "{}",
                reply.text
            );
        }
    }

    // Streamed: typed events, the id wrapped in every event that carries
    // the response, usage in the last one.
    let stream = read_stream(
        plane.proxy(2).stream(
            "/v1/responses",
            &json!({"model": GPT, "input": "stream these words please", "stream": true}),
        ),
        "node 2, responses stream",
    );
    assert_responses_stream_whole(&stream);
    let events = stream.chunks();
    let created = &events[0]["response"]["id"];
    let completed = &events[events.len() - 1]["response"];
    assert_eq!(&completed["id"], created);
    assert!(created.as_str().is_some_and(|id| id.starts_with("resp_")));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(
        Some(deltas.as_str()),
        completed["output"][0]["content"][0]["text"].as_str()
    );
    assert!(completed["usage"]["output_tokens"].as_u64() > Some(0));

    // Stored responses, through any node; then gone.
    let first = &made[0];
    let got = plane.proxy(3).get(&format!("/v1/responses/{first}"));
    assert_json_ok(&got, "get a stored response");
    assert_eq!(got.body["id"], first.as_str());
    let deleted = plane.proxy(1).delete(&format!("/v1/responses/{first}"));
    assert_json_ok(&deleted, "delete a stored response");
    assert_eq!(deleted.body["deleted"], true, "{}", deleted.text);
    let gone = plane.proxy(2).get(&format!("/v1/responses/{first}"));
    assert_eq!(gone.status, 404, "{}", gone.text);
    gone.openai_error();
    let unknown = plane.proxy(1).get("/v1/responses/resp_not_ours");
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    // A key whose routes do not reach the second account cannot read its
    // responses.
    plane.create_route("gpt-second", &[("second-account", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["gpt-second"]);
    let made_at = |route: &str| {
        let reply = plane.proxy(1).post(
            "/v1/responses",
            &json!({"model": route, "input": "where am I"}),
        );
        assert_json_ok(&reply, route);
        reply.body["id"].as_str().expect("id").to_owned()
    };
    let (at_first, at_second) = (made_at(GPT), made_at("gpt-second"));
    let (_, gpt_only) = plane.create_key("responses-gpt-only", &[GPT]);
    plane.wait_served(&gpt_only, &[GPT]);
    let restricted = plane.proxy(3).with_key(Some(&gpt_only));
    assert_eq!(
        restricted.get(&format!("/v1/responses/{at_first}")).status,
        200
    );
    let hidden = restricted.get(&format!("/v1/responses/{at_second}"));
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    let hidden = restricted.get(&format!("/v1/responses/{at_second}/input_items"));
    assert_eq!(hidden.status, 404, "{}", hidden.text);

    // Its input items, read through another node, with the client's query.
    let items = plane.proxy(2).get(&format!(
        "/v1/responses/{at_first}/input_items?limit=5&order=asc"
    ));
    assert_eq!(items.status, 200, "{}", items.text);
    assert_eq!(items.body["object"], "list", "{}", items.text);
    assert_eq!(
        items.body["data"][0]["content"][0]["text"], "where am I",
        "{}",
        items.text
    );
    let refused = plane
        .proxy(2)
        .get(&format!("/v1/responses/{at_first}/input_items?after={{x}}"));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["param"], "query", "{}", refused.text);
    let bad = plane
        .proxy(2)
        .post(&format!("/v1/responses/{at_first}/input_items"), &json!({}));
    assert_eq!(bad.status, 405, "{}", bad.text);

    // Quotas apply as on chat completions.
    let (_, limited) = plane.create_key_with("responses-rpm", json!({"rpm": 2}));
    plane.wait_served(&limited, &[GPT]);
    let proxy = plane.proxy(1).with_key(Some(&limited));
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            proxy
                .post("/v1/responses", &json!({"model": GPT, "input": "count me"}))
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429], "rpm 2");
}

/// Anthropic's token counting through every node: forwarded to an
/// Anthropic provider, estimated for a route without one, and the
/// response says which.
#[test]
fn count_tokens_is_forwarded_or_estimated_and_says_which() {
    let plane = start();
    let before = plane.mock.requests_to("/v1/messages/count_tokens");
    let count = |route: &str| {
        json!({"model": route, "system": "be brief",
               "messages": [{"role": "user", "content": "hello there"}]})
    };
    for id in plane.cluster.ids() {
        let proxy = plane.proxy(id);
        let headers = anthropic_headers(&plane.key);
        let upstream = proxy.post_with("/v1/messages/count_tokens", &count(CLAUDE), &headers);
        assert_eq!(upstream.status, 200, "node {id}: {}", upstream.text);
        // The mock's rule: two messages of two words.
        assert_eq!(
            upstream.body,
            json!({"input_tokens": 6}),
            "{}",
            upstream.text
        );
        assert_eq!(upstream.header("x-sluice-token-count"), Some("upstream"));
        let estimated = proxy.post_with("/v1/messages/count_tokens", &count(GPT), &headers);
        assert_eq!(estimated.status, 200, "node {id}: {}", estimated.text);
        assert!(
            estimated.body["input_tokens"].as_u64() > Some(2),
            "{}",
            estimated.text
        );
        assert_eq!(estimated.header("x-sluice-token-count"), Some("estimate"));
        let bad = proxy.post_with(
            "/v1/messages/count_tokens",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
            &headers,
        );
        assert_eq!(bad.status, 400, "{}", bad.text);
        assert_eq!(bad.anthropic_error_type(), "invalid_request_error");
    }
    assert_eq!(
        plane.mock.requests_to("/v1/messages/count_tokens") - before,
        3,
        "one upstream count per node"
    );
}

#[path = "t85_data_plane/azure.rs"]
mod azure;

#[path = "t85_data_plane/gemini.rs"]
mod gemini;

#[path = "t85_data_plane/vertex.rs"]
mod vertex;

#[path = "t85_data_plane/bedrock.rs"]
mod bedrock;

#[path = "t85_data_plane/responses_translated.rs"]
mod responses_translated;

#[path = "t85_data_plane/jwt.rs"]
mod jwt;
